//! The process's open-file limit. Every connection is a descriptor, and the usual soft limit
//! (1,024) is far below `--max-connections`, so `serve` raises the soft limit to the hard one
//! at start, as Go's runtime does for every program.
//!
//! Responsible for that raise, and for saying at start when even the hard limit is below
//! what the settings allow. Not responsible for running out anyway: the engine then pauses
//! accepting and retries (`halyard_accept_paused_total`).

/// Descriptors left for everything that is not a client connection: listeners, epoll and
/// waker descriptors, log segments, the lock file, the dev demo page.
const RESERVE: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force
/// (`None` if it cannot be read).
pub fn raise() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed by pointer,
    // which lives on this stack frame for the whole call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    Some(lim.rlim_cur)
}

/// What to tell the operator when `max_connections` cannot all be open under `limit`.
pub fn warning(limit: u64, max_connections: usize) -> Option<String> {
    let room = limit.saturating_sub(RESERVE);
    (room < max_connections as u64).then(|| {
        format!(
            "the open-file limit is {limit}, so about {room} connections can be open at once \
             (--max-connections is {max_connections}); past that, new connections wait until \
             one closes. Raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower \
             --max-connections"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_only_when_the_limit_is_below_the_connections_allowed() {
        assert_eq!(warning(1_048_576, 100_000), None);
        assert_eq!(warning(100_064, 100_000), None);
        let w = warning(4_096, 100_000).expect("a warning");
        assert!(w.contains("open-file limit is 4096"), "{w}");
        assert!(w.contains("about 4032 connections"), "{w}");
        assert!(
            warning(10, 1).is_some(),
            "a limit below the reserve leaves no room"
        );
    }

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let soft = raise().expect("readable limit");
        let hard = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
            })
            .expect("Max open files in /proc/self/limits");
        if hard != "unlimited" {
            assert_eq!(soft.to_string(), hard);
        }
    }
}

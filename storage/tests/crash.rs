//! Crash test: a child process commits under concurrent load and prints every acknowledged
//! turn; it is killed with SIGKILL; the reopened store must hold every acknowledged turn,
//! whole, and nothing torn (each turn is one transaction of two messages).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;
use halyard_storage::*;

const THREADS: usize = 8;

fn record_ack(line: &str, acked: &mut HashMap<usize, u64>) -> usize {
    let mut it = line.strip_prefix("ack ").unwrap_or("").split(' ');
    let (Some(Ok(t)), Some(Ok(k))) = (
        it.next().map(str::parse::<usize>),
        it.next().map(str::parse::<u64>),
    ) else {
        return 0;
    };
    let e = acked.entry(t).or_insert(0);
    *e = (*e).max(k + 1);
    1
}

fn run_and_kill(dir: &std::path::Path, acks_wanted: usize) -> HashMap<usize, u64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_halyard-storage-crash-child"))
        .arg(dir)
        .arg(THREADS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acked: HashMap<usize, u64> = HashMap::new();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while n < acks_wanted && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        n += record_ack(&line, &mut acked);
    }
    // Child::kill sends SIGKILL on Unix: no destructor, no final sync.
    child.kill().expect("kill");
    let status = child.wait().unwrap();
    assert!(!status.success());
    // Acks printed before the kill but not read yet count too.
    for line in lines.map_while(Result::ok) {
        record_ack(&line, &mut acked);
    }
    acked
}

fn verify(dir: &std::path::Path, acked: &HashMap<usize, u64>) -> u64 {
    let (store, report) = Store::open(dir, Options::default()).expect("reopen after SIGKILL");
    assert_eq!(report.rejected, 0);
    assert!(report.corruption.is_empty());
    let mut total = 0;
    for t in 0..THREADS {
        let sid = format!("ses_t{t}");
        let Some(s) = store.session("ten_crash", "proj_crash", &sid) else {
            assert!(!acked.contains_key(&t));
            continue;
        };
        let msgs = store
            .messages("ten_crash", "proj_crash", &sid, Page::ALL)
            .unwrap()
            .items;
        // Whole turns only, in order, counters in step with the messages.
        assert_eq!(msgs.len() % 2, 0, "half a turn visible in {sid}");
        assert_eq!(s.message_count as usize, msgs.len());
        assert_eq!(s.token_count as usize, msgs.len() / 2 * 3);
        let turns = msgs.len() as u64 / 2;
        for k in 0..turns {
            let (u, a) = (&msgs[2 * k as usize], &msgs[2 * k as usize + 1]);
            assert_eq!(u.id, format!("msg_{t}_{k}_u"));
            assert_eq!(u.content, format!("question {t} {k}"));
            assert_eq!(a.id, format!("msg_{t}_{k}_a"));
            assert_eq!(
                a.content,
                format!("answer {t} {k} {}", "x".repeat((k % 50) as usize))
            );
        }
        let want = acked.get(&t).copied().unwrap_or(0);
        // Every acknowledged turn is there; at most the one in flight beyond it.
        assert!(turns >= want, "{sid}: {turns} turns, {want} acknowledged");
        assert!(
            turns <= want + 1,
            "{sid}: {turns} turns, {want} acknowledged"
        );
        total += turns;
    }
    total
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_write() {
    let dir = TempDir::new("crash");
    let mut all_acked: HashMap<usize, u64> = HashMap::new();
    for round in 0..4 {
        let acked = run_and_kill(dir.path(), 1500 + round * 700);
        for (t, k) in acked {
            let e = all_acked.entry(t).or_insert(0);
            *e = (*e).max(k);
        }
        let total = verify(dir.path(), &all_acked);
        assert!(total > 0);
    }
}

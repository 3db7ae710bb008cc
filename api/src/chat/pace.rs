//! The echo provider's token clock.
//!
//! Responsible for: when each token of a simulated model is due, one every `every_ms` on
//! the loop's clock, counted from the first (as a model writing at a steady pace, which
//! does not slow down because the server reading it runs late). Not responsible for:
//! timers (the turn sets one for [`Pace::wait`]'s answer) or the tokens themselves.

/// Token `n` is due `n x every_ms` after the pace starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    every_ms: u64,
    /// When the next token is due; `None` before the first is asked for.
    next_at: Option<u64>,
}

impl Pace {
    /// A pace of one token per `every_ms` (0: every token at once).
    pub fn new(every_ms: u64) -> Self {
        Pace {
            every_ms,
            next_at: None,
        }
    }

    /// At `now_ms`: `None` when the next token is due (it is then counted as taken), or
    /// how many ms are left until it is. The first is due `every_ms` after the first ask.
    pub fn wait(&mut self, now_ms: u64) -> Option<u64> {
        if self.every_ms == 0 {
            return None;
        }
        let at = *self.next_at.get_or_insert(now_ms + self.every_ms);
        if now_ms < at {
            return Some(at - now_ms);
        }
        self.next_at = Some(at + self.every_ms);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_due_at_the_pace_from_the_first_ask() {
        let mut p = Pace::new(50);
        assert_eq!(p.wait(1000), Some(50));
        assert_eq!(p.wait(1049), Some(1));
        assert_eq!(p.wait(1050), None);
        assert_eq!(p.wait(1050), Some(50));
        assert_eq!(p.wait(1100), None);
    }

    #[test]
    fn a_late_reader_finds_the_overdue_tokens_due_at_once() {
        let mut p = Pace::new(50);
        assert_eq!(p.wait(0), Some(50));
        // 130 ms late: the tokens due at 50, 100 and 150 are all there by 180.
        assert_eq!(p.wait(180), None);
        assert_eq!(p.wait(180), None);
        assert_eq!(p.wait(180), None);
        assert_eq!(p.wait(180), Some(20), "the fourth is due at 200, not 230");
    }

    #[test]
    fn no_pace_means_every_token_is_due() {
        let mut p = Pace::new(0);
        assert!((0..5).all(|_| p.wait(7).is_none()));
    }
}

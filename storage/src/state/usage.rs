//! A project's usage records: one per message that carries usage, kept as messages apply,
//! so that `GET /api/v1/chat/usage` sums small fixed-size records instead of walking and
//! decoding every message of every session.
//!
//! Responsible for: recording a message's usage with its time, session and the session's
//! agent; forgetting a session's records when its messages are cleared; summing the
//! records of a time range per agent, for all sessions or some. Not responsible for:
//! prices or models (the API looks the agents up and prices the sums, which is exact:
//! a cost is linear in the tokens).
//!
//! Records are never removed, only hidden: clearing a session raises its floor (records
//! before it no longer count), so that the change and its undo are O(1). A snapshot holds
//! the messages, not these records, so a restart rebuilds them without the hidden ones.

use std::collections::HashMap;

use crate::model::Usage;

/// Sums of the usage of one agent's sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    /// Messages with usage.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Total tokens.
    pub total_tokens: u64,
    /// Sum of the turns' latencies, ms.
    pub latency_ms: u64,
}

impl UsageTotals {
    fn add(&mut self, u: &Usage) {
        self.requests += 1;
        self.input_tokens += u.input_tokens;
        self.output_tokens += u.output_tokens;
        self.total_tokens += u.total_tokens;
        self.latency_ms += u.latency_ms;
    }
}

#[derive(Debug, Clone)]
struct Record {
    at: u64,
    session: u32,
    agent: u32,
    usage: Usage,
}

/// The records of one project.
#[derive(Debug, Clone, Default)]
pub struct UsageLog {
    records: Vec<Record>,
    sessions: Vec<String>,
    session_index: HashMap<String, u32>,
    /// Per session: records before this position no longer count (it was cleared).
    floors: Vec<usize>,
    agents: Vec<String>,
    agent_index: HashMap<String, u32>,
}

fn intern(names: &mut Vec<String>, index: &mut HashMap<String, u32>, name: &str) -> u32 {
    if let Some(i) = index.get(name) {
        return *i;
    }
    let i = names.len() as u32;
    names.push(name.to_owned());
    index.insert(name.to_owned(), i);
    i
}

impl UsageLog {
    fn session(&mut self, id: &str) -> u32 {
        let i = intern(&mut self.sessions, &mut self.session_index, id);
        self.floors.resize(self.sessions.len(), 0);
        i
    }

    /// Records a message of `session` (whose agent is `agent`) at `at` with usage `u`.
    pub fn push(&mut self, at: u64, session: &str, agent: &str, u: Usage) {
        let session = self.session(session);
        let agent = intern(&mut self.agents, &mut self.agent_index, agent);
        self.records.push(Record {
            at,
            session,
            agent,
            usage: u,
        });
    }

    /// Takes back the last [`UsageLog::push`].
    pub fn pop(&mut self) {
        self.records.pop();
    }

    /// Hides every record of `session` so far; returns the floor it had, for
    /// [`UsageLog::unclear`].
    pub fn clear(&mut self, session: &str) -> Option<usize> {
        let i = *self.session_index.get(session)?;
        let len = self.records.len();
        Some(std::mem::replace(&mut self.floors[i as usize], len))
    }

    /// Takes back a [`UsageLog::clear`] that returned `floor`.
    pub fn unclear(&mut self, session: &str, floor: usize) {
        if let Some(i) = self.session_index.get(session) {
            self.floors[*i as usize] = floor;
        }
    }

    /// Per agent id, the sums of the records made within `from..=to` (ms), of the sessions
    /// `keep` accepts (all when `None`).
    pub fn totals(
        &self,
        from: u64,
        to: u64,
        keep: Option<&dyn Fn(&str) -> bool>,
    ) -> Vec<(String, UsageTotals)> {
        let kept: Option<Vec<bool>> =
            keep.map(|keep| self.sessions.iter().map(|s| keep(s)).collect());
        let mut sums = vec![UsageTotals::default(); self.agents.len()];
        for (pos, r) in self.records.iter().enumerate() {
            let s = r.session as usize;
            if r.at < from || r.at > to || pos < self.floors[s] {
                continue;
            }
            if kept.as_ref().is_some_and(|k| !k[s]) {
                continue;
            }
            sums[r.agent as usize].add(&r.usage);
        }
        self.agents
            .iter()
            .zip(sums)
            .filter(|(_, t)| t.requests > 0)
            .map(|(a, t)| (a.clone(), t))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(tokens: u64) -> Usage {
        Usage {
            input_tokens: tokens,
            output_tokens: 1,
            total_tokens: tokens + 1,
            latency_ms: 10,
        }
    }

    #[test]
    fn sums_per_agent_within_a_range_and_hides_cleared_sessions() {
        let mut log = UsageLog::default();
        log.push(100, "s1", "a", u(5));
        log.push(200, "s2", "b", u(7));
        log.push(300, "s1", "a", u(9));
        let all = log.totals(0, u64::MAX, None);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, "a");
        assert_eq!(all[0].1.requests, 2);
        assert_eq!(all[0].1.input_tokens, 14);
        assert_eq!(all[0].1.total_tokens, 16);
        assert_eq!(all[0].1.latency_ms, 20);
        // A range takes only what was made within it, both ends included.
        let mid = log.totals(200, 300, None);
        assert_eq!(mid.iter().map(|(_, t)| t.requests).sum::<u64>(), 2);
        // Some sessions only.
        let only_s2 = log.totals(0, u64::MAX, Some(&|s: &str| s == "s2"));
        assert_eq!(only_s2, vec![("b".to_string(), all[1].1)]);
        // Clearing s1 hides its records so far, not later ones; undo shows them again.
        let floor = log.clear("s1").expect("known session");
        assert!(log.totals(0, u64::MAX, None).iter().all(|(a, _)| a == "b"));
        log.push(400, "s1", "a", u(1));
        assert_eq!(log.totals(0, u64::MAX, None)[0].1.requests, 1);
        log.pop();
        log.unclear("s1", floor);
        assert_eq!(log.totals(0, u64::MAX, None), all);
        assert_eq!(log.clear("nobody"), None);
    }
}

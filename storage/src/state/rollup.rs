//! Per-hour rollups of a project's turns and feedback, for analytics.
//!
//! Responsible for: what one turn's trace (its `response` or `error` event) and one rating
//! add to the hour they happened in, under the session's agent, channel and environment;
//! adding and taking back such deltas (a failed commit's undo); reading a time range grouped
//! by agent, channel, environment, hour or day. The rollups are derived from the records
//! the log already holds (traces, feedback), so replay rebuilds them: there is no second
//! store. Not responsible for: what the figures mean to a client (averages, rates: the API).

use std::collections::{BTreeMap, HashMap};

use crate::model::{Channel, Environment, Rating, TraceEvent, TraceKind};

/// One hour, in milliseconds.
pub const HOUR_MS: u64 = 3_600_000;
/// One day, in milliseconds.
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// Upper bounds of the turn duration histogram, in ms (the last bucket: slower).
pub const DURATION_BUCKETS_MS: [u64; 16] = [
    50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 20_000, 30_000, 60_000,
    120_000,
];

/// What the turns and ratings of one hour and one key add up to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollup {
    /// Turns that ended (answered or failed).
    pub turns: u64,
    /// Turns that failed.
    pub errors: u64,
    /// Total duration of the answered turns, ms.
    pub duration_ms: u64,
    /// Answered turns per bucket of [`DURATION_BUCKETS_MS`] (the last: slower).
    pub durations: [u64; DURATION_BUCKETS_MS.len() + 1],
    /// Input and output tokens.
    pub tokens: u64,
    /// Cost, where pricing was known.
    pub cost: f64,
    /// Positive ratings.
    pub positive: u64,
    /// Negative ratings.
    pub negative: u64,
}

impl Rollup {
    /// Adds `o` (`sign` +1) or takes it back (-1).
    fn merge(&mut self, o: &Rollup, add: bool) {
        let f = |a: &mut u64, b: u64| *a = if add { *a + b } else { a.saturating_sub(b) };
        f(&mut self.turns, o.turns);
        f(&mut self.errors, o.errors);
        f(&mut self.duration_ms, o.duration_ms);
        for (a, b) in self.durations.iter_mut().zip(o.durations) {
            f(a, b);
        }
        f(&mut self.tokens, o.tokens);
        self.cost += if add { o.cost } else { -o.cost };
        f(&mut self.positive, o.positive);
        f(&mut self.negative, o.negative);
    }

    /// Adds `o`.
    pub fn add(&mut self, o: &Rollup) {
        self.merge(o, true);
    }

    /// Answered turns.
    pub fn answered(&self) -> u64 {
        self.durations.iter().sum()
    }

    /// The upper bound of the bucket holding the 95th percentile duration (`u64::MAX` for
    /// the last), or `None` without answered turns.
    pub fn p95_ms(&self) -> Option<u64> {
        let n = self.answered();
        if n == 0 {
            return None;
        }
        let rank = (n * 95).div_ceil(100);
        let mut seen = 0;
        for (i, c) in self.durations.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(DURATION_BUCKETS_MS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }
}

/// Who the turns of a rollup belong to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RollupKey {
    /// The session's agent.
    pub agent_name: String,
    /// The session's channel.
    pub channel: Channel,
    /// The session's deployment's environment, if it runs one.
    pub environment: Option<Environment>,
}

/// A project's rollups: hour (ms since the epoch / [`HOUR_MS`]) to key to rollup.
pub type Rollups = BTreeMap<u64, HashMap<RollupKey, Rollup>>;

/// What a list of trace events adds, per hour.
pub fn of_traces(events: &[TraceEvent]) -> Vec<(u64, Rollup)> {
    let mut out: Vec<(u64, Rollup)> = Vec::new();
    for e in events {
        let mut r = Rollup::default();
        match e.kind {
            TraceKind::Response => {
                r.turns = 1;
                r.duration_ms = e.duration_ms;
                let i = DURATION_BUCKETS_MS
                    .iter()
                    .position(|b| e.duration_ms <= *b)
                    .unwrap_or(DURATION_BUCKETS_MS.len());
                r.durations[i] = 1;
                r.tokens = e.input_tokens + e.output_tokens;
                r.cost = e.cost.unwrap_or(0.0);
            }
            TraceKind::Error => {
                r.turns = 1;
                r.errors = 1;
            }
            _ => continue,
        }
        let hour = e.started_at / HOUR_MS;
        match out.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, acc)) => acc.add(&r),
            None => out.push((hour, r)),
        }
    }
    out
}

/// What one rating adds.
pub fn of_rating(rating: Rating) -> Rollup {
    Rollup {
        positive: (rating == Rating::Positive) as u64,
        negative: (rating == Rating::Negative) as u64,
        ..Rollup::default()
    }
}

/// Adds (`add`) or takes back deltas under `key`.
pub fn apply(rollups: &mut Rollups, key: &RollupKey, deltas: &[(u64, Rollup)], add: bool) {
    for (hour, delta) in deltas {
        let slot = rollups
            .entry(*hour)
            .or_default()
            .entry(key.clone())
            .or_default();
        slot.merge(delta, add);
    }
}

/// How a range is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// By agent name.
    AgentName,
    /// By channel.
    Channel,
    /// By environment (`None`: sessions without a deployment).
    Environment,
    /// By hour.
    Hour,
    /// By day (UTC).
    Day,
}

/// One group of a range: its label and what it adds up to.
#[derive(Debug, Clone, PartialEq)]
pub enum Group {
    /// An agent name.
    Agent(String),
    /// A channel.
    Channel(Channel),
    /// An environment, or none.
    Environment(Option<Environment>),
    /// The start of an hour or a day, ms since the epoch.
    Time(u64),
}

/// The rollups of the hours from `from_ms` to `to_ms` (both included), grouped, in group
/// order (time ascending; names as first met).
pub fn range(rollups: &Rollups, from_ms: u64, to_ms: u64, by: GroupBy) -> Vec<(Group, Rollup)> {
    let mut out: Vec<(Group, Rollup)> = Vec::new();
    if from_ms > to_ms {
        return out;
    }
    for (hour, keys) in rollups.range(from_ms / HOUR_MS..=to_ms / HOUR_MS) {
        for (key, r) in keys {
            let group = match by {
                GroupBy::AgentName => Group::Agent(key.agent_name.clone()),
                GroupBy::Channel => Group::Channel(key.channel),
                GroupBy::Environment => Group::Environment(key.environment),
                GroupBy::Hour => Group::Time(hour * HOUR_MS),
                GroupBy::Day => Group::Time(hour * HOUR_MS / DAY_MS * DAY_MS),
            };
            // Hours come in order, so a time group is the last one or a new one.
            let found = match out.last_mut() {
                Some((g, acc)) if *g == group => Some(acc),
                _ => out
                    .iter_mut()
                    .find(|(g, _)| *g == group)
                    .map(|(_, acc)| acc),
            };
            match found {
                Some(acc) => acc.add(r),
                None => out.push((group, r.clone())),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: TraceKind, at: u64, duration_ms: u64) -> TraceEvent {
        TraceEvent {
            kind,
            span_id: "s".into(),
            parent_span_id: None,
            name: "m".into(),
            started_at: at,
            duration_ms,
            input_tokens: 2,
            output_tokens: 3,
            cost: Some(0.5),
            data: String::new(),
        }
    }

    fn key(agent: &str) -> RollupKey {
        RollupKey {
            agent_name: agent.into(),
            channel: Channel::Api,
            environment: None,
        }
    }

    #[test]
    fn turns_errors_and_durations_land_in_their_hour() {
        let events = [
            event(TraceKind::LlmCall, 10, 5),
            event(TraceKind::Response, 10, 120),
            event(TraceKind::Error, HOUR_MS + 1, 0),
        ];
        let d = of_traces(&events);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].0, d[0].1.turns, d[0].1.errors), (0, 1, 0));
        assert_eq!(d[0].1.tokens, 5);
        assert_eq!(d[0].1.durations[2], 1, "120 ms is in the 200 ms bucket");
        assert_eq!((d[1].0, d[1].1.turns, d[1].1.errors), (1, 1, 1));
    }

    #[test]
    fn deltas_add_and_take_back_and_ranges_group() {
        let mut r = Rollups::new();
        let a = of_traces(&[event(TraceKind::Response, 10, 40)]);
        let b = of_traces(&[event(TraceKind::Response, DAY_MS + 5, 4_000)]);
        apply(&mut r, &key("a"), &a, true);
        apply(&mut r, &key("b"), &b, true);
        apply(&mut r, &key("b"), &[(0, of_rating(Rating::Positive))], true);
        let by_agent = range(&r, 0, 2 * DAY_MS, GroupBy::AgentName);
        assert_eq!(by_agent.len(), 2);
        let (_, b_total) = by_agent
            .iter()
            .find(|(g, _)| *g == Group::Agent("b".into()))
            .unwrap();
        assert_eq!((b_total.turns, b_total.positive), (1, 1));
        let by_day = range(&r, 0, 2 * DAY_MS, GroupBy::Day);
        let days: Vec<&Group> = by_day.iter().map(|(g, _)| g).collect();
        assert_eq!(days, [&Group::Time(0), &Group::Time(DAY_MS)]);
        assert_eq!(range(&r, DAY_MS, 2 * DAY_MS, GroupBy::Hour).len(), 1);
        apply(&mut r, &key("b"), &b, false);
        let day_two = range(&r, DAY_MS, 2 * DAY_MS, GroupBy::Hour);
        assert_eq!(day_two[0].1.turns, 0, "taken back");
    }

    #[test]
    fn p95_is_the_bound_of_its_bucket() {
        let mut r = Rollup::default();
        assert_eq!(r.p95_ms(), None);
        r.durations[0] = 94;
        r.durations[5] = 6;
        assert_eq!(r.p95_ms(), Some(750));
        r.durations[DURATION_BUCKETS_MS.len()] = 100;
        assert_eq!(r.p95_ms(), Some(u64::MAX));
    }
}

//! What a loop's timer wheel holds: one entry type for connections, tasks and outbound
//! connections, so a single wheel serves them all.
//!
//! Responsible for: naming the owner of an entry (slot key and generation: an entry whose
//! owner is gone or was replaced is ignored when it fires) and what the expiry means. Not
//! responsible for: the wheel itself (see `wheel`) or acting on an expiry (see `worker`).

/// Why a timer was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// A connection's next deadline (re-checked when it fires).
    Deadline,
    /// A stream's heartbeat.
    Heartbeat,
    /// The end of a lingering close.
    Linger,
    /// A task's timer, with the task's tag.
    Task {
        /// Handed back in `Event::Timer`.
        tag: u64,
    },
    /// An outbound connection's next deadline (re-checked when it fires).
    Outbound,
}

/// One wheel entry: the owner's slot and generation, and the kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopTimer {
    pub(crate) key: usize,
    pub(crate) gen: u32,
    pub(crate) kind: TimerKind,
}

impl LoopTimer {
    /// An entry for the owner in slot `key` of generation `gen`.
    pub(crate) fn new(key: usize, gen: u32, kind: TimerKind) -> Self {
        LoopTimer { key, gen, kind }
    }
}

//! Live streams: who is listening to each open stream, and replay for resumes.
//!
//! Responsible for: publishing an event of a stream (appended to the log first, then sent
//! to every listener: the client that started it and any that resumed it), dropping
//! listeners that went away, ending a listener that reads too slowly with an
//! `event: error` `SLOW_CONSUMER` instead of buffering without bound, and attaching a
//! resuming client atomically: it gets the stored events after its `Last-Event-ID`, then
//! the live ones, with none lost or doubled in between. Not responsible for: producing
//! events (the runtime does) or authorizing a resume (the handler does).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use halyard_engine::{StreamError, StreamSender};
use halyard_storage::{Backend, Mutation, StreamEvent};

use super::sse;

const SHARDS: usize = 16;

struct Live {
    listeners: Vec<StreamSender>,
    orphaned_since: Option<Instant>,
}

/// The registry of open streams.
pub struct Hub {
    shards: Vec<Mutex<HashMap<String, Live>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hub")
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

/// The frame that ends a listener that cannot keep up.
fn slow_consumer_frame(id: u64) -> Vec<u8> {
    sse::frame(
        id,
        "error",
        r#"{"code":"SLOW_CONSUMER","message":"The client reads too slowly; resume with Last-Event-ID"}"#,
    )
}

impl Hub {
    fn shard(&self, stream_id: &str) -> MutexGuard<'_, HashMap<String, Live>> {
        let h = stream_id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31) + usize::from(b));
        self.shards[h % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new stream with its first listener.
    pub fn open(&self, stream_id: &str, first: StreamSender) {
        self.shard(stream_id).insert(
            stream_id.to_string(),
            Live {
                listeners: vec![first],
                orphaned_since: None,
            },
        );
    }

    /// Stores event `id` of a stream and sends it to its listeners; returns how many are
    /// still listening.
    pub fn publish(
        &self,
        store: &dyn Backend,
        tenant: &str,
        stream_id: &str,
        event: StreamEvent,
    ) -> usize {
        let mut shard = self.shard(stream_id);
        let frame = sse::frame(event.id, &event.event, &event.data);
        let id = event.id;
        // Stored before it is sent, under the same lock as resumes, so a resume sees every
        // event either in storage or live. A failed append (storage poisoned) only loses
        // resumability of this event; the live listeners still get it.
        let _ = store.commit(
            tenant,
            vec![Mutation::AppendStreamEvent {
                stream_id: stream_id.to_string(),
                event,
            }],
            Box::new(|_| {}),
        );
        let Some(live) = shard.get_mut(stream_id) else {
            return 0;
        };
        let mut kept = Vec::with_capacity(live.listeners.len());
        for l in live.listeners.drain(..) {
            match l.send(&frame) {
                Ok(()) => kept.push(l),
                Err(StreamError::Full) => l.close_with(&slow_consumer_frame(id)),
                Err(StreamError::Gone) => {}
            }
        }
        live.listeners = kept;
        let n = live.listeners.len();
        match (n, live.orphaned_since) {
            (0, None) => live.orphaned_since = Some(Instant::now()),
            (1.., Some(_)) => live.orphaned_since = None,
            _ => {}
        }
        n
    }

    /// How long a stream has had no listener (`None` while someone listens).
    pub fn orphaned_for(&self, stream_id: &str) -> Option<Duration> {
        let mut shard = self.shard(stream_id);
        let live = shard.get_mut(stream_id)?;
        live.listeners.retain(|l| !l.is_gone());
        if live.listeners.is_empty() {
            let since = *live.orphaned_since.get_or_insert_with(Instant::now);
            Some(since.elapsed())
        } else {
            live.orphaned_since = None;
            None
        }
    }

    /// Ends a stream: its listeners' responses end after what they were sent.
    pub fn finish(&self, stream_id: &str) {
        self.shard(stream_id).remove(stream_id);
    }

    /// Sends `events` (stored, after the client's last id) to `sender`, then attaches it
    /// to the live stream if it is still open; otherwise its response ends after them.
    pub fn resume(
        &self,
        stream_id: &str,
        sender: StreamSender,
        load: impl FnOnce() -> Vec<StreamEvent>,
    ) {
        let mut shard = self.shard(stream_id);
        for e in load() {
            if sender.send(&sse::frame(e.id, &e.event, &e.data)).is_err() {
                return;
            }
        }
        if let Some(live) = shard.get_mut(stream_id) {
            live.listeners.push(sender);
            live.orphaned_since = None;
        }
    }
}

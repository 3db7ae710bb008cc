//! Live streams: who is listening to each open stream, and replay for resumes.
//!
//! Responsible for: publishing an event of a stream through the [`OpenStream`] its producer
//! holds (sent to every listener: the client that started it and any that resumed it; kept
//! in memory until the producer flushes the stream's events to the log as one batch),
//! dropping listeners that went away, ending a listener that reads too slowly with an
//! `event: error` `SLOW_CONSUMER` instead of buffering without bound, and attaching a
//! resuming client atomically: it gets the stored events after its `Last-Event-ID`, then
//! the ones not yet flushed, then the live ones, with none lost or doubled in between (on
//! one node a flush moves events from memory to the store under the same lock; on a
//! shared store they stay in memory until their queued commit is reported); ending the resume of a
//! stream that a restart cut short (its events that were not yet durable are lost) with an
//! `event: error` `STREAM_INTERRUPTED` rather than a silent end; and telling the stream's producer
//! when any of its listeners goes away (so that it can check for an orphaned stream without
//! polling). Not responsible for: producing events (the turn does) or authorizing a resume
//! (the handler does).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use halyard_engine::{StreamError, StreamSender, TaskHandle};
use halyard_storage::{Backend, Mutation, StreamEvent};

use super::sse;

const SHARDS: usize = 16;

struct Live {
    /// Principal id of its creator: the only one who may resume it. Kept here too because
    /// on a shared store the stream's start may not be in the store's reads yet.
    owner: String,
    listeners: Vec<StreamSender>,
    /// Published, not yet in the store's reads (on a shared store a batch stays here
    /// until its queued commit is reported: see [`Hub::flush`]).
    unstored: Vec<StreamEvent>,
    /// On a shared store, the last event id handed to the store.
    queued_upto: u64,
    orphaned_since: Option<Instant>,
    /// Woken (with its tag) when a listener goes away.
    producer: (TaskHandle, u64),
    /// The frame being sent, kept for the next event (one allocation per stream, not per
    /// token).
    frame: Vec<u8>,
}

/// One stream's state; its own lock, so its producer publishes without finding it in the
/// registry (a lookup by id was 8% of a relayed token's user time). Lock order: a shard,
/// then a stream.
type Shared = Arc<Mutex<Live>>;

fn lock(live: &Mutex<Live>) -> MutexGuard<'_, Live> {
    // A panic while holding it leaves plain data behind; keep using it.
    live.lock().unwrap_or_else(|e| e.into_inner())
}

/// A stream open on this node, as its producer holds it.
pub struct OpenStream {
    id: String,
    live: Shared,
}

/// The registry of open streams.
pub struct Hub {
    shards: Vec<Mutex<HashMap<String, Shared>>>,
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
    let data = sse::error_data(
        sse::SLOW_CONSUMER,
        "The client reads too slowly; resume with Last-Event-ID",
    );
    sse::frame(id, sse::ERROR, &data)
}

impl Hub {
    fn shard(&self, stream_id: &str) -> MutexGuard<'_, HashMap<String, Shared>> {
        let h = stream_id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31) + usize::from(b));
        self.shards[h % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new stream of `owner` with its first listener; `producer` is woken with
    /// its tag whenever a listener goes away.
    pub fn open(
        &self,
        stream_id: &str,
        owner: &str,
        first: StreamSender,
        producer: (TaskHandle, u64),
    ) -> OpenStream {
        first.watch_gone(producer.0.clone(), producer.1);
        let live = Arc::new(Mutex::new(Live {
            owner: owner.to_owned(),
            listeners: vec![first],
            unstored: Vec::new(),
            queued_upto: 0,
            orphaned_since: None,
            producer,
            frame: Vec::new(),
        }));
        self.shard(stream_id)
            .insert(stream_id.to_string(), live.clone());
        OpenStream {
            id: stream_id.to_owned(),
            live,
        }
    }

    /// The owner of a stream open here.
    pub fn owner(&self, stream_id: &str) -> Option<String> {
        let shard = self.shard(stream_id);
        shard.get(stream_id).map(|l| lock(l).owner.clone())
    }

    /// Sends event `id` of a stream to its listeners and keeps it for the next
    /// [`flush`](Self::flush); returns how many are still listening.
    pub fn publish(&self, stream: &OpenStream, event: StreamEvent) -> usize {
        let mut guard = lock(&stream.live);
        let live = &mut *guard;
        live.frame.clear();
        sse::frame_into(&mut live.frame, event.id, &event.event, &event.data);
        let id = event.id;
        live.unstored.push(event);
        // In place: this runs once per token, and most events lose no listener.
        let mut i = 0;
        while let Some(l) = live.listeners.get(i) {
            match l.send(&live.frame) {
                Ok(()) => i += 1,
                Err(e) => {
                    let l = live.listeners.swap_remove(i);
                    if e == StreamError::Full {
                        l.close_with(&slow_consumer_frame(id));
                    }
                }
            }
        }
        let n = live.listeners.len();
        match (n, live.orphaned_since) {
            (0, None) => live.orphaned_since = Some(Instant::now()),
            (1.., Some(_)) => live.orphaned_since = None,
            _ => {}
        }
        n
    }

    /// Appends the stream's unflushed events to the log as one commit, so that a resume
    /// finds each event either stored or in memory: on one node the events move to the
    /// store under the lock resumes take; on a shared store (whose commit is queued, see
    /// `Backend::commit_queued`) they stay in memory until the commit is reported. A
    /// failed append (storage poisoned, database away) only loses resumability of these
    /// events elsewhere.
    pub fn flush(self: &Arc<Self>, store: &dyn Backend, tenant: &str, stream: &OpenStream) {
        let mut live = lock(&stream.live);
        if let Some(queued) = self.flush_live(store, tenant, &stream.id, &mut live) {
            drop(live);
            queued();
        }
    }

    /// How long a stream has had no listener (`None` while someone listens).
    pub fn orphaned_for(&self, stream: &OpenStream) -> Option<Duration> {
        let mut live = lock(&stream.live);
        live.listeners.retain(|l| !l.is_gone());
        if live.listeners.is_empty() {
            let since = *live.orphaned_since.get_or_insert_with(Instant::now);
            Some(since.elapsed())
        } else {
            live.orphaned_since = None;
            None
        }
    }

    /// Ends a stream after flushing it: its listeners' responses end after what they were
    /// sent.
    pub fn finish(self: &Arc<Self>, store: &dyn Backend, tenant: &str, stream: OpenStream) {
        // Under the shard's lock, as a resume's: it finds the stream open or all of it
        // flushed, never in between.
        let mut shard = self.shard(&stream.id);
        shard.remove(&stream.id);
        let mut live = lock(&stream.live);
        let queued = self.flush_live(store, tenant, &stream.id, &mut live);
        drop(live);
        drop(shard);
        if let Some(queued) = queued {
            queued();
        }
    }

    /// Commits the events `live` has not handed to the store yet. On one node that is
    /// done here (under the caller's lock); on a shared store the commit is given back, to
    /// be queued once the caller let go of the lock (its report takes it).
    fn flush_live<'a>(
        self: &Arc<Self>,
        store: &'a dyn Backend,
        tenant: &'a str,
        stream_id: &str,
        live: &mut Live,
    ) -> Option<impl FnOnce() + 'a> {
        if !store.is_shared() {
            if !live.unstored.is_empty() {
                let events = std::mem::take(&mut live.unstored);
                let _ = store.commit_unawaited(tenant, vec![batch(stream_id, events)]);
            }
            return None;
        }
        let after = live.queued_upto;
        let events: Vec<StreamEvent> = live
            .unstored
            .iter()
            .filter(|e| e.id > after)
            .cloned()
            .collect();
        let upto = events.last()?.id;
        live.queued_upto = upto;
        let (hub, sid) = (Arc::downgrade(self), stream_id.to_owned());
        let stored: halyard_storage::Completion = Box::new(move |r| {
            if let (Ok(()), Some(hub)) = (r, hub.upgrade()) {
                hub.stored(&sid, upto);
            }
        });
        let batch = batch(stream_id, events);
        Some(move || {
            let _ = store.commit_queued(tenant, vec![batch], Some(stored));
        })
    }

    /// A queued batch up to event `upto` is in the store's reads: memory lets go of it.
    fn stored(&self, stream_id: &str, upto: u64) {
        let shard = self.shard(stream_id);
        if let Some(live) = shard.get(stream_id) {
            lock(live).unstored.retain(|e| e.id > upto);
        }
    }

    /// Sends the events after `after` (those `load` finds stored, then those not yet
    /// flushed) to `sender`, then attaches it to the live stream if it is open here. A
    /// stream that ended ends the response after them. One not open here that never
    /// reached its last event is given back with the id of the last event sent: the caller
    /// either follows it as other nodes append to it ([`super::follow`]) or ends it with
    /// [`end_interrupted`] (a restart cut it short).
    pub fn resume(
        &self,
        stream_id: &str,
        after: u64,
        sender: StreamSender,
        load: impl Fn(u64) -> Vec<StreamEvent>,
    ) -> Option<(StreamSender, u64)> {
        // Both locks held throughout: a flush or finish cannot move events in between.
        let shard = self.shard(stream_id);
        let mut open = shard.get(stream_id).map(|l| lock(l));
        let stored = load(after);
        let last = stored.last().map_or(after, |e| e.id);
        let unstored = open.as_ref().map_or(&[][..], |l| &l.unstored[..]);
        let fresh = unstored.iter().filter(|e| e.id > last);
        // The id of the last event sent, and whether it ends the stream.
        let mut last_sent: Option<(u64, bool)> = None;
        for e in stored.iter().chain(fresh) {
            if sender.send(&sse::frame(e.id, &e.event, &e.data)).is_err() {
                return None;
            }
            last_sent = Some((e.id, is_last(&e.event)));
        }
        let Some(live) = open.as_mut() else {
            // Ended, or not running here: tell which by its last event.
            let ended = match last_sent {
                Some((_, ended)) => ended,
                None => after > 0 && load(after - 1).first().is_some_and(|e| is_last(&e.event)),
            };
            return (!ended).then(|| (sender, last_sent.map_or(after, |(id, _)| id)));
        };
        sender.watch_gone(live.producer.0.clone(), live.producer.1);
        live.listeners.push(sender);
        live.orphaned_since = None;
        None
    }
}

/// Ends the resume of a stream that will not go on after event `last` (a restart cut it
/// short, or the node that ran it is gone) with `event: error` `STREAM_INTERRUPTED`.
pub fn end_interrupted(sender: &StreamSender, last: u64) {
    let _ = sender.send(&interrupted_frame(last + 1));
}

fn batch(stream_id: &str, events: Vec<StreamEvent>) -> Mutation {
    Mutation::AppendStreamEvents {
        stream_id: stream_id.to_string(),
        events,
    }
}

/// Whether `event` ends a stream (nothing follows it).
pub(crate) fn is_last(event: &str) -> bool {
    [sse::DONE, sse::COMPLETE, sse::ERROR].contains(&event)
}

/// The frame that ends the resume of a stream a restart cut short.
fn interrupted_frame(id: u64) -> Vec<u8> {
    let data = sse::error_data(
        sse::STREAM_INTERRUPTED,
        "The server running this stream stopped before it ended; its last events were not stored",
    );
    sse::frame(id, sse::ERROR, &data)
}

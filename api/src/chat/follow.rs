//! Following, on this node, a stream that another node runs (a shared store).
//!
//! Responsible for: a task on the loop of the resuming request that sends the stream's
//! events as they reach this node's copy of the store (the running node flushes them every
//! [`FLUSH_EVERY`](super::turn::FLUSH_EVERY) and this node hears of each batch by the
//! store's notifications), in order and without a gap, until its last event; and ending
//! with `STREAM_INTERRUPTED` once the running node is gone (it stopped beating, see
//! `Backend::is_node_gone`), or when nothing new came for longer than a running turn can be
//! silent (a stream that recorded no node). Not responsible for: authorizing the resume or the events
//! before it was handed over (the handler and the hub).

use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard_engine::{Cx, Event, Status, StreamError, StreamSender, Task};
use halyard_storage::Backend;

use super::hub::{end_interrupted, is_last};
use super::sse;

/// How often the copy of the store is looked at.
const TICK: Duration = Duration::from_millis(50);

/// Timer tag of the tick.
const TAG_TICK: u64 = 1;

/// Tag of the client's departure.
const TAG_GONE: u64 = 2;

/// A resume following a stream of another node.
pub struct Follow {
    store: Arc<dyn Backend>,
    tenant: String,
    stream_id: String,
    sender: Option<StreamSender>,
    /// The id of the last event sent.
    last: u64,
    /// When the last new event came (or the follow started).
    heard: Instant,
    /// Silence after which the running node is taken for gone.
    patience: Duration,
}

impl Follow {
    /// Follows `stream_id` of `tenant` after event `last`, through `sender`; gives up after
    /// `patience` without a new event.
    pub fn new(
        store: Arc<dyn Backend>,
        tenant: String,
        stream_id: String,
        (sender, last): (StreamSender, u64),
        patience: Duration,
    ) -> Follow {
        Follow {
            store,
            tenant,
            stream_id,
            sender: Some(sender),
            last,
            heard: Instant::now(),
            patience,
        }
    }

    /// Sends what is new; `Done` once the stream ended, the client went or patience ran out.
    fn tick(&mut self) -> Status {
        let Some(sender) = &self.sender else {
            return Status::Done;
        };
        let replay = self
            .store
            .stream_events_after(&self.tenant, &self.stream_id, self.last);
        let Some(replay) = replay else {
            // Deleted meanwhile (expired): nothing more will come.
            end_interrupted(sender, self.last);
            return Status::Done;
        };
        for e in &replay.events {
            match sender.send(&sse::frame(e.id, &e.event, &e.data)) {
                Ok(()) => {}
                // Sent again at the next tick, once the client has read.
                Err(StreamError::Full) => return Status::Pending,
                Err(StreamError::Gone) => return Status::Done,
            }
            self.last = e.id;
            self.heard = Instant::now();
            if is_last(&e.event) {
                return Status::Done;
            }
        }
        if self.store.is_node_gone(&replay.node) || self.heard.elapsed() > self.patience {
            end_interrupted(sender, self.last);
            return Status::Done;
        }
        Status::Pending
    }
}

impl Task for Follow {
    fn on_event(&mut self, event: Event, cx: &mut Cx<'_>) -> Status {
        match event {
            Event::Start => {
                if let Some(s) = &self.sender {
                    s.watch_gone(cx.handle(), TAG_GONE);
                }
            }
            Event::Timer(TAG_TICK) => {}
            Event::Wake(TAG_GONE) | Event::Shutdown => return Status::Done,
            _ => return Status::Pending,
        }
        let status = self.tick();
        if status == Status::Pending {
            cx.set_timer(TICK, TAG_TICK);
        }
        status
    }
}

//! Tasks: work that lives on one event loop between events, such as an agent turn waiting
//! on a model, costing memory instead of a thread.
//!
//! Responsible for: the [`Task`] trait (one `on_event` call per event, on the loop that runs
//! the task), the [`Event`]s a task gets (start, its timers, wake-ups and messages from other
//! threads through a [`TaskHandle`], its outbound HTTP exchanges, shutdown), and the [`Cx`]
//! through which it sets timers and starts exchanges. Not responsible for: what a task does,
//! or driving sockets (the loop does, see `client::driver`).
//!
//! A task must not block: everything slow (storage durability, DNS, an upstream) comes back
//! to it as an event. Timers cannot be cancelled: a task tags each one and ignores a tag it no
//! longer waits for (the loop's own deadlines work the same way), and a finished task's
//! timers and news are dropped by the slot generation.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::driver::Driver;
use crate::client::{ExchangeId, Fetch, HttpEvent};
use crate::reply::{Mailbox, Post};
use crate::timer::{LoopTimer, TimerKind};
use crate::wheel::Wheel;

/// Work driven by events on one event loop. A panic in `on_event` ends the task (the loop
/// goes on); whatever it held is dropped, so a `Responder` it held answers `500`.
pub trait Task: Send + 'static {
    /// Handles one event; [`Status::Done`] ends the task.
    fn on_event(&mut self, event: Event, cx: &mut Cx<'_>) -> Status;
}

/// What happened to a task.
pub enum Event {
    /// The task was started on its loop.
    Start,
    /// A timer set with [`Cx::set_timer`] fired, with its tag.
    Timer(u64),
    /// [`TaskHandle::wake`] was called with this tag (also how a watched client's departure
    /// is told, see `Responder::watch_gone`).
    Wake(u64),
    /// [`TaskHandle::post`] sent this.
    Message(Box<dyn Any + Send>),
    /// News of an outbound exchange started with [`Cx::fetch`].
    Http(ExchangeId, HttpEvent),
    /// The server is shutting down: finish now (the loop exits once its tasks are done, or at
    /// the shutdown deadline).
    Shutdown,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Start => f.write_str("Start"),
            Event::Timer(t) => write!(f, "Timer({t})"),
            Event::Wake(t) => write!(f, "Wake({t})"),
            Event::Message(_) => f.write_str("Message"),
            Event::Http(id, e) => write!(f, "Http({id:?}, {e:?})"),
            Event::Shutdown => f.write_str("Shutdown"),
        }
    }
}

/// Whether a task goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Wait for the next event.
    Pending,
    /// Finished: the loop drops the task and closes its open exchanges.
    Done,
}

/// What a [`TaskHandle`] delivers.
pub enum TaskPost {
    /// [`Event::Wake`].
    Wake(u64),
    /// [`Event::Message`].
    Message(Box<dyn Any + Send>),
}

/// Reaches one task from any thread. Cheap to clone; news for a finished task is dropped.
#[derive(Clone)]
pub struct TaskHandle {
    mailbox: Arc<Mailbox>,
    key: usize,
    gen: u32,
}

impl std::fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskHandle({}, {})", self.key, self.gen)
    }
}

impl TaskHandle {
    /// Delivers [`Event::Wake`] with `tag`.
    pub fn wake(&self, tag: u64) {
        self.send(TaskPost::Wake(tag));
    }

    /// Delivers [`Event::Message`] with `message`.
    pub fn post(&self, message: Box<dyn Any + Send>) {
        self.send(TaskPost::Message(message));
    }

    fn send(&self, post: TaskPost) {
        self.mailbox.post(Post::Task {
            key: self.key,
            gen: self.gen,
            post,
        });
    }
}

/// What a task borrows from its loop during one event.
pub struct Cx<'a> {
    pub(crate) key: usize,
    pub(crate) gen: u32,
    pub(crate) now_ms: u64,
    pub(crate) now: Instant,
    pub(crate) draining: bool,
    pub(crate) mailbox: &'a Arc<Mailbox>,
    pub(crate) wheel: &'a mut Wheel<LoopTimer>,
    pub(crate) driver: &'a mut Driver,
    pub(crate) registry: &'a mio::Registry,
    /// Exchanges this task started, closed by the loop when it finishes.
    pub(crate) exchanges: &'a mut Vec<ExchangeId>,
}

impl Cx<'_> {
    /// The loop's clock at this event.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The loop's clock in milliseconds (what timers are measured in).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Whether the server is shutting down.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// A handle that reaches this task from any thread.
    pub fn handle(&self) -> TaskHandle {
        TaskHandle {
            mailbox: self.mailbox.clone(),
            key: self.key,
            gen: self.gen,
        }
    }

    /// Delivers [`Event::Timer`] with `tag` after `after` (rounded up to the wheel's tick).
    pub fn set_timer(&mut self, after: Duration, tag: u64) {
        let at = self.now_ms + after.as_millis() as u64;
        let kind = TimerKind::Task { tag };
        self.wheel
            .insert(at, LoopTimer::new(self.key, self.gen, kind));
    }

    /// Starts an outbound HTTP exchange; its events come as [`Event::Http`] with the id
    /// returned (a request that cannot even be written fails that way too).
    pub fn fetch(&mut self, fetch: Fetch) -> ExchangeId {
        let owner = (self.key, self.gen);
        let id = self
            .driver
            .start(fetch, owner, self.now_ms, self.wheel, self.registry);
        self.exchanges.push(id);
        id
    }

    /// Ends an exchange early and closes its connection (no event follows).
    pub fn cancel(&mut self, id: ExchangeId) {
        self.driver.cancel(id, self.wheel, self.registry);
    }

    /// Gives the buffer of an [`HttpEvent::Body`](crate::client::HttpEvent::Body) back once
    /// read, for the loop to fill with a later body (optional: a buffer not given back is
    /// simply freed).
    pub fn give_back(&mut self, body: Vec<u8>) {
        self.driver.give_back(body);
    }
}

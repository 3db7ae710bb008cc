//! Commits handed over by the event loops, run on threads of their own.
//!
//! Responsible for: taking a chat turn's writes (its messages, stream batches, traces)
//! without making the loop that runs the turn wait for the database, and committing them
//! in the order they were handed over per tenant (a tenant always goes to the same lane),
//! then reporting each outcome to its callback; at shutdown, committing what was handed
//! over before the threads end. Not responsible for: the commit itself
//! ([`PgStore::commit_now`]) or what a caller does with the outcome.
//!
//! A queued write is seen by this node's reads once its lane has committed it, usually
//! within one round trip; the turn keeps what it needs in memory meanwhile, and the stream
//! hub keeps a batch's events until its commit is reported.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use halyard_storage::{Completion, Mutation, StoreError};

use crate::store::PgStore;

/// Threads committing queued writes; tenants are spread over them by a hash.
pub const LANES: usize = 4;

/// Writes waiting per lane before a loop's write is refused (`503`).
const DEPTH: usize = 16 * 1024;

/// Longest wait for a job before looking at the stop flag.
const TICK: Duration = Duration::from_millis(100);

/// One queued write.
struct Job {
    tenant: String,
    mutations: Vec<Mutation>,
    done: Option<Completion>,
}

/// The lanes' senders, and their receivers until the threads take them.
pub struct Lanes {
    senders: Vec<Sender<Job>>,
    receivers: Mutex<Option<Vec<Receiver<Job>>>>,
}

impl Default for Lanes {
    fn default() -> Self {
        let (senders, receivers) = (0..LANES).map(|_| bounded(DEPTH)).unzip();
        Lanes {
            senders,
            receivers: Mutex::new(Some(receivers)),
        }
    }
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").finish_non_exhaustive()
    }
}

impl Lanes {
    /// Whether the threads run (before [`spawn`], writes are committed by their caller).
    fn running(&self) -> bool {
        self.receivers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Hands a write to lane `lane`; `Err` gives it back when the threads do not run yet,
    /// or refuses it when the lane is full.
    pub(crate) fn push(
        &self,
        lane: usize,
        tenant: &str,
        mutations: Vec<Mutation>,
        done: Option<Completion>,
    ) -> Result<(), Refused> {
        if !self.running() {
            return Err(Refused::NotRunning(mutations, done));
        }
        let job = Job {
            tenant: tenant.to_owned(),
            mutations,
            done,
        };
        match self.senders[lane % LANES].try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Refused::Full),
        }
    }
}

/// Why [`Lanes::push`] did not queue a write.
pub(crate) enum Refused {
    /// No thread runs yet: the caller commits it itself.
    NotRunning(Vec<Mutation>, Option<Completion>),
    /// The lane is full.
    Full,
}

impl Refused {
    /// The error a caller reports for [`Refused::Full`].
    pub(crate) fn full() -> StoreError {
        StoreError::Unavailable("too many writes are waiting for the database".into())
    }
}

/// Starts the lanes' threads; each ends once `stop` is set and its lane is empty, or once
/// the store is dropped.
pub fn spawn(
    store: &Arc<PgStore>,
    stop: &Arc<AtomicBool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let taken = store
        .lanes
        .receivers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let mut threads = Vec::new();
    for (i, rx) in taken.into_iter().flatten().enumerate() {
        let (store, stop) = (Arc::downgrade(store), stop.clone());
        let t = std::thread::Builder::new()
            .name(format!("halyard-pg-lane-{i}"))
            .spawn(move || run(&store, &rx, &stop))?;
        threads.push(t);
    }
    Ok(threads)
}

fn run(store: &Weak<PgStore>, rx: &Receiver<Job>, stop: &AtomicBool) {
    loop {
        match rx.recv_timeout(TICK) {
            Ok(job) => {
                let Some(s) = store.upgrade() else { return };
                let result = s.commit_now(&job.tenant, job.mutations);
                if let Some(done) = job.done {
                    done(result);
                }
            }
            Err(RecvTimeoutError::Timeout) if stop.load(Ordering::Acquire) => return,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

//! Handlers off the event loops, for a store that waits on the network (PostgreSQL).
//!
//! Responsible for: a fixed set of handler threads fed by a bounded queue; for each
//! request, catching the store up to every write acknowledged anywhere (read-your-writes on
//! every node; a read also takes a read lease, after which the tenant's reads are answered
//! on the event loop, see `Api::reads_here`), deciding again on a credential that `admit`
//! accepted from this node's possibly older copy (a key revoked on another node is
//! refused at once), then running the handler and answering through the request's
//! [`Responder`]. A full queue answers `503` with `Retry-After`. Not responsible for: what
//! handlers do (they are the same on both stores).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};

use crossbeam_channel::{bounded, Sender, TrySendError};
use halyard_engine::{Method, Reply, Request, Responder};

use crate::error::ApiError;
use crate::{Api, Ctx};

/// Requests waiting for a handler thread, per thread.
const QUEUE_PER_THREAD: usize = 64;

/// One request and where its answer goes.
type Job = (Request<Ctx>, Responder);

/// The handler threads.
#[derive(Debug)]
pub struct Offload {
    tx: Sender<Job>,
}

impl Offload {
    /// Starts `threads` handler threads serving `api` (they end with it).
    pub fn start(api: Weak<Api>, threads: usize) -> std::io::Result<Offload> {
        let threads = threads.max(1);
        let (tx, rx) = bounded::<Job>(threads * QUEUE_PER_THREAD);
        for i in 0..threads {
            let rx = rx.clone();
            let api = api.clone();
            std::thread::Builder::new()
                .name(format!("halyard-handler-{i}"))
                .spawn(move || {
                    while let Ok((request, responder)) = rx.recv() {
                        let Some(api) = api.upgrade() else { return };
                        // A panic drops the responder, which answers 500; the thread goes on.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            run(&api, request, responder)
                        }));
                    }
                })?;
        }
        Ok(Offload { tx })
    }

    /// Queues `request`; the reply is deferred.
    pub fn submit(&self, request: Request<Ctx>) -> Reply {
        let (reply, responder) = request.defer();
        if let Err(
            TrySendError::Full((_, responder)) | TrySendError::Disconnected((_, responder)),
        ) = self.tx.try_send((request, responder))
        {
            let busy = ApiError::Unavailable("Every handler is busy; retry shortly".into());
            responder.send(busy.into_response().with_header("Retry-After", "1"));
        }
        reply
    }
}

/// Catches up, re-admits, handles.
fn run(api: &Arc<Api>, request: Request<Ctx>, responder: Responder) {
    let tenant = request.context.principal.as_ref().map(|p| p.tenant.clone());
    let tenant = tenant.filter(|t| !t.is_empty());
    let read = matches!(request.head.method(), Method::Get | Method::Head);
    let caught_up = match tenant.as_deref() {
        // A read takes a lease: the tenant's next reads are answered on the loop.
        Some(t) if read => api.store().catch_up_to_read(t),
        t => api.store().catch_up(t),
    };
    if let Err(e) = caught_up {
        return responder.send(ApiError::from(e).into_response());
    }
    if let Err(refusal) = api.readmit(&request.head, &request.context) {
        return responder.send(refusal);
    }
    responder.reply(api.serve(request));
}

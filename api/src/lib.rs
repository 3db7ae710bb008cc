//! `halyard-api`: routes, authentication, admission and handlers of the v1 API.
//!
//! This first cut serves only the engine's contract: every request outside the engine's
//! operations routes is admitted with the route's body limit (1 MiB, or 60 MiB for
//! project import) and answered `404 NOT_FOUND` in the conventions' envelope. The
//! resources, auth and tenancy come with the API issue.

use halyard_engine::{Admission, App, Reply, Request, RequestHead, Response};

/// Body limit of every route but import (CONVENTIONS section 3).
pub const BODY_LIMIT: u64 = 1024 * 1024;
/// Body limit of `POST /api/projects/:projectId/project-io/import`.
pub const IMPORT_BODY_LIMIT: u64 = 60 * 1024 * 1024;

/// The API application.
#[derive(Debug, Default)]
pub struct Api {}

impl Api {
    /// A new API.
    pub fn new() -> Self {
        Api {}
    }
}

fn is_import(path: &str) -> bool {
    path.strip_prefix("/api/projects/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_, tail)| tail == "project-io/import")
}

impl App for Api {
    type Context = ();

    fn admit(&self, head: &RequestHead) -> Admission<()> {
        let body_limit = if is_import(head.path()) {
            IMPORT_BODY_LIMIT
        } else {
            BODY_LIMIT
        };
        Admission::Accept {
            body_limit,
            context: (),
        }
    }

    fn handle(&self, request: Request<()>) -> Reply {
        let msg = format!(
            "No route for {} {}",
            request.head.method_str(),
            request.head.path()
        );
        Reply::Now(Response::error(404, "NOT_FOUND", &msg))
    }
}

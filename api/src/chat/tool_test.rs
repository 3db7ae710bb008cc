//! `POST /api/projects/:pid/tools/:toolId/test`: one call of a tool, as a task on the loop
//! of the request, with the input and time limit the caller gives.
//!
//! Responsible for: running the call exactly as a turn would (the same [`ToolRound`]:
//! argument check, reach, secret, limits) and answering `{output, durationMs, error?}`.
//! Not responsible for: reading the request (the tool routes) or storing anything.

use std::sync::Arc;

use halyard_engine::{Cx, Event, Responder, Response, Status, Task};
use halyard_storage::Tool;
use serde_json::{json, Value};

use super::provider::ToolCall;
use super::runtime::Shared;
use super::tool_round::ToolRound;
use crate::error::ApiError;
use crate::reply::Finish;

/// What to test.
#[derive(Debug)]
pub struct ToolTest {
    /// Tenant.
    pub tenant: String,
    /// The tool (its `timeoutMs` replaced by the caller's, if given).
    pub tool: Tool,
    /// The arguments.
    pub input: Value,
    /// The deferred reply.
    pub responder: Responder,
    /// Headers every response of the request gets.
    pub finish: Finish,
}

/// The task running one [`ToolTest`].
pub(crate) struct ToolTestTask {
    shared: Arc<Shared>,
    test: Option<ToolTest>,
    round: Option<ToolRound>,
}

impl ToolTestTask {
    pub(crate) fn new(shared: Arc<Shared>, test: ToolTest) -> Self {
        ToolTestTask {
            shared,
            test: Some(test),
            round: None,
        }
    }

    fn start(&mut self, cx: &mut Cx<'_>) -> Status {
        let Some(test) = &self.test else {
            return Status::Done;
        };
        let call = ToolCall {
            id: "test".into(),
            name: test.tool.name.clone(),
            arguments: test.input.to_string(),
        };
        let (shared, tenant, pid) = (&self.shared, &test.tenant, &test.tool.project_id);
        let secret = |name: &str| shared.open_secret(tenant, pid, name);
        let tools = std::slice::from_ref(&test.tool);
        let reach = &self.shared.cfg.tool_reach;
        self.round = Some(ToolRound::start(vec![call], tools, &secret, reach, cx));
        self.answer_if_done()
    }

    fn answer_if_done(&mut self) -> Status {
        if !self.round.as_ref().is_some_and(ToolRound::is_done) {
            return Status::Pending;
        }
        let (Some(round), Some(test)) = (self.round.take(), self.test.take()) else {
            return Status::Done;
        };
        let Some(r) = round.results().into_iter().next() else {
            return Status::Done;
        };
        let mut data = json!({"output": Value::Null, "durationMs": r.duration_ms});
        match r.outcome {
            Ok(text) => data["output"] = text.into(),
            Err(e) => data["error"] = e.into(),
        }
        let body = json!({"success": true, "data": data});
        let resp = Response::json(200, serde_json::to_vec(&body).unwrap_or_default());
        test.responder.send(test.finish.apply(resp));
        Status::Done
    }
}

impl Task for ToolTestTask {
    fn on_event(&mut self, event: Event, cx: &mut Cx<'_>) -> Status {
        match event {
            Event::Start => self.start(cx),
            Event::Http(id, e) => {
                if let Some(round) = &mut self.round {
                    round.on_http(id, e, cx);
                }
                self.answer_if_done()
            }
            Event::Shutdown => {
                if let Some(round) = &mut self.round {
                    round.cancel(cx);
                }
                if let Some(test) = self.test.take() {
                    let e = ApiError::Unavailable("The server is shutting down".into());
                    test.responder.send(test.finish.apply(e.into_response()));
                }
                Status::Done
            }
            _ => Status::Pending,
        }
    }
}

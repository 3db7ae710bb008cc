//! A turn's trace, recorded as the turn goes: its root span (`response`), a span per model
//! call (`llm_call`) and per tool call (`tool_call`, then `tool_result` in the same span),
//! and `error` when it fails.
//!
//! Responsible for: span ids and parents, start times and durations, tokens and cost per
//! model call and for the turn, and the details kept (tool arguments and results, cut to
//! [`MAX_DATA`]; the messages of errors, which never carry a secret's value). Not
//! responsible for: storing the events (the turn commits them with its reply).

use std::collections::HashMap;
use std::time::Instant;

use halyard_storage::{ids, TraceEvent, TraceKind, Usage};
use serde_json::{json, Value};

use super::provider::ToolCall;
use super::tool_round::CallResult;

/// The most bytes of a tool's arguments or result kept in a trace event.
pub const MAX_DATA: usize = 4 * 1024;

/// The trace of one turn.
#[derive(Debug)]
pub struct Tracer {
    root: String,
    started_ms: u64,
    started: Instant,
    /// The model call running: its span, start (ms) and clock.
    llm: Option<(String, u64, Instant)>,
    /// The span of the last finished model call (tool calls are its children).
    last_llm: Option<String>,
    /// Each running tool call's span, by call id.
    calls: HashMap<String, (String, u64)>,
    events: Vec<TraceEvent>,
}

fn span() -> String {
    ids::new_id("spn_")
}

/// `text` cut to [`MAX_DATA`] bytes on a character boundary.
fn bounded(text: &str) -> &str {
    let mut end = text.len().min(MAX_DATA);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Tracer {
    /// The trace of a turn that starts now.
    pub fn start() -> Tracer {
        Tracer {
            root: span(),
            started_ms: crate::time::now_ms(),
            started: Instant::now(),
            llm: None,
            last_llm: None,
            calls: HashMap::new(),
            events: Vec::new(),
        }
    }

    fn event(&self, kind: TraceKind, span_id: String, parent: Option<String>) -> TraceEvent {
        TraceEvent {
            kind,
            span_id,
            parent_span_id: parent,
            name: String::new(),
            started_at: crate::time::now_ms(),
            duration_ms: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost: None,
            data: "{}".into(),
        }
    }

    /// A model call begins.
    pub fn llm_started(&mut self) {
        self.llm = Some((span(), crate::time::now_ms(), Instant::now()));
    }

    /// The model call ended with `usage` (costing `cost`), asking for `calls`.
    pub fn llm_done(
        &mut self,
        model: &str,
        usage: &Usage,
        cost: Option<f64>,
        finish: &str,
        calls: usize,
    ) {
        let Some((id, at, clock)) = self.llm.take() else {
            return;
        };
        let mut e = self.event(TraceKind::LlmCall, id.clone(), Some(self.root.clone()));
        e.name = model.into();
        e.started_at = at;
        e.duration_ms = clock.elapsed().as_millis() as u64;
        e.input_tokens = usage.input_tokens;
        e.output_tokens = usage.output_tokens;
        e.cost = cost;
        e.data = json!({"finishReason": finish, "toolCalls": calls}).to_string();
        self.events.push(e);
        self.last_llm = Some(id);
    }

    /// The model's calls begin.
    pub fn calls_started(&mut self, calls: &[ToolCall]) {
        for c in calls {
            let id = span();
            let mut e = self.event(TraceKind::ToolCall, id.clone(), self.last_llm.clone());
            e.name = c.name.clone();
            e.data = json!({"id": c.id, "arguments": bounded(&c.arguments)}).to_string();
            self.calls.insert(c.id.clone(), (id, e.started_at));
            self.events.push(e);
        }
    }

    /// A call ended.
    pub fn call_done(&mut self, r: &CallResult) {
        let (id, at) = self
            .calls
            .remove(&r.call.id)
            .unwrap_or_else(|| (span(), crate::time::now_ms()));
        let mut e = self.event(TraceKind::ToolResult, id, self.last_llm.clone());
        e.name = r.call.name.clone();
        e.started_at = at;
        e.duration_ms = r.duration_ms;
        e.data = match &r.outcome {
            Ok(text) => json!({"id": r.call.id, "result": bounded(text)}),
            Err(err) => json!({"id": r.call.id, "error": bounded(err)}),
        }
        .to_string();
        self.events.push(e);
    }

    /// The turn failed with `message`.
    pub fn failed(&mut self, code: &str, message: &str) {
        let mut e = self.event(TraceKind::Error, span(), Some(self.root.clone()));
        e.name = code.into();
        e.data = json!({"message": message}).to_string();
        self.events.push(e);
    }

    /// The turn answered: its root span with the turn's tokens and cost. The events, to
    /// store.
    pub fn finish(
        &mut self,
        model: &str,
        usage: &Usage,
        cost: Option<f64>,
        data: Value,
    ) -> Vec<TraceEvent> {
        let mut e = self.event(TraceKind::Response, self.root.clone(), None);
        e.name = model.into();
        e.started_at = self.started_ms;
        e.duration_ms = self.started.elapsed().as_millis() as u64;
        e.input_tokens = usage.input_tokens;
        e.output_tokens = usage.output_tokens;
        e.cost = cost;
        e.data = data.to_string();
        self.events.push(e);
        std::mem::take(&mut self.events)
    }

    /// The events so far (a turn that ends without an answer).
    pub fn take(&mut self) -> Vec<TraceEvent> {
        std::mem::take(&mut self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_nest_under_the_turn_and_the_model_call() {
        let mut t = Tracer::start();
        t.llm_started();
        let usage = Usage {
            input_tokens: 5,
            output_tokens: 2,
            total_tokens: 7,
            latency_ms: 0,
        };
        t.llm_done("m", &usage, Some(0.5), "tool_calls", 1);
        let call = ToolCall {
            id: "c1".into(),
            name: "clock".into(),
            arguments: "x".repeat(MAX_DATA + 10),
        };
        t.calls_started(std::slice::from_ref(&call));
        t.call_done(&CallResult {
            call,
            outcome: Err("boom".into()),
            duration_ms: 3,
        });
        let events = t.finish("m", &usage, None, json!({}));
        let kinds: Vec<TraceKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                TraceKind::LlmCall,
                TraceKind::ToolCall,
                TraceKind::ToolResult,
                TraceKind::Response
            ]
        );
        let root = &events[3];
        assert_eq!(root.parent_span_id, None);
        assert_eq!(events[0].parent_span_id.as_ref(), Some(&root.span_id));
        assert_eq!(events[1].parent_span_id.as_ref(), Some(&events[0].span_id));
        assert_eq!(
            events[1].span_id, events[2].span_id,
            "a call and its result share a span"
        );
        assert!(events[1].data.len() < MAX_DATA + 100, "arguments are cut");
        assert_eq!(events[0].cost, Some(0.5));
        assert!(events[2].data.contains("boom"));
    }
}

//! A session's traces and the figures drawn from them
//! (`/api/projects/:pid/sessions/:id/traces` and `.../metrics`).
//!
//! Responsible for: the trace events as JSON (filtered by `eventType` and `spanId`,
//! paginated) and the session's metrics: latency of its turns, each turn's figures, tokens,
//! tool calls and their success rate. Not responsible for: recording (the turn's tracer).

use halyard_engine::Response;
use halyard_storage::{Listed, TraceEvent, TraceKind};
use serde_json::{json, Value};

use super::sessions::find;
use super::Call;
use crate::error::{ApiError, ApiResult};
use crate::{reply, time};

/// The name of a kind, as the API writes and filters it.
pub fn kind_name(k: TraceKind) -> &'static str {
    match k {
        TraceKind::LlmCall => "llm_call",
        TraceKind::ToolCall => "tool_call",
        TraceKind::ToolResult => "tool_result",
        TraceKind::Error => "error",
        TraceKind::Response => "response",
    }
}

fn view(e: &TraceEvent) -> Value {
    json!({
        "eventType": kind_name(e.kind),
        "spanId": e.span_id,
        "parentSpanId": e.parent_span_id,
        "name": e.name,
        "startedAt": time::iso(e.started_at),
        "durationMs": e.duration_ms,
        "tokens": {"input": e.input_tokens, "output": e.output_tokens},
        "cost": e.cost,
        "data": serde_json::from_str::<Value>(&e.data).unwrap_or(Value::Null),
    })
}

fn events(c: &Call<'_>) -> ApiResult<Vec<TraceEvent>> {
    let session = find(c)?;
    c.api
        .store
        .traces(c.tenant()?, &session.project_id, &session.id)
        .ok_or_else(|| ApiError::NotFound(format!("Session not found: {}", session.id)))
}

/// `GET /api/projects/:pid/sessions/:id/traces` (`?eventType=`, `?spanId=`): oldest first.
pub fn list(c: &Call<'_>) -> ApiResult<Response> {
    let kind = c.query("eventType");
    if let Some(k) = &kind {
        if !TraceKind::ALL.iter().any(|t| kind_name(*t) == k) {
            let names: Vec<&str> = TraceKind::ALL.iter().map(|t| kind_name(*t)).collect();
            return Err(ApiError::BadRequest(format!(
                "eventType must be one of {}",
                names.join(", ")
            )));
        }
    }
    let span = c.query("spanId");
    let page = c.page()?;
    let all: Vec<TraceEvent> = events(c)?
        .into_iter()
        .filter(|e| kind.as_deref().is_none_or(|k| kind_name(e.kind) == k))
        .filter(|e| span.as_deref().is_none_or(|s| e.span_id == s))
        .collect();
    let listed = Listed {
        total: all.len(),
        items: all.into_iter().skip(page.offset).take(page.limit).collect(),
    };
    Ok(reply::list("traces", &listed, page, view))
}

/// `GET /api/projects/:pid/sessions/:id/metrics`.
pub fn metrics(c: &Call<'_>) -> ApiResult<Response> {
    Ok(reply::ok(vec![("metrics", summary(&events(c)?))]))
}

/// The session's figures from its trace events.
fn summary(events: &[TraceEvent]) -> Value {
    let turns: Vec<&TraceEvent> = events
        .iter()
        .filter(|e| e.kind == TraceKind::Response)
        .collect();
    let mut latencies: Vec<u64> = turns.iter().map(|t| t.duration_ms).collect();
    latencies.sort_unstable();
    let pct = |p: usize| -> Value {
        match latencies.len() {
            0 => Value::Null,
            n => latencies[((n - 1) * p) / 100].into(),
        }
    };
    let avg = (!latencies.is_empty())
        .then(|| latencies.iter().sum::<u64>() as f64 / latencies.len() as f64);
    let per_turn: Vec<Value> = turns.iter().map(|t| turn(t, events)).collect();
    let of = |k: TraceKind| events.iter().filter(move |e| e.kind == k);
    let results = of(TraceKind::ToolResult).count();
    let failed = of(TraceKind::ToolResult).filter(|e| is_error(e)).count();
    let (input, output) = turns.iter().fold((0, 0), |(i, o), t| {
        (i + t.input_tokens, o + t.output_tokens)
    });
    json!({
        "turns": turns.len(),
        "latency": {"avgMs": avg, "p50Ms": pct(50), "p95Ms": pct(95), "maxMs": latencies.last()},
        "perTurn": per_turn,
        "tokens": {"input": input, "output": output, "total": input + output},
        "cost": turns.iter().filter_map(|t| t.cost).reduce(|a, b| a + b),
        "toolCalls": of(TraceKind::ToolCall).count(),
        "toolSuccessRate": (results > 0).then(|| (results - failed) as f64 / results as f64),
        "errors": of(TraceKind::Error).count(),
    })
}

fn is_error(e: &TraceEvent) -> bool {
    serde_json::from_str::<Value>(&e.data).is_ok_and(|d| d.get("error").is_some())
}

/// One turn's figures: its root span and the events under it.
fn turn(root: &TraceEvent, events: &[TraceEvent]) -> Value {
    let calls: Vec<&TraceEvent> = events
        .iter()
        .filter(|e| {
            e.kind == TraceKind::LlmCall && e.parent_span_id.as_ref() == Some(&root.span_id)
        })
        .collect();
    let call_spans: Vec<&String> = calls.iter().map(|e| &e.span_id).collect();
    let under_calls = |k: TraceKind| {
        events.iter().filter(move |e| e.kind == k).filter(|e| {
            e.parent_span_id
                .as_ref()
                .is_some_and(|p| call_spans.contains(&p))
        })
    };
    json!({
        "spanId": root.span_id,
        "startedAt": time::iso(root.started_at),
        "latencyMs": root.duration_ms,
        "tokens": {"input": root.input_tokens, "output": root.output_tokens},
        "cost": root.cost,
        "llmCalls": calls.len(),
        "toolCalls": under_calls(TraceKind::ToolCall).count(),
        "toolErrors": under_calls(TraceKind::ToolResult).filter(|e| is_error(e)).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: TraceKind, span: &str, parent: Option<&str>, ms: u64, data: &str) -> TraceEvent {
        TraceEvent {
            kind,
            span_id: span.into(),
            parent_span_id: parent.map(Into::into),
            name: "m".into(),
            started_at: 0,
            duration_ms: ms,
            input_tokens: 3,
            output_tokens: 2,
            cost: None,
            data: data.into(),
        }
    }

    #[test]
    fn metrics_count_turns_calls_and_failures() {
        let events = vec![
            ev(TraceKind::LlmCall, "l1", Some("t1"), 5, "{}"),
            ev(TraceKind::ToolCall, "c1", Some("l1"), 0, "{}"),
            ev(TraceKind::ToolCall, "c2", Some("l1"), 0, "{}"),
            ev(
                TraceKind::ToolResult,
                "c1",
                Some("l1"),
                4,
                r#"{"result":"ok"}"#,
            ),
            ev(
                TraceKind::ToolResult,
                "c2",
                Some("l1"),
                4,
                r#"{"error":"boom"}"#,
            ),
            ev(TraceKind::LlmCall, "l2", Some("t1"), 5, "{}"),
            ev(TraceKind::Response, "t1", None, 30, "{}"),
            ev(TraceKind::LlmCall, "l3", Some("t2"), 5, "{}"),
            ev(TraceKind::Response, "t2", None, 10, "{}"),
        ];
        let m = summary(&events);
        assert_eq!(m["turns"], 2);
        assert_eq!(m["toolCalls"], 2);
        assert_eq!(m["toolSuccessRate"], 0.5);
        assert_eq!(m["latency"]["maxMs"], 30);
        assert_eq!(m["latency"]["avgMs"], 20.0);
        assert_eq!(m["perTurn"][0]["llmCalls"], 2);
        assert_eq!(m["perTurn"][0]["toolCalls"], 2);
        assert_eq!(m["perTurn"][0]["toolErrors"], 1);
        assert_eq!(m["perTurn"][1]["toolCalls"], 0);
        assert_eq!(m["tokens"]["total"], 10);
        assert_eq!(summary(&[])["toolSuccessRate"], Value::Null);
    }
}

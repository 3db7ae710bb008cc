//! Analytics routes (`/api/projects/:pid/analytics/...`), answered from what turns already
//! record: the per-hour rollups storage keeps as traces and feedback apply (`metrics`), and
//! the traces themselves (`events`).

use halyard_engine::Response;
use halyard_storage::state::rollup::{Group, GroupBy, Rollup, DAY_MS, DURATION_BUCKETS_MS};
use halyard_storage::{Backend, Channel, SessionFilter, TraceKind};
use serde_json::{json, Map, Value};

use super::Call;
use crate::error::{ApiError, ApiResult};
use crate::{reply, time, view};

/// The `groupBy` values.
pub const GROUPS: &[&str] = &["agent_name", "channel", "environment", "hour", "day"];
/// The `metrics` values.
pub const METRICS: &[&str] = &[
    "count",
    "avg_duration",
    "p95_duration",
    "error_rate",
    "sum_tokens",
    "sum_cost",
    "positive_rate",
];
/// The most events one page may hold.
pub const MAX_EVENTS: usize = 10_000;

/// `from` and `to` of the query (RFC 3339; default: the 24 hours before now).
fn window(c: &Call<'_>) -> ApiResult<(u64, u64)> {
    let at = |name: &str| -> ApiResult<Option<u64>> {
        match c.query(name) {
            None => Ok(None),
            Some(v) => time::parse(&v).map(Some).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Query parameter '{name}' must be an RFC 3339 date-time, from 1970 on"
                ))
            }),
        }
    };
    let to = at("to")?.unwrap_or_else(time::now_ms);
    let from = at("from")?.unwrap_or(to.saturating_sub(DAY_MS));
    if from > to {
        return Err(ApiError::BadRequest("'from' is after 'to'".into()));
    }
    Ok((from, to))
}

/// A query parameter that must be one of `allowed`.
fn one_of(c: &Call<'_>, name: &str, allowed: &[&str]) -> ApiResult<Option<String>> {
    match c.query(name) {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::BadRequest(format!(
            "Query parameter '{name}' must be one of {}",
            allowed.join(", ")
        ))),
        v => Ok(v),
    }
}

fn group_by(name: &str) -> GroupBy {
    match name {
        "agent_name" => GroupBy::AgentName,
        "channel" => GroupBy::Channel,
        "environment" => GroupBy::Environment,
        "hour" => GroupBy::Hour,
        _ => GroupBy::Day,
    }
}

fn group_key(g: &Group) -> Value {
    match g {
        Group::Agent(name) => name.clone().into(),
        Group::Channel(ch) => view::channel(*ch).into(),
        Group::Environment(env) => env.map(|e| e.as_str()).into(),
        Group::Time(ms) => time::iso(*ms).into(),
    }
}

/// The asked-for figures of one bucket.
fn figures(r: &Rollup, metrics: &[&str]) -> Map<String, Value> {
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    let answered = r.answered();
    let mut out = Map::new();
    for m in metrics {
        let v: Value = match *m {
            "count" => r.turns.into(),
            "avg_duration" => ratio(r.duration_ms, answered).into(),
            // The bound of the bucket it falls in; past the last bucket, the last bound.
            "p95_duration" => r
                .p95_ms()
                .map(|p| p.min(DURATION_BUCKETS_MS[DURATION_BUCKETS_MS.len() - 1]))
                .into(),
            "error_rate" => ratio(r.errors, r.turns).into(),
            "sum_tokens" => r.tokens.into(),
            "sum_cost" => r.cost.into(),
            _ => ratio(r.positive, r.positive + r.negative).into(),
        };
        out.insert((*m).to_string(), v);
    }
    out
}

/// `GET /api/projects/:pid/analytics/metrics` (`from`, `to`, `groupBy`, `metrics`).
pub fn metrics(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    let (from, to) = window(c)?;
    let group = one_of(c, "groupBy", GROUPS)?;
    let asked: Vec<String> = match c.query("metrics") {
        None => METRICS.iter().map(|m| m.to_string()).collect(),
        Some(list) => list.split(',').map(|m| m.trim().to_string()).collect(),
    };
    if let Some(bad) = asked.iter().find(|m| !METRICS.contains(&m.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "Unknown metric '{bad}': one of {}",
            METRICS.join(", ")
        )));
    }
    let asked: Vec<&str> = asked.iter().map(String::as_str).collect();
    let by = group.as_deref().map_or(GroupBy::Day, group_by);
    let mut groups = c
        .api
        .store
        .analytics(c.tenant()?, &project.id, from, to, by);
    if group.is_none() {
        // No grouping: the whole window is one bucket.
        let mut all = Rollup::default();
        for (_, r) in &groups {
            all.add(r);
        }
        groups = vec![(Group::Time(from), all)];
    }
    let buckets: Vec<Value> = groups
        .iter()
        .map(|(g, r)| {
            let key = if group.is_some() {
                group_key(g)
            } else {
                Value::Null
            };
            let mut b = Map::new();
            b.insert("key".into(), key);
            b.extend(figures(r, &asked));
            Value::Object(b)
        })
        .collect();
    let data =
        json!({"from": time::iso(from), "to": time::iso(to), "groupBy": group, "buckets": buckets});
    Ok(reply::ok(vec![("data", data)]))
}

/// `GET /api/projects/:pid/analytics/events`: the turns of the window (their `response` or
/// `error` trace events), newest first; `agentName`, `channel`, `environment`,
/// `eventType` filter; `limit` (at most 10,000) and `offset` page.
pub fn events(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    let (from, to) = window(c)?;
    let page = crate::query::page_up_to(c.req.head.query(), MAX_EVENTS)?;
    let agent = c.query("agentName");
    let channel = one_of(c, "channel", &["api", "sdk"])?;
    let env = one_of(c, "environment", super::deployments::ENVIRONMENTS)?;
    let kind = one_of(c, "eventType", &["response", "error"])?;
    let tenant = c.tenant()?;
    let store: &dyn Backend = &*c.api.store;
    let filter = SessionFilter {
        channel: channel.as_deref().map(|ch| {
            if ch == "sdk" {
                Channel::Sdk
            } else {
                Channel::Api
            }
        }),
        ..SessionFilter::default()
    };
    let sessions = store.sessions(tenant, &project.id, &filter, halyard_storage::Page::ALL);
    let mut found = Vec::new();
    for s in sessions.items {
        if agent.as_deref().is_some_and(|a| a != s.agent_name) {
            continue;
        }
        let environment = store
            .session_deployment(tenant, &project.id, &s.id)
            .and_then(|d| store.deployment(tenant, &project.id, &d))
            .map(|d| d.environment.as_str());
        if env.as_deref().is_some_and(|e| Some(e) != environment) {
            continue;
        }
        let traces = store.traces(tenant, &project.id, &s.id).unwrap_or_default();
        for e in traces {
            let name = match e.kind {
                TraceKind::Response => "response",
                TraceKind::Error => "error",
                _ => continue,
            };
            if e.started_at < from
                || e.started_at > to
                || kind.as_deref().is_some_and(|k| k != name)
            {
                continue;
            }
            let mut v = json!({
                "sessionId": s.id,
                "agentName": s.agent_name,
                "channel": view::channel(s.channel),
                "environment": environment,
                "eventType": name,
                "spanId": e.span_id,
                "startedAt": time::iso(e.started_at),
                "durationMs": e.duration_ms,
                "tokens": {"input": e.input_tokens, "output": e.output_tokens},
                "cost": e.cost,
            });
            if e.kind == TraceKind::Error {
                v["error"] = e.name.clone().into();
            }
            found.push((e.started_at, v));
        }
    }
    found.sort_by_key(|e| std::cmp::Reverse(e.0));
    let total = found.len();
    let events: Vec<Value> = found
        .into_iter()
        .skip(page.offset)
        .take(page.limit)
        .map(|(_, v)| v)
        .collect();
    let has_more = page.offset + events.len() < total;
    let data = json!({"events": events, "total": total, "hasMore": has_more});
    Ok(reply::ok(vec![("data", data)]))
}

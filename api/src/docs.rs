//! The API reference (`docs/api.md`) and the generated tables of the conventions page
//! (`docs/conventions.md`), rendered from the tables the server runs on.
//!
//! Responsible for: writing, as Markdown, the route table (`route::ROUTES`: method, path,
//! guard, success status, body limit), each route's request body from its `body::Field`
//! declaration and its query parameters (the same ones the OpenAPI document states), the
//! error codes (`ApiError::catalog`, the engine's own, the stream-only ones), the stream
//! events (`chat::sse::EVENTS`), the scopes and roles (`scope`) and the limits and
//! defaults (the constants themselves); and splicing the generated tables into the
//! hand-written conventions page between `<!-- generated:NAME -->` markers.
//! `cargo run -p halyard-api --example gen_docs` writes the files; `api/tests/docs.rs`
//! fails when the committed ones differ, so the pages cannot drift from the code.
//! Not responsible for: the prose of the other pages, or serving anything.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use halyard_engine::parse::{ParseError, MAX_HEADERS, MAX_HEADER_BYTES, MAX_REQUEST_LINE};
use halyard_storage::Limits;
use serde_json::Value;

use crate::admission::LimitConfig;
use crate::body::{Field, Item, Presence, Rule, Text, Unit};
use crate::chat::{runtime, sse, turn};
use crate::error::ApiError;
use crate::handlers::{declared_body, RequestBody};
use crate::route::{self, Guard, RouteDef, RouteId, ROUTES};
use crate::scope::{self, Scopes};

/// The reference page, relative to the repository root.
pub const API_PAGE: &str = "docs/api.md";
/// The conventions page, whose generated tables this module writes.
pub const CONVENTIONS_PAGE: &str = "docs/conventions.md";
/// The command that rewrites the generated pages.
pub const REGENERATE: &str = "cargo run -p halyard-api --example gen_docs";

/// The routes the engine answers itself, before the API sees a request.
pub const OPERATIONS_ROUTES: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/health/live",
        "`200 {\"status\":\"ok\"}` while the process runs",
    ),
    (
        "GET",
        "/health/ready",
        "`200 {\"status\":\"ready\"}`; `503 SERVICE_UNAVAILABLE` while storage is not healthy (a failed fsync) or the server is draining",
    ),
    (
        "GET",
        "/metrics",
        "Prometheus text: requests by status class and by route template and method, latency histograms, open connections and streams, accept refusals and pauses, parse errors, timeouts, handler panics, access log drops, TLS handshakes, rate-limit refusals by reason, turns and tokens by provider, provider latency, storage commits, fsync latency, log size and snapshot age (docs/operations.md, \"Metrics\")",
    ),
];

/// Error codes the engine answers before a request reaches the API (the others it shares
/// with the API: `BAD_REQUEST`, `PAYLOAD_TOO_LARGE`, `METHOD_NOT_ALLOWED`,
/// `INTERNAL_ERROR`, `SERVICE_UNAVAILABLE`).
fn engine_errors() -> Vec<(u16, &'static str, String)> {
    vec![
        (
            408,
            "REQUEST_TIMEOUT",
            "a request head (or body) not received in time (`--header-timeout-ms`, `--idle-timeout-ms`); then close".into(),
        ),
        (
            ParseError::UriTooLong.status(),
            ParseError::UriTooLong.code(),
            format!("request line over {MAX_REQUEST_LINE} bytes; then close"),
        ),
        (
            ParseError::HeadersTooLarge.status(),
            ParseError::HeadersTooLarge.code(),
            format!(
                "header section over {MAX_HEADER_BYTES} bytes or more than {MAX_HEADERS} headers; then close"
            ),
        ),
    ]
}

/// Every error code a client can see, in status order: `(status, code, when)`.
pub fn error_codes() -> Vec<(u16, &'static str, String)> {
    let mut all: Vec<(u16, &'static str, String)> = ApiError::catalog()
        .into_iter()
        .map(|(e, when)| (e.status(), e.code(), when.to_string()))
        .collect();
    all.extend(engine_errors());
    all.sort_by_key(|(status, _, _)| *status);
    all
}

/// One generated file: where it goes, and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Path relative to the repository root.
    pub path: &'static str,
    /// The whole file as it must be.
    pub content: String,
}

/// The generated pages, given the repository `root` (the conventions page is read there,
/// and its generated tables replaced).
pub fn pages(root: &Path) -> Result<Vec<Page>, String> {
    let conventions_path: PathBuf = root.join(CONVENTIONS_PAGE);
    let mut conventions = std::fs::read_to_string(&conventions_path)
        .map_err(|e| format!("cannot read {}: {e}", conventions_path.display()))?;
    for (name, table) in sections() {
        conventions = splice(&conventions, name, &table)?;
    }
    Ok(vec![
        Page {
            path: API_PAGE,
            content: api_reference(),
        },
        Page {
            path: CONVENTIONS_PAGE,
            content: conventions,
        },
    ])
}

/// The tables spliced into the conventions page, by marker name.
pub fn sections() -> Vec<(&'static str, String)> {
    vec![
        ("errors", error_table()),
        ("stream-errors", stream_error_table()),
        ("events", event_table()),
        ("scopes", scope_table()),
        ("limits", limits_table()),
    ]
}

/// `doc` with the lines between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`
/// replaced by `content`.
pub fn splice(doc: &str, name: &str, content: &str) -> Result<String, String> {
    let open = format!("<!-- generated:{name} -->\n");
    let close = format!("<!-- /generated:{name} -->");
    let start = doc
        .find(&open)
        .ok_or_else(|| format!("{CONVENTIONS_PAGE} lacks the marker line {}", open.trim()))?
        + open.len();
    let end = doc[start..]
        .find(&close)
        .ok_or_else(|| format!("{CONVENTIONS_PAGE} lacks the marker {close}"))?
        + start;
    Ok(format!("{}{content}{}", &doc[..start], &doc[end..]))
}

// ---- the reference ----

/// The whole API reference page.
pub fn api_reference() -> String {
    let mut out = String::new();
    out.push_str(
        "# API reference\n\n\
         <!-- Generated from the route table and the body declarations by\n     \
         `cargo run -p halyard-api --example gen_docs`; do not edit by hand\n     \
         (api/tests/docs.rs fails when this file differs from what the code says). -->\n\n\
         Every route the server answers, with the credential it needs, its request body and\n\
         query, and its answer; then the error codes, the stream events and the scopes.\n\
         The rules every route follows (envelope, pagination, rate limits, streaming, CORS)\n\
         are in [conventions.md](conventions.md). The server also serves this as an OpenAPI\n\
         3.1 document at `GET /api/v1/openapi.json`, built from the same tables.\n\n\
         Path parameters (`:name`) are opaque ids or names of at most 64 bytes. A request\n\
         body is JSON (`Content-Type: application/json`); an empty body reads as `{}`;\n\
         fields not listed are ignored.\n\n",
    );
    out.push_str("## Routes\n\n");
    out.push_str("| method | path | credential | success | summary |\n|---|---|---|---|---|\n");
    for (method, path, _) in OPERATIONS_ROUTES {
        let _ = writeln!(out, "| {method} | `{path}` | none | 200 | operations |");
    }
    for def in ROUTES {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} |",
            def.method.as_str(),
            def.pattern,
            guard_short(def.guard),
            def.success,
            def.summary
        );
    }
    out.push_str(
        "\n`HEAD` is answered wherever `GET` is. `OPTIONS` on a known path is a CORS preflight\n\
         (see [conventions.md](conventions.md#cors)); a known path with another method is\n\
         `405 METHOD_NOT_ALLOWED` with `Allow`; any other path is `404 NOT_FOUND`.\n\n",
    );
    out.push_str("## Operations\n\nAnswered by the engine itself, without a credential.\n\n");
    out.push_str("| method | path | answer |\n|---|---|---|\n");
    for (method, path, answer) in OPERATIONS_ROUTES {
        let _ = writeln!(out, "| {method} | `{path}` | {answer} |");
    }
    out.push('\n');
    for def in ROUTES {
        route_section(&mut out, def);
    }
    out.push_str("## Error codes\n\nEvery error is `{\"success\": false, \"error\": {\"code\", \"message\"}}`");
    out.push_str(" (see [conventions.md](conventions.md#errors)).\n\n");
    out.push_str(&error_table());
    out.push_str("\nCodes of `event: error` that only streams send:\n\n");
    out.push_str(&stream_error_table());
    out.push_str("\n## Stream events\n\n");
    out.push_str(
        "`text/event-stream` answers (routes marked SSE above) send these events, each with an\n\
         `id:` (1, 2, ... within the stream) and one line of JSON `data:`.\n\n",
    );
    out.push_str(&event_table());
    out.push_str("\n## Scopes and roles\n\n");
    out.push_str(&scope_table());
    out
}

fn guard_short(guard: Guard) -> String {
    match guard {
        Guard::Public => "none".into(),
        Guard::Root => "root key".into(),
        Guard::Scope(None) => "any tenant credential".into(),
        Guard::Scope(Some(s)) => format!("`{}`", s.name()),
        Guard::PublicKey => "`pk_` + Origin".into(),
        Guard::SdkToken => "`sdk_` + Origin".into(),
    }
}

fn guard_long(guard: Guard) -> String {
    match guard {
        Guard::Public => "none".into(),
        Guard::Root => {
            "the operator root key (`HALYARD_ROOT_KEY`) as `Authorization: Bearer`".into()
        }
        Guard::Scope(None) => {
            "any tenant credential: a JWT, a user or service API key, or an SDK token".into()
        }
        Guard::Scope(Some(s)) => format!(
            "a tenant credential (JWT, API key or SDK token) holding `{}`",
            s.name()
        ),
        Guard::PublicKey => {
            "a widget public key `pk_...` in `X-Public-Key` (or `X-API-Key`), and an `Origin` the key allows".into()
        }
        Guard::SdkToken => {
            "an SDK token in `X-SDK-Token`, and the `Origin` it was issued for".into()
        }
    }
}

fn route_section(out: &mut String, def: &RouteDef) {
    let _ = writeln!(
        out,
        "## `{} {}`\n\n{}.\n",
        def.method.as_str(),
        def.pattern,
        def.summary
    );
    let _ = writeln!(out, "- Credential: {}.", guard_long(def.guard));
    let content = if crate::openapi::is_stream(def.id) {
        "`text/event-stream` (SSE; errors before the stream starts are JSON)"
    } else if def.id == RouteId::Widget {
        "`text/javascript`"
    } else {
        "`application/json`"
    };
    let _ = writeln!(out, "- Success: `{}`, {content}.", def.success);
    let params: Vec<&str> = def
        .pattern
        .split('/')
        .filter_map(|s| s.strip_prefix(':'))
        .collect();
    if !params.is_empty() {
        let list: Vec<String> = params.iter().map(|p| format!("`{p}`")).collect();
        let _ = writeln!(out, "- Path parameters: {}.", list.join(", "));
    }
    if crate::openapi::is_list(def.id) {
        out.push_str(
            "- Paginated: `limit`, `offset`; the answer carries `pagination` ([conventions](conventions.md#pagination)).\n",
        );
    }
    let query = crate::openapi::bodies::query(def.id);
    if !query.is_empty() {
        out.push_str("- Query parameters:\n");
        for q in &query {
            let _ = writeln!(out, "  - {}", query_param(q));
        }
    }
    let has_body = matches!(
        def.method,
        halyard_engine::Method::Post | halyard_engine::Method::Put | halyard_engine::Method::Patch
    );
    if has_body {
        let _ = writeln!(out, "- Body limit: {}.", bytes(route::body_limit(def.id)));
    }
    let _ = writeln!(out, "- Answer: {}", answer(def.id));
    out.push('\n');
    if has_body {
        match declared_body(def.id) {
            RequestBody::Any => out.push_str("No body is read.\n\n"),
            RequestBody::Object(fields) => field_table(out, fields),
            RequestBody::Either(a, b) => {
                out.push_str("Either a turn on a session:\n\n");
                field_table(out, a);
                out.push_str(
                    "or a direct model call (chosen when `messages` is present or `sessionId` absent):\n\n",
                );
                field_table(out, b);
            }
        }
    }
}

/// One query parameter as the OpenAPI document states it.
fn query_param(q: &Value) -> String {
    let name = q["name"].as_str().unwrap_or_default();
    let required = if q["required"].as_bool() == Some(true) {
        "required"
    } else {
        "optional"
    };
    let schema = &q["schema"];
    let what = if let Some(options) = schema["enum"].as_array() {
        let options: Vec<String> = options
            .iter()
            .map(|o| format!("`{}`", o.as_str().unwrap_or_default()))
            .collect();
        format!("one of {}", options.join(", "))
    } else if let Some(format) = schema["format"].as_str() {
        format!("{format} (ISO 8601)")
    } else {
        let max = schema["maxLength"].as_u64().unwrap_or_default();
        format!("string of at most {max} characters")
    };
    format!("`{name}` ({required}): {what}")
}

fn field_table(out: &mut String, fields: &[Field]) {
    out.push_str("| field | type | required | rules |\n|---|---|---|---|\n");
    field_rows(out, "", fields);
    out.push('\n');
}

fn field_rows(out: &mut String, prefix: &str, fields: &[Field]) {
    for f in fields {
        let path = format!("{prefix}{}", f.name);
        let (kind, mut rules) = rule_text(&f.rule);
        if f.clearable {
            rules.push("`null` clears it".into());
        }
        let required = match f.presence {
            Presence::Optional => "no".to_string(),
            Presence::Required => "yes".to_string(),
            Presence::RequiredWith(other) => format!("with `{other}`"),
            Presence::RequiredIf { field, equals } => format!("when `{field}` is `{equals}`"),
        };
        let _ = writeln!(
            out,
            "| `{path}` | {kind} | {required} | {} |",
            rules.join("; ")
        );
        match &f.rule {
            Rule::Object(inner) => field_rows(out, &format!("{path}."), inner),
            Rule::List {
                item: Item::Object(inner),
                ..
            } => field_rows(out, &format!("{path}[]."), inner),
            _ => {}
        }
    }
}

/// A rule's type name and its constraints.
fn rule_text(rule: &Rule) -> (String, Vec<String>) {
    match rule {
        Rule::Text(t) => ("string".into(), text_rules(t)),
        Rule::OneOf(options) => ("string".into(), vec![one_of(options)]),
        Rule::Bool => ("boolean".into(), Vec::new()),
        Rule::Whole { min, max } => ("integer".into(), vec![format!("{min} to {max}")]),
        Rule::Number { min, max } => ("number".into(), vec![format!("{min} to {max}")]),
        Rule::Time => (
            "string".into(),
            vec!["RFC 3339 date-time, from 1970".into()],
        ),
        Rule::Json { max_bytes } => (
            "object".into(),
            vec![format!("any object, at most {max_bytes} bytes as JSON")],
        ),
        Rule::Manifest { max_entries } => (
            "object".into(),
            vec![format!(
                "1 to {max_entries} agent names, each to a version number (from 1) or `\"auto\"`"
            )],
        ),
        Rule::Object(_) => ("object".into(), vec!["fields below".into()]),
        Rule::List {
            item,
            min_items,
            max_items,
        } => {
            let mut rules = vec![format!("{min_items} to {max_items} items")];
            let kind = match item {
                Item::Text(t) => {
                    let each = text_rules(t);
                    if !each.is_empty() {
                        rules.push(format!("each {}", each.join(", ")));
                    }
                    "array of strings"
                }
                Item::OneOf(options) => {
                    rules.push(format!("each {}", one_of(options)));
                    "array of strings"
                }
                Item::Object(_) => {
                    rules.push("item fields below".into());
                    "array of objects"
                }
            };
            (kind.into(), rules)
        }
    }
}

fn text_rules(t: &Text) -> Vec<String> {
    let unit = match t.unit {
        Unit::Chars => "characters",
        Unit::Bytes => "bytes",
    };
    let mut rules = vec![if t.min == 0 {
        format!("at most {} {unit}", t.max)
    } else {
        format!("{} to {} {unit}", t.min, t.max)
    }];
    if let Some(format) = t.format {
        rules.push(format!("matches `{}`", format.pattern));
    }
    rules
}

fn one_of(options: &[&str]) -> String {
    let options: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
    format!("one of {}", options.join(", "))
}

/// What a route answers on success. The match has an arm per route, so a new route does
/// not compile until its answer is written here.
fn answer(id: RouteId) -> &'static str {
    use RouteId::*;
    match id {
        OpenApi => "the OpenAPI 3.1 document of every route (JSON, not the envelope).",
        AdminTenantCreate => {
            "`{success, tenant, owner: {user, apiKey}}`: the tenant, an owner user (with `ownerEmail`/`ownerPassword`; else `user` is `null`) and a first `abl_sk-...` key holding every scope, `key:admin` included, shown only here."
        }
        AdminTenantList => "`{success, tenants, pagination}`.",
        AdminTenantPatch => "`{success, tenant}`; new limits apply to the next request.",
        AdminTenantDelete => {
            "`{success}`: the tenant and everything it owns (users, keys, projects, agents, tools, sessions, messages, secrets, public keys, streams) removed in one commit; the next compaction reclaims their bytes. `404` for an unknown tenant."
        }
        AdminTenantExport => {
            "`{success, manifest: {tenant, exportedAt, version}, users, apiKeys, projects: [{manifest, agents, tools, versions, deployments, project, sessions (with messages), secrets, publicKeys}]}`: no password hashes, key digests or secret values; each project entry imports as a project document."
        }
        AdminBackup => {
            "`{success, backup: {path, bytes, files, lastSegment, createdAt}}`: a checked backup written to `--backup-dir/NAME` (`to`, one plain name; default `backup-TIME`); `503` without `--backup-dir`, `409` when the name exists or a backup runs."
        }
        Login => {
            "`{success, data: {token, expiresIn, user, tenantId}}` (an HS256 JWT). A wrong password and an unknown email are the same `401` after the same work. Each login is charged to the client address's budget first."
        }
        Me => "`{success, data: {tenantId, principal, kind, scopes, projectIds}}`; `kind` is `jwt`, `api_key`, `service_key`, `sdk_token` or `public_key`.",
        UserCreate => "`{success, user}`; the password is stored as an Argon2id hash. `409` on a taken email.",
        UserList => "`{success, users, pagination}`.",
        KeyCreate => {
            "`{success, apiKey: {id, name, prefix, last4, kind, scopes, projectIds, expiresAt, createdAt, ...}, key}`: the secret `key` only here (`abl_sk-...` for `kind: user`, `ak_...` for `service`). Without `scopes`: every scope but `key:admin`. A credential limited to projects cannot create a key beyond them. `409` on a duplicate name."
        }
        KeyList => "`{success, apiKeys, pagination}`, never the secrets.",
        KeyDelete => "`{success}`; the key is `401` from the next request on.",
        ProjectList => "`{success, projects, pagination}`.",
        ProjectCreate => "`{success, project: {id, name, slug, description, entryAgentName, createdAt, updatedAt}}`; `409` when the slug is taken.",
        ProjectGet => "`{success, project}`.",
        ProjectPatch => "`{success, project}`.",
        ProjectDelete => "`{success}`; its agents, sessions, keys and secrets go with it.",
        AgentList => "`{success, agents, pagination}`.",
        AgentCreate => "`{success, agent}`; `409` when the name exists in the project.",
        AgentGet => "`{success, agent}`.",
        AgentPut => "`{success, agent}`: the whole agent replaced.",
        AgentDsl => "`{success, updatedAt}`.",
        AgentDelete => "`{success}`; `409` naming the active deployments that pin the agent (retire them first). Its versions stay.",
        AgentDirectory => "`{success, agents, pagination}` across the tenant's projects.",
        AgentByName => {
            "`{success, agent}` with `Cache-Control: private, max-age=300`; `?projectId=` picks among projects holding the name; unknown: `404 \"Agent not found: NAME\"`."
        }
        SessionCreate => {
            "`{success, session: {id, projectId, agentId, agentName, status, channel, messageCount, tokenCount, metadata, createdAt, lastActivityAt}}`; the agent is `agentId`, else `agentName`, else the project's `entryAgentName`. Counts toward the tenant's concurrent sessions (`429` past the limit)."
        }
        SessionList => "`{success, sessions, pagination}`, newest first; an SDK token sees only the sessions it created.",
        SessionGet => "`{success, session}`.",
        SessionEnd => "`{success}`; the session is `ended` (history kept) and frees its concurrency slot.",
        SessionReset => "`{success, session}` with its messages cleared, same id.",
        SessionMessages => "`{success, messages: [{id, role, content, usage, createdAt}], pagination}`, oldest first.",
        SessionTraces => {
            "`{success, traces: [{eventType, spanId, parentSpanId, name, startedAt, durationMs, tokens: {input, output}, cost, data}], pagination}`, oldest first. `eventType` is `llm_call`, `tool_call`, `tool_result`, `error` or `response`; a turn's `response` span is the root, its model calls its children, its tool calls children of the model call that asked (a call and its result share a span). `data` holds a tool's arguments and result (cut to 4 KiB), an error's message; never a secret's value."
        }
        SessionMetrics => {
            "`{success, metrics: {turns, latency: {avgMs, p50Ms, p95Ms, maxMs}, perTurn: [{spanId, startedAt, latencyMs, tokens, cost, llmCalls, toolCalls, toolErrors}], tokens: {input, output, total}, cost, toolCalls, toolSuccessRate, errors}}` from the session's traces (`toolSuccessRate` is `null` before any tool call)."
        }
        Transcript => "`{success, sessionId, messages}`: the whole conversation.",
        PublicKeyCreate => "`{success, key: {id, name, keyPrefix, allowedOrigins, createdAt}, publicKey}`: `pk_...` only here.",
        PublicKeyList => "`{success, keys}`.",
        PublicKeyDelete => "`{success}`; the key and every SDK token it issued stop working.",
        SdkInit => {
            "`{success, token, expiresIn, tenantId, projectId, permissions, widgetConfig}`: an `sdk_...` token bound to the project, the key and the request's `Origin`, holding `session:execute` and `session:read`."
        }
        SdkRefresh => "as `sdk/init`: a new token (the old one stays valid until it expires).",
        SdkConfig => {
            "`{success, config: {projectId, projectName, agentName, greeting, theme, features: {chat, voice}, deployments: {dev, staging, production}}}`: `deployments` gives each environment's stream route (the deployment-scoped `/stream` of its active deployment's entry agent) or `null` when it has none; `widgetConfig` of `sdk/init` is the same object."
        }
        ToolList => "`{success, tools, pagination}`, newest first.",
        ToolCreate => {
            "`{success, tool: {id, projectId, name, description, toolType, parameters, createdAt, updatedAt, ...}}` with the settings of its type (`method`, `url`, `headers`, `query`, `body` for `http`; `serverUrl`, `toolName` for `mcp`; `auth`, `responseLimit`, `timeoutMs`). `parameters` is checked as a JSON Schema object (supported keywords only); credentials in `headers` or URLs are `400` (name a secret in `auth.secret`); `409` when the name exists in the project."
        }
        ToolGet => "`{success, tool}`.",
        ToolPut => "`{success, tool}`: the whole tool replaced; a new name is carried into the agents that use it, in the same commit.",
        ToolDelete => "`{success}`; `409` naming the agents that use it, unless `?force=true`, which takes it out of their `tools`.",
        ToolImportMcp => {
            "`201 {success, tools, skipped: [{name, reason}]}` once stored: each tool of the server's `tools/list` becomes an `mcp` tool of the project, named from its server name (`[a-z0-9_-]{1,64}`), its `inputSchema` as `parameters` (a schema the check refuses is skipped with the reason); a project tool of the same name is replaced only when it is the same server's same tool, else skipped. `503 SERVICE_UNAVAILABLE` when the server cannot be reached or refuses (as for a model provider); `400` when `auth.secret` names no secret, or when the server's address is one tools may not reach (not public, and not in `--tool-allow-cidr`)."
        }
        ToolTest => {
            "`{success, data: {output, durationMs, error?}}` once the call ends: the tool called once with `input` (checked against its `parameters`), as a turn would call it (the same reach, secret and limits; `timeoutMs` 1,000–300,000 replaces the tool's for this call). `output` is `null` when `error` is set."
        }
        AgentVersionCreate => {
            "`201 {success, version: {projectId, agentName, version, label, contentHash, agent, createdAt, createdBy}}`: the agent as it is now, numbered 1, 2, ... per agent name, never changed afterwards. `contentHash` is `sha256:` and the hex digest of what changes a turn (description, instructions, model, tools, maxToolIterations, dslContent): equal content, equal hash."
        }
        AgentVersionList => "`{success, versions, pagination}`, newest first; the versions of a name outlive its agent.",
        AgentVersionGet => "`{success, version}`; `404` for a version that does not exist.",
        DeploymentCreate => {
            "`201 {success, deployment: {id, projectId, environment, status, label, description, endpointSlug, entryAgentName, agentVersionManifest, modelOverrides, createdAt, createdBy, activatedAt, rolledBackAt, retiredAt}}`. `agentVersionManifest` maps agent names to a version number or `\"auto\"` (the agent as it is now: its latest version when that holds the same content, else a new version, stored in the same commit); `entryAgentName` must be one of them. The deployment becomes the environment's `active` one; the one before it turns `superseded`. `endpointSlug` is `projectSlug/environment/entryAgentName`."
        }
        DeploymentList => "`{success, deployments, pagination}`, newest first; `environment` and `status` (`active`, `superseded`, `retired`) filter.",
        DeploymentGet => "`{success, deployment}`.",
        DeploymentPromote => {
            "`201 {success, deployment}`: a new deployment of the same pinned versions, entry agent, label, description and overrides in `targetEnvironment`, active there (the one it replaces turns `superseded`). `400` for the deployment's own environment, `409` for a retired deployment."
        }
        DeploymentRollback => {
            "`{success, deployment}` with the deployment that serves again: the active deployment turns `superseded` (with `rolledBackAt`, and is never rolled back to), and the one active before it in its environment becomes `active`. `409` when the deployment is not active, or when there is no earlier deployment."
        }
        DeploymentRetire => "`{success, deployment}` with `status` `retired` and `retiredAt`: its environment has no active deployment until one is created, promoted or rolled back to. Retiring a retired deployment changes nothing.",
        SecretCreate => "`{success, secret: {id, name, version, createdAt, updatedAt, expiresAt}}`, never the value; `409` when the name exists.",
        SecretList => "`{success, secrets, pagination}`: metadata only.",
        SecretRotate => "`{success, secret}` with `version` + 1.",
        SecretDelete => "`{success}`.",
        Export => {
            "`{success, manifest: {project: {name, description, entryAgentName}, exportedAt, version}, agents: [{name, description, instructions, model, dslContent, tools, maxToolIterations}], tools: [{name, description, toolType, parameters, ...settings}], versions: [{agentName, version, label, contentHash, agent, createdAt, createdBy}], deployments: [{id, environment, status, label, description, entryAgentName, agentVersionManifest, modelOverrides, createdAt, createdBy, activatedAt, rolledBackAt, retiredAt}]}` (no keys, secrets or sessions; a tool's `auth` names a secret, never holds one; versions and deployments oldest first)."
        }
        ImportPreview => "`{success, preview: {create, update, delete}}` (agent names); changes nothing. `delete` is filled only with `?prune=true`.",
        Import => {
            "`{success, applied: {created, updated, deleted}}` (agent names): tools, then agents, matched by name are created or replaced; tools and agents absent from the document are deleted only with `?prune=true`; an agent may name the document's tools and the project's (`400` otherwise); the project's `description` and `entryAgentName` are taken (its name and slug stay). Agent versions that continue a name's numbering are added, those the project holds with the same content skipped, a number it holds with other content is `409`; deployment records are matched by id (absent ones created with the project's slug in `endpointSlug`, an active one superseding the project's active deployment of its environment; present ones left as they are), and every version they pin must exist. One commit: all or nothing. `409` while another import of the project runs."
        }
        ChatAgent => {
            "`{success, sessionId, messageId, response, usage: {inputTokens, outputTokens, totalTokens}, latencyMs}` once the reply is stored. A new session when `sessionId` is absent (on `agentId`, else the entry agent); with `deploymentId` (not retired) or `environment` (its active deployment) the new session runs that deployment's pinned version of the agent, for its life. A session of a deployment keeps it: once that deployment is retired its turns are `410 GONE`."
        }
        ChatAgentStream => "events `session` (`{sessionId}`, with `deploymentId` and `environment` on a deployment), `token`..., `done` (see [Stream events](#stream-events)); the head carries `X-Stream-Id`.",
        DeployedChat => {
            "as `/chat/agent`, for the agent `agentSlug` of the active deployment of `env` (`dev`, `staging`, `production`) in the project with slug `projectSlug`: the version that deployment pins, with its `modelOverrides`. `404` when the project, the environment's active deployment or the agent in it does not exist. A `sessionId` keeps that session's own deployment (`410 GONE` once retired)."
        }
        DeployedStream => "as `/chat/agent/stream`, for the deployed agent as in `.../chat`.",
        DeployedComplete => "as `/chat/complete`, with the deployed agent's model (as in `.../chat`). SDK tokens are `403`.",
        OpenAiCompletions => {
            "OpenAI's `chat.completion` (`{id, object, created, model, choices: [{index, message: {role, content, tool_calls?}, finish_reason}], usage: {prompt_tokens, completion_tokens, total_tokens}}`), or with `stream: true` `chat.completion.chunk` frames (`data: {...}`, the role first, then `delta.content`s, `delta.tool_calls` when the model asks for client-side tools, the `finish_reason`, a `usage` chunk with `stream_options.include_usage`) and `data: [DONE]`. `model` is `projectSlug/env/agentName`: the agent version the environment's active deployment pins, with its instructions (unless the call brings a system message) and model. Needs an API key restricted to the project (`projectIds`; other credentials are `403`); nothing is stored. Errors on this route and `/v1/models` take OpenAI's shape: `{error: {message, type, param, code}}` (`type` `invalid_request_error`, `authentication_error`, `permission_error`, `rate_limit_error` or `server_error`; `code` the lower-case code of the error table)."
        }
        OpenAiModels => "`{object: \"list\", data: [{id, object: \"model\", created, owned_by}]}`: each agent of each active deployment of the key's projects, as `projectSlug/env/agentName`.",
        Feedback => {
            "`201 {success, feedback: {id, sessionId, messageId, rating, comment, createdAt, updatedAt}}`: one per message and rater (the credential's principal); a second from the same rater replaces the first (same `id` and `createdAt`). The session must be one the credential may read (an SDK token: its own sessions), the message one of its messages (`404` otherwise)."
        }
        AnalyticsMetrics => {
            "`{success, data: {from, to, groupBy, buckets: [{key, count, avg_duration, p95_duration, error_rate, sum_tokens, sum_cost, positive_rate}]}}` over the turns that ended between `from` and `to` (RFC 3339; default the 24 hours before now), counted by the hour they started in. `groupBy` `agent_name`, `channel`, `environment` (`null`: sessions without a deployment), `hour` or `day` (UTC; `key` the bucket's start); without it, one bucket with `key` `null`. `metrics` (comma-separated) picks the figures (default all). Durations in ms over answered turns; `p95_duration` is the upper bound of its histogram bucket (50 ms to 120 s; slower reads as 120000); rates are `null` without turns or ratings. Answered from per-hour rollups kept as turns finish and ratings arrive (rebuilt from the log on start)."
        }
        AnalyticsEvents => {
            "`{success, data: {events: [{sessionId, agentName, channel, environment, eventType, spanId, startedAt, durationMs, tokens: {input, output}, cost, error?}], total, hasMore}}`: the turns of the window (their `response` or `error` trace event), newest first; `agentName`, `channel`, `environment`, `eventType` filter; `limit` up to 10,000 (default 50) and `offset` page."
        }
        ChatSession => {
            "`201 {success, sessionId, agentName, status: \"ready\"}` (and `deploymentId`, `environment` on a deployment), stored before the answer: a session for later turns, on `agentId` or the entry agent, of the deployment named by `deploymentId` or the active one of `environment` as in `/chat/agent`."
        }
        ChatSend => "as `/chat/agent`, on an existing session.",
        ChatStream => "events `metadata` (direct calls), `text_delta`..., `usage`, `complete`; the head carries `X-Stream-Id`.",
        ChatResume => {
            "the stream's stored events after `Last-Event-ID` (absent: all), then its live ones; only its creator may resume it, others get `404`."
        }
        ChatComplete => {
            "`{success, content, toolCalls, model, finishReason, usage: {inputTokens, outputTokens, totalTokens, estimatedCost}, latencyMs}`; `estimatedCost` is `null` without `model.pricing`. SDK tokens are `403`."
        }
        ChatUsage => {
            "`{success, summary: {totalTokens, totalCost, requestCount, avgLatency}, byModel: [{modelId, provider, totalTokens, totalCost, requestCount}]}` over the replies stored in the date range."
        }
        Widget => {
            "the widget's ES module with `Cache-Control: public, max-age=86400`, a strong `ETag` (`If-None-Match` gives `304`) and `Access-Control-Allow-Origin: *`."
        }
    }
}

// ---- tables shared with the conventions page ----

/// Status, code and meaning of every error code.
pub fn error_table() -> String {
    let mut out = String::from("| status | `error.code` | when |\n|---|---|---|\n");
    for (status, code, when) in error_codes() {
        let _ = writeln!(out, "| {status} | `{code}` | {when} |");
    }
    out
}

/// The codes only `event: error` carries.
pub fn stream_error_table() -> String {
    let mut out = String::from("| `code` | when |\n|---|---|\n");
    for e in sse::STREAM_ERROR_CODES {
        let _ = writeln!(out, "| `{}` | {} |", e.code, e.when);
    }
    out
}

/// Every stream event.
pub fn event_table() -> String {
    let mut out = String::from("| event | data | routes | when |\n|---|---|---|---|\n");
    for e in sse::EVENTS {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            e.name, e.data, e.routes, e.when
        );
    }
    out
}

/// Every scope, and which roles hold it.
pub fn scope_table() -> String {
    use halyard_storage::Role;
    let roles = [
        ("owner", Scopes::of_role(Role::Owner)),
        ("developer", Scopes::of_role(Role::Developer)),
        ("viewer", Scopes::of_role(Role::Viewer)),
        ("new key without `scopes`", Scopes::default_for_key()),
        (
            "SDK token",
            Scopes::of(&[scope::Scope::SessionExecute, scope::Scope::SessionRead]),
        ),
    ];
    let mut out = String::from("| scope |");
    for (name, _) in &roles {
        let _ = write!(out, " {name} |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(roles.len()));
    out.push('\n');
    for (s, name) in scope::ALL {
        let _ = write!(out, "| `{name}` |");
        for (_, held) in &roles {
            out.push_str(if held.has(s) { " yes |" } else { " |" });
        }
        out.push('\n');
    }
    out
}

/// The limits and defaults that the conventions state, from the constants themselves.
pub fn limits_table() -> String {
    let tenant = Limits::default();
    let ip = LimitConfig::default();
    let engine = halyard_engine::Config::default();
    let ms = |d: std::time::Duration| format!("{} ms", d.as_millis());
    let rows: Vec<(&str, String)> = vec![
        (
            "request body, every route but import",
            bytes(route::BODY_LIMIT),
        ),
        (
            "request body, `project-io/import`",
            bytes(route::IMPORT_BODY_LIMIT),
        ),
        ("request line (`414`)", bytes(MAX_REQUEST_LINE as u64)),
        ("header section (`431`)", bytes(MAX_HEADER_BYTES as u64)),
        ("header fields (`431`)", MAX_HEADERS.to_string()),
        (
            "chunk-size line (`400`)",
            bytes(halyard_engine::chunked::MAX_SIZE_LINE as u64),
        ),
        (
            "`X-Request-Id` kept from the client",
            format!(
                "1 to {} characters of `[A-Za-z0-9._:-]`",
                halyard_engine::request::REQUEST_ID_MAX
            ),
        ),
        (
            "head read time (`408`), `--header-timeout-ms`",
            format!("{} ms", engine.header_timeout_ms),
        ),
        (
            "keep-alive idle, body read and stalled write, `--idle-timeout-ms`",
            format!("{} ms", engine.idle_timeout_ms),
        ),
        (
            "SSE heartbeat interval, `--sse-heartbeat-ms`",
            format!("{} ms", engine.sse_heartbeat_ms),
        ),
        (
            "tenant request rate (GCRA)",
            format!(
                "{} requests/s, burst {}",
                tenant.requests_per_second, tenant.burst
            ),
        ),
        (
            "session message rate",
            format!("{} messages/min", tenant.session_messages_per_minute),
        ),
        (
            "concurrent sessions per tenant",
            tenant.max_concurrent_sessions.to_string(),
        ),
        (
            "a session stops counting after idling",
            format!("{} min", crate::admission::sessions::IDLE_MS / 60_000),
        ),
        (
            "failed credentials per client address (then `429`)",
            format!(
                "{}/s, burst {}",
                ip.unauthenticated_per_second, ip.unauthenticated_burst
            ),
        ),
        (
            "`retryAfterMs` of `QUEUE_FULL`",
            format!("{} ms", crate::handlers::QUEUE_FULL_RETRY_MS),
        ),
        (
            "page size `limit`: default, largest",
            format!(
                "{}, {}",
                crate::query::DEFAULT_LIMIT,
                crate::query::MAX_LIMIT
            ),
        ),
        (
            "SDK token lifetime (`expiresIn`)",
            format!("{} s", crate::sdk_token::TTL_SECS),
        ),
        (
            "unread stream bytes before `SLOW_CONSUMER`",
            bytes(runtime::STREAM_BUFFER as u64),
        ),
        (
            "stream events batched to the log every",
            ms(turn::FLUSH_EVERY),
        ),
        (
            "a turn whose clients all left is cancelled after",
            ms(runtime::ORPHAN_GRACE),
        ),
        (
            "upstream connect retries before the first token",
            format!(
                "{}, after {} and {}",
                turn::MAX_RETRIES,
                ms(turn::RETRY_BACKOFF),
                ms(turn::RETRY_BACKOFF * 4)
            ),
        ),
        (
            "expired streams swept at most every",
            format!("{} s", runtime::EXPIRY_SWEEP.as_secs()),
        ),
    ];
    let mut out = String::from("| limit | value |\n|---|---|\n");
    for (what, value) in rows {
        let _ = writeln!(out, "| {what} | {value} |");
    }
    out
}

/// `n` bytes, with its KiB or MiB when whole.
fn bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB ({n} bytes)", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB ({n} bytes)", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_between_the_markers() {
        let doc = "a\n<!-- generated:x -->\nold\n<!-- /generated:x -->\nb\n";
        assert_eq!(
            splice(doc, "x", "new\n").unwrap(),
            "a\n<!-- generated:x -->\nnew\n<!-- /generated:x -->\nb\n"
        );
        assert!(splice(doc, "y", "new\n").is_err());
    }

    #[test]
    fn every_route_has_a_section_and_a_row() {
        let page = api_reference();
        for def in ROUTES {
            let heading = format!("## `{} {}`", def.method.as_str(), def.pattern);
            assert!(page.contains(&heading), "{heading} missing");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(1024 * 1024), "1 MiB (1048576 bytes)");
        assert_eq!(bytes(16 * 1024), "16 KiB (16384 bytes)");
        assert_eq!(bytes(100), "100 bytes");
    }
}

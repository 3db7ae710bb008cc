//! The route table: method and path pattern to a route, its guard and its body limit.
//!
//! Responsible for: every route of ENDPOINTS.md (sections 1 to 4, 6 to 8) and the public
//! widget script `GET /sdk/widget.js`, with the
//! credential it needs, resolved once per request in `admit`; `404` for unknown paths and
//! versions, `405` with `Allow` for known paths. Not responsible for: authentication itself
//! (see `auth`) or what a handler does.

use halyard_engine::Method;

use crate::scope::Scope;

/// Body limit of every route but import (CONVENTIONS section 3).
pub const BODY_LIMIT: u64 = 1024 * 1024;
/// Body limit of `POST /api/projects/:projectId/project-io/import`.
pub const IMPORT_BODY_LIMIT: u64 = 60 * 1024 * 1024;

/// The body limit of route `id`: what `admit` enforces and the reference states.
pub fn body_limit(id: RouteId) -> u64 {
    if id == RouteId::Import {
        IMPORT_BODY_LIMIT
    } else {
        BODY_LIMIT
    }
}

/// What credential a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// None.
    Public,
    /// The operator root key.
    Root,
    /// Any tenant credential (JWT, API key, SDK token) holding the scope, if one is named.
    Scope(Option<Scope>),
    /// A widget public key (`pk_`) and an allowed `Origin`.
    PublicKey,
    /// An SDK token and its `Origin`.
    SdkToken,
}

/// Every route, by name.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteId {
    OpenApi,
    AdminTenantCreate,
    AdminTenantList,
    AdminTenantPatch,
    AdminTenantDelete,
    AdminTenantExport,
    AdminBackup,
    Login,
    Me,
    UserCreate,
    UserList,
    KeyCreate,
    KeyList,
    KeyDelete,
    ProjectList,
    ProjectCreate,
    ProjectGet,
    ProjectPatch,
    ProjectDelete,
    AgentList,
    AgentCreate,
    AgentGet,
    AgentPut,
    AgentDsl,
    AgentDelete,
    AgentDirectory,
    AgentByName,
    SessionCreate,
    SessionList,
    SessionGet,
    SessionEnd,
    SessionReset,
    SessionMessages,
    SessionTraces,
    SessionMetrics,
    Transcript,
    PublicKeyCreate,
    PublicKeyList,
    PublicKeyDelete,
    SdkInit,
    SdkRefresh,
    SdkConfig,
    ToolList,
    ToolCreate,
    ToolGet,
    ToolPut,
    ToolDelete,
    ToolTest,
    ToolImportMcp,
    AgentVersionCreate,
    AgentVersionList,
    AgentVersionGet,
    DeploymentCreate,
    DeploymentList,
    DeploymentGet,
    DeploymentPromote,
    DeploymentRollback,
    DeploymentRetire,
    DeployedChat,
    DeployedStream,
    DeployedComplete,
    ChatSession,
    OpenAiCompletions,
    OpenAiModels,
    Feedback,
    AnalyticsMetrics,
    AnalyticsEvents,
    SecretCreate,
    SecretList,
    SecretRotate,
    SecretDelete,
    Export,
    ImportPreview,
    Import,
    ChatAgent,
    ChatAgentStream,
    ChatSend,
    ChatStream,
    ChatResume,
    ChatComplete,
    ChatUsage,
    Widget,
}

/// One row of the table.
#[derive(Debug)]
pub struct RouteDef {
    /// Method.
    pub method: Method,
    /// Path pattern; `:name` segments capture.
    pub pattern: &'static str,
    /// Which route.
    pub id: RouteId,
    /// Credential needed.
    pub guard: Guard,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// Status of success.
    pub success: u16,
}

const fn r(
    method: Method,
    pattern: &'static str,
    id: RouteId,
    guard: Guard,
    summary: &'static str,
    success: u16,
) -> RouteDef {
    RouteDef {
        method,
        pattern,
        id,
        guard,
        summary,
        success,
    }
}

use Guard::{Public, PublicKey, Root, SdkToken};
use Method::{Delete, Get, Patch, Post, Put};
use RouteId as R;

const fn s(scope: Scope) -> Guard {
    Guard::Scope(Some(scope))
}

/// The table.
pub static ROUTES: &[RouteDef] = &[
    r(
        Get,
        "/api/v1/openapi.json",
        R::OpenApi,
        Public,
        "OpenAPI document",
        200,
    ),
    r(
        Post,
        "/api/v1/admin/tenants",
        R::AdminTenantCreate,
        Root,
        "Create a tenant",
        201,
    ),
    r(
        Get,
        "/api/v1/admin/tenants",
        R::AdminTenantList,
        Root,
        "List tenants",
        200,
    ),
    r(
        Patch,
        "/api/v1/admin/tenants/:tenantId",
        R::AdminTenantPatch,
        Root,
        "Update a tenant",
        200,
    ),
    r(
        Delete,
        "/api/v1/admin/tenants/:tenantId",
        R::AdminTenantDelete,
        Root,
        "Delete a tenant and everything it owns",
        200,
    ),
    r(
        Get,
        "/api/v1/admin/tenants/:tenantId/export",
        R::AdminTenantExport,
        Root,
        "Export all of a tenant's data (no credentials or secret values)",
        200,
    ),
    r(
        Post,
        "/api/v1/admin/backup",
        R::AdminBackup,
        Root,
        "Take an online backup into the server's backup directory",
        200,
    ),
    r(Post, "/api/v1/auth/login", R::Login, Public, "Log in", 200),
    r(
        Get,
        "/api/v1/auth/me",
        R::Me,
        Guard::Scope(None),
        "Who am I",
        200,
    ),
    r(
        Post,
        "/api/v1/users",
        R::UserCreate,
        s(Scope::KeyAdmin),
        "Create a user",
        201,
    ),
    r(
        Get,
        "/api/v1/users",
        R::UserList,
        s(Scope::KeyAdmin),
        "List users",
        200,
    ),
    r(
        Post,
        "/api/v1/api-keys",
        R::KeyCreate,
        s(Scope::KeyAdmin),
        "Create an API key",
        201,
    ),
    r(
        Get,
        "/api/v1/api-keys",
        R::KeyList,
        s(Scope::KeyAdmin),
        "List API keys",
        200,
    ),
    r(
        Delete,
        "/api/v1/api-keys/:keyId",
        R::KeyDelete,
        s(Scope::KeyAdmin),
        "Revoke an API key",
        200,
    ),
    r(
        Get,
        "/api/projects",
        R::ProjectList,
        s(Scope::ProjectRead),
        "List projects",
        200,
    ),
    r(
        Post,
        "/api/projects",
        R::ProjectCreate,
        s(Scope::ProjectWrite),
        "Create a project",
        201,
    ),
    r(
        Get,
        "/api/projects/:projectId",
        R::ProjectGet,
        s(Scope::ProjectRead),
        "Get a project",
        200,
    ),
    r(
        Patch,
        "/api/projects/:projectId",
        R::ProjectPatch,
        s(Scope::ProjectWrite),
        "Update a project",
        200,
    ),
    r(
        Delete,
        "/api/projects/:projectId",
        R::ProjectDelete,
        s(Scope::ProjectWrite),
        "Delete a project",
        200,
    ),
    r(
        Get,
        "/api/projects/:projectId/agents",
        R::AgentList,
        s(Scope::AgentRead),
        "List agents",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/agents",
        R::AgentCreate,
        s(Scope::AgentWrite),
        "Create an agent",
        201,
    ),
    r(
        Get,
        "/api/projects/:projectId/agents/:name",
        R::AgentGet,
        s(Scope::AgentRead),
        "Get an agent",
        200,
    ),
    r(
        Put,
        "/api/projects/:projectId/agents/:name",
        R::AgentPut,
        s(Scope::AgentWrite),
        "Replace an agent",
        200,
    ),
    r(
        Put,
        "/api/projects/:projectId/agents/:name/dsl",
        R::AgentDsl,
        s(Scope::AgentWrite),
        "Replace an agent's DSL",
        200,
    ),
    r(
        Delete,
        "/api/projects/:projectId/agents/:name",
        R::AgentDelete,
        s(Scope::AgentWrite),
        "Delete an agent",
        200,
    ),
    r(
        Get,
        "/api/agents",
        R::AgentDirectory,
        s(Scope::AgentRead),
        "List agents of all projects",
        200,
    ),
    r(
        Get,
        "/api/agents/:name",
        R::AgentByName,
        s(Scope::AgentRead),
        "Find an agent by name",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/sessions",
        R::SessionCreate,
        s(Scope::SessionExecute),
        "Create a session",
        201,
    ),
    r(
        Get,
        "/api/projects/:projectId/sessions",
        R::SessionList,
        s(Scope::SessionRead),
        "List sessions",
        200,
    ),
    r(
        Get,
        "/api/projects/:projectId/sessions/:sessionId",
        R::SessionGet,
        s(Scope::SessionRead),
        "Get a session",
        200,
    ),
    r(
        Delete,
        "/api/projects/:projectId/sessions/:sessionId",
        R::SessionEnd,
        s(Scope::SessionExecute),
        "End a session",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/sessions/:sessionId/reset",
        R::SessionReset,
        s(Scope::SessionExecute),
        "Reset a session",
        200,
    ),
    r(
        Get,
        "/api/projects/:projectId/sessions/:sessionId/messages",
        R::SessionMessages,
        s(Scope::SessionRead),
        "List a session's messages",
        200,
    ),
    r(
        Get,
        "/api/projects/:projectId/sessions/:sessionId/traces",
        R::SessionTraces,
        s(Scope::SessionRead),
        "List a session's trace events (?eventType=, ?spanId=)",
        200,
    ),
    r(
        Get,
        "/api/projects/:projectId/sessions/:sessionId/metrics",
        R::SessionMetrics,
        s(Scope::SessionRead),
        "A session's latency, per-turn figures, tokens and tool success rate",
        200,
    ),
    r(
        Get,
        "/api/v1/sessions/:sessionId/transcripts",
        R::Transcript,
        s(Scope::SessionRead),
        "A session's whole conversation",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/sdk-public-keys",
        R::PublicKeyCreate,
        s(Scope::KeyAdmin),
        "Create a widget public key",
        201,
    ),
    r(
        Get,
        "/api/projects/:projectId/sdk-public-keys",
        R::PublicKeyList,
        s(Scope::KeyAdmin),
        "List widget public keys",
        200,
    ),
    r(
        Delete,
        "/api/projects/:projectId/sdk-public-keys/:keyId",
        R::PublicKeyDelete,
        s(Scope::KeyAdmin),
        "Delete a widget public key",
        200,
    ),
    r(
        Post,
        "/api/v1/sdk/init",
        R::SdkInit,
        PublicKey,
        "Start a widget session token",
        200,
    ),
    r(
        Post,
        "/api/v1/sdk/refresh",
        R::SdkRefresh,
        SdkToken,
        "Refresh a widget session token",
        200,
    ),
    r(
        Get,
        "/api/v1/sdk/config/:projectId",
        R::SdkConfig,
        PublicKey,
        "Widget configuration",
        200,
    ),
    r(
        Get,
        "/api/projects/:projectId/tools",
        R::ToolList,
        s(Scope::AgentRead),
        "List a project's tools",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/tools",
        R::ToolCreate,
        s(Scope::AgentWrite),
        "Create an HTTP or MCP tool",
        201,
    ),
    r(
        Get,
        "/api/projects/:projectId/tools/:toolId",
        R::ToolGet,
        s(Scope::AgentRead),
        "Get a tool",
        200,
    ),
    r(
        Put,
        "/api/projects/:projectId/tools/:toolId",
        R::ToolPut,
        s(Scope::AgentWrite),
        "Replace a tool (a new name is carried into the agents using it)",
        200,
    ),
    r(
        Delete,
        "/api/projects/:projectId/tools/:toolId",
        R::ToolDelete,
        s(Scope::AgentWrite),
        "Delete a tool (409 while agents use it, unless ?force=true)",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/tools/:toolId/test",
        R::ToolTest,
        s(Scope::AgentWrite),
        "Call a tool once with the given input",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/tools/import-mcp",
        R::ToolImportMcp,
        s(Scope::AgentWrite),
        "Import the tools of an MCP server (streamable HTTP)",
        201,
    ),
    r(
        Post,
        "/api/projects/:projectId/agents/:name/versions",
        R::AgentVersionCreate,
        s(Scope::AgentWrite),
        "Snapshot an agent as its next immutable version",
        201,
    ),
    r(
        Get,
        "/api/projects/:projectId/agents/:name/versions",
        R::AgentVersionList,
        s(Scope::AgentRead),
        "List an agent's versions",
        200,
    ),
    r(
        Get,
        "/api/projects/:projectId/agents/:name/versions/:version",
        R::AgentVersionGet,
        s(Scope::AgentRead),
        "Get one version of an agent",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/deployments",
        R::DeploymentCreate,
        s(Scope::DeploymentCreate),
        "Deploy pinned agent versions to an environment",
        201,
    ),
    r(
        Get,
        "/api/projects/:projectId/deployments",
        R::DeploymentList,
        s(Scope::AgentRead),
        "List a project's deployments",
        200,
    ),
    r(
        Get,
        "/api/projects/:projectId/deployments/:deploymentId",
        R::DeploymentGet,
        s(Scope::AgentRead),
        "Get a deployment",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/deployments/:deploymentId/promote",
        R::DeploymentPromote,
        s(Scope::DeploymentCreate),
        "Deploy a deployment's versions to another environment",
        201,
    ),
    r(
        Post,
        "/api/projects/:projectId/deployments/:deploymentId/rollback",
        R::DeploymentRollback,
        s(Scope::DeploymentCreate),
        "Make the environment's previous deployment active again",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/deployments/:deploymentId/retire",
        R::DeploymentRetire,
        s(Scope::DeploymentCreate),
        "Retire a deployment",
        200,
    ),
    r(
        Post,
        "/api/v1/project/:projectSlug/:env/agent/:agentSlug/chat",
        R::DeployedChat,
        s(Scope::SessionExecute),
        "Send a message to a deployed agent and wait for the reply",
        200,
    ),
    r(
        Post,
        "/api/v1/project/:projectSlug/:env/agent/:agentSlug/stream",
        R::DeployedStream,
        s(Scope::SessionExecute),
        "Send a message to a deployed agent and stream the reply (SSE)",
        200,
    ),
    r(
        Post,
        "/api/v1/project/:projectSlug/:env/agent/:agentSlug/complete",
        R::DeployedComplete,
        s(Scope::SessionExecute),
        "A model call with a deployed agent's model",
        200,
    ),
    r(
        Post,
        "/api/v1/chat/session",
        R::ChatSession,
        s(Scope::SessionExecute),
        "Open a session (of a deployment, when one is named)",
        201,
    ),
    r(
        Post,
        "/v1/chat/completions",
        R::OpenAiCompletions,
        s(Scope::SessionExecute),
        "OpenAI-compatible chat completion with a deployed agent",
        200,
    ),
    r(
        Get,
        "/v1/models",
        R::OpenAiModels,
        s(Scope::SessionExecute),
        "OpenAI-compatible list of the deployed agents",
        200,
    ),
    r(
        Post,
        "/api/v1/feedback",
        R::Feedback,
        s(Scope::SessionExecute),
        "Rate a message of a session",
        201,
    ),
    r(
        Get,
        "/api/projects/:projectId/analytics/metrics",
        R::AnalyticsMetrics,
        s(Scope::SessionRead),
        "Turn figures of a time window, grouped",
        200,
    ),
    r(
        Get,
        "/api/projects/:projectId/analytics/events",
        R::AnalyticsEvents,
        s(Scope::SessionRead),
        "The turns of a time window",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/secrets",
        R::SecretCreate,
        s(Scope::SecretWrite),
        "Create a secret",
        201,
    ),
    r(
        Get,
        "/api/projects/:projectId/secrets",
        R::SecretList,
        s(Scope::SecretWrite),
        "List secrets (metadata only)",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/secrets/:name/rotate",
        R::SecretRotate,
        s(Scope::SecretWrite),
        "Rotate a secret",
        200,
    ),
    r(
        Delete,
        "/api/projects/:projectId/secrets/:name",
        R::SecretDelete,
        s(Scope::SecretWrite),
        "Delete a secret",
        200,
    ),
    r(
        Get,
        "/api/projects/:projectId/project-io/export",
        R::Export,
        s(Scope::ProjectExport),
        "Export a project",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/project-io/import/preview",
        R::ImportPreview,
        s(Scope::ProjectImport),
        "Preview an import",
        200,
    ),
    r(
        Post,
        "/api/projects/:projectId/project-io/import",
        R::Import,
        s(Scope::ProjectImport),
        "Import a project",
        200,
    ),
    r(
        Post,
        "/api/v1/chat/agent",
        R::ChatAgent,
        s(Scope::SessionExecute),
        "Run an agent turn",
        200,
    ),
    r(
        Post,
        "/api/v1/chat/agent/stream",
        R::ChatAgentStream,
        s(Scope::SessionExecute),
        "Run an agent turn, streamed (SSE)",
        200,
    ),
    r(
        Post,
        "/api/v1/chat/send",
        R::ChatSend,
        s(Scope::SessionExecute),
        "Send a message to an existing session",
        200,
    ),
    r(
        Post,
        "/api/v1/chat/stream",
        R::ChatStream,
        s(Scope::SessionExecute),
        "Stream a turn or a direct model call (SSE)",
        200,
    ),
    r(
        Get,
        "/api/v1/chat/stream/:streamId",
        R::ChatResume,
        Guard::Scope(None),
        "Resume a stream after Last-Event-ID (SSE)",
        200,
    ),
    r(
        Post,
        "/api/v1/chat/complete",
        R::ChatComplete,
        s(Scope::SessionExecute),
        "Direct model completion",
        200,
    ),
    r(
        Get,
        "/api/v1/chat/usage",
        R::ChatUsage,
        s(Scope::SessionRead),
        "Token usage and cost",
        200,
    ),
    r(
        Get,
        "/sdk/widget.js",
        R::Widget,
        Public,
        "The embeddable chat widget (JavaScript module)",
        200,
    ),
];

/// Captured path segments (at most three), as byte ranges of the path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Params {
    ranges: [(u16, u16); 3],
    len: u8,
}

impl Matched {
    /// Whether the matched route answers in OpenAI's shape.
    pub fn is_openai(&self) -> bool {
        matches!(self, Matched::Route(def, _) if is_openai(def.id))
    }
}

impl Params {
    /// Captured segment `i` of `path` (the same path that was matched).
    pub fn get<'p>(&self, path: &'p str, i: usize) -> &'p str {
        if i >= usize::from(self.len) {
            return "";
        }
        let (a, b) = self.ranges[i];
        path.get(usize::from(a)..usize::from(b)).unwrap_or("")
    }
}

/// Whether route `id` answers errors in OpenAI's shape (the OpenAI-compatible endpoint).
pub fn is_openai(id: RouteId) -> bool {
    matches!(id, RouteId::OpenAiCompletions | RouteId::OpenAiModels)
}

/// The outcome of matching.
#[derive(Debug)]
pub enum Matched {
    /// A route and its captures.
    Route(&'static RouteDef, Params),
    /// The path is known; these methods are allowed.
    WrongMethod(String),
    /// No such path.
    NotFound,
}

/// One segment of a compiled pattern.
#[derive(Debug)]
enum Seg {
    Lit(&'static str),
    Param,
}

/// A route with its pattern split once, at first use.
#[derive(Debug)]
struct Compiled {
    def: &'static RouteDef,
    segs: Vec<Seg>,
}

/// Most segments a routed path has (the longest pattern, a deployment-scoped runtime route,
/// has 9 with the leading empty one).
const MAX_SEGMENTS: usize = 9;

fn compiled() -> &'static [Compiled] {
    static TABLE: std::sync::OnceLock<Vec<Compiled>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        ROUTES
            .iter()
            .map(|def| Compiled {
                def,
                segs: def
                    .pattern
                    .split('/')
                    .map(|p| {
                        if p.starts_with(':') {
                            Seg::Param
                        } else {
                            Seg::Lit(p)
                        }
                    })
                    .collect(),
            })
            .collect()
    })
}

/// Matches a method and path against the table.
pub fn resolve(method: Method, path: &str) -> Matched {
    let method = if method == Method::Head {
        Method::Get
    } else {
        method
    };
    // Split the path once: (start, end) of each segment.
    let mut segs = [(0u16, 0u16); MAX_SEGMENTS];
    let mut n = 0;
    let mut start = 0usize;
    if path.len() > usize::from(u16::MAX) {
        return Matched::NotFound;
    }
    for seg in path.split('/') {
        if n == MAX_SEGMENTS {
            return Matched::NotFound;
        }
        segs[n] = (start as u16, (start + seg.len()) as u16);
        n += 1;
        start += seg.len() + 1;
    }
    let segs = &segs[..n];
    let mut allowed: Vec<&'static str> = Vec::new();
    for c in compiled().iter().filter(|c| c.segs.len() == n) {
        let Some(params) = match_segments(&c.segs, path, segs) else {
            continue;
        };
        if c.def.method == method {
            return Matched::Route(c.def, params);
        }
        if !allowed.contains(&c.def.method.as_str()) {
            allowed.push(c.def.method.as_str());
        }
    }
    if allowed.is_empty() {
        return Matched::NotFound;
    }
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    allowed.push("OPTIONS");
    Matched::WrongMethod(allowed.join(", "))
}

fn match_segments(pattern: &[Seg], path: &str, segs: &[(u16, u16)]) -> Option<Params> {
    let mut params = Params::default();
    for (p, &(a, b)) in pattern.iter().zip(segs) {
        let seg = &path[usize::from(a)..usize::from(b)];
        match p {
            Seg::Lit(lit) if *lit == seg => {}
            Seg::Param if !seg.is_empty() && usize::from(params.len) < params.ranges.len() => {
                params.ranges[usize::from(params.len)] = (a, b);
                params.len += 1;
            }
            _ => return None,
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(method: Method, path: &str) -> Option<RouteId> {
        match resolve(method, path) {
            Matched::Route(d, _) => Some(d.id),
            _ => None,
        }
    }

    #[test]
    fn the_longest_patterns_fit_the_segment_and_capture_bounds() {
        for c in compiled() {
            let captures = c.segs.iter().filter(|s| matches!(s, Seg::Param)).count();
            assert!(c.segs.len() <= MAX_SEGMENTS, "{}", c.def.pattern);
            assert!(captures <= 3, "{}", c.def.pattern);
        }
        let path = "/api/v1/project/shop/production/agent/support/stream";
        match resolve(Post, path) {
            Matched::Route(d, p) => {
                assert_eq!(d.id, R::DeployedStream);
                let got: Vec<&str> = (0..3).map(|i| p.get(path, i)).collect();
                assert_eq!(got, ["shop", "production", "support"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resolves_routes_and_params() {
        let path = "/api/projects/proj_1/agents/bot/dsl";
        match resolve(Put, path) {
            Matched::Route(d, p) => {
                assert_eq!(d.id, R::AgentDsl);
                assert_eq!(p.get(path, 0), "proj_1");
                assert_eq!(p.get(path, 1), "bot");
                assert_eq!(p.get(path, 2), "");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(id(Get, "/api/agents/x"), Some(R::AgentByName));
        assert_eq!(id(Method::Head, "/api/agents"), Some(R::AgentDirectory));
        assert_eq!(id(Get, "/api/v2/auth/me"), None);
        assert_eq!(id(Get, "/api/projects/"), None);
        assert_eq!(id(Get, "/api/projects//agents"), None);
        assert_eq!(id(Get, "/sdk/widget.js"), Some(R::Widget));
        assert_eq!(id(Method::Head, "/sdk/widget.js"), Some(R::Widget));
        assert_eq!(id(Get, "/sdk/widget.jsx"), None);
    }

    #[test]
    fn wrong_method_lists_allowed() {
        match resolve(Put, "/api/projects") {
            Matched::WrongMethod(allow) => assert_eq!(allow, "GET, POST, HEAD, OPTIONS"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(resolve(Get, "/nope"), Matched::NotFound));
    }

    #[test]
    fn patterns_are_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.pattern == b.pattern),
                    "{}",
                    a.pattern
                );
            }
        }
    }
}

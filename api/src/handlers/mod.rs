//! Route handlers: one module per resource family, plus the [`Call`] they all use.
//!
//! Responsible for: dispatching a route to its handler, naming the body declaration each
//! route reads (for the OpenAPI document), and the shared steps (path captures, the
//! principal, the body, the page, finding a visible project, committing writes and
//! answering once they are durable). Not responsible for: authentication or routing (done
//! in `admit`).

mod admin;
mod agents;
mod analytics;
mod backup;
mod chat;
mod deployed;
mod deployment_records;
mod deployments;
mod feedback;
mod identity;
mod openai_api;
mod projects;
mod sdk;
mod secrets;
pub(crate) mod sessions;
mod tenant_export;
mod tools;
mod traces;

pub(crate) use analytics::{
    GROUPS as ANALYTICS_GROUPS, MAX_EVENTS as ANALYTICS_MAX_EVENTS, METRICS as ANALYTICS_METRICS,
};
pub(crate) use deployments::{
    ENVIRONMENTS as DEPLOYMENT_ENVIRONMENTS, STATUSES as DEPLOYMENT_STATUSES,
};
pub(crate) use traces::kind_name as trace_kind_name;
mod transfer;
mod versions;
pub(crate) mod widget;

use std::sync::{Arc, Mutex};

use halyard_engine::{Reply, Request, Response};
use halyard_storage::{Completion, Mutation, Page, Project};
use serde_json::Value;

use crate::auth::Principal;
use crate::body::Field;
use crate::chat::runtime::Style;
use crate::error::{ApiError, ApiResult};
use crate::reply::Finish;
use crate::route::{Params, RouteDef, RouteId};
use crate::{Api, Ctx};

/// The `retryAfterMs` of `429 QUEUE_FULL`: a running turn usually ends within a second.
pub(crate) const QUEUE_FULL_RETRY_MS: u64 = 1000;

/// Work to do once a commit's outcome is known (`true`: durable).
pub(crate) type After = Box<dyn FnOnce(bool) + Send>;

/// One request being handled.
pub(crate) struct Call<'a> {
    pub api: &'a Api,
    pub req: &'a Request<Ctx>,
    pub params: Params,
    pub finish: &'a Finish,
}

impl<'a> Call<'a> {
    /// Path capture `i`.
    pub fn param(&self, i: usize) -> &'a str {
        self.params.get(self.req.head.path(), i)
    }

    /// The principal (every guarded route has one).
    pub fn principal(&self) -> ApiResult<&'a Principal> {
        self.req
            .context
            .principal
            .as_ref()
            .ok_or(ApiError::Unauthorized("Missing or invalid credential"))
    }

    /// The principal's tenant id.
    pub fn tenant(&self) -> ApiResult<&'a str> {
        Ok(&self.principal()?.tenant)
    }

    /// The JSON body.
    pub fn body(&self) -> ApiResult<Value> {
        crate::body::json(&self.req.head, &self.req.body)
    }

    /// The page asked for.
    pub fn page(&self) -> ApiResult<Page> {
        crate::query::page(self.req.head.query())
    }

    /// A query parameter.
    pub fn query(&self, name: &str) -> Option<String> {
        crate::query::param(self.req.head.query(), name)
    }

    /// The project of capture 0, if the principal may see it.
    pub fn project(&self) -> ApiResult<Project> {
        self.visible_project(self.param(0))
    }

    /// Project `id`, if the principal may see it; else the same `404` as a missing one.
    pub fn visible_project(&self, id: &str) -> ApiResult<Project> {
        let p = self.principal()?;
        self.api
            .store
            .project(&p.tenant, id)
            .filter(|_| p.sees_project(id))
            .ok_or_else(|| ApiError::NotFound(format!("Project not found: {id}")))
    }

    /// Commits `mutations` for the principal's tenant and answers `resp` once durable.
    pub fn commit(&self, mutations: Vec<Mutation>, resp: Response) -> ApiResult<Reply> {
        let tenant = self.tenant()?.to_string();
        self.commit_for(&tenant, mutations, resp, None)
    }

    /// Commits for `tenant`; `after` runs once the outcome is known, with `true` when the
    /// write is durable.
    pub fn commit_for(
        &self,
        tenant: &str,
        mutations: Vec<Mutation>,
        resp: Response,
        after: Option<After>,
    ) -> ApiResult<Reply> {
        let (reply, responder) = self.req.defer();
        let slot = Arc::new(Mutex::new(Some(responder)));
        let finish = self.finish.clone();
        let in_done = slot.clone();
        let after = Arc::new(Mutex::new(after));
        let after_done = after.clone();
        let done: Completion = Box::new(move |outcome| {
            if let Some(f) = after_done.lock().ok().and_then(|mut a| a.take()) {
                f(outcome.is_ok());
            }
            let resp = match outcome {
                Ok(()) => resp,
                Err(e) => ApiError::from(e).into_response(),
            };
            if let Some(r) = in_done.lock().ok().and_then(|mut s| s.take()) {
                r.send(finish.apply(resp));
            }
        });
        if let Err(e) = self.api.store.commit(tenant, mutations, done) {
            if let Some(f) = after.lock().ok().and_then(|mut a| a.take()) {
                f(false);
            }
            if let Some(r) = slot.lock().ok().and_then(|mut s| s.take()) {
                r.send(self.finish.error(ApiError::from(e)));
            }
        }
        Ok(reply)
    }
}

/// The request body a route reads, as its handler declares it.
pub(crate) enum RequestBody {
    /// No declared fields: no body, or one documented as any object.
    Any,
    /// An object with these fields.
    Object(&'static [Field]),
    /// One of two objects (`/chat/stream`: a turn on a session, or a direct model call).
    Either(&'static [Field], &'static [Field]),
}

/// The body route `id` reads. An import's document is declared (`transfer::IMPORT_BODY`)
/// but documented as any object, as an export document always was.
pub(crate) fn request_body(id: RouteId) -> RequestBody {
    use RequestBody::{Any, Either, Object};
    match id {
        RouteId::AdminTenantCreate => Object(admin::CREATE_BODY),
        RouteId::AdminTenantPatch => Object(admin::PATCH_BODY),
        RouteId::AdminBackup => Object(backup::BODY),
        RouteId::Login => Object(identity::LOGIN_BODY),
        RouteId::UserCreate => Object(identity::USER_BODY),
        RouteId::KeyCreate => Object(identity::KEY_BODY),
        RouteId::ProjectCreate => Object(projects::CREATE_BODY),
        RouteId::ProjectPatch => Object(projects::PATCH_BODY),
        RouteId::AgentCreate => Object(agents::CREATE_BODY),
        RouteId::AgentPut => Object(agents::PUT_BODY),
        RouteId::AgentDsl => Object(agents::DSL_BODY),
        RouteId::SessionCreate => Object(sessions::CREATE_BODY),
        RouteId::PublicKeyCreate => Object(sdk::KEY_BODY),
        RouteId::SdkInit => Object(sdk::INIT_BODY),
        RouteId::SecretCreate => Object(secrets::CREATE_BODY),
        RouteId::ToolCreate | RouteId::ToolPut => Object(tools::BODY),
        RouteId::ToolTest => Object(tools::TEST_BODY),
        RouteId::ToolImportMcp => Object(tools::IMPORT_MCP_BODY),
        RouteId::SecretRotate => Object(secrets::ROTATE_BODY),
        RouteId::AgentVersionCreate => Object(versions::BODY),
        RouteId::DeploymentCreate => Object(deployments::BODY),
        RouteId::DeploymentPromote => Object(deployments::PROMOTE_BODY),
        RouteId::ChatAgent | RouteId::ChatAgentStream => Object(chat::AGENT_BODY),
        RouteId::ChatSend => Object(chat::SESSION_TURN_BODY),
        RouteId::ChatStream => Either(chat::SESSION_TURN_BODY, chat::DIRECT_BODY),
        RouteId::ChatComplete => Object(chat::COMPLETE_BODY),
        RouteId::DeployedChat | RouteId::DeployedStream => Object(chat::DEPLOYED_AGENT_BODY),
        RouteId::DeployedComplete => Object(chat::DEPLOYED_COMPLETE_BODY),
        RouteId::ChatSession => Object(deployed::SESSION_BODY),
        RouteId::Feedback => Object(feedback::BODY),
        RouteId::OpenAiCompletions => Object(openai_api::COMPLETIONS_BODY),
        _ => Any,
    }
}

/// The body route `id` reads, as declared: [`request_body`], except that an import's
/// document is its declaration (`transfer::IMPORT_BODY`) for the reference (`docs`).
pub(crate) fn declared_body(id: RouteId) -> RequestBody {
    match id {
        RouteId::Import | RouteId::ImportPreview => RequestBody::Object(transfer::IMPORT_BODY),
        _ => request_body(id),
    }
}

/// Runs the handler of `def`.
pub(crate) fn dispatch(
    api: &Api,
    req: &Request<Ctx>,
    def: &'static RouteDef,
    params: Params,
    finish: &Finish,
) -> ApiResult<Reply> {
    let c = Call {
        api,
        req,
        params,
        finish,
    };
    let now = |r: ApiResult<Response>| r.map(Reply::Now);
    match def.id {
        RouteId::OpenApi => Ok(Reply::Now(crate::openapi::response())),
        RouteId::AdminTenantCreate => admin::create(&c),
        RouteId::AdminTenantList => now(admin::list(&c)),
        RouteId::AdminTenantPatch => admin::patch(&c),
        RouteId::AdminTenantDelete => admin::delete(&c),
        RouteId::AdminTenantExport => now(tenant_export::export(&c)),
        RouteId::AdminBackup => backup::backup(&c),
        RouteId::Login => now(identity::login(&c)),
        RouteId::Me => now(identity::me(&c)),
        RouteId::UserCreate => identity::create_user(&c),
        RouteId::UserList => now(identity::list_users(&c)),
        RouteId::KeyCreate => identity::create_key(&c),
        RouteId::KeyList => now(identity::list_keys(&c)),
        RouteId::KeyDelete => identity::revoke_key(&c),
        RouteId::ProjectList => now(projects::list(&c)),
        RouteId::ProjectCreate => projects::create(&c),
        RouteId::ProjectGet => now(projects::get(&c)),
        RouteId::ProjectPatch => projects::patch(&c),
        RouteId::ProjectDelete => projects::delete(&c),
        RouteId::AgentList => now(agents::list(&c)),
        RouteId::AgentCreate => agents::create(&c),
        RouteId::AgentGet => now(agents::get(&c)),
        RouteId::AgentPut => agents::replace(&c),
        RouteId::AgentDsl => agents::set_dsl(&c),
        RouteId::AgentDelete => agents::delete(&c),
        RouteId::AgentDirectory => now(agents::directory(&c)),
        RouteId::AgentByName => now(agents::by_name(&c)),
        RouteId::SessionCreate => sessions::create(&c),
        RouteId::SessionList => now(sessions::list(&c)),
        RouteId::SessionGet => now(sessions::get(&c)),
        RouteId::SessionEnd => sessions::end(&c),
        RouteId::SessionReset => sessions::reset(&c),
        RouteId::SessionMessages => now(sessions::messages(&c)),
        RouteId::Transcript => now(sessions::transcript(&c)),
        RouteId::PublicKeyCreate => sdk::create_key(&c),
        RouteId::PublicKeyList => now(sdk::list_keys(&c)),
        RouteId::PublicKeyDelete => sdk::delete_key(&c),
        RouteId::SdkInit => now(sdk::init(&c)),
        RouteId::SdkRefresh => now(sdk::refresh(&c)),
        RouteId::SdkConfig => now(sdk::config(&c)),
        RouteId::SecretCreate => secrets::create(&c),
        RouteId::SecretList => now(secrets::list(&c)),
        RouteId::SecretRotate => secrets::rotate(&c),
        RouteId::SecretDelete => secrets::delete(&c),
        RouteId::ToolList => now(tools::list(&c)),
        RouteId::ToolCreate => tools::create(&c),
        RouteId::ToolGet => now(tools::get(&c)),
        RouteId::ToolPut => tools::replace(&c),
        RouteId::ToolDelete => tools::delete(&c),
        RouteId::ToolTest => tools::test(&c),
        RouteId::ToolImportMcp => tools::import_mcp(&c),
        RouteId::AgentVersionCreate => versions::create(&c),
        RouteId::AgentVersionList => now(versions::list(&c)),
        RouteId::AgentVersionGet => now(versions::get(&c)),
        RouteId::DeploymentCreate => deployments::create(&c),
        RouteId::DeploymentList => now(deployments::list(&c)),
        RouteId::DeploymentGet => now(deployments::get(&c)),
        RouteId::DeploymentPromote => deployments::promote(&c),
        RouteId::DeploymentRollback => deployments::rollback(&c),
        RouteId::DeploymentRetire => deployments::retire(&c),
        RouteId::SessionTraces => now(traces::list(&c)),
        RouteId::SessionMetrics => now(traces::metrics(&c)),
        RouteId::Export => now(transfer::export(&c)),
        RouteId::ImportPreview => now(transfer::preview(&c)),
        RouteId::Import => transfer::import(&c),
        RouteId::ChatAgent => chat::agent(&c, Style::AgentSync),
        RouteId::ChatAgentStream => chat::agent(&c, Style::AgentStream),
        RouteId::ChatSend => chat::send(&c),
        RouteId::ChatStream => chat::stream(&c),
        RouteId::ChatResume => chat::resume(&c),
        RouteId::ChatComplete => chat::complete(&c),
        RouteId::DeployedChat => deployed::turn(&c, Style::AgentSync),
        RouteId::DeployedStream => deployed::turn(&c, Style::AgentStream),
        RouteId::DeployedComplete => deployed::complete(&c),
        RouteId::ChatSession => deployed::open(&c),
        RouteId::Feedback => feedback::give(&c),
        RouteId::AnalyticsMetrics => now(analytics::metrics(&c)),
        RouteId::AnalyticsEvents => now(analytics::events(&c)),
        RouteId::OpenAiCompletions => openai_api::completions(&c),
        RouteId::OpenAiModels => now(openai_api::models(&c)),
        RouteId::ChatUsage => now(chat::usage(&c)),
        RouteId::Widget => Ok(Reply::Now(widget::response(&req.head))),
    }
}

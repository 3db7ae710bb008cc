//! `halyard-api`: routes, authentication, admission and handlers of the v1 API.
//!
//! The engine calls [`Api::admit`](halyard_engine::App::admit) with the request head: the
//! route is resolved, the credential verified and the route's guard checked there, before
//! a byte of the body is read; the route decides the body limit. [`handle`] then runs the
//! route's handler. Writes are acknowledged only once storage reports them durable: the
//! handler defers its reply and the storage completion sends it.
//!
//! For the access log and the per-route metrics, [`describe`] labels each request with its
//! route template (from the table, never the raw path) and its tenant, and `/metrics` gets
//! the API's own families (rate-limit refusals, turns and providers, the storage log).
//!
//! [`describe`]: halyard_engine::App::describe
//! [`handle`]: halyard_engine::App::handle

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod body;
pub mod chat;
pub mod cors;
pub mod docs;
pub mod emit;
pub mod error;
mod handlers;
pub mod jwt;
pub mod metrics;
pub mod offload;
pub mod openapi;
pub mod password;
pub mod query;
pub mod reply;
pub mod route;
pub mod schema;
pub mod scope;
pub mod sdk_token;
pub mod seed;
pub mod time;
pub mod tokens;
pub mod vault;
pub mod view;

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use halyard_engine::{
    Admission, App, Label, Method, Reply, Request, RequestHead, Response, Tenant,
};
use halyard_storage::Backend;

use crate::admission::{LimitConfig, Limiter, RateHeaders};
use crate::auth::{Kind, Principal, Verifiers};
use crate::chat::runtime::{Runtime, RuntimeConfig};
use crate::error::ApiError;
use crate::jwt::{ExternalIssuer, Jwt, JwtError};
use crate::route::{Matched, Params, RouteDef};
use crate::sdk_token::{signing_key, SdkSigner};
use crate::vault::Vault;

/// What the API needs besides storage.
pub struct ApiConfig {
    /// HS256 key of issued JWTs.
    pub jwt_secret: Vec<u8>,
    /// Lifetime of issued JWTs.
    pub jwt_ttl_secs: u64,
    /// An external JWT issuer, if configured.
    pub external_jwt: Option<ExternalIssuer>,
    /// The operator root key (`HALYARD_ROOT_KEY`), if set.
    pub root_key: Option<String>,
    /// The master key of secret encryption.
    pub master_key: [u8; 32],
    /// Rate-limit settings.
    pub limits: LimitConfig,
    /// Agent runtime settings.
    pub runtime: RuntimeConfig,
    /// Where `POST /api/v1/admin/backup` may write (`--backup-dir`); `None` switches the
    /// route off. The server process writes there, so a request names only a directory
    /// inside it, never a path.
    pub backup_dir: Option<PathBuf>,
}

/// Why the API could not be set up from its [`ApiConfig`].
#[derive(Debug)]
pub enum SetupError {
    /// The JWT settings were refused.
    Jwt(JwtError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Jwt(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::Jwt(e) => Some(e),
        }
    }
}

/// The API application.
pub struct Api {
    store: Arc<dyn Backend>,
    verifiers: Verifiers,
    vault: Arc<Vault>,
    imports: Arc<Mutex<HashSet<String>>>,
    limiter: Arc<Limiter>,
    runtime: Runtime,
    backup_dir: Option<PathBuf>,
    /// Set while a backup runs: one at a time.
    backup_running: Arc<AtomicBool>,
    /// Route templates, each once, in table order (the engine's route labels).
    labels: Vec<&'static str>,
    /// The label of each route, by `RouteId as usize`.
    label_of: Vec<u16>,
    /// The handler threads, when the store waits on the network.
    offload: std::sync::OnceLock<offload::Offload>,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// Where an admitted request goes.
#[derive(Debug)]
pub enum Target {
    /// A route of the table, with its captures.
    Route(&'static RouteDef, Params),
    /// A CORS preflight (`OPTIONS`) for a known path.
    Preflight,
}

/// What `admit` hands to `handle`.
#[derive(Debug)]
pub struct Ctx {
    /// The route.
    pub target: Target,
    /// The authenticated principal (none on public routes).
    pub principal: Option<Principal>,
    /// The tenant bucket's state after this request was admitted.
    pub rate: Option<RateHeaders>,
}

impl Api {
    /// An API over `store`.
    pub fn new(store: Arc<dyn Backend>, cfg: ApiConfig) -> Result<Api, SetupError> {
        let jwt = Jwt::new(&cfg.jwt_secret, cfg.jwt_ttl_secs, cfg.external_jwt)
            .map_err(SetupError::Jwt)?;
        let vault = Arc::new(Vault::new(&cfg.master_key));
        let limiter = Arc::new(Limiter::new(cfg.limits));
        let runtime = Runtime::new(cfg.runtime, store.clone(), vault.clone(), limiter.clone());
        Ok(Api {
            store,
            verifiers: Verifiers {
                jwt,
                sdk: SdkSigner::new(&signing_key(&cfg.jwt_secret)),
                root: cfg.root_key.as_deref().map(tokens::digest),
            },
            vault,
            imports: Arc::new(Mutex::new(HashSet::new())),
            limiter,
            runtime,
            backup_dir: cfg.backup_dir,
            backup_running: Arc::new(AtomicBool::new(false)),
            labels: route_labels(),
            label_of: label_of(),
            offload: std::sync::OnceLock::new(),
        })
    }

    /// The label index of `def`.
    fn label(&self, def: &RouteDef) -> Option<u16> {
        self.label_of.get(def.id as usize).copied()
    }

    /// The route a head resolves to, as the label index (`OPTIONS` as its `GET` route).
    fn label_of_head(&self, head: &RequestHead) -> Option<u16> {
        let method = match head.method() {
            Method::Options => Method::Get,
            m => m,
        };
        match route::resolve(method, head.path()) {
            Matched::Route(def, _) => self.label(def),
            Matched::WrongMethod(_) | Matched::NotFound => None,
        }
    }

    /// The storage backend.
    pub fn store(&self) -> &dyn Backend {
        &*self.store
    }

    fn admit_route(&self, head: &RequestHead) -> Result<(u64, Ctx), Response> {
        let openai = route::resolve(head.method(), head.path()).is_openai();
        let reject = |e: ApiError| match openai {
            true => chat::openai_compat::error_response(e),
            false => e.into_response(),
        };
        if head.method() == Method::Options {
            return match route::resolve(Method::Get, head.path()) {
                Matched::NotFound => Err(reject(ApiError::NotFound(not_found_message(head)))),
                _ => Ok((
                    route::BODY_LIMIT,
                    Ctx {
                        target: Target::Preflight,
                        principal: None,
                        rate: None,
                    },
                )),
            };
        }
        let (def, params) = match route::resolve(head.method(), head.path()) {
            Matched::Route(def, params) => (def, params),
            Matched::WrongMethod(allow) => return Err(reject(ApiError::MethodNotAllowed(allow))),
            Matched::NotFound => return Err(reject(ApiError::NotFound(not_found_message(head)))),
        };
        // Logins cost a password hash: each one is charged to the client's address first.
        // Other requests are charged only when their credential fails, and a client whose
        // failures spent the budget gets 429 instead of 401, so a flood of bad credentials
        // stays cheap while valid credentials from the same address keep working.
        if def.id == route::RouteId::Login {
            self.limiter
                .charge_ip(head.peer, head.received)
                .map_err(reject)?;
        }
        let principal = match self.authenticate(head, def) {
            Ok(p) => p,
            Err(e) if e.status() == 401 => {
                return Err(reject(
                    self.limiter
                        .charge_ip(head.peer, head.received)
                        .err()
                        .unwrap_or(e),
                ));
            }
            Err(e) => return Err(reject(e)),
        };
        let rate = match &principal {
            Some(p) if p.kind != Kind::Root => Some(self.take_tenant(head, p)?),
            _ => None,
        };
        Ok((
            route::body_limit(def.id),
            Ctx {
                target: Target::Route(def, params),
                principal,
                rate,
            },
        ))
    }

    fn authenticate(
        &self,
        head: &RequestHead,
        def: &RouteDef,
    ) -> error::ApiResult<Option<Principal>> {
        auth::authenticate(
            &self.verifiers,
            &*self.store,
            head,
            def.guard,
            time::now_ms(),
        )
    }

    /// Decides again, after a shared store caught up, on the credential `admit` accepted
    /// from this node's copy: a key revoked, a user demoted or a tenant disabled on another
    /// node is refused here, whatever this node's copy said.
    pub(crate) fn readmit(&self, head: &RequestHead, ctx: &Ctx) -> Result<(), Response> {
        let Target::Route(def, _) = &ctx.target else {
            return Ok(());
        };
        match self.authenticate(head, def) {
            Ok(_) => Ok(()),
            Err(e) if route::is_openai(def.id) => Err(chat::openai_compat::error_response(e)),
            Err(e) => Err(e.into_response()),
        }
    }

    /// For a store shared by several nodes ([`Backend::is_shared`]): runs handlers on
    /// `threads` threads of their own from now on, so that no event loop waits on the
    /// network, and shares tenant request rates with the other nodes.
    pub fn start_shared(self: &Arc<Self>, threads: usize) -> std::io::Result<()> {
        let offload = offload::Offload::start(Arc::downgrade(self), threads)?;
        let _ = self.offload.set(offload);
        self.limiter.share(self.store.clone())
    }

    /// Serves an admitted request on the calling thread.
    pub(crate) fn serve(&self, request: Request<Ctx>) -> Reply {
        let cors = cors::allowed_origin(&request.head, request.context.principal.as_ref());
        let openai =
            matches!(&request.context.target, Target::Route(def, _) if route::is_openai(def.id));
        let finish = reply::Finish {
            cors,
            rate: request.context.rate,
            openai,
        };
        let result = match &request.context.target {
            Target::Preflight => Ok(Reply::Now(cors::preflight(&*self.store, &request.head))),
            Target::Route(def, params) => handlers::dispatch(self, &request, def, *params, &finish),
        };
        match result {
            Ok(Reply::Now(resp)) => Reply::Now(finish.apply(resp)),
            Ok(other) => other,
            Err(e) => Reply::Now(finish.error(e)),
        }
    }

    /// Takes the request from the tenant's bucket; a refusal carries the rate headers and,
    /// for a widget, the CORS headers so that the page can read it.
    fn take_tenant(&self, head: &RequestHead, p: &Principal) -> Result<RateHeaders, Response> {
        self.limiter
            .take_tenant(&p.tenant, &p.limits, head.received)
            .map_err(|e| {
                let retry_secs = match &e {
                    ApiError::RateLimited(_, ms) => ms.div_ceil(1000),
                    _ => 1,
                };
                let finish = reply::Finish {
                    openai: route::resolve(head.method(), head.path()).is_openai(),
                    cors: cors::allowed_origin(head, Some(p)),
                    rate: Some(RateHeaders {
                        limit: p.limits.burst,
                        remaining: 0,
                        reset: time::now_ms() / 1000 + retry_secs,
                    }),
                };
                finish.error(e)
            })
    }

    /// The limiter (session message rate and concurrent sessions are taken by handlers).
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }
}

/// The route templates of the table, each once, in table order.
fn route_labels() -> Vec<&'static str> {
    let mut labels: Vec<&'static str> = Vec::new();
    for def in route::ROUTES {
        if !labels.contains(&def.pattern) {
            labels.push(def.pattern);
        }
    }
    labels
}

/// For each `RouteId` (as `usize`), the index of its template in [`route_labels`].
fn label_of() -> Vec<u16> {
    let labels = route_labels();
    let size = route::ROUTES
        .iter()
        .map(|d| d.id as usize + 1)
        .max()
        .unwrap_or(0);
    let mut of = vec![u16::MAX; size];
    for def in route::ROUTES {
        if let Some(i) = labels.iter().position(|p| *p == def.pattern) {
            of[def.id as usize] = i as u16;
        }
    }
    of
}

fn not_found_message(head: &RequestHead) -> String {
    let path: String = head.path().chars().take(200).collect();
    format!("No route for {} {path}", head.method_str())
}

impl Api {
    /// Whether a request may be answered on the event loop on a shared store: a read
    /// (`GET`, `HEAD`) of a tenant whose copy here holds every acknowledged write
    /// ([`Backend::is_current`]: a read lease), so it needs no database round trip and no
    /// handler thread. Handlers of reads only read memory.
    fn reads_here(&self, request: &Request<Ctx>) -> bool {
        let read = matches!(request.head.method(), Method::Get | Method::Head);
        let tenant = request
            .context
            .principal
            .as_ref()
            .map(|p| p.tenant.as_str());
        read && tenant.is_some_and(|t| !t.is_empty() && self.store.is_current(t))
    }
}

impl App for Api {
    type Context = Ctx;

    fn admit(&self, head: &RequestHead) -> Admission<Ctx> {
        match self.admit_route(head) {
            Ok((body_limit, context)) => Admission::Accept {
                body_limit,
                context,
            },
            Err(resp) => Admission::Reject(resp),
        }
    }

    fn handle(&self, request: Request<Ctx>) -> Reply {
        match self.offload.get() {
            Some(offload) if !self.reads_here(&request) => offload.submit(request),
            _ => self.serve(request),
        }
    }

    fn ready(&self) -> bool {
        self.store.is_healthy()
    }

    fn write_metrics(&self, out: &mut String) {
        self.limiter.refusals.render(out);
        self.runtime.write_metrics(out);
        if let Some(m) = self.store.log_metrics() {
            metrics::write_log_metrics(out, &m);
        }
    }

    fn route_labels(&self) -> Vec<&'static str> {
        self.labels.clone()
    }

    /// The route's template (also for requests refused before their handler, such as a
    /// `401` on a known path) and the tenant of the principal, if any.
    fn describe(&self, head: &RequestHead, context: Option<&Ctx>) -> Label {
        let Some(ctx) = context else {
            return Label {
                route: self.label_of_head(head),
                tenant: Tenant::default(),
            };
        };
        let route = match &ctx.target {
            Target::Route(def, _) => self.label(def),
            Target::Preflight => self.label_of_head(head),
        };
        let tenant = match &ctx.principal {
            Some(p) => Tenant::new(&p.tenant),
            None => Tenant::default(),
        };
        Label { route, tenant }
    }
}

/// A response that says the request succeeded with no other content.
pub fn success() -> Response {
    Response::static_json(200, br#"{"success":true}"#)
}

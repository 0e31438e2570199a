//! The running gateway: its configuration, the state every request sees
//! (the home, the keys, the journal, each mesh's session), the checks
//! every request passes before a handler runs (its `Host`, then its key,
//! the key's rate, the key's mesh), the audit of each key's use, CORS
//! only for the origins configured, and the stop that drains it. The
//! caller binds the listener (TCP, TLS or a Unix socket) and serves
//! [`Gateway::router`] on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use claudemesh_client::local::LocalStore;
use claudemesh_client::{ClientError, Home, MeshClient};
use claudemesh_proto::clock::now_ms;
use claudemesh_proto::sync::lock;
use tokio::sync::watch;

use crate::apikeys::{ApiKeyInfo, ApiKeys, Cap, presented_prefix};
use crate::auth;
use crate::host::AllowedHosts;
use crate::idempotency::IdempotencyKeys;
use crate::journal::{Journal, JournalError};
use crate::links::{Links, MeshLink, SessionSettings};
use crate::problem::Problem;
use crate::ratelimit::KeyRates;
use crate::web::WebSession;
use crate::web::sessions::WebSessions;

/// Largest request body, in bytes (a message body is capped lower by the
/// client; this keeps a request from being buffered without bound).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// How often old journal rows are dropped (idempotency keys go as new
/// ones are taken).
const TRIM_EVERY: Duration = Duration::from_secs(3600);

/// One use of an API key, for the local audit log.
#[derive(Debug, Clone)]
pub struct KeyUse {
    /// `allowed` (answered below 400), `denied` (401, 403, 421, 429) or
    /// `failed`.
    pub decision: &'static str,
    /// `api.<METHOD> <route>` (`api.POST /api/v1/messages`).
    pub verb: String,
    /// The key's prefix (never its secret), when one was presented;
    /// `(not a key)` for a bearer token without a key's shape.
    pub key: Option<String>,
    /// The key's label, when it was recognised.
    pub label: Option<String>,
    /// The key's mesh, when it was recognised.
    pub mesh: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
}

/// Where key uses are recorded (the CLI writes its audit log).
pub type AuditHook = Arc<dyn Fn(KeyUse) + Send + Sync>;

/// How a gateway runs.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // the audit hook is a closure
pub struct GatewayConfig {
    /// The home it serves.
    pub home: Home,
    /// How its sessions present themselves.
    pub session: SessionSettings,
    /// The `Host` headers it answers.
    pub allowed_hosts: AllowedHosts,
    /// Whether it is served over TLS.
    pub tls: bool,
    /// Origins allowed to call it from a browser (CORS); none by default.
    pub cors_origins: Vec<String>,
    /// Requests per second per key, and the burst allowed.
    pub rate: (u32, u32),
    /// Where each use of a key is recorded.
    pub audit: Option<AuditHook>,
}

/// Why a gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The home's local store.
    #[error(transparent)]
    Local(#[from] ClientError),
    /// The journal.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What every request sees.
#[allow(missing_debug_implementations)] // the audit hook is a closure
pub struct AppState {
    pub(crate) home: Home,
    pub(crate) local: LocalStore,
    pub(crate) keys: ApiKeys,
    pub(crate) idempotency: IdempotencyKeys,
    pub(crate) journal: Journal,
    pub(crate) links: Links,
    pub(crate) web: WebSessions,
    rates: KeyRates,
    allowed_hosts: AllowedHosts,
    pub(crate) tls: bool,
    cors_origins: Vec<String>,
    audit: Option<AuditHook>,
    pub(crate) stop: watch::Receiver<bool>,
}

/// A running gateway.
#[allow(missing_debug_implementations)] // its state holds the audit hook
pub struct Gateway {
    state: Arc<AppState>,
    stop: Arc<watch::Sender<bool>>,
    trimmer: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Opens the home's local store and starts a session in each mesh.
    pub async fn start(config: GatewayConfig) -> Result<Gateway, StartError> {
        let local = LocalStore::open(&config.home.state_db_path()).await?;
        let pool = local.pool().clone();
        let journal = Journal::open(pool.clone()).await?;
        let (stop, stop_rx) = watch::channel(false);
        let links = Links::start(&config.home, &config.session, &journal, &stop_rx);
        let state = Arc::new(AppState {
            home: config.home,
            local,
            keys: ApiKeys::new(pool.clone()),
            web: WebSessions::new(pool.clone()),
            idempotency: IdempotencyKeys::new(pool),
            journal,
            links,
            rates: KeyRates::new(config.rate.0, config.rate.1),
            allowed_hosts: config.allowed_hosts,
            tls: config.tls,
            cors_origins: config.cors_origins,
            audit: config.audit,
            stop: stop_rx,
        });
        let trimmer = tokio::spawn(trim(state.clone()));
        Ok(Gateway {
            state,
            stop: Arc::new(stop),
            trimmer,
        })
    }

    /// The HTTP surface: `/api/v1`, `/api-docs`, `/healthz`, and the web
    /// app (`/`, `/assets`, `/web`).
    pub fn router(&self) -> Router {
        let (api, _) = crate::api::router().split_for_parts();
        let state = self.state.clone();
        Router::new()
            .merge(api)
            .merge(crate::docs::router())
            .merge(crate::web::router())
            .route("/healthz", axum::routing::get(healthz))
            .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
            .layer(middleware::from_fn(crate::web::mesh_param))
            .layer(middleware::from_fn_with_state(state.clone(), audit))
            .layer(middleware::from_fn_with_state(state.clone(), cors))
            .layer(middleware::from_fn_with_state(state.clone(), host_guard))
            .layer(middleware::from_fn(crate::web::security_headers))
            .with_state(state)
    }

    /// A one-time link that signs a browser in to the web app
    /// (`claudemesh serve open` makes one without a running gateway's
    /// help, in the same `state.db`).
    pub async fn signin_link(
        &self,
    ) -> Result<crate::web::sessions::SignIn, crate::web::sessions::WebSessionError> {
        self.state.web.issue_signin(now_ms()).await
    }

    /// Each mesh's name and link state (`up`, `connecting`, …).
    pub fn links(&self) -> Vec<(String, &'static str)> {
        self.state
            .links
            .iter()
            .map(|l| (l.mesh.name.clone(), l.link().state()))
            .collect()
    }

    /// Gives the stop signal: event streams end, sessions close once the
    /// requests in flight are done.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// A future for `axum::serve(…).with_graceful_shutdown`: once `signal`
    /// completes it gives the stop signal (so event streams end and the
    /// server can drain), then completes.
    pub fn stop_on(
        &self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let stop = self.stop.clone();
        async move {
            signal.await;
            tracing::info!("stopping: draining requests");
            stop.send_replace(true);
        }
    }

    /// Stops and waits for every session to close (its outbox flushed).
    pub async fn shutdown(self) {
        self.stop();
        self.trimmer.abort();
        self.state.links.closed().await;
    }
}

/// `GET /healthz`: answers 200 once the gateway serves (no key needed;
/// says nothing about the meshes).
async fn healthz() -> &'static str {
    "ok\n"
}

async fn trim(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    loop {
        tick.tick().await;
        let now = now_ms();
        if let Err(e) = state
            .journal
            .trim(now.saturating_sub(crate::journal::KEEP_MS))
            .await
        {
            tracing::warn!("{e}");
        }
    }
}

/// Every request: its `Host` must name this listener (no DNS rebinding).
async fn host_guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Err(p) = auth::check_host(&state.allowed_hosts, state.tls, req.headers()) {
        return p.into_response();
    }
    next.run(req).await
}

/// CORS only for the origins configured: a browser page from anywhere
/// else gets no `Access-Control-Allow-*` header, so it cannot read an
/// answer (and a preflight from it is refused).
async fn cors(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let allowed = origin
        .as_deref()
        .filter(|o| state.cors_origins.iter().any(|a| a == o))
        .and_then(|o| HeaderValue::from_str(o).ok());
    if req.method() == Method::OPTIONS && origin.is_some() {
        let Some(allowed) = allowed else {
            return Problem::new(
                StatusCode::FORBIDDEN,
                claudemesh_client::error_kind::ErrorKind::Denied,
                "this origin may not call the gateway",
            )
            .hint("allow it with `claudemesh serve --cors-origin <origin>`")
            .into_response();
        };
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PATCH, DELETE"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, idempotency-key, last-event-id"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(header::VARY, HeaderValue::from_static("origin"));
        return resp;
    }
    let mut resp = next.run(req).await;
    if let Some(allowed) = allowed {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        h.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    resp
}

/// The audit target of a bearer token that does not have a key's shape
/// (none of it is written: it may be another service's secret).
const NOT_A_KEY: &str = "(not a key)";

/// The slot a request's [`Caller`] fills, read by [`audit`] once the
/// answer is known.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Option<ApiKeyInfo>>>);

/// Every use of a key goes to the audit hook: which route, which key (its
/// prefix), what was answered. Requests without a key (the docs, the
/// health check) are not key uses.
async fn audit(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let Some(hook) = state.audit.clone() else {
        return next.run(req).await;
    };
    let key = match req.headers().get(header::AUTHORIZATION) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().split_once(' '))
            .map(|(_, token)| {
                presented_prefix(token.trim()).unwrap_or_else(|| NOT_A_KEY.to_owned())
            }),
        // A signed-in page's API calls are uses too, under its session id.
        None if req.uri().path().starts_with("/api/") => {
            crate::web::session_cookie(req.headers()).and_then(crate::web::sessions::presented_id)
        }
        None => None,
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let verb = format!("api.{} {route}", req.method());
    let seen = Seen::default();
    req.extensions_mut().insert(seen.clone());
    let resp = next.run(req).await;
    let Some(key) = key else {
        return resp;
    };
    let status = resp.status().as_u16();
    let info = lock(&seen.0).clone();
    let decision = match status {
        0..=399 => "allowed",
        401 | 403 | 421 | 429 => "denied",
        _ => "failed",
    };
    let mesh = info
        .as_ref()
        .and_then(|i| state.links.get(&i.mesh).map(|l| l.mesh.name.clone()));
    hook(KeyUse {
        decision,
        verb,
        key: Some(key),
        label: info.map(|i| i.label),
        mesh,
        status,
    });
    resp
}

/// Who is calling: a valid key within its rate, and its mesh's session.
/// Every `/api/v1` handler takes one.
#[derive(Debug)]
pub struct Caller {
    /// The key (for a signed-in page, one made for the request: every
    /// capability, in the mesh it names, labelled `web`).
    pub key: ApiKeyInfo,
    /// The key's mesh's session.
    pub link: Arc<MeshLink>,
    /// The web session's id, when the caller is the web app.
    pub web: Option<String>,
}

impl Caller {
    /// How messages this caller reads were shown, for their receipts: in
    /// the web app, or to a script through the gateway.
    pub fn via(&self) -> claudemesh_crypto::receipt::Via {
        if self.web.is_some() {
            claudemesh_crypto::receipt::Via::Web
        } else {
            claudemesh_crypto::receipt::Via::Gateway
        }
    }

    /// Refuses a key without `cap`.
    pub fn require(&self, cap: Cap) -> Result<(), Problem> {
        auth::require(&self.key, cap)
    }

    /// The connected client of the key's mesh (503 while there is none).
    pub fn client(&self) -> Result<Arc<MeshClient>, Problem> {
        self.link.client()
    }

    /// Refuses a key limited to topics anything but its topics.
    pub fn require_target(&self, target: &str) -> Result<(), Problem> {
        auth::require_target(&self.key, target)
    }

    /// The `#topic` targets a topic-scoped key may see (`None`: any).
    pub fn scoped_targets(&self) -> Option<Vec<String>> {
        self.key
            .topic_scoped()
            .then(|| self.key.topics.iter().map(|t| format!("#{t}")).collect())
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        // No key but a session cookie: the web app, signed in.
        if !parts.headers.contains_key(header::AUTHORIZATION)
            && crate::web::session_cookie(&parts.headers).is_some()
        {
            let WebSession(session) = WebSession::from_request_parts(parts, state).await?;
            state.rates.take(&session.id)?;
            let link = crate::web::chosen_mesh(state, parts)?;
            let key = ApiKeyInfo {
                prefix: session.id.clone(),
                label: "web".to_owned(),
                mesh: link.mesh.id,
                caps: [Cap::Read, Cap::Send, Cap::Admin].into_iter().collect(),
                topics: Vec::new(),
                created_at: session.created_at,
                expires_at: Some(session.expires_at),
                last_used_at: None,
                revoked_at: None,
            };
            if let Some(seen) = parts.extensions.get::<Seen>() {
                *lock(&seen.0) = Some(key.clone());
            }
            return Ok(Caller {
                key,
                link,
                web: Some(session.id),
            });
        }
        let key = auth::authenticate(&state.keys, &parts.headers).await?;
        if let Some(seen) = parts.extensions.get::<Seen>() {
            *lock(&seen.0) = Some(key.clone());
        }
        state.rates.take(&key.prefix)?;
        let link = state.links.get(&key.mesh).cloned().ok_or_else(|| {
            Problem::new(
                StatusCode::FORBIDDEN,
                claudemesh_client::error_kind::ErrorKind::NotFound,
                "this API key's mesh is not in this home any more",
            )
            .hint("revoke it with `claudemesh apikey revoke`")
        })?;
        Ok(Caller {
            key,
            link,
            web: None,
        })
    }
}

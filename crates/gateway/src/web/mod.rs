//! The web app (`docs/web.md`): the page at `/` and its assets, embedded in
//! the binary; signing in (`/web/signin`, from a link `claudemesh serve
//! open` prints) and out; the session the page reads (`/web/session`); the
//! headers every answer carries (a Content-Security-Policy of `'self'`
//! with no inline script, no framing, no sniffing, no referrer); and the
//! [`WebSession`] extractor through which the page calls the same
//! `/api/v1` routes as API keys, with its CSRF token checked on every
//! state-changing request and its mesh named by `X-Claudemesh-Mesh` (or
//! `?mesh=` on the event stream, which a browser opens without headers).
//!
//! The page is plain HTML, CSS and one script that builds the DOM with
//! `textContent` only (why: `docs/architecture.md`, "The web app").

pub mod sessions;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use claudemesh_client::error_kind::ErrorKind;
use claudemesh_proto::clock::now_ms;
use serde::Deserialize;

use crate::app::AppState;
use crate::problem::Problem;
use sessions::{COOKIE, WebAuthError, WebSessionInfo, same_token};

/// The CSRF header the page sends on every POST, PATCH and DELETE.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The header that names the mesh a page's request is about.
pub const MESH_HEADER: &str = "x-claudemesh-mesh";

/// Every answer's Content-Security-Policy: only this origin's script,
/// style and connections, images from it or `data:` (the QR codes), no
/// inline script or style, no plugin, no framing, no `<base>`.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; object-src 'none'; \
                       frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const INDEX_HTML: &str = include_str!("../../assets/web/index.html");
const APP_JS: &str = include_str!("../../assets/web/app.js");
const APP_CSS: &str = include_str!("../../assets/web/app.css");
const ICON_SVG: &str = include_str!("../../assets/web/icon.svg");

/// The page, its assets and the sign-in routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/assets/icon.svg",
            get(|| async { asset("image/svg+xml", ICON_SVG) }),
        )
        .route("/web/signin", get(signin))
        .route("/web/session", get(session))
        .route("/web/signout", post(signout))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Embedded in the binary: a new version comes with a restart,
            // so the browser asks again each time (cheap on loopback).
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Every answer: no framing, no sniffing, no referrer, and the CSP.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    resp
}

/// The `cm_web` cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// A signed-in page's request: its session, checked now. For a POST,
/// PATCH or DELETE also its CSRF token and, when the browser says where
/// the request comes from, that it comes from this origin.
#[derive(Debug, Clone)]
pub struct WebSession(pub WebSessionInfo);

impl FromRequestParts<Arc<AppState>> for WebSession {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let cookie = session_cookie(&parts.headers).ok_or_else(|| signed_out(None))?;
        let info = match state.web.authenticate(cookie, now_ms()).await {
            Ok(Ok(info)) => info,
            Ok(Err(why)) => return Err(signed_out(Some(why))),
            Err(e) => {
                tracing::error!(error = %e, "checking a web session failed");
                return Err(Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorKind::Io,
                    "the gateway could not read its sessions",
                ));
            }
        };
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            check_csrf(&parts.headers, &info)?;
        }
        Ok(WebSession(info))
    }
}

/// 401: the page shows its sign-in screen.
fn signed_out(why: Option<WebAuthError>) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        ErrorKind::Refused,
        why.map_or_else(|| "not signed in".to_owned(), |w| w.to_string()),
    )
    .hint("sign in with the link `claudemesh serve open` prints")
}

/// A state-changing request must carry the session's CSRF token (which
/// only a page of this origin can read, from `/web/session`), and must not
/// say it comes from another site.
fn check_csrf(headers: &HeaderMap, info: &WebSessionInfo) -> Result<(), Problem> {
    let refused = |detail: &str| {
        Problem::new(StatusCode::FORBIDDEN, ErrorKind::Denied, detail.to_owned())
            .hint("reload the page; requests from other sites are refused")
    };
    let token = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if token.is_empty() || !same_token(token, &info.csrf) {
        return Err(refused("the request lacks this session's CSRF token"));
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(refused("the request comes from another site"));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let own = origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host));
        if !own {
            return Err(refused("the request comes from another origin"));
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct SigninQuery {
    #[serde(default)]
    token: String,
}

/// `GET /web/signin?token=…`: a valid link becomes a session cookie and
/// goes to the page; any other goes to the page's "link used or expired".
async fn signin(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<SigninQuery>,
) -> Response {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let failed = || see_other("/#/signin-failed");
    match state.web.redeem(&q.token, agent, now_ms()).await {
        Ok(Ok(new)) => {
            let mut resp = see_other("/");
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                new.cookie.as_str(),
                sessions::SESSION_TTL_MS / 1000,
                if state.tls { "; Secure" } else { "" }
            );
            match HeaderValue::from_str(&cookie) {
                Ok(v) => {
                    resp.headers_mut().insert(header::SET_COOKIE, v);
                    tracing::info!(session = %new.info.id, "web session started");
                    resp
                }
                Err(_) => failed(),
            }
        }
        Ok(Err(why)) => {
            tracing::info!("a sign-in link was refused: {why}");
            failed()
        }
        Err(e) => {
            tracing::error!(error = %e, "redeeming a sign-in link failed");
            failed()
        }
    }
}

fn see_other(to: &'static str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, to), (header::CACHE_CONTROL, "no-store")],
    )
        .into_response()
}

/// `GET /web/session`: the session, its CSRF token, and the meshes.
async fn session(State(state): State<Arc<AppState>>, WebSession(info): WebSession) -> Response {
    let default = state.home.config().default_mesh;
    let meshes: Vec<serde_json::Value> = state
        .home
        .meshes()
        .iter()
        .filter(|m| state.links.get(&m.id).is_some())
        .map(|m| {
            serde_json::json!({
                "name": m.name,
                "id": m.id.to_hex(),
                "display_name": m.display_name,
                "peer_type": m.peer_type,
                "default": Some(m.id) == default,
            })
        })
        .collect();
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({
            "id": info.id,
            "csrf": info.csrf,
            "expires_at": info.expires_at,
            "meshes": meshes,
        })),
    )
        .into_response()
}

/// `POST /web/signout`: ends the session and clears the cookie.
async fn signout(State(state): State<Arc<AppState>>, WebSession(info): WebSession) -> Response {
    if let Err(e) = state.web.end(&info.id, now_ms()).await {
        tracing::warn!("{e}");
    }
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
    )
        .into_response()
}

/// The mesh a page's request names: `X-Claudemesh-Mesh`, else `?mesh=`
/// (taken out of the query by [`mesh_param`]); by name or id.
#[derive(Debug, Clone)]
pub struct MeshParam(pub String);

/// Takes `mesh=` out of a signed-in page's query (the API's own queries
/// refuse fields they do not know), for [`WebSession`] callers to read.
pub async fn mesh_param(mut req: Request, next: Next) -> Response {
    if req.headers().contains_key(header::AUTHORIZATION) {
        return next.run(req).await;
    }
    let Some(query) = req.uri().query() else {
        return next.run(req).await;
    };
    let mut mesh = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("mesh=") {
            Some(v) => {
                mesh = Some(
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
                false
            }
            None => true,
        })
        .collect();
    if let Some(mesh) = mesh {
        let path = req.uri().path();
        let rebuilt = if kept.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", kept.join("&"))
        };
        if let Ok(uri) = rebuilt.parse() {
            *req.uri_mut() = uri;
        }
        req.extensions_mut().insert(MeshParam(mesh));
    }
    next.run(req).await
}

/// The mesh a signed-in page's request is about (by name or id hex), or
/// the home's default mesh.
pub fn chosen_mesh(
    state: &AppState,
    parts: &Parts,
) -> Result<Arc<crate::links::MeshLink>, Problem> {
    let named = parts
        .headers
        .get(MESH_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.extensions.get::<MeshParam>().map(|m| m.0.clone()));
    let link = match named.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => state
            .links
            .iter()
            .find(|l| l.mesh.name == name || l.mesh.id.to_hex() == name),
        None => state
            .home
            .config()
            .default_mesh
            .and_then(|id| state.links.get(&id))
            .or_else(|| state.links.iter().next()),
    };
    link.cloned().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            ErrorKind::NotFound,
            match named {
                Some(n) => format!("this gateway serves no mesh {n:?}"),
                None => "this gateway serves no mesh".to_owned(),
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_session_cookie_among_others() {
        let h = headers(&[("cookie", "a=1; cm_web=ws_1_x ;b=2")]);
        assert_eq!(session_cookie(&h), Some("ws_1_x"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "cm_web=v")]);
        assert_eq!(session_cookie(&h), Some("v"));
        assert_eq!(session_cookie(&headers(&[("cookie", "xcm_web=v")])), None);
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    fn info() -> WebSessionInfo {
        WebSessionInfo {
            id: "ws_00000000".into(),
            agent: String::new(),
            created_at: 0,
            expires_at: 1,
            last_seen_at: 0,
            ended_at: None,
            csrf: "tok".into(),
        }
    }

    #[test]
    fn a_write_needs_the_token_and_this_origin() {
        let host = ("host", "127.0.0.1:7901");
        assert!(check_csrf(&headers(&[host, (CSRF_HEADER, "tok")]), &info()).is_ok());
        assert!(
            check_csrf(
                &headers(&[
                    host,
                    (CSRF_HEADER, "tok"),
                    ("origin", "http://127.0.0.1:7901"),
                    ("sec-fetch-site", "same-origin"),
                ]),
                &info()
            )
            .is_ok()
        );
        for bad in [
            vec![host],
            vec![host, (CSRF_HEADER, "")],
            vec![host, (CSRF_HEADER, "tok2")],
            vec![host, (CSRF_HEADER, "tok"), ("origin", "http://evil.test")],
            vec![
                host,
                (CSRF_HEADER, "tok"),
                ("origin", "http://127.0.0.1:7902"),
            ],
            vec![host, (CSRF_HEADER, "tok"), ("origin", "null")],
            vec![host, (CSRF_HEADER, "tok"), ("sec-fetch-site", "same-site")],
            vec![host, (CSRF_HEADER, "tok"), ("sec-fetch-site", "cross-site")],
        ] {
            let p = check_csrf(&headers(&bad), &info()).unwrap_err();
            assert_eq!(p.status, 403, "{bad:?}");
        }
    }
}

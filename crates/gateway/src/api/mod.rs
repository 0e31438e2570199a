//! `/api/v1`: the resources a key's mesh offers, each route registered
//! once for both routing and the OpenAPI document (`utoipa_axum`). Every
//! route takes a [`Caller`](crate::app::Caller) (key, rate, mesh) and asks
//! for the capability it needs; a key limited to topics sees and acts on
//! those topics only.
//!
//! - [`meshes`]: the key's mesh and the gateway's link to it.
//! - [`peers`]: members with presence; groups; this member's profile.
//! - [`messages`]: the inbox (unread, by cursor), sending (with
//!   `Idempotency-Key`), one message with its delivery, marking read.
//! - [`topics`]: list, create, join, leave, members, history, post, read.
//! - [`events`]: the server-sent event stream.

pub mod events;
pub mod meshes;
pub mod messages;
pub mod peers;
pub mod topics;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::problem::Problem;

/// The document's fixed parts; the paths come from the handlers.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "claudemesh gateway",
        description = "The local gateway of claudemesh (`claudemesh serve`): end-to-end encrypted messages, topics and presence over HTTP, with the keys and the crypto staying on this device. Authenticate with `Authorization: Bearer <key>` (a key from `claudemesh apikey create`). Errors are `application/problem+json` (RFC 9457) whose `code` is the CLI's exit code.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ProblemBody)),
    tags(
        (name = "meshes", description = "The key's mesh"),
        (name = "peers", description = "Members, presence, groups and profile"),
        (name = "messages", description = "Direct, topic, group and broadcast messages"),
        (name = "topics", description = "Topics"),
        (name = "events", description = "Server-sent events"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("cmk_<prefix>_<secret>")
                    .build(),
            ),
        );
    }
}

/// An error answer (`application/problem+json`, RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)] // documents `Problem`'s body, which is written by hand
pub struct ProblemBody {
    /// `urn:claudemesh:problem:<kind>`.
    #[serde(rename = "type")]
    type_uri: String,
    /// The kind's title.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What happened.
    detail: String,
    /// The CLI's exit code for the same failure.
    code: u8,
    /// Its name (`usage`, `not_found`, `denied`, …).
    kind: String,
    /// What to do next.
    hint: Option<String>,
    /// Seconds before a retry may succeed (429, 503).
    retry_after: Option<u64>,
}

/// Every `/api/v1` route.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(meshes::list))
        .routes(routes!(peers::list))
        .routes(routes!(peers::groups))
        .routes(routes!(peers::group_join))
        .routes(routes!(peers::group_leave))
        .routes(routes!(peers::profile, peers::profile_update))
        .routes(routes!(messages::list, messages::send))
        .routes(routes!(messages::one))
        .routes(routes!(messages::mark_read))
        .routes(routes!(topics::list, topics::create))
        .routes(routes!(topics::one))
        .routes(routes!(topics::join))
        .routes(routes!(topics::leave))
        .routes(routes!(topics::members))
        .routes(routes!(topics::history, topics::post))
        .routes(routes!(topics::read))
        .routes(routes!(events::stream))
}

/// The OpenAPI document, as served at `/api-docs/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    router().split_for_parts().1
}

/// A JSON body whose refusal is a [`Problem`] (axum's own is plain text).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(json_problem(&e)),
        }
    }
}

fn json_problem(e: &JsonRejection) -> Problem {
    let status = e.status();
    let mut p = Problem::bad_request(e.body_text());
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        p.status = status.as_u16();
        p.detail = format!(
            "the request is larger than {} bytes",
            crate::app::MAX_REQUEST_BYTES
        );
    } else if status == axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE {
        p.status = status.as_u16();
        p.detail = "send the body as JSON (Content-Type: application/json)".into();
    }
    p
}

/// Query parameters whose refusal is a [`Problem`].
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(e) => Err(Problem::bad_request(e.body_text())),
        }
    }
}

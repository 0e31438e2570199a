//! `/api/v1`: the resources a key's mesh offers, each route registered
//! once for both routing and the OpenAPI document (`utoipa_axum`). Every
//! route takes a [`Caller`](crate::app::Caller) (key, rate, mesh) and asks
//! for the capability it needs; a key limited to topics sees and acts on
//! those topics only. [`openapi`] is the document of them all, each
//! operation listing every status it may answer (the checks before a
//! handler too) under a unique `operationId`.
//!
//! - [`meshes`]: the key's mesh and the gateway's link to it.
//! - [`peers`]: members with presence; groups; this member's profile.
//! - [`safety`]: a peer's safety number (with its QR code), and marking
//!   its key verified.
//! - [`invites`]: a new invite to the mesh, with its QR code.
//! - [`messages`]: the inbox (unread, by cursor), sending (with
//!   `Idempotency-Key`), one message with its delivery, marking read.
//! - [`scheduled`]: messages held at the broker for later; cancelling one.
//! - [`memory`]: the team's memory: search, remember, forget.
//! - [`tasks`]: the shared task list: create, claim, release, complete.
//! - [`state`]: shared state: keys with versioned JSON values.
//! - [`leases`]: file leases: who is editing which paths.
//! - [`conversations`]: the direct messages with one peer, both ways.
//! - [`topics`]: list, create, join, leave, members, history, post, read.
//! - [`events`]: the server-sent event stream.

pub mod conversations;
pub mod events;
pub mod invites;
pub mod leases;
pub mod memory;
pub mod meshes;
pub mod messages;
pub mod peers;
pub mod safety;
pub mod scheduled;
pub mod state;
pub mod tasks;
pub mod topics;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use claudemesh_crypto::envelope::MessageId;
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
        (name = "peers", description = "Members, presence, groups, profile, safety numbers"),
        (name = "invites", description = "Invites to the mesh"),
        (name = "messages", description = "Direct, topic, group and broadcast messages"),
        (name = "scheduled", description = "Messages held at the broker for later"),
        (name = "memory", description = "The team's memory: notes sealed to the mesh, searched on this device"),
        (name = "tasks", description = "The shared task list: sealed to the mesh, claims arbitrated by the broker"),
        (name = "state", description = "Shared state: keys with versioned JSON values, compare-and-set"),
        (name = "leases", description = "File leases: which session is editing which paths"),
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
        .routes(routes!(safety::safety))
        .routes(routes!(safety::verify))
        .routes(routes!(invites::create))
        .routes(routes!(messages::list, messages::send))
        .routes(routes!(messages::one))
        .routes(routes!(messages::mark_read))
        .routes(routes!(scheduled::list))
        .routes(routes!(scheduled::cancel))
        .routes(routes!(memory::list, memory::remember))
        .routes(routes!(memory::forget))
        .routes(routes!(tasks::list, tasks::create))
        .routes(routes!(tasks::one, tasks::delete))
        .routes(routes!(tasks::claim))
        .routes(routes!(tasks::release))
        .routes(routes!(tasks::complete))
        .routes(routes!(state::list))
        .routes(routes!(state::get, state::set, state::delete))
        .routes(routes!(leases::list, leases::take))
        .routes(routes!(leases::renew))
        .routes(routes!(leases::release))
        .routes(routes!(conversations::conversation))
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
    let mut doc = router().split_for_parts().1;
    common_responses(&mut doc);
    doc
}

/// Routes that answer without the mesh's session (no 503).
const NO_SESSION: &[&str] = &["/api/v1/meshes"];

/// Adds to every operation the answers any route may give besides its
/// own (the checks before a handler, the body and parameter extractors,
/// the session), unless the route documents that status itself; and
/// makes each `operationId` unique, as OpenAPI requires, by its tag
/// (`utoipa` names operations by their handlers: four are `list`).
fn common_responses(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in &mut doc.paths.paths {
        let session = !NO_SESSION.contains(&path.as_str());
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.put,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            if let (Some(id), Some([tag, ..])) = (&op.operation_id, op.tags.as_deref()) {
                op.operation_id = Some(format!("{tag}_{id}"));
            }
            let body = op.request_body.is_some();
            let input = body || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let mut add = |status: &str, description: &str, retry: bool| {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| problem_response(description, retry).into());
            };
            if input {
                add("400", "A bad parameter or body", false);
            }
            add("401", "No valid key", false);
            add(
                "403",
                "The key lacks the capability, is limited to other topics, or its mesh is not in this home any more",
                false,
            );
            if body {
                add("413", "The request is larger than 256 KiB", false);
                add(
                    "415",
                    "The body is not JSON (`Content-Type: application/json`)",
                    false,
                );
            }
            add("421", "The `Host` header does not name this gateway", false);
            add(
                "429",
                "Too many requests: this key's rate, or the broker's limits (presence changes, messages)",
                true,
            );
            if session {
                add(
                    "503",
                    "The mesh's session is not connected (yet), or the broker did not answer",
                    true,
                );
            }
        }
    }
}

/// A problem answer, with `Retry-After` when `retry`.
fn problem_response(description: &str, retry: bool) -> utoipa::openapi::Response {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::{ContentBuilder, Object, Ref, ResponseBuilder, Type};
    let mut r = ResponseBuilder::new().description(description).content(
        crate::problem::PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ProblemBody")))
            .build(),
    );
    if retry {
        r = r.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(Object::with_type(Type::Integer)))
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    r.build()
}

/// Coordination (team memory, tasks, shared state, leases) is mesh-wide:
/// a key limited to topics sees none of it (`what` names it).
pub(crate) fn whole_mesh(caller: &crate::app::Caller, what: &str) -> Result<(), Problem> {
    if caller.scoped_targets().is_some() {
        return Err(Problem::out_of_scope(what));
    }
    Ok(())
}

/// This member's key, and whether it is an owner or admin (who may
/// moderate: forget any note, force or delete any task, release any lease).
pub(crate) fn standing(
    client: &claudemesh_client::MeshClient,
) -> (claudemesh_crypto::MemberKey, bool) {
    client.with_state(|s| (claudemesh_crypto::MemberKey(s.my_key()), s.is_admin()))
}

/// Tells this gateway's own event streams that `kind` changed after one
/// of its routes wrote it: the broker's `coord_changed` reaches every
/// other session, never the one that wrote, so another page or script on
/// this gateway would not hear of it otherwise.
pub(crate) async fn coordination_written(
    state: &AppState,
    caller: &crate::app::Caller,
    kind: claudemesh_crypto::coord::CoordKind,
) {
    let data = serde_json::json!({ "kinds": [kind.as_str()] });
    if let Err(e) = state
        .journal
        .record(
            &caller.link.mesh.id,
            crate::journal::EventKind::Coordination,
            None,
            &data,
            claudemesh_proto::clock::now_ms(),
        )
        .await
    {
        tracing::error!(kind = "coordination", "{e}");
    }
}

/// A comma-separated list as a query gives it: trimmed, empty items
/// dropped.
pub(crate) fn comma_list(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A message id as a request gives it (`what`: the field, or `""` for a
/// path segment), checked.
pub fn message_id(what: &str, given: &str) -> Result<MessageId, Problem> {
    MessageId::from_hex(given.trim()).map_err(|_| {
        let field = if what.is_empty() {
            String::new()
        } else {
            format!("{what} ")
        };
        Problem::bad_request(format!(
            "{field}{given:?} is not a message id (32 hex digits)"
        ))
    })
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

/// A JSON body that must be an object, read into `T` by field names
/// (serde would also fill a struct's fields in order from an array:
/// `[null, null]` is no request).
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<T, S> FromRequest<S> for Object<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Body(map) =
            Body::<serde_json::Map<String, serde_json::Value>>::from_request(req, state).await?;
        serde_json::from_value(serde_json::Value::Object(map))
            .map(Object)
            .map_err(|e| {
                Problem::bad_request(format!(
                    "Failed to deserialize the JSON body into the target type: {e}"
                ))
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_is_named_once_and_lists_the_answers_every_route_may_give() {
        let doc = openapi();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for op in [&item.get, &item.post, &item.patch].into_iter().flatten() {
                let id = op.operation_id.clone().unwrap_or_default();
                assert!(ids.insert(id.clone()), "operationId {id:?} twice");
                for status in ["401", "403", "421", "429"] {
                    assert!(
                        op.responses.responses.contains_key(status),
                        "{path} {id}: {status}"
                    );
                }
                let has_body = op.request_body.is_some();
                assert_eq!(
                    op.responses.responses.contains_key("415"),
                    has_body,
                    "{path} {id}"
                );
            }
        }
        assert!(ids.contains("messages_list") && ids.contains("topics_one"));
        for id in [
            "peers_safety",
            "peers_verify",
            "invites_create",
            "messages_conversation",
        ] {
            assert!(ids.contains(id), "{id}");
        }
    }
}

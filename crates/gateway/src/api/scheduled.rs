//! `/api/v1/scheduled`: messages this member holds at the broker for later
//! (sent with `at` or `in`, `docs/protocol.md` §5 "Scheduled"), as
//! `claudemesh schedule list` shows them, and cancelling one before its
//! time (`schedule cancel`). The broker keeps only the sealed envelope, so
//! a held message shows its recipient, time and size, never its text. A
//! key limited to topics sees and cancels only messages to its topics.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use claudemesh_client::naming::{reached, utc_time};
use claudemesh_crypto::envelope::Target;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::message_id;
use crate::apikeys::Cap;
use crate::app::{AppState, Caller};
use crate::problem::Problem;

/// A message held for later.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeldMessageView {
    /// The message id (hex).
    pub id: String,
    /// Its recipient as `claudemesh send` names it: a member's name,
    /// `#topic`, `@group` or `*`.
    pub to: String,
    /// The target as on the wire (`member:<hex>`, `#topic`, …).
    pub target: String,
    /// When the broker sends it (UTC, RFC 3339).
    pub deliver_at: String,
    /// The same, unix ms (the broker's clock).
    pub deliver_at_ms: u64,
    /// Its time to live in seconds, counted from delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Bytes of the sealed envelope.
    pub size: u64,
    /// `held` (waiting for its time) or `failed` (its time came and it
    /// could not be sent: `error` says why).
    pub state: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// This member's held messages, soonest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeldMessages {
    /// At most 200 (what the broker holds for one member).
    pub messages: Vec<HeldMessageView>,
}

/// Lists this member's messages held for later.
#[utoipa::path(
    get,
    path = "/api/v1/scheduled",
    tag = "scheduled",
    responses(
        (status = 200, description = "Held and failed messages, soonest first", body = HeldMessages),
        (status = 403, description = "The key lacks `read`", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<HeldMessages>, Problem> {
    caller.require(Cap::Read)?;
    let client = caller.client()?;
    let scope = caller.scoped_targets();
    let pins = caller.link.pins(&state.home);
    let mut messages = Vec::new();
    for m in client.schedule_list().await? {
        if scope.as_ref().is_some_and(|s| !s.contains(&m.target)) {
            continue;
        }
        let to = match m.target.parse::<Target>() {
            Ok(target) => reached(&client, &pins, &target)
                .await
                .name
                .unwrap_or_else(|| m.target.clone()),
            Err(_) => m.target.clone(),
        };
        messages.push(HeldMessageView {
            id: m.id.to_hex(),
            to,
            target: m.target,
            deliver_at: utc_time(m.deliver_at_ms),
            deliver_at_ms: m.deliver_at_ms,
            ttl: m.ttl_ms.map(|t| t / 1000),
            size: m.size,
            state: m.state,
            error: m.error,
        });
    }
    Ok(Json(HeldMessages { messages }))
}

/// Cancels a message held for later: it will never be sent.
#[utoipa::path(
    delete,
    path = "/api/v1/scheduled/{id}",
    tag = "scheduled",
    params(("id" = String, Path, description = "The message id (32 hex digits)")),
    responses(
        (status = 204, description = "Cancelled: it will never be sent"),
        (status = 400, description = "Not a message id", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send`, or the message is outside its topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such message is held (never scheduled, cancelled, or already sent: the detail says which)", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(caller: Caller, Path(id): Path<String>) -> Result<StatusCode, Problem> {
    caller.require(Cap::Send)?;
    let id = message_id("", &id)?;
    let client = caller.client()?;
    if let Some(scope) = caller.scoped_targets() {
        // A key limited to topics cancels only its topics' messages; one
        // it may not see is not found rather than forbidden, so the key
        // learns nothing of the others.
        let held = client.schedule_list().await?;
        if !held.iter().any(|m| m.id == id && scope.contains(&m.target)) {
            return Err(Problem::not_found(format!(
                "no message {} to this key's topics is scheduled",
                id.to_hex()
            )));
        }
    }
    client.schedule_cancel(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

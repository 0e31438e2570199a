//! `/api/v1/state`: shared state, as `claudemesh state` keeps it
//! (`docs/security.md` §16.2): small JSON values under keys, each sealed to
//! the mesh and filed under a keyed hash of its key, so the broker sees
//! neither. Writes are compare-and-set by version (`if_version`; 0: the
//! key does not exist); a write that lost is 409 saying where the key
//! stands. A key may hold `/`: percent-encode it as one path segment
//! (`deploy%2Flock`). Shared state is mesh-wide, so a key limited to
//! topics may not use it.

use axum::Json;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use claudemesh_client::naming::utc_time;
use claudemesh_client::state::StateEntry;
use claudemesh_crypto::coord::CoordKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{Object, Params, coordination_written, whole_mesh};
use crate::apikeys::Cap;
use crate::app::{AppState, Caller};
use crate::problem::Problem;

const WHAT: &str = "shared state";

/// A shared state entry, opened on this device.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    /// The key, as written.
    pub key: String,
    /// The value (any JSON; a peer's data).
    pub value: serde_json::Value,
    /// 1 when first written, one more per write or delete.
    pub version: u64,
    /// Who wrote this version (member key, hex).
    pub writer: String,
    /// The writer's name.
    pub writer_name: String,
    /// When it was written (UTC, RFC 3339, the writer's clock).
    pub updated_at: String,
    /// The same, unix ms.
    pub updated_at_ms: u64,
}

impl From<StateEntry> for EntryView {
    fn from(e: StateEntry) -> Self {
        EntryView {
            key: e.key,
            value: e.value,
            version: e.version,
            writer: e.writer.to_hex(),
            writer_name: e.writer_name,
            updated_at: utc_time(e.updated_at_ms),
            updated_at_ms: e.updated_at_ms,
        }
    }
}

/// Entries, by key.
#[derive(Debug, Serialize, ToSchema)]
pub struct Entries {
    /// The entries.
    pub entries: Vec<EntryView>,
}

/// Which entries.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StateQuery {
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// A value to write.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Write {
    /// Any JSON, at most 8192 bytes as JSON (`null` is a value too).
    pub value: serde_json::Value,
    /// Write only if the key is at this version now (0: it does not
    /// exist); absent: over whatever is there.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub if_version: Option<u64>,
}

/// A delete's condition.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Delete only if the key is at this version now.
    #[serde(default)]
    #[param(minimum = 0)]
    pub if_version: Option<u64>,
}

/// Lists the entries.
#[utoipa::path(
    get,
    path = "/api/v1/state",
    tag = "state",
    params(StateQuery),
    responses(
        (status = 200, description = "Entries, by key", body = Entries),
        (status = 403, description = "The key lacks `read`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list(caller: Caller, Params(q): Params<StateQuery>) -> Result<Json<Entries>, Problem> {
    caller.require(Cap::Read)?;
    whole_mesh(&caller, WHAT)?;
    let client = caller.client()?;
    let entries = client
        .state_list(q.prefix.as_deref().unwrap_or_default())
        .await?;
    Ok(Json(Entries {
        entries: entries.into_iter().map(EntryView::from).collect(),
    }))
}

/// One entry.
#[utoipa::path(
    get,
    path = "/api/v1/state/{key}",
    tag = "state",
    params(("key" = String, Path, description = "The key, percent-encoded as one segment")),
    responses(
        (status = 200, description = "The entry", body = EntryView),
        (status = 400, description = "Not a key (empty, over 256 bytes, control characters)", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `read`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The key is not set", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn get(caller: Caller, Path(key): Path<String>) -> Result<Json<EntryView>, Problem> {
    caller.require(Cap::Read)?;
    whole_mesh(&caller, WHAT)?;
    let client = caller.client()?;
    match client.state_get(&key).await? {
        Some(e) => Ok(Json(e.into())),
        None => Err(Problem::not_found(format!("no state key {key:?}"))),
    }
}

/// Writes an entry (compare-and-set with `if_version`).
#[utoipa::path(
    put,
    path = "/api/v1/state/{key}",
    tag = "state",
    params(("key" = String, Path, description = "The key, percent-encoded as one segment")),
    request_body = Write,
    responses(
        (status = 200, description = "Written: the entry at its new version", body = EntryView),
        (status = 400, description = "Not a key, or a value over 8192 bytes", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The key is not at `if_version` (or other writers kept moving it): nothing was written", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn set(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(key): Path<String>,
    Object(body): Object<Write>,
) -> Result<Json<EntryView>, Problem> {
    caller.require(Cap::Send)?;
    whole_mesh(&caller, WHAT)?;
    let client = caller.client()?;
    let entry = client.state_set(&key, body.value, body.if_version).await?;
    coordination_written(&state, &caller, CoordKind::State).await;
    Ok(Json(entry.into()))
}

/// Deletes an entry (its version moves on, so no stale write brings the
/// old value back).
#[utoipa::path(
    delete,
    path = "/api/v1/state/{key}",
    tag = "state",
    params(("key" = String, Path, description = "The key, percent-encoded as one segment"), DeleteQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a key", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The key is not set", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The key is not at `if_version`: nothing was deleted", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(key): Path<String>,
    Params(q): Params<DeleteQuery>,
) -> Result<StatusCode, Problem> {
    caller.require(Cap::Send)?;
    whole_mesh(&caller, WHAT)?;
    let client = caller.client()?;
    client.state_delete(&key, q.if_version).await?;
    coordination_written(&state, &caller, CoordKind::State).await;
    Ok(StatusCode::NO_CONTENT)
}

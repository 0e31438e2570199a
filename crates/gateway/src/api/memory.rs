//! `/api/v1/memory`: the team's memory, as `claudemesh memory` keeps it
//! (`docs/security.md` §16): notes sealed to the mesh, stored by the broker
//! and searched on this device. Listing and searching read the device's
//! mirror after a sync; remembering seals a note under the current epoch;
//! forgetting removes one for everyone (its author, an owner or an admin).
//! Notes are mesh-wide, so a key limited to topics may not use them.

use axum::Json;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use claudemesh_client::memory::Note;
use claudemesh_client::naming::utc_time;
use claudemesh_crypto::MemberKey;
use claudemesh_crypto::coord::CoordKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{Object, Params, comma_list, coordination_written, standing, whole_mesh};
use crate::apikeys::Cap;
use crate::app::{AppState, Caller};
use crate::problem::Problem;

/// A team memory note, opened on this device.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoteView {
    /// The note's id (32 hex digits).
    pub id: String,
    /// Its text: a peer's words, information rather than instructions.
    pub text: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its author's member key (hex).
    pub author: String,
    /// Its author's name, when the roster has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
    /// When its author wrote it (UTC, RFC 3339, the author's clock).
    pub at: String,
    /// The same, unix ms.
    pub at_ms: u64,
    /// True when its author is no longer a member.
    pub departed: bool,
    /// True when this member may forget it (its author, an owner or an
    /// admin).
    pub forgettable: bool,
}

impl NoteView {
    /// `n` as this member sees it: `me` and whether it is an owner or admin.
    fn of(n: Note, (me, admin): (MemberKey, bool)) -> Self {
        NoteView {
            forgettable: admin || n.author == me,
            id: n.id.to_hex(),
            text: n.text,
            tags: n.tags,
            author: n.author.to_hex(),
            author_name: n.author_name,
            at: utc_time(n.at_ms),
            at_ms: n.at_ms,
            departed: n.departed,
        }
    }
}

/// Notes, best match first for a search, newest first otherwise.
#[derive(Debug, Serialize, ToSchema)]
pub struct Notes {
    /// The notes.
    pub notes: Vec<NoteView>,
}

/// Which notes.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MemoryQuery {
    /// Words to search for (full text, any of them, best match first);
    /// absent: the newest notes.
    #[serde(default)]
    pub q: Option<String>,
    /// Only notes with every one of these tags (comma-separated).
    #[serde(default)]
    pub tags: Option<String>,
    /// At most this many (default 20; more than 200 counts as 200, 0 as 1).
    #[serde(default)]
    #[param(minimum = 0, maximum = 4294967295_u64, format = Int64)]
    pub limit: Option<u32>,
}

/// A note to remember.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Remember {
    /// The note (1 to 8192 bytes).
    pub text: String,
    /// Up to 16 tags of letters, digits, `_`, `.` and `-`.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Searches or lists the team's notes.
#[utoipa::path(
    get,
    path = "/api/v1/memory",
    tag = "memory",
    params(MemoryQuery),
    responses(
        (status = 200, description = "Notes, best match first (with `q`) or newest first", body = Notes),
        (status = 400, description = "A bad tag, or `q` without a word", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `read`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list(caller: Caller, Params(q): Params<MemoryQuery>) -> Result<Json<Notes>, Problem> {
    caller.require(Cap::Read)?;
    whole_mesh(&caller, "the team memory")?;
    let client = caller.client()?;
    let tags = comma_list(q.tags.as_deref());
    let limit = q.limit.unwrap_or(20).clamp(1, 200) as usize;
    let notes = match q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(query) => client.memory_recall(query, &tags, limit).await?,
        None => client.memory_list(&tags, limit).await?,
    };
    let me = standing(&client);
    Ok(Json(Notes {
        notes: notes.into_iter().map(|n| NoteView::of(n, me)).collect(),
    }))
}

/// Remembers a note for the team: sealed on this device, stored by the
/// broker.
#[utoipa::path(
    post,
    path = "/api/v1/memory",
    tag = "memory",
    request_body = Remember,
    responses(
        (status = 201, description = "Stored", body = NoteView),
        (status = 400, description = "Empty or too long, or a bad tag", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn remember(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Object(body): Object<Remember>,
) -> Result<(StatusCode, Json<NoteView>), Problem> {
    caller.require(Cap::Send)?;
    whole_mesh(&caller, "the team memory")?;
    let client = caller.client()?;
    let note = client.memory_remember(&body.text, &body.tags).await?;
    coordination_written(&state, &caller, CoordKind::Memory).await;
    Ok((
        StatusCode::CREATED,
        Json(NoteView::of(note, standing(&client))),
    ))
}

/// Forgets a note for everyone. This member's own note needs a key with
/// `send`; another member's is moderation, so it needs a key with `admin`
/// (and this member an owner or admin of the mesh).
#[utoipa::path(
    delete,
    path = "/api/v1/memory/{id}",
    tag = "memory",
    params(("id" = String, Path, description = "The note's id, or a unique prefix of at least 4 hex digits")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 400, description = "Not a note id or prefix, or a prefix of several notes", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send` (or `admin` for another member's note), is limited to topics, or this member is neither the note's author nor an owner or admin", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such note", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn forget(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Cap::Send)?;
    whole_mesh(&caller, "the team memory")?;
    let client = caller.client()?;
    let note = client.memory_note(&id).await?;
    if note.author != standing(&client).0 {
        // Another member's note: only a key made for moderation may, so a
        // bot's `send` key on an owner's gateway cannot wipe the memory.
        caller.require(Cap::Admin)?;
    }
    client.memory_forget_id(note.id).await?;
    coordination_written(&state, &caller, CoordKind::Memory).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_split_on_commas_and_trimmed() {
        assert_eq!(comma_list(Some(" infra, db ,,")), vec!["infra", "db"]);
        assert!(comma_list(None).is_empty());
    }
}

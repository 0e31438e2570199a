//! Who is in the mesh and how this member appears in it: `GET
//! /api/v1/peers` (members with presence, each session, verified or
//! KEY CHANGED against this device's pins), `/api/v1/groups` (list, join,
//! leave), and `/api/v1/profile` (this member's status and summary, read
//! and set as `claudemesh peer status|summary` sets them). A key limited
//! to topics reaches none of these.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use claudemesh_client::groups::{self, GroupView};
use claudemesh_client::mesh::PeerView;
use claudemesh_client::mesh::pins::PinStatus;
use claudemesh_crypto::PublicKey;
use claudemesh_crypto::log::PeerType;
use claudemesh_proto::frames::Status;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::Body;
use crate::apikeys::Cap;
use crate::app::{AppState, Caller};
use crate::problem::Problem;

/// A member as `claudemesh peer list --json` shows it, with what this
/// device verified of its key.
#[derive(Debug, Serialize, ToSchema)]
pub struct Peer {
    #[serde(flatten)]
    peer: PeerView,
    /// Its key is the one this device verified (`claudemesh peer verify`).
    verified: bool,
    /// Its name is that of a verified peer whose key was another: KEY
    /// CHANGED, do not trust it until verified again.
    key_changed: bool,
}

/// Refuses a key limited to topics what is not a topic (`what`).
pub(crate) fn no_topic_scope(caller: &Caller, what: &str) -> Result<(), Problem> {
    if caller.key.topic_scoped() {
        Err(Problem::out_of_scope(what))
    } else {
        Ok(())
    }
}

/// The mesh's members and their presence.
#[utoipa::path(
    get,
    path = "/api/v1/peers",
    tag = "peers",
    responses(
        (status = 200, description = "Every member, with presence and sessions", body = Vec<Peer>),
        (status = 403, description = "The key lacks `read`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<Peer>>, Problem> {
    caller.require(Cap::Read)?;
    no_topic_scope(&caller, "the peer list")?;
    let client = caller.client()?;
    let peers = client.peers().await?;
    let pins = caller.link.pins(&state.home);
    let out = client.with_state(|s| {
        peers
            .into_iter()
            .map(|p| {
                let status = PublicKey::from_hex(&p.key).ok().map(|k| pins.status(s, &k));
                Peer {
                    verified: matches!(status, Some(PinStatus::Verified)),
                    key_changed: matches!(status, Some(PinStatus::Changed { .. })),
                    peer: p,
                }
            })
            .collect()
    });
    Ok(Json(out))
}

/// The mesh's groups.
#[utoipa::path(
    get,
    path = "/api/v1/groups",
    tag = "peers",
    responses(
        (status = 200, description = "Every group with members", body = Vec<GroupView>),
        (status = 403, description = "The key lacks `read`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn groups(caller: Caller) -> Result<Json<Vec<GroupView>>, Problem> {
    caller.require(Cap::Read)?;
    no_topic_scope(&caller, "groups")?;
    Ok(Json(groups::groups(&*caller.client()?)))
}

/// What joining a group asks.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupJoin {
    /// This member's role in the group (`lead`, …).
    #[serde(default)]
    pub role: Option<String>,
}

/// A group joined.
#[derive(Debug, Serialize, ToSchema)]
pub struct Joined {
    /// The group, without `@`.
    pub group: String,
}

/// Joins a group (again, to change the role).
#[utoipa::path(
    post,
    path = "/api/v1/groups/{group}/join",
    tag = "peers",
    params(("group" = String, Path, description = "The group's name (with or without `@`)")),
    request_body(content = GroupJoin, description = "The role, if any"),
    responses(
        (status = 200, description = "Joined", body = Joined),
        (status = 400, description = "A bad name or role", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Already in it with that role", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn group_join(
    caller: Caller,
    Path(group): Path<String>,
    Body(req): Body<GroupJoin>,
) -> Result<Json<Joined>, Problem> {
    caller.require(Cap::Send)?;
    no_topic_scope(&caller, "groups")?;
    let client = caller.client()?;
    let group = groups::group_join(&client, &group, req.role.as_deref()).await?;
    Ok(Json(Joined { group }))
}

/// Leaves a group.
#[utoipa::path(
    post,
    path = "/api/v1/groups/{group}/leave",
    tag = "peers",
    params(("group" = String, Path, description = "The group's name (with or without `@`)")),
    responses(
        (status = 204, description = "Left"),
        (status = 400, description = "Not in that group (exit code 3, as `claudemesh group leave`), or a bad name", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn group_leave(caller: Caller, Path(group): Path<String>) -> Result<StatusCode, Problem> {
    caller.require(Cap::Send)?;
    no_topic_scope(&caller, "groups")?;
    groups::group_leave(&*caller.client()?, &group).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This member as the mesh sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    /// Display name.
    pub name: String,
    /// Member key (hex).
    pub key: String,
    /// The gateway's session, as peers see it (`alice@serve`).
    pub session: String,
    /// Peer type announced.
    pub peer_type: PeerType,
    /// Status.
    pub status: Status,
    /// One-line summary (sealed to the mesh with presence).
    pub summary: Option<String>,
}

/// What to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// `idle`, `working` or `dnd`.
    #[serde(default)]
    pub status: Option<Status>,
    /// One line; empty clears it.
    #[serde(default)]
    pub summary: Option<String>,
}

fn profile_of(caller: &Caller, client: &claudemesh_client::MeshClient) -> Profile {
    let (status, published) = client.presence();
    Profile {
        name: caller.link.mesh.display_name.clone(),
        key: client.with_state(|s| s.my_key().to_hex()),
        session: caller.link.session_name.clone(),
        peer_type: caller.link.mesh.peer_type,
        status,
        summary: published.summary,
    }
}

/// This member's display name, status and summary.
#[utoipa::path(
    get,
    path = "/api/v1/profile",
    tag = "peers",
    responses((status = 200, description = "This member", body = Profile))
)]
pub async fn profile(caller: Caller) -> Result<Json<Profile>, Problem> {
    caller.require(Cap::Read)?;
    no_topic_scope(&caller, "the profile")?;
    let client = caller.client()?;
    Ok(Json(profile_of(&caller, &client)))
}

/// Sets this member's status and/or summary, as `claudemesh peer status`
/// and `peer summary` do (kept in the home for the next sessions too).
#[utoipa::path(
    patch,
    path = "/api/v1/profile",
    tag = "peers",
    request_body = ProfileUpdate,
    responses(
        (status = 200, description = "Updated", body = Profile),
        (status = 400, description = "Nothing to change, or a bad value", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn profile_update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(req): Body<ProfileUpdate>,
) -> Result<Json<Profile>, Problem> {
    caller.require(Cap::Send)?;
    no_topic_scope(&caller, "the profile")?;
    if req.status.is_none() && req.summary.is_none() {
        return Err(Problem::bad_request("give `status`, `summary`, or both"));
    }
    if let Some(s) = &req.summary
        && (s.len() > MAX_SUMMARY_BYTES || s.chars().any(char::is_control))
    {
        return Err(Problem::bad_request(format!(
            "the summary must be one line of at most {MAX_SUMMARY_BYTES} bytes"
        )));
    }
    let client = caller.client()?;
    let id = caller.link.mesh.id;
    let mut home = claudemesh_client::Home::open(state.home.root())?;
    home.update_mesh(&id, |m| {
        if let Some(s) = req.status {
            m.status = s;
        }
        if let Some(text) = &req.summary {
            m.summary = Some(text.clone()).filter(|t| !t.is_empty());
        }
    })?;
    client.set_presence(req.status, req.summary.clone()).await?;
    Ok(Json(profile_of(&caller, &client)))
}

/// Longest summary accepted.
const MAX_SUMMARY_BYTES: usize = 280;

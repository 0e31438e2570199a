//! Verifying a peer's key (TM8), as `claudemesh peer verify` does: `GET
//! /api/v1/peers/{peer}/safety` is the 60-digit safety number of this
//! member and the peer (the same on both screens; in 12 groups of 5, and
//! as a QR code of the payload the CLI draws), with what this device
//! verified of the key; `POST /api/v1/peers/{peer}/verify` pins the key
//! once the numbers were compared (`peer verify --mark`). The peer is
//! named as `claudemesh send` names a recipient. A key limited to topics
//! reaches neither.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use claudemesh_client::error_kind::ErrorKind;
use claudemesh_client::mesh::pins::{PinStatus, Pins};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::Object;
use crate::api::peers::no_topic_scope;
use crate::apikeys::Cap;
use crate::app::{AppState, Caller};
use crate::problem::Problem;

/// The safety number of this member and a peer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Safety {
    /// The peer's display name.
    pub name: String,
    /// The peer's member key (hex).
    pub key: String,
    /// 60 digits in 12 groups of 5, separated by single spaces, as
    /// `claudemesh peer verify` prints it.
    #[schema(example = "12345 67890 12345 67890 12345 67890 12345 67890 12345 67890 12345 67890")]
    pub safety_number: String,
    /// The same 12 groups.
    pub groups: Vec<String>,
    /// A QR code of `claudemesh-sn:1:<the 60 digits>` (what the CLI
    /// draws), as `data:image/svg+xml;base64,…`.
    pub qr: String,
    /// This device verified this key (`peer verify --mark`).
    pub verified: bool,
    /// The peer's name is that of a verified peer whose key was another:
    /// KEY CHANGED, do not trust it until verified again.
    pub key_changed: bool,
}

/// What marking a key verified asks: nothing (`{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {}

/// A key pinned.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verified {
    /// The peer's display name.
    pub name: String,
    /// The peer's member key (hex).
    pub key: String,
    /// Always true.
    pub verified: bool,
}

/// The safety number with a peer, to compare out of band.
#[utoipa::path(
    get,
    path = "/api/v1/peers/{peer}/safety",
    tag = "peers",
    params(("peer" = String, Path, description = "The peer, as `claudemesh send` names a recipient: a display name, a key prefix (8+ hex digits), a session name (`bob@api`)")),
    responses(
        (status = 200, description = "The safety number and what this device verified", body = Safety),
        (status = 400, description = "The name matches several members (give a key prefix), names a topic, group or everyone, or is this member", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `read`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No peer matches", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "The QR code could not be drawn", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn safety(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(peer): Path<String>,
) -> Result<Json<Safety>, Problem> {
    caller.require(Cap::Read)?;
    no_topic_scope(&caller, "peers")?;
    let client = caller.client()?;
    let (member, name, number) = client.safety_of(&peer).await?;
    let pins = caller.link.pins(&state.home);
    let status = client.with_state(|s| pins.status(s, &member));
    let safety_number = number.to_string();
    let qr = crate::qr::data_url(&number.qr_payload()).map_err(|e| {
        tracing::error!(error = %e, "drawing a safety number");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Failure,
            "the safety number's QR code could not be drawn",
        )
    })?;
    Ok(Json(Safety {
        name,
        key: member.to_hex(),
        groups: safety_number.split(' ').map(str::to_owned).collect(),
        safety_number,
        qr,
        verified: status == PinStatus::Verified,
        key_changed: matches!(status, PinStatus::Changed { .. }),
    }))
}

/// Marks a peer's key verified (pins it), as `claudemesh peer verify
/// --mark`: after comparing the safety numbers. Pinning replaces any pin
/// of the same name, so a changed key is trusted again from now on.
#[utoipa::path(
    post,
    path = "/api/v1/peers/{peer}/verify",
    tag = "peers",
    params(("peer" = String, Path, description = "The peer, as `claudemesh send` names a recipient")),
    request_body(content = VerifyRequest, description = "Nothing: `{}`"),
    responses(
        (status = 200, description = "The key is pinned", body = Verified),
        (status = 400, description = "The name matches several members, names a topic, group or everyone, or is this member; or a bad body", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No peer matches", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "The home's pins could not be read or written", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn verify(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(peer): Path<String>,
    Object(VerifyRequest {}): Object<VerifyRequest>,
) -> Result<Json<Verified>, Problem> {
    caller.require(Cap::Send)?;
    no_topic_scope(&caller, "peers")?;
    let client = caller.client()?;
    let (member, name, _) = client.safety_of(&peer).await?;
    let mesh = &caller.link.mesh.id;
    // Read as the CLI does: a damaged file is an error, not an empty set
    // to write over it.
    let mut pins = Pins::load(&state.home, mesh)?;
    pins.pin(&member, &name, claudemesh_proto::clock::now_ms() / 1000);
    pins.save(&state.home, mesh)?;
    Ok(Json(Verified {
        name,
        key: member.to_hex(),
        verified: true,
    }))
}

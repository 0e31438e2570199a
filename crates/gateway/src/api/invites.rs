//! `POST /api/v1/invites`: a new invite to the key's mesh, as `claudemesh
//! mesh share` makes one (authorized in the membership log, its welcome
//! bundle sealed under the invite's secret and stored at the broker), with
//! a QR code of its link. The secret is in the link's fragment and leaves
//! this device only in the answer. Only the mesh's owner and admins may
//! invite, and only with a key that has `admin`; a key limited to topics
//! may not.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use claudemesh_client::error_kind::ErrorKind;
use claudemesh_client::invites::{self, ShareOptions};
use claudemesh_crypto::log::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::Object;
use crate::api::peers::no_topic_scope;
use crate::apikeys::Cap;
use crate::app::Caller;
use crate::problem::Problem;

/// Longest validity accepted, in seconds (ten years).
pub const MAX_EXPIRES_IN: u64 = 10 * 365 * 24 * 3600;

/// The role joiners get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InviteRole {
    /// May message; cannot change membership (the default).
    #[default]
    Member,
    /// May also invite, remove members, change roles, rekey.
    Admin,
}

/// What a new invite allows; every field may be left out.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// How many people may join with it (default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4294967295_u64, format = Int64)]
    pub uses: Option<u32>,
    /// How long it stays valid, in seconds (default 604800: 7 days; at
    /// most ten years).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 315360000)]
    pub expires_in: Option<u64>,
    /// The role joiners get (default `member`).
    #[serde(default)]
    pub role: Option<InviteRole>,
}

/// A new invite.
#[derive(Debug, Serialize, ToSchema)]
pub struct Invite {
    /// `https://host/join#<token>`: the secret is in the fragment; send it
    /// privately (`claudemesh join <url>`).
    pub url: String,
    /// `claudemesh://join/<token>`.
    pub app_url: String,
    /// The invite's id (its public key, hex): for `claudemesh mesh
    /// revoke-invite`.
    pub id: String,
    /// When it expires, unix seconds.
    pub expires_at: u64,
    /// How many may join with it.
    pub max_uses: u32,
    /// The role joiners get.
    pub role: InviteRole,
    /// A QR code of `url`, as `data:image/svg+xml;base64,…`.
    pub qr: String,
}

/// Makes an invite to the key's mesh.
#[utoipa::path(
    post,
    path = "/api/v1/invites",
    tag = "invites",
    request_body(content = InviteRequest, description = "Uses, validity and role, each optional: `{}` is one use, 7 days, member"),
    responses(
        (status = 201, description = "The invite", body = Invite),
        (status = 400, description = "A bad body: `uses` or `expires_in` below 1, `expires_in` over ten years, an unknown role or field", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `admin`, or is limited to topics; or this member is not the mesh's owner or an admin", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "The invite's QR code could not be drawn", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    caller: Caller,
    Object(req): Object<InviteRequest>,
) -> Result<Response, Problem> {
    caller.require(Cap::Admin)?;
    no_topic_scope(&caller, "invites")?;
    let defaults = ShareOptions::default();
    let uses = req.uses.unwrap_or(defaults.max_uses);
    if uses == 0 {
        return Err(Problem::bad_request("uses must be at least 1"));
    }
    let expires_in = match req.expires_in {
        None => defaults.expires_in,
        Some(s) if (1..=MAX_EXPIRES_IN).contains(&s) => Duration::from_secs(s),
        Some(_) => {
            return Err(Problem::bad_request(format!(
                "expires_in must be from 1 to {MAX_EXPIRES_IN} (seconds)"
            )));
        }
    };
    let role = req.role.unwrap_or_default();
    let opts = ShareOptions {
        max_uses: uses,
        expires_in,
        role: match role {
            InviteRole::Member => Role::Member,
            InviteRole::Admin => Role::Admin,
        },
        short_code: false,
    };
    let client = caller.client()?;
    let shared = invites::share(&client, &opts).await?;
    let qr = crate::qr::data_url(&shared.url).map_err(|e| {
        tracing::error!(error = %e, "drawing an invite");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Failure,
            "the invite's QR code could not be drawn (the invite was made: revoke it with `claudemesh mesh revoke-invite`)",
        )
    })?;
    let out = Invite {
        url: shared.url,
        app_url: shared.app_url,
        id: shared.id,
        expires_at: shared.expires_at,
        max_uses: shared.max_uses,
        role: match shared.role {
            Role::Admin | Role::Owner => InviteRole::Admin,
            Role::Member => InviteRole::Member,
        },
        qr,
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

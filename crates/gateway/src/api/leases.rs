//! `/api/v1/leases`: file leases, as `claudemesh lease` keeps them
//! (`docs/security.md` §16.3): a session says which paths of which
//! repository it is editing, sealed to the mesh; the broker decides
//! conflicts over keyed hashes of the paths, so it never learns one. A
//! take that overlaps another session's live lease is 409 naming the
//! holder, the paths, when it ends and why. Leases taken here are this
//! gateway's session's. Leases are mesh-wide, so a key limited to topics
//! may not use them.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use claudemesh_client::lease_path::{normalize, refuse_glob};
use claudemesh_client::leases::{Lease, LeaseRequest};
use claudemesh_client::naming::utc_time;
use claudemesh_crypto::MemberKey;
use claudemesh_crypto::coord::CoordKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{Object, coordination_written, standing, whole_mesh};
use crate::apikeys::Cap;
use crate::app::{AppState, Caller};
use crate::problem::Problem;

const WHAT: &str = "file leases";
/// A lease's length when the request names none (as `lease take`).
const DEFAULT_TTL_MINUTES: u32 = 30;

/// A live lease, opened on this device.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseView {
    /// Its id (32 hex digits).
    pub id: String,
    /// Its first 8 hex digits, as the CLI shows it.
    pub short_id: String,
    /// The repository id (a normalized origin such as
    /// `github.com/org/app`, or `dir:<name>`).
    pub repo: String,
    /// The paths, relative to the repository's top (directories end in
    /// `/`; the top itself is `/`).
    pub paths: Vec<String>,
    /// Exclusive (others may take no overlapping lease) or shared.
    pub exclusive: bool,
    /// Why (a peer's words).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its holder's member key (hex).
    pub holder: String,
    /// The holder's name.
    pub holder_name: String,
    /// This member holds it.
    pub mine: bool,
    /// This member may release it: its holder, an owner or an admin.
    pub can_release: bool,
    /// When it was taken (UTC, RFC 3339, the holder's clock).
    pub taken_at: String,
    /// The same, unix ms.
    pub taken_at_ms: u64,
    /// When it ends unless renewed (UTC, RFC 3339, the broker's clock).
    pub expires_at: String,
    /// The same, unix ms.
    pub expires_at_ms: u64,
}

impl LeaseView {
    /// `l` as this member sees it.
    fn of(l: Lease, (me, admin): (MemberKey, bool)) -> Self {
        let mine = l.holder == me;
        LeaseView {
            id: l.id.to_hex(),
            short_id: l.id.to_hex()[..8].to_owned(),
            repo: l.repo,
            paths: l.paths,
            exclusive: l.exclusive,
            reason: l.reason,
            holder: l.holder.to_hex(),
            holder_name: l.holder_name,
            mine,
            can_release: mine || admin,
            taken_at: utc_time(l.taken_at_ms),
            taken_at_ms: l.taken_at_ms,
            expires_at: utc_time(l.expires_at_ms),
            expires_at_ms: l.expires_at_ms,
        }
    }
}

/// The mesh's live leases.
#[derive(Debug, Serialize, ToSchema)]
pub struct Leases {
    /// By repository, then first path.
    pub leases: Vec<LeaseView>,
}

/// A lease to take.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Take {
    /// The repository id, as `claudemesh lease list` shows it (1 to 512
    /// bytes).
    pub repo: String,
    /// 1 to 16 paths relative to the repository's top; a directory ends
    /// in `/` and covers everything below it. No `*` or `?`.
    pub paths: Vec<String>,
    /// Shared: conflicts only with exclusive leases.
    #[serde(default)]
    pub shared: bool,
    /// How long, 1 to 1440 minutes (default 30).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1440)]
    pub ttl_minutes: Option<u32>,
    /// Why, for whoever it stands in the way of (at most 256 bytes).
    #[serde(default)]
    pub reason: Option<String>,
}

/// How long to extend a lease.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Renew {
    /// From now, 1 to 1440 minutes (default 30).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1440)]
    pub ttl_minutes: Option<u32>,
}

/// `ttl_minutes` as a duration (the client checks the bounds).
fn ttl(minutes: Option<u32>) -> Duration {
    Duration::from_secs(u64::from(minutes.unwrap_or(DEFAULT_TTL_MINUTES)) * 60)
}

/// The paths of a request, normalized as every device does.
fn lease_paths(given: &[String]) -> Result<Vec<String>, Problem> {
    given
        .iter()
        .map(|p| {
            refuse_glob(p)
                .and_then(|()| normalize(p, p.ends_with('/')))
                .map_err(|e| Problem::bad_request(e.to_string()))
        })
        .collect()
}

/// Lists the mesh's live leases.
#[utoipa::path(
    get,
    path = "/api/v1/leases",
    tag = "leases",
    responses(
        (status = 200, description = "Live leases", body = Leases),
        (status = 403, description = "The key lacks `read`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list(caller: Caller) -> Result<Json<Leases>, Problem> {
    caller.require(Cap::Read)?;
    whole_mesh(&caller, WHAT)?;
    let client = caller.client()?;
    let me = standing(&client);
    let leases = client.lease_list().await?;
    Ok(Json(Leases {
        leases: leases.into_iter().map(|l| LeaseView::of(l, me)).collect(),
    }))
}

/// Takes a lease for this gateway's session.
#[utoipa::path(
    post,
    path = "/api/v1/leases",
    tag = "leases",
    request_body = Take,
    responses(
        (status = 201, description = "Granted", body = LeaseView),
        (status = 400, description = "No path or more than 16, a pattern, a path outside the repository, a bad length or reason", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send`, is limited to topics, or this member holds 256 live leases", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Another session's live lease overlaps (the detail names its holder, paths, end and reason): nothing was leased", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn take(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Object(body): Object<Take>,
) -> Result<(StatusCode, Json<LeaseView>), Problem> {
    caller.require(Cap::Send)?;
    whole_mesh(&caller, WHAT)?;
    let paths = lease_paths(&body.paths)?;
    let client = caller.client()?;
    let lease = client
        .lease_take(&LeaseRequest {
            repo: body.repo.trim().to_owned(),
            paths,
            exclusive: !body.shared,
            ttl: ttl(body.ttl_minutes),
            reason: body.reason.filter(|r| !r.trim().is_empty()),
        })
        .await?;
    coordination_written(&state, &caller, CoordKind::Lease).await;
    Ok((
        StatusCode::CREATED,
        Json(LeaseView::of(lease, standing(&client))),
    ))
}

/// Extends a lease this member holds to `ttl_minutes` from now.
#[utoipa::path(
    post,
    path = "/api/v1/leases/{id}/renew",
    tag = "leases",
    params(("id" = String, Path, description = "The lease's id, or a unique prefix of at least 4 hex digits")),
    request_body = Renew,
    responses(
        (status = 200, description = "Extended", body = LeaseView),
        (status = 400, description = "Not a lease id or prefix, a prefix of several leases, or a bad length", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No live lease of this member by that id", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn renew(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Object(body): Object<Renew>,
) -> Result<Json<LeaseView>, Problem> {
    caller.require(Cap::Send)?;
    whole_mesh(&caller, WHAT)?;
    let client = caller.client()?;
    let renewed = client
        .lease_renew(std::slice::from_ref(&id), ttl(body.ttl_minutes))
        .await?;
    if !renewed.is_empty() {
        coordination_written(&state, &caller, CoordKind::Lease).await;
    }
    let me = standing(&client);
    renewed
        .into_iter()
        .next()
        .map(|l| Json(LeaseView::of(l, me)))
        .ok_or_else(|| Problem::not_found(format!("no live lease {id} of this member")))
}

/// Releases a lease (its holder's, or any as an owner or admin, with a key
/// that has `admin`).
#[utoipa::path(
    delete,
    path = "/api/v1/leases/{id}",
    tag = "leases",
    params(("id" = String, Path, description = "The lease's id, or a unique prefix of at least 4 hex digits")),
    responses(
        (status = 204, description = "Released"),
        (status = 400, description = "Not a lease id or prefix, or a prefix of several leases", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send` (or `admin` for another member's lease), is limited to topics, or this member is neither the holder nor an owner or admin", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No live lease by that id", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn release(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Cap::Send)?;
    whole_mesh(&caller, WHAT)?;
    let client = caller.client()?;
    let me = standing(&client).0;
    let prefix = id.trim().to_ascii_lowercase();
    let held_by_other = client
        .lease_list()
        .await?
        .iter()
        .any(|l| l.id.to_hex().starts_with(&prefix) && l.holder != me);
    if held_by_other {
        // Another member's lease: moderation, as for memory and tasks.
        caller.require(Cap::Admin)?;
    }
    client.lease_release(std::slice::from_ref(&id)).await?;
    coordination_written(&state, &caller, CoordKind::Lease).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_and_patterns_refused() {
        assert_eq!(
            lease_paths(&["src/net/".into(), "./src//a.rs".into()]).unwrap(),
            vec!["src/net/", "src/a.rs"]
        );
        assert!(lease_paths(&["src/**".into()]).is_err());
        assert!(lease_paths(&["../x".into()]).is_err());
        assert_eq!(ttl(None), Duration::from_secs(1800));
    }
}

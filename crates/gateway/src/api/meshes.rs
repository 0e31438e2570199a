//! `GET /api/v1/meshes`: the mesh a key belongs to (a key is made for one
//! mesh), with the gateway's link to its broker and what waits unread.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use claudemesh_crypto::log::Role;
use serde::Serialize;
use utoipa::ToSchema;

use crate::apikeys::Cap;
use crate::app::{AppState, Caller};
use crate::problem::Problem;

/// A mesh as the gateway serves it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeshView {
    /// The mesh id (hex).
    pub id: String,
    /// Its local name.
    pub name: String,
    /// The broker's address.
    pub broker: String,
    /// This member's display name in it.
    pub display_name: String,
    /// This member's key (hex), once connected.
    pub member: Option<String>,
    /// This member's role, once connected.
    pub role: Option<Role>,
    /// The gateway's session in it, as peers see it (`alice@serve`).
    pub session: String,
    /// `up`, `down` (reconnecting), `connecting` or `unavailable`.
    pub link: String,
    /// Why the link is not up.
    pub link_error: Option<String>,
    /// Unread messages in this device's inbox (of the key's topics, for a
    /// key limited to topics).
    pub unread: u64,
}

/// The key's mesh.
#[utoipa::path(
    get,
    path = "/api/v1/meshes",
    tag = "meshes",
    responses(
        (status = 200, description = "The mesh this key belongs to", body = Vec<MeshView>),
        (status = 401, description = "No valid key", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<MeshView>>, Problem> {
    caller.require(Cap::Read)?;
    let link = &caller.link;
    let mesh = &link.mesh;
    let current = link.link();
    let (member, role) = match link.client() {
        Ok(c) => c.with_state(|s| {
            let me = s.my_key();
            (Some(me.to_hex()), s.roster().role_of(&me))
        }),
        Err(_) => (None, None),
    };
    let local = &state.local;
    let unread = match caller.scoped_targets() {
        None => local.unread_count(&mesh.id).await?,
        Some(targets) => {
            let by_target = local.unread_by_target(&mesh.id).await?;
            targets.iter().filter_map(|t| by_target.get(t)).sum()
        }
    };
    Ok(Json(vec![MeshView {
        id: mesh.id.to_hex(),
        name: mesh.name.clone(),
        broker: mesh.broker_url.clone(),
        display_name: mesh.display_name.clone(),
        member,
        role,
        session: link.session_name.clone(),
        link: current.state().to_owned(),
        link_error: current.reason().map(str::to_owned),
        unread,
    }]))
}

//! `mesh_create`: registers a new mesh by its signed genesis entry, if this
//! connection may (the operator's token, or the broker's policy).

use claudemesh_crypto::log::Roster;
use claudemesh_proto::frames::{LogAppended, MeshCreate};
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::{Caller, Context, Handle, Refusal, Reply, load_mesh};
use crate::admission::Origin;
use crate::config::{BrokerConfig, MeshCreatePolicy};
use crate::state::BrokerState;

/// The same before and after the hello.
impl Handle for MeshCreate {
    async fn handle(self, _caller: Caller<'_>, cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        handle(cx.broker, cx.origin, self).await
    }

    async fn before_hello(self, cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        handle(cx.broker, cx.origin, self).await
    }
}

/// Stores the genesis and answers `log_appended`.
async fn handle(broker: &BrokerState, origin: &Origin, f: MeshCreate) -> Result<Reply, Refusal> {
    may_create_mesh(&broker.config, origin, f.token.as_deref())
        .map_err(|why| Refusal::new(ErrorCode::Forbidden, why))?;
    let roster = Roster::from_genesis(&f.genesis)
        .map_err(|e| Refusal::new(ErrorCode::LogInvalid, e.to_string()))?;
    let mesh_id = roster.mesh_id();
    if let Err(e) = broker
        .store
        .create_mesh(&f.genesis, mesh_id, crate::now_ms())
        .await
    {
        tracing::error!(error = %e, "creating mesh failed");
        return Err(Refusal::internal("the broker could not store the mesh"));
    }
    let mesh = load_mesh(broker, &mesh_id).await?;
    let r = mesh.roster();
    Ok(Reply::Frame(BrokerFrame::LogAppended(LogAppended {
        req: f.req,
        head: r.head(),
        len: r.len(),
    })))
}

/// Whether this connection may register a mesh: the operator's token
/// opens it from anywhere; otherwise the broker's policy (by default only
/// connections from this machine).
fn may_create_mesh(
    config: &BrokerConfig,
    origin: &Origin,
    token: Option<&str>,
) -> Result<(), &'static str> {
    if let (Some(expected), Some(offered)) = (&config.mesh_create_token, token)
        && expected.matches(offered)
    {
        return Ok(());
    }
    let allowed = match config.allow_mesh_create {
        MeshCreatePolicy::Anyone => true,
        MeshCreatePolicy::Local => origin.local,
        MeshCreatePolicy::Nobody => false,
    };
    match (allowed, token.is_some(), config.mesh_create_token.is_some()) {
        (true, _, _) => Ok(()),
        (false, true, _) => Err("this broker's mesh-creation token is not the one given"),
        (false, false, true) => Err(
            "this broker creates meshes only for holders of its mesh-creation token \
             (claudemesh mesh create --create-token <token>)",
        ),
        (false, false, false) => Err(
            "this broker does not create meshes for remote clients; ask its operator \
             (claudemesh-broker --allow-mesh-create anyone, or a mesh-creation token)",
        ),
    }
}

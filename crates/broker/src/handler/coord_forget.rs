//! `coord_forget`: removes a coordination object for everyone. Allowed to
//! its author's member and to owners and admins (the roster says who); the
//! store drops its contents and moves it to the mesh's next feed position as
//! a tombstone, so every device's next sync forgets it too.

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::log::Role;
use claudemesh_proto::frames::{CoordForget, CoordStored};
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::mesh::MeshHub;
use crate::metrics as m;
use crate::store::ForgetOutcome;

impl Handle for CoordForget {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let Caller {
            broker,
            session,
            mesh,
        } = caller;
        let (kind, id) = (self.kind, self.id);
        if kind == claudemesh_crypto::coord::CoordKind::State || kind.is_task_act() {
            return Err(Refusal::new(
                ErrorCode::Malformed,
                format!(
                    "a {kind} is not forgotten: a state entry is deleted by writing it deleted \
                     (state_set), an act is part of its task"
                ),
            ));
        }
        let store_failed = |e: crate::store::StoreError| {
            metrics::counter!(m::STORE_ERRORS).increment(1);
            tracing::error!(error = %e, "forgetting a coordination object failed");
            Refusal::internal("the broker could not forget it; try again")
        };
        let not_found = || {
            Refusal::new(
                ErrorCode::NotFound,
                format!("no {kind} {id} is stored in this mesh"),
            )
        };
        let Some((author, _)) = broker
            .store
            .coord_author(&mesh.id, kind, &id)
            .await
            .map_err(store_failed)?
        else {
            return Err(not_found());
        };
        if !may_forget(mesh, &session.member, &author).await {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("only its author's member, an owner or an admin may forget {kind} {id}"),
            ));
        }
        let outcome = broker
            .store
            .coord_forget(&mesh.id, kind, &id, crate::now_ms())
            .await
            .map_err(store_failed)?;
        let (cseq, duplicate) = match outcome {
            ForgetOutcome::Forgotten { cseq } => {
                metrics::counter!(m::COORD_WRITES, "op" => "forget").increment(1);
                mesh.coord_changed(&[kind], Some(session.conn_id));
                (cseq, false)
            }
            ForgetOutcome::AlreadyForgotten { cseq } => (cseq, true),
            // Its author was just read: only an altered database gets here.
            ForgetOutcome::NotFound => return Err(not_found()),
        };
        Ok(Reply::Frame(BrokerFrame::CoordStored(CoordStored {
            req: self.req,
            kind,
            id,
            cseq,
            duplicate,
        })))
    }
}

/// Whether `member` may forget an object of `author`'s: its own, or as an
/// owner or admin (a promotion another replica appended a moment ago is
/// adopted and the roster asked again).
async fn may_forget(mesh: &MeshHub, member: &PublicKey, author: &PublicKey) -> bool {
    member == author || is_admin(mesh, member).await
}

/// Whether `member` is an owner or admin of the mesh (a promotion another
/// replica appended a moment ago is adopted and the roster asked again).
pub(super) async fn is_admin(mesh: &MeshHub, member: &PublicKey) -> bool {
    let privileged =
        || mesh.read_log(|l| matches!(l.roster.role_of(member), Some(Role::Owner | Role::Admin)));
    privileged() || (mesh.caught_up().await && privileged())
}

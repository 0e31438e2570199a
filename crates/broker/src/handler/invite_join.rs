//! `invite_join`, before any hello: the joiner appends its signed `admit`
//! of the invite this connection fetched, if the invite is still usable by
//! the broker's clock (TM6).

use claudemesh_crypto::log::EntryBody;
use claudemesh_proto::frames::{InviteJoin, Joined};
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::invite_fetch::invite_usable;
use super::log_append::{append_limits, append_refusal};
use super::{Caller, Context, Handle, HeldInvite, Refusal, Reply, load_mesh};
use crate::state::BrokerState;
use crate::store::AppendExtras;

impl Handle for InviteJoin {
    /// A member has no invite to redeem.
    async fn handle(self, _caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        Err(Refusal::new(
            ErrorCode::AlreadyAuthenticated,
            "already a member here",
        ))
    }

    async fn before_hello(self, cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        join(cx.broker, *cx.invite, self).await
    }
}

/// `invite_join`: appends the joiner's admit of the invite it fetched.
async fn join(
    broker: &BrokerState,
    held: Option<HeldInvite>,
    f: InviteJoin,
) -> Result<Reply, Refusal> {
    let Some((mesh_id, invite_key)) = held else {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "fetch the invite (invite_fetch) on this connection first",
        ));
    };
    let EntryBody::Admit {
        invite_key: used, ..
    } = &f.entry.body
    else {
        return Err(Refusal::new(
            ErrorCode::Malformed,
            "invite_join carries an admit entry",
        ));
    };
    if *used != invite_key {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "the admit names another invite than the one fetched",
        ));
    }
    let mesh = load_mesh(broker, &mesh_id).await?;
    // The log checks the admit's own date; the broker also holds the
    // invite to its expiry by its own clock, which the joiner cannot set.
    if let Some(state) = mesh.roster().invites().get(&invite_key).cloned() {
        invite_usable(&state, crate::now_ms() / 1000)?;
    }
    let extras = AppendExtras {
        new_invite: None,
        used_invite: Some(invite_key),
    };
    let (head, len) = mesh
        .append(
            broker.store.as_ref(),
            vec![f.entry],
            extras,
            None,
            append_limits(&broker.config),
        )
        .await
        .map_err(append_refusal)?;
    Ok(Reply::Frame(BrokerFrame::Joined(Joined {
        req: f.req,
        head,
        len,
    })))
}

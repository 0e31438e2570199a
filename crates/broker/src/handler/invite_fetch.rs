//! `invite_fetch`, before any hello: a joiner proves it holds an invite's
//! secret (a signature over this connection's challenge) and gets the
//! welcome bundle and the first page of the log; the connection then holds
//! the invite (for `log_fetch` and `invite_join`). The broker holds an
//! invite to its expiry by its own clock, which a joiner cannot set (TM6).

use claudemesh_crypto::invite::verify_invite_proof;
use claudemesh_crypto::log::InviteState;
use claudemesh_proto::frames::{InviteBundle, InviteFetch};
use claudemesh_proto::limits::MAX_LOG_ENTRIES_PER_FRAME;
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::log_fetch::entries_within_budget;
use super::{Caller, Context, Handle, HeldInvite, Refusal, Reply, load_mesh};
use crate::state::BrokerState;

impl Handle for InviteFetch {
    /// A member has no invite to redeem.
    async fn handle(self, _caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        Err(Refusal::new(
            ErrorCode::AlreadyAuthenticated,
            "already a member here",
        ))
    }

    async fn before_hello(self, cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        fetch(cx.broker, cx.nonce, cx.invite, self).await
    }
}

/// `invite_fetch`: checks the proof against this connection's challenge,
/// then answers the bundle and the first page of the log; the connection
/// then holds the invite (`held`).
async fn fetch(
    broker: &BrokerState,
    nonce: &[u8; 32],
    held: &mut Option<HeldInvite>,
    f: InviteFetch,
) -> Result<Reply, Refusal> {
    if verify_invite_proof(&f.invite_key, nonce, &f.proof).is_err() {
        return Err(Refusal::new(
            ErrorCode::BadSignature,
            "invite proof does not verify for this connection's challenge",
        ));
    }
    let found = broker
        .store
        .invite_bundle(&f.invite_key)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "invite lookup failed");
            Refusal::internal("the broker could not look up the invite")
        })?;
    let not_found = || Refusal::new(ErrorCode::InviteNotFound, "no such invite on this broker");
    let (mesh_id, bundle) = found.ok_or_else(not_found)?;
    let mesh = load_mesh(broker, &mesh_id).await?;
    // An invite made through another replica a moment ago.
    if !mesh.read_log(|l| l.roster.invites().contains_key(&f.invite_key)) {
        mesh.caught_up().await;
    }
    let (log, log_len, state) = mesh.read_log(|l| {
        (
            entries_within_budget(&l.entries, MAX_LOG_ENTRIES_PER_FRAME),
            l.roster.len(),
            l.roster.invites().get(&f.invite_key).cloned(),
        )
    });
    let state = state.ok_or_else(not_found)?;
    invite_usable(&state, crate::now_ms() / 1000)?;
    *held = Some((mesh_id, f.invite_key));
    Ok(Reply::Frame(BrokerFrame::InviteBundle(InviteBundle {
        req: f.req,
        mesh_id,
        bundle,
        log,
        log_len,
    })))
}

/// Whether an invite can still admit someone at `now_secs` (broker clock).
pub(super) fn invite_usable(state: &InviteState, now_secs: u64) -> Result<(), Refusal> {
    if state.revoked_at.is_some() {
        return Err(Refusal::new(
            ErrorCode::InviteRevoked,
            "this invite was revoked",
        ));
    }
    if now_secs > state.expires_at {
        return Err(Refusal::new(
            ErrorCode::InviteExpired,
            "this invite has expired",
        ));
    }
    if state.uses >= state.max_uses {
        return Err(Refusal::new(
            ErrorCode::InviteExhausted,
            format!(
                "this invite allowed {} use(s); all were taken",
                state.max_uses
            ),
        ));
    }
    Ok(())
}

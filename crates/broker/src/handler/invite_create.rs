//! Invites: `invite_create` (a member appends an `invite` entry with its
//! encrypted welcome bundle), and before any hello `invite_fetch` (a joiner
//! proves it holds the invite's secret and gets the bundle and the log) and
//! `invite_join` (it appends its signed admit). The broker holds an invite
//! to its expiry by its own clock, which a joiner cannot set.

use claudemesh_crypto::invite::verify_invite_proof;
use claudemesh_crypto::log::{EntryBody, InviteState};
use claudemesh_crypto::{MeshId, PublicKey};
use claudemesh_proto::frames::{InviteBundle, InviteCreate, InviteFetch, InviteJoin, Joined};
use claudemesh_proto::limits::{MAX_BUNDLE_BYTES, MAX_LOG_ENTRIES_PER_FRAME};
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::append::{append_and_answer, append_limits, append_refusal};
use super::log_fetch::entries_within_budget;
use super::{Caller, Refusal, Reply, load_mesh};
use crate::state::BrokerState;
use crate::store::AppendExtras;

/// An invite this connection proved it holds: its mesh and invite key.
pub type HeldInvite = (MeshId, PublicKey);

/// `invite_create`: appends the `invite` entry and stores its bundle.
pub async fn create(caller: Caller<'_>, f: InviteCreate) -> Result<Reply, Refusal> {
    let EntryBody::Invite { invite_key, .. } = &f.entry.body else {
        return Err(Refusal::new(
            ErrorCode::Malformed,
            "invite_create carries an invite entry",
        ));
    };
    if f.bundle.len() > MAX_BUNDLE_BYTES {
        return Err(Refusal::new(
            ErrorCode::Malformed,
            "welcome bundle is too large",
        ));
    }
    let extras = AppendExtras {
        new_invite: Some((*invite_key, f.bundle)),
        used_invite: None,
    };
    append_and_answer(caller, f.req, vec![f.entry], extras).await
}

/// `invite_fetch`: checks the proof against this connection's challenge,
/// then answers the bundle and the first page of the log; the connection
/// then holds the invite (`held`).
pub async fn fetch(
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

/// `invite_join`: appends the joiner's admit of the invite it fetched.
pub async fn join(
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

/// Whether an invite can still admit someone at `now_secs` (broker clock).
fn invite_usable(state: &InviteState, now_secs: u64) -> Result<(), Refusal> {
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

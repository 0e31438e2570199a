//! `presence_set`: the caller's session changes its status, peer type or
//! encrypted summary. Applied to the session, pushed (coalesced) to the
//! mesh's other sessions, saved (coalesced) by the state saver. Each costs a
//! frame for every other session, so it has a rate of its own.

use claudemesh_proto::ErrorCode;
use claudemesh_proto::frames::{PresenceSet, Status};
use claudemesh_proto::limits::{MAX_SUMMARY_CIPHERTEXT_BYTES, PRESENCE_RATE_PER_SEC};

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::metrics as m;
use crate::ratelimit::TokenBucket;
use crate::store::MemberState;

impl Handle for PresenceSet {
    async fn handle(self, caller: Caller<'_>, cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        handle(caller, cx.presence_rate, self)
    }
}

/// Applies a presence change, if `rate` (the connection's presence bucket)
/// has room.
fn handle(caller: Caller<'_>, rate: &mut TokenBucket, p: PresenceSet) -> Result<Reply, Refusal> {
    let Caller {
        broker,
        session,
        mesh,
    } = caller;
    if p.summary
        .as_ref()
        .is_some_and(|s| s.ciphertext.len() > MAX_SUMMARY_CIPHERTEXT_BYTES)
    {
        return Err(Refusal::new(ErrorCode::Malformed, "summary is too large"));
    }
    if let Err(wait) = rate.take() {
        metrics::counter!(m::RATE_LIMITED).increment(1);
        return Err(Refusal::new(
            ErrorCode::RateLimited,
            format!(
                "at most {PRESENCE_RATE_PER_SEC} presence changes per second; this one was not \
                 applied"
            ),
        )
        .retry_after(Some(wait)));
    }
    let before = session.presence().status;
    let now_p = session.update_presence(p.status, p.peer_type, p.summary);
    let state = MemberState {
        status: now_p.status,
        peer_type: now_p.peer_type,
        summary: now_p.summary.clone(),
        last_seen_ms: crate::now_ms(),
    };
    mesh.presence_changed(session, state.clone());
    broker.member_states.save(mesh.id, session.member, state);
    if before != Status::Idle && now_p.status == Status::Idle {
        // Messages held while busy go out now (one drain at a time).
        crate::delivery::wake_drain(broker.clone(), mesh.clone(), session.clone());
    }
    Ok(Reply::Nothing)
}

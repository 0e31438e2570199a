//! Messages held for later (`send.deliver_at_ms`, `docs/protocol.md` §5
//! "Scheduled"): every second each broker (every replica alike) reads the
//! held messages whose time came, routes each as of now, exactly as a
//! `send` is routed, and hands it to the group-commit writer as an ordinary
//! message marked `held`. The writer's transaction deletes the held row and
//! stores the message together, and stores nothing when the row is gone, so
//! a message fires once however many replicas see it due, and never after a
//! cancel. From then on it is a message like any other: pushed to online
//! recipients, queued for offline ones, numbered, replicated, receipted.
//! No timer lives in memory: a broker that restarts fires what came due
//! while it was down at its first sweep.

use std::collections::{HashMap, HashSet};

use claudemesh_crypto::envelope::{Envelope, MessageId};
use claudemesh_crypto::{MeshId, PublicKey};
use claudemesh_proto::ErrorCode;
use claudemesh_proto::limits::MAX_LABEL_LEN;

use crate::handler::send::{new_message, recipients_of};
use crate::metrics as m;
use crate::state::BrokerState;
use crate::store::HeldMessage;
use crate::writer::WriteJob;

/// Held messages fired per sweep at most (the rest, at the next).
pub const FIRE_BATCH: u32 = 256;

/// How long a held message handed to the writer is not handed again: a
/// backed-up writer may take a while to commit (and delete its row), and
/// a sweep meanwhile would only queue it twice. After this, it is tried
/// again, in case that commit failed and rolled the row back.
pub const IN_FLIGHT_MS: u64 = 10_000;

/// Held messages handed to the writer and not yet seen gone, with when.
pub type InFlight = HashMap<(MeshId, PublicKey, MessageId), u64>;

/// What became of a held message at its time.
enum Fired {
    /// Handed to the writer.
    Submitted,
    /// It cannot be sent: marked failed, with why, for its sender.
    Failed(String),
    /// Try again at the next sweep (the store or the mesh did not answer).
    Later,
}

/// Fires every held message due at `now_ms` but those `in_flight` (handed
/// to the writer a moment ago); returns how many were handed to it now.
/// Each mesh with a due message first adopts what other replicas appended
/// (once per sweep), so a ban or rekey made through another replica fails
/// the message here too.
pub async fn fire_due(state: &BrokerState, now_ms: u64, in_flight: &mut InFlight) -> usize {
    in_flight.retain(|_, at| now_ms.saturating_sub(*at) < IN_FLIGHT_MS);
    let due = match state.store.due_held(now_ms, FIRE_BATCH).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "could not read held messages");
            return 0;
        }
    };
    let mut caught_up = HashSet::new();
    let mut submitted = 0;
    for held in due {
        let key = (held.mesh, held.sender_member, held.id);
        if in_flight.contains_key(&key) {
            continue;
        }
        match fire(state, &held, now_ms, &mut caught_up).await {
            Fired::Submitted => {
                in_flight.insert(key, now_ms);
                submitted += 1;
            }
            Fired::Failed(mut why) => {
                // Kept for `schedule_page`, which lists up to 200 of them in
                // one frame: an error message's bound, as everywhere.
                if why.len() > MAX_LABEL_LEN {
                    let mut end = MAX_LABEL_LEN;
                    while !why.is_char_boundary(end) {
                        end -= 1;
                    }
                    why.truncate(end);
                }
                metrics::counter!(m::HELD_FAILED).increment(1);
                tracing::info!(id = %held.id, reason = %why, "a held message could not be sent");
                if let Err(e) = state
                    .store
                    .fail_held(&held.mesh, &held.sender_member, &held.id, &why)
                    .await
                {
                    tracing::warn!(error = %e, "could not mark a held message failed");
                }
            }
            Fired::Later => {}
        }
    }
    metrics::counter!(m::HELD_FIRED).increment(submitted as u64);
    submitted
}

/// Routes one held message as of `now_ms` and submits it; `caught_up`:
/// the meshes this sweep brought up to date already.
async fn fire(
    state: &BrokerState,
    held: &HeldMessage,
    now_ms: u64,
    caught_up: &mut HashSet<MeshId>,
) -> Fired {
    let env: Envelope = match serde_json::from_str(&held.envelope_json) {
        Ok(env) => env,
        Err(e) => return Fired::Failed(format!("the held envelope is damaged: {e}")),
    };
    let mesh = match state.hub.mesh(&held.mesh).await {
        Ok(Some(mesh)) => mesh,
        Ok(None) => return Fired::Failed("its mesh no longer exists on this broker".into()),
        Err(e) => {
            tracing::warn!(error = %e, "could not load the mesh of a held message");
            return Fired::Later;
        }
    };
    if caught_up.insert(mesh.id) {
        mesh.caught_up().await;
    }
    if !mesh.read_log(|l| l.roster.is_member(&held.sender_member)) {
        return Fired::Failed("its sender is no longer a member of the mesh".into());
    }
    let (recipients, at_len) =
        match recipients_of(state, &mesh, &held.sender_member, &env, false).await {
            Ok(routed) => routed,
            Err(r) if r.code == ErrorCode::Internal => return Fired::Later,
            Err(r) if r.code == ErrorCode::RekeyRequired => {
                // The key it was sealed under is no longer the mesh's or
                // topic's (a member left or was removed since): sending it
                // would let a removed member read it. Its sender sends it
                // again, sealed under the current key.
                return Fired::Failed(
                    "it was sealed under a key that changed since it was scheduled \
                     (a member left, was removed or is owed a new key); send it again"
                        .into(),
                );
            }
            Err(r) => return Fired::Failed(r.message),
        };
    let retention_ms = u64::try_from(state.config.retention.as_millis()).unwrap_or(u64::MAX);
    let msg = new_message(
        &env,
        recipients,
        at_len,
        now_ms,
        retention_ms,
        held.ttl_ms,
        true,
    );
    if state
        .writer
        .submit(WriteJob::Message(Box::new(msg), None))
        .await
    {
        Fired::Submitted
    } else {
        Fired::Later
    }
}

//! `send`: a sealed envelope from the caller's session. Checked (its mesh,
//! its sender, its version and size), routed to its recipients as of now
//! (minus those whose grants refuse), and handed to the group-commit writer,
//! which answers `accepted` once it is stored. With a `deliver_at_ms`
//! ahead, it is held instead (`scheduled`), and routed again at its time
//! ([`crate::scheduled`]) by the same [`recipients_of`].

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::{Envelope, Target};
use claudemesh_proto::frames::{Accepted, Scheduled, Send};
use claudemesh_proto::limits::MAX_HELD_PER_MEMBER;
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::{Caller, Context, Handle, Refusal, Reply, short_hex};
use crate::mesh::MeshHub;
use crate::route;
use crate::state::BrokerState;
use crate::store::{HeldMessage, HoldOutcome, NewMessage};
use crate::writer::{AcceptReply, WriteJob};

/// What a sender hears when the recipient's grants refuse a direct message.
pub const REFUSED_BY_GRANTS: &str = "refused: blocked by recipient";

/// The shortest TTL a sender may ask for.
pub const MIN_TTL_MS: u64 = 1000;

/// A `deliver_at_ms` less than this far ahead is sent at once: holding it
/// would only add the sweep's second.
pub const HOLD_MIN_AHEAD_MS: u64 = 1000;

impl Handle for Send {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        handle(caller, self).await
    }
}

/// Checks, routes and queues a message for the writer.
async fn handle(caller: Caller<'_>, f: Send) -> Result<Reply, Refusal> {
    let Caller {
        broker,
        session,
        mesh,
    } = caller;
    let env = f.envelope;
    if env.mesh != mesh.id {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "the envelope is for another mesh",
        ));
    }
    if env.sender.session != session.session || env.sender.member != session.member {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "the envelope's sender is not this connection's session",
        ));
    }
    if env.v != claudemesh_crypto::envelope::ENVELOPE_VERSION {
        return Err(Refusal::new(
            ErrorCode::Malformed,
            format!("envelope version {} is not supported", env.v),
        ));
    }
    let max_ct = claudemesh_proto::limits::MAX_BODY_BYTES + claudemesh_crypto::boxes::MAC_BYTES;
    if env.ciphertext.len() > max_ct {
        return Err(Refusal::new(
            ErrorCode::BodyTooLarge,
            format!(
                "the body is larger than {} bytes",
                claudemesh_proto::limits::MAX_BODY_BYTES
            ),
        ));
    }
    let (recipients, at_len) = recipients_of(broker, mesh, &session.member, &env, true).await?;
    let now = crate::now_ms();
    let retention = u64::try_from(broker.config.retention.as_millis()).unwrap_or(u64::MAX);
    // A TTL: not shown by then, the message is dropped and reported
    // `expired` (1 s to the retention; longer would promise what retention
    // does not keep).
    let ttl_ms = match f.ttl_ms {
        Some(ttl) if !(MIN_TTL_MS..=retention).contains(&ttl) => {
            return Err(Refusal::new(
                ErrorCode::Malformed,
                format!(
                    "ttl_ms must be from {MIN_TTL_MS} to the broker's retention ({retention} ms)"
                ),
            ));
        }
        ttl => ttl,
    };
    if let Some(at) = f
        .deliver_at_ms
        .filter(|at| *at > now.saturating_add(HOLD_MIN_AHEAD_MS))
    {
        return hold(broker, f.req, &env, at, ttl_ms, now, retention).await;
    }
    let msg = new_message(&env, recipients, at_len, now, retention, ttl_ms, false);
    let reply = AcceptReply {
        session: session.clone(),
        req: f.req,
    };
    if !broker
        .writer
        .submit(WriteJob::Message(Box::new(msg), Some(reply)))
        .await
    {
        return Err(Refusal::new(ErrorCode::ShuttingDown, "the broker is stopping").unaddressed());
    }
    Ok(Reply::Nothing)
}

/// The recipients of `env` from `sender` as of now, and for a fan-out
/// message the log length that fixes them: a direct message's member or
/// session (refused when not a current member's, or when its grants
/// refuse the sender), or a topic's, group's or everyone's. With
/// `catch_up`, a check that fails is tried again once the mesh adopted
/// what other replicas appended (a `send`); without, the caller caught up
/// already (the sweep of held messages, once per mesh).
pub(crate) async fn recipients_of(
    broker: &BrokerState,
    mesh: &MeshHub,
    sender: &PublicKey,
    env: &Envelope,
    catch_up: bool,
) -> Result<(Vec<PublicKey>, Option<u64>), Refusal> {
    let refused = || Refusal::new(ErrorCode::Refused, REFUSED_BY_GRANTS);
    match &env.target {
        Target::Member(k) => {
            let is_member = || mesh.read_log(|l| l.roster.is_member(k));
            // A member who joined through another replica a moment ago.
            let known = is_member() || (catch_up && mesh.caught_up().await && is_member());
            if !known {
                return Err(Refusal::new(
                    ErrorCode::UnknownRecipient,
                    format!("{} is not a member of this mesh", short_hex(k.to_hex())),
                ));
            }
            let to = route::direct(mesh, k, k.0, sender).map_err(|_| refused())?;
            Ok((to, None))
        }
        Target::Session(s) => {
            let here = mesh
                .sessions()
                .get(s)
                .map(|h| h.member)
                .or_else(|| mesh.remote_member_of(s));
            let member = match here {
                Some(m) => Some(m),
                None => broker
                    .store
                    .session_member(&mesh.id, s)
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "session lookup failed");
                        Refusal::internal("the broker could not route it")
                    })?,
            };
            match member {
                Some(m) if mesh.read_log(|l| l.roster.is_member(&m)) => {
                    let to = route::direct(mesh, &m, s.0, sender).map_err(|_| refused())?;
                    Ok((to, None))
                }
                _ => Err(Refusal::new(
                    ErrorCode::UnknownRecipient,
                    format!("no session {} of a current member", short_hex(s.to_hex())),
                )),
            }
        }
        target @ (Target::Group(_) | Target::Topic(_) | Target::Broadcast) => {
            let check = || route::at_send(mesh, sender, target, env.epoch);
            let mut routed = check();
            // A topic, group member or rekey another replica added a moment
            // ago: adopt it and route again.
            if routed.is_err() && catch_up && mesh.caught_up().await {
                routed = check();
            }
            let (recipients, len) =
                routed.map_err(|(code, message)| Refusal::new(code, message))?;
            Ok((recipients, Some(len)))
        }
    }
}

/// The message the writer stores for `env`, received (or, held, fired) at
/// `now`: kept for the retention, or until its TTL runs out unshown.
pub(crate) fn new_message(
    env: &Envelope,
    recipients: Vec<PublicKey>,
    at_len: Option<u64>,
    now: u64,
    retention_ms: u64,
    ttl_ms: Option<u64>,
    held: bool,
) -> NewMessage {
    let deadline_ms = ttl_ms.map(|ttl| now.saturating_add(ttl));
    NewMessage {
        mesh: env.mesh,
        sender_member: *env.sender.member,
        id: env.id,
        target: env.target.to_string(),
        priority: env.priority,
        envelope_json: serde_json::to_string(env).unwrap_or_default(),
        recipients,
        at_len,
        created_at_ms: now,
        expires_at_ms: deadline_ms.unwrap_or(now.saturating_add(retention_ms)),
        deadline_ms,
        held,
    }
}

/// Holds a checked message for later and answers `scheduled`; a resend of
/// one whose time came is answered `accepted` as a duplicate.
async fn hold(
    broker: &BrokerState,
    req: Option<String>,
    env: &Envelope,
    deliver_at_ms: u64,
    ttl_ms: Option<u64>,
    now: u64,
    retention_ms: u64,
) -> Result<Reply, Refusal> {
    if deliver_at_ms > now.saturating_add(retention_ms) {
        return Err(Refusal::new(
            ErrorCode::Malformed,
            format!(
                "deliver_at_ms is at most the broker's retention ({} days) ahead",
                retention_ms / 86_400_000
            ),
        ));
    }
    let held = HeldMessage {
        mesh: env.mesh,
        sender_member: *env.sender.member,
        id: env.id,
        target: env.target.to_string(),
        priority: env.priority,
        envelope_json: serde_json::to_string(env).unwrap_or_default(),
        ttl_ms,
        deliver_at_ms,
        created_at_ms: now,
        error: None,
    };
    let outcome = broker
        .store
        .hold_message(&held, MAX_HELD_PER_MEMBER as u64)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "holding a message failed");
            Refusal::internal("the broker could not hold the message; resend it")
        })?;
    if matches!(
        outcome,
        HoldOutcome::Held {
            duplicate: false,
            ..
        }
    ) {
        metrics::counter!(crate::metrics::HELD).increment(1);
    }
    Ok(Reply::Frame(match outcome {
        HoldOutcome::Held {
            deliver_at_ms,
            duplicate,
        } => BrokerFrame::Scheduled(Scheduled {
            req,
            id: env.id,
            deliver_at_ms,
            duplicate,
        }),
        HoldOutcome::AlreadySent { seq, tseq } => BrokerFrame::Accepted(Accepted {
            req,
            id: env.id,
            seq,
            duplicate: true,
            tseq,
        }),
        HoldOutcome::TooMany => {
            return Err(Refusal::new(
                ErrorCode::Refused,
                format!(
                    "this member already holds {MAX_HELD_PER_MEMBER} messages for later; \
                     cancel some first (claudemesh schedule list)"
                ),
            ));
        }
        HoldOutcome::Cancelled => {
            return Err(Refusal::new(
                ErrorCode::NotFound,
                format!(
                    "message {} was cancelled and is never sent; send it anew",
                    env.id
                ),
            ));
        }
    }))
}

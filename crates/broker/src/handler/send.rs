//! `send`: a sealed envelope from the caller's session. Checked (its mesh,
//! its sender, its version and size), routed to its recipients as of now
//! (minus those whose grants refuse), and handed to the group-commit writer,
//! which answers `accepted` once it is stored.

use claudemesh_crypto::envelope::Target;
use claudemesh_proto::ErrorCode;
use claudemesh_proto::frames::Send;

use super::{Caller, Context, Handle, Refusal, Reply, short_hex};
use crate::route;
use crate::store::NewMessage;
use crate::writer::{AcceptReply, WriteJob};

/// What a sender hears when the recipient's grants refuse a direct message.
pub const REFUSED_BY_GRANTS: &str = "refused: blocked by recipient";

/// The shortest TTL a sender may ask for.
pub const MIN_TTL_MS: u64 = 1000;

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
    let refused = || Refusal::new(ErrorCode::Refused, REFUSED_BY_GRANTS);
    let mut at_len = None;
    let recipients = match &env.target {
        Target::Member(k) => {
            let is_member = || mesh.read_log(|l| l.roster.is_member(k));
            // A member who joined through another replica a moment ago.
            let known = is_member() || (mesh.caught_up().await && is_member());
            if !known {
                return Err(Refusal::new(
                    ErrorCode::UnknownRecipient,
                    format!("{} is not a member of this mesh", short_hex(k.to_hex())),
                ));
            }
            route::direct(mesh, k, k.0, &session.member).map_err(|_| refused())?
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
                    route::direct(mesh, &m, s.0, &session.member).map_err(|_| refused())?
                }
                _ => {
                    return Err(Refusal::new(
                        ErrorCode::UnknownRecipient,
                        format!("no session {} of a current member", short_hex(s.to_hex())),
                    ));
                }
            }
        }
        target @ (Target::Group(_) | Target::Topic(_) | Target::Broadcast) => {
            let check = || route::at_send(mesh, &session.member, target, env.epoch);
            let mut routed = check();
            // A topic, group member or rekey another replica added a moment
            // ago: adopt it and route again.
            if routed.is_err() && mesh.caught_up().await {
                routed = check();
            }
            let (recipients, len) =
                routed.map_err(|(code, message)| Refusal::new(code, message))?;
            at_len = Some(len);
            recipients
        }
    };
    let now = crate::now_ms();
    let retention = u64::try_from(broker.config.retention.as_millis()).unwrap_or(u64::MAX);
    // A TTL: not shown by then, the message is dropped and reported
    // `expired` (1 s to the retention; longer would promise what retention
    // does not keep).
    let deadline_ms = match f.ttl_ms {
        None => None,
        Some(ttl) if (MIN_TTL_MS..=retention).contains(&ttl) => Some(now.saturating_add(ttl)),
        Some(_) => {
            return Err(Refusal::new(
                ErrorCode::Malformed,
                format!(
                    "ttl_ms must be from {MIN_TTL_MS} to the broker's retention ({retention} ms)"
                ),
            ));
        }
    };
    let msg = NewMessage {
        mesh: mesh.id,
        sender_member: session.member,
        id: env.id,
        target: env.target.to_string(),
        priority: env.priority,
        envelope_json: serde_json::to_string(&*env).unwrap_or_default(),
        recipients,
        at_len,
        created_at_ms: now,
        expires_at_ms: deadline_ms.unwrap_or(now.saturating_add(retention)),
        deadline_ms,
    };
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

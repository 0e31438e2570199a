//! Messages by the words users know: a direct message to a member or a
//! session ([`send_direct`]), a post to a topic, a group or the whole mesh
//! ([`post`], with `@name` mentions), and [`send`], which takes either.
//! The inbox is read through [`crate::local::LocalStore`] and marked read
//! with [`MeshClient::mark_read`]; a sent message's delivery state is
//! [`MeshClient::message_status`] (`message_status`, every page, each
//! recipient's signed receipts checked by [`crate::receipts`]). A message
//! may be given a time to live ([`send_with`], [`SendOptions::ttl`]): not
//! shown by then, it is reported `expired` and dropped. And a delivery
//! time ([`SendOptions::deliver_at_ms`]): the broker holds it until then
//! ([`crate::schedule`]); its `message status` is `scheduled` until it
//! is sent.

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::{MessageId, Priority, Target};
use claudemesh_proto::frames::MessageStatusQuery;
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};
use serde::Serialize;

use crate::client::{MeshClient, RecipientReport, SendOptions, SendOutcome, StatusReport};
use crate::error::ClientError;
use crate::mesh::mentions::{mentioned_members, my_name};
use crate::receipts::{self, Subject};
use crate::session::unexpected;
use claudemesh_crypto::MemberKey;

/// Most `message_status_result` pages one status reads.
const MAX_STATUS_PAGES: usize = 1000;

/// A message sent, with the mentions it notified.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Posted {
    /// The message id (hex).
    pub id: String,
    /// Broker seq (0 while the broker holds it for later:
    /// `deliver_at_ms`).
    pub seq: u64,
    /// It had been accepted (or held) before.
    pub duplicate: bool,
    /// The target (`#deploys`, `@eng`, `*`, or the recipient's name).
    pub to: String,
    /// Members mentioned (`@name`) outside the public topic who got a
    /// direct message quoting the post.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mentioned: Vec<String>,
    /// Mentions that could not be delivered, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mention_failures: Vec<String>,
    /// Sent with a time to live: when it expires if not shown (unix ms,
    /// this device's clock at the send plus the TTL; the broker counts
    /// from when it received it, a moment later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Held by the broker until then (unix ms, the broker's clock), when it
    /// will be stored and delivered; absent: sent now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_at_ms: Option<u64>,
    /// The raw outcome.
    #[serde(skip)]
    pub outcome: Option<SendOutcome>,
}

/// Sends `text` to `target`: a direct message ([`send_direct`]) or a post
/// to a topic, a group or the whole mesh ([`post`]).
pub async fn send(
    client: &MeshClient,
    target: Target,
    text: &str,
    priority: Priority,
    reply_to: Option<MessageId>,
) -> Result<Posted, ClientError> {
    send_as(
        client,
        MessageId::random(),
        target,
        text,
        priority,
        reply_to,
    )
    .await
}

/// [`send`] with a chosen message id: the gateway's `Idempotency-Key`
/// maps to one, so a retried request is the same message (the broker
/// answers it as a duplicate, and the mentions are not sent again).
pub async fn send_as(
    client: &MeshClient,
    id: MessageId,
    target: Target,
    text: &str,
    priority: Priority,
    reply_to: Option<MessageId>,
) -> Result<Posted, ClientError> {
    send_with(
        client,
        id,
        target,
        text,
        SendOptions::new(priority, reply_to),
    )
    .await
}

/// [`send_as`] with every option, a time to live among them (the mention
/// quotes of a topic post get the same one).
pub async fn send_with(
    client: &MeshClient,
    id: MessageId,
    target: Target,
    text: &str,
    opts: SendOptions,
) -> Result<Posted, ClientError> {
    let mut posted = if target.is_direct() {
        send_direct(client, id, target, text, opts).await
    } else {
        post(client, id, target, text, opts).await
    }?;
    if opts.ttl.is_some() {
        posted.deadline_ms = client
            .local()
            .outbox_get(&client.mesh().id, &id)
            .await?
            .and_then(|e| e.deadline_ms);
    }
    Ok(posted)
}

/// Sends a direct message to a member or a session (as
/// [`MeshClient::send_with`]: refused while the peer's verified key
/// changed).
pub async fn send_direct(
    client: &MeshClient,
    id: MessageId,
    target: Target,
    text: &str,
    opts: SendOptions,
) -> Result<Posted, ClientError> {
    let outcome = client
        .send_with(id, target.clone(), text.as_bytes(), opts)
        .await?;
    Ok(posted(client, &target, outcome))
}

/// What a send returns, before any mention is delivered.
fn posted(client: &MeshClient, target: &Target, outcome: SendOutcome) -> Posted {
    let to = match target {
        Target::Member(k) => client.with_state(|s| s.display_name(k)),
        other => other.to_string(),
    };
    Posted {
        id: outcome.id.to_hex(),
        seq: outcome.seq,
        duplicate: outcome.duplicate,
        to,
        mentioned: Vec::new(),
        mention_failures: Vec::new(),
        deadline_ms: None,
        deliver_at_ms: outcome.scheduled_for_ms,
        outcome: Some(outcome),
    }
}

/// Posts `text` to a topic, a group or the whole mesh (as
/// [`MeshClient::send`]; a direct target is sent as [`send_direct`] does).
/// For a public topic,
/// each `@name` (at most [`crate::mesh::mentions::MAX_MENTIONS`]) naming a member who is not in
/// the topic also gets a direct message `[mention in #topic] <me>: <text>`
/// answering the post. Private topics never quote their posts outside.
pub async fn post(
    client: &MeshClient,
    id: MessageId,
    target: Target,
    text: &str,
    opts: SendOptions,
) -> Result<Posted, ClientError> {
    client.with_state(|s| s.check_fanout_target(&target))?;
    let outcome = client
        .send_with(id, target.clone(), text.as_bytes(), opts)
        .await?;
    let mut posted = posted(client, &target, outcome);
    // A resend (a retried request) told the mentioned members already.
    let Target::Topic(topic) = &target else {
        return Ok(posted);
    };
    if outcome.duplicate {
        return Ok(posted);
    }
    let (outside, sender) = client.with_state(|s| {
        let Some(info) = s.roster().topic(topic).filter(|i| !i.private) else {
            return (Vec::new(), String::new());
        };
        let outside: Vec<(PublicKey, String)> = mentioned_members(s, text)
            .into_iter()
            .filter(|k| *k != s.my_key() && !info.members.contains_key(k))
            .map(|k| (k, s.display_name(&k)))
            .collect();
        (outside, my_name(s))
    });
    for (member, name) in outside {
        let quote = format!("[mention in #{topic}] {sender}: {text}");
        match client
            .send_with(
                MessageId::random(),
                Target::Member(MemberKey(member)),
                quote.as_bytes(),
                SendOptions {
                    reply_to: Some(outcome.id),
                    ..opts
                },
            )
            .await
        {
            Ok(_) => posted.mentioned.push(name),
            Err(e) => posted.mention_failures.push(format!("{name}: {e}")),
        }
    }
    Ok(posted)
}

impl MeshClient {
    /// The delivery state of a message this member sent: per recipient,
    /// what its signed receipts and watermarks prove (each checked against
    /// this device's verified roster, [`crate::receipts`]) and what the
    /// broker says.
    pub async fn message_status(&self, id: &MessageId) -> Result<StatusReport, ClientError> {
        let session = self.session();
        let mesh = session.mesh().id;
        let local = session.local().outbox_get(&mesh, id).await?;
        let envelope = match &local {
            Some(_) => session.local().outbox_envelope(&mesh, id).await?,
            None => None,
        };
        let target = local.as_ref().map(|e| e.target.clone());
        let local_report = |entry: &crate::local::OutboxEntry| StatusReport {
            id: id.to_hex(),
            state: entry.state.clone(),
            error: entry.error.clone(),
            seq: None,
            target: target.clone(),
            deadline_ms: entry.deadline_ms,
            deliver_at_ms: entry.deliver_at_ms,
            recipients: Vec::new(),
        };
        // A scheduled message is the broker's to send: once it has, the
        // broker reports it like any other (below); until then it does
        // not know it as sent.
        let scheduled = local.as_ref().filter(|e| e.state == "scheduled");
        if let Some(entry) = &local
            && entry.state != "accepted"
            && scheduled.is_none()
        {
            return Ok(local_report(entry));
        }
        // Every page (a broadcast's status lists every member it was for).
        let mut recipients = Vec::new();
        let mut after = None;
        let mut seq = 0;
        let mut page_tseq = None;
        let mut deadline_ms = None;
        let mut rechecked = false;
        for _ in 0..MAX_STATUS_PAGES {
            let frame = session
                .request(
                    |req| {
                        ClientFrame::MessageStatus(MessageStatusQuery {
                            req: Some(req),
                            id: *id,
                            after,
                        })
                    },
                    "report the message status",
                )
                .await;
            let frame = match (frame, scheduled) {
                (
                    Err(ClientError::Refused {
                        code: ErrorCode::NotFound,
                        ..
                    }),
                    Some(entry),
                ) => {
                    // Still held, its time came and it could not be sent, or
                    // cancelled from another device: the broker's list says
                    // which (and why), and this device keeps what it learned.
                    let mut report = local_report(entry);
                    let held = match self.schedule_list().await {
                        Ok(held) => held,
                        Err(e) => {
                            tracing::info!(error = %e, "could not list held messages for a status");
                            return Ok(report);
                        }
                    };
                    match held.into_iter().find(|h| h.id == *id) {
                        Some(h) if h.state == "failed" => {
                            let why = h.error.unwrap_or_default();
                            session.local().outbox_failed(&mesh, id, &why).await?;
                            report.state = "failed".into();
                            report.error = Some(why);
                        }
                        Some(_) => {}
                        // Neither stored nor held: sent a moment ago (ask
                        // once more), else cancelled elsewhere.
                        None if !rechecked => {
                            rechecked = true;
                            continue;
                        }
                        None => {
                            session.local().outbox_cancelled(&mesh, id).await?;
                            report.state = "cancelled".into();
                        }
                    }
                    return Ok(report);
                }
                (frame, _) => frame.map_err(|e| match e {
                    ClientError::Refused {
                        code: ErrorCode::NotFound,
                        ..
                    } => ClientError::NotFound(format!(
                        "no message {id} sent by this member is known to the broker"
                    )),
                    e => e,
                })?,
            };
            let BrokerFrame::MessageStatusResult(page) = frame else {
                return Err(unexpected(&frame));
            };
            seq = page.seq;
            page_tseq = page_tseq.or(page.tseq);
            deadline_ms = deadline_ms.or(page.deadline_ms);
            recipients.extend(page.recipients);
            match page.next {
                Some(next) if after != Some(next) => after = Some(next),
                _ => break,
            }
        }
        let recipients = session.read_state(|s| {
            let roster = s.roster();
            let subject = Subject {
                mesh,
                sender: MemberKey(s.my_key()),
                id: *id,
                target: local.as_ref().and_then(|e| e.target.parse().ok()),
                // The number the broker gave when it accepted the message,
                // before any later answer could differ.
                tseq: local.as_ref().and_then(|e| e.tseq).or(page_tseq),
                sent_len: envelope
                    .as_ref()
                    .and_then(|e| roster.seq_of(&e.log_head))
                    .map(|at| at + 1),
            };
            recipients
                .iter()
                .map(|r| {
                    let judged = receipts::judge(roster, &subject, r);
                    RecipientReport {
                        // A member now, or one that left after the message
                        // was sent (a fan-out message's recipients are fixed
                        // when it is sent); otherwise the key names a session.
                        name: if roster.is_member(&r.recipient)
                            || roster.departed().contains_key(&r.recipient)
                        {
                            s.name_of(&r.recipient)
                        } else {
                            format!("session {}", crate::mesh::short(&r.recipient))
                        },
                        key: r.recipient.to_hex(),
                        state: judged.state(),
                        observed: judged.observed.to_owned(),
                        proven: judged.proven,
                        proofs: judged.proofs,
                    }
                })
                .collect()
        });
        if scheduled.is_some() {
            // Sent since: settled here as the broker's `accepted` would have.
            if let Err(e) = session
                .local()
                .outbox_accepted(&mesh, &[(*id, seq, page_tseq)], crate::client::now_ms())
                .await
            {
                tracing::warn!(error = %e, "could not record a scheduled message as sent");
            }
        }
        Ok(StatusReport {
            id: id.to_hex(),
            state: "accepted".into(),
            error: None,
            seq: Some(seq),
            target,
            deadline_ms: deadline_ms.or(local.as_ref().and_then(|e| e.deadline_ms)),
            deliver_at_ms: local.as_ref().and_then(|e| e.deliver_at_ms),
            recipients,
        })
    }
}

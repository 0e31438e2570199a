//! The outbox: a message is sealed, written to the local outbox, sent,
//! and done once the broker accepts it (`accepted`), or resent with the
//! same id on the next connection; refusals that a reseal or a wait can
//! cure are handled here. A message that answers another is remembered
//! until accepted, when its `answered` receipt is owed (`receipts`).
//! A message with a time to live keeps its deadline in the outbox: a
//! resend carries what remains of the TTL, and one whose deadline passed
//! is not sent but marked `expired` ([`crate::ttl::resend`]).
//! A message to deliver later keeps its delivery time in the outbox too:
//! every send of it carries that time (never to a broker that cannot hold
//! it, [`crate::schedule::wire_deliver_at`]); the broker's `scheduled`
//! answer settles it as `accepted` does (the entry is `scheduled`, not
//! resent), and a resend after its time has come is answered `accepted`.

use std::sync::Arc;
use std::time::Duration;

use claudemesh_crypto::envelope::{Envelope, MessageId, Target};
use claudemesh_proto::frames::{Accepted, ErrorFrame, Scheduled, Send};
use claudemesh_proto::{ClientFrame, ErrorCode};
use tokio::sync::oneshot;

use super::core::{Link, Session, lock};
use super::events::SendOutcome;
use crate::client::SendOptions;
use crate::error::ClientError;
use crate::local::PendingSend;
use crate::schedule;
use crate::ttl::{self, Resend};
use claudemesh_proto::clock::now_ms;

/// How many times a message refused with `rekey_required` is resealed
/// (after syncing the log and writing any rekey that falls to this member)
/// before the send fails.
pub const MAX_RESEALS: u8 = 3;

/// What a `send` carries besides the envelope: what remains of its time to
/// live, and its delivery time as this broker is sent it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Timing {
    /// `send.ttl_ms`.
    pub ttl_ms: Option<u64>,
    /// `send.deliver_at_ms`.
    pub deliver_at_ms: Option<u64>,
}

impl Session {
    /// Seals `body` to `target` under `id`, writes it to the outbox, sends
    /// it, and returns once the broker has durably accepted it (see
    /// [`crate::MeshClient::send`]: the pin check, the rotation owed first,
    /// the reseals after `rekey_required`).
    pub(crate) async fn send_as(
        &self,
        id: MessageId,
        target: Target,
        body: &[u8],
        opts: SendOptions,
    ) -> Result<SendOutcome, ClientError> {
        let SendOptions {
            priority,
            reply_to,
            ttl,
            deliver_at_ms,
        } = opts;
        let ttl_ms = ttl.map(ttl::check_ttl).transpose()?.map(ttl::ttl_ms);
        // Refused before anything is sealed when this broker would deliver
        // a message meant for later at once.
        let broker = self.broker_seen();
        schedule::wire_deliver_at(deliver_at_ms, self.broker_now_ms(), broker.schedules)?;
        let deliver_at_local = deliver_at_ms.map(|at| schedule::local_clock(at, broker.skew_ms));
        // TM8: a direct message to a peer whose verified key changed is
        // refused until the user verifies it again.
        if let Some(member) = self.read_state(|s| s.member_of_target(&target)) {
            let pins = crate::mesh::pins::Pins::load(&self.home, &self.mesh.id)?;
            self.read_state(|s| pins.check_send(s, &member))?;
        }
        self.note_reply(id, reply_to, &target);
        // The deadline is fixed now: a reseal or a resend after a reconnect
        // carries what remains of the TTL, never the whole of it again. A
        // held message's TTL counts from its delivery.
        let deadline =
            ttl_ms.map(|t| schedule::ttl_start(now_ms(), deliver_at_local).saturating_add(t));
        let mut why = String::new();
        for attempt in 0..MAX_RESEALS {
            self.rotate_keys_for(&target).await?;
            let env = self.read_state(|s| {
                s.seal_as(id, target.clone(), body, priority, reply_to, now_ms())
            })?;
            let send_ttl = if attempt == 0 {
                ttl_ms
            } else {
                match ttl::resend(deadline, schedule::ttl_start(now_ms(), deliver_at_local)) {
                    Resend::Send(left) => left,
                    Resend::Expired => {
                        self.expire_pending(id).await;
                        return Err(ClientError::Expired { id: id.to_hex() });
                    }
                }
            };
            self.local
                .outbox_upsert_timed(&env, deadline, deliver_at_ms, now_ms())
                .await?;
            let timing = Timing {
                ttl_ms: send_ttl,
                deliver_at_ms: self.wire_deliver_at(deliver_at_ms)?,
            };
            match self.submit(env, timing).await {
                Err(ClientError::Refused {
                    code: ErrorCode::RekeyRequired,
                    message,
                }) => {
                    why = message;
                    self.sync_log().await?;
                }
                other => return other,
            }
        }
        Err(ClientError::Refused {
            code: ErrorCode::RekeyRequired,
            message: format!(
                "the broker still refuses the message as sealed under an old key after {MAX_RESEALS} reseals ({why}); retry in a moment"
            ),
        })
    }

    /// What this broker is sent of a delivery time (see
    /// [`schedule::wire_deliver_at`]), by the last welcome.
    fn wire_deliver_at(&self, deliver_at_ms: Option<u64>) -> Result<Option<u64>, ClientError> {
        schedule::wire_deliver_at(
            deliver_at_ms,
            self.broker_now_ms(),
            self.broker_seen().schedules,
        )
    }

    /// Sends (or, if not connected, leaves for the reconnect to resend) an
    /// outbox envelope with its `timing` and waits for `accepted` (or
    /// `scheduled`).
    pub(super) async fn submit(
        &self,
        env: Envelope,
        timing: Timing,
    ) -> Result<SendOutcome, ClientError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.send_waiters).entry(env.id).or_default().push(tx);
        let connected = matches!(*self.link.borrow(), Link::Up);
        if connected {
            let _ = self.send_envelope(env.clone(), timing).await;
        } else if !self.opts.reconnect {
            lock(&self.send_waiters).remove(&env.id);
            return Err(ClientError::Disconnected);
        }
        match tokio::time::timeout(self.opts.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => {
                lock(&self.send_waiters).remove(&env.id);
                Err(ClientError::Timeout(
                    "accept the message (it stays in the outbox and is resent on the next connection)",
                ))
            }
        }
    }

    pub(super) async fn send_envelope(
        &self,
        env: Envelope,
        timing: Timing,
    ) -> Result<(), ClientError> {
        let req = self.new_req();
        lock(&self.send_reqs).insert(req.clone(), env.id);
        self.send_raw(&ClientFrame::Send(Send {
            req: Some(req),
            envelope: Box::new(env),
            ttl_ms: timing.ttl_ms,
            deliver_at_ms: timing.deliver_at_ms,
        }))
        .await
    }

    /// Resends an outbox message with what remains of its time to live
    /// (counted from its delivery time when that is still ahead), and its
    /// delivery time; one whose deadline passed (or with less than a second
    /// left) is not sent but marked `expired`, and one still to be held
    /// that this broker cannot hold is marked failed; whoever waits for it
    /// is told so.
    pub(super) async fn resend(&self, pending: PendingSend) -> Result<(), ClientError> {
        let id = pending.envelope.id;
        let deliver_at_ms = match self.wire_deliver_at(pending.deliver_at_ms) {
            Ok(at) => at,
            Err(e) => {
                self.fail_pending(id, e).await;
                return Ok(());
            }
        };
        let deliver_at_local = pending
            .deliver_at_ms
            .map(|at| schedule::local_clock(at, self.broker_seen().skew_ms));
        let from = schedule::ttl_start(now_ms(), deliver_at_local);
        match ttl::resend(pending.deadline_ms, from) {
            Resend::Send(ttl_ms) => {
                let timing = Timing {
                    ttl_ms,
                    deliver_at_ms,
                };
                self.send_envelope(pending.envelope, timing).await
            }
            Resend::Expired => {
                self.expire_pending(id).await;
                Ok(())
            }
        }
    }

    /// Marks an outbox message failed for good before it was sent, and
    /// answers whoever waits for it with `e`.
    async fn fail_pending(&self, id: MessageId, e: ClientError) {
        lock(&self.replies).remove(&id);
        if let Err(err) = self
            .local
            .outbox_failed(&self.mesh.id, &id, &e.to_string())
            .await
        {
            tracing::warn!(error = %err, "could not record a failed message");
        }
        self.resolve_send(&id, Err(e));
    }

    /// Marks an outbox message expired before the broker accepted it, and
    /// answers whoever waits for it with [`ClientError::Expired`].
    async fn expire_pending(&self, id: MessageId) {
        lock(&self.replies).remove(&id);
        if let Err(e) = self.local.outbox_expired(&self.mesh.id, &id).await {
            tracing::warn!(error = %e, "could not record an expired message");
        }
        self.resolve_send(&id, Err(ClientError::Expired { id: id.to_hex() }));
    }

    pub(super) fn resolve_send(&self, id: &MessageId, result: Result<SendOutcome, ClientError>) {
        let mut waiters = lock(&self.send_waiters).remove(id).unwrap_or_default();
        if waiters.len() <= 1 {
            if let Some(w) = waiters.pop() {
                let _ = w.send(result);
            }
            return;
        }
        // Several callers sent the same id: each gets the outcome, and a
        // failure as the one error they share.
        let result = result.map_err(std::sync::Arc::new);
        for w in waiters {
            let _ = w.send(result.clone().map_err(ClientError::Shared));
        }
    }

    /// Reseals an outbox message the broker refused with `rekey_required`
    /// while nobody waited for it (a resend after a reconnect): opens this
    /// member's own envelope, rotates the key if it falls to this member,
    /// and sends it again with the same id.
    pub(super) async fn reseal_pending(&self, id: MessageId) -> Result<(), ClientError> {
        let tries = {
            let mut r = lock(&self.reseals);
            let n = r.entry(id).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        if tries > MAX_RESEALS {
            return Err(ClientError::Refused {
                code: ErrorCode::RekeyRequired,
                message: format!("still sealed under an old key after {MAX_RESEALS} reseals"),
            });
        }
        let Some(PendingSend {
            envelope: env,
            deadline_ms,
            deliver_at_ms,
        }) = self.local.outbox_pending_one(&self.mesh.id, &id).await?
        else {
            return Ok(());
        };
        let deliver_at_local =
            deliver_at_ms.map(|at| schedule::local_clock(at, self.broker_seen().skew_ms));
        let from = schedule::ttl_start(now_ms(), deliver_at_local);
        if ttl::resend(deadline_ms, from) == Resend::Expired {
            self.expire_pending(id).await;
            return Ok(());
        }
        self.sync_log().await?;
        self.rotate_keys_for(&env.target).await?;
        let resealed = self.read_state(|s| {
            let msg = env.verify_and_open(s.roster(), s)?;
            s.seal_as(
                env.id,
                env.target.clone(),
                msg.body(),
                env.priority,
                env.reply_to,
                now_ms(),
            )
        })?;
        self.local
            .outbox_upsert_timed(&resealed, deadline_ms, deliver_at_ms, now_ms())
            .await?;
        self.resend(PendingSend {
            envelope: resealed,
            deadline_ms,
            deliver_at_ms,
        })
        .await
    }

    pub(super) async fn on_accepted(&self, accepted: Vec<Accepted>) {
        let done: Vec<(MessageId, u64, Option<u64>)> =
            accepted.iter().map(|a| (a.id, a.seq, a.tseq)).collect();
        if let Err(e) = self
            .local
            .outbox_accepted(&self.mesh.id, &done, now_ms())
            .await
        {
            tracing::warn!(error = %e, "could not record accepted messages");
        }
        for a in &accepted {
            self.resolve_send(
                &a.id,
                Ok(SendOutcome {
                    id: a.id,
                    seq: a.seq,
                    duplicate: a.duplicate,
                    scheduled_for_ms: None,
                }),
            );
        }
        let ids: Vec<MessageId> = accepted.iter().map(|a| a.id).collect();
        self.answers_accepted(&ids).await;
    }

    /// The broker holds these messages to deliver later: their outbox
    /// entries are `scheduled` (never resent), and whoever waits is told
    /// when. A held answer is not an answer yet: its `answered` receipt is
    /// not signed (the message it answers may be read long before).
    pub(super) async fn on_scheduled(&self, scheduled: Vec<Scheduled>) {
        let held: Vec<(MessageId, u64)> =
            scheduled.iter().map(|s| (s.id, s.deliver_at_ms)).collect();
        if let Err(e) = self.local.outbox_scheduled(&self.mesh.id, &held).await {
            tracing::warn!(error = %e, "could not record scheduled messages");
        }
        for s in &scheduled {
            lock(&self.replies).remove(&s.id);
            self.resolve_send(
                &s.id,
                Ok(SendOutcome {
                    id: s.id,
                    seq: 0,
                    duplicate: s.duplicate,
                    scheduled_for_ms: Some(s.deliver_at_ms),
                }),
            );
        }
    }

    pub(super) async fn on_send_error(self: &Arc<Self>, id: MessageId, e: ErrorFrame) {
        match e.code {
            ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::ShuttingDown => {
                // Transient: resend later with the same id.
                let wait = e.retry_after_ms.unwrap_or(1000).min(60_000);
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    if let Ok(Some(pending)) = me.local.outbox_pending_one(&me.mesh.id, &id).await {
                        let _ = me.resend(pending).await;
                    }
                });
            }
            ErrorCode::RekeyRequired if !lock(&self.send_waiters).contains_key(&id) => {
                let me = self.clone();
                tokio::spawn(async move {
                    if let Err(err) = me.reseal_pending(id).await {
                        tracing::warn!(error = %err, id = %id, "could not reseal a refused message");
                        let _ = me
                            .local
                            .outbox_failed(&me.mesh.id, &id, &err.to_string())
                            .await;
                    }
                });
            }
            code => {
                lock(&self.replies).remove(&id);
                let message = e.message.clone();
                if let Err(err) = self.local.outbox_failed(&self.mesh.id, &id, &message).await {
                    tracing::warn!(error = %err, "could not record a refused message");
                }
                self.resolve_send(&id, Err(ClientError::Refused { code, message }));
            }
        }
    }
}

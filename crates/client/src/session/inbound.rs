//! What arrives on a connection: the reader routes each frame (answers to
//! their waiters, deliveries and acceptances to the processor, presence
//! and log updates to subscribers and the log sync); the processor
//! verifies deliveries, checks them against this member's grants (TM7),
//! stores them in one transaction, announces them, then tells the broker:
//! a direct message by its signed `delivered` receipt, a fan-out message by
//! its target's delivered watermark (coalesced, `receipts`), and an
//! envelope it refused by a plain `ack` (nothing verified to sign for, but
//! the broker must stop redelivering it). A delivery's deadline (its
//! sender's time to live) is stored with it; one that arrives already past
//! it is stored and acknowledged, but never announced.

use std::sync::Arc;

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::{Envelope, EnvelopeError, MessageId, VerifiedMessage};
use claudemesh_proto::frames::{Accepted, Ack, Deliver, ErrorFrame, Scheduled};
use claudemesh_proto::limits::MAX_IDS_PER_ACK;
use claudemesh_proto::{BrokerFrame, ClientFrame};
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

use super::core::{Session, lock};
use super::events::Event;
use crate::error::ClientError;
use crate::local::{Inbound, InboxMessage, Rejection};
use crate::mesh::mentions;
use crate::wire;
use claudemesh_proto::clock::now_ms;

/// Work the reader hands the processor (which may fetch the log, so it
/// must not be the reader).
pub(super) enum Work {
    Deliver(Box<Deliver>),
    Accepted(Accepted),
    Scheduled(Scheduled),
    SendError(MessageId, ErrorFrame),
}

impl Session {
    /// Verifies and opens an envelope (a delivery or a stored topic
    /// message) against the verified log, syncing the log once when the
    /// sender or key may be newer than this device's copy.
    pub(crate) async fn open_envelope(
        &self,
        env: &Envelope,
    ) -> Result<VerifiedMessage, EnvelopeError> {
        let first = self.read_state(|s| env.verify_and_open(s.roster(), s));
        match first {
            Err(e) if may_be_stale(&e) => {
                if let Err(sync) = self.sync_log().await {
                    tracing::warn!(error = %sync, "membership log sync failed");
                }
                self.read_state(|s| env.verify_and_open(s.roster(), s))
            }
            other => other,
        }
    }

    /// This member's grant set on this device, if any (read on every use:
    /// another process, such as the CLI, may have changed it).
    pub(crate) fn local_grants(&self) -> Option<claudemesh_crypto::grants::GrantSet> {
        let member = self.read_state(|s| s.member_key().public());
        match crate::grant_set::load(&self.home, &self.mesh.id, &member) {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the grants");
                None
            }
        }
    }

    /// Routes every frame of one connection; returns why it ended.
    pub(super) async fn read_loop(
        self: Arc<Self>,
        mut stream: wire::WsStream,
        work: mpsc::Sender<Work>,
    ) -> ClientError {
        loop {
            let frame = match wire::next_frame(&mut stream).await {
                Ok(f) => f,
                Err(e) => return e,
            };
            match frame {
                BrokerFrame::Deliver(d) => {
                    self.in_flight.fetch_add(1, Ordering::SeqCst);
                    if work.send(Work::Deliver(Box::new(d))).await.is_err() {
                        return ClientError::Disconnected;
                    }
                }
                BrokerFrame::Accepted(a) => {
                    if let Some(req) = &a.req {
                        lock(&self.send_reqs).remove(req);
                    }
                    self.in_flight.fetch_add(1, Ordering::SeqCst);
                    if work.send(Work::Accepted(a)).await.is_err() {
                        return ClientError::Disconnected;
                    }
                }
                BrokerFrame::Scheduled(s) => {
                    if let Some(req) = &s.req {
                        lock(&self.send_reqs).remove(req);
                    }
                    self.in_flight.fetch_add(1, Ordering::SeqCst);
                    if work.send(Work::Scheduled(s)).await.is_err() {
                        return ClientError::Disconnected;
                    }
                }
                BrokerFrame::Error(e) => {
                    let Some(req) = e.req.clone() else {
                        tracing::warn!(code = %e.code, message = %e.message, "broker error");
                        continue;
                    };
                    if let Some(waiter) = lock(&self.pending).remove(&req) {
                        let _ = waiter.send(Err(ClientError::Refused {
                            code: e.code,
                            message: e.message,
                        }));
                        continue;
                    }
                    let id = lock(&self.send_reqs).remove(&req);
                    if let Some(id) = id {
                        self.in_flight.fetch_add(1, Ordering::SeqCst);
                        if work.send(Work::SendError(id, e)).await.is_err() {
                            return ClientError::Disconnected;
                        }
                    }
                }
                BrokerFrame::Presence(p) => self.emit(Event::Presence(p.peer)),
                BrokerFrame::CoordChanged(c) => self.emit(Event::CoordChanged(c.kinds)),
                BrokerFrame::LogUpdate(_) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.sync_log().await {
                            tracing::warn!(error = %e, "membership log sync failed");
                            if e.is_security() {
                                me.emit(Event::Stopped {
                                    reason: e.to_string(),
                                });
                            }
                        }
                    });
                }
                other => {
                    let req = wire::frame_req(&other).map(str::to_owned);
                    match req.and_then(|r| lock(&self.pending).remove(&r)) {
                        Some(waiter) => {
                            let _ = waiter.send(Ok(other));
                        }
                        None => tracing::debug!(frame = other.type_name(), "unsolicited frame"),
                    }
                }
            }
        }
    }

    /// Stores deliveries and acceptances in batches, then acknowledges them.
    pub(super) async fn process_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Work>) {
        let mut buf = Vec::with_capacity(256);
        while rx.recv_many(&mut buf, 256).await > 0 {
            let n = buf.len();
            let mut delivers = Vec::new();
            let mut accepted = Vec::new();
            let mut scheduled = Vec::new();
            for w in buf.drain(..) {
                match w {
                    Work::Deliver(d) => delivers.push(*d),
                    Work::Accepted(a) => accepted.push(a),
                    Work::Scheduled(s) => scheduled.push(s),
                    Work::SendError(id, e) => self.on_send_error(id, e).await,
                }
            }
            if !accepted.is_empty() {
                self.on_accepted(accepted).await;
            }
            if !scheduled.is_empty() {
                self.on_scheduled(scheduled).await;
            }
            if !delivers.is_empty() {
                self.on_delivers(delivers).await;
            }
            self.in_flight.fetch_sub(n, Ordering::SeqCst);
        }
    }

    /// Verifies a batch of deliveries, stores the good ones in one
    /// transaction, records the refused ones, then acknowledges them all (a
    /// message only once it is stored): signed `delivered` receipts for
    /// direct messages, the delivered watermark for fan-out ones, an `ack`
    /// for the refused.
    pub(super) async fn on_delivers(&self, delivers: Vec<Deliver>) {
        let mut synced = false;
        let mut acks = Vec::new();
        let mut receipts = Vec::new();
        let mut verified = Vec::with_capacity(delivers.len());
        let now = now_ms();
        let mut grants: Option<Option<claudemesh_crypto::grants::GrantSet>> = None;
        for d in delivers {
            let mut result = self.read_state(|s| d.envelope.verify_and_open(s.roster(), s));
            if !synced && result.as_ref().is_err_and(may_be_stale) {
                // A member or key this device has not seen yet: catch up once.
                synced = true;
                if let Err(e) = self.sync_log().await {
                    tracing::warn!(error = %e, "membership log sync failed");
                }
                result = self.read_state(|s| d.envelope.verify_and_open(s.roster(), s));
            }
            if let Ok(msg) = &result {
                let grants = grants.get_or_insert_with(|| self.local_grants());
                if !crate::grant_set::allows(
                    grants.as_ref(),
                    &msg.sender_member(),
                    &msg.target().to_string(),
                ) {
                    // The broker delivered what these grants refuse (it held
                    // an older set): acked, recorded, never shown.
                    let reason = crate::grant_set::BLOCKED_REASON.to_owned();
                    if self
                        .record_refusal(d.seq, msg.sender_member().0, reason, now)
                        .await
                    {
                        acks.push(d.seq);
                    }
                    continue;
                }
            }
            match result {
                Ok(msg) => verified.push((msg, d.seq, d.tseq, d.deadline_ms)),
                Err(e) => {
                    tracing::warn!(seq = d.seq, error = %e, "refused an envelope");
                    let sender = d.envelope.sender.member;
                    if self
                        .record_refusal(d.seq, sender.0, e.to_string(), now)
                        .await
                    {
                        // Recorded and reported; acked so it is not redelivered forever.
                        acks.push(d.seq);
                    }
                }
            }
        }
        let my_name = self.read_state(mentions::my_name);
        let batch: Vec<Inbound<'_>> = verified
            .iter()
            .map(|(msg, seq, tseq, deadline_ms)| Inbound {
                msg,
                seq: *seq,
                // A number within the target means something only for fan-out.
                tseq: tseq.filter(|_| !msg.target().is_direct()),
                mentions_me: mentions::flags_me(msg, &my_name),
                deadline_ms: *deadline_ms,
            })
            .collect();
        match self.local.store_inbound(&self.mesh.id, &batch, now).await {
            Ok(_) => {
                let mut fanout = Vec::new();
                for m in &batch {
                    if m.msg.target().is_direct() {
                        match self.delivered_receipt(m.msg, m.seq, now) {
                            Some(r) => receipts.push(r),
                            // Cannot sign: acked unsigned rather than redelivered forever.
                            None => acks.push(m.seq),
                        }
                    } else if m.tseq.is_some() && !fanout.contains(&m.msg.target()) {
                        fanout.push(m.msg.target());
                    }
                    // Expired before it got here: kept, never presented.
                    if m.deadline_ms.is_none_or(|d| d > now) {
                        self.announce(m, now);
                    }
                }
                self.fanout_stored(&fanout);
            }
            // Not stored: not acknowledged; they come back on the next connection.
            Err(e) => tracing::error!(error = %e, "could not store messages"),
        }
        receipts.sort_unstable_by_key(|r| r.seq);
        let _ = self.send_receipts(&receipts).await;
        acks.sort_unstable();
        for chunk in acks.chunks(MAX_IDS_PER_ACK) {
            let _ = self
                .send_raw(&ClientFrame::Ack(Ack {
                    seqs: chunk.to_vec(),
                    read: false,
                }))
                .await;
        }
    }

    /// Tells subscribers about a stored message, once per session.
    /// Records a refused delivery in the local state and reports it as
    /// [`Event::Rejected`]; true once it is recorded, so it may be acked.
    async fn record_refusal(&self, seq: u64, sender: PublicKey, reason: String, now: u64) -> bool {
        let recorded = self
            .local
            .reject(&self.mesh.id, seq, Some(&sender), &reason, now)
            .await
            .is_ok();
        self.emit(Event::Rejected(Rejection {
            seq,
            sender: Some(sender.to_hex()),
            reason,
            at: now,
        }));
        recorded
    }

    pub(super) fn announce(&self, m: &Inbound<'_>, now: u64) {
        let (msg, seq, mentions_me) = (m.msg, m.seq, m.mentions_me);
        let first_time = {
            let mut seen = lock(&self.announced);
            if seen.len() > 100_000 {
                seen.clear();
            }
            seen.insert((msg.sender_member().0, msg.id()))
        };
        if first_time {
            self.emit(Event::Message(Box::new(InboxMessage {
                local_id: 0,
                id: msg.id().to_hex(),
                from: msg.sender_member().to_hex(),
                from_name: None,
                from_session: msg.sender_session().to_hex(),
                target: msg.target().to_string(),
                body: String::from_utf8_lossy(msg.body()).into_owned(),
                priority: msg.priority().as_str().to_owned(),
                reply_to: msg.reply_to().map(|r| r.to_hex()),
                sent_at: msg.sent_at(),
                received_at: Some(now),
                seq,
                read: Some(false),
                mentions_me,
                you: None,
                deadline_ms: m.deadline_ms,
                expired: false,
            })));
        }
    }
}

/// Whether a refusal might go away once this device has the newest log.
fn may_be_stale(e: &EnvelopeError) -> bool {
    matches!(
        e,
        EnvelopeError::SenderNotMember(_) | EnvelopeError::NoKey { .. }
    )
}

//! The receipts this session signs and sends its senders (issue 15,
//! `docs/security.md` §8.1), with its session key:
//! - `delivered`: a direct message, per message, as soon as it is stored
//!   (the receipt is the broker's ack); a fan-out target (`#topic`,
//!   `@group`, `*`), as a watermark over the broker's numbers for the
//!   target's messages (`tseq`): up to the newest stored, every number not
//!   held listed as missing. Coalesced to at most one per target per
//!   [`WATERMARK_EVERY`], and sent again after every hello.
//! - `shown`: a direct message, per message, for inbox rows marked shown
//!   (how, `via`, is kept with the row); a fan-out target, as a watermark
//!   of what was shown, every number not shown listed as missing.
//! - `answered`: per message, once the broker accepted this device's reply.
//!
//! A watermark claims only what this device holds (its own posts count:
//! they are never delivered back to it), so it under-reports and never
//! over-reports. What is owed lives in the inbox
//! ([`crate::local::LocalStore`]), so a receipt not sent (no connection, a
//! crash) is sent after the next hello. Only a message to another session
//! of this device is left for that session to sign: its sender checks the
//! signer is the session it wrote to.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use claudemesh_crypto::cert::SessionCert;
use claudemesh_crypto::envelope::{MessageId, Target, VerifiedMessage};
use claudemesh_crypto::receipt::{
    MAX_WATERMARK_MISSING, Receipt, ReceiptFacts, ReceiptState, Via, Watermark, WatermarkFacts,
};
use claudemesh_crypto::{MemberKey, PublicKey};
use claudemesh_proto::ClientFrame;
use claudemesh_proto::clock::now_ms;
use claudemesh_proto::frames::{ReceiptFrame, SeqReceipt, WatermarkFrame};
use claudemesh_proto::limits::MAX_RECEIPTS_PER_FRAME;

use super::core::{Session, lock};
use crate::error::ClientError;
use crate::local::InboxMessage;

/// A fan-out target's delivered watermark is sent at most this often.
///
/// A second: a thousand subscribers of a busy topic then send a thousand
/// small frames a second, and the evidence is a second or two behind.
pub(super) const WATERMARK_EVERY: Duration = Duration::from_secs(1);

/// Watermarks per `watermark` frame: one listing the most gaps is about
/// 2 KiB, so a frame of them stays far below the frame limit (at most
/// [`MAX_RECEIPTS_PER_FRAME`] either way).
const MARKS_PER_FRAME: usize = if MAX_RECEIPTS_PER_FRAME < 16 {
    MAX_RECEIPTS_PER_FRAME
} else {
    16
};

/// Most batches of owed receipts one flush sends (each up to 256).
const MAX_FLUSH_ROUNDS: usize = 64;

/// What one watermark covers: the numbers in `(from, upto]` of its target,
/// except `missing` (ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Span {
    from: u64,
    upto: u64,
    missing: Vec<u64>,
}

impl Span {
    /// Whether it says more than `old`: it reaches further, or as far with
    /// fewer gaps.
    fn improves_on(&self, old: &Span) -> bool {
        self.upto > old.upto || (self.upto == old.upto && self.missing.len() < old.missing.len())
    }
}

/// The widest watermark a fan-out target's held numbers allow (`held`
/// newest first, distinct): up to the newest, listing each number below it
/// that is not held as missing, as far back as [`MAX_WATERMARK_MISSING`]
/// gaps allow, and never below the oldest held. It claims only what is
/// held: a gap is listed, never covered.
pub(super) fn span_of(held: &[u64]) -> Option<Span> {
    let (&upto, _) = held.split_first()?;
    let mut missing = Vec::new();
    let mut from = upto.saturating_sub(1);
    for pair in held.windows(2) {
        let (above, below) = (pair[0], pair[1]);
        for gap in (below.saturating_add(1)..above).rev() {
            if missing.len() == MAX_WATERMARK_MISSING {
                missing.reverse();
                return Some(Span {
                    from: gap,
                    upto,
                    missing,
                });
            }
            missing.push(gap);
        }
        from = below.saturating_sub(1);
    }
    missing.reverse();
    (from < upto).then_some(Span {
        from,
        upto,
        missing,
    })
}

/// A session's fan-out watermarks: the targets whose delivered watermark
/// may have moved since it was last sent, and what was sent per (target,
/// state) on the current connection.
#[derive(Debug, Default)]
pub(super) struct Marks {
    dirty: BTreeSet<Target>,
    sent: HashMap<(Target, ReceiptState), Span>,
}

impl Marks {
    /// Whether `span` for (target, state) is news to the broker.
    fn advances(&self, target: &Target, state: ReceiptState, span: &Span) -> bool {
        self.sent
            .get(&(target.clone(), state))
            .is_none_or(|sent| span.improves_on(sent))
    }

    fn sent(&mut self, target: Target, state: ReceiptState, span: Span) {
        match self.sent.get(&(target.clone(), state)) {
            Some(old) if !span.improves_on(old) => {}
            _ => {
                self.sent.insert((target, state), span);
            }
        }
    }
}

/// A receipt's time: `at_ms`, moved inside the signing certificate's
/// lifetime (a message shown before the certificate was renewed is attested
/// at the renewal: a receipt must verify under the certificate it carries).
fn within_cert(cert: &SessionCert, at_ms: u64) -> u64 {
    let lo = cert.issued_at.saturating_mul(1000);
    let hi = cert.expires_at.saturating_mul(1000).saturating_sub(1);
    at_ms.clamp(lo, hi.max(lo))
}

/// Not connected: what is owed stays owed, and goes after the next hello.
fn offline_is_fine(r: Result<(), ClientError>) -> Result<(), ClientError> {
    match r {
        Err(ClientError::Disconnected) => Ok(()),
        other => other,
    }
}

/// What a stored row names: its sender, id and target.
fn row_facts(sender: &str, msg_id: &str, target: &str) -> Option<(MemberKey, MessageId, Target)> {
    let sender = PublicKey::from_hex(sender).ok()?;
    let id = MessageId::from_hex(msg_id).ok()?;
    let target = target.parse().ok()?;
    Some((MemberKey(sender), id, target))
}

/// The watermark coalescer: each time `wanted` wakes it, it waits a random
/// part of half of [`WATERMARK_EVERY`], sends the delivered watermarks that
/// advanced, then waits [`WATERMARK_EVERY`] before it may send again (a
/// wake meanwhile is kept for then). The random wait keeps the thousand
/// subscribers of a topic, woken by the same message, from answering the
/// broker all in the same millisecond. Holds the session only while it
/// works; ends when it is gone or stopping.
pub(super) async fn marks_loop(inner: std::sync::Weak<Session>, wanted: Arc<tokio::sync::Notify>) {
    loop {
        wanted.notified().await;
        tokio::time::sleep(jitter(WATERMARK_EVERY / 2)).await;
        let Some(s) = inner.upgrade() else {
            return;
        };
        if s.stopping.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = offline_is_fine(s.flush_delivered_marks().await) {
            tracing::debug!(error = %e, "could not send the delivered watermarks");
        }
        drop(s);
        tokio::time::sleep(WATERMARK_EVERY).await;
    }
}

/// A random duration below `most` (from the OS generator: no state to keep).
fn jitter(most: Duration) -> Duration {
    let r = u64::from(u32::from_le_bytes(
        claudemesh_crypto::keys::random_bytes::<4>(),
    ));
    let most_us = u64::try_from(most.as_micros()).unwrap_or(u64::MAX).max(1);
    Duration::from_micros(r % most_us)
}

impl Session {
    /// Signs a receipt as this session (its time kept inside the
    /// certificate). `None` (logged) if the facts cannot be signed.
    fn sign_receipt(&self, facts: ReceiptFacts) -> Option<Receipt> {
        self.read_state(|s| {
            let me = s.session();
            let at_ms = within_cert(&me.cert, facts.at_ms);
            Receipt::sign(me, ReceiptFacts { at_ms, ..facts })
        })
        .map_err(|e| tracing::warn!(error = %e, "could not sign a receipt"))
        .ok()
    }

    /// Signs a fan-out watermark as this session, dated now.
    fn sign_mark(
        &self,
        state: ReceiptState,
        target: Target,
        span: &Span,
        via: Via,
    ) -> Option<Watermark> {
        self.read_state(|s| {
            let me = s.session();
            Watermark::sign(
                me,
                WatermarkFacts {
                    state,
                    target,
                    from: span.from,
                    upto: span.upto,
                    missing: span.missing.clone(),
                    at_ms: within_cert(&me.cert, now_ms()),
                    via,
                },
            )
        })
        .map_err(|e| tracing::warn!(error = %e, "could not sign a watermark"))
        .ok()
    }

    /// `session:<hex>` of this session: the direct target only it signs for.
    fn my_session_target(&self) -> String {
        self.read_state(|s| Target::Session(s.session().public()).to_string())
    }

    /// Sends receipts, [`MAX_RECEIPTS_PER_FRAME`] to a frame.
    pub(super) async fn send_receipts(&self, receipts: &[SeqReceipt]) -> Result<(), ClientError> {
        for chunk in receipts.chunks(MAX_RECEIPTS_PER_FRAME) {
            self.send_raw(&ClientFrame::Receipt(ReceiptFrame {
                receipts: chunk.to_vec(),
            }))
            .await?;
        }
        Ok(())
    }

    /// Sends watermarks, [`MARKS_PER_FRAME`] to a frame.
    async fn send_marks(&self, marks: &[Watermark]) -> Result<(), ClientError> {
        for chunk in marks.chunks(MARKS_PER_FRAME) {
            self.send_raw(&ClientFrame::Watermark(WatermarkFrame {
                marks: chunk.to_vec(),
            }))
            .await?;
        }
        Ok(())
    }

    /// The signed `delivered` receipt of a direct message just stored.
    pub(super) fn delivered_receipt(
        &self,
        msg: &VerifiedMessage,
        seq: u64,
        now: u64,
    ) -> Option<SeqReceipt> {
        let receipt = self.sign_receipt(ReceiptFacts {
            state: ReceiptState::Delivered,
            sender: msg.sender_member(),
            id: msg.id(),
            target: msg.target().clone(),
            at_ms: now,
            via: Via::Store,
            reply: None,
        })?;
        Some(SeqReceipt { seq, receipt })
    }

    /// Records fan-out messages just stored: wakes the coalescer for
    /// their targets' delivered watermarks.
    pub(super) fn fanout_stored(&self, targets: &[&Target]) {
        if targets.is_empty() {
            return;
        }
        {
            let mut marks = lock(&self.marks);
            for t in targets {
                if !marks.dirty.contains(*t) {
                    marks.dirty.insert((*t).clone());
                }
            }
        }
        self.marks_wanted.notify_one();
    }

    /// Sends the delivered watermark of each fan-out target that stored
    /// something since, when it says more than the last one sent.
    pub(crate) async fn flush_delivered_marks(&self) -> Result<(), ClientError> {
        let dirty: Vec<Target> = std::mem::take(&mut lock(&self.marks).dirty)
            .into_iter()
            .collect();
        let r = self.send_marks_of(ReceiptState::Delivered, &dirty).await;
        if r.is_err() {
            // Tried again at the next wake, or sent after the next hello.
            lock(&self.marks).dirty.extend(dirty);
        }
        r
    }

    /// Works out, signs and sends the `state` watermark of each of
    /// `targets` that says more than the last one sent.
    async fn send_marks_of(
        &self,
        state: ReceiptState,
        targets: &[Target],
    ) -> Result<(), ClientError> {
        let shown = state == ReceiptState::Shown;
        let mut due = Vec::new();
        for target in targets {
            let key = target.to_string();
            let held = self.local.fanout_held(&self.mesh.id, &key, shown).await?;
            let Some(span) = span_of(&held) else {
                continue;
            };
            if !lock(&self.marks).advances(target, state, &span) {
                continue;
            }
            let via = if shown {
                self.local.fanout_last_via(&self.mesh.id, &key).await?
            } else {
                Via::Store
            };
            if let Some(mark) = self.sign_mark(state, target.clone(), &span, via) {
                due.push((target.clone(), span, mark));
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        let signed: Vec<Watermark> = due.iter().map(|(_, _, m)| m.clone()).collect();
        self.send_marks(&signed).await?;
        let mut marks = lock(&self.marks);
        for (target, span, _) in due {
            marks.sent(target, state, span);
        }
        Ok(())
    }

    /// After a hello: every watermark is news to this connection (a flush
    /// lost with the last one is repaired; the broker keeps the newest), so
    /// each fan-out target's delivered watermark is sent again, then every
    /// receipt still owed and every shown watermark.
    pub(super) async fn resend_receipts(&self) -> Result<(), ClientError> {
        let targets: Vec<Target> = self
            .local
            .fanout_targets_held(&self.mesh.id)
            .await?
            .iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        {
            let mut marks = lock(&self.marks);
            marks.sent.clear();
            marks.dirty.extend(targets);
        }
        self.flush_delivered_marks().await?;
        self.flush_receipts(None).await
    }

    /// Sends what this session owes: the `shown` receipts of direct
    /// messages, the `answered` receipts, and the shown watermarks of the
    /// fan-out `targets` (all with `None`) that advanced. Without a
    /// connection it returns at once: all of it goes after the next hello.
    pub(crate) async fn flush_receipts(
        &self,
        targets: Option<&[String]>,
    ) -> Result<(), ClientError> {
        offline_is_fine(self.flush_receipts_inner(targets).await)
    }

    async fn flush_receipts_inner(&self, targets: Option<&[String]>) -> Result<(), ClientError> {
        let mine = self.my_session_target();
        self.flush_shown(&mine).await?;
        self.flush_answered(&mine).await?;
        self.flush_shown_marks(targets).await
    }

    async fn flush_shown(&self, mine: &str) -> Result<(), ClientError> {
        for _ in 0..MAX_FLUSH_ROUNDS {
            let due = self.local.shown_receipts_due(&self.mesh.id, mine).await?;
            if due.is_empty() {
                break;
            }
            let mut receipts = Vec::with_capacity(due.len());
            for d in &due {
                // A row that cannot be signed never will be: it is not
                // retried (nor does it hold up the others).
                let Some((sender, id, target)) = row_facts(&d.sender, &d.msg_id, &d.target) else {
                    tracing::warn!(row = d.local_id, "an inbox row does not parse; no receipt");
                    continue;
                };
                if let Some(receipt) = self.sign_receipt(ReceiptFacts {
                    state: ReceiptState::Shown,
                    sender,
                    id,
                    target,
                    at_ms: d.shown_at,
                    via: d.via,
                    reply: None,
                }) {
                    receipts.push(SeqReceipt {
                        seq: d.seq,
                        receipt,
                    });
                }
            }
            self.send_receipts(&receipts).await?;
            let ids: Vec<i64> = due.iter().map(|d| d.local_id).collect();
            self.local.shown_receipts_sent(&self.mesh.id, &ids).await?;
        }
        Ok(())
    }

    pub(super) async fn flush_answered(&self, mine: &str) -> Result<(), ClientError> {
        for _ in 0..MAX_FLUSH_ROUNDS {
            let due = self
                .local
                .answered_receipts_due(&self.mesh.id, mine)
                .await?;
            if due.is_empty() {
                break;
            }
            let mut receipts = Vec::with_capacity(due.len());
            for d in &due {
                let facts = row_facts(&d.sender, &d.msg_id, &d.target)
                    .zip(MessageId::from_hex(&d.reply).ok());
                let Some(((sender, id, target), reply)) = facts else {
                    tracing::warn!(row = d.local_id, "an inbox row does not parse; no receipt");
                    continue;
                };
                if let Some(receipt) = self.sign_receipt(ReceiptFacts {
                    state: ReceiptState::Answered,
                    sender,
                    id,
                    target,
                    at_ms: now_ms(),
                    via: Via::Reply,
                    reply: Some(reply),
                }) {
                    receipts.push(SeqReceipt {
                        seq: d.seq,
                        receipt,
                    });
                }
            }
            self.send_receipts(&receipts).await?;
            let ids: Vec<i64> = due.iter().map(|d| d.local_id).collect();
            self.local
                .answered_receipts_sent(&self.mesh.id, &ids)
                .await?;
        }
        Ok(())
    }

    async fn flush_shown_marks(&self, targets: Option<&[String]>) -> Result<(), ClientError> {
        let targets: Vec<Target> = match targets {
            Some(t) => t.iter().filter_map(|t| t.parse().ok()).collect(),
            None => self
                .local
                .fanout_targets_held(&self.mesh.id)
                .await?
                .iter()
                .filter_map(|t| t.parse().ok())
                .collect(),
        };
        self.send_marks_of(ReceiptState::Shown, &targets).await
    }

    /// Remembers that the message `id` answers `reply_to` (sent to
    /// `target`), so its acceptance records the answer.
    pub(super) fn note_reply(&self, id: MessageId, reply_to: Option<MessageId>, target: &Target) {
        if let Some(reply_to) = reply_to {
            let mut replies = lock(&self.replies);
            if replies.len() > 100_000 {
                replies.clear();
            }
            replies.insert(id, (reply_to, target.to_string()));
        }
    }

    /// The broker accepted these messages: those that answer a message in
    /// this inbox get its `answered` receipt (once per message).
    pub(super) async fn answers_accepted(&self, ids: &[MessageId]) {
        let answers: Vec<(MessageId, MessageId, String)> = {
            let mut replies = lock(&self.replies);
            ids.iter()
                .filter_map(|id| replies.remove(id).map(|(to, t)| (*id, to, t)))
                .collect()
        };
        let mut any = false;
        for (id, reply_to, target) in answers {
            match self
                .local
                .record_answer(&self.mesh.id, &reply_to.to_hex(), &id.to_hex(), &target)
                .await
            {
                Ok(recorded) => any |= recorded,
                Err(e) => tracing::warn!(error = %e, "could not record an answer"),
            }
        }
        if any {
            let mine = self.my_session_target();
            if let Err(e) = offline_is_fine(self.flush_answered(&mine).await) {
                tracing::warn!(error = %e, "could not send the answered receipts");
            }
        }
    }

    /// Marks inbox messages shown locally (`via` how) and sends what that
    /// owes the senders: a direct message's `shown` receipt, a fan-out
    /// target's shown watermark when it advanced.
    pub(crate) async fn mark_shown(
        &self,
        messages: &[InboxMessage],
        via: Via,
    ) -> Result<(), ClientError> {
        let now = now_ms();
        // Messages from a listing carry their row id; those from an event
        // (`local_id` 0) are found by sender and id.
        let (listed, announced): (Vec<&InboxMessage>, Vec<&InboxMessage>) =
            messages.iter().partition(|m| m.local_id != 0);
        let ids: Vec<i64> = listed.iter().map(|m| m.local_id).collect();
        self.local.mark_shown(&self.mesh.id, &ids, now, via).await?;
        if !announced.is_empty() {
            let keys: Vec<(&str, &str)> = announced
                .iter()
                .map(|m| (m.from.as_str(), m.id.as_str()))
                .collect();
            self.local
                .mark_shown_by_id(&self.mesh.id, &keys, now, via)
                .await?;
        }
        let fanout: BTreeSet<String> = messages
            .iter()
            .filter(|m| !m.target.starts_with("member:") && !m.target.starts_with("session:"))
            .map(|m| m.target.clone())
            .collect();
        let fanout: Vec<String> = fanout.into_iter().collect();
        self.flush_receipts(Some(&fanout)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(from: u64, upto: u64, missing: &[u64]) -> Option<Span> {
        Some(Span {
            from,
            upto,
            missing: missing.to_vec(),
        })
    }

    #[test]
    fn a_span_covers_what_is_held_and_lists_the_gaps() {
        assert_eq!(span_of(&[]), None);
        assert_eq!(span_of(&[7]), span(6, 7, &[]));
        assert_eq!(span_of(&[5, 4, 3, 2, 1]), span(0, 5, &[]));
        // Joined late: nothing claimed below the oldest held.
        assert_eq!(span_of(&[12, 11, 10]), span(9, 12, &[]));
        assert_eq!(span_of(&[9, 7, 4]), span(3, 9, &[5, 6, 8]));
    }

    #[test]
    fn a_span_lists_at_most_the_allowed_gaps_and_stops_below_them() {
        // 100 held, then 100 missing, then 1: the newest gaps are listed,
        // and nothing below the last one listed is claimed.
        let mut held: Vec<u64> = (101..=200).rev().collect();
        held.push(1);
        let s = span_of(&held).expect("span");
        assert_eq!(s.upto, 200);
        assert_eq!(s.missing.len(), MAX_WATERMARK_MISSING);
        assert_eq!(s.missing.last(), Some(&100));
        assert_eq!(s.from, 100 - MAX_WATERMARK_MISSING as u64);
        assert!(s.missing.windows(2).all(|w| w[0] < w[1]));
        assert!(s.missing.iter().all(|m| s.from < *m && *m <= s.upto));
    }

    #[test]
    fn marks_are_news_until_sent_and_only_when_they_say_more() {
        let t = Target::Topic("deploys".into());
        let mut m = Marks::default();
        let a = Span {
            from: 0,
            upto: 5,
            missing: vec![3],
        };
        assert!(m.advances(&t, ReceiptState::Delivered, &a));
        m.sent(t.clone(), ReceiptState::Delivered, a.clone());
        assert!(!m.advances(&t, ReceiptState::Delivered, &a));
        assert!(m.advances(&t, ReceiptState::Shown, &a));
        let filled = Span {
            missing: vec![],
            ..a.clone()
        };
        assert!(m.advances(&t, ReceiptState::Delivered, &filled));
        let lower = Span {
            from: 0,
            upto: 4,
            missing: vec![],
        };
        assert!(!m.advances(&t, ReceiptState::Delivered, &lower));
        m.sent(t.clone(), ReceiptState::Delivered, lower);
        assert!(!m.advances(&t, ReceiptState::Delivered, &a));
    }

    #[test]
    fn a_frame_of_the_largest_watermarks_fits() {
        use claudemesh_crypto::cert::SessionIdentity;
        use claudemesh_crypto::{Hash32, MeshId, SigningKey};
        let now = now_ms() / 1000;
        let me = SessionIdentity::new(&SigningKey::generate(), MeshId(Hash32([1; 32])), now, 3600)
            .unwrap();
        let upto = u64::MAX / 2;
        let mark = Watermark::sign(
            &me,
            WatermarkFacts {
                state: ReceiptState::Delivered,
                target: Target::Topic("a".repeat(64)),
                from: upto - 1000,
                upto,
                missing: (0..MAX_WATERMARK_MISSING as u64)
                    .map(|i| upto - 900 + i)
                    .collect(),
                at_ms: now * 1000,
                via: Via::McpTool,
            },
        )
        .unwrap();
        let frame = ClientFrame::Watermark(WatermarkFrame {
            marks: vec![mark; MARKS_PER_FRAME],
        });
        let len = claudemesh_proto::encode_client_frame(&frame).len();
        assert!(len < claudemesh_proto::limits::MAX_FRAME_BYTES, "{len}");
    }
}

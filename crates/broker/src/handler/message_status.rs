//! `message_status`: per-recipient state of a message the caller's member
//! sent, in pages by recipient key (a broadcast's status lists every member
//! it was for, as of send time), with the signed evidence the broker holds
//! for each: the recipient's receipts for it and, for a fan-out message,
//! its watermarks that cover it (`docs/security.md` §8.1). `state` stays
//! what the broker observed; the sender verifies the evidence itself.

use std::collections::HashMap;

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::receipt::{Receipt, ReceiptState, Watermark};
use claudemesh_proto::frames::{
    DeliveryState, MessageStatusQuery, MessageStatusResult, RecipientStatus,
};
use claudemesh_proto::limits::{MAX_HELD_PER_MEMBER, MAX_STATUS_RECIPIENTS_PER_PAGE};
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::watermarks::supersedes;

impl Handle for MessageStatusQuery {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        handle(caller, self).await
    }
}

/// How far a state goes, for "the best the broker saw".
fn rank(s: DeliveryState) -> u8 {
    match s {
        DeliveryState::Expired => 0,
        DeliveryState::Queued => 1,
        DeliveryState::Delivered => 2,
        DeliveryState::Read => 3,
        DeliveryState::Answered => 4,
    }
}

fn observed_of(state: ReceiptState) -> DeliveryState {
    match state {
        ReceiptState::Delivered => DeliveryState::Delivered,
        ReceiptState::Shown => DeliveryState::Read,
        ReceiptState::Answered => DeliveryState::Answered,
    }
}

/// Answers one page of a message's status.
async fn handle(caller: Caller<'_>, q: MessageStatusQuery) -> Result<Reply, Refusal> {
    let Caller {
        broker,
        session,
        mesh,
    } = caller;
    let failed = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "message status failed");
        Refusal::internal("the broker could not look it up")
    };
    let Some(st) = broker
        .store
        .message_status(&mesh.id, &session.member, &q.id)
        .await
        .map_err(failed)?
    else {
        // Not stored: held for later, perhaps.
        let held = broker
            .store
            .held_of(&mesh.id, &session.member, MAX_HELD_PER_MEMBER as u32)
            .await
            .map_err(failed)?;
        let message = match held.iter().find(|h| h.id == q.id) {
            Some(h) => match &h.error {
                None => format!(
                    "message {} is scheduled, not sent yet: it goes at {} (unix ms)",
                    q.id, h.deliver_at_ms
                ),
                Some(why) => format!(
                    "message {} was scheduled and could not be sent: {why}",
                    q.id
                ),
            },
            None => format!("no message {} sent by this member", q.id),
        };
        return Err(Refusal::new(ErrorCode::NotFound, message));
    };
    let recipients = match &st.fanout {
        Some(f) => match f.target.parse::<Target>() {
            Ok(target) => mesh.read_log(|l| {
                crate::fanout::fanout_status(
                    &l.roster,
                    &session.member,
                    &target,
                    f.at_len,
                    f.expired,
                    &st,
                )
            }),
            Err(_) => Vec::new(),
        },
        None => st.recipients.clone(),
    };
    // The recipients' receipts for this message, as they signed them, with
    // the member each was stored for (whose connection sent it).
    let receipts: Vec<(PublicKey, Receipt)> = st
        .receipts
        .iter()
        .filter_map(|(member, doc)| Some((*member, serde_json::from_str(doc).ok()?)))
        .collect();
    // A fan-out message: each member's newest watermarks that cover it,
    // stored or held here (not yet flushed).
    let mut marks: HashMap<(PublicKey, ReceiptState), Watermark> = HashMap::new();
    if let Some((f, tseq)) = st.fanout.as_ref().and_then(|f| f.tseq.map(|t| (f, t))) {
        let stored = broker
            .store
            .target_watermarks(&mesh.id, &f.target, tseq)
            .await
            .map_err(failed)?;
        let held = broker.watermarks.covering(&mesh.id, &f.target, tseq);
        let all = stored
            .into_iter()
            .filter_map(|row| {
                let mark: Watermark = serde_json::from_str(&row.doc).ok()?;
                Some((row.member, mark))
            })
            .chain(held.into_iter().map(|(member, mark, _)| (member, mark)));
        for (member, mark) in all {
            if !mark.covers(tseq) {
                continue;
            }
            let slot = marks.entry((member, mark.state));
            match slot {
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    if supersedes(&mark, o.get()) {
                        o.insert(mark);
                    }
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(mark);
                }
            }
        }
    }
    let mut recipients: Vec<RecipientStatus> = recipients
        .into_iter()
        .filter(|(k, _)| q.after.is_none_or(|a| *k > a))
        .map(|(recipient, mut state)| {
            let mine: Vec<Receipt> = receipts
                .iter()
                .filter(|(member, r)| *member == recipient || r.signer.session.0 == recipient)
                .map(|(_, r)| r.clone())
                .collect();
            let covering: Vec<Watermark> = [ReceiptState::Delivered, ReceiptState::Shown]
                .iter()
                .filter_map(|s| marks.get(&(recipient, *s)).cloned())
                .collect();
            // What the broker saw, unsigned: the best of its delivery row
            // or ack and what the evidence claims.
            for claimed in mine
                .iter()
                .map(|r| r.state)
                .chain(covering.iter().map(|m| m.state))
            {
                let seen = observed_of(claimed);
                // Expired means "not shown by its deadline": only being
                // shown or answered says otherwise.
                let beats_expiry = matches!(seen, DeliveryState::Read | DeliveryState::Answered);
                if rank(seen) > rank(state) && (state != DeliveryState::Expired || beats_expiry) {
                    state = seen;
                }
            }
            RecipientStatus {
                recipient,
                state,
                receipts: mine,
                marks: covering,
            }
        })
        .collect();
    recipients.sort_by_key(|r| r.recipient);
    let page = MAX_STATUS_RECIPIENTS_PER_PAGE;
    let next = (recipients.len() > page).then(|| recipients[page - 1].recipient);
    recipients.truncate(page);
    Ok(Reply::Frame(BrokerFrame::MessageStatusResult(
        MessageStatusResult {
            req: q.req,
            id: q.id,
            seq: st.seq,
            deadline_ms: st.deadline_ms,
            tseq: st.fanout.as_ref().and_then(|f| f.tseq),
            recipients,
            next,
        },
    )))
}

//! `message_status`: per-recipient receipts of a message the caller's
//! member sent, in pages by recipient key (a broadcast's status lists every
//! member it was for, as of send time).

use claudemesh_crypto::envelope::Target;
use claudemesh_proto::frames::{MessageStatusQuery, MessageStatusResult, RecipientStatus};
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::{Caller, Context, Handle, Refusal, Reply};

/// Recipients per `message_status_result` page (~100 bytes of JSON each).
const STATUS_PAGE: usize = 512;

impl Handle for MessageStatusQuery {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        handle(caller, self).await
    }
}

/// Answers one page of a message's status.
async fn handle(caller: Caller<'_>, q: MessageStatusQuery) -> Result<Reply, Refusal> {
    let Caller {
        broker,
        session,
        mesh,
    } = caller;
    let st = broker
        .store
        .message_status(&mesh.id, &session.member, &q.id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "message status failed");
            Refusal::internal("the broker could not look it up")
        })?
        .ok_or_else(|| {
            Refusal::new(
                ErrorCode::NotFound,
                format!("no message {} sent by this member", q.id),
            )
        })?;
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
    // In pages by recipient key: a broadcast's status lists every member it
    // was for.
    let mut recipients: Vec<RecipientStatus> = recipients
        .into_iter()
        .filter(|(k, _)| q.after.is_none_or(|a| *k > a))
        .map(|(recipient, state)| RecipientStatus { recipient, state })
        .collect();
    recipients.sort_by_key(|r| r.recipient);
    let next = (recipients.len() > STATUS_PAGE).then(|| recipients[STATUS_PAGE - 1].recipient);
    recipients.truncate(STATUS_PAGE);
    Ok(Reply::Frame(BrokerFrame::MessageStatusResult(
        MessageStatusResult {
            req: q.req,
            id: q.id,
            seq: st.seq,
            recipients,
            next,
        },
    )))
}

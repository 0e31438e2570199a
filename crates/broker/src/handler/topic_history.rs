//! `topic_history`: a page of a topic's stored messages, newest first
//! below a seq, for members allowed to read the topic; bounded by count and
//! by a frame's worth of bytes.

use claudemesh_proto::frames::{Deliver, TopicHistoryQuery, TopicHistoryResult};
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::store::PageLimit;

/// Topic history page when the client does not say.
const DEFAULT_HISTORY_PAGE: u32 = 50;
/// Largest topic history page.
const MAX_HISTORY_PAGE: u32 = 200;
/// Bytes of stored envelopes one `topic_history_result` carries at most:
/// the frame limit less room for the frame around them.
const HISTORY_BYTES_PER_FRAME: usize = claudemesh_proto::limits::MAX_FRAME_BYTES - 4096;
/// JSON around one envelope in a history answer (`seq`, `queued_at_ms`,
/// punctuation), counted generously.
const DELIVER_OVERHEAD_BYTES: usize = 64;

impl Handle for TopicHistoryQuery {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        handle(caller, self).await
    }
}

/// Answers one page of a topic's history.
async fn handle(caller: Caller<'_>, q: TopicHistoryQuery) -> Result<Reply, Refusal> {
    let Caller {
        broker,
        session,
        mesh,
    } = caller;
    if claudemesh_crypto::envelope::validate_target_name(&q.topic).is_err() {
        return Err(Refusal::new(
            ErrorCode::Malformed,
            "a topic name is 1-64 of A-Z a-z 0-9 . _ - / (without #)",
        ));
    }
    mesh.read_log(|l| match l.roster.topic(&q.topic) {
        None => Err(Refusal::new(
            ErrorCode::UnknownRecipient,
            format!("there is no topic #{} in this mesh", q.topic),
        )),
        Some(t) if t.private && !t.members.contains_key(&session.member) => Err(Refusal::new(
            ErrorCode::Forbidden,
            format!("#{} is private and you are not a member of it", q.topic),
        )),
        Some(_) => Ok(()),
    })?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_HISTORY_PAGE)
        .clamp(1, MAX_HISTORY_PAGE);
    let target = format!("#{}", q.topic);
    let rows = broker
        .store
        .fanout_history(
            &mesh.id,
            &target,
            q.before_seq.unwrap_or(u64::MAX),
            PageLimit {
                rows: limit + 1,
                bytes: HISTORY_BYTES_PER_FRAME as u64,
            },
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading topic history failed");
            Refusal::internal("the broker could not read the history")
        })?;
    // At most `limit` messages and at most a frame's worth of bytes (always
    // at least one): 200 stored envelopes of 64 KiB would otherwise be a
    // 17 MB answer. `more` says the client asks again.
    let weighed: u64 = rows.iter().map(|p| p.envelope_json.len() as u64).sum();
    let mut more = rows.len() > limit as usize || weighed >= HISTORY_BYTES_PER_FRAME as u64;
    let mut bytes = 0;
    let mut messages = Vec::new();
    for p in rows.into_iter().take(limit as usize) {
        let size = p.envelope_json.len() + DELIVER_OVERHEAD_BYTES;
        if !messages.is_empty() && bytes + size > HISTORY_BYTES_PER_FRAME {
            more = true;
            break;
        }
        match serde_json::from_str(&p.envelope_json) {
            Ok(envelope) => {
                bytes += size;
                messages.push(Deliver {
                    seq: p.seq,
                    envelope: Box::new(envelope),
                    queued_at_ms: p.queued_at_ms,
                    deadline_ms: p.deadline_ms,
                    tseq: p.tseq,
                });
            }
            Err(e) => {
                tracing::error!(seq = p.seq, error = %e, "a stored envelope does not parse");
            }
        }
    }
    Ok(Reply::Frame(BrokerFrame::TopicHistoryResult(
        TopicHistoryResult {
            req: q.req,
            topic: q.topic,
            messages,
            more,
        },
    )))
}

//! `ack`: receipts (delivered or read) for messages the caller's session
//! received, handed to the group-commit writer. Owed no answer.

use claudemesh_proto::ErrorCode;
use claudemesh_proto::frames::{Ack, DeliveryState};
use claudemesh_proto::limits::MAX_IDS_PER_ACK;

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::store::AckOp;
use crate::writer::WriteJob;

impl Handle for Ack {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        handle(caller, self).await
    }
}

/// Queues the receipts for the writer.
async fn handle(caller: Caller<'_>, a: Ack) -> Result<Reply, Refusal> {
    let Caller {
        broker,
        session,
        mesh,
    } = caller;
    if a.seqs.len() > MAX_IDS_PER_ACK {
        return Err(Refusal::new(
            ErrorCode::Malformed,
            format!("at most {MAX_IDS_PER_ACK} seqs per ack"),
        ));
    }
    if a.seqs.is_empty() {
        return Ok(Reply::Nothing);
    }
    let op = AckOp {
        mesh: mesh.id,
        member: session.member,
        session: session.session,
        seqs: a.seqs,
        state: if a.read {
            DeliveryState::Read
        } else {
            DeliveryState::Delivered
        },
        at_ms: crate::now_ms(),
        fanout_targets: mesh
            .read_log(|l| crate::fanout::member_targets(&l.roster, &session.member)),
    };
    broker.writer.submit(WriteJob::Ack(Box::new(op))).await;
    Ok(Reply::Nothing)
}

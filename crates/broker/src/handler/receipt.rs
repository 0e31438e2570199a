//! `receipt`: signed receipts a recipient's session sends for messages it
//! received (`docs/security.md` §8.1), handed to the writer. A direct
//! message's `delivered` / `shown` receipt acknowledges it as an `ack`
//! would. Owed no answer.
//!
//! The broker checks what binds a receipt to this connection (its signer
//! is this very session and certificate) and that the member may have got
//! the message (the store checks the rest: the seq names that message, and
//! a direct message's recipient is the signer). It does not verify the
//! signature: the sender does, and a bad one only ever misstates the
//! signer's own state.

use claudemesh_crypto::receipt::ReceiptState;
use claudemesh_proto::ErrorCode;
use claudemesh_proto::frames::ReceiptFrame;
use claudemesh_proto::limits::MAX_RECEIPTS_PER_FRAME;

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::store::ReceiptRow;
use crate::writer::WriteJob;

impl Handle for ReceiptFrame {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        handle(caller, self).await
    }
}

/// Checks each receipt's binding to the connection and queues the lot.
async fn handle(caller: Caller<'_>, f: ReceiptFrame) -> Result<Reply, Refusal> {
    let Caller {
        broker,
        session,
        mesh,
    } = caller;
    if f.receipts.len() > MAX_RECEIPTS_PER_FRAME {
        return Err(Refusal::new(
            ErrorCode::Malformed,
            format!("at most {MAX_RECEIPTS_PER_FRAME} receipts per frame"),
        ));
    }
    let targets = mesh.read_log(|l| crate::fanout::member_targets(&l.roster, &session.member));
    let mut rows = Vec::with_capacity(f.receipts.len());
    for item in f.receipts {
        let r = item.receipt;
        if r.signer != session.cert || r.mesh != mesh.id {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "a receipt must be signed by this connection's session and certificate",
            ));
        }
        r.check_shape()
            .map_err(|e| Refusal::new(ErrorCode::Malformed, e.to_string()))?;
        let direct = r.target.is_direct();
        let target = r.target.to_string();
        // Fan-out messages are covered by watermarks; only `answered` is
        // per message, and only for a target the member receives.
        if !direct
            && (r.state != ReceiptState::Answered || !targets.iter().any(|(t, _)| *t == target))
        {
            continue;
        }
        rows.push(ReceiptRow {
            mesh: mesh.id,
            member: session.member,
            session: session.session,
            seq: item.seq,
            sender: r.sender.0,
            id: r.id,
            target,
            direct,
            state: r.state,
            at_ms: crate::now_ms(),
            doc: serde_json::to_string(&r).unwrap_or_default(),
        });
    }
    if !rows.is_empty() {
        broker.writer.submit(WriteJob::Receipts(rows)).await;
    }
    Ok(Reply::Nothing)
}

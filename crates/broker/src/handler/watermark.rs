//! `watermark`: a recipient's signed "every message of this fan-out
//! target numbered up to N, except these, was delivered / shown to me"
//! (`docs/security.md` §8.1). Kept in memory ([`crate::watermarks`]) and
//! flushed to the store in batches: no write per message or per recipient.
//! Owed no answer.

use claudemesh_proto::ErrorCode;
use claudemesh_proto::frames::WatermarkFrame;
use claudemesh_proto::limits::MAX_RECEIPTS_PER_FRAME;

use super::{Caller, Context, Handle, Refusal, Reply};

impl Handle for WatermarkFrame {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        handle(caller, self)
    }
}

/// Checks each watermark's binding to the connection and keeps it.
fn handle(caller: Caller<'_>, f: WatermarkFrame) -> Result<Reply, Refusal> {
    let Caller {
        broker,
        session,
        mesh,
    } = caller;
    if f.marks.len() > MAX_RECEIPTS_PER_FRAME {
        return Err(Refusal::new(
            ErrorCode::Malformed,
            format!("at most {MAX_RECEIPTS_PER_FRAME} watermarks per frame"),
        ));
    }
    let targets = mesh.read_log(|l| crate::fanout::member_targets(&l.roster, &session.member));
    for mark in f.marks {
        if mark.signer != session.cert || mark.mesh != mesh.id {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "a watermark must be signed by this connection's session and certificate",
            ));
        }
        mark.check_shape()
            .map_err(|e| Refusal::new(ErrorCode::Malformed, e.to_string()))?;
        let target = mark.target.to_string();
        // A target the member never received (or a direct one): ignored,
        // as an `ack` of a message it never got is.
        if !targets.iter().any(|(t, _)| *t == target) {
            continue;
        }
        let doc = serde_json::to_string(&mark).unwrap_or_default();
        broker
            .watermarks
            .advance(mesh.id, session.member, mark, doc);
    }
    Ok(Reply::Nothing)
}

//! `schedule_cancel`: the caller's member drops a message it holds for
//! later. The cancel and the message's firing delete the same row, each in
//! its own transaction, so exactly one of them wins: a cancel that lost is
//! told the seq the message was stored as.

use claudemesh_proto::frames::{ScheduleCancel, ScheduleCancelled};
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::store::CancelOutcome;

impl Handle for ScheduleCancel {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let Caller {
            broker,
            session,
            mesh,
        } = caller;
        let outcome = broker
            .store
            .cancel_held(&mesh.id, &session.member, &self.id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cancelling a held message failed");
                Refusal::internal("the broker could not cancel it; try again")
            })?;
        match outcome {
            CancelOutcome::Cancelled => Ok(Reply::Frame(BrokerFrame::ScheduleCancelled(
                ScheduleCancelled {
                    req: self.req,
                    id: self.id,
                },
            ))),
            CancelOutcome::AlreadySent { seq } => Err(Refusal::new(
                ErrorCode::NotFound,
                format!("message {} was already sent, as seq {seq}", self.id),
            )),
            CancelOutcome::NotFound => Err(Refusal::new(
                ErrorCode::NotFound,
                format!("no message {} of this member is scheduled", self.id),
            )),
        }
    }
}

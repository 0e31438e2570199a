//! `schedule_list`: the caller's member's messages held for later
//! (`send.deliver_at_ms`), soonest first, with those whose time came and
//! could not be sent; never their contents, which the broker cannot read.

use claudemesh_proto::BrokerFrame;
use claudemesh_proto::frames::{HeldMessage, ScheduleListQuery, SchedulePage};
use claudemesh_proto::limits::MAX_HELD_PER_MEMBER;

use super::{Caller, Context, Handle, Refusal, Reply};

impl Handle for ScheduleListQuery {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let Caller {
            broker,
            session,
            mesh,
        } = caller;
        let held = broker
            .store
            .held_of(
                &mesh.id,
                &session.member,
                u32::try_from(MAX_HELD_PER_MEMBER).unwrap_or(u32::MAX),
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "listing held messages failed");
                Refusal::internal("the broker could not list them")
            })?;
        let messages = held
            .into_iter()
            .map(|h| HeldMessage {
                id: h.id,
                target: h.target,
                deliver_at_ms: h.deliver_at_ms,
                ttl_ms: h.ttl_ms,
                size: h.envelope_json.len() as u64,
                created_at_ms: h.created_at_ms,
                state: if h.error.is_some() { "failed" } else { "held" }.to_owned(),
                error: h.error,
            })
            .collect();
        Ok(Reply::Frame(BrokerFrame::SchedulePage(SchedulePage {
            req: self.req,
            messages,
        })))
    }
}

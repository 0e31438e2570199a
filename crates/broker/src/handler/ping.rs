//! `ping`: answered with `pong` and the broker's clock, before or after the
//! handshake. After the first drain it also marks the end of the backlog.

use claudemesh_proto::BrokerFrame;
use claudemesh_proto::frames::{Pong, Request};

use super::{Caller, Context, Handle, Refusal, Reply};

impl Handle for Request {
    async fn handle(self, _caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        Ok(handle(self))
    }

    async fn before_hello(self, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        Ok(handle(self))
    }
}

/// Answers a `ping`.
fn handle(ping: Request) -> Reply {
    Reply::Frame(BrokerFrame::Pong(Pong {
        req: ping.req,
        time_ms: crate::now_ms(),
    }))
}

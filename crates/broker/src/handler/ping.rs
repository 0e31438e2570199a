//! `ping`: answered with `pong` and the broker's clock, before or after the
//! handshake. After the first drain it also marks the end of the backlog.

use claudemesh_proto::BrokerFrame;
use claudemesh_proto::frames::{Pong, Request};

use super::Reply;

/// Answers a `ping`.
pub fn handle(ping: Request) -> Reply {
    Reply::Frame(BrokerFrame::Pong(Pong {
        req: ping.req,
        time_ms: crate::now_ms(),
    }))
}

//! claudemesh-proto: the wire protocol between peers and the broker, as
//! serde types with no I/O. `docs/protocol.md` is its specification.
//!
//! # Layout
//!
//! - [`frames`]: every frame, client → broker and broker → client.
//! - [`codec`]: decoding with a size limit and typed errors; encoding.
//! - [`errors`]: error codes and websocket close codes.
//! - [`limits`]: every limit, and the `Limits` a broker announces.
//! - [`version`]: versions, negotiation, subprotocol and path.
//! - [`hello`]: the hello and its challenge-bound signature.
//! - [`presence`]: a peer's status and encrypted summary, as hello and
//!   presence frames carry them.
//! - [`clock`], [`sync`], [`ratelimit`]: the time in protocol milliseconds,
//!   the poison-tolerant mutex lock and a token bucket, one helper each for
//!   every crate above.
//! - `roundtrip_tests` (test only): every frame through JSON and back.

pub mod clock;
pub mod codec;
pub mod errors;
pub mod frames;
pub mod hello;
pub mod limits;
pub mod presence;
pub mod ratelimit;
pub mod sync;
pub mod version;

pub use codec::{
    FrameError, decode_broker_frame, decode_client_frame, encode_broker_frame, encode_client_frame,
};
pub use errors::{ErrorCode, close};
pub use frames::{BrokerFrame, ClientFrame};
pub use hello::{Hello, HelloError, HelloPresence};
pub use limits::Limits;
#[cfg(test)]
mod roundtrip_tests;

//! Every frame of the wire protocol, client → broker ([`ClientFrame`]) and
//! broker → client ([`BrokerFrame`]). One JSON object per websocket text
//! frame, discriminated by `"type"` (snake_case). Requests may carry a
//! client-chosen `"req"` string that the answer (or error) echoes.
//!
//! Binary values: keys, hashes, signatures, ids and nonces are lowercase
//! hex; ciphertexts and blobs are standard base64. `docs/protocol.md` lists
//! every field.
//!
//! - `client`: [`ClientFrame`] and one struct per request.
//! - `broker`: [`BrokerFrame`] and one struct per answer or push.
//!
//! [`Status`] and [`EncryptedBlob`] live in [`crate::presence`] and are
//! re-exported here.

mod broker;
mod client;

pub use crate::presence::{EncryptedBlob, Status};
pub use broker::*;
pub use client::*;

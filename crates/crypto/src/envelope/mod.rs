//! Message envelopes: what a sender seals and signs, and what a receiver
//! verifies and opens. A [`VerifiedMessage`] can only be made by verification
//! (TM4): signature by the sender's session key, the session certificate,
//! the sender's membership in the verified roster, then the box. Anything
//! that fails is an [`EnvelopeError`]; no plaintext is ever returned for it.
//!
//! - `header`: [`EnvelopeHeader`], [`MessageId`] and [`Priority`], the
//!   fields a sender chooses.
//! - `sealed`: the [`Envelope`] on the wire, [`Envelope::seal`] and the
//!   signed bytes.
//! - `verified`: [`Envelope::verify_and_open`], [`OpeningKeys`] and
//!   [`VerifiedMessage`].
//! - `error`: [`EnvelopeError`].
//!
//! [`Target`] lives in [`crate::target`] and is re-exported here.

mod error;
mod header;
mod sealed;
#[cfg(test)]
mod tests;
mod verified;

pub use crate::target::{MAX_TARGET_NAME_BYTES, Target, validate_target_name};
pub use error::EnvelopeError;
pub use header::{EnvelopeHeader, MessageId, Priority};
pub use sealed::{ENVELOPE_VERSION, Envelope, MAX_BODY_BYTES, SealingKey};
pub use verified::{OpeningKeys, VerifiedMessage};

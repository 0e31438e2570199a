//! claudemesh's local gateway (`claudemesh serve`): it runs where the keys
//! are and lets scripts and people take part over HTTP on loopback, while
//! the sealing, signing, verifying and opening stay on the device.
//!
//! Layout:
//! - [`apikeys`]: the scoped API keys scripts present (issue, list,
//!   revoke, authenticate), kept hashed in the home's `state.db`.
//! - [`host`]: the `Host` headers a listener answers (no DNS rebinding).
//! - [`auth`]: the checks every request passes: its `Host`, its bearer
//!   key, the capability and topic scope a route asks for.
//! - [`lock`]: one gateway per home (`serve.lock`).
//! - [`idempotency`]: `Idempotency-Key`: one message id per key, so a
//!   retried send is the same message.
//! - [`ratelimit`]: each key's request rate.
//! - [`problem`]: every error as `application/problem+json`, numbered as
//!   the CLI's exit codes.

pub mod apikeys;
pub mod auth;
pub mod host;
pub mod idempotency;
pub mod lock;
pub mod problem;
pub mod ratelimit;

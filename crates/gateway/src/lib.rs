//! claudemesh's local gateway (`claudemesh serve`): it runs where the keys
//! are and lets scripts and people take part over HTTP on loopback, while
//! the sealing, signing, verifying and opening stay on the device.
//!
//! Layout:
//! - [`app`]: the running gateway: configuration, the state requests see,
//!   the checks before every handler (`Host`, key, rate, mesh), the audit
//!   of each key's use, CORS, the stop that drains it.
//! - [`links`]: one session per mesh of the home, kept connected; what it
//!   hears goes to the [`journal`].
//! - [`delivery`]: the messages sent through the gateway, watched until
//!   read (`status` events).
//! - [`journal`]: the numbered event log behind `/api/v1/events`.
//! - [`api`]: the `/api/v1` routes, one module per resource.
//! - [`docs`]: the OpenAPI document and its reference page.
//! - [`apikeys`]: the scoped API keys scripts present (issue, list,
//!   revoke, authenticate), kept hashed in the home's `state.db`.
//! - [`host`]: the `Host` headers a listener answers (no DNS rebinding).
//! - [`auth`]: the checks every request passes: its `Host`, its bearer
//!   key, the capability and topic scope a route asks for.
//! - [`lock`]: one gateway per home (`serve.lock`).
//! - [`idempotency`]: `Idempotency-Key`: one message id per key, so a
//!   retried send is the same message.
//! - [`ratelimit`]: each key's request rate.
//! - [`web`]: the web app at `/` (embedded page and assets), its sign-in
//!   links and cookie sessions, CSRF checks and security headers.
//! - [`conversations`]: the direct messages sent through the gateway,
//!   kept so a conversation with a peer reads both ways.
//! - [`qr`]: QR codes (invites, safety numbers) as SVG data URLs.
//! - [`problem`]: every error as `application/problem+json`, numbered as
//!   the CLI's exit codes.

pub mod api;
pub mod apikeys;
pub mod app;
pub mod auth;
pub mod conversations;
pub mod delivery;
pub mod docs;
pub mod host;
pub mod idempotency;
pub mod journal;
pub mod links;
pub mod lock;
pub mod problem;
pub mod qr;
pub mod ratelimit;
pub mod web;

pub use app::{AuditHook, Gateway, GatewayConfig, KeyUse, StartError};
pub use links::SessionSettings;

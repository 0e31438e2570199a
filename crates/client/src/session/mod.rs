//! A live, authenticated session in one mesh, below the features. It
//! connects (challenge, signed hello, welcome), keeps its verified copy of
//! the membership log in step with the broker's, sends messages that
//! return once the broker has durably accepted them, receives messages
//! (verify, store, then a signed receipt), and reconnects with exponential backoff and
//! jitter, resending from the outbox whatever was not accepted. Every
//! (re)connection first renews the session certificate if it expired or
//! soon will (the broker ends a connection whose certificate expires,
//! `cert_expired`), and a hello refused as expired is retried once with a
//! renewed one.
//!
//! Three tasks per connection: the reader routes frames (answers to their
//! waiters, deliveries to the processor); the processor verifies and
//! stores deliveries and records acceptances (it may fetch the log, so it
//! must not be the reader); the writer owns the socket's write half. A
//! supervisor task owns the connection's life.
//!
//! - `options`: how to connect; `events`: what a session reports.
//! - `core`: the state its tasks share; `connect`: starting it and each
//!   connection; `handshake`: the hello, written once.
//! - `requests`: request ids and answers, and the requests the session
//!   makes itself (`ping`, `grants_set` after each connect); the features
//!   make theirs through `Session::request`.
//! - `outbox`: sending, accepting, resealing.
//! - `receipts`: the signed receipts and watermarks this session owes its
//!   senders (delivered, shown, answered), and their coalescer.
//! - `inbound`: routing and storing what arrives.
//! - `log_sync`: the verified log; `append`: signed appends and the key
//!   rotations owed before them; `supervisor`: reconnecting, repairing.

mod append;
mod connect;
mod core;
mod events;
mod handshake;
mod inbound;
pub(crate) mod log_sync;
mod options;
mod outbox;
mod receipts;
mod requests;
mod supervisor;

pub(crate) use self::core::Session;
pub use self::events::{Event, RecipientReport, SendOutcome, StatusReport};
pub use self::handshake::ConnInfo;
pub use self::options::{ConnectOptions, SessionChoice};
pub use self::outbox::MAX_RESEALS;
pub(crate) use self::requests::unexpected;

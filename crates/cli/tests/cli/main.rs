//! Scenario tests for the `claudemesh` command line: each test drives the
//! real binary the way a user (or a script) types it, with separate homes
//! for each person on one machine, against a broker running in this test
//! process on a temporary SQLite database. `docs/cli.md` is the contract
//! these tests hold the binary to.
//!
//! One module per thing a user does; what they share (the broker, a
//! person's home, one run of the binary) is in `support`.

// Helpers outside `#[test]` functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod apikey;
mod audit;
mod backup;
mod coordinate;
mod errors;
mod grants;
mod hooks;
mod install;
mod invite;
mod mcp;
mod memory;
mod mesh;
mod message;
mod moderation;
mod names;
mod output;
mod policy;
mod rekey;
mod schedule;
mod serve;
mod tls;
mod topic;
mod ttl;
mod verify;
mod web_api;

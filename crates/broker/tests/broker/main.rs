//! Scenario tests of the broker with real clients, on SQLite and on
//! Postgres: what users do (create, invite, join, message online and
//! offline) and what their trust rests on (TM1, TM2, TM3, TM6, TM10, crash
//! safety). One test binary, one module per theme.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod abuse;
mod attacks;
mod coord;
mod deploy;
mod evidence;
mod fanout;
mod grants;
mod hardening;
mod invites;
mod leases;
mod lifecycle;
mod memory;
mod messaging;
mod names;
mod receipts;
mod replicas;
mod scheduled;
mod state;
mod tasks;
mod tls;
mod trust;

//! The local approval policy: `policy.yaml` in the home (or `--policy`),
//! the approval mode (`--approval-mode`, else the file's `approval_mode`,
//! else `write`), `-y/--yes`, and per-verb `allow:` and `deny:` rules.
//! Before a command does anything it asks the policy, which lets it run,
//! asks on the terminal (destructive verbs), or refuses it (exit 7, with
//! one line saying how to allow it); every decision about a write, and any
//! refusal, is appended to the audit log (`audit_log`).
//! `docs/cli.md` ("Policy and approval") is the contract.
//!
//! # Layout
//!
//! - `verb`: every verb, what it does, how it is spelled.
//! - `rule`: an `allow:` or `deny:` rule.
//! - `file`: `policy.yaml`, its defaults and its errors.
//! - `request`: a command as the policy sees it, and in words.
//! - `decision`: the policy in force, its evaluation, asking, logging.
//! - `audit_log`: the hash-chained log of every decision.

pub mod audit_log;
pub mod decision;
pub mod file;
pub mod request;
pub mod rule;
pub mod verb;

pub use decision::Policy;
pub use file::{FILE, check_text};
pub use request::Request;
pub use verb::Verb;

//! The approval mode: how much claudemesh may do on its own
//! (`--approval-mode`, else the policy file's `approval_mode`, else
//! `write`).

use serde::Deserialize;

/// How much claudemesh may do on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalMode {
    /// Nothing that writes runs; the refusal says what would have happened.
    Plan,
    /// Nothing that writes runs.
    ReadOnly,
    /// Writes run; destructive verbs ask (or need -y or an allow rule).
    Write,
    /// Everything runs without asking (deny rules still hold).
    Yolo,
}

impl ApprovalMode {
    /// The name used on the command line, in the file and in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Plan => "plan",
            ApprovalMode::ReadOnly => "read-only",
            ApprovalMode::Write => "write",
            ApprovalMode::Yolo => "yolo",
        }
    }
}

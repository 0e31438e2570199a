//! Exit codes scripts can rely on (listed in `docs/cli.md`), what a
//! command returns ([`Outcome`]), and how every failure becomes one line
//! on stderr plus a hint, or a JSON object with `--json`. The numbering
//! follows the TypeScript claudemesh where the two overlap, so existing
//! scripts keep working.

use claudemesh_client::ClientError;
use claudemesh_client::error_kind::ErrorKind;

/// Success.
pub const OK: u8 = 0;
/// Something failed that fits no other code (or was cancelled).
pub const FAILURE: u8 = 1;
/// The broker refused who we are or what we hold: not a member, removed,
/// banned, an invite that is unknown, expired, revoked or used up, a role
/// that does not allow it.
pub const REFUSED: u8 = 2;
/// Bad arguments or input.
pub const USAGE: u8 = 3;
/// The broker could not be reached or stopped answering.
pub const NETWORK: u8 = 4;
/// No such mesh, peer, message or invite.
pub const NOT_FOUND: u8 = 5;
/// It already exists.
pub const EXISTS: u8 = 6;
/// The local policy refused it (`policy.yaml`, the approval mode, or no
/// terminal to confirm a destructive verb), or the user answered no.
pub const DENIED: u8 = 7;
/// A broker or internal fault.
pub const INTERNAL: u8 = 8;
/// Local files or the local database.
pub const IO: u8 = 10;
/// Something could not be verified (membership log, signatures): nothing
/// was trusted.
pub const SECURITY: u8 = 11;

/// What a command returns.
pub type Outcome = Result<(), Failure>;

/// A command's failure: exit code, message, and what to do next.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// One line.
    pub message: String,
    /// What to do next, if there is something to say.
    pub hint: Option<String>,
}

impl Failure {
    /// A failure with a code and message.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The message and its hint as one text (for an MCP tool error).
    pub fn text(&self) -> String {
        match &self.hint {
            Some(h) => format!("{}. {h}", self.message.trim_end_matches('.')),
            None => self.message.clone(),
        }
    }

    /// The kind name used in JSON errors.
    pub fn kind(&self) -> &'static str {
        match self.code {
            REFUSED => "refused",
            USAGE => "usage",
            NETWORK => "network",
            NOT_FOUND => "not_found",
            EXISTS => "exists",
            DENIED => "denied",
            INTERNAL => "internal",
            IO => "io",
            SECURITY => "security",
            _ => "failure",
        }
    }

    /// Prints it to stderr.
    pub fn print(&self, json: bool) {
        if json {
            // Keys in the documented order (serde_json keeps insertion
            // order): code, hint, kind, message.
            let v = serde_json::json!({
                "error": {
                    "code": self.code,
                    "hint": self.hint,
                    "kind": self.kind(),
                    "message": self.message,
                }
            });
            eprintln!("{v}");
        } else {
            eprintln!("error: {}", self.message);
            if let Some(h) = &self.hint {
                eprintln!("hint: {h}");
            }
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure {
            code: code_of(e.kind()),
            message: e.to_string(),
            hint: e.hint().map(str::to_owned),
        }
    }
}

/// The exit code of a kind of failure.
pub fn code_of(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Failure => FAILURE,
        ErrorKind::Refused => REFUSED,
        ErrorKind::Usage => USAGE,
        ErrorKind::Network => NETWORK,
        ErrorKind::NotFound => NOT_FOUND,
        ErrorKind::Exists => EXISTS,
        ErrorKind::Denied => DENIED,
        ErrorKind::Internal => INTERNAL,
        ErrorKind::Io => IO,
        ErrorKind::Security => SECURITY,
    }
}

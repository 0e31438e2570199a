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
pub const FAILURE: u8 = ErrorKind::Failure.code();
/// The broker refused who we are or what we hold: not a member, removed,
/// banned, an invite that is unknown, expired, revoked or used up, a role
/// that does not allow it.
pub const REFUSED: u8 = ErrorKind::Refused.code();
/// Bad arguments or input.
pub const USAGE: u8 = ErrorKind::Usage.code();
/// The broker could not be reached or stopped answering.
pub const NETWORK: u8 = ErrorKind::Network.code();
/// No such mesh, peer, message or invite.
pub const NOT_FOUND: u8 = ErrorKind::NotFound.code();
/// It already exists.
pub const EXISTS: u8 = ErrorKind::Exists.code();
/// The local policy refused it (`policy.yaml`, the approval mode, or no
/// terminal to confirm a destructive verb), or the user answered no.
pub const DENIED: u8 = ErrorKind::Denied.code();
/// A broker or internal fault.
pub const INTERNAL: u8 = ErrorKind::Internal.code();
/// Local files or the local database.
pub const IO: u8 = ErrorKind::Io.code();
/// Something could not be verified (membership log, signatures): nothing
/// was trusted.
pub const SECURITY: u8 = ErrorKind::Security.code();

/// Someone else got there first: a lost claim, a lease in the way, a
/// state version that moved. Nothing changed.
pub const CONFLICT: u8 = ErrorKind::Conflict.code();

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
        ErrorKind::from_code(self.code).map_or("failure", ErrorKind::as_str)
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
            code: e.kind().code(),
            message: e.to_string(),
            hint: e.hint().map(str::to_owned),
        }
    }
}

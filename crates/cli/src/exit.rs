//! Exit codes scripts can rely on (listed in `docs/cli.md`), what a
//! command returns ([`Outcome`]), and how every failure becomes one line
//! on stderr plus a hint, or a JSON object with `--json`. The numbering
//! follows the TypeScript claudemesh where the two overlap, so existing
//! scripts keep working.

use claudemesh_client::ClientError;
use claudemesh_client::error::SessionNameProblem;
use claudemesh_client::tls::TlsError;
use claudemesh_crypto::envelope::EnvelopeError;
use claudemesh_proto::{ErrorCode, close};

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
        let (code, hint) = code_and_hint(&e);
        Failure {
            code,
            message: e.to_string(),
            hint: hint.map(str::to_owned),
        }
    }
}

/// The exit code of a client failure, chosen from its variant, and the
/// hint that goes with it.
fn code_and_hint(e: &ClientError) -> (u8, Option<&'static str>) {
    match e {
        ClientError::Unreachable { .. } => (
            NETWORK,
            Some("is the broker running? start one with `claudemesh-broker`, or check the URL"),
        ),
        ClientError::Tls(tls) => match tls {
            TlsError::CaRead { .. } | TlsError::CaInvalid { .. } => (
                USAGE,
                Some("give --ca (or CLAUDEMESH_CA) a PEM file holding the CA's certificate"),
            ),
            TlsError::StoredCaInvalid { .. } => (IO, None),
            // The message says what to do.
            TlsError::Untrusted { .. } => (SECURITY, None),
            TlsError::Handshake { .. } => (
                NETWORK,
                Some(
                    "check the broker URL: wss:// for a broker serving TLS (--tls-cert), ws:// for one without",
                ),
            ),
        },
        ClientError::FrameTooLarge { .. } => (
            FAILURE,
            Some("the change is too large for one frame of the protocol; nothing was sent"),
        ),
        ClientError::Timeout(_) | ClientError::Disconnected => (
            NETWORK,
            Some("check the broker (`claudemesh status`) and retry"),
        ),
        ClientError::Closed { code, .. } => match *code {
            close::KICKED => (
                REFUSED,
                Some("you were removed; rejoin only with a new invite"),
            ),
            close::BANNED => (REFUSED, Some("you are banned from this mesh")),
            close::POLICY => (REFUSED, None),
            _ => (NETWORK, Some("retry; the broker may be restarting")),
        },
        ClientError::Refused { code, .. } => match code {
            ErrorCode::NotAMember => (REFUSED, Some("join with an invite first")),
            ErrorCode::Removed => (REFUSED, Some("rejoin with a new invite")),
            ErrorCode::InviteExpired | ErrorCode::InviteRevoked | ErrorCode::InviteExhausted => (
                REFUSED,
                Some("ask the mesh's owner or an admin for a new invite (`claudemesh mesh share`)"),
            ),
            ErrorCode::Banned
            | ErrorCode::Refused
            | ErrorCode::BadCertificate
            | ErrorCode::CertExpired
            | ErrorCode::BadSignature => (REFUSED, None),
            ErrorCode::Forbidden => (REFUSED, Some("ask an owner or admin of the mesh")),
            ErrorCode::InviteNotFound | ErrorCode::UnknownRecipient | ErrorCode::NotFound => {
                (NOT_FOUND, None)
            }
            ErrorCode::UnknownMesh => (
                NOT_FOUND,
                Some(
                    "the broker does not know this mesh: check its URL with `claudemesh mesh list`",
                ),
            ),
            ErrorCode::BodyTooLarge | ErrorCode::Malformed | ErrorCode::FrameTooLarge => {
                (USAGE, None)
            }
            ErrorCode::RateLimited => (NETWORK, Some("slow down and retry")),
            ErrorCode::TooManySessions => (
                NETWORK,
                Some(
                    "this member has as many sessions connected as the broker allows; close one or retry later",
                ),
            ),
            ErrorCode::RekeyRequired => (
                FAILURE,
                Some(
                    "the mesh or topic key must rotate first: retry in a moment, or ask an owner or admin to run `claudemesh mesh rekey` if the error says so",
                ),
            ),
            ErrorCode::UnsupportedVersion | ErrorCode::UnknownType => (
                INTERNAL,
                Some("upgrade claudemesh or the broker so they speak the same version"),
            ),
            _ => (
                INTERNAL,
                Some("retry later; if it persists, check the broker's logs"),
            ),
        },
        ClientError::LogInvalid(_) | ClientError::LogFork(_) => (
            SECURITY,
            Some("do not trust this broker for this mesh; tell the mesh's owner"),
        ),
        ClientError::Protocol(_) => (INTERNAL, Some("upgrade claudemesh or the broker")),
        ClientError::Local(_) => (IO, None),
        ClientError::Invite(_) => (
            USAGE,
            Some("copy the whole invite URL, including the part after #"),
        ),
        ClientError::Envelope(EnvelopeError::BodyTooLarge(_)) => (
            USAGE,
            Some("split it into several messages of at most 64 KiB"),
        ),
        ClientError::Envelope(_) => (FAILURE, None),
        ClientError::NoMesh => (NOT_FOUND, None),
        ClientError::NoSuchMesh(_) => (NOT_FOUND, None),
        ClientError::NoSuchPeer(_) | ClientError::LookAlikePeer { .. } => (NOT_FOUND, None),
        ClientError::SessionName { problem, .. } => match problem {
            SessionNameProblem::AmbiguousMember { .. } => (USAGE, None),
            SessionNameProblem::NoMember { .. } | SessionNameProblem::NotOnline { .. } => {
                (NOT_FOUND, None)
            }
        },
        ClientError::AmbiguousMesh(_) | ClientError::AmbiguousPeer { .. } => (USAGE, None),
        ClientError::Exists(_) => (EXISTS, None),
        ClientError::Invalid(_)
        | ClientError::BadInput(_)
        | ClientError::MissingKey(_)
        | ClientError::NotInGroup { .. }
        | ClientError::NotInTopic { .. }
        | ClientError::NotAMember { .. }
        | ClientError::SessionNotMember { .. }
        | ClientError::NotOnePeer { .. }
        | ClientError::BadKey { .. }
        | ClientError::BadTarget { .. }
        | ClientError::GrantsForSelf
        | ClientError::LeaveInstead
        | ClientError::AmbiguousBan { .. }
        | ClientError::AmbiguousInvite { .. }
        | ClientError::SealKey { .. }
        | ClientError::Encrypt { .. }
        | ClientError::ChangeRefused(_) => (USAGE, None),
        ClientError::NotFound(_) => (NOT_FOUND, None),
        ClientError::NotAllowed(_) => (REFUSED, None),
        ClientError::KeyChanged(_) => (SECURITY, None),
        ClientError::Shared(inner) => code_and_hint(inner),
    }
}

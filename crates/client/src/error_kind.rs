//! What kind of failure a [`ClientError`] is, chosen from its variant
//! (never from its text), with the hint that goes with it: one
//! classification for every front end. The CLI turns a kind into its exit
//! code, the gateway into an HTTP status and a problem type, so a script
//! reads the same answer either way.

use claudemesh_crypto::envelope::EnvelopeError;
use claudemesh_proto::{ErrorCode, close};

use crate::error::{ClientError, SessionNameProblem};
use crate::tls::TlsError;

/// The kinds of failure, as scripts see them (`docs/cli.md`, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Something failed that fits no other kind.
    Failure,
    /// The broker refused who we are or what we hold.
    Refused,
    /// Bad arguments or input.
    Usage,
    /// The broker could not be reached or stopped answering.
    Network,
    /// No such mesh, peer, message or invite.
    NotFound,
    /// It already exists.
    Exists,
    /// The local policy refused it.
    Denied,
    /// A broker or internal fault.
    Internal,
    /// Local files or the local database.
    Io,
    /// Something could not be verified: nothing was trusted.
    Security,
    /// Someone else got there first: a task another member claimed, a
    /// version that moved. Nothing changed; look and retry.
    Conflict,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::Failure,
        ErrorKind::Refused,
        ErrorKind::Usage,
        ErrorKind::Network,
        ErrorKind::NotFound,
        ErrorKind::Exists,
        ErrorKind::Denied,
        ErrorKind::Internal,
        ErrorKind::Io,
        ErrorKind::Security,
        ErrorKind::Conflict,
    ];

    /// The kind with this number, if any.
    pub fn from_code(code: u8) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Its number: the CLI's exit code, and `code` in the gateway's
    /// problem answers. The numbering follows the TypeScript claudemesh
    /// where the two overlap, so existing scripts keep working.
    pub const fn code(self) -> u8 {
        match self {
            ErrorKind::Failure => 1,
            ErrorKind::Refused => 2,
            ErrorKind::Usage => 3,
            ErrorKind::Network => 4,
            ErrorKind::NotFound => 5,
            ErrorKind::Exists => 6,
            ErrorKind::Denied => 7,
            ErrorKind::Internal => 8,
            ErrorKind::Io => 10,
            ErrorKind::Security => 11,
            ErrorKind::Conflict => 12,
        }
    }

    /// Its name in JSON errors and problem types (`not_found`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Failure => "failure",
            ErrorKind::Refused => "refused",
            ErrorKind::Usage => "usage",
            ErrorKind::Network => "network",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Exists => "exists",
            ErrorKind::Denied => "denied",
            ErrorKind::Internal => "internal",
            ErrorKind::Io => "io",
            ErrorKind::Security => "security",
            ErrorKind::Conflict => "conflict",
        }
    }
}

impl ClientError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        kind_and_hint(self).0
    }

    /// What to do next, when there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        kind_and_hint(self).1
    }
}

/// The kind of a client failure, chosen from its variant, and the hint
/// that goes with it.
fn kind_and_hint(e: &ClientError) -> (ErrorKind, Option<&'static str>) {
    match e {
        ClientError::Unreachable { .. } => (
            ErrorKind::Network,
            Some("is the broker running? start one with `claudemesh-broker`, or check the URL"),
        ),
        ClientError::Tls(tls) => match tls {
            TlsError::CaRead { .. } | TlsError::CaInvalid { .. } => (
                ErrorKind::Usage,
                Some("give --ca (or CLAUDEMESH_CA) a PEM file holding the CA's certificate"),
            ),
            TlsError::StoredCaInvalid { .. } => (ErrorKind::Io, None),
            // The message says what to do.
            TlsError::Untrusted { .. } => (ErrorKind::Security, None),
            TlsError::Handshake { .. } => (
                ErrorKind::Network,
                Some(
                    "check the broker URL: wss:// for a broker serving TLS (--tls-cert), ws:// for one without",
                ),
            ),
        },
        ClientError::FrameTooLarge { .. } => (
            ErrorKind::Failure,
            Some("the change is too large for one frame of the protocol; nothing was sent"),
        ),
        ClientError::Timeout(_) | ClientError::Disconnected => (
            ErrorKind::Network,
            Some("check the broker (`claudemesh status`) and retry"),
        ),
        ClientError::Closed { code, .. } => match *code {
            close::KICKED => (
                ErrorKind::Refused,
                Some("you were removed; rejoin only with a new invite"),
            ),
            close::BANNED => (ErrorKind::Refused, Some("you are banned from this mesh")),
            close::POLICY => (ErrorKind::Refused, None),
            _ => (
                ErrorKind::Network,
                Some("retry; the broker may be restarting"),
            ),
        },
        ClientError::Refused { code, .. } => match code {
            ErrorCode::NotAMember => (ErrorKind::Refused, Some("join with an invite first")),
            ErrorCode::Removed => (ErrorKind::Refused, Some("rejoin with a new invite")),
            ErrorCode::InviteExpired | ErrorCode::InviteRevoked | ErrorCode::InviteExhausted => (
                ErrorKind::Refused,
                Some("ask the mesh's owner or an admin for a new invite (`claudemesh mesh share`)"),
            ),
            ErrorCode::Banned
            | ErrorCode::Refused
            | ErrorCode::BadCertificate
            | ErrorCode::CertExpired
            | ErrorCode::BadSignature => (ErrorKind::Refused, None),
            ErrorCode::Forbidden => (
                ErrorKind::Refused,
                Some("ask an owner or admin of the mesh"),
            ),
            ErrorCode::InviteNotFound | ErrorCode::UnknownRecipient | ErrorCode::NotFound => {
                (ErrorKind::NotFound, None)
            }
            ErrorCode::UnknownMesh => (
                ErrorKind::NotFound,
                Some(
                    "the broker does not know this mesh: check its URL with `claudemesh mesh list`",
                ),
            ),
            ErrorCode::BodyTooLarge | ErrorCode::Malformed | ErrorCode::FrameTooLarge => {
                (ErrorKind::Usage, None)
            }
            ErrorCode::RateLimited => (ErrorKind::Network, Some("slow down and retry")),
            ErrorCode::TooManySessions => (
                ErrorKind::Network,
                Some(
                    "this member has as many sessions connected as the broker allows; close one or retry later",
                ),
            ),
            ErrorCode::RekeyRequired => (
                ErrorKind::Failure,
                Some(
                    "the mesh or topic key must rotate first: retry in a moment, or ask an owner or admin to run `claudemesh mesh rekey` if the error says so",
                ),
            ),
            ErrorCode::UnsupportedVersion | ErrorCode::UnknownType => (
                ErrorKind::Internal,
                Some("upgrade claudemesh or the broker so they speak the same version"),
            ),
            _ => (
                ErrorKind::Internal,
                Some("retry later; if it persists, check the broker's logs"),
            ),
        },
        ClientError::LogInvalid(_) | ClientError::LogFork(_) => (
            ErrorKind::Security,
            Some("do not trust this broker for this mesh; tell the mesh's owner"),
        ),
        ClientError::Protocol(_) => (
            ErrorKind::Internal,
            Some("upgrade claudemesh or the broker"),
        ),
        ClientError::Local(_) => (ErrorKind::Io, None),
        ClientError::Invite(_) => (
            ErrorKind::Usage,
            Some("copy the whole invite URL, including the part after #"),
        ),
        ClientError::Envelope(EnvelopeError::BodyTooLarge(_)) => (
            ErrorKind::Usage,
            Some("split it into several messages of at most 64 KiB"),
        ),
        ClientError::Envelope(_) => (ErrorKind::Failure, None),
        ClientError::NoMesh => (ErrorKind::NotFound, None),
        ClientError::NoSuchMesh(_) => (ErrorKind::NotFound, None),
        ClientError::NoSuchPeer(_) | ClientError::LookAlikePeer { .. } => {
            (ErrorKind::NotFound, None)
        }
        ClientError::SessionName { problem, .. } => match problem {
            SessionNameProblem::AmbiguousMember { .. } => (ErrorKind::Usage, None),
            SessionNameProblem::NoMember { .. } | SessionNameProblem::NotOnline { .. } => {
                (ErrorKind::NotFound, None)
            }
        },
        ClientError::AmbiguousMesh(_) | ClientError::AmbiguousPeer { .. } => {
            (ErrorKind::Usage, None)
        }
        ClientError::Exists(_) => (ErrorKind::Exists, None),
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
        | ClientError::AmbiguousHeld { .. }
        | ClientError::AmbiguousNote { .. }
        | ClientError::AmbiguousTask { .. }
        | ClientError::SealKey { .. }
        | ClientError::Encrypt { .. }
        | ClientError::ChangeRefused(_) => (ErrorKind::Usage, None),
        ClientError::NotFound(_) => (ErrorKind::NotFound, None),
        ClientError::NotAllowed(_) => (ErrorKind::Refused, None),
        ClientError::KeyChanged(_) => (ErrorKind::Security, None),
        ClientError::Expired { .. } => (
            ErrorKind::Failure,
            Some(
                "send it again, with a longer time to live if it may have to wait for the connection",
            ),
        ),
        ClientError::SchedulingUnsupported => (
            ErrorKind::Refused,
            Some(
                "upgrade the broker (claudemesh-broker) to one that holds messages, or send the message now",
            ),
        ),
        ClientError::MemoryUnsupported => (
            ErrorKind::Refused,
            Some("upgrade the broker (claudemesh-broker) to one that stores team memory"),
        ),
        ClientError::TaskTaken { .. } => (
            ErrorKind::Conflict,
            Some("see where it stands with `claudemesh task show`, or pick another task"),
        ),
        ClientError::LeaseHeld { .. } => (
            ErrorKind::Conflict,
            Some("coordinate with the holder, wait for the lease to end, or work elsewhere"),
        ),
        ClientError::StateMoved { .. } => (
            ErrorKind::Conflict,
            Some("read it again with `claudemesh state get`, then write from what is there"),
        ),
        ClientError::TasksUnsupported => (
            ErrorKind::Refused,
            Some("upgrade the broker (claudemesh-broker) to one that keeps tasks"),
        ),
        ClientError::Shared(inner) => kind_and_hint(inner),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_kind_comes_from_the_variant_and_its_code_not_its_text() {
        let refused = |code| ClientError::Refused {
            code,
            // Text that reads like another kind changes nothing.
            message: "already exists, not found".into(),
        };
        assert_eq!(refused(ErrorCode::NotAMember).kind(), ErrorKind::Refused);
        assert_eq!(
            refused(ErrorCode::NotAMember).hint(),
            Some("join with an invite first")
        );
        assert_eq!(
            refused(ErrorCode::UnknownRecipient).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(refused(ErrorCode::RateLimited).kind(), ErrorKind::Network);
        assert_eq!(refused(ErrorCode::Malformed).kind(), ErrorKind::Usage);
        // A failure shared by several waiters is classified as itself.
        let shared = ClientError::Shared(Arc::new(refused(ErrorCode::UnknownMesh)));
        assert_eq!(shared.kind(), ErrorKind::NotFound);
        assert!(shared.hint().is_some_and(|h| h.contains("mesh list")));
        assert_eq!(ClientError::Disconnected.kind().as_str(), "network");
    }
}

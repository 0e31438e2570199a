//! Everything that can go wrong in the client, one variant per thing a
//! caller (the CLI, the MCP server, a script) can act on. The CLI maps each
//! kind to an exit code (`docs/cli.md`).

use claudemesh_crypto::envelope::EnvelopeError;
use claudemesh_crypto::invite::InviteError;
use claudemesh_crypto::log::LogError;
use claudemesh_proto::ErrorCode;

/// A client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TLS to a `wss://` broker: a CA that cannot be used, a certificate
    /// this device does not trust, a failed handshake.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The broker could not be reached.
    #[error("cannot reach the broker at {url}: {reason}")]
    Unreachable {
        /// The broker URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The broker closed the connection.
    #[error("the broker closed the connection ({code}: {reason})")]
    Closed {
        /// Websocket close code.
        code: u16,
        /// Close reason (an error code for policy closes).
        reason: String,
    },
    /// The broker refused a request.
    #[error("{message} ({code})")]
    Refused {
        /// The broker's error code.
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// The broker did not answer in time.
    #[error("timed out waiting for the broker to {0}")]
    Timeout(&'static str),
    /// A frame this client was about to send is larger than the protocol
    /// lets a broker take (it would close the connection): nothing was
    /// sent, and the connection is still up.
    #[error(
        "refusing to send a {frame} frame of {bytes} bytes ({entries} log entries): the protocol allows at most {max_bytes} bytes and {max_entries} log entries per frame"
    )]
    FrameTooLarge {
        /// The frame's `type`.
        frame: &'static str,
        /// Its encoded size.
        bytes: usize,
        /// The log entries it carries (0 for other frames).
        entries: usize,
        /// The protocol's limit in bytes.
        max_bytes: usize,
        /// The protocol's limit of log entries.
        max_entries: usize,
    },
    /// Not connected (the connection dropped while waiting).
    #[error("the connection to the broker was lost")]
    Disconnected,
    /// The membership log the broker served does not verify (TM3).
    #[error(
        "the broker's membership log does not verify: {0}. Nothing from it was trusted; the broker may be faulty or lying"
    )]
    LogInvalid(LogError),
    /// The broker's log contradicts what this device verified before.
    #[error(
        "the broker's membership log disagrees with the log this device verified earlier (at entry {0}); refusing to continue: the broker may be lying"
    )]
    LogFork(u64),
    /// The broker sent something that breaks the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Local files or the local database.
    #[error("{0}")]
    Local(String),
    /// An invite could not be used.
    #[error("{0}")]
    Invite(#[from] InviteError),
    /// A message could not be sealed or opened.
    #[error("{0}")]
    Envelope(#[from] EnvelopeError),
    /// This device belongs to no mesh.
    #[error(
        "this device is in no mesh yet: create one (claudemesh mesh create <name> --broker <url>) or join one (claudemesh join <url>)"
    )]
    NoMesh,
    /// No mesh matches.
    #[error("no mesh named or with id {0:?} (see claudemesh mesh list)")]
    NoSuchMesh(String),
    /// More than one mesh matches.
    #[error("more than one mesh matches {0}; pass --mesh with a name or a longer id")]
    AmbiguousMesh(String),
    /// No peer matches.
    #[error("no peer matches {0:?} (see claudemesh peer list)")]
    NoSuchPeer(String),
    /// More than one peer matches.
    #[error("{query:?} matches several peers: {candidates}; use a longer key prefix")]
    AmbiguousPeer {
        /// What was asked.
        query: String,
        /// Who matched.
        candidates: String,
    },
    /// No member bears the name asked for, but one bears a name that looks
    /// like it (TM8: other letters that look the same, invisible
    /// characters): it is never reached by that name, only by key prefix.
    #[error(
        "{query:?}: no member is named {name:?}; {candidate} has a name that only looks like it (look-alike letters or invisible characters); if you mean that member, use its key prefix"
    )]
    LookAlikePeer {
        /// What was asked.
        query: String,
        /// The name in it that was looked for.
        name: String,
        /// The member whose name looks like it, with its short key.
        candidate: String,
    },
    /// A session name `<member>@<name>` that reaches no one session: it
    /// is only looked for among the sessions of the member it names.
    #[error("{query:?}: {problem}")]
    SessionName {
        /// What was asked.
        query: String,
        /// Why it reaches no session.
        problem: SessionNameProblem,
    },
    /// Bad input from the caller.
    #[error("{0}")]
    Invalid(String),
    /// The thing asked about does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The verified log does not allow this member to do it (a private
    /// topic it is not in, the owner leaving); the message says what would.
    #[error("{0}")]
    NotAllowed(String),
    /// The peer's key is not the one this device verified (TM8).
    #[error(
        "the key of {0} changed since you verified it; compare safety numbers again (claudemesh peer verify {0}) before sending"
    )]
    KeyChanged(String),
}

/// Why a session name `<member>@<name>` reaches no session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionNameProblem {
    /// The part before the `@` is no member's display name.
    #[error(
        "no member is named {member:?}, and a session name is <member's display name>@<name> (see claudemesh peer list; a session is also reached by its key prefix)"
    )]
    NoMember {
        /// The part before the `@`.
        member: String,
    },
    /// Several members bear that display name, so whose session it is
    /// cannot be told.
    #[error(
        "several members are named {member:?} ({candidates}), so whose session this is cannot be told; use the session's key prefix from claudemesh peer list"
    )]
    AmbiguousMember {
        /// The part before the `@`.
        member: String,
        /// The members bearing it, with their short keys.
        candidates: String,
    },
    /// The member has no connected session of that name.
    #[error("{member} has no session of that name online (see claudemesh peer list)")]
    NotOnline {
        /// The member, with its short key.
        member: String,
    },
}

impl ClientError {
    /// Whether the failure means something could not be trusted (TM3/TM4).
    pub fn is_security(&self) -> bool {
        matches!(self, ClientError::LogInvalid(_) | ClientError::LogFork(_))
    }
}

impl From<sqlx::Error> for ClientError {
    fn from(e: sqlx::Error) -> Self {
        ClientError::Local(format!("local database: {e}"))
    }
}

impl From<sqlx::migrate::MigrateError> for ClientError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        ClientError::Local(format!("local database migration: {e}"))
    }
}

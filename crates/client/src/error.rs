//! Everything that can go wrong in the client, one variant per thing a
//! caller (the CLI, the MCP server, a script) can act on. The CLI maps each
//! kind to an exit code (`docs/cli.md`).

use std::sync::Arc;

use claudemesh_crypto::envelope::EnvelopeError;
use claudemesh_crypto::invite::InviteError;
use claudemesh_crypto::log::{LogError, LogFault};
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
    /// A request that makes no sense for the member making it (removing
    /// or verifying itself), or bad input found by a check outside this
    /// crate (a test's, the bench's). The SDK's other refusals of input
    /// are the variants below, each with its data.
    #[error("{0}")]
    Invalid(InvalidRequest),
    /// It exists already: a mesh, a membership, a topic, a revocation.
    #[error("{0}")]
    Exists(Existing),
    /// Input the SDK refuses before anything is sent.
    #[error("{0}")]
    BadInput(BadInput),
    /// A key this device does not hold (or could not open).
    #[error("{0}")]
    MissingKey(MissingKey),
    /// This member is not in the group it would leave.
    #[error("you are not in @{group}")]
    NotInGroup {
        /// The group, without `@`.
        group: String,
    },
    /// This member is not in the topic it would leave.
    #[error("you are not in #{topic}")]
    NotInTopic {
        /// The topic, without `#`.
        topic: String,
    },
    /// The peer named is not a member of the mesh (a session, say).
    #[error("{peer:?} is not a member of the mesh (give a name or a key prefix)")]
    NotAMember {
        /// As the user gave it.
        peer: String,
    },
    /// The peer named is a session where a member is needed.
    #[error("{peer:?} names a session, not a member (give a name or a key prefix)")]
    SessionNotMember {
        /// As the user gave it.
        peer: String,
    },
    /// The peer named is not one member (a topic, a group, `*`).
    #[error("{peer:?} is not one peer")]
    NotOnePeer {
        /// As the user gave it.
        peer: String,
    },
    /// A `member:`/`session:` recipient whose key is not a key.
    #[error("{input:?} is not a valid key")]
    BadKey {
        /// As the user gave it.
        input: String,
    },
    /// A `*`, `@group` or `#topic` recipient that does not parse.
    #[error("{input:?}: {reason}")]
    BadTarget {
        /// As the user gave it.
        input: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Grants are about other members.
    #[error("that is you: grants are about other members")]
    GrantsForSelf,
    /// A member leaves with `mesh leave`, not by removing itself.
    #[error("to leave the mesh use `claudemesh mesh leave`")]
    LeaveInstead,
    /// A ban named by too short a key prefix.
    #[error("{query:?} matches several banned keys: {candidates}; give more hex digits")]
    AmbiguousBan {
        /// What was asked.
        query: String,
        /// The short keys that match.
        candidates: String,
    },
    /// A held message named by an id prefix that several of them share.
    #[error("{prefix} matches several scheduled messages ({candidates}); give more hex digits")]
    AmbiguousHeld {
        /// The prefix given.
        prefix: String,
        /// The short ids that match.
        candidates: String,
    },
    /// A memory note named by an id prefix that several of them share.
    #[error("{prefix} matches several memory notes ({candidates}); give more hex digits")]
    AmbiguousNote {
        /// The prefix given.
        prefix: String,
        /// The short ids that match.
        candidates: String,
    },
    /// An invite named by too short an id.
    #[error("{id} matches several invites; give more digits")]
    AmbiguousInvite {
        /// The id prefix given.
        id: String,
    },
    /// A key or message could not be sealed.
    #[error("cannot seal a key: {reason}")]
    SealKey {
        /// Why.
        reason: String,
    },
    /// A direct message could not be encrypted to a peer.
    #[error("cannot encrypt to {peer}: {reason}")]
    Encrypt {
        /// The peer's short key.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A change this member built that the log's rules refuse.
    #[error("this change is not allowed: {0}")]
    ChangeRefused(LogFault),
    /// The failure of a send that several callers waited for (each gets
    /// it).
    #[error("{0}")]
    Shared(Arc<ClientError>),
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
    /// A message sent with a time to live whose deadline passed before the
    /// broker accepted it (it waited in the outbox): it was not sent, and
    /// its outbox entry is `expired`.
    #[error(
        "message {id} expired before the broker accepted it: its time to live ran out while it waited to be sent"
    )]
    Expired {
        /// The message id (hex).
        id: String,
    },
    /// A message to deliver later, to a broker that does not hold messages
    /// (its `welcome.limits.scheduled` is false): it would deliver it at
    /// once, so it was not sent (or, left in the outbox from before an
    /// older broker took over, it was marked failed).
    #[error(
        "this broker cannot hold messages for later (it would deliver them at once); upgrade it. Nothing was sent"
    )]
    SchedulingUnsupported,
    /// A team memory request to a broker that does not store coordination
    /// objects (it answered `unknown_type`: an older one).
    #[error(
        "this broker does not store team memory (it is older than this claudemesh); upgrade it. Nothing was stored or changed"
    )]
    MemoryUnsupported,
    /// A task act lost: the task is not where this device saw it (another
    /// member claimed it, it is done, or its version moved).
    #[error("task {id}: {detail}; nothing changed")]
    TaskTaken {
        /// The task's short id.
        id: String,
        /// Where it stands now.
        detail: String,
    },
    /// A shared state write lost: the key is not at the version this
    /// device expected (another writer got there first).
    #[error("state key {key:?}: {detail}; nothing changed")]
    StateMoved {
        /// The key.
        key: String,
        /// Where it stands now.
        detail: String,
    },
    /// A lease could not be taken: live leases of other sessions overlap.
    #[error("{detail}; nothing was leased")]
    LeaseHeld {
        /// What stands in the way.
        detail: String,
    },
    /// A task named by an id prefix that several of them share.
    #[error("{prefix} matches several tasks ({candidates}); give more hex digits")]
    AmbiguousTask {
        /// The prefix given.
        prefix: String,
        /// The short ids that match.
        candidates: String,
    },
    /// The broker answered `unknown_type` to a task request.
    #[error(
        "this broker does not keep tasks or shared state (it is older than this claudemesh); upgrade it. Nothing was stored or changed"
    )]
    TasksUnsupported,
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

/// A request that makes no sense for the member making it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// A kick or ban of oneself: a member leaves with `mesh leave`.
    #[error("you cannot remove yourself; to leave the mesh use `claudemesh mesh leave`")]
    RemoveSelf,
    /// Safety numbers are compared with someone else.
    #[error("that is you: verify someone else's key")]
    VerifySelf,
    /// Found by a check outside this crate (a test's, the bench's), in its
    /// words.
    #[error("{0}")]
    Outside(String),
}

impl From<String> for InvalidRequest {
    fn from(words: String) -> Self {
        InvalidRequest::Outside(words)
    }
}

/// What exists already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Existing {
    /// A mesh of this name on this device.
    #[error("this device already has a mesh named {name:?}; pick another name")]
    MeshNamed {
        /// The name.
        name: String,
    },
    /// This device's membership of the mesh an invite is for.
    #[error("this device is already in the mesh {mesh:?}")]
    InMesh {
        /// The mesh's name.
        mesh: String,
    },
    /// A topic of this name.
    #[error("a topic #{topic} already exists in this mesh")]
    Topic {
        /// The topic, without `#`.
        topic: String,
    },
    /// This member in a topic.
    #[error("you are already in #{topic}")]
    InTopic {
        /// The topic, without `#`.
        topic: String,
    },
    /// Another member in a topic.
    #[error("{member} is already in #{topic}")]
    MemberInTopic {
        /// The member's name.
        member: String,
        /// The topic, without `#`.
        topic: String,
    },
    /// This member in a group (with the same role).
    #[error("you are already in @{group}")]
    InGroup {
        /// The group, without `@`.
        group: String,
    },
    /// The revocation of an invite.
    #[error("invite {invite} was already revoked (log entry {at})")]
    InviteRevoked {
        /// The invite's short id.
        invite: String,
        /// The log entry that revoked it.
        at: u64,
    },
}

/// Input the SDK refuses before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadInput {
    /// Not a topic name.
    #[error("{input:?} is not a topic name (1-64 of A-Z a-z 0-9 . _ - /, optionally after #)")]
    TopicName {
        /// As given.
        input: String,
    },
    /// Not a group name.
    #[error("{input:?} is not a group name (1-64 of A-Z a-z 0-9 . _ - /, optionally after @)")]
    GroupName {
        /// As given.
        input: String,
    },
    /// A group role too long, empty, or with control characters.
    #[error("a group role is 1-{max} bytes without control characters")]
    GroupRole {
        /// Most bytes.
        max: usize,
    },
    /// A topic description too long or with control characters.
    #[error("a topic description is at most {max} bytes, without control characters")]
    TopicDescription {
        /// Most bytes.
        max: usize,
    },
    /// A mesh or display name empty, too long, or with control characters.
    #[error("{what} must be 1-{max} printable characters")]
    Name {
        /// Which name (`the mesh name`, `the display name`).
        what: &'static str,
        /// Most characters.
        max: usize,
    },
    /// A mesh-creation token that would travel in the clear.
    #[error(
        "the mesh-creation token goes only over wss:// (or to a broker on this machine): {broker_url} would send it in the clear"
    )]
    TokenInClear {
        /// The broker URL.
        broker_url: String,
    },
    /// Not a `ws://` or `wss://` URL.
    #[error(
        "{url:?} is not a broker URL (ws://host:port, or wss://host[:port] for a broker serving TLS)"
    )]
    BrokerUrl {
        /// As given.
        url: String,
    },
    /// A broker URL that cannot be requested.
    #[error("bad broker URL {url:?}: {reason}")]
    BadBrokerUrl {
        /// As given.
        url: String,
        /// Why.
        reason: String,
    },
    /// An invite for no one.
    #[error("--uses must be at least 1")]
    InviteUses,
    /// An invite id too short or not hex.
    #[error("give the invite id (at least 8 hex digits, as `mesh share` printed it)")]
    InviteId,
    /// A time to live that does not parse, or is shorter than 1 s.
    #[error(
        "time to live {input:?}: {reason} (give at least 1 s: 30s, 10m, 2h, 1d, or a number of seconds)"
    )]
    Ttl {
        /// As given.
        input: String,
        /// Why it is refused.
        reason: String,
    },
    /// A held message's id that is neither a message id nor a prefix of
    /// at least 4 hex digits of one.
    #[error(
        "{input:?} is not a scheduled message's id: give its 32 hex digits, or at least its first 4, as `schedule list` shows it"
    )]
    HeldId {
        /// As given.
        input: String,
    },
    /// A memory note's text: empty, too long, or with a NUL.
    #[error("a memory note {reason}")]
    NoteText {
        /// Why it is refused (`is empty`, …).
        reason: String,
    },
    /// A memory note's tag that is not one.
    #[error("{tag:?} is not a tag: a tag is 1-{max} of A-Z a-z 0-9 _ . -")]
    NoteTag {
        /// As given.
        tag: String,
        /// Most bytes.
        max: usize,
    },
    /// More tags than a memory note may carry.
    #[error("a memory note carries at most {max} tags, not {given}")]
    NoteTags {
        /// As given.
        given: usize,
        /// Most tags.
        max: usize,
    },
    /// A memory search with no word to look for.
    #[error("give at least one word to search team memory for (letters or digits)")]
    MemoryQuery,
    /// A memory note's id that is neither a note id nor a prefix of at
    /// least 4 hex digits of one.
    #[error(
        "{input:?} is not a memory note's id: give its 32 hex digits, or at least its first 4, as `memory list` shows it"
    )]
    NoteId {
        /// As given.
        input: String,
    },
    /// A task's title, body, tags, priority or result that cannot be used.
    #[error("task {field}: {reason}")]
    Task {
        /// Which part.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A lease request that cannot be used.
    #[error("lease: {reason}")]
    Lease {
        /// Why.
        reason: String,
    },
    /// A shared state key or value that cannot be used.
    #[error("state {field}: {reason}")]
    State {
        /// Which part.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Not a task id or an id prefix.
    #[error(
        "{input:?} is not a task's id: give its 32 hex digits, or at least its first 4, as `task list` shows it"
    )]
    TaskId {
        /// As given.
        input: String,
    },
    /// A capability name that is not one.
    #[error(
        "unknown capability {name:?}: use dm, broadcast, group, topic, presence, task, state or memory"
    )]
    Capability {
        /// As given.
        name: String,
    },
}

/// A key this device does not hold, or could not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MissingKey {
    /// The mesh key of the current epoch, to seal with.
    #[error("this device does not hold the mesh key of the current epoch")]
    CurrentEpoch,
    /// The current mesh key, to seal a profile or an invite's bundle.
    #[error("this device does not hold the current mesh key")]
    CurrentMeshKey,
    /// A private topic's key of its current key epoch.
    #[error("this device could not open the key of #{topic} (key epoch {epoch})")]
    TopicEpoch {
        /// The topic.
        topic: String,
        /// Its key epoch.
        epoch: u64,
    },
    /// A private topic's current key, to seal it to a new member.
    #[error("this device could not open the key of #{topic}")]
    Topic {
        /// The topic.
        topic: String,
    },
    /// A mesh key to encrypt a presence summary.
    #[error("this device holds no mesh key to encrypt a summary")]
    Summary,
    /// A fan-out key.
    #[error("no key to seal a fan-out message")]
    FanOut,
    /// Asked for a direct message's symmetric key (it has none).
    #[error("a direct message has no symmetric key")]
    Direct,
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

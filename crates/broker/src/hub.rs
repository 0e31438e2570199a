//! The in-memory side of each mesh: its verified membership log (loaded
//! from the store once, then grown only by verified appends, its own or,
//! with replicas, another broker's read back from the store and verified),
//! the sessions connected to this broker, the sessions other replicas
//! reported (as last read from the store), and their presence. It delivers
//! frames to connected sessions through their bounded queues and is where a
//! slow consumer is cut off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use axum::extract::ws::Utf8Bytes;
use claudemesh_crypto::cert::SessionCert;
use claudemesh_crypto::envelope::Priority;
use claudemesh_crypto::grants::{Cap, Decision, GrantSet, GrantsError};
use claudemesh_crypto::log::PeerType;
use claudemesh_crypto::log::{EntryBody, LogEntry, LogFault, RemoveKind, Roster, verify_log};
use claudemesh_crypto::{Hash32, PublicKey};
use claudemesh_proto::frames::{EncryptedBlob, LogUpdate, PeerPresence, PresenceUpdate, Status};
use claudemesh_proto::{BrokerFrame, ErrorCode, close, encode_broker_frame};

use crate::outbox::{Outbox, PresenceKey};
use crate::ratelimit::TokenBucket;
use crate::replication::Replication;
use crate::store::replicas::OnlineSession;
use crate::store::{AppendExtras, AppendOutcome, MemberState, Store, StoreError};

/// A session's current presence on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPresence {
    /// Status.
    pub status: Status,
    /// Peer type.
    pub peer_type: Option<PeerType>,
    /// Encrypted summary.
    pub summary: Option<EncryptedBlob>,
}

/// One authenticated connection, as the rest of the broker sees it.
#[derive(Debug)]
pub struct SessionHandle {
    /// Unique per connection (a session key may reconnect).
    pub conn_id: u64,
    /// The mesh.
    pub mesh: Hash32,
    /// The member key (verified by the certificate and the log).
    pub member: PublicKey,
    /// The session key.
    pub session: PublicKey,
    /// The certificate it presented (peers check it themselves).
    pub cert: SessionCert,
    /// When it said hello, unix ms.
    pub connected_at_ms: u64,
    /// The connection's outbound queue and kill switch.
    out: Outbox,
    presence: Mutex<SessionPresence>,
    last_seen_ms: AtomicU64,
    draining: AtomicBool,
    /// Serializes drains of stored messages to this session.
    pub drain_lock: tokio::sync::Mutex<()>,
    /// A wake-up drain (another replica stored something for this session)
    /// is scheduled and has not started reading yet.
    wake_pending: AtomicBool,
}

impl SessionHandle {
    /// A handle for a freshly authenticated connection.
    pub fn new(
        conn_id: u64,
        mesh: Hash32,
        cert: SessionCert,
        out: Outbox,
        presence: SessionPresence,
        now_ms: u64,
    ) -> Self {
        SessionHandle {
            conn_id,
            mesh,
            member: cert.member,
            session: cert.session,
            cert,
            connected_at_ms: now_ms,
            out,
            presence: Mutex::new(presence),
            last_seen_ms: AtomicU64::new(now_ms),
            draining: AtomicBool::new(false),
            drain_lock: tokio::sync::Mutex::new(()),
            wake_pending: AtomicBool::new(false),
        }
    }

    /// Marks a wake-up drain as scheduled; false if one already is (and has
    /// not started reading), which will see whatever this one would.
    pub fn schedule_wake(&self) -> bool {
        !self.wake_pending.swap(true, Ordering::SeqCst)
    }

    /// Called by a wake-up drain before it reads: later wake-ups schedule
    /// another.
    pub fn wake_started(&self) {
        self.wake_pending.store(false, Ordering::SeqCst);
    }

    /// Queues a frame without waiting. A spent byte budget means the peer
    /// reads too slowly: the connection is closed with 4003 (its messages
    /// stay stored and are delivered when it comes back). Returns whether
    /// it was queued.
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        self.out.push(frame).is_ok()
    }

    /// Queues a live push of a stored message without waiting; a spent
    /// budget marks the session behind (a drain catches up) instead of
    /// cutting it off. Returns whether it was queued.
    pub fn push_live(&self, frame: Utf8Bytes) -> bool {
        self.out.push_live(frame).is_ok()
    }

    /// Queues a frame, waiting for room (drains of stored messages use this:
    /// backpressure instead of a disconnect).
    pub async fn push_wait(&self, frame: Utf8Bytes) -> bool {
        self.out.push_wait(frame).await
    }

    /// Completes when live pushes overflowed this session's queue.
    pub async fn fell_behind(&self) {
        self.out.fell_behind().await
    }

    /// A drain is catching up: live pushes may resume once it is done.
    pub fn catching_up(&self) {
        self.out.caught_up();
    }

    /// Sets the latest presence frame about `key` for this session (coalesced,
    /// never a reason to cut it off).
    pub fn push_presence(&self, key: PresenceKey, frame: Utf8Bytes) {
        self.out.set_presence(key, frame);
    }

    /// Ends the connection with `code` after the frames already queued.
    pub fn kill(&self, code: u16, reason: &'static str) {
        self.out.kill(code, reason);
    }

    /// Whether [`SessionHandle::kill`] was called.
    pub fn is_killed(&self) -> bool {
        self.out.is_killed()
    }

    /// The close code and reason given to [`SessionHandle::kill`].
    pub fn kill_reason(&self) -> Option<(u16, &'static str)> {
        self.out.kill_reason()
    }

    /// Completes once the connection must end.
    pub async fn killed(&self) {
        self.out.killed().await
    }

    /// The session's presence now.
    pub fn presence(&self) -> SessionPresence {
        match self.presence.lock() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Changes presence; returns the new value.
    pub fn update_presence(
        &self,
        status: Option<Status>,
        peer_type: Option<PeerType>,
        summary: Option<EncryptedBlob>,
    ) -> SessionPresence {
        let mut p = match self.presence.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(s) = status {
            p.status = s;
        }
        if peer_type.is_some() {
            p.peer_type = peer_type;
        }
        if summary.is_some() {
            p.summary = summary;
        }
        p.clone()
    }

    /// Marks activity (any frame read).
    pub fn touch(&self, now_ms: u64) {
        self.last_seen_ms.store(now_ms, Ordering::Relaxed);
    }

    /// While true, live pushes skip this session: a drain is sending its
    /// stored messages in order and will pick up anything committed meanwhile.
    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Ordering::SeqCst);
    }

    /// The highest priority (most restrictive) this session takes live:
    /// idle peers take everything, busy ones (`working`, `dnd`) only `now`.
    pub fn max_priority(&self) -> Priority {
        match self.presence().status {
            Status::Idle => Priority::Low,
            Status::Working | Status::Dnd => Priority::Now,
        }
    }

    /// Whether a message of `priority` is pushed to this session right now.
    fn takes_live(&self, priority: Priority) -> bool {
        !self.draining.load(Ordering::SeqCst)
            && !self.out.is_behind()
            && (priority == Priority::Now || self.max_priority() != Priority::Now)
    }

    /// This session as a `peers`/`presence` entry.
    pub fn as_peer(&self) -> PeerPresence {
        let p = self.presence();
        PeerPresence {
            member: self.member,
            session: Some(self.session),
            cert: Some(self.cert.clone()),
            online: true,
            status: p.status,
            peer_type: p.peer_type,
            summary: p.summary,
            connected_at_ms: Some(self.connected_at_ms),
            last_seen_ms: Some(self.last_seen_ms.load(Ordering::Relaxed)),
            live_push: !self.is_killed(),
        }
    }
}

/// A session connected to another replica, as its row in the store said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSession {
    /// Its member.
    pub member: PublicKey,
    /// The session key.
    pub session: PublicKey,
    /// The broker instance holding it.
    pub broker: String,
    /// That broker's connection id.
    pub conn_id: u64,
    /// The certificate it presented there.
    pub cert: SessionCert,
    /// Its presence.
    pub presence: SessionPresence,
    /// When it connected, unix ms.
    pub connected_at_ms: u64,
    /// When its row last changed, unix ms.
    pub updated_at_ms: u64,
}

impl RemoteSession {
    /// This session as a `peers`/`presence` entry.
    pub fn as_peer(&self) -> PeerPresence {
        PeerPresence {
            member: self.member,
            session: Some(self.session),
            cert: Some(self.cert.clone()),
            online: true,
            status: self.presence.status,
            peer_type: self.presence.peer_type,
            summary: self.presence.summary.clone(),
            connected_at_ms: Some(self.connected_at_ms),
            last_seen_ms: Some(self.updated_at_ms),
            live_push: true,
        }
    }

    /// The row as a remote session of `mesh`, if its certificate is the
    /// one the row claims (mesh, member, session).
    fn from_row(mesh: &Hash32, row: OnlineSession) -> Option<Self> {
        let consistent = row.cert.mesh_id == *mesh
            && row.cert.member == row.member
            && row.cert.session == row.session;
        if !consistent {
            return None;
        }
        Some(RemoteSession {
            member: row.member,
            session: row.session,
            broker: row.broker,
            conn_id: row.conn_id,
            cert: row.cert,
            presence: SessionPresence {
                status: row.status,
                peer_type: row.peer_type,
                summary: row.summary,
            },
            connected_at_ms: row.connected_at_ms,
            updated_at_ms: row.updated_at_ms,
        })
    }
}

/// The verified membership log of a mesh.
#[derive(Debug, Clone)]
pub struct MeshLog {
    /// Every entry, in order.
    pub entries: Vec<LogEntry>,
    /// What they verify to.
    pub roster: Roster,
    /// Bytes of the entries' JSON (the size cap counts these).
    pub bytes: usize,
}

impl MeshLog {
    /// A verified log and its size.
    pub fn new(entries: Vec<LogEntry>, roster: Roster) -> Self {
        let bytes = entries.iter().map(entry_bytes).sum();
        MeshLog {
            entries,
            roster,
            bytes,
        }
    }

    /// Adds verified entries.
    fn extend(&mut self, entries: &[LogEntry], roster: Roster) {
        self.bytes += entries.iter().map(entry_bytes).sum::<usize>();
        self.entries.extend(entries.iter().cloned());
        self.roster = roster;
    }
}

/// The largest entry a broker appends: one it can still serve alone in a
/// `log_entries` frame (the frame's other fields take the rest). A rekey of
/// about 600 members is the largest legitimate entry.
pub const MAX_ENTRY_BYTES: usize = claudemesh_proto::limits::MAX_FRAME_BYTES - 4096;

/// Bytes of an entry's JSON.
fn entry_bytes(e: &LogEntry) -> usize {
    serde_json::to_string(e).map_or(0, |j| j.len())
}

/// What one member may send this broker, all its sessions together.
#[derive(Debug, Clone, Copy)]
pub struct MemberRates {
    /// Frames per second, sustained.
    pub frames_per_sec: u32,
    /// Frames at once.
    pub frames_burst: u32,
    /// Bytes of frames per second, sustained (what a member can make the
    /// broker store and forward).
    pub bytes_per_sec: u32,
    /// Bytes at once (at least one frame).
    pub bytes_burst: u32,
}

/// This broker's own limits on what appends may add to a log (TM10). They
/// are not rules of the log — clients do not check them — only of what
/// this broker agrees to store and serve.
#[derive(Debug, Clone, Copy)]
pub struct AppendLimits {
    /// Entries one author may append per hour, sustained.
    pub entries_per_hour: u32,
    /// Entries one author may append at once.
    pub burst: u32,
    /// Bytes of entries one author may append per hour (and at once).
    pub bytes_per_hour: u32,
    /// Largest log (JSON bytes); above it only entries that remove someone
    /// or rotate a key are taken, so a mesh can always defend itself.
    pub max_log_bytes: usize,
    /// The broker's clock, unix seconds: an `admit` of an expired invite is
    /// refused whatever date its joiner wrote in it.
    pub now_secs: u64,
}

impl AppendLimits {
    /// No quota, no size cap, no clock (entries another replica appended
    /// and this broker only adopts).
    pub const NONE: AppendLimits = AppendLimits {
        entries_per_hour: u32::MAX,
        burst: u32::MAX,
        bytes_per_hour: u32::MAX,
        max_log_bytes: usize::MAX,
        now_secs: 0,
    };
}

/// An owner's or admin's entry that takes someone out, revokes or rotates a
/// key: never counted against quotas and taken even by a full log, so the
/// mesh can always remove whoever fills it. (The same kinds by a plain
/// member are counted and refused like any other entry: any member may
/// rotate a private topic's key, and each rotation is as big as the topic.)
fn admin_safeguard(roster: &Roster, e: &LogEntry) -> bool {
    let admin = matches!(
        roster.role_of(&e.author),
        Some(claudemesh_crypto::log::Role::Owner | claudemesh_crypto::log::Role::Admin)
    );
    admin
        && matches!(
            e.body,
            EntryBody::Remove { .. }
                | EntryBody::Rekey { .. }
                | EntryBody::RevokeInvite { .. }
                | EntryBody::Role { .. }
                | EntryBody::TopicLeave { .. }
                | EntryBody::TopicRekey { .. }
                | EntryBody::GroupLeave { .. }
        )
}

#[derive(Debug, Default)]
struct Sessions {
    by_session: HashMap<PublicKey, Arc<SessionHandle>>,
    /// Sessions of each member, by connection id (removal is O(1) even
    /// for a member with thousands of sessions).
    by_member: HashMap<PublicKey, HashMap<u64, Arc<SessionHandle>>>,
}

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The log moved on (or the first entry is not at its end).
    #[error("the log is at {len} entries (head {head}); fetch, verify and retry")]
    Conflict {
        /// Current length.
        len: u64,
        /// Current head.
        head: Hash32,
    },
    /// An entry does not verify.
    #[error("{0}")]
    Invalid(claudemesh_crypto::log::LogError),
    /// The request carried no entries or too many.
    #[error("{0}")]
    Malformed(&'static str),
    /// The author appended more entries than this broker takes per hour.
    #[error(
        "this member appended too many membership-log entries; retry in {} s",
        retry_after_ms.div_ceil(1000)
    )]
    RateLimited {
        /// When the entries would be taken.
        retry_after_ms: u64,
    },
    /// The log reached this broker's size cap.
    #[error(
        "this mesh's membership log reached the broker's limit of {max_bytes} bytes; it now \
         takes only removals and key rotations"
    )]
    LogFull {
        /// The cap.
        max_bytes: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppendError {
    /// The error code a client gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            AppendError::Conflict { .. } => ErrorCode::LogConflict,
            AppendError::Invalid(e) => match e.fault {
                LogFault::InviteExhausted { .. } => ErrorCode::InviteExhausted,
                LogFault::InviteRevoked { .. } => ErrorCode::InviteRevoked,
                LogFault::InviteExpired(_) => ErrorCode::InviteExpired,
                LogFault::UnknownInvite(_) => ErrorCode::InviteNotFound,
                _ => ErrorCode::LogInvalid,
            },
            AppendError::Malformed(_) => ErrorCode::Malformed,
            AppendError::RateLimited { .. } => ErrorCode::RateLimited,
            AppendError::LogFull { .. } => ErrorCode::Forbidden,
            AppendError::Store(_) => ErrorCode::Internal,
        }
    }

    /// How long to wait before retrying, when that is known.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            AppendError::RateLimited { retry_after_ms } => Some(*retry_after_ms),
            _ => None,
        }
    }
}

/// One mesh as this broker holds it.
#[derive(Debug)]
pub struct MeshHub {
    /// The mesh id.
    pub id: Hash32,
    log: RwLock<MeshLog>,
    append_lock: tokio::sync::Mutex<()>,
    sessions: RwLock<Sessions>,
    member_states: Mutex<HashMap<PublicKey, MemberState>>,
    /// Session keys already recorded in the store by this broker.
    recorded_sessions: Mutex<std::collections::HashSet<PublicKey>>,
    /// Each member's verified grant set (TM7); no entry = everything allowed.
    grants: RwLock<HashMap<PublicKey, Arc<GrantSet>>>,
    /// Sessions connected to other replicas, by session key (empty without
    /// replicas).
    remote: RwLock<HashMap<PublicKey, Arc<RemoteSession>>>,
    /// Serializes "read the other replicas' sessions, then apply": a read
    /// is never applied after a later one.
    presence_sync: tokio::sync::Mutex<()>,
    /// Each member's frame and byte buckets, shared by all its sessions
    /// here (TM10).
    member_rates: Mutex<HashMap<PublicKey, (TokenBucket, TokenBucket)>>,
    /// Each member's bucket of membership-log entries (TM10).
    log_rates: Mutex<HashMap<PublicKey, (TokenBucket, TokenBucket)>>,
    /// When a catch-up a connection asked for last finished (unix ms).
    catch_up_gate: tokio::sync::Mutex<u64>,
}

/// Why a `grants_set` was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantsSetError {
    /// The set is another member's.
    #[error("the grant set is not this connection's member's")]
    NotYours,
    /// Bad shape, signature or mesh.
    #[error("{0}")]
    Invalid(#[from] GrantsError),
    /// An older version than the stored one.
    #[error("the grant set is older than the stored version {0}")]
    Stale(u64),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl GrantsSetError {
    /// The error code a client gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            GrantsSetError::NotYours => ErrorCode::Forbidden,
            GrantsSetError::Invalid(_) | GrantsSetError::Stale(_) => ErrorCode::Malformed,
            GrantsSetError::Store(_) => ErrorCode::Internal,
        }
    }
}

impl MeshHub {
    /// The gate of catch-ups asked for by connections, holding when the
    /// last one finished (unix ms): callers take turns through it.
    pub async fn catch_up_gate(&self) -> tokio::sync::MutexGuard<'_, u64> {
        self.catch_up_gate.lock().await
    }

    /// Takes one frame of `bytes` from `member`'s buckets (frames and
    /// bytes), which all its sessions on this broker share; both or neither;
    /// `Err` with the milliseconds until there is room.
    pub fn take_member_token(
        &self,
        member: &PublicKey,
        limits: &MemberRates,
        bytes: usize,
    ) -> Result<(), u64> {
        let mut rates = self.member_rates.lock().unwrap_or_else(|p| p.into_inner());
        let (frames, volume) = rates.entry(*member).or_insert_with(|| {
            (
                TokenBucket::new(limits.frames_per_sec, limits.frames_burst),
                TokenBucket::new(limits.bytes_per_sec, limits.bytes_burst),
            )
        });
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        let (mut f, mut v) = (frames.clone(), volume.clone());
        f.take().and(v.take_n(bytes.min(limits.bytes_burst)))?;
        (*frames, *volume) = (f, v);
        Ok(())
    }

    /// What `recipient`'s grants say about `sender` using `cap`.
    pub fn grant_decision(&self, recipient: &PublicKey, sender: &PublicKey, cap: Cap) -> Decision {
        let grants = self.grants.read().unwrap_or_else(|p| p.into_inner());
        match grants.get(recipient) {
            Some(set) => set.allows(sender, cap),
            None => Decision::Allow,
        }
    }

    /// Whether `recipient` lets `sender` use `cap` at all (silent or not).
    pub fn grants_allow(&self, recipient: &PublicKey, sender: &PublicKey, cap: Cap) -> bool {
        self.grant_decision(recipient, sender, cap) == Decision::Allow
    }

    /// Verifies and stores `member`'s new grant set; returns the version the
    /// broker holds afterwards. An equal version is answered as stored.
    pub async fn set_grants(
        &self,
        store: &dyn Store,
        member: &PublicKey,
        set: GrantSet,
    ) -> Result<u64, GrantsSetError> {
        if &set.member != member {
            return Err(GrantsSetError::NotYours);
        }
        set.verify(&self.id)?;
        let current = {
            let grants = self.grants.read().unwrap_or_else(|p| p.into_inner());
            grants.get(member).map(|g| g.version)
        };
        if let Some(v) = current {
            if set.version == v {
                return Ok(v);
            }
            if set.version < v {
                return Err(GrantsSetError::Stale(v));
            }
        }
        let doc = serde_json::to_string(&set).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let version = set.version;
        if store.save_grants(&self.id, member, version, &doc).await? {
            let mut grants = self.grants.write().unwrap_or_else(|p| p.into_inner());
            let newer = grants.get(member).is_none_or(|g| g.version < version);
            if newer {
                grants.insert(*member, Arc::new(set));
            }
            Ok(grants.get(member).map_or(version, |g| g.version))
        } else {
            // Another writer (or replica) stored a newer or equal version:
            // take what the store holds.
            let stored = store.load_grants(&self.id).await?;
            let mut grants = self.grants.write().unwrap_or_else(|p| p.into_inner());
            for (m, doc) in stored {
                if &m == member
                    && let Some(g) = verified_grants(&self.id, &m, &doc)
                {
                    grants.insert(m, Arc::new(g));
                }
            }
            match grants.get(member).map(|g| g.version) {
                Some(v) if v == version => Ok(v),
                Some(v) => Err(GrantsSetError::Stale(v)),
                None => Err(GrantsSetError::Store(StoreError::Corrupt(
                    "stored grant set does not verify".into(),
                ))),
            }
        }
    }

    /// Whether `session` still needs recording in the store (first hello
    /// seen by this broker); marks it recorded.
    pub fn first_sight_of(&self, session: &PublicKey) -> bool {
        let mut seen = self
            .recorded_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            seen.clear();
        }
        seen.insert(*session)
    }

    /// A copy of the current roster.
    pub fn roster(&self) -> Roster {
        self.read_log(|l| l.roster.clone())
    }

    /// Reads the log under its lock.
    pub fn read_log<T>(&self, f: impl FnOnce(&MeshLog) -> T) -> T {
        match self.log.read() {
            Ok(l) => f(&l),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Appends verified entries (all or none), persisting them first. The
    /// first entry must be at the log's current end. After the append every
    /// connected session hears `log_update`, and sessions of removed members
    /// are closed — except connection `appender` (the one that asked), which
    /// its caller closes after answering, so a member's own `leave` gets its
    /// `log_appended` before the close.
    ///
    /// `limits` are this broker's: an `admit` is checked against its
    /// invite's expiry by the broker's clock on every path (not only
    /// `invite_join`), each author's entries are counted against its hourly
    /// quota, and a log at its size cap takes only removals and rotations.
    pub async fn append(
        &self,
        store: &dyn Store,
        entries: Vec<LogEntry>,
        extras: AppendExtras,
        appender: Option<u64>,
        limits: AppendLimits,
    ) -> Result<(Hash32, u64), AppendError> {
        if entries.is_empty() {
            return Err(AppendError::Malformed("no entries to append"));
        }
        if entries.len() > claudemesh_proto::limits::MAX_LOG_ENTRIES_PER_FRAME {
            return Err(AppendError::Malformed("too many entries in one append"));
        }
        let _serial = self.append_lock.lock().await;
        let (mut roster, log_bytes) = self.read_log(|l| (l.roster.clone(), l.bytes));
        let len = roster.len();
        if entries[0].seq != len || entries[0].prev != roster.head() {
            return Err(AppendError::Conflict {
                len,
                head: roster.head(),
            });
        }
        // Judged on the log as it stands before the batch.
        let safeguards: Vec<bool> = entries
            .iter()
            .map(|e| admin_safeguard(&roster, e))
            .collect();
        let mut hashed = Vec::with_capacity(entries.len());
        let mut added = 0usize;
        for e in &entries {
            if let EntryBody::Admit { invite_key, .. } = &e.body
                && roster
                    .invites()
                    .get(invite_key)
                    .is_some_and(|i| limits.now_secs > i.expires_at)
            {
                return Err(AppendError::Invalid(claudemesh_crypto::log::LogError {
                    seq: e.seq,
                    kind: "admit",
                    fault: LogFault::InviteExpired(invite_key.to_hex()[..8].to_owned()),
                }));
            }
            let size = entry_bytes(e);
            if size > MAX_ENTRY_BYTES {
                return Err(AppendError::Malformed(
                    "an entry that large could not be served back in one frame",
                ));
            }
            roster.apply(e).map_err(AppendError::Invalid)?;
            added += size;
            hashed.push((e.clone(), e.hash()));
        }
        if log_bytes.saturating_add(added) > limits.max_log_bytes && !safeguards.iter().all(|s| *s)
        {
            return Err(AppendError::LogFull {
                max_bytes: limits.max_log_bytes,
            });
        }
        self.take_log_quota(&entries, &safeguards, &limits)?;
        match store.append_log(&self.id, len, &hashed, &extras).await? {
            AppendOutcome::Conflict => {
                // Another replica wrote first: reload what the store has,
                // and do what its append did here too (close removed
                // members' sessions, tell everyone the log grew).
                if let Some(fresh) = store.load_log(&self.id).await? {
                    let verified = verify_log(&fresh)
                        .map_err(|e| StoreError::Corrupt(format!("stored membership log: {e}")))?;
                    let grown: Vec<LogEntry> = fresh
                        .get(usize::try_from(len).unwrap_or(usize::MAX)..)
                        .map(<[LogEntry]>::to_vec)
                        .unwrap_or_default();
                    let (head, new_len) = (verified.head(), verified.len());
                    {
                        let mut log = self.log.write().unwrap_or_else(|p| p.into_inner());
                        *log = MeshLog::new(fresh, verified);
                    }
                    if !grown.is_empty() {
                        self.after_append(&grown, head, new_len, None);
                    }
                }
                let roster = self.roster();
                return Err(AppendError::Conflict {
                    len: roster.len(),
                    head: roster.head(),
                });
            }
            AppendOutcome::Appended => {}
        }
        let head = roster.head();
        let new_len = roster.len();
        {
            let mut log = self.log.write().unwrap_or_else(|p| p.into_inner());
            log.extend(&entries, roster);
        }
        self.after_append(&entries, head, new_len, appender);
        Ok((head, new_len))
    }

    /// Counts each author's entries and their bytes against its hourly
    /// quotas (a batch larger than a burst needs a full bucket). An owner's
    /// or admin's removals and rotations (`safeguards`) are not counted:
    /// nothing a member does may leave an owner unable to remove it (a kick
    /// of a member in many private topics is a rekey of each of them).
    fn take_log_quota(
        &self,
        entries: &[LogEntry],
        safeguards: &[bool],
        limits: &AppendLimits,
    ) -> Result<(), AppendError> {
        if limits.entries_per_hour == u32::MAX {
            return Ok(());
        }
        let mut per_author: HashMap<PublicKey, (u32, u64)> = HashMap::new();
        for (e, safeguard) in entries.iter().zip(safeguards) {
            if *safeguard {
                continue;
            }
            let n = per_author.entry(e.author).or_default();
            n.0 += 1;
            n.1 += entry_bytes(e) as u64;
        }
        let mut rates = self.log_rates.lock().unwrap_or_else(|p| p.into_inner());
        // All checked before any is taken: a refused batch costs nothing.
        let mut charges = Vec::with_capacity(per_author.len());
        for (author, (count, bytes)) in per_author {
            let buckets = rates.entry(author).or_insert_with(|| {
                (
                    TokenBucket::per_hour(limits.entries_per_hour, limits.burst),
                    TokenBucket::per_hour(limits.bytes_per_hour, limits.bytes_per_hour),
                )
            });
            let count = count.min(limits.burst);
            let bytes = u32::try_from(bytes)
                .unwrap_or(u32::MAX)
                .min(limits.bytes_per_hour);
            let mut probe = buckets.clone();
            probe
                .0
                .take_n(count)
                .and(probe.1.take_n(bytes))
                .map_err(|retry_after_ms| AppendError::RateLimited { retry_after_ms })?;
            charges.push((author, probe));
        }
        for (author, charged) in charges {
            rates.insert(author, charged);
        }
        Ok(())
    }

    /// Adopts what another replica appended: `read(from)` returns the stored
    /// entries from seq `from` on, each of which is verified against this
    /// log (all or none) before it is adopted; then the same happens as
    /// after a local append. Returns how many entries were adopted.
    pub async fn catch_up_log<F, Fut>(&self, read: F) -> Result<usize, AppendError>
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<LogEntry>, StoreError>>,
    {
        let _serial = self.append_lock.lock().await;
        let mut roster = self.roster();
        let entries = read(roster.len()).await?;
        if entries.is_empty() {
            return Ok(0);
        }
        for e in &entries {
            if e.seq != roster.len() {
                return Err(AppendError::Conflict {
                    len: roster.len(),
                    head: roster.head(),
                });
            }
            // The broker never trusts its storage blindly: another replica's
            // entries are verified like a client's.
            roster.apply(e).map_err(AppendError::Invalid)?;
        }
        let (head, len) = (roster.head(), roster.len());
        {
            let mut log = self.log.write().unwrap_or_else(|p| p.into_inner());
            log.extend(&entries, roster);
        }
        self.after_append(&entries, head, len, None);
        Ok(entries.len())
    }

    /// Replaces the grant sets of `members` with what the store holds
    /// (`stored`, unverified): a set that verifies and is not older than the
    /// one held is taken; a member with no stored set keeps none.
    pub fn reload_grants(&self, members: &[PublicKey], stored: Vec<(PublicKey, String)>) {
        let mut grants = self.grants.write().unwrap_or_else(|p| p.into_inner());
        for member in members {
            let doc = stored.iter().find(|(m, _)| m == member).map(|(_, d)| d);
            match doc.and_then(|d| verified_grants(&self.id, member, d)) {
                Some(set) if grants.get(member).is_none_or(|g| g.version <= set.version) => {
                    grants.insert(*member, Arc::new(set));
                }
                Some(_) => {}
                None if doc.is_some() => {
                    tracing::warn!("a stored grant set does not verify; ignoring it");
                }
                None => {}
            }
        }
    }

    /// Holds the presence-sync lock: take it before reading the other
    /// replicas' sessions and keep it until [`MeshHub::apply_remote`].
    pub async fn presence_sync(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.presence_sync.lock().await
    }

    /// Takes `rows`, just read from the store, as the other replicas'
    /// sessions of `members` (all members if `None`), and tells local
    /// sessions what changed: a new or changed session is pushed as
    /// `presence`; a member whose last session went (here and elsewhere)
    /// is pushed offline, as when its last local session closes. A session
    /// key connected both here and there keeps its newer connection: the
    /// older local one is closed as replaced.
    pub fn apply_remote(&self, members: Option<&[PublicKey]>, rows: Vec<OnlineSession>) {
        let in_scope = |m: &PublicKey| members.is_none_or(|list| list.contains(m));
        let mut fresh: HashMap<PublicKey, RemoteSession> = HashMap::with_capacity(rows.len());
        for row in rows {
            if !in_scope(&row.member) {
                continue;
            }
            let Some(r) = RemoteSession::from_row(&self.id, row) else {
                tracing::warn!(
                    "a stored online session's certificate does not match it; ignoring it"
                );
                continue;
            };
            if let Some(local) = self.session(&r.session) {
                if local.connected_at_ms > r.connected_at_ms {
                    // Ours is newer: the other replica closes its own.
                    continue;
                }
                local.kill(close::NORMAL, "session_replaced");
            }
            fresh.insert(r.session, r);
        }
        let mut changed = Vec::new();
        let mut gone = Vec::new();
        {
            let mut remote = self.remote.write().unwrap_or_else(|p| p.into_inner());
            remote.retain(|key, r| {
                let keep = !in_scope(&r.member) || fresh.contains_key(key);
                if !keep {
                    gone.push(r.clone());
                }
                keep
            });
            for (key, r) in fresh {
                if remote.get(&key).is_none_or(|old| **old != r) {
                    changed.push(r.as_peer());
                    remote.insert(key, Arc::new(r));
                }
            }
        }
        for p in changed {
            self.broadcast_presence(p, 0);
        }
        let now = crate::now_ms();
        for g in gone {
            if !self.member_sessions(&g.member).is_empty() || self.has_remote(&g.member) {
                continue;
            }
            let p = &g.presence;
            self.set_member_state(
                g.member,
                MemberState {
                    status: p.status,
                    peer_type: p.peer_type,
                    summary: p.summary.clone(),
                    last_seen_ms: now,
                },
            );
            self.broadcast_presence(
                PeerPresence {
                    member: g.member,
                    session: Some(g.session),
                    cert: None,
                    online: false,
                    status: p.status,
                    peer_type: p.peer_type,
                    summary: p.summary.clone(),
                    connected_at_ms: None,
                    last_seen_ms: Some(now),
                    live_push: false,
                },
                0,
            );
        }
    }

    /// Whether `member` has a session on another replica.
    pub fn has_remote(&self, member: &PublicKey) -> bool {
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        remote.values().any(|r| &r.member == member)
    }

    /// The member of a session connected to another replica.
    pub fn remote_member_of(&self, session: &PublicKey) -> Option<PublicKey> {
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        remote.get(session).map(|r| r.member)
    }

    fn after_append(&self, entries: &[LogEntry], head: Hash32, len: u64, appender: Option<u64>) {
        for e in entries {
            if let EntryBody::Remove { member, how } = &e.body {
                let (code, reason) = match how {
                    RemoveKind::Ban => (close::BANNED, ErrorCode::Banned.as_str()),
                    RemoveKind::Kick | RemoveKind::Leave => {
                        (close::KICKED, ErrorCode::Removed.as_str())
                    }
                };
                for s in self.member_sessions(member) {
                    if Some(s.conn_id) != appender {
                        s.kill(code, reason);
                    }
                }
            }
        }
        let frame = text(&BrokerFrame::LogUpdate(LogUpdate { head, len }));
        for s in self.all_sessions() {
            s.push(frame.clone());
        }
    }

    /// Registers an authenticated session unless its member already has
    /// `max` other sessions here (`Err` with how many), queueing `welcome`
    /// to it first — under the session lock, so the cap holds however many
    /// hellos race, and no presence reaches the session before its welcome.
    /// A second connection with the same session key replaces the first
    /// (closed with 1000) and does not count against the cap.
    pub fn admit_session(
        &self,
        handle: Arc<SessionHandle>,
        max: usize,
        welcome: Utf8Bytes,
    ) -> Result<(), usize> {
        let old = {
            let mut s = self.sessions.write().unwrap_or_else(|p| p.into_inner());
            let others = s.by_member.get(&handle.member).map_or(0, |list| {
                list.values()
                    .filter(|h| h.session != handle.session)
                    .count()
            });
            if others >= max {
                return Err(others);
            }
            handle.push(welcome);
            let old = s.by_session.insert(handle.session, handle.clone());
            let list = s.by_member.entry(handle.member).or_default();
            if let Some(old) = &old {
                list.remove(&old.conn_id);
            }
            list.insert(handle.conn_id, handle.clone());
            old
        };
        if let Some(old) = old {
            old.kill(close::NORMAL, "session_replaced");
        }
        // The session moved here from another replica (a failover): its
        // old row there is replaced by this connection's.
        let mut remote = self.remote.write().unwrap_or_else(|p| p.into_inner());
        if !remote.is_empty() {
            remote.remove(&handle.session);
        }
        Ok(())
    }

    /// Removes a session (if this connection is still the registered one).
    /// Returns whether the member has no session left here.
    pub fn remove_session(&self, handle: &SessionHandle) -> bool {
        let mut s = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        if s.by_session
            .get(&handle.session)
            .is_some_and(|h| h.conn_id == handle.conn_id)
        {
            s.by_session.remove(&handle.session);
        }
        let now_empty = match s.by_member.get_mut(&handle.member) {
            Some(list) => {
                list.remove(&handle.conn_id);
                list.is_empty()
            }
            None => true,
        };
        if now_empty {
            s.by_member.remove(&handle.member);
        }
        now_empty
    }

    /// Connected sessions of one member.
    pub fn member_sessions(&self, member: &PublicKey) -> Vec<Arc<SessionHandle>> {
        let s = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        s.by_member
            .get(member)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A connected session by key.
    pub fn session(&self, session: &PublicKey) -> Option<Arc<SessionHandle>> {
        let s = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        s.by_session.get(session).cloned()
    }

    /// Every connected session.
    pub fn all_sessions(&self) -> Vec<Arc<SessionHandle>> {
        let s = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        s.by_session.values().cloned().collect()
    }

    /// Pushes a stored message to the connected sessions of its recipients
    /// (a member key reaches all of that member's sessions, a session key
    /// that one). Busy sessions keep non-urgent messages for later; sessions
    /// in the middle of a drain get it from the drain. Returns how many
    /// sessions it was queued to.
    pub fn deliver_live(
        &self,
        recipients: &[PublicKey],
        priority: Priority,
        frame: &Utf8Bytes,
    ) -> usize {
        let s = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        let mut pushed = 0;
        for r in recipients {
            let targets = s
                .by_member
                .get(r)
                .into_iter()
                .flat_map(|m| m.values())
                .chain(s.by_session.get(r));
            for t in targets {
                if t.takes_live(priority) && t.push_live(frame.clone()) {
                    pushed += 1;
                }
            }
        }
        pushed
    }

    /// Tells every other session of the mesh about a presence change. Each
    /// session keeps only the latest frame per peer until its socket task
    /// writes it (coalesced, outside its byte budget): a member changing its
    /// presence in a loop costs the others one frame each, never their
    /// connection.
    pub fn broadcast_presence(&self, peer: PeerPresence, except_conn: u64) {
        let key = match peer.session {
            Some(s) => PresenceKey::Session(s),
            None => PresenceKey::Member(peer.member),
        };
        let hidden = self.peer_for_hidden(&peer);
        let frame = text(&BrokerFrame::Presence(PresenceUpdate {
            peer: Box::new(peer),
        }));
        let hidden_frame = hidden.map(|(member, p)| {
            let f = text(&BrokerFrame::Presence(PresenceUpdate { peer: Box::new(p) }));
            (member, f)
        });
        // Pushing never blocks or takes this lock again, so it is done
        // under the read lock, without copying the session list.
        let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        for s in sessions.by_session.values() {
            if s.conn_id == except_conn {
                continue;
            }
            match &hidden_frame {
                Some((member, f)) if !self.grants_allow(member, &s.member, Cap::Presence) => {
                    s.push_presence(PresenceKey::Member(*member), f.clone());
                }
                _ => s.push_presence(key, frame.clone()),
            }
        }
    }

    /// If any member refuses some viewer `presence` for `peer`'s member:
    /// that member and the entry such viewers see.
    fn peer_for_hidden(&self, peer: &PeerPresence) -> Option<(PublicKey, PeerPresence)> {
        let grants = self.grants.read().unwrap_or_else(|p| p.into_inner());
        let set = grants.get(&peer.member)?;
        let any_refused = set
            .entries
            .iter()
            .any(|e| !e.caps.iter().any(|c| c == Cap::Presence.as_str()));
        if !any_refused {
            return None;
        }
        Some((peer.member, offline_entry(peer.member)))
    }

    /// A member's last known presence.
    pub fn member_state(&self, member: &PublicKey) -> Option<MemberState> {
        self.member_states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(member)
            .cloned()
    }

    /// Records a member's last presence in memory (the caller persists it).
    pub fn set_member_state(&self, member: PublicKey, state: MemberState) {
        self.member_states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(member, state);
    }

    /// Every peer as `viewer` sees it: one entry per connected session, plus
    /// one offline entry for each current member with no session here. A
    /// member that refuses the viewer `presence` is one offline entry with
    /// no summary.
    pub fn peers(&self, viewer: &PublicKey) -> Vec<PeerPresence> {
        let all = self.all_peers();
        let mut hidden_seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(all.len());
        for p in all {
            if self.grants_allow(&p.member, viewer, Cap::Presence) {
                out.push(p);
            } else if hidden_seen.insert(p.member) {
                out.push(offline_entry(p.member));
            }
        }
        out
    }

    fn all_peers(&self) -> Vec<PeerPresence> {
        let members: Vec<PublicKey> =
            self.read_log(|l| l.roster.members().keys().copied().collect());
        let is_member = |k: &PublicKey| members.binary_search(k).is_ok();
        let sessions = self.all_sessions();
        let remote: Vec<Arc<RemoteSession>> = {
            let r = self.remote.read().unwrap_or_else(|p| p.into_inner());
            r.values().cloned().collect()
        };
        let mut out: Vec<PeerPresence> = sessions
            .iter()
            .filter(|s| is_member(&s.member))
            .map(|s| s.as_peer())
            .chain(
                remote
                    .iter()
                    .filter(|r| is_member(&r.member))
                    .map(|r| r.as_peer()),
            )
            .collect();
        for member in &members {
            if sessions.iter().any(|s| &s.member == member)
                || remote.iter().any(|r| &r.member == member)
            {
                continue;
            }
            let state = self.member_state(member);
            out.push(PeerPresence {
                member: *member,
                session: None,
                cert: None,
                online: false,
                status: state.as_ref().map(|s| s.status).unwrap_or_default(),
                peer_type: state.as_ref().and_then(|s| s.peer_type),
                summary: state.as_ref().and_then(|s| s.summary.clone()),
                connected_at_ms: None,
                last_seen_ms: state.as_ref().map(|s| s.last_seen_ms),
                live_push: false,
            });
        }
        out
    }
}

/// What the broker shows a viewer refused `presence`: offline, nothing else.
fn offline_entry(member: PublicKey) -> PeerPresence {
    PeerPresence {
        member,
        session: None,
        cert: None,
        online: false,
        status: Status::default(),
        peer_type: None,
        summary: None,
        connected_at_ms: None,
        last_seen_ms: None,
        live_push: false,
    }
}

/// A stored grant set, if it parses, verifies, and is `member`'s.
fn verified_grants(mesh: &Hash32, member: &PublicKey, doc: &str) -> Option<GrantSet> {
    let set: GrantSet = serde_json::from_str(doc).ok()?;
    (set.member == *member && set.verify(mesh).is_ok()).then_some(set)
}

/// Every mesh this broker has loaded.
pub struct Hub {
    store: Arc<dyn Store>,
    meshes: Mutex<HashMap<Hash32, Arc<MeshHub>>>,
    load_lock: tokio::sync::Mutex<()>,
    /// Set when other brokers may share the database (Postgres).
    replication: OnceLock<Arc<Replication>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// An empty hub over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Hub {
            store,
            meshes: Mutex::new(HashMap::new()),
            load_lock: tokio::sync::Mutex::new(()),
            replication: OnceLock::new(),
        }
    }

    /// Turns replication on (once, at start, before any connection).
    pub fn set_replication(&self, r: Arc<Replication>) {
        let _ = self.replication.set(r);
    }

    /// The replication side, when other brokers may share the database.
    pub fn replication(&self) -> Option<&Arc<Replication>> {
        self.replication.get()
    }

    /// Every mesh loaded here.
    pub fn loaded_meshes(&self) -> Vec<Arc<MeshHub>> {
        self.meshes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A mesh if it is loaded here (a replica ignores wake-ups for others:
    /// it reads them fresh when it loads them).
    pub fn loaded(&self, id: &Hash32) -> Option<Arc<MeshHub>> {
        self.meshes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The mesh, loading and verifying its log on first use; `None` if the
    /// broker has no such mesh.
    pub async fn mesh(&self, id: &Hash32) -> Result<Option<Arc<MeshHub>>, StoreError> {
        if let Some(m) = self.loaded(id) {
            return Ok(Some(m));
        }
        let _one_loader = self.load_lock.lock().await;
        if let Some(m) = self.loaded(id) {
            return Ok(Some(m));
        }
        let Some(entries) = self.store.load_log(id).await? else {
            return Ok(None);
        };
        // The broker never trusts its own storage blindly either.
        let roster = verify_log(&entries)
            .map_err(|e| StoreError::Corrupt(format!("stored membership log: {e}")))?;
        let states = self.store.member_states(id).await?;
        let mut grants = HashMap::new();
        for (member, doc) in self.store.load_grants(id).await? {
            match verified_grants(id, &member, &doc) {
                Some(set) => {
                    grants.insert(member, Arc::new(set));
                }
                None => tracing::warn!("a stored grant set does not verify; ignoring it"),
            }
        }
        let hub = Arc::new(MeshHub {
            id: *id,
            log: RwLock::new(MeshLog::new(entries, roster)),
            append_lock: tokio::sync::Mutex::new(()),
            sessions: RwLock::new(Sessions::default()),
            member_states: Mutex::new(states.into_iter().collect()),
            recorded_sessions: Mutex::new(std::collections::HashSet::new()),
            grants: RwLock::new(grants),
            remote: RwLock::new(HashMap::new()),
            presence_sync: tokio::sync::Mutex::new(()),
            member_rates: Mutex::new(HashMap::new()),
            log_rates: Mutex::new(HashMap::new()),
            catch_up_gate: tokio::sync::Mutex::new(0),
        });
        self.meshes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id, hub.clone());
        if let Some(r) = self.replication() {
            // Visible to wake-ups from here on; whatever changed between the
            // reads above and now is read again.
            r.mesh_loaded(&hub).await;
        }
        Ok(Some(hub))
    }
}

/// Encodes a broker frame as a websocket text payload.
pub fn text(frame: &BrokerFrame) -> Utf8Bytes {
    Utf8Bytes::from(encode_broker_frame(frame))
}

/// The `deliver` frame for a stored envelope, built around the stored JSON
/// text without re-parsing it (it is the same text a `send` carried).
pub fn deliver_text(seq: u64, envelope_json: &str, queued_at_ms: u64) -> Utf8Bytes {
    let mut s = String::with_capacity(envelope_json.len() + 80);
    s.push_str("{\"type\":\"deliver\",\"seq\":");
    s.push_str(&seq.to_string());
    s.push_str(",\"envelope\":");
    s.push_str(envelope_json);
    s.push_str(",\"queued_at_ms\":");
    s.push_str(&queued_at_ms.to_string());
    s.push('}');
    Utf8Bytes::from(s)
}

/// The error frame for `code`.
pub fn error_text(req: Option<String>, code: ErrorCode, message: impl Into<String>) -> Utf8Bytes {
    text(&BrokerFrame::error(req, code, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_crypto::SigningKey;
    use claudemesh_crypto::cert::SessionIdentity;
    use claudemesh_crypto::envelope::{Envelope, EnvelopeHeader, MessageId, SealingKey, Target};

    #[test]
    fn deliver_text_decodes_as_a_deliver_frame() {
        let member = SigningKey::generate();
        let to = SigningKey::generate().public();
        let mesh = Hash32([1; 32]);
        let session = SessionIdentity::new(&member, mesh, 1_700_000_000, 3600).unwrap();
        let env = Envelope::seal(
            &session,
            EnvelopeHeader {
                mesh,
                epoch: 0,
                target: Target::Member(to),
                id: MessageId::random(),
                reply_to: None,
                priority: Priority::Next,
                sent_at: 1_700_000_000_000,
                log_head: mesh,
            },
            b"hi",
            SealingKey::Direct(&to),
        )
        .unwrap();
        let json = serde_json::to_string(&env).unwrap();
        let frame = deliver_text(7, &json, 99);
        match claudemesh_proto::decode_broker_frame(frame.as_str()).unwrap() {
            BrokerFrame::Deliver(d) => {
                assert_eq!(d.seq, 7);
                assert_eq!(d.queued_at_ms, 99);
                assert_eq!(*d.envelope, env);
            }
            other => panic!("not a deliver: {other:?}"),
        }
    }
}

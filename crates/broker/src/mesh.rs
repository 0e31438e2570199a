//! One mesh as this broker holds it ([`MeshHub`]): its verified
//! membership log (loaded once, then grown only by verified appends, its
//! own or another replica's read back and verified), its sessions here,
//! presence, grant sets and per-member rates. Its state-changing methods
//! tell other replicas themselves, through [`MeshEvents`]: nothing calls
//! back up into a connection.

use std::sync::{Arc, Mutex, RwLock};

use axum::extract::ws::Utf8Bytes;
use claudemesh_crypto::coord::CoordKind;
use claudemesh_crypto::grants::{Cap, Decision, GrantSet};
use claudemesh_crypto::log::{EntryBody, LogEntry, LogFault, RemoveKind, Roster, verify_log};
use claudemesh_crypto::{Hash32, MeshId, PublicKey};
use claudemesh_proto::frames::{CoordChanged, LogUpdate, PeerPresence};
use claudemesh_proto::version::COORD_CHANGED_SINCE;
use claudemesh_proto::{BrokerFrame, ErrorCode, close};

use crate::grant_table::{GrantTable, GrantsSetError};
use crate::mesh_log::{
    AppendError, AppendLimits, LogQuotas, MAX_ENTRY_BYTES, MeshLog, admin_safeguard, entry_bytes,
};
use crate::metrics as m;
use crate::presence::{Audience, MeshPresence};
use crate::ratelimit::{MemberBuckets, MemberRates};
use crate::sessions::{LocalSessions, SessionHandle};
use crate::store::replicas::OnlineSession;
use crate::store::{AppendExtras, AppendOutcome, MemberState, Store, StoreError};
use crate::wire::text;

/// Least time between two catch-ups of a mesh's log asked for by
/// connections (see [`MeshHub::caught_up`]).
const CATCH_UP_INTERVAL_MS: u64 = 200;

/// What a mesh's state changes tell the other replicas (with replicas
/// only), and where it reads what they appended.
#[async_trait::async_trait]
pub trait MeshEvents: Send + Sync + std::fmt::Debug {
    /// A session said hello here.
    fn session_up(&self, session: &SessionHandle);
    /// A session here changed its presence.
    fn session_changed(&self, session: &SessionHandle);
    /// A session's connection here ended.
    fn session_down(&self, session: &SessionHandle);
    /// This broker appended to a mesh's log; it is now `len` entries long.
    fn log_grew(&self, mesh: MeshId, len: u64);
    /// A member's grant set changed here.
    fn grants_changed(&self, mesh: MeshId, member: PublicKey);
    /// Coordination objects of `kind` changed here.
    fn coord_changed(&self, mesh: MeshId, kind: CoordKind);
    /// The stored log entries of `mesh` from seq `from` on (unverified).
    async fn log_from(&self, mesh: &MeshId, from: u64) -> Result<Vec<LogEntry>, StoreError>;
}

/// What a freshly loaded mesh starts from, as read from the store.
#[derive(Debug)]
pub struct LoadedMesh {
    /// Its verified log.
    pub log: MeshLog,
    /// Members' last presence.
    pub member_states: Vec<(PublicKey, MemberState)>,
    /// Stored grant sets (verified on load).
    pub grants: Vec<(PublicKey, String)>,
}

/// One mesh as this broker holds it.
#[derive(Debug)]
pub struct MeshHub {
    /// The mesh id.
    pub id: MeshId,
    log: RwLock<MeshLog>,
    append_lock: tokio::sync::Mutex<()>,
    sessions: LocalSessions,
    presence: MeshPresence,
    /// Session keys already recorded in the store by this broker.
    recorded_sessions: Mutex<std::collections::HashSet<PublicKey>>,
    /// Each member's verified grant set (TM7); no entry = everything allowed.
    grants: GrantTable,
    /// Each member's frame and byte buckets, shared by all its sessions
    /// here (TM10).
    member_rates: MemberBuckets,
    /// Each member's bucket of membership-log entries (TM10).
    log_quotas: LogQuotas,
    /// When a catch-up a connection asked for last finished (unix ms).
    catch_up_gate: tokio::sync::Mutex<u64>,
    /// The other replicas, told of this mesh's changes (none without).
    events: Option<Arc<dyn MeshEvents>>,
}

impl MeshHub {
    /// A mesh loaded from the store; `events` hears its changes.
    pub fn new(id: MeshId, loaded: LoadedMesh, events: Option<Arc<dyn MeshEvents>>) -> Self {
        MeshHub {
            id,
            log: RwLock::new(loaded.log),
            append_lock: tokio::sync::Mutex::new(()),
            sessions: LocalSessions::default(),
            presence: MeshPresence::new(loaded.member_states),
            recorded_sessions: Mutex::new(std::collections::HashSet::new()),
            grants: GrantTable::from_stored(id, loaded.grants),
            member_rates: MemberBuckets::default(),
            log_quotas: LogQuotas::default(),
            catch_up_gate: tokio::sync::Mutex::new(0),
            events,
        }
    }

    fn audience(&self) -> Audience<'_> {
        Audience {
            sessions: &self.sessions,
            grants: &self.grants,
        }
    }

    /// The sessions connected here.
    pub fn sessions(&self) -> &LocalSessions {
        &self.sessions
    }

    /// With replicas: adopts log entries other brokers appended; returns
    /// whether there were any (without replicas: false, nothing to read).
    /// Anyone can ask for this (a hello from a key no one admitted, a send
    /// to a made-up member), and it reads the store under the mesh's append
    /// lock, so it runs at most once per [`CATCH_UP_INTERVAL_MS`]: callers
    /// queue, and one whose request a later catch-up already covered does
    /// not read again (it answers true: look again).
    pub async fn caught_up(&self) -> bool {
        let Some(events) = &self.events else {
            return false;
        };
        let asked = crate::now_ms();
        let mut last = self.catch_up_gate.lock().await;
        if *last >= asked {
            return true;
        }
        let wait = (*last + CATCH_UP_INTERVAL_MS).saturating_sub(asked);
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
        metrics::counter!(m::LOG_CATCH_UPS).increment(1);
        let grew = self
            .adopt_appended(|from| events.log_from(&self.id, from))
            .await;
        *last = crate::now_ms();
        grew
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
        self.member_rates.take(member, limits, bytes)
    }

    /// What `recipient`'s grants say about `sender` using `cap`.
    pub fn grant_decision(&self, recipient: &PublicKey, sender: &PublicKey, cap: Cap) -> Decision {
        self.grants.decision(recipient, sender, cap)
    }

    /// Whether `recipient` lets `sender` use `cap` at all (silent or not).
    pub fn grants_allow(&self, recipient: &PublicKey, sender: &PublicKey, cap: Cap) -> bool {
        self.grant_decision(recipient, sender, cap) == Decision::Allow
    }

    /// Changes whenever any member's grant set does (see
    /// [`GrantTable::generation`]).
    pub fn grants_generation(&self) -> u64 {
        self.grants.generation()
    }

    /// The members whose grants refuse `sender` `cap`.
    pub fn grants_refusing(&self, sender: &PublicKey, cap: Cap) -> Vec<PublicKey> {
        self.grants.refusing(sender, cap)
    }

    /// Verifies and stores `member`'s new grant set; returns the version the
    /// broker holds afterwards. An equal version is answered as stored.
    pub async fn set_grants(
        &self,
        store: &dyn Store,
        member: &PublicKey,
        set: GrantSet,
    ) -> Result<u64, GrantsSetError> {
        let version = self.grants.set(store, member, set).await?;
        if let Some(events) = &self.events {
            events.grants_changed(self.id, *member);
        }
        Ok(version)
    }

    /// Replaces the grant sets of `members` with what the store holds
    /// (`stored`, unverified): a set that verifies and is not older than the
    /// one held is taken; a member with no stored set keeps none.
    pub fn reload_grants(&self, members: &[PublicKey], stored: Vec<(PublicKey, String)>) {
        self.grants.reload(members, stored);
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
        self.log_quotas.take(&entries, &safeguards, &limits)?;
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
        if let Some(events) = &self.events {
            events.log_grew(self.id, new_len);
        }
        Ok((head, new_len))
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

    /// [`MeshHub::catch_up_log`], logging a failure; returns whether the
    /// log grew.
    pub async fn adopt_appended<F, Fut>(&self, read: F) -> bool
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<LogEntry>, StoreError>>,
    {
        match self.catch_up_log(read).await {
            Ok(n) => n > 0,
            Err(e) => {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::error!(error = %e, "another replica's log entries were not adopted");
                false
            }
        }
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
                for s in self.sessions.of_member(member) {
                    if Some(s.conn_id) != appender {
                        s.kill(code, reason);
                    }
                }
            }
        }
        let frame = text(&BrokerFrame::LogUpdate(LogUpdate { head, len }));
        self.sessions.for_each(|s| {
            s.push(frame.clone());
        });
    }

    /// Registers an authenticated session unless its member already has
    /// `max` other sessions here (`Err` with how many), queueing `welcome`
    /// to it first (see [`LocalSessions::admit`]); the other replicas hear
    /// of it.
    pub fn admit_session(
        &self,
        handle: Arc<SessionHandle>,
        max: usize,
        welcome: Utf8Bytes,
    ) -> Result<(), usize> {
        self.sessions.admit(&handle, max, welcome)?;
        // The session moved here from another replica (a failover): its
        // old row there is replaced by this connection's.
        self.presence.forget_remote(&handle.session);
        if let Some(events) = &self.events {
            events.session_up(&handle);
        }
        Ok(())
    }

    /// Removes a session (if this connection is still the registered one);
    /// the other replicas hear of it. Returns whether the member has no
    /// session left here.
    pub fn remove_session(&self, handle: &SessionHandle) -> bool {
        let now_empty = self.sessions.remove(handle);
        if let Some(events) = &self.events {
            events.session_down(handle);
        }
        now_empty
    }

    /// Coordination objects of `kinds` changed: every session here is told
    /// (`coord_changed`, so watchers sync) but the connection that made
    /// the change (`by`: it has its answer), and, for a change made here
    /// (`by` is some), the other replicas too. Hints are coalesced per
    /// session and kind, as presence is: one waits at most per kind, so a
    /// burst of writes never floods a reader.
    pub fn coord_changed(&self, kinds: &[CoordKind], by: Option<u64>) {
        for kind in kinds {
            let frame = text(&BrokerFrame::CoordChanged(CoordChanged {
                kinds: vec![*kind],
            }));
            self.sessions.for_each(|s| {
                // A version 1 client ends its session on a frame type it
                // does not know.
                if Some(s.conn_id) != by && s.version >= COORD_CHANGED_SINCE {
                    s.push_presence(crate::outbox::PresenceKey::Coord(*kind), frame.clone());
                }
            });
        }
        if by.is_some()
            && let Some(events) = &self.events
        {
            for kind in kinds {
                events.coord_changed(self.id, *kind);
            }
        }
    }

    /// Tells every other session of the mesh about a presence change
    /// (coalesced; see [`MeshPresence::broadcast`]).
    pub fn broadcast_presence(&self, peer: PeerPresence, except_conn: u64) {
        self.presence.broadcast(self.audience(), peer, except_conn);
    }

    /// A session here changed its presence (now `state` for its member):
    /// remembered, pushed to the mesh's other sessions, and told to the
    /// other replicas.
    pub fn presence_changed(&self, session: &SessionHandle, state: MemberState) {
        self.set_member_state(session.member, state);
        self.broadcast_presence(session.as_peer(), session.conn_id);
        if let Some(events) = &self.events {
            events.session_changed(session);
        }
    }

    /// A member's last known presence.
    pub fn member_state(&self, member: &PublicKey) -> Option<MemberState> {
        self.presence.member_state(member)
    }

    /// Records a member's last presence in memory (the caller persists it).
    pub fn set_member_state(&self, member: PublicKey, state: MemberState) {
        self.presence.set_member_state(member, state);
    }

    /// Every peer as `viewer` sees it (see [`MeshPresence::peers`]).
    pub fn peers(&self, viewer: &PublicKey) -> Vec<PeerPresence> {
        let members: Vec<PublicKey> =
            self.read_log(|l| l.roster.members().keys().copied().collect());
        self.presence.peers(self.audience(), &members, viewer)
    }

    /// Holds the presence-sync lock: take it before reading the other
    /// replicas' sessions and keep it until [`MeshHub::apply_remote`].
    pub async fn presence_sync(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.presence.sync().await
    }

    /// Takes `rows`, just read from the store, as the other replicas'
    /// sessions of `members` (all if `None`); see
    /// [`MeshPresence::apply_remote`].
    pub fn apply_remote(&self, members: Option<&[PublicKey]>, rows: Vec<OnlineSession>) {
        self.presence
            .apply_remote(self.audience(), &self.id, members, rows);
    }

    /// Whether `member` has a session on another replica.
    pub fn has_remote(&self, member: &PublicKey) -> bool {
        self.presence.has_remote(member)
    }

    /// The member of a session connected to another replica.
    pub fn remote_member_of(&self, session: &PublicKey) -> Option<PublicKey> {
        self.presence.remote_member_of(session)
    }
}

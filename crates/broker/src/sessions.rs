//! Sessions: one authenticated connection as the rest of the broker sees
//! it ([`SessionHandle`]: its keys, presence and outbound queue), a session
//! another replica holds ([`RemoteSession`]), and the registry of a mesh's
//! sessions connected here ([`LocalSessions`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::ws::Utf8Bytes;
use claudemesh_crypto::cert::SessionCert;
use claudemesh_crypto::envelope::Priority;
use claudemesh_crypto::log::PeerType;
use claudemesh_crypto::{MeshId, PublicKey};
use claudemesh_proto::close;
use claudemesh_proto::frames::{EncryptedBlob, PeerPresence, Status};

use crate::outbox::{Outbox, PresenceKey};
use crate::store::replicas::OnlineSession;
use claudemesh_crypto::MemberKey;
use claudemesh_crypto::SessionKey;

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
    pub mesh: MeshId,
    /// The member key (verified by the certificate and the log).
    pub member: PublicKey,
    /// The session key.
    pub session: PublicKey,
    /// The certificate it presented (peers check it themselves).
    pub cert: SessionCert,
    /// When it said hello, unix ms.
    pub connected_at_ms: u64,
    /// The protocol version it chose in its hello.
    pub version: u32,
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
        version: u32,
        mesh: MeshId,
        cert: SessionCert,
        out: Outbox,
        presence: SessionPresence,
        now_ms: u64,
    ) -> Self {
        SessionHandle {
            conn_id,
            version,
            mesh,
            member: cert.member.0,
            session: cert.session.0,
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
    pub fn takes_live(&self, priority: Priority) -> bool {
        !self.draining.load(Ordering::SeqCst)
            && !self.out.is_behind()
            && (priority == Priority::Now || self.max_priority() != Priority::Now)
    }

    /// This session as a `peers`/`presence` entry.
    pub fn as_peer(&self) -> PeerPresence {
        let p = self.presence();
        PeerPresence {
            member: MemberKey(self.member),
            session: Some(SessionKey(self.session)),
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
            member: MemberKey(self.member),
            session: Some(SessionKey(self.session)),
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
    pub fn from_row(mesh: &MeshId, row: OnlineSession) -> Option<Self> {
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
/// A mesh's sessions connected to this broker, by session key and by
/// member.
#[derive(Debug, Default)]
pub struct LocalSessions {
    inner: RwLock<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    by_session: HashMap<PublicKey, Arc<SessionHandle>>,
    /// Sessions of each member, by connection id (removal is O(1) even
    /// for a member with thousands of sessions).
    by_member: HashMap<PublicKey, HashMap<u64, Arc<SessionHandle>>>,
}

impl LocalSessions {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `handle` unless its member already has `max` other
    /// sessions here (`Err` with how many), queueing `welcome` to it first,
    /// under the registry's lock: the cap holds however many hellos race,
    /// and nothing pushed to the mesh's sessions reaches it before its
    /// welcome. A second connection with the same session key replaces the
    /// first (closed with 1000) and does not count against the cap.
    pub fn admit(
        &self,
        handle: &Arc<SessionHandle>,
        max: usize,
        welcome: Utf8Bytes,
    ) -> Result<(), usize> {
        let old = {
            let mut s = self.inner.write().unwrap_or_else(|p| p.into_inner());
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
        Ok(())
    }

    /// Removes a session (if this connection is still the registered one).
    /// Returns whether the member has no session left here.
    pub fn remove(&self, handle: &SessionHandle) -> bool {
        let mut s = self.inner.write().unwrap_or_else(|p| p.into_inner());
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
    pub fn of_member(&self, member: &PublicKey) -> Vec<Arc<SessionHandle>> {
        self.read()
            .by_member
            .get(member)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A connected session by key.
    pub fn get(&self, session: &PublicKey) -> Option<Arc<SessionHandle>> {
        self.read().by_session.get(session).cloned()
    }

    /// Every connected session.
    pub fn all(&self) -> Vec<Arc<SessionHandle>> {
        self.read().by_session.values().cloned().collect()
    }

    /// Calls `f` with every session a recipient key reaches (a member key:
    /// all of that member's sessions; a session key: that one), under the
    /// registry's read lock: `f` must not block or register sessions.
    pub fn for_each_reached(&self, recipients: &[PublicKey], mut f: impl FnMut(&SessionHandle)) {
        let s = self.read();
        for r in recipients {
            let targets = s
                .by_member
                .get(r)
                .into_iter()
                .flat_map(|m| m.values())
                .chain(s.by_session.get(r));
            for t in targets {
                f(t);
            }
        }
    }

    /// Calls `f` with every connected session, under the registry's read
    /// lock (pushing never blocks or takes this lock again, so nothing is
    /// copied).
    pub fn for_each(&self, mut f: impl FnMut(&SessionHandle)) {
        for s in self.read().by_session.values() {
            f(s);
        }
    }
}

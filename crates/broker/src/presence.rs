//! Presence in one mesh: each member's last known presence, the sessions
//! other replicas hold (as last read from the store), and pushing presence
//! changes to the sessions here (coalesced, never a reason to cut one off).
//! A member whose grants refuse a viewer `presence` shows it one offline
//! entry with nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use claudemesh_crypto::grants::Cap;
use claudemesh_crypto::{MeshId, PublicKey};
use claudemesh_proto::frames::{PeerPresence, PresenceUpdate, Status};
use claudemesh_proto::{BrokerFrame, close};

use crate::grant_table::GrantTable;
use crate::outbox::PresenceKey;
use crate::sessions::{LocalSessions, RemoteSession};
use crate::store::MemberState;
use crate::store::replicas::OnlineSession;
use crate::wire::text;
use claudemesh_crypto::MemberKey;
use claudemesh_crypto::SessionKey;

/// A mesh's presence state beside its connected sessions.
#[derive(Debug)]
pub struct MeshPresence {
    member_states: Mutex<HashMap<PublicKey, MemberState>>,
    /// Sessions connected to other replicas, by session key (empty without
    /// replicas).
    remote: RwLock<HashMap<PublicKey, Arc<RemoteSession>>>,
    /// Serializes "read the other replicas' sessions, then apply": a read
    /// is never applied after a later one.
    sync: tokio::sync::Mutex<()>,
}

/// The sessions and grants presence is pushed through and judged by.
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    /// The sessions connected here.
    pub sessions: &'a LocalSessions,
    /// The members' grant sets.
    pub grants: &'a GrantTable,
}

impl MeshPresence {
    /// Presence of a freshly loaded mesh: members' last presence as stored.
    pub fn new(states: Vec<(PublicKey, MemberState)>) -> Self {
        MeshPresence {
            member_states: Mutex::new(states.into_iter().collect()),
            remote: RwLock::new(HashMap::new()),
            sync: tokio::sync::Mutex::new(()),
        }
    }

    fn remote(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PublicKey, Arc<RemoteSession>>> {
        self.remote.read().unwrap_or_else(|p| p.into_inner())
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

    /// Tells every session here but `except_conn` about a presence change.
    /// Each session keeps only the latest frame per peer until its socket
    /// task writes it (coalesced, outside its byte budget): a member
    /// changing its presence in a loop costs the others one frame each,
    /// never their connection.
    pub fn broadcast(&self, to: Audience<'_>, peer: PeerPresence, except_conn: u64) {
        let key = match peer.session {
            Some(s) => PresenceKey::Session(s.0),
            None => PresenceKey::Member(peer.member.0),
        };
        let hidden = to
            .grants
            .hides_presence_from_some(&peer.member)
            .then_some(peer.member);
        let frame = text(&BrokerFrame::Presence(PresenceUpdate {
            peer: Box::new(peer),
        }));
        let hidden_frame = hidden.map(|member| {
            let f = text(&BrokerFrame::Presence(PresenceUpdate {
                peer: Box::new(offline_entry(member.0)),
            }));
            (member, f)
        });
        to.sessions.for_each(|s| {
            if s.conn_id == except_conn {
                return;
            }
            match &hidden_frame {
                Some((member, f))
                    if to.grants.decision(member, &s.member, Cap::Presence)
                        != claudemesh_crypto::grants::Decision::Allow =>
                {
                    s.push_presence(PresenceKey::Member(member.0), f.clone());
                }
                _ => s.push_presence(key, frame.clone()),
            }
        });
    }

    /// Every peer as `viewer` sees it: one entry per connected session (here
    /// or on another replica), plus one offline entry for each current
    /// member (`members`, sorted) with no session. A member that refuses
    /// the viewer `presence` is one offline entry with no summary.
    pub fn peers(
        &self,
        to: Audience<'_>,
        members: &[PublicKey],
        viewer: &PublicKey,
    ) -> Vec<PeerPresence> {
        let all = self.all_peers(to.sessions, members);
        let mut hidden_seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(all.len());
        for p in all {
            if to.grants.decision(&p.member, viewer, Cap::Presence)
                == claudemesh_crypto::grants::Decision::Allow
            {
                out.push(p);
            } else if hidden_seen.insert(p.member) {
                out.push(offline_entry(p.member.0));
            }
        }
        out
    }

    fn all_peers(&self, sessions: &LocalSessions, members: &[PublicKey]) -> Vec<PeerPresence> {
        let is_member = |k: &PublicKey| members.binary_search(k).is_ok();
        let sessions = sessions.all();
        let remote: Vec<Arc<RemoteSession>> = self.remote().values().cloned().collect();
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
        for member in members {
            if sessions.iter().any(|s| &s.member == member)
                || remote.iter().any(|r| &r.member == member)
            {
                continue;
            }
            let state = self.member_state(member);
            out.push(PeerPresence {
                member: MemberKey(*member),
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

    /// Holds the presence-sync lock: take it before reading the other
    /// replicas' sessions and keep it until [`MeshPresence::apply_remote`].
    pub async fn sync(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.sync.lock().await
    }

    /// Takes `rows`, just read from the store, as the other replicas'
    /// sessions of `members` (all members if `None`), and tells local
    /// sessions what changed: a new or changed session is pushed as
    /// `presence`; a member whose last session went (here and elsewhere)
    /// is pushed offline, as when its last local session closes. A session
    /// key connected both here and there keeps its newer connection: the
    /// older local one is closed as replaced.
    pub fn apply_remote(
        &self,
        to: Audience<'_>,
        mesh: &MeshId,
        members: Option<&[PublicKey]>,
        rows: Vec<OnlineSession>,
    ) {
        let in_scope = |m: &PublicKey| members.is_none_or(|list| list.contains(m));
        let mut fresh: HashMap<PublicKey, RemoteSession> = HashMap::with_capacity(rows.len());
        for row in rows {
            if !in_scope(&row.member) {
                continue;
            }
            let Some(r) = RemoteSession::from_row(mesh, row) else {
                tracing::warn!(
                    "a stored online session's certificate does not match it; ignoring it"
                );
                continue;
            };
            if let Some(local) = to.sessions.get(&r.session) {
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
            self.broadcast(to, p, 0);
        }
        let now = crate::now_ms();
        for g in gone {
            if !to.sessions.of_member(&g.member).is_empty() || self.has_remote(&g.member) {
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
            self.broadcast(
                to,
                PeerPresence {
                    member: MemberKey(g.member),
                    session: Some(SessionKey(g.session)),
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

    /// Forgets another replica's row of a session that moved here (a
    /// failover): this connection's replaces it.
    pub fn forget_remote(&self, session: &PublicKey) {
        let mut remote = self.remote.write().unwrap_or_else(|p| p.into_inner());
        if !remote.is_empty() {
            remote.remove(session);
        }
    }

    /// Whether `member` has a session on another replica.
    pub fn has_remote(&self, member: &PublicKey) -> bool {
        self.remote().values().any(|r| &r.member == member)
    }

    /// The member of a session connected to another replica.
    pub fn remote_member_of(&self, session: &PublicKey) -> Option<PublicKey> {
        self.remote().get(session).map(|r| r.member)
    }
}

/// What the broker shows a viewer refused `presence`: offline, nothing else.
fn offline_entry(member: PublicKey) -> PeerPresence {
    PeerPresence {
        member: MemberKey(member),
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

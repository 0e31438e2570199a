//! [`MeshState`]: what this device knows and trusts about one mesh: the
//! membership log it verified itself (TM3) and the roster that log yields,
//! its own keys and the epoch root keys it could open, the private topic
//! keys opened from their seals, and the seals that did not open
//! ([`BadSealRecord`], reported, never silent). Also the session details
//! published with presence and the views of peers and sessions.

use std::collections::HashMap;
use std::sync::Mutex;

use claudemesh_crypto::cert::{SessionCert, SessionIdentity};
use claudemesh_crypto::log::{BadSeal, LogEntry, PeerType, Role, Roster, SealScope, verify_log};
use claudemesh_crypto::{EpochRootKey, MeshId, PublicKey, SharedBoxKey, SigningKey, SymmetricKey};
use claudemesh_proto::frames::Status;
use serde::{Deserialize, Serialize};

use crate::error::ClientError;
use crate::home::{MeshConfig, MeshKeys};

/// Lifetime of the session certificates this client issues (30 days).
pub const SESSION_CERT_LIFETIME: u64 = 30 * 24 * 3600;
/// A certificate with less than this left is renewed (7 days).
pub const SESSION_CERT_RENEW_BEFORE: u64 = 7 * 24 * 3600;

/// The plaintext of a session's encrypted presence blob (`summary` in
/// `hello` and `presence_set`), sealed under the epoch's profile key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionProfile {
    /// The session's name (e.g. `alice@api`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One-line summary of what it is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Git branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The repository it works in: the `origin` remote's URL, else the
    /// repository's directory name (peers on other machines match it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
}

/// One connected session of a peer, as this device verified it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    /// Session key (hex).
    pub key: String,
    /// Its name, if it published one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its name is not its member's (`<display name>@…`): it is shown as
    /// `<member>: <name>` and never matched by name, only by key prefix
    /// (see [`session_name_is_members`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub foreign_name: bool,
    /// Status.
    pub status: Status,
    /// Its one-line summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Working directory, git branch and host it published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Git branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Repository (origin URL or directory name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Connected since, unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected_at_ms: Option<u64>,
    /// Whether it takes pushed messages right now.
    pub live_push: bool,
    /// This very connection.
    pub this_session: bool,
}

/// A member of the mesh with what the broker says of its presence.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct PeerView {
    /// Display name (from its encrypted profile), or its short key.
    pub name: String,
    /// Member key (hex).
    pub key: String,
    /// Role.
    pub role: Role,
    /// Peer type, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<PeerType>,
    /// Whether any session is connected.
    pub online: bool,
    /// Status (of its most available session, or the last known one).
    pub status: Status,
    /// Latest summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Last seen, unix ms (for offline members).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_ms: Option<u64>,
    /// Connected sessions.
    pub sessions: Vec<SessionView>,
    /// This device's own member.
    pub you: bool,
}

/// A key sealed to this member that it cannot use (see [`BadSeal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSealRecord {
    /// Which key, who sealed it, where, and what is wrong.
    pub seal: BadSeal,
    /// Found in log entries this process fetched (not in the log it had
    /// stored when it started): news to report.
    pub fresh: bool,
}

/// A bad seal as users see it: with the author's display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadSealReport {
    /// `mesh` or `topic`.
    pub kind: &'static str,
    /// The mesh epoch, or the topic's key epoch.
    pub epoch: u64,
    /// The topic (without `#`), for a topic key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The author's display name (or short key).
    pub author_name: String,
    /// The author's member key (hex).
    pub author: String,
    /// The log entry that sealed it.
    pub seq: u64,
    /// `does not open` or `does not match its confirmation`.
    pub reason: String,
    /// The key is the current one (of the mesh, or of the topic) and this
    /// device holds no good copy of it: messages under it cannot be read or
    /// sent until a new key is written.
    pub current: bool,
    /// Found since this process started.
    pub fresh: bool,
}

impl BadSealReport {
    /// One loud line for stderr.
    pub fn warning(&self) -> String {
        let short_key = &self.author[..self.author.len().min(8)];
        let what = match &self.topic {
            Some(t) => format!("key of #{t} (key epoch {})", self.epoch),
            None => format!("mesh key of epoch {}", self.epoch),
        };
        let reason = if self.reason.contains("confirmation") {
            "holds a different key than the log confirms"
        } else {
            "does not open"
        };
        let tail = if self.current {
            match &self.topic {
                Some(t) => format!(
                    "; you cannot read or post to #{t} until its key is rotated (any member of #{t} can: post to it, or ask one of them)"
                ),
                None => "; you cannot read or send to the whole mesh until a new key is written (ask an owner or admin to run `claudemesh mesh rekey`)".to_owned(),
            }
        } else {
            "; messages sealed under it cannot be read on this device (a newer key replaced it)"
                .to_owned()
        };
        format!(
            "WARNING: the {what} that {} ({short_key}) sealed to you in log entry {} {reason}{tail}.",
            self.author_name, self.seq
        )
    }
}

/// The verified state of one mesh on this device.
pub struct MeshState {
    /// Local settings.
    pub config: MeshConfig,
    pub(super) keys: MeshKeys,
    pub(super) entries: Vec<LogEntry>,
    pub(super) roster: Roster,
    pub(super) session: SessionIdentity,
    /// Session certificates verified against the roster, by session key.
    pub(super) verified_sessions: HashMap<PublicKey, SessionCert>,
    /// Precomputed `crypto_box` keys per (peer key, my key).
    pub(super) shared: Mutex<HashMap<(PublicKey, PublicKey), SharedBoxKey>>,
    /// Sender certificates whose signature verified, by session key.
    pub(super) cert_signatures: Mutex<HashMap<PublicKey, SessionCert>>,
    /// Private topic keys opened from their seals: (topic, key epoch) → key.
    pub(super) topic_keys: HashMap<(String, u64), SymmetricKey>,
    /// Keys sealed to this member that it cannot use, in log order.
    pub(super) bad_seals: Vec<BadSealRecord>,
    /// Whether the state was already assembled (later bad seals are fresh).
    pub(super) loaded: bool,
}

impl std::fmt::Debug for MeshState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshState")
            .field("mesh", &self.config.id)
            .field("len", &self.roster.len())
            .finish_non_exhaustive()
    }
}

impl MeshState {
    /// Verifies a whole local log and assembles the state. `session` is the
    /// session this connection acts as.
    pub fn new(
        config: MeshConfig,
        keys: MeshKeys,
        entries: Vec<LogEntry>,
        session: SessionIdentity,
    ) -> Result<Self, ClientError> {
        let roster = verify_log(&entries).map_err(|e| {
            ClientError::Local(format!(
                "the membership log stored on this device does not verify ({e}); it was altered"
            ))
        })?;
        if roster.mesh_id() != config.id {
            return Err(ClientError::Local(
                "the membership log stored on this device belongs to another mesh".into(),
            ));
        }
        let mut state = MeshState {
            config,
            keys,
            entries,
            roster,
            session,
            verified_sessions: HashMap::new(),
            shared: Mutex::new(HashMap::new()),
            cert_signatures: Mutex::new(HashMap::new()),
            topic_keys: HashMap::new(),
            bad_seals: Vec::new(),
            loaded: false,
        };
        state.open_root_keys();
        state.open_topic_keys();
        state.loaded = true;
        Ok(state)
    }

    /// The verified roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The verified entries.
    pub fn entries(&self) -> &[LogEntry] {
        &self.entries
    }

    /// The mesh id.
    pub fn mesh_id(&self) -> MeshId {
        self.config.id
    }

    /// This device's member key.
    pub fn member_key(&self) -> &SigningKey {
        &self.keys.member
    }

    /// This member's key.
    pub fn my_key(&self) -> PublicKey {
        self.member_key().public()
    }

    /// Whether this member is the mesh's owner or an admin.
    pub fn is_admin(&self) -> bool {
        matches!(
            self.roster().role_of(&self.my_key()),
            Some(Role::Owner | Role::Admin)
        )
    }

    /// The session this connection acts as.
    pub fn session(&self) -> &SessionIdentity {
        &self.session
    }

    /// Acts as `session` from now on (the same session key with a renewed
    /// certificate).
    pub fn set_session(&mut self, session: SessionIdentity) {
        self.session = session;
    }

    /// The keys (to save after new root keys were opened).
    pub fn keys(&self) -> &MeshKeys {
        &self.keys
    }

    /// Checks that `new` extends the verified log, returning the roster it
    /// yields; nothing changes until [`MeshState::extend`].
    pub fn verify_extension(&self, new: &[LogEntry]) -> Result<Roster, ClientError> {
        let mut roster = self.roster.clone();
        for e in new {
            if e.seq < roster.len() {
                // Already have it: it must be the very same entry.
                let ours = self
                    .entries
                    .get(usize::try_from(e.seq).unwrap_or(usize::MAX));
                if ours != Some(e) {
                    return Err(ClientError::LogFork(e.seq));
                }
                continue;
            }
            roster.apply(e).map_err(ClientError::LogInvalid)?;
        }
        Ok(roster)
    }

    /// Adopts entries checked by [`MeshState::verify_extension`]. Returns
    /// whether new root keys were opened (the caller saves the keys).
    pub fn extend(&mut self, new: Vec<LogEntry>, roster: Roster) -> bool {
        let have = self.roster.len();
        self.entries
            .extend(new.into_iter().filter(|e| e.seq >= have));
        self.roster = roster;
        self.open_topic_keys();
        self.open_root_keys()
    }

    /// Records a bad seal once.
    fn record_bad_seal(&mut self, seal: BadSeal) {
        if self.bad_seals.iter().any(|b| b.seal.scope == seal.scope) {
            return;
        }
        tracing::warn!(
            key = %seal.scope,
            author = %short(&seal.author),
            seq = seal.seq,
            reason = %seal.reason,
            "a key sealed to this member cannot be used"
        );
        self.bad_seals.push(BadSealRecord {
            seal,
            fresh: self.loaded,
        });
    }

    /// Whether a bad seal of `scope` is already recorded.
    fn is_bad(&self, scope: &SealScope) -> bool {
        self.bad_seals.iter().any(|b| b.seal.scope == *scope)
    }

    /// Opens the key of every private-topic key epoch sealed to my member
    /// key that is not in the cache yet, each checked against its key
    /// epoch's confirmation. A bad seal is recorded (messages under that
    /// key then fail as `NoKey`, and are reported, never shown) and keeps
    /// no other key epoch from opening.
    fn open_topic_keys(&mut self) {
        let me = self.keys.member.public();
        let mut opened = Vec::new();
        let mut bad = Vec::new();
        for (name, info) in self.roster.topics() {
            if !info.private {
                continue;
            }
            for (epoch, ke) in &info.key_epochs {
                let id = (name.clone(), *epoch);
                let scope = SealScope::Topic {
                    topic: name.clone(),
                    key_epoch: *epoch,
                };
                if self.topic_keys.contains_key(&id)
                    || !ke.seals.contains_key(&me)
                    || self.is_bad(&scope)
                {
                    continue;
                }
                match ke.open(&self.keys.member, &self.config.id, &scope) {
                    Some(Ok(k)) => opened.push((id, k)),
                    Some(Err(b)) => bad.push(*b),
                    None => {}
                }
            }
        }
        self.topic_keys.extend(opened);
        for b in bad {
            self.record_bad_seal(b);
        }
    }

    /// The key of a private topic's key epoch, if this member holds it.
    pub fn private_topic_key(&self, topic: &str, epoch: u64) -> Option<&SymmetricKey> {
        self.topic_keys.get(&(topic.to_owned(), epoch))
    }

    /// Opens every root key sealed to my member key that I do not hold
    /// yet, one epoch at a time, each checked against the epoch's key
    /// confirmation; a bad seal is recorded and keeps no other epoch from
    /// opening. Returns whether any key was new.
    fn open_root_keys(&mut self) -> bool {
        let me = self.keys.member.public();
        let mut opened = Vec::new();
        let mut bad = Vec::new();
        for (epoch, ke) in self.roster.key_epochs() {
            if self.keys.roots.contains_key(epoch)
                || !ke.seals.contains_key(&me)
                || self.is_bad(&SealScope::Mesh { epoch: *epoch })
            {
                continue;
            }
            match self.roster.open_root_key(*epoch, &self.keys.member) {
                Some(Ok(root)) => opened.push(root),
                Some(Err(b)) => bad.push(*b),
                None => {}
            }
        }
        let new = !opened.is_empty();
        for root in opened {
            self.keys.roots.entry(root.epoch).or_insert(root);
        }
        for b in bad {
            self.record_bad_seal(b);
        }
        new
    }

    /// Keys sealed to this member that it cannot use, in log order.
    pub fn bad_seals(&self) -> &[BadSealRecord] {
        &self.bad_seals
    }

    /// Whether this device lacks the root key of the current mesh epoch
    /// (its seal was bad, or it joined with an invite of an earlier epoch).
    pub fn lacks_current_root(&self) -> bool {
        self.root(self.roster.epoch()).is_none()
    }

    /// Whether this member is in the private topic `topic` and lacks the
    /// key of its current key epoch (its seal was bad).
    pub fn lacks_topic_key(&self, topic: &str) -> bool {
        self.roster.topic(topic).is_some_and(|info| {
            info.private
                && info.members.contains_key(&self.keys.member.public())
                && self.private_topic_key(topic, info.key_epoch).is_none()
        })
    }

    /// A bad seal as users see it.
    pub fn bad_seal_report(&self, b: &BadSealRecord) -> BadSealReport {
        let (kind, epoch, topic, current) = match &b.seal.scope {
            SealScope::Mesh { epoch } => (
                "mesh",
                *epoch,
                None,
                *epoch == self.roster.epoch() && self.lacks_current_root(),
            ),
            SealScope::Topic { topic, key_epoch } => (
                "topic",
                *key_epoch,
                Some(topic.clone()),
                self.roster
                    .topic(topic)
                    .is_some_and(|i| i.key_epoch == *key_epoch)
                    && self.lacks_topic_key(topic),
            ),
        };
        BadSealReport {
            kind,
            epoch,
            topic,
            author_name: self.name_of(&b.seal.author),
            author: b.seal.author.to_hex(),
            seq: b.seal.seq,
            reason: b.seal.reason.to_string(),
            current,
            fresh: b.fresh,
        }
    }

    /// Every bad seal as users see it, in log order.
    pub fn bad_seal_reports(&self) -> Vec<BadSealReport> {
        self.bad_seals
            .iter()
            .map(|b| self.bad_seal_report(b))
            .collect()
    }

    /// The root key of an epoch, if this device holds it.
    pub fn root(&self, epoch: u64) -> Option<&EpochRootKey> {
        self.keys.roots.get(&epoch)
    }

    /// The newest root key this device holds.
    pub fn newest_root(&self) -> Option<&EpochRootKey> {
        self.keys.roots.values().next_back()
    }
}

/// First 8 hex digits of a key.
pub fn short(k: &PublicKey) -> String {
    k.to_hex()[..8].to_owned()
}

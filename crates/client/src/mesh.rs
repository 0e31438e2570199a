//! What this device knows and trusts about one mesh: the membership log it
//! verified itself (TM3) and the roster that log yields, its own keys and
//! the epoch root keys it could open, the session certificates it verified,
//! and everything derived from them: display names (decrypted profiles),
//! who a name or key prefix means, how to seal a message to them, and how to
//! open one from them — including the keys of fan-out targets: the mesh key
//! of an epoch (`*`, `@group`), a public topic's key derived from it, and
//! the random keys of the private topics this member is in (opened from
//! their seals in the log and cached here). Keys are opened one epoch at a
//! time and checked against the key confirmation in the log; a seal that
//! does not open or does not match is recorded as a [`BadSeal`] naming its
//! author, reported to the user, and keeps no other epoch from opening.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use claudemesh_crypto::cert::{SessionCert, SessionIdentity};
use claudemesh_crypto::envelope::{
    Envelope, EnvelopeHeader, MessageId, OpeningKeys, Priority, SealingKey, Target,
};
use claudemesh_crypto::log::{
    BadSeal, LogEntry, PeerType, Profile, Role, Roster, SealScope, verify_log,
};
use claudemesh_crypto::{
    EpochRootKey, Hash32, Nonce, PublicKey, SharedBoxKey, SigningKey, SymmetricKey,
};
use claudemesh_proto::ErrorCode;
use claudemesh_proto::frames::{EncryptedBlob, PeerPresence, Status};
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, SessionNameProblem};
use crate::home::{MeshConfig, MeshKeys};
use crate::lookalike;
use crate::pins::Pins;

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
    keys: MeshKeys,
    entries: Vec<LogEntry>,
    roster: Roster,
    session: SessionIdentity,
    /// Session certificates verified against the roster, by session key.
    verified_sessions: HashMap<PublicKey, SessionCert>,
    /// Precomputed `crypto_box` keys per (peer key, my key).
    shared: Mutex<HashMap<(PublicKey, PublicKey), SharedBoxKey>>,
    /// Sender certificates whose signature verified, by session key.
    cert_signatures: Mutex<HashMap<PublicKey, SessionCert>>,
    /// Private topic keys opened from their seals: (topic, key epoch) → key.
    topic_keys: HashMap<(String, u64), SymmetricKey>,
    /// Keys sealed to this member that it cannot use, in log order.
    bad_seals: Vec<BadSealRecord>,
    /// Whether the state was already assembled (later bad seals are fresh).
    loaded: bool,
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
    pub fn mesh_id(&self) -> Hash32 {
        self.config.id
    }

    /// This device's member key.
    pub fn member_key(&self) -> &SigningKey {
        &self.keys.member
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

    /// A member's decrypted profile, if this device can read it.
    pub fn profile(&self, member: &PublicKey) -> Option<Profile> {
        let sealed = self.roster.member(member)?.profile.as_ref()?;
        let root = self.root(sealed.epoch)?;
        Profile::open(root, &self.config.id, &sealed.nonce, &sealed.ciphertext).ok()
    }

    /// A member's display name, or its short key.
    pub fn display_name(&self, member: &PublicKey) -> String {
        self.profile(member)
            .map(|p| p.name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| short(member))
    }

    /// The display name of any key this log ever admitted: a current
    /// member's from its profile; a departed one's from the last profile it
    /// published (this device may still hold that epoch's key); else the
    /// short key.
    pub fn name_of(&self, key: &PublicKey) -> String {
        if self.roster.is_member(key) {
            return self.display_name(key);
        }
        self.entries
            .iter()
            .rev()
            .find_map(|e| match &e.body {
                claudemesh_crypto::log::EntryBody::Profile {
                    epoch,
                    nonce,
                    ciphertext,
                } if e.author == *key => {
                    let root = self.root(*epoch)?;
                    Profile::open(root, &self.config.id, nonce, ciphertext)
                        .ok()
                        .map(|p| p.name)
                        .filter(|n| !n.is_empty())
                }
                _ => None,
            })
            .unwrap_or_else(|| short(key))
    }

    /// The member whose display name is `name`, if exactly one member's
    /// name looks like `name` (see [`MeshState::resolve`]) and that name is
    /// `name` (any case, compatibility forms alike).
    pub fn member_named(&self, name: &str) -> Option<PublicKey> {
        match self.members_named_as_candidates(name).as_slice() {
            [(_, Target::Member(k), true)] => Some(*k),
            _ => None,
        }
    }

    /// The display name of every key this device can name: current members
    /// (from their profiles, else their short keys) and departed members
    /// whose last profile this device can still open.
    fn known_names(&self) -> HashMap<PublicKey, String> {
        let mut names: HashMap<PublicKey, String> = self
            .roster
            .members()
            .keys()
            .map(|m| (*m, self.display_name(m)))
            .collect();
        // A departed member: its last profile this device can open.
        for e in self.entries.iter().rev() {
            if let claudemesh_crypto::log::EntryBody::Profile {
                epoch,
                nonce,
                ciphertext,
            } = &e.body
                && !names.contains_key(&e.author)
                && let Some(name) = self
                    .root(*epoch)
                    .and_then(|root| Profile::open(root, &self.config.id, nonce, ciphertext).ok())
                    .map(|p| p.name)
                    .filter(|n| !n.is_empty())
            {
                names.insert(e.author, name);
            }
        }
        names
    }

    /// How senders are named where their messages are shown; build it once
    /// per listing and ask [`SenderLabels::label`] per message.
    pub fn sender_labels(&self, pins: &Pins) -> SenderLabels {
        SenderLabels::new(self.known_names(), pins)
    }

    /// How one sender is named where its messages are shown (see
    /// [`SenderLabels::label`]).
    pub fn sender_label(&self, member: &PublicKey, pins: &Pins) -> Label {
        self.sender_labels(pins).label(self, member)
    }

    /// Seals a presence blob under the newest profile key.
    pub fn seal_presence(&self, info: &SessionProfile) -> Option<EncryptedBlob> {
        let root = self.newest_root()?;
        let json = serde_json::to_vec(info).ok()?;
        let nonce = Nonce::random();
        Some(EncryptedBlob {
            epoch: root.epoch,
            ciphertext: root.profile_key(&self.config.id).encrypt(&json, &nonce),
            nonce,
        })
    }

    /// Opens a presence blob.
    pub fn open_presence(&self, blob: &EncryptedBlob) -> Option<SessionProfile> {
        let root = self.root(blob.epoch)?;
        let pt = root
            .profile_key(&self.config.id)
            .decrypt(&blob.ciphertext, &blob.nonce)
            .ok()?;
        serde_json::from_slice(&pt).ok()
    }

    /// Records a session certificate if it verifies and chains to a current
    /// member; returns whether it did.
    pub fn learn_session(&mut self, cert: &SessionCert, now_secs: u64) -> bool {
        if cert.verify(&self.config.id, now_secs).is_err() || !self.roster.is_member(&cert.member) {
            return false;
        }
        self.verified_sessions.insert(cert.session, cert.clone());
        true
    }

    /// Builds the peer list: every verified member with what the broker
    /// reports of its sessions. Entries for keys the log does not admit are
    /// dropped (the broker cannot invent peers), and sessions are shown only
    /// with a certificate that verifies.
    pub fn peer_views(&mut self, presences: &[PeerPresence], now_secs: u64) -> Vec<PeerView> {
        let mut by_member: BTreeMap<PublicKey, Vec<&PeerPresence>> = BTreeMap::new();
        for p in presences {
            if self.roster.is_member(&p.member) {
                by_member.entry(p.member).or_default().push(p);
            }
        }
        for p in presences {
            if let Some(cert) = &p.cert {
                self.learn_session(cert, now_secs);
            }
        }
        let me = self.keys.member.public();
        let mut out = Vec::new();
        for (member, info) in self.roster.members() {
            let reports = by_member.get(member).cloned().unwrap_or_default();
            let profile = self.profile(member);
            let member_name = profile.as_ref().map(|p| p.name.as_str()).unwrap_or("");
            let mut sessions = Vec::new();
            let mut offline: Option<&PeerPresence> = None;
            for p in &reports {
                match (&p.session, p.online) {
                    (Some(s), true)
                        if self
                            .verified_sessions
                            .get(s)
                            .is_some_and(|c| &c.member == member) =>
                    {
                        let prof = p.summary.as_ref().and_then(|b| self.open_presence(b));
                        let prof = prof.unwrap_or_default();
                        sessions.push(SessionView {
                            key: s.to_hex(),
                            foreign_name: prof
                                .name
                                .as_deref()
                                .is_some_and(|n| !session_name_is_members(member_name, n)),
                            name: prof.name,
                            status: p.status,
                            summary: prof.summary,
                            cwd: prof.cwd,
                            branch: prof.branch,
                            repo: prof.repo,
                            host: prof.host,
                            connected_at_ms: p.connected_at_ms,
                            live_push: p.live_push,
                            this_session: *s == self.session.public(),
                        });
                    }
                    (_, false) => offline = Some(p),
                    _ => {}
                }
            }
            let best = sessions
                .iter()
                .find(|s| s.status == Status::Idle)
                .or_else(|| sessions.first());
            let status = best
                .map(|s| s.status)
                .or(offline.map(|p| p.status))
                .unwrap_or_default();
            let summary = best.and_then(|s| s.summary.clone()).or_else(|| {
                offline
                    .and_then(|p| p.summary.as_ref())
                    .and_then(|b| self.open_presence(b))
                    .and_then(|p| p.summary)
            });
            out.push(PeerView {
                name: profile
                    .as_ref()
                    .map(|p| p.name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| short(member)),
                key: member.to_hex(),
                role: info.role,
                peer_type: profile.map(|p| p.peer_type),
                online: !sessions.is_empty(),
                status,
                summary,
                last_seen_ms: if sessions.is_empty() {
                    offline.and_then(|p| p.last_seen_ms)
                } else {
                    None
                },
                sessions,
                you: *member == me,
            });
        }
        out.sort_by(|a, b| {
            (!a.online, a.name.to_lowercase()).cmp(&(!b.online, b.name.to_lowercase()))
        });
        out
    }

    /// The member a direct target reaches (a session's member from its
    /// verified certificate); `None` for fan-out targets.
    pub fn member_of_target(&self, target: &Target) -> Option<PublicKey> {
        match target {
            Target::Member(k) => Some(*k),
            Target::Session(s) => self.verified_sessions.get(s).map(|c| c.member),
            Target::Group(_) | Target::Topic(_) | Target::Broadcast => None,
        }
    }

    /// Resolves what a user typed as a recipient: `member:<hex>`,
    /// `session:<hex>`, a key prefix of at least 8 hex digits, a display
    /// name, or a session name `<member>@<name>` (from `peers`), which is
    /// looked for only among the sessions of the one member whose display
    /// name is the part before the first `@` (a session names itself, so
    /// its name alone proves nothing). Only verified members and sessions
    /// with verified certificates can be named.
    ///
    /// Display names are compared as a reader sees them (TM8, see
    /// [`crate::lookalike`]): every member whose name looks like what was
    /// typed (same skeleton: `alice`, `аlice` with a Cyrillic `а`,
    /// `alice\u{200B}`) is a candidate, so two of them are ambiguous and
    /// need a key prefix; one alone is reached only when its name is what
    /// was typed (any case), else [`ClientError::LookAlikePeer`].
    pub fn resolve(&self, to: &str, peers: &[PeerView]) -> Result<Target, ClientError> {
        let to = to.trim();
        // `@all` is what users of the TypeScript claudemesh type for a
        // broadcast; it means `*` unless a group is really named `all`.
        if to.eq_ignore_ascii_case("@all") && !self.roster.groups().contains_key(&to[1..]) {
            return Ok(Target::Broadcast);
        }
        if to == "*" || to.starts_with('@') || to.starts_with('#') {
            let target: Target = to
                .parse()
                .map_err(|e| ClientError::Invalid(format!("{to:?}: {e}")))?;
            self.check_fanout_target(&target)?;
            return Ok(target);
        }
        if let Some(hex) = to
            .strip_prefix("member:")
            .or_else(|| to.strip_prefix("session:"))
        {
            let key = PublicKey::from_hex(hex)
                .map_err(|_| ClientError::Invalid(format!("{to:?} is not a valid key")))?;
            return if to.starts_with("member:") {
                if self.roster.is_member(&key) {
                    Ok(Target::Member(key))
                } else {
                    Err(ClientError::NoSuchPeer(to.to_owned()))
                }
            } else if self.verified_sessions.contains_key(&key) {
                Ok(Target::Session(key))
            } else {
                Err(ClientError::NoSuchPeer(to.to_owned()))
            };
        }
        let lower = to.to_ascii_lowercase();
        let is_hex = lower.len() >= 8 && lower.bytes().all(|b| b.is_ascii_hexdigit());
        let mut found: Vec<(String, Target)> = Vec::new();
        if is_hex {
            for m in self.roster.members().keys() {
                if m.to_hex().starts_with(&lower) {
                    found.push((self.display_name(m), Target::Member(*m)));
                }
            }
            for s in self.verified_sessions.keys() {
                if s.to_hex().starts_with(&lower) {
                    found.push((format!("session {}", short(s)), Target::Session(*s)));
                }
            }
        }
        if found.is_empty() && names_a_session(to) {
            return self.resolve_session_name(to, peers);
        }
        if found.is_empty() {
            let named = self.members_named_as_candidates(to);
            if let [(candidate, _, false)] = named.as_slice() {
                return Err(look_alike(to, to, candidate));
            }
            found = named.into_iter().map(|(label, t, _)| (label, t)).collect();
        }
        match found.len() {
            0 => Err(ClientError::NoSuchPeer(to.to_owned())),
            1 => Ok(found.remove(0).1),
            _ => Err(ambiguous_peer(to, found)),
        }
    }

    /// Members whose display name looks like `name` to a reader (the same
    /// [`lookalike::skeleton`]), as resolution candidates `alice
    /// (1bbf6ba3)`, each with whether its name is exactly `name` (the same
    /// [`lookalike::exact`] form: any case, compatibility forms alike).
    fn members_named_as_candidates(&self, name: &str) -> Vec<(String, Target, bool)> {
        let skeleton = lookalike::skeleton(name);
        if skeleton.is_empty() {
            return Vec::new();
        }
        let exact = lookalike::exact(name);
        self.roster
            .members()
            .keys()
            .filter_map(|m| {
                let p = self.profile(m)?;
                (lookalike::skeleton(&p.name) == skeleton).then(|| {
                    (
                        format!("{} ({})", shown_name(&p.name).0, short(m)),
                        Target::Member(*m),
                        lookalike::exact(&p.name) == exact,
                    )
                })
            })
            .collect()
    }

    /// Resolves a session name `X@Y`: among the connected sessions (in
    /// `peers`) of the one member whose display name is `X` only. When `X`
    /// names no member the whole text may still be a display name; when it
    /// names a member and another member's display name is the whole text,
    /// that is ambiguous, never a silent choice. Names are compared as in
    /// [`MeshState::resolve`]: a member whose name only looks like `X` is
    /// a candidate that makes `X` ambiguous, never the owner.
    fn resolve_session_name(&self, to: &str, peers: &[PeerView]) -> Result<Target, ClientError> {
        let who = to.split_once('@').map_or(to, |(who, _)| who);
        let drop_exact = |found: Vec<(String, Target, bool)>| -> Vec<(String, Target)> {
            found.into_iter().map(|(label, t, _)| (label, t)).collect()
        };
        let owners = self.members_named_as_candidates(who);
        let named_so = self.members_named_as_candidates(to);
        match (owners.as_slice(), named_so.as_slice()) {
            ([(candidate, _, false)], []) => return Err(look_alike(to, who, candidate)),
            ([], [(candidate, _, false)]) => return Err(look_alike(to, to, candidate)),
            _ => {}
        }
        let (owners, named_so) = (drop_exact(owners), drop_exact(named_so));
        let ambiguous = |found: Vec<(String, Target)>| ambiguous_peer(to, found);
        let owner = match (owners.as_slice(), named_so.len()) {
            ([], 0) => {
                return Err(ClientError::SessionName {
                    query: to.to_owned(),
                    problem: SessionNameProblem::NoMember {
                        member: who.to_owned(),
                    },
                });
            }
            ([], 1) => return Ok(named_so[0].1.clone()),
            ([], _) => return Err(ambiguous(named_so)),
            (_, 1..) => {
                let mut found: Vec<(String, Target)> = named_so
                    .into_iter()
                    .map(|(label, t)| (format!("the member {label}"), t))
                    .collect();
                found.extend(
                    owners
                        .into_iter()
                        .map(|(label, t)| (format!("a session of {label}"), t)),
                );
                return Err(ambiguous(found));
            }
            ([(label, Target::Member(k))], 0) => (label.clone(), *k),
            (_, 0) => {
                return Err(ClientError::SessionName {
                    query: to.to_owned(),
                    problem: SessionNameProblem::AmbiguousMember {
                        member: who.to_owned(),
                        candidates: owners
                            .into_iter()
                            .map(|f| f.0)
                            .collect::<Vec<_>>()
                            .join(", "),
                    },
                });
            }
        };
        let (owner_label, owner_key) = owner;
        let owner_hex = owner_key.to_hex();
        let mut found: Vec<(String, Target)> = Vec::new();
        for p in peers.iter().filter(|p| p.key == owner_hex) {
            for s in &p.sessions {
                if s.name
                    .as_deref()
                    .is_some_and(|n| lookalike::exact(n) == lookalike::exact(to))
                    && let Ok(k) = PublicKey::from_hex(&s.key)
                    && self
                        .verified_sessions
                        .get(&k)
                        .is_some_and(|c| c.member == owner_key)
                {
                    found.push((
                        format!("session {} of {owner_label}", short(&k)),
                        Target::Session(k),
                    ));
                }
            }
        }
        match found.len() {
            0 => Err(ClientError::SessionName {
                query: to.to_owned(),
                problem: SessionNameProblem::NotOnline {
                    member: owner_label,
                },
            }),
            1 => Ok(found.remove(0).1),
            _ => Err(ambiguous(found)),
        }
    }

    /// Checks that a fan-out target names something in the verified log:
    /// `#topic` a topic that exists, `@group` a group with members now
    /// (itself or below it); `*` always does.
    pub fn check_fanout_target(&self, target: &Target) -> Result<(), ClientError> {
        match target {
            Target::Topic(t) if self.roster.topic(t).is_none() => Err(self.no_such_topic(t)),
            Target::Group(g) if self.roster.recipients_now(target).is_empty() => {
                let groups: Vec<String> = self
                    .roster
                    .groups()
                    .iter()
                    .filter(|(_, info)| !info.members.is_empty())
                    .map(|(name, _)| format!("@{name}"))
                    .collect();
                let known = if groups.is_empty() {
                    "this mesh has no groups yet (`claudemesh group join @<name>`)".to_owned()
                } else {
                    format!("groups: {}", groups.join(", "))
                };
                Err(ClientError::NotFound(format!(
                    "no group @{g} with members in this mesh; {known}. To message one person, give their name without @"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The error for a topic name the log does not know.
    pub fn no_such_topic(&self, topic: &str) -> ClientError {
        let topics: Vec<String> = self
            .roster
            .topics()
            .keys()
            .map(|t| format!("#{t}"))
            .collect();
        let known = if topics.is_empty() {
            "this mesh has no topics yet (`claudemesh topic create <name>`)".to_owned()
        } else {
            format!("topics: {}", topics.join(", "))
        };
        ClientError::NotFound(format!("no topic #{topic} in this mesh; {known}"))
    }

    /// The key and key epoch a fan-out message to `target` is sealed
    /// under now: the mesh key of the current epoch (`*`, `@group`), the
    /// public topic key of the current epoch, or a private topic's own key
    /// of its current key epoch (this member must be in the topic, and the
    /// topic must not be waiting for a `topic_rekey`).
    pub fn sealing_key(&self, target: &Target) -> Result<(u64, SymmetricKey), ClientError> {
        let no_root = || {
            ClientError::Invalid(
                "this device does not hold the mesh key of the current epoch".into(),
            )
        };
        let epoch = self.roster.epoch();
        match target {
            Target::Broadcast | Target::Group(_) => {
                let root = self.root(epoch).ok_or_else(no_root)?;
                Ok((epoch, root.mesh_key(&self.config.id)))
            }
            Target::Topic(t) => {
                let info = self.roster.topic(t).ok_or_else(|| self.no_such_topic(t))?;
                if !info.private {
                    let root = self.root(epoch).ok_or_else(no_root)?;
                    return Ok((epoch, root.topic_key(&self.config.id, t.as_bytes())));
                }
                if !info.members.contains_key(&self.keys.member.public()) {
                    return Err(ClientError::NotAllowed(format!(
                        "#{t} is a private topic and you are not in it; only its members can post (ask one of them to add you: `claudemesh topic add {t} <your name>`)"
                    )));
                }
                if info.needs_rekey {
                    return Err(ClientError::Refused {
                        code: ErrorCode::RekeyRequired,
                        message: format!(
                            "a member left the private topic #{t}; its key must rotate (topic_rekey) before anyone posts"
                        ),
                    });
                }
                let key = self
                    .private_topic_key(t, info.key_epoch)
                    .cloned()
                    .ok_or_else(|| {
                        ClientError::Invalid(format!(
                            "this device could not open the key of #{t} (key epoch {})",
                            info.key_epoch
                        ))
                    })?;
                Ok((info.key_epoch, key))
            }
            Target::Member(_) | Target::Session(_) => Err(ClientError::Invalid(
                "a direct message has no symmetric key".into(),
            )),
        }
    }

    /// Seals and signs a message as this session, under a fresh id.
    pub fn seal(
        &self,
        target: Target,
        body: &[u8],
        priority: Priority,
        reply_to: Option<MessageId>,
        sent_at_ms: u64,
    ) -> Result<Envelope, ClientError> {
        self.seal_as(
            MessageId::random(),
            target,
            body,
            priority,
            reply_to,
            sent_at_ms,
        )
    }

    /// Seals and signs a message with a given id (a message resealed under
    /// a new key keeps its id, so the broker stores it once).
    pub fn seal_as(
        &self,
        id: MessageId,
        target: Target,
        body: &[u8],
        priority: Priority,
        reply_to: Option<MessageId>,
        sent_at_ms: u64,
    ) -> Result<Envelope, ClientError> {
        let symmetric = if target.is_direct() {
            None
        } else {
            Some(self.sealing_key(&target)?)
        };
        let header = EnvelopeHeader {
            mesh: self.config.id,
            epoch: symmetric
                .as_ref()
                .map_or(self.roster.epoch(), |(epoch, _)| *epoch),
            target: target.clone(),
            id,
            reply_to,
            priority,
            sent_at: sent_at_ms,
            log_head: self.roster.head(),
        };
        match &target {
            Target::Member(k) | Target::Session(k) => {
                let known = match &target {
                    Target::Member(_) => self.roster.is_member(k),
                    _ => self.verified_sessions.contains_key(k),
                };
                if !known {
                    return Err(ClientError::NoSuchPeer(short(k)));
                }
                let shared = self.shared_key(k, &self.session.key)?;
                Ok(Envelope::seal(
                    &self.session,
                    header,
                    body,
                    SealingKey::DirectShared(&shared),
                )?)
            }
            Target::Group(_) | Target::Topic(_) | Target::Broadcast => {
                let (_, key) = symmetric.ok_or_else(|| {
                    ClientError::Invalid("no key to seal a fan-out message".into())
                })?;
                Ok(Envelope::seal(
                    &self.session,
                    header,
                    body,
                    SealingKey::Symmetric(&key),
                )?)
            }
        }
    }

    fn shared_key(&self, peer: &PublicKey, mine: &SigningKey) -> Result<SharedBoxKey, ClientError> {
        let id = (*peer, mine.public());
        if let Ok(cache) = self.shared.lock()
            && let Some(k) = cache.get(&id)
        {
            return Ok(k.clone());
        }
        let k = SharedBoxKey::new(&peer.to_box_public(), &mine.to_box_secret())
            .map_err(|e| ClientError::Invalid(format!("cannot encrypt to {}: {e}", short(peer))))?;
        if let Ok(mut cache) = self.shared.lock() {
            if cache.len() > 4096 {
                cache.clear();
            }
            cache.insert(id, k.clone());
        }
        Ok(k)
    }
}

impl OpeningKeys for MeshState {
    fn member_key(&self) -> &SigningKey {
        &self.keys.member
    }

    fn session_key(&self) -> Option<&SigningKey> {
        Some(&self.session.key)
    }

    /// `*` and `@group`: the mesh key of `epoch`. `#topic`: for a public
    /// topic its key derived from the root of `epoch`; for a private one
    /// its own key of key epoch `epoch`. A topic the verified log does not
    /// know has no key (the caller syncs the log and tries again).
    fn symmetric_key(&self, target: &Target, epoch: u64) -> Option<SymmetricKey> {
        match target {
            Target::Group(_) | Target::Broadcast => {
                Some(self.root(epoch)?.mesh_key(&self.config.id))
            }
            Target::Topic(t) => {
                let info = self.roster.topic(t)?;
                if info.private {
                    self.private_topic_key(t, epoch).cloned()
                } else {
                    Some(self.root(epoch)?.topic_key(&self.config.id, t.as_bytes()))
                }
            }
            Target::Member(_) | Target::Session(_) => None,
        }
    }

    fn cert_signature_known(&self, cert: &SessionCert) -> bool {
        self.cert_signatures
            .lock()
            .is_ok_and(|c| c.get(&cert.session) == Some(cert))
    }

    fn remember_cert_signature(&self, cert: &SessionCert) {
        if let Ok(mut c) = self.cert_signatures.lock() {
            if c.len() > 4096 {
                c.clear();
            }
            c.insert(cert.session, cert.clone());
        }
    }

    fn shared_box_key(&self, sender_session: &PublicKey, mine: &PublicKey) -> Option<SharedBoxKey> {
        let key = if *mine == self.keys.member.public() {
            &self.keys.member
        } else if *mine == self.session.public() {
            &self.session.key
        } else {
            return None;
        };
        self.shared_key(sender_session, key).ok()
    }
}

/// The session a connection acts as: the stored one by `name`, renewed if
/// its certificate expires within `renew_before` seconds (normally
/// [`SESSION_CERT_RENEW_BEFORE`]), or a new one. Returns whether the keys
/// changed (the caller saves them).
pub fn session_for(
    keys: &mut MeshKeys,
    mesh_id: Hash32,
    name: &str,
    now_secs: u64,
    renew_before: u64,
) -> Result<(SessionIdentity, bool), ClientError> {
    if let Some(s) = keys.sessions.get(name)
        && s.cert.expires_at > now_secs.saturating_add(renew_before)
        && s.cert.issued_at <= now_secs + 300
        && s.cert.mesh_id == mesh_id
    {
        return Ok((s.clone(), false));
    }
    Ok((renew_session(keys, mesh_id, name, now_secs)?, true))
}

/// Certifies the session `name` anew from `now_secs`, for
/// [`SESSION_CERT_LIFETIME`], with the member key: the same session key
/// (a new one if there is none yet), stored in `keys` (the caller saves
/// them).
pub fn renew_session(
    keys: &mut MeshKeys,
    mesh_id: Hash32,
    name: &str,
    now_secs: u64,
) -> Result<SessionIdentity, ClientError> {
    // Keep the session key across renewals so peers' references stay valid.
    let key = keys
        .sessions
        .get(name)
        .map(|s| s.key.clone())
        .unwrap_or_else(SigningKey::generate);
    let cert = SessionCert::issue(
        &keys.member,
        mesh_id,
        key.public(),
        now_secs,
        SESSION_CERT_LIFETIME,
    )
    .map_err(|e| ClientError::Local(format!("cannot certify a session: {e}")))?;
    let identity = SessionIdentity { key, cert };
    keys.sessions.insert(name.to_owned(), identity.clone());
    Ok(identity)
}

/// The session `current` (its key) certified anew from `now_secs` by
/// `member`, for [`SESSION_CERT_LIFETIME`].
pub fn recertify(
    member: &SigningKey,
    mesh_id: Hash32,
    current: &SessionIdentity,
    now_secs: u64,
) -> Result<SessionIdentity, ClientError> {
    let cert = SessionCert::issue(
        member,
        mesh_id,
        current.key.public(),
        now_secs,
        SESSION_CERT_LIFETIME,
    )
    .map_err(|e| ClientError::Local(format!("cannot certify a session: {e}")))?;
    Ok(SessionIdentity {
        key: current.key.clone(),
        cert,
    })
}

/// An ephemeral session (never stored), for benchmarks and one-off tools.
pub fn ephemeral_session(
    member: &SigningKey,
    mesh_id: Hash32,
    now_secs: u64,
) -> Result<SessionIdentity, ClientError> {
    SessionIdentity::new(member, mesh_id, now_secs, SESSION_CERT_LIFETIME)
        .map_err(|e| ClientError::Local(format!("cannot certify a session: {e}")))
}

/// How a member is named where its messages are shown (TM8). A display name
/// is chosen by its member, so two members can pick the same one, or one
/// that looks the same (`аlice` with a Cyrillic `а`, `alice` with a
/// zero-width space), or the name of someone this device verified: the
/// text then carries the short key, and the verified one says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    /// What to print: `alice`, `alice (3fa2c1d0)` when the name does not
    /// tell this member apart, `alice (3fa2c1d0, NOT the alice you
    /// verified)` when it is the name of a pin of another key.
    pub text: String,
    /// The display name as shown (invisible characters replaced by `?`,
    /// parentheses and their look-alikes by brackets), or the short key
    /// when there is none.
    pub name: String,
    /// The member key (hex).
    pub key: String,
    /// The name does not tell this member apart, so the text carries the
    /// short key: another member — current, or departed and known to this
    /// device — bears a name that looks the same, the name had to be
    /// altered to be shown, it is not plain printable ASCII, or it is
    /// shaped like a key prefix that is not this member's.
    pub ambiguous: bool,
    /// The name is one the user verified (`peer verify --mark`) with a
    /// different key.
    pub pin_mismatch: bool,
    /// This very key is pinned.
    pub verified: bool,
    /// The name of the pin this key does not match.
    #[serde(skip)]
    pub pinned_name: Option<String>,
}

impl Label {
    /// The text with the short key always in it (`alice (3fa2c1d0)`), for
    /// confirmations that must say which member was reached.
    pub fn with_key(&self) -> String {
        if self.ambiguous || self.pin_mismatch {
            self.text.clone()
        } else if self.name == self.key[..8.min(self.key.len())] {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, &self.key[..8.min(self.key.len())])
        }
    }
}

/// The names senders bear on this device, and its pins: what
/// [`SenderLabels::label`] needs, gathered once per listing.
#[derive(Debug, Clone)]
pub struct SenderLabels {
    names: HashMap<PublicKey, String>,
    /// Name key ([`name_key`]) → the keys that bear it.
    bearers: HashMap<String, Vec<PublicKey>>,
    /// Pins: (key hex, name key, name).
    pins: Vec<(String, String, String)>,
}

impl SenderLabels {
    /// The labels of the keys in `names` (key → display name), and `pins`.
    fn new(names: HashMap<PublicKey, String>, pins: &Pins) -> SenderLabels {
        let mut bearers: HashMap<String, Vec<PublicKey>> = HashMap::new();
        for (key, name) in &names {
            bearers.entry(name_key(name)).or_default().push(*key);
        }
        SenderLabels {
            names,
            bearers,
            pins: pins
                .pins
                .iter()
                .map(|p| (p.member.clone(), name_key(&p.name), p.name.clone()))
                .collect(),
        }
    }

    /// The one rule for naming a sender wherever its messages are shown
    /// (`inbox`, `topic history`, message status, the MCP server's pushes
    /// and tools): the display name as shown ([`shown_name`]); with the
    /// short key when another member this device knows (current or
    /// departed) bears a name that looks the same ([`name_key`]: any case,
    /// invisible characters, compatibility forms and confusable letters
    /// ignored), the name had to be altered to be shown, it is not plain
    /// printable ASCII, or it is shaped like a key prefix (8+ hex digits)
    /// that is not this member's; marked when the name looks like that of
    /// a pin of another key.
    pub fn label(&self, state: &MeshState, member: &PublicKey) -> Label {
        match self.names.get(member) {
            Some(raw) => self.label_named(member, raw),
            None => self.label_named(member, &state.name_of(member)),
        }
    }

    /// [`SenderLabels::label`] for `member` bearing the display name `raw`.
    fn label_named(&self, member: &PublicKey, raw: &str) -> Label {
        let (name, altered) = shown_name(raw);
        let norm = name_key(raw);
        let hex = member.to_hex();
        let unplain = !lookalike::is_plain(&name);
        let key_shaped =
            lookalike::looks_like_key(&name) && !hex.starts_with(&name.to_ascii_lowercase());
        let shared = self
            .bearers
            .get(&norm)
            .is_some_and(|keys| keys.iter().any(|k| k != member));
        let verified = self.pins.iter().any(|(k, ..)| *k == hex);
        let pinned_name = if verified {
            None
        } else {
            self.pins
                .iter()
                .find(|(k, n, _)| *n == norm && *k != hex)
                .map(|(_, _, name)| shown_name(name).0)
        };
        let ambiguous = shared || altered || unplain || key_shaped;
        let key = short(member);
        let text = if ambiguous || pinned_name.is_some() {
            let mut notes = vec![key.clone()];
            if verified {
                notes.push("verified".into());
            }
            if let Some(p) = &pinned_name {
                notes.push(format!("NOT the {p} you verified"));
            }
            format!("{name} ({})", notes.join(", "))
        } else {
            name.clone()
        };
        Label {
            text,
            name,
            key: hex,
            ambiguous,
            pin_mismatch: pinned_name.is_some(),
            verified,
            pinned_name,
        }
    }
}

/// A display name as it can be shown: every invisible character
/// ([`lookalike::is_invisible`]: controls, format characters such as
/// zero-width spaces and bidi controls, default-ignorable code points)
/// becomes `?`, and parentheses and their look-alikes (`（`, `﹙`, …)
/// brackets (so a name cannot imitate a key suffix such as `alice
/// (3fa2c1d0)`), surrounding spaces go. Returns whether it changed.
pub fn shown_name(raw: &str) -> (String, bool) {
    let shown: String = raw
        .trim()
        .chars()
        .map(|c| match c {
            c if lookalike::is_invisible(c) => '?',
            c => bracket(c),
        })
        .collect();
    let altered = shown != raw;
    (shown, altered)
}

/// `(` and `)` and their look-alikes (`（`, `﹙`, …) as `[` and `]`.
fn bracket(c: char) -> char {
    match c {
        '(' => '[',
        ')' => ']',
        c if c.is_ascii() => c,
        c => match lookalike::char_skeleton(c).as_str() {
            "(" => '[',
            ")" => ']',
            _ => c,
        },
    }
}

/// What two display names must share to be the same name for a reader:
/// the [`lookalike::skeleton`] of the name (NFKC, case folded, invisible
/// characters dropped, confusable letters mapped to one, surrounding spaces
/// dropped) up to any bracket or parenthesis, so `alice (1bbf6ba3)` is
/// `alice`.
fn name_key(raw: &str) -> String {
    let bracketed: String = raw.chars().map(bracket).collect();
    lookalike::skeleton(&bracketed)
        .split('[')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Whether two display names are the same name to a reader (TM8): the rule
/// [`SenderLabels::label`] groups bearers and matches pins by, so `alice`,
/// `ALICE`, `аlice` (Cyrillic `а`) and `alice\u{200B}` are one name.
pub fn names_look_alike(a: &str, b: &str) -> bool {
    name_key(a) == name_key(b)
}

/// Whether what a user typed is a session name, `<member>@<name>`: an `@`
/// after the first character (a leading `@` is a group).
pub fn names_a_session(to: &str) -> bool {
    let to = to.trim();
    !to.starts_with('@')
        && !to.starts_with("member:")
        && !to.starts_with("session:")
        && to.contains('@')
}

/// Whether a session's published name is one of its member's: the part
/// before its first `@` is exactly the member's display name (any case,
/// compatibility forms alike: [`lookalike::exact`], as display names are
/// matched; a look-alike such as `аlice@api` for `alice` is not). Only such
/// names are matched by name (`send alice@api`); any other is shown as
/// `<member>: <name>` and reached by key prefix only, so no session can
/// pose as another member's.
pub fn session_name_is_members(member_name: &str, session_name: &str) -> bool {
    session_name.split_once('@').is_some_and(|(who, _)| {
        !who.is_empty() && lookalike::exact(who) == lookalike::exact(member_name)
    })
}

/// How a session's name is shown: as published when it is its member's
/// ([`session_name_is_members`]), else `<member>: <name>`.
pub fn session_display_name(member_name: &str, session_name: &str) -> String {
    if session_name_is_members(member_name, session_name) {
        session_name.to_owned()
    } else {
        format!("{member_name}: {session_name}")
    }
}

/// The error for a name (`name`, in what was asked: `query`) that only one
/// member's name looks like, without being it.
fn look_alike(query: &str, name: &str, candidate: &str) -> ClientError {
    ClientError::LookAlikePeer {
        query: query.to_owned(),
        name: name.to_owned(),
        candidate: candidate.to_owned(),
    }
}

/// The error for a recipient that names several candidates.
fn ambiguous_peer(query: &str, found: Vec<(String, Target)>) -> ClientError {
    ClientError::AmbiguousPeer {
        query: query.to_owned(),
        candidates: found
            .into_iter()
            .map(|f| f.0)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// First 8 hex digits of a key.
pub fn short(k: &PublicKey) -> String {
    k.to_hex()[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_belong_to_the_member_named_before_the_first_at() {
        assert!(session_name_is_members("alice", "alice@api"));
        assert!(session_name_is_members("Alice", "ALICE@api@x"));
        assert!(!session_name_is_members("mallory", "alice@api"));
        assert!(!session_name_is_members("alice", "api"));
        assert!(!session_name_is_members("alice", "alice"));
        assert!(!session_name_is_members("", "@api"));
        // A display name with an `@` has no session name of its own.
        assert!(!session_name_is_members("bob@corp", "bob@corp@api"));
        assert_eq!(session_display_name("alice", "alice@api"), "alice@api");
        assert_eq!(
            session_display_name("mallory", "alice@api"),
            "mallory: alice@api"
        );
        assert!(names_a_session(" alice@api "));
        assert!(!names_a_session("@eng"));
        assert!(!names_a_session("alice"));
        assert!(!names_a_session("member:00"));
    }

    #[test]
    fn shown_names_cannot_imitate_a_key_suffix() {
        assert_eq!(shown_name("alice"), ("alice".into(), false));
        assert_eq!(
            shown_name("alice (1bbf6ba3)"),
            ("alice [1bbf6ba3]".into(), true)
        );
        assert_eq!(shown_name(" alice\n"), ("alice".into(), true));
        assert_eq!(shown_name("al\u{1b}ice"), ("al?ice".into(), true));
        assert_eq!(name_key("Alice [1bbf6ba3]"), "alice");
        assert_eq!(name_key("Alice (1bbf6ba3)"), "alice");
        assert_eq!(name_key("ALICE"), name_key("alice"));
        // Look-alike parentheses are brackets too.
        assert_eq!(
            shown_name("alice\u{ff08}1bbf6ba3\u{ff09}"),
            ("alice[1bbf6ba3]".into(), true)
        );
        assert_eq!(shown_name("alice \u{fe59}x\u{fe5a}").0, "alice [x]");
    }

    #[test]
    fn invisible_characters_are_shown_and_ignored_in_comparisons() {
        for (raw, shown, like) in [
            ("alice\u{200b}", "alice?", "alice"),
            ("al\u{feff}ice", "al?ice", "alice"),
            ("\u{202e}ecila", "?ecila", "ecila"),
            ("alice\u{2066}", "alice?", "alice"),
            ("ali\u{ad}ce", "ali?ce", "alice"),
            ("alice\u{e0041}", "alice?", "alice"),
            ("alice\u{2028}x", "alice?x", "alicex"),
            ("al\u{1b}ice", "al?ice", "alice"),
        ] {
            assert_eq!(shown_name(raw), (shown.into(), true), "{raw:?}");
            assert!(names_look_alike(raw, like), "{raw:?}");
        }
        // A name is compared as a reader sees it, not by its code points.
        for twin in [
            "ALICE",
            "\u{430}lice",
            "alice\u{200b}",
            "\u{ff41}lice",
            " alice ",
            "al\u{ad}ice",
            "alice (1bbf6ba3)",
        ] {
            assert!(names_look_alike(twin, "alice"), "{twin:?}");
        }
        for other in ["alicia", "bob", "alice2", "al ice"] {
            assert!(!names_look_alike(other, "alice"), "{other:?}");
        }
    }

    fn member(seed: u8) -> PublicKey {
        SigningKey::from_seed(&[seed; 32]).public()
    }

    fn labels(names: &[(PublicKey, &str)], pins: &[(PublicKey, &str)]) -> SenderLabels {
        let mut p = Pins::default();
        for (k, n) in pins {
            p.pin(k, n, 0);
        }
        SenderLabels::new(
            names.iter().map(|(k, n)| (*k, (*n).to_owned())).collect(),
            &p,
        )
    }

    #[test]
    fn plain_ascii_names_stay_bare_and_duplicates_carry_the_key() {
        let (a, b, c) = (member(1), member(2), member(3));
        let l = labels(&[(a, "alice"), (b, "bob"), (c, "carol")], &[]);
        for (k, n) in [(a, "alice"), (b, "bob"), (c, "carol")] {
            let label = l.label_named(&k, n);
            assert_eq!(label.text, n);
            assert!(!label.ambiguous && !label.pin_mismatch);
        }
        let l = labels(&[(a, "alice"), (b, "Alice")], &[]);
        assert_eq!(
            l.label_named(&b, "Alice").text,
            format!("Alice ({})", short(&b))
        );
        assert!(l.label_named(&a, "alice").ambiguous);
    }

    /// Look-alikes of `alice` (TM8): each, and alice, carry their key; a
    /// pin of alice marks every one of them.
    #[test]
    fn look_alike_names_carry_the_key_and_are_marked_against_pins() {
        let alice = member(1);
        let impostors = [
            "\u{430}lice",
            "alice\u{200b}",
            "alice\u{feff}",
            "\u{202e}alice",
            "\u{ff41}lice",
            "al\u{ad}ice",
            "ALICE",
            "aiice\u{301}",
        ];
        for (i, raw) in impostors.iter().enumerate() {
            let mallory = member(10 + u8::try_from(i).unwrap_or(0));
            let l = labels(&[(alice, "alice"), (mallory, raw)], &[]);
            let label = l.label_named(&mallory, raw);
            assert!(label.ambiguous, "{raw:?}");
            assert!(
                label.text.ends_with(&format!("({})", short(&mallory))),
                "{raw:?}: {}",
                label.text
            );
            if *raw != "aiice\u{301}" {
                // It shares alice's name, so alice carries her key too.
                assert!(l.label_named(&alice, "alice").ambiguous, "{raw:?}");
            }
            // After the user pinned the real alice, the impostor is marked
            // (when its name looks like hers), she is not.
            let l = labels(&[(alice, "alice"), (mallory, raw)], &[(alice, "alice")]);
            let label = l.label_named(&mallory, raw);
            if *raw == "aiice\u{301}" {
                assert!(!label.pin_mismatch);
                continue;
            }
            assert!(label.pin_mismatch, "{raw:?}");
            assert_eq!(label.pinned_name.as_deref(), Some("alice"));
            assert!(
                label.text.contains("NOT the alice you verified"),
                "{}",
                label.text
            );
            let real = l.label_named(&alice, "alice");
            assert!(real.verified && !real.pin_mismatch, "{raw:?}");
            // Alone in the mesh, it is still flagged against the pin.
            let l = labels(&[(mallory, raw)], &[(alice, "alice")]);
            assert!(l.label_named(&mallory, raw).pin_mismatch, "{raw:?}");
        }
    }

    #[test]
    fn non_ascii_and_key_shaped_names_always_carry_the_key() {
        let (a, b) = (member(1), member(2));
        let b_hex = b.to_hex();
        for raw in [
            "\u{430}lice",
            "Jos\u{e9}",
            "\u{674e}",
            "\u{ff41}lice",
            "1bbf6ba3",
            "DEADBEEF",
        ] {
            let l = labels(&[(a, raw)], &[]);
            let label = l.label_named(&a, raw);
            assert!(label.ambiguous, "{raw:?}");
            assert_eq!(label.text, format!("{} ({})", label.name, short(&a)));
            assert_eq!(label.with_key(), label.text);
        }
        // A member without a name is shown by its own short key, bare.
        let own = short(&b);
        let l = labels(&[(b, &own)], &[]);
        let label = l.label_named(&b, &own);
        assert_eq!(label.text, own);
        assert!(!label.ambiguous);
        assert_eq!(label.with_key(), own);
        // A longer prefix of its own key is not an imitation either.
        let l = labels(&[(b, &b_hex[..12])], &[]);
        assert!(!l.label_named(&b, &b_hex[..12]).ambiguous);
    }
}

//! Coordination objects the broker stores but cannot read (issue 17,
//! `docs/security.md` §16): a [`CoordObject`] is a team memory note (and,
//! later, a task, a lease or a state entry) sealed with `crypto_secretbox`
//! under the epoch's *coordination key* and signed by its author's session;
//! a [`RingLink`] seals one epoch's coordination key under the next one's,
//! so a member who joined later can open what was written before it came.
//!
//! The coordination key is derived from the epoch root with its own HKDF
//! label, so it is none of the mesh, topic or profile keys: a note never
//! opens as a broadcast, and a ring link hands out no root (old messages stay
//! closed to later joiners). Plaintexts are padded with spaces to a multiple
//! of [`COORD_PAD`] bytes, so the broker learns sizes in 256-byte steps only.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::boxes::{EpochRootKey, MAC_BYTES, Nonce, SymmetricKey};
use crate::cert::{CertError, SessionCert, SessionIdentity, SignedItemFault};
use crate::encoding::{DecodeError, Transcript, base64_bytes, label};
use crate::ids::{MemberKey, MeshId};
use crate::keys::Signature;
use crate::target::validate_target_name;

pub use crate::envelope::MessageId as CoordId;

/// The only coordination object and ring link version.
pub const COORD_VERSION: u64 = 1;
/// Plaintexts are padded with spaces to a multiple of this many bytes.
pub const COORD_PAD: usize = 256;
/// Largest plaintext (after padding) a coordination object may carry.
pub const MAX_COORD_PLAINTEXT: usize = 16384;
/// Largest ciphertext a coordination object may carry.
pub const MAX_COORD_CIPHERTEXT: usize = MAX_COORD_PLAINTEXT + MAC_BYTES;
/// The scope of an object for the whole mesh. A task may instead be
/// sealed to one topic: its scope is then `#` and the topic's name
/// ([`topic_scope`]), and only the topic's members hold its key.
pub const SCOPE_MESH: &str = "mesh";

/// Who an object is for, as its signed `scope` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The whole mesh (`"mesh"`).
    Mesh,
    /// The members of one topic (`"#<name>"`): the name, without `#`.
    Topic(&'a str),
}

impl<'a> Scope<'a> {
    /// Reads a signed scope: `"mesh"`, or `#` and a valid topic name.
    pub fn parse(scope: &'a str) -> Result<Self, CoordError> {
        if scope == SCOPE_MESH {
            return Ok(Scope::Mesh);
        }
        match scope.strip_prefix('#') {
            Some(name) if validate_target_name(name).is_ok() => Ok(Scope::Topic(name)),
            _ => Err(CoordError::UnknownScope),
        }
    }

    /// The topic, when it is one.
    pub fn topic(self) -> Option<&'a str> {
        match self {
            Scope::Mesh => None,
            Scope::Topic(t) => Some(t),
        }
    }
}

/// The signed scope of an object sealed to `topic` (a name without `#`).
pub fn topic_scope(topic: &str) -> String {
    format!("#{topic}")
}

/// What a coordination object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CoordKind {
    /// A team memory note: `{"text": …, "tags": […]}`.
    Memory,
    /// A task: `{"title": …, "body"?, "assignee"?, "priority"?, "tags"?,
    /// "due_ms"?}`.
    Task,
    /// An act on a task: its author claims it (`{}`), `rev` being the
    /// task's version after the act.
    TaskClaim,
    /// An act on a task: its claimant (or, forced, its creator, an owner or
    /// an admin) gives it back (`{}`).
    TaskRelease,
    /// An act on a task: its author completes it (`{"result"?: …}`).
    TaskDone,
    /// A shared state entry: `{"key": …, "value": …, "tag_epoch": e}`, or
    /// `{"key": …, "deleted": true, "tag_epoch": e}` once deleted; filed
    /// under [`state_id`] of its key, `rev` being its version.
    State,
    /// A file lease: `{"repo": …, "paths": […], "exclusive": b,
    /// "reason"?: …}`; the broker decides conflicts over its
    /// [`lease_tags`], never its paths.
    Lease,
}

impl CoordKind {
    /// Every kind.
    pub const ALL: &'static [CoordKind] = &[
        CoordKind::Memory,
        CoordKind::Task,
        CoordKind::TaskClaim,
        CoordKind::TaskRelease,
        CoordKind::TaskDone,
        CoordKind::State,
        CoordKind::Lease,
    ];

    /// The wire and signed spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CoordKind::Memory => "memory",
            CoordKind::Task => "task",
            CoordKind::TaskClaim => "task_claim",
            CoordKind::TaskRelease => "task_release",
            CoordKind::TaskDone => "task_done",
            CoordKind::State => "state",
            CoordKind::Lease => "lease",
        }
    }

    /// An act on a task (signed by whoever acts, stored beside the task),
    /// not an object stored in its own right.
    pub fn is_task_act(self) -> bool {
        matches!(
            self,
            CoordKind::TaskClaim | CoordKind::TaskRelease | CoordKind::TaskDone
        )
    }

    /// Whether it may be sealed to a topic: a task and the acts on it.
    pub fn topic_scoped(self) -> bool {
        self == CoordKind::Task || self.is_task_act()
    }
}

impl fmt::Display for CoordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CoordKind {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CoordKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or(DecodeError::Invalid("coordination kind"))
    }
}

/// Why a coordination object or ring link cannot be made, trusted or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    /// A version other than [`COORD_VERSION`].
    #[error("unsupported coordination object version {0}")]
    UnsupportedVersion(u64),
    /// The session signature does not verify.
    #[error("coordination object signature does not verify")]
    BadSignature,
    /// Signed for another mesh.
    #[error("coordination object is for another mesh")]
    WrongMesh,
    /// The author's certificate is not valid at the object's time.
    #[error("coordination object author's certificate: {0}")]
    BadCertificate(#[from] CertError),
    /// The plaintext is larger than [`MAX_COORD_PLAINTEXT`] once padded.
    #[error("coordination object too large: {0} bytes, at most {MAX_COORD_PLAINTEXT}")]
    TooLarge(usize),
    /// A scope other than [`SCOPE_MESH`] or `#` and a topic name (not
    /// quoted: it is whatever the sender put there, of any length).
    #[error("unknown coordination scope (\"mesh\", or \"#\" and a topic name)")]
    UnknownScope,
    /// An object other than a task or an act on one sealed to a topic.
    #[error("a {0} cannot be sealed to a topic: only tasks can")]
    NotTopicScoped(CoordKind),
    /// The key does not open the ciphertext (wrong epoch key, or altered).
    #[error("coordination object does not open with this epoch's key")]
    Decrypt,
}

/// The coordination key of a mesh epoch:
/// `HKDF(ikm=root(N), salt=mesh_id, info=T("claudemesh/coord-key/v1").str("mesh").u64(N))`.
pub fn coord_key(root: &EpochRootKey, mesh_id: &MeshId) -> SymmetricKey {
    let mut info = Transcript::new(label::COORD_KEY);
    info.str(SCOPE_MESH).u64(root.epoch);
    root.key().hkdf(mesh_id.as_bytes(), info.as_bytes())
}

/// The coordination key of a public topic in mesh epoch `epoch`, derived
/// from the mesh's (so the mesh's key ring reaches it):
/// `HKDF(ikm = coord_key(mesh, N), salt = mesh_id, info = T("claudemesh/coord-key/v1").str("topic").str(t).u64(N))`.
pub fn public_topic_coord_key(
    mesh_coord_key: &SymmetricKey,
    mesh_id: &MeshId,
    topic: &str,
    epoch: u64,
) -> SymmetricKey {
    let mut info = Transcript::new(label::COORD_KEY);
    info.str("topic").str(topic).u64(epoch);
    mesh_coord_key.hkdf(mesh_id.as_bytes(), info.as_bytes())
}

/// The coordination key of a private topic in its key epoch `k`, derived
/// from the topic's own key (so only those it was sealed to hold it):
/// `HKDF(ikm = topic_key(t, k), salt = mesh_id, info = T("claudemesh/coord-key/v1").str("private").str(t).u64(k))`.
pub fn private_topic_coord_key(
    topic_key: &SymmetricKey,
    mesh_id: &MeshId,
    topic: &str,
    key_epoch: u64,
) -> SymmetricKey {
    let mut info = Transcript::new(label::COORD_KEY);
    info.str("private").str(topic).u64(key_epoch);
    topic_key.hkdf(mesh_id.as_bytes(), info.as_bytes())
}

/// The id a shared state key's entry is filed under: the first 16 bytes of
/// `HKDF(ikm = coord_key(e), salt = mesh id, info = T("claudemesh/state-key/v1").str(key))`,
/// a keyed hash under the coordination key of epoch `e` (the entry's
/// `tag_epoch`). The broker arbitrates writes to one key by this id without
/// learning the key; one who never held `coord_key(e)` cannot test a
/// guessed key against it.
pub fn state_id(coord_key: &SymmetricKey, mesh_id: &MeshId, key: &str) -> CoordId {
    let mut info = Transcript::new(label::STATE_KEY);
    info.str(key);
    let tag = coord_key.hkdf(mesh_id.as_bytes(), info.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&tag.as_bytes()[..16]);
    CoordId(id)
}

/// A file lease's keyed path tag (16 bytes, the width of an id).
pub type LeaseTag = CoordId;
/// Most path components a lease names: a deeper path is leased as its
/// ancestor this deep (which only conflicts more).
pub const MAX_LEASE_DEPTH: usize = 15;
/// Tags a lease stores per path, padded with random ones.
pub const LEASE_TAGS_PER_PATH: usize = MAX_LEASE_DEPTH + 1;
/// Tags a take or a check probes per path, padded with random ones.
pub const LEASE_PROBES_PER_PATH: usize = MAX_LEASE_DEPTH + 2;

/// One keyed path tag: the first 16 bytes of `HKDF(ikm = coord_key(e),
/// salt = mesh id, info = T("claudemesh/lease-path/v1").str(role).str(repo).str(path))`,
/// `role` being `self` (the path itself) or `under` (something below it).
pub fn lease_tag(
    coord_key: &SymmetricKey,
    mesh_id: &MeshId,
    role: &str,
    repo: &str,
    path: &str,
) -> LeaseTag {
    let mut info = Transcript::new(label::LEASE_PATH);
    info.str(role).str(repo).str(path);
    let tag = coord_key.hkdf(mesh_id.as_bytes(), info.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&tag.as_bytes()[..16]);
    CoordId(id)
}

/// The proper ancestors of a normalized lease path (relative to its
/// repository; `/` is the root, directories end in `/`): the root and each
/// directory above it. `src/net/a.rs` → `/`, `src/`, `src/net/`; `/` has
/// none.
pub fn lease_ancestors(path: &str) -> Vec<String> {
    if path == "/" {
        return Vec::new();
    }
    let mut out = vec!["/".to_owned()];
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let mut prefix = String::new();
    let parts: Vec<&str> = trimmed.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        prefix.push_str(part);
        prefix.push('/');
        out.push(prefix.clone());
    }
    out
}

/// Pads `tags` with random ones to `n` and sorts them, so the broker learns
/// neither a path's depth nor which tag is the path itself.
fn padded(mut tags: Vec<LeaseTag>, n: usize) -> Vec<LeaseTag> {
    while tags.len() < n {
        tags.push(CoordId::random());
    }
    tags.sort_by_key(|t| t.0);
    tags
}

/// What a lease on `path` stores: `self(path)` and `under(p)` for each
/// ancestor `p`, padded to [`LEASE_TAGS_PER_PATH`].
pub fn lease_tags(
    coord_key: &SymmetricKey,
    mesh_id: &MeshId,
    repo: &str,
    path: &str,
) -> Vec<LeaseTag> {
    let mut tags = vec![lease_tag(coord_key, mesh_id, "self", repo, path)];
    for p in lease_ancestors(path) {
        tags.push(lease_tag(coord_key, mesh_id, "under", repo, &p));
    }
    padded(tags, LEASE_TAGS_PER_PATH)
}

/// What a take or check of `path` probes: `self(p)` for the path and each
/// ancestor, and `under(path)`, padded to [`LEASE_PROBES_PER_PATH`]. A
/// lease's tags and a probe meet exactly when one path is the other or lies
/// below it: `self(x)` is probed when `x` is `y` or above it, `under(y)` is
/// stored when `x` lies below `y`.
pub fn lease_probe(
    coord_key: &SymmetricKey,
    mesh_id: &MeshId,
    repo: &str,
    path: &str,
) -> Vec<LeaseTag> {
    let mut tags = vec![
        lease_tag(coord_key, mesh_id, "self", repo, path),
        lease_tag(coord_key, mesh_id, "under", repo, path),
    ];
    for p in lease_ancestors(path) {
        tags.push(lease_tag(coord_key, mesh_id, "self", repo, &p));
    }
    padded(tags, LEASE_PROBES_PER_PATH)
}

/// What a coordination object is, before it is sealed and signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordFacts {
    /// What it holds.
    pub kind: CoordKind,
    /// Its client-made id (a resend with the same id is the same object).
    pub id: CoordId,
    /// Its revision (1 for an object that is never rewritten).
    pub rev: u64,
    /// The author's clock, unix milliseconds.
    pub at_ms: u64,
}

/// A sealed, signed coordination object, as the broker stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordObject {
    /// Always [`COORD_VERSION`].
    pub v: u64,
    /// The mesh.
    pub mesh: MeshId,
    /// What it holds.
    pub kind: CoordKind,
    /// [`SCOPE_MESH`], or `#` and a topic's name (tasks only).
    pub scope: String,
    /// The mesh epoch whose coordination key seals it (for a private
    /// topic's task, the topic's key epoch).
    pub epoch: u64,
    /// Client-made id.
    pub id: CoordId,
    /// Revision.
    pub rev: u64,
    /// The author's clock, unix milliseconds.
    pub at_ms: u64,
    /// The author member's certificate for the signing session key.
    pub author: SessionCert,
    /// The secretbox nonce.
    pub nonce: Nonce,
    /// `crypto_secretbox_easy(padded plaintext, nonce, coord_key(epoch))`.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
    /// ed25519 by `author.session` over [`CoordObject::signed_bytes`].
    pub sig: Signature,
}

/// `plaintext` followed by spaces up to the next multiple of [`COORD_PAD`]
/// (at least one step). JSON readers skip the trailing spaces.
fn pad(plaintext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CoordError> {
    let len = plaintext.len().max(1).div_ceil(COORD_PAD) * COORD_PAD;
    if len > MAX_COORD_PLAINTEXT {
        return Err(CoordError::TooLarge(plaintext.len()));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    out.extend_from_slice(plaintext);
    out.resize(len, b' ');
    Ok(out)
}

impl From<SignedItemFault> for CoordError {
    fn from(f: SignedItemFault) -> Self {
        match f {
            SignedItemFault::Version(v) => CoordError::UnsupportedVersion(v),
            SignedItemFault::Signature => CoordError::BadSignature,
            SignedItemFault::Mesh => CoordError::WrongMesh,
            SignedItemFault::Certificate(e) => CoordError::BadCertificate(e),
        }
    }
}

impl CoordObject {
    /// Seals `plaintext` for the whole mesh under `key` (the coordination
    /// key of `epoch`) and signs it as the session `me`.
    pub fn seal(
        me: &SessionIdentity,
        key: &SymmetricKey,
        epoch: u64,
        facts: CoordFacts,
        plaintext: &[u8],
    ) -> Result<Self, CoordError> {
        Self::seal_in(me, SCOPE_MESH, key, epoch, facts, plaintext)
    }

    /// Seals `plaintext` for `scope` ([`SCOPE_MESH`] or a [`topic_scope`])
    /// under `key`, that scope's coordination key of `epoch` (for a private
    /// topic, its key epoch), and signs it as the session `me`.
    pub fn seal_in(
        me: &SessionIdentity,
        scope: &str,
        key: &SymmetricKey,
        epoch: u64,
        facts: CoordFacts,
        plaintext: &[u8],
    ) -> Result<Self, CoordError> {
        if let Scope::Topic(_) = Scope::parse(scope)?
            && !facts.kind.topic_scoped()
        {
            return Err(CoordError::NotTopicScoped(facts.kind));
        }
        let padded = pad(plaintext)?;
        let nonce = Nonce::random();
        let mut o = CoordObject {
            v: COORD_VERSION,
            mesh: me.cert.mesh_id,
            kind: facts.kind,
            scope: scope.to_owned(),
            epoch,
            id: facts.id,
            rev: facts.rev,
            at_ms: facts.at_ms,
            author: me.cert.clone(),
            ciphertext: key.encrypt(&padded, &nonce),
            nonce,
            sig: Signature([0; 64]),
        };
        o.sig = me.key.sign(&o.signed_bytes());
        Ok(o)
    }

    /// The canonical bytes the author's session key signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(label::COORD_OBJECT);
        t.u64(self.v)
            .bytes(self.mesh.as_bytes())
            .str(self.kind.as_str())
            .str(&self.scope)
            .u64(self.epoch)
            .bytes(&self.id.0)
            .u64(self.rev)
            .u64(self.at_ms)
            .bytes(&self.author.signed_bytes())
            .bytes(&self.author.sig.0)
            .bytes(&self.nonce.0)
            .bytes(&self.ciphertext);
        t.into_bytes()
    }

    /// The author member.
    pub fn member(&self) -> MemberKey {
        self.author.member
    }

    /// The topic it is sealed to, if any (`None`: the whole mesh, or a
    /// scope that does not parse, which [`CoordObject::verify`] refuses).
    pub fn topic(&self) -> Option<&str> {
        Scope::parse(&self.scope).ok().and_then(Scope::topic)
    }

    /// Checks, in this order: the version, the author's signature, the
    /// mesh, the certificate at `floor(at_ms / 1000)`, the scope and the
    /// ciphertext's size. Whether the author is a member is the caller's
    /// question (its verified roster).
    pub fn verify(&self, mesh: &MeshId) -> Result<(), CoordError> {
        self.author.check_signed_item(
            (self.v, COORD_VERSION),
            &self.signed_bytes(),
            &self.sig,
            (&self.mesh, mesh),
            self.at_ms,
        )?;
        self.check_shape()
    }

    /// The checks of `verify` that need no key (cheap, for the broker before
    /// it verifies the signature).
    pub fn check_shape(&self) -> Result<(), CoordError> {
        if self.v != COORD_VERSION {
            return Err(CoordError::UnsupportedVersion(self.v));
        }
        if let Scope::Topic(_) = Scope::parse(&self.scope)?
            && !self.kind.topic_scoped()
        {
            return Err(CoordError::NotTopicScoped(self.kind));
        }
        if self.ciphertext.len() > MAX_COORD_CIPHERTEXT {
            return Err(CoordError::TooLarge(self.ciphertext.len() - MAC_BYTES));
        }
        Ok(())
    }

    /// Opens the plaintext with the coordination key of `self.epoch`; the
    /// padding is left on (JSON readers skip it).
    pub fn open(&self, key: &SymmetricKey) -> Result<Zeroizing<Vec<u8>>, CoordError> {
        key.decrypt(&self.ciphertext, &self.nonce)
            .map_err(|_| CoordError::Decrypt)
    }
}

/// One link of the coordination key ring: the coordination key of epoch
/// `epoch − 1` sealed under the coordination key of `epoch`, signed by the
/// member who wrote it. Readers trust a link only from the author of the
/// rekey that began `epoch`, or from an owner or admin (their verified
/// roster says who), which is no more trust than they give that author's
/// root seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingLink {
    /// Always [`COORD_VERSION`].
    pub v: u64,
    /// The mesh.
    pub mesh: MeshId,
    /// Always [`SCOPE_MESH`] today.
    pub scope: String,
    /// The newer epoch, whose key seals the one before it (1 or more).
    pub epoch: u64,
    /// The signer's clock, unix milliseconds.
    pub at_ms: u64,
    /// The secretbox nonce.
    pub nonce: Nonce,
    /// `crypto_secretbox_easy(coord_key(epoch − 1), nonce, coord_key(epoch))`.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
    /// The signer member's certificate for the signing session key.
    pub signer: SessionCert,
    /// ed25519 by `signer.session` over [`RingLink::signed_bytes`].
    pub sig: Signature,
}

impl RingLink {
    /// Seals `older` (the coordination key of `epoch − 1`) under `newer`
    /// (that of `epoch`), signed as `me`.
    pub fn seal(
        me: &SessionIdentity,
        epoch: u64,
        newer: &SymmetricKey,
        older: &SymmetricKey,
        at_ms: u64,
    ) -> Self {
        let nonce = Nonce::random();
        let mut link = RingLink {
            v: COORD_VERSION,
            mesh: me.cert.mesh_id,
            scope: SCOPE_MESH.to_owned(),
            epoch,
            at_ms,
            ciphertext: newer.encrypt(older.as_bytes(), &nonce),
            nonce,
            signer: me.cert.clone(),
            sig: Signature([0; 64]),
        };
        link.sig = me.key.sign(&link.signed_bytes());
        link
    }

    /// The canonical bytes the signer's session key signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(label::COORD_RING);
        t.u64(self.v)
            .bytes(self.mesh.as_bytes())
            .str(&self.scope)
            .u64(self.epoch)
            .u64(self.at_ms)
            .bytes(&self.signer.signed_bytes())
            .bytes(&self.signer.sig.0)
            .bytes(&self.nonce.0)
            .bytes(&self.ciphertext);
        t.into_bytes()
    }

    /// The signer member.
    pub fn member(&self) -> MemberKey {
        self.signer.member
    }

    /// Checks the version, signature, mesh, certificate and scope.
    pub fn verify(&self, mesh: &MeshId) -> Result<(), CoordError> {
        self.signer.check_signed_item(
            (self.v, COORD_VERSION),
            &self.signed_bytes(),
            &self.sig,
            (&self.mesh, mesh),
            self.at_ms,
        )?;
        if self.scope != SCOPE_MESH {
            return Err(CoordError::UnknownScope);
        }
        Ok(())
    }

    /// Opens the older epoch's coordination key with `newer`.
    pub fn open(&self, newer: &SymmetricKey) -> Result<SymmetricKey, CoordError> {
        let bytes = newer
            .decrypt(&self.ciphertext, &self.nonce)
            .map_err(|_| CoordError::Decrypt)?;
        SymmetricKey::from_slice(&bytes).ok_or(CoordError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn session() -> (SessionIdentity, MeshId) {
        let member = SigningKey::generate();
        let mesh = MeshId(crate::encoding::Hash32([7; 32]));
        let me = SessionIdentity::new(&member, mesh, 1_700_000_000, 86_400).unwrap();
        (me, mesh)
    }

    fn facts() -> CoordFacts {
        CoordFacts {
            kind: CoordKind::Memory,
            id: CoordId::random(),
            rev: 1,
            at_ms: 1_700_000_001_000,
        }
    }

    #[test]
    fn a_sealed_object_verifies_opens_and_is_padded() {
        let (me, mesh) = session();
        let root = EpochRootKey::generate(3);
        let key = coord_key(&root, &mesh);
        let text = br#"{"text":"the staging db is on port 5433"}"#;
        let o = CoordObject::seal(&me, &key, 3, facts(), text).unwrap();
        o.verify(&mesh).unwrap();
        assert_eq!(o.ciphertext.len(), COORD_PAD + MAC_BYTES);
        let opened = o.open(&key).unwrap();
        assert!(opened.starts_with(text));
        let v: serde_json::Value = serde_json::from_slice(&opened).unwrap();
        assert_eq!(v["text"], "the staging db is on port 5433");
        // Another epoch's key, or the mesh key of the same root, opens nothing.
        let other = coord_key(&EpochRootKey::generate(3), &mesh);
        assert_eq!(o.open(&other), Err(CoordError::Decrypt));
        assert_eq!(o.open(&root.mesh_key(&mesh)), Err(CoordError::Decrypt));
        // The wire form round-trips.
        let json = serde_json::to_string(&o).unwrap();
        let back: CoordObject = serde_json::from_str(&json).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn every_signed_field_is_bound() {
        let (me, mesh) = session();
        let key = coord_key(&EpochRootKey::generate(0), &mesh);
        let o = CoordObject::seal(&me, &key, 0, facts(), b"{}").unwrap();
        let tampered: [fn(&mut CoordObject); 6] = [
            |o| o.epoch += 1,
            |o| o.rev += 1,
            |o| o.at_ms += 1,
            |o| o.id = CoordId([9; 16]),
            |o| o.ciphertext[0] ^= 1,
            |o| o.nonce.0[0] ^= 1,
        ];
        for t in tampered {
            let mut bad = o.clone();
            t(&mut bad);
            assert_eq!(bad.verify(&mesh), Err(CoordError::BadSignature));
        }
        assert_eq!(
            o.verify(&MeshId(crate::encoding::Hash32([8; 32]))),
            Err(CoordError::WrongMesh)
        );
    }

    #[test]
    fn oversized_plaintexts_are_refused() {
        let (me, mesh) = session();
        let key = coord_key(&EpochRootKey::generate(0), &mesh);
        let big = vec![b'a'; MAX_COORD_PLAINTEXT + 1];
        assert!(matches!(
            CoordObject::seal(&me, &key, 0, facts(), &big),
            Err(CoordError::TooLarge(_))
        ));
        let exact = vec![b'a'; MAX_COORD_PLAINTEXT];
        CoordObject::seal(&me, &key, 0, facts(), &exact).unwrap();
    }

    /// Known answer computed by an independent HKDF (Python's `hmac`, see
    /// `docs/security.md` §16): root = 32 × `07`, mesh id = 32 × `09`, epoch 1.
    #[test]
    fn coord_key_known_answer() {
        let root = EpochRootKey::from_bytes(1, [7; 32]);
        let mesh = MeshId(crate::encoding::Hash32([9; 32]));
        assert_eq!(
            hex::encode(coord_key(&root, &mesh).as_bytes()),
            "c810e331a6bb0e755909591a1832aaa0dff45c93f04debe2ea3df04a19811b67"
        );
    }

    /// Known answers computed by an independent HKDF (Python's `hmac`, see
    /// `docs/security.md` §16.1): input key = 32 × `07`, mesh id =
    /// 32 × `09`, topic "ops"; the public one at mesh epoch 1, the private
    /// one at key epoch 2.
    #[test]
    fn topic_coord_keys_known_answers() {
        let key = SymmetricKey::from_bytes([7; 32]);
        let mesh = MeshId(crate::encoding::Hash32([9; 32]));
        let public = public_topic_coord_key(&key, &mesh, "ops", 1);
        let private = private_topic_coord_key(&key, &mesh, "ops", 2);
        assert_eq!(
            hex::encode(public.as_bytes()),
            "a322e31ce1f8ce29bb6994859c22858eb2264ae504a5a390a1f00949081b0de5"
        );
        assert_eq!(
            hex::encode(private.as_bytes()),
            "f584afea6c81f3aba01742abeca55e9408d295cab9602b0016cfb326790feb21"
        );
        // Each topic, epoch and kind of topic has its own key.
        assert_ne!(public_topic_coord_key(&key, &mesh, "dev", 1), public);
        assert_ne!(public_topic_coord_key(&key, &mesh, "ops", 2), public);
        assert_ne!(private_topic_coord_key(&key, &mesh, "ops", 1), public);
    }

    #[test]
    fn only_tasks_are_sealed_to_a_topic_and_scopes_are_checked() {
        let (me, mesh) = session();
        let key = SymmetricKey::generate();
        let task_facts = CoordFacts {
            kind: CoordKind::Task,
            ..facts()
        };
        let task =
            CoordObject::seal_in(&me, &topic_scope("ops"), &key, 2, task_facts, b"{}").unwrap();
        assert_eq!(task.topic(), Some("ops"));
        task.verify(&mesh).unwrap();
        assert_eq!(Scope::parse("mesh").unwrap(), Scope::Mesh);
        for bad in ["", "#", "ops", "#a b", "#/x", "MESH"] {
            assert_eq!(Scope::parse(bad), Err(CoordError::UnknownScope), "{bad:?}");
        }
        assert_eq!(
            CoordObject::seal_in(&me, "#ops", &key, 2, facts(), b"{}"),
            Err(CoordError::NotTopicScoped(CoordKind::Memory))
        );
        // A note moved to a topic after signing fails the shape check before
        // its signature.
        let mut moved = CoordObject::seal(&me, &key, 2, facts(), b"{}").unwrap();
        moved.scope = "#ops".into();
        assert_eq!(
            moved.check_shape(),
            Err(CoordError::NotTopicScoped(CoordKind::Memory))
        );
        // A task moved from one topic to another no longer verifies.
        let mut other = task.clone();
        other.scope = "#dev".into();
        assert_eq!(other.verify(&mesh), Err(CoordError::BadSignature));
    }

    /// Known answer computed by an independent HKDF (Python's `hmac`, see
    /// `docs/security.md` §16): coordination key = 32 × `07`, mesh id =
    /// 32 × `09`, key "deploy/staging".
    #[test]
    fn state_id_known_answer() {
        let key = SymmetricKey::from_bytes([7; 32]);
        let mesh = MeshId(crate::encoding::Hash32([9; 32]));
        let id = state_id(&key, &mesh, "deploy/staging");
        assert_eq!(hex::encode(id.0), "591667392c63364ef52792c9a6c74c5a");
        // Another key, epoch key or mesh files elsewhere.
        assert_ne!(state_id(&key, &mesh, "deploy/prod"), id);
        assert_ne!(
            state_id(&SymmetricKey::from_bytes([8; 32]), &mesh, "deploy/staging"),
            id
        );
    }

    /// Known answer computed by an independent HKDF (Python's `hmac`, see
    /// `docs/security.md` §16): coordination key = 32 × `07`, mesh id =
    /// 32 × `09`, role "self", repo "github.com/acme/api", path "src/net/".
    #[test]
    fn lease_tag_known_answer() {
        let key = SymmetricKey::from_bytes([7; 32]);
        let mesh = MeshId(crate::encoding::Hash32([9; 32]));
        let tag = lease_tag(&key, &mesh, "self", "github.com/acme/api", "src/net/");
        assert_eq!(hex::encode(tag.0), "1e5b6f57f4b7cfad614790d18b1f0031");
    }

    #[test]
    fn lease_tags_meet_a_probe_exactly_when_paths_overlap() {
        let key = SymmetricKey::from_bytes([3; 32]);
        let mesh = MeshId(crate::encoding::Hash32([4; 32]));
        let repo = "github.com/acme/api";
        let meets = |x: &str, y: &str| {
            let t: std::collections::BTreeSet<_> = lease_tags(&key, &mesh, repo, x)
                .into_iter()
                .map(|t| t.0)
                .collect();
            lease_probe(&key, &mesh, repo, y)
                .iter()
                .any(|p| t.contains(&p.0))
        };
        for (x, y, overlap) in [
            ("src/net/", "src/net/a.rs", true),
            ("src/net/a.rs", "src/net/", true),
            ("src/net/a.rs", "src/", true),
            ("src/", "src/net/a.rs", true),
            ("src/net/a.rs", "src/net/a.rs", true),
            ("/", "docs/x.md", true),
            ("docs/x.md", "/", true),
            ("src/net/", "src/ui/b.rs", false),
            ("src/ui/b.rs", "src/net/", false),
            ("src/net/a.rs", "src/net/b.rs", false),
            ("src/net", "src/net/a.rs", false),
            ("src/networking/", "src/net/", false),
        ] {
            assert_eq!(meets(x, y), overlap, "{x} vs {y}");
        }
        // Another repository never meets.
        let t = lease_tags(&key, &mesh, "github.com/acme/web", "src/");
        assert!(
            !lease_probe(&key, &mesh, repo, "src/a.rs")
                .iter()
                .any(|p| t.contains(p))
        );
        // Every path gives as many tags, whatever its depth.
        assert_eq!(
            lease_tags(&key, &mesh, repo, "/").len(),
            LEASE_TAGS_PER_PATH
        );
        assert_eq!(
            lease_probe(&key, &mesh, repo, "a/b/c/d.rs").len(),
            LEASE_PROBES_PER_PATH
        );
        assert_eq!(lease_ancestors("src/net/a.rs"), ["/", "src/", "src/net/"]);
        assert_eq!(lease_ancestors("src/"), ["/"]);
        assert!(lease_ancestors("/").is_empty());
    }

    #[test]
    fn a_ring_link_hands_the_older_coordination_key_only() {
        let (me, mesh) = session();
        let (r1, r2) = (EpochRootKey::generate(1), EpochRootKey::generate(2));
        let (k1, k2) = (coord_key(&r1, &mesh), coord_key(&r2, &mesh));
        let link = RingLink::seal(&me, 2, &k2, &k1, 1_700_000_002_000);
        link.verify(&mesh).unwrap();
        assert_eq!(link.open(&k2).unwrap(), k1);
        assert_eq!(link.open(&k1), Err(CoordError::Decrypt));
        let mut bad = link.clone();
        bad.epoch = 3;
        assert_eq!(bad.verify(&mesh), Err(CoordError::BadSignature));
        // The coordination key is not the root.
        assert_ne!(k1, *r1.key());
    }
}

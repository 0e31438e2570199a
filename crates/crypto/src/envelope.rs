//! Message envelopes: what a sender seals and signs, and what a receiver
//! verifies and opens. A [`VerifiedMessage`] can only be made by verification
//! (TM4): signature by the sender's session key, the session certificate,
//! the sender's membership in the verified roster, then the box. Anything
//! that fails is an [`EnvelopeError`]; no plaintext is ever returned for it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use zeroize::Zeroizing;

use crate::boxes::{BoxError, Nonce, SharedBoxKey, SymmetricKey, box_decrypt, box_encrypt};
use crate::cert::{CertError, SessionCert, SessionIdentity};
use crate::encoding::{
    DecodeError, Hash32, Transcript, base64_bytes, decode_hex_array, hex_serde, label,
};
use crate::keys::{PublicKey, Signature, SigningKey, random_bytes};
use crate::log::Roster;

/// The envelope format version this crate writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;

/// Largest plaintext body a message may carry (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest `@group` or `#topic` name, in bytes.
pub const MAX_TARGET_NAME_BYTES: usize = 64;

/// A client-chosen message id: 16 random bytes (32 hex characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// 16 bytes from the OS CSPRNG.
    pub fn random() -> Self {
        MessageId(random_bytes())
    }

    /// Lowercase hex, 32 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 32 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
        decode_hex_array(s).map(MessageId)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.to_hex())
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

hex_serde!(MessageId, 16, |m: &MessageId| m.0, |b: [u8; 16]| Ok::<
    _,
    DecodeError,
>(
    MessageId(b)
));

/// Delivery priority, as Claude Code users know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Interrupt: deliver even to a busy (`working`/`dnd`) peer.
    Now,
    /// Deliver at the next idle moment (the default).
    #[default]
    Next,
    /// Deliver when convenient.
    Low,
}

impl Priority {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Priority::Now => "now",
            Priority::Next => "next",
            Priority::Low => "low",
        }
    }
}

impl FromStr for Priority {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "now" => Ok(Priority::Now),
            "next" => Ok(Priority::Next),
            "low" => Ok(Priority::Low),
            _ => Err(DecodeError::Invalid("priority (now|next|low)")),
        }
    }
}

/// Who a message is for. Wire form (a string): `member:<64 hex>`,
/// `session:<64 hex>`, `@<group>`, `#<topic id>`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Every session of one member (direct, `crypto_box` to the member key).
    Member(PublicKey),
    /// One session (direct, `crypto_box` to the session key).
    Session(PublicKey),
    /// A group, hierarchical with `/` (`@eng` also reaches `@eng/backend`).
    Group(String),
    /// A topic, by id.
    Topic(String),
    /// Every member of the mesh.
    Broadcast,
}

impl Target {
    /// Whether the body is a `crypto_box` to one key (member or session).
    pub fn is_direct(&self) -> bool {
        matches!(self, Target::Member(_) | Target::Session(_))
    }
}

/// Group and topic names: 1–64 bytes of `[A-Za-z0-9._/-]`, not starting or
/// ending with `/`, no empty path segment.
pub fn validate_target_name(name: &str) -> Result<(), DecodeError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TARGET_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && !name.split('/').any(str::is_empty);
    if ok {
        Ok(())
    } else {
        Err(DecodeError::Invalid(
            "group or topic name (1-64 of A-Z a-z 0-9 . _ - /)",
        ))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Member(k) => write!(f, "member:{k}"),
            Target::Session(k) => write!(f, "session:{k}"),
            Target::Group(g) => write!(f, "@{g}"),
            Target::Topic(t) => write!(f, "#{t}"),
            Target::Broadcast => f.write_str("*"),
        }
    }
}

impl FromStr for Target {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = |hex: &str| {
            PublicKey::from_hex(hex).map_err(|_| DecodeError::Invalid("target public key"))
        };
        if s == "*" {
            Ok(Target::Broadcast)
        } else if let Some(hex) = s.strip_prefix("member:") {
            Ok(Target::Member(key(hex)?))
        } else if let Some(hex) = s.strip_prefix("session:") {
            Ok(Target::Session(key(hex)?))
        } else if let Some(g) = s.strip_prefix('@') {
            validate_target_name(g)?;
            Ok(Target::Group(g.to_owned()))
        } else if let Some(t) = s.strip_prefix('#') {
            validate_target_name(t)?;
            Ok(Target::Topic(t.to_owned()))
        } else {
            Err(DecodeError::Invalid(
                "target (member:<hex>, session:<hex>, @group, #topic or *)",
            ))
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A sealed, signed message as it travels and is stored. The broker sees all
/// of these fields; only `ciphertext` is secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope format version (1).
    pub v: u8,
    /// The mesh id (hash of the genesis log entry).
    pub mesh: Hash32,
    /// Key generation: the mesh epoch whose keys sealed the body.
    pub epoch: u64,
    /// Who the message is for.
    pub target: Target,
    /// Client-chosen id; (sender member, id) is unique.
    pub id: MessageId,
    /// The message this one answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageId>,
    /// Delivery priority.
    pub priority: Priority,
    /// Sender's clock, unix milliseconds.
    pub sent_at: u64,
    /// The membership-log head the sender had verified when sending.
    pub log_head: Hash32,
    /// The sender's session certificate (chains to its member key).
    pub sender: SessionCert,
    /// The box nonce.
    pub nonce: Nonce,
    /// `crypto_box` (direct) or `crypto_secretbox` (group, topic, broadcast) output.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
    /// ed25519 signature by `sender.session` over the canonical envelope.
    pub sig: Signature,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// An envelope version this build does not read.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("message body is {0} bytes; the limit is 65536")]
    BodyTooLarge(usize),
    /// The sender's session signature does not verify.
    #[error("envelope signature does not verify")]
    BadSignature,
    /// The sender's session certificate is invalid.
    #[error("sender certificate: {0}")]
    BadCertificate(#[from] CertError),
    /// The envelope is for another mesh.
    #[error("envelope is for another mesh")]
    WrongMesh,
    /// The certifying member key is not (or was not, at the claimed log head) a member.
    #[error("sender {0} is not a member of this mesh")]
    SenderNotMember(String),
    /// A direct message addressed to someone else.
    #[error("direct message is addressed to someone else")]
    NotForMe,
    /// No key for this target and epoch (not a member of the topic, or an epoch never received).
    #[error("no key to open messages for {target} at epoch {epoch}")]
    NoKey {
        /// The target.
        target: String,
        /// The epoch.
        epoch: u64,
    },
    /// The ciphertext does not authenticate under the key.
    #[error("message does not decrypt: {0}")]
    Decrypt(BoxError),
    /// The sealing key does not fit the target (a box for a group, a group key for a DM).
    #[error("sealing key does not match the target kind")]
    KeyKindMismatch,
}

/// The header fields a sender chooses; the rest of an envelope is computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The mesh id.
    pub mesh: Hash32,
    /// Key epoch of the body key.
    pub epoch: u64,
    /// Recipient(s).
    pub target: Target,
    /// Client message id.
    pub id: MessageId,
    /// The message answered.
    pub reply_to: Option<MessageId>,
    /// Priority.
    pub priority: Priority,
    /// Unix milliseconds.
    pub sent_at: u64,
    /// The sender's verified log head.
    pub log_head: Hash32,
}

/// The key a sender seals a body with.
#[derive(Debug, Clone, Copy)]
pub enum SealingKey<'a> {
    /// `crypto_box` to this recipient key (the target's member or session key).
    Direct(&'a PublicKey),
    /// `crypto_box` with a precomputed shared key for (recipient, my session).
    DirectShared(&'a SharedBoxKey),
    /// `crypto_secretbox` under a mesh, topic or private-topic key.
    Symmetric(&'a SymmetricKey),
}

/// The keys a recipient opens envelopes with.
pub trait OpeningKeys {
    /// My member key (opens direct messages to my member).
    fn member_key(&self) -> &SigningKey;
    /// My session key, if I act as a session (opens messages to my session).
    fn session_key(&self) -> Option<&SigningKey>;
    /// The symmetric key for a group, topic or broadcast target at `epoch`.
    fn symmetric_key(&self, target: &Target, epoch: u64) -> Option<SymmetricKey>;
    /// A cached shared box key for (sender session, my recipient key), if any.
    fn shared_box_key(
        &self,
        _sender_session: &PublicKey,
        _mine: &PublicKey,
    ) -> Option<SharedBoxKey> {
        None
    }
    /// Whether this exact certificate (every field equal) had its signature
    /// verified before: a session signs many messages with one certificate,
    /// and checking the member's signature again each time costs ~30 µs.
    fn cert_signature_known(&self, _cert: &SessionCert) -> bool {
        false
    }
    /// Remembers a certificate whose signature just verified.
    fn remember_cert_signature(&self, _cert: &SessionCert) {}
}

impl Envelope {
    /// Seals `body` under `key` and signs the envelope with the sender's session key.
    pub fn seal(
        sender: &SessionIdentity,
        header: EnvelopeHeader,
        body: &[u8],
        key: SealingKey<'_>,
    ) -> Result<Envelope, EnvelopeError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(EnvelopeError::BodyTooLarge(body.len()));
        }
        let nonce = Nonce::random();
        let ciphertext = match (key, header.target.is_direct()) {
            (SealingKey::Direct(recipient), true) => box_encrypt(
                body,
                &nonce,
                &recipient.to_box_public(),
                &sender.key.to_box_secret(),
            )
            .map_err(EnvelopeError::Decrypt)?,
            (SealingKey::DirectShared(shared), true) => shared.encrypt(body, &nonce),
            (SealingKey::Symmetric(k), false) => k.encrypt(body, &nonce),
            _ => return Err(EnvelopeError::KeyKindMismatch),
        };
        let mut env = Envelope {
            v: ENVELOPE_VERSION,
            mesh: header.mesh,
            epoch: header.epoch,
            target: header.target,
            id: header.id,
            reply_to: header.reply_to,
            priority: header.priority,
            sent_at: header.sent_at,
            log_head: header.log_head,
            sender: sender.cert.clone(),
            nonce,
            ciphertext,
            sig: Signature([0; 64]),
        };
        env.sig = sender.key.sign(&env.signed_bytes());
        Ok(env)
    }

    /// The canonical bytes the sender's session key signs (every field but `sig`).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(label::ENVELOPE);
        t.u64(u64::from(self.v))
            .bytes(self.mesh.as_bytes())
            .u64(self.epoch)
            .str(&self.target.to_string())
            .bytes(&self.id.0)
            .opt_bytes(self.reply_to.as_ref().map(|r| &r.0[..]))
            .str(self.priority.as_str())
            .u64(self.sent_at)
            .bytes(self.log_head.as_bytes())
            .bytes(&self.sender.signed_bytes())
            .bytes(&self.sender.sig.0)
            .bytes(&self.nonce.0)
            .bytes(&self.ciphertext);
        t.into_bytes()
    }

    /// Checks only the version and the session signature: cheap, for relays
    /// that must not open the body.
    pub fn verify_signature(&self) -> Result<(), EnvelopeError> {
        if self.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(self.v));
        }
        self.sender
            .session
            .verify(&self.signed_bytes(), &self.sig)
            .map_err(|_| EnvelopeError::BadSignature)
    }

    /// Verifies everything a recipient must check, then opens the body.
    pub fn verify_and_open(
        &self,
        roster: &Roster,
        keys: &impl OpeningKeys,
    ) -> Result<VerifiedMessage, EnvelopeError> {
        self.verify_signature()?;
        if self.mesh != roster.mesh_id() {
            return Err(EnvelopeError::WrongMesh);
        }
        if keys.cert_signature_known(&self.sender) {
            self.sender
                .verify_previously_signed(&self.mesh, self.sent_at / 1000)?;
        } else {
            self.sender.verify(&self.mesh, self.sent_at / 1000)?;
            keys.remember_cert_signature(&self.sender);
        }
        let member = self.sender.member;
        if !roster.was_member_at(&member, &self.log_head) {
            return Err(EnvelopeError::SenderNotMember(
                member.to_hex()[..8].to_owned(),
            ));
        }
        let body = match &self.target {
            Target::Member(to) | Target::Session(to) => {
                let mine = match &self.target {
                    Target::Member(_) => Some(keys.member_key()),
                    _ => keys.session_key().filter(|s| s.public() == *to),
                };
                let mine = mine
                    .filter(|k| k.public() == *to)
                    .ok_or(EnvelopeError::NotForMe)?;
                match keys.shared_box_key(&self.sender.session, to) {
                    Some(shared) => shared.decrypt(&self.ciphertext, &self.nonce),
                    None => box_decrypt(
                        &self.ciphertext,
                        &self.nonce,
                        &self.sender.session.to_box_public(),
                        &mine.to_box_secret(),
                    ),
                }
                .map_err(EnvelopeError::Decrypt)?
            }
            target => keys
                .symmetric_key(target, self.epoch)
                .ok_or_else(|| EnvelopeError::NoKey {
                    target: target.to_string(),
                    epoch: self.epoch,
                })?
                .decrypt(&self.ciphertext, &self.nonce)
                .map_err(EnvelopeError::Decrypt)?,
        };
        Ok(VerifiedMessage {
            mesh: self.mesh,
            epoch: self.epoch,
            sender_member: member,
            sender_session: self.sender.session,
            target: self.target.clone(),
            id: self.id,
            reply_to: self.reply_to,
            priority: self.priority,
            sent_at: self.sent_at,
            body,
        })
    }
}

/// A message whose signature, sender certificate and membership were
/// verified and whose body was opened. Only [`Envelope::verify_and_open`]
/// makes one.
#[derive(Clone)]
pub struct VerifiedMessage {
    mesh: Hash32,
    epoch: u64,
    sender_member: PublicKey,
    sender_session: PublicKey,
    target: Target,
    id: MessageId,
    reply_to: Option<MessageId>,
    priority: Priority,
    sent_at: u64,
    body: Zeroizing<Vec<u8>>,
}

impl VerifiedMessage {
    /// The mesh.
    pub fn mesh(&self) -> Hash32 {
        self.mesh
    }
    /// The key epoch the body was sealed under.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// The sender's member key (verified member).
    pub fn sender_member(&self) -> PublicKey {
        self.sender_member
    }
    /// The sender's session key (certified by the member key).
    pub fn sender_session(&self) -> PublicKey {
        self.sender_session
    }
    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }
    /// The sender's message id; (sender member, id) is the dedupe key.
    pub fn id(&self) -> MessageId {
        self.id
    }
    /// The message this one answers.
    pub fn reply_to(&self) -> Option<MessageId> {
        self.reply_to
    }
    /// Priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }
    /// Sender's clock, unix milliseconds.
    pub fn sent_at(&self) -> u64 {
        self.sent_at
    }
    /// The plaintext body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl fmt::Debug for VerifiedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the body: logs must not carry plaintext.
        f.debug_struct("VerifiedMessage")
            .field("sender_member", &self.sender_member)
            .field("target", &self.target)
            .field("id", &self.id)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boxes::EpochRootKey;
    use crate::log::{LogBuilder, RemoveKind, Role};
    use proptest::prelude::*;

    const T: u64 = 1_700_000_000;

    struct Peer {
        member: SigningKey,
        session: SessionIdentity,
        root: EpochRootKey,
    }

    impl OpeningKeys for Peer {
        fn member_key(&self) -> &SigningKey {
            &self.member
        }
        fn session_key(&self) -> Option<&SigningKey> {
            Some(&self.session.key)
        }
        fn symmetric_key(&self, target: &Target, epoch: u64) -> Option<SymmetricKey> {
            if epoch != self.root.epoch {
                return None;
            }
            let mesh = self.session.cert.mesh_id;
            match target {
                Target::Group(_) | Target::Broadcast => Some(self.root.mesh_key(&mesh)),
                Target::Topic(t) => Some(self.root.topic_key(&mesh, t.as_bytes())),
                _ => None,
            }
        }
    }

    fn setup() -> (LogBuilder, Peer, Peer, SigningKey) {
        let owner = SigningKey::from_seed(&[1; 32]);
        let mut log = LogBuilder::new(&owner, T);
        let bob_member = log.add_member(&owner, Role::Member, T).unwrap();
        let mesh = log.roster().mesh_id();
        let root = EpochRootKey::from_bytes(0, [7; 32]);
        let peer = |m: SigningKey| Peer {
            session: SessionIdentity::new(&m, mesh, T, 3600).unwrap(),
            member: m,
            root: root.clone(),
        };
        (log, peer(owner.clone()), peer(bob_member), owner)
    }

    fn header(log: &LogBuilder, target: Target) -> EnvelopeHeader {
        EnvelopeHeader {
            mesh: log.roster().mesh_id(),
            epoch: 0,
            target,
            id: MessageId::random(),
            reply_to: None,
            priority: Priority::Next,
            sent_at: T * 1000 + 5,
            log_head: log.roster().head(),
        }
    }

    fn seal_for(log: &LogBuilder, from: &Peer, target: Target, body: &[u8]) -> Envelope {
        let h = header(log, target.clone());
        match &target {
            Target::Member(k) | Target::Session(k) => {
                Envelope::seal(&from.session, h, body, SealingKey::Direct(k)).unwrap()
            }
            t => {
                let key = from.symmetric_key(t, 0).unwrap();
                Envelope::seal(&from.session, h, body, SealingKey::Symmetric(&key)).unwrap()
            }
        }
    }

    #[test]
    fn every_target_kind_verifies_and_opens() {
        let (log, alice, bob, _) = setup();
        let targets = [
            Target::Member(bob.member.public()),
            Target::Session(bob.session.public()),
            Target::Group("eng/backend".into()),
            Target::Topic("deploys".into()),
            Target::Broadcast,
        ];
        for target in targets {
            let env = seal_for(&log, &alice, target.clone(), b"ship it");
            let wire: Envelope =
                serde_json::from_str(&serde_json::to_string(&env).unwrap()).unwrap();
            let msg = wire.verify_and_open(log.roster(), &bob).unwrap();
            assert_eq!(msg.body(), b"ship it", "{target}");
            assert_eq!(msg.sender_member(), alice.member.public());
            assert_eq!(msg.sender_session(), alice.session.public());
            assert_eq!(msg.target(), &target);
            assert!(!format!("{msg:?}").contains("ship"));
        }
    }

    #[test]
    fn flipping_any_byte_is_refused() {
        let (log, alice, bob, _) = setup();
        let env = seal_for(&log, &alice, Target::Member(bob.member.public()), b"hi");
        for i in 0..env.ciphertext.len() {
            let mut e = env.clone();
            e.ciphertext[i] ^= 1;
            assert_eq!(
                e.verify_and_open(log.roster(), &bob).unwrap_err(),
                EnvelopeError::BadSignature
            );
        }
        for i in 0..64 {
            let mut e = env.clone();
            e.sig.0[i] ^= 1;
            assert_eq!(
                e.verify_and_open(log.roster(), &bob).unwrap_err(),
                EnvelopeError::BadSignature
            );
        }
        let mut e = env.clone();
        e.nonce.0[0] ^= 1;
        assert_eq!(
            e.verify_and_open(log.roster(), &bob).unwrap_err(),
            EnvelopeError::BadSignature
        );
        let mut e = env.clone();
        e.priority = Priority::Now;
        assert_eq!(
            e.verify_and_open(log.roster(), &bob).unwrap_err(),
            EnvelopeError::BadSignature
        );
        let mut e = env.clone();
        e.sent_at += 1;
        assert_eq!(
            e.verify_and_open(log.roster(), &bob).unwrap_err(),
            EnvelopeError::BadSignature
        );
        let mut e = env.clone();
        e.v = 2;
        assert_eq!(
            e.verify_and_open(log.roster(), &bob).unwrap_err(),
            EnvelopeError::UnsupportedVersion(2)
        );
    }

    #[test]
    fn a_validly_signed_but_undecryptable_body_is_refused_not_shown() {
        let (log, alice, bob, _) = setup();
        let mut env = seal_for(&log, &alice, Target::Member(bob.member.public()), b"secret");
        // The sender re-signs garbage: signature fine, box fails.
        env.ciphertext = b"plain text pretending to be ciphertext".to_vec();
        env.sig = alice.session.key.sign(&env.signed_bytes());
        assert!(matches!(
            env.verify_and_open(log.roster(), &bob),
            Err(EnvelopeError::Decrypt(_))
        ));
    }

    #[test]
    fn non_members_and_forged_certificates_are_refused() {
        let (log, _alice, bob, _) = setup();
        let outsider = SigningKey::generate();
        let mesh = log.roster().mesh_id();
        let o = Peer {
            session: SessionIdentity::new(&outsider, mesh, T, 3600).unwrap(),
            member: outsider,
            root: EpochRootKey::from_bytes(0, [7; 32]),
        };
        let env = seal_for(&log, &o, Target::Member(bob.member.public()), b"x");
        assert!(matches!(
            env.verify_and_open(log.roster(), &bob),
            Err(EnvelopeError::SenderNotMember(_))
        ));

        // A session claiming bob's member key without bob's signature.
        let (log, alice, bob, _) = setup();
        let mut env = seal_for(&log, &alice, Target::Member(bob.member.public()), b"x");
        env.sender.member = bob.member.public();
        env.sig = alice.session.key.sign(&env.signed_bytes());
        assert!(matches!(
            env.verify_and_open(log.roster(), &bob),
            Err(EnvelopeError::BadCertificate(CertError::BadSignature))
        ));
    }

    #[test]
    fn direct_messages_open_only_for_their_recipient() {
        let (log, alice, bob, _) = setup();
        let to_bob = seal_for(&log, &alice, Target::Member(bob.member.public()), b"x");
        assert_eq!(
            to_bob.verify_and_open(log.roster(), &alice).unwrap_err(),
            EnvelopeError::NotForMe
        );
        let to_session = seal_for(&log, &alice, Target::Session(bob.session.public()), b"x");
        assert_eq!(
            to_session
                .verify_and_open(log.roster(), &alice)
                .unwrap_err(),
            EnvelopeError::NotForMe
        );
    }

    #[test]
    fn expired_certificate_is_refused() {
        let (log, alice, bob, _) = setup();
        let mut h = header(&log, Target::Member(bob.member.public()));
        h.sent_at = (T + 7200) * 1000;
        let env = Envelope::seal(
            &alice.session,
            h,
            b"x",
            SealingKey::Direct(&bob.member.public()),
        )
        .unwrap();
        assert!(matches!(
            env.verify_and_open(log.roster(), &bob),
            Err(EnvelopeError::BadCertificate(CertError::Expired { .. }))
        ));
    }

    #[test]
    fn a_removed_member_cannot_read_group_messages_sent_after_removal() {
        let (mut log, alice, bob, owner) = setup();
        let new_root = log
            .remove(&owner, &bob.member.public(), RemoveKind::Kick, T)
            .unwrap()
            .unwrap();
        let alice2 = Peer {
            root: new_root,
            ..alice
        };
        let mut h = header(&log, Target::Broadcast);
        h.epoch = 1;
        let key = alice2.symmetric_key(&Target::Broadcast, 1).unwrap();
        let env =
            Envelope::seal(&alice2.session, h, b"after", SealingKey::Symmetric(&key)).unwrap();
        // Bob still holds epoch 0 only; nothing in the log gives him epoch 1.
        assert!(matches!(
            env.verify_and_open(log.roster(), &bob),
            Err(EnvelopeError::NoKey { epoch: 1, .. })
        ));
        assert!(log.roster().open_root_keys(&bob.member).is_empty());
        let old = bob.root.mesh_key(&log.roster().mesh_id());
        assert!(old.decrypt(&env.ciphertext, &env.nonce).is_err());
        // And his messages claiming the current head are refused.
        let env = seal_for(&log, &bob, Target::Member(alice2.member.public()), b"x");
        assert!(matches!(
            env.verify_and_open(log.roster(), &alice2),
            Err(EnvelopeError::SenderNotMember(_))
        ));
    }

    #[test]
    fn key_kind_must_match_target_and_body_is_bounded() {
        let (log, alice, bob, _) = setup();
        let key = SymmetricKey::generate();
        let h = header(&log, Target::Member(bob.member.public()));
        assert_eq!(
            Envelope::seal(&alice.session, h.clone(), b"x", SealingKey::Symmetric(&key))
                .unwrap_err(),
            EnvelopeError::KeyKindMismatch
        );
        let big = vec![0; MAX_BODY_BYTES + 1];
        assert_eq!(
            Envelope::seal(
                &alice.session,
                h,
                &big,
                SealingKey::Direct(&bob.member.public())
            )
            .unwrap_err(),
            EnvelopeError::BodyTooLarge(MAX_BODY_BYTES + 1)
        );
    }

    #[test]
    fn shared_key_path_matches() {
        let (log, alice, bob, _) = setup();
        let shared = SharedBoxKey::new(
            &bob.member.public().to_box_public(),
            &alice.session.key.to_box_secret(),
        )
        .unwrap();
        let h = header(&log, Target::Member(bob.member.public()));
        let env = Envelope::seal(
            &alice.session,
            h,
            b"fast",
            SealingKey::DirectShared(&shared),
        )
        .unwrap();
        assert_eq!(
            env.verify_and_open(log.roster(), &bob).unwrap().body(),
            b"fast"
        );
    }

    #[test]
    fn target_strings_roundtrip_and_reject_bad_names() {
        for bad in [
            "",
            "@",
            "#",
            "@a b",
            "@/x",
            "#x/",
            "member:zz",
            "nobody",
            "@a//b",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
        assert!(format!("@{}", "a".repeat(65)).parse::<Target>().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn envelope_json_roundtrip(body in proptest::collection::vec(any::<u8>(), 0..300), name in "[a-z0-9_.-]{1,20}", reply in any::<bool>()) {
            let (log, alice, bob, _) = setup();
            for target in [Target::Topic(name.clone()), Target::Group(name.clone()), Target::Member(bob.member.public())] {
                let mut env = seal_for(&log, &alice, target, &body);
                if reply {
                    env.reply_to = Some(MessageId::random());
                    env.sig = alice.session.key.sign(&env.signed_bytes());
                }
                let back: Envelope = serde_json::from_str(&serde_json::to_string(&env).unwrap()).unwrap();
                prop_assert_eq!(&back, &env);
                let opened = back.verify_and_open(log.roster(), &bob).unwrap();
                prop_assert_eq!(opened.body(), &body[..]);
            }
        }

        #[test]
        fn message_id_and_target_roundtrip(bytes in any::<[u8; 16]>(), seed in any::<[u8; 32]>()) {
            let id = MessageId(bytes);
            prop_assert_eq!(MessageId::from_hex(&id.to_hex()).unwrap(), id);
            let k = SigningKey::from_seed(&seed).public();
            for t in [Target::Member(k), Target::Session(k), Target::Broadcast] {
                prop_assert_eq!(t.to_string().parse::<Target>().unwrap(), t);
            }
        }
    }
}

//! Tests of envelopes: every target kind seals, verifies and opens; every
//! forged, tampered, misaddressed or out-of-membership envelope is refused.

use super::*;
use crate::boxes::{EpochRootKey, SharedBoxKey, SymmetricKey};
use crate::cert::{CertError, SessionIdentity};
use crate::ids::{MemberKey, SessionKey};
use crate::keys::SigningKey;
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
        Target::Member(k) => Envelope::seal(&from.session, h, body, SealingKey::Direct(k)).unwrap(),
        Target::Session(k) => {
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
        Target::Member(MemberKey(bob.member.public())),
        Target::Session(bob.session.public()),
        Target::Group("eng/backend".into()),
        Target::Topic("deploys".into()),
        Target::Broadcast,
    ];
    for target in targets {
        let env = seal_for(&log, &alice, target.clone(), b"ship it");
        let wire: Envelope = serde_json::from_str(&serde_json::to_string(&env).unwrap()).unwrap();
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
    let env = seal_for(
        &log,
        &alice,
        Target::Member(MemberKey(bob.member.public())),
        b"hi",
    );
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
    let mut env = seal_for(
        &log,
        &alice,
        Target::Member(MemberKey(bob.member.public())),
        b"secret",
    );
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
    let env = seal_for(
        &log,
        &o,
        Target::Member(MemberKey(bob.member.public())),
        b"x",
    );
    assert!(matches!(
        env.verify_and_open(log.roster(), &bob),
        Err(EnvelopeError::SenderNotMember(_))
    ));

    // A session claiming bob's member key without bob's signature.
    let (log, alice, bob, _) = setup();
    let mut env = seal_for(
        &log,
        &alice,
        Target::Member(MemberKey(bob.member.public())),
        b"x",
    );
    env.sender.member = MemberKey(bob.member.public());
    env.sig = alice.session.key.sign(&env.signed_bytes());
    assert!(matches!(
        env.verify_and_open(log.roster(), &bob),
        Err(EnvelopeError::BadCertificate(CertError::BadSignature))
    ));
}

#[test]
fn direct_messages_open_only_for_their_recipient() {
    let (log, alice, bob, _) = setup();
    let to_bob = seal_for(
        &log,
        &alice,
        Target::Member(MemberKey(bob.member.public())),
        b"x",
    );
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
    let mut h = header(&log, Target::Member(MemberKey(bob.member.public())));
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
    let env = Envelope::seal(&alice2.session, h, b"after", SealingKey::Symmetric(&key)).unwrap();
    // Bob still holds epoch 0 only; nothing in the log gives him epoch 1.
    assert!(matches!(
        env.verify_and_open(log.roster(), &bob),
        Err(EnvelopeError::NoKey { epoch: 1, .. })
    ));
    assert!(log.roster().open_root_keys(&bob.member).is_empty());
    let old = bob.root.mesh_key(&log.roster().mesh_id());
    assert!(old.decrypt(&env.ciphertext, &env.nonce).is_err());
    // And his messages claiming the current head are refused.
    let env = seal_for(
        &log,
        &bob,
        Target::Member(MemberKey(alice2.member.public())),
        b"x",
    );
    assert!(matches!(
        env.verify_and_open(log.roster(), &alice2),
        Err(EnvelopeError::SenderNotMember(_))
    ));
}

#[test]
fn key_kind_must_match_target_and_body_is_bounded() {
    let (log, alice, bob, _) = setup();
    let key = SymmetricKey::generate();
    let h = header(&log, Target::Member(MemberKey(bob.member.public())));
    assert_eq!(
        Envelope::seal(&alice.session, h.clone(), b"x", SealingKey::Symmetric(&key)).unwrap_err(),
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
    let h = header(&log, Target::Member(MemberKey(bob.member.public())));
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn envelope_json_roundtrip(body in proptest::collection::vec(any::<u8>(), 0..300), name in "[a-z0-9_.-]{1,20}", reply in any::<bool>()) {
        let (log, alice, bob, _) = setup();
        for target in [Target::Topic(name.clone()), Target::Group(name.clone()), Target::Member(MemberKey(bob.member.public()))] {
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
        for t in [Target::Member(MemberKey(k)), Target::Session(SessionKey(k)), Target::Broadcast] {
            prop_assert_eq!(t.to_string().parse::<Target>().unwrap(), t);
        }
    }
}

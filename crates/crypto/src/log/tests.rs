//! Tests of the membership log: valid chains verify; every kind of forged,
//! reordered, duplicated or unauthorized entry is refused at that entry.

use proptest::prelude::*;

use super::*;
use crate::boxes::EpochRootKey;
use crate::encoding::Hash32;
use crate::keys::SigningKey;

const T: u64 = 1_700_000_000;

struct Mesh {
    owner: SigningKey,
    admin: SigningKey,
    alice: SigningKey,
    log: LogBuilder,
}

fn mesh() -> Mesh {
    let owner = SigningKey::from_seed(&[1; 32]);
    let mut log = LogBuilder::new(&owner, T);
    let admin = log.add_member(&owner, Role::Admin, T).unwrap();
    let alice = log.add_member(&owner, Role::Member, T).unwrap();
    Mesh {
        owner,
        admin,
        alice,
        log,
    }
}

/// Signs `body` as the next entry and returns the verifier's fault.
fn refused(m: &Mesh, author: &SigningKey, body: EntryBody) -> LogFault {
    let r = m.log.roster();
    let e = LogEntry::sign(author, r.len(), r.head(), T, body);
    let mut roster = r.clone();
    let err = roster.apply(&e).unwrap_err();
    assert_eq!(err.seq, r.len());
    // A refused entry leaves the roster as it was.
    assert_eq!(roster.head(), r.head());
    assert_eq!(roster.len(), r.len());
    err.fault
}

#[test]
fn a_built_log_verifies_from_scratch() {
    let m = mesh();
    let roster = verify_log(m.log.entries()).unwrap();
    assert_eq!(roster.mesh_id(), m.log.entries()[0].hash());
    assert_eq!(roster.head(), m.log.entries().last().unwrap().hash());
    assert_eq!(roster.role_of(&m.owner.public()), Some(Role::Owner));
    assert_eq!(roster.role_of(&m.admin.public()), Some(Role::Admin));
    assert_eq!(roster.role_of(&m.alice.public()), Some(Role::Member));
    assert_eq!(roster.len(), 5);
}

#[test]
fn json_roundtrip_keeps_hashes() {
    let m = mesh();
    let json = serde_json::to_string(m.log.entries()).unwrap();
    let back: Vec<LogEntry> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m.log.entries());
    assert_eq!(verify_log(&back).unwrap().head(), m.log.roster().head());
}

#[test]
fn flipping_any_signature_byte_is_refused_at_that_entry() {
    let m = mesh();
    for i in 0..m.log.entries().len() {
        for byte in [0usize, 31, 63] {
            let mut entries = m.log.entries().to_vec();
            entries[i].sig.0[byte] ^= 1;
            let err = verify_log(&entries).unwrap_err();
            assert_eq!(err.seq, i as u64, "entry {i} byte {byte}");
            assert!(matches!(err.fault, LogFault::BadSignature(_)), "{err}");
        }
    }
}

#[test]
fn changing_a_signed_field_is_refused() {
    let m = mesh();
    let mut entries = m.log.entries().to_vec();
    entries[1].at += 1;
    let err = verify_log(&entries).unwrap_err();
    assert_eq!(err.seq, 1);
    assert!(matches!(err.fault, LogFault::BadSignature(_)));

    // An altered invite body (more uses) breaks the signature too.
    let mut entries = m.log.entries().to_vec();
    if let EntryBody::Invite { max_uses, .. } = &mut entries[3].body {
        *max_uses = 99;
    }
    assert_eq!(verify_log(&entries).unwrap_err().seq, 3);
}

#[test]
fn reordered_duplicated_and_truncated_chains_are_refused() {
    let m = mesh();
    let e = m.log.entries();
    let swapped = vec![e[0].clone(), e[2].clone(), e[1].clone()];
    let err = verify_log(&swapped).unwrap_err();
    assert_eq!(err.seq, 2);
    assert_eq!(err.fault, LogFault::OutOfOrder { expected: 1 });

    let dup = vec![e[0].clone(), e[1].clone(), e[1].clone()];
    let err = verify_log(&dup).unwrap_err();
    assert_eq!(err.fault, LogFault::OutOfOrder { expected: 2 });

    // Same position, but chained to a different history.
    let other = LogBuilder::new(&m.owner, T + 1);
    let mut forked = vec![other.entries()[0].clone()];
    forked.extend_from_slice(&e[1..]);
    let err = verify_log(&forked).unwrap_err();
    assert_eq!((err.seq, err.fault), (1, LogFault::BrokenChain));

    assert_eq!(verify_log(&[]).unwrap_err().fault, LogFault::Genesis);
    let err = verify_log(&e[1..]).unwrap_err();
    assert_eq!(err.fault, LogFault::Genesis);
}

#[test]
fn a_second_genesis_is_refused() {
    let m = mesh();
    let body = EntryBody::Genesis {
        owner: m.owner.public(),
        nonce: vec![0; 16],
    };
    assert_eq!(refused(&m, &m.owner, body), LogFault::Genesis);
}

#[test]
fn members_cannot_invite_change_roles_remove_or_rekey() {
    let m = mesh();
    let inv = SigningKey::generate().public();
    let invite = EntryBody::Invite {
        invite_key: inv,
        role: Role::Member,
        max_uses: 1,
        expires_at: T + 10,
    };
    assert!(matches!(
        refused(&m, &m.alice, invite),
        LogFault::Unauthorized { .. }
    ));
    let role = EntryBody::Role {
        member: m.alice.public(),
        role: Role::Admin,
    };
    assert!(matches!(
        refused(&m, &m.alice, role),
        LogFault::Unauthorized { .. }
    ));
    let kick = EntryBody::Remove {
        member: m.admin.public(),
        how: RemoveKind::Kick,
    };
    assert!(matches!(
        refused(&m, &m.alice, kick),
        LogFault::Unauthorized { .. }
    ));
    let root = EpochRootKey::generate(1);
    let members: Vec<_> = m.log.roster().members().keys().copied().collect();
    let rekey = rekey_body(&root, &members).unwrap();
    assert!(matches!(
        refused(&m, &m.alice, rekey),
        LogFault::Unauthorized { .. }
    ));
}

#[test]
fn only_the_owner_manages_admins() {
    let m = mesh();
    let grant = EntryBody::Role {
        member: m.alice.public(),
        role: Role::Admin,
    };
    assert!(matches!(
        refused(&m, &m.admin, grant.clone()),
        LogFault::Unauthorized { .. }
    ));
    let admin_invite = EntryBody::Invite {
        invite_key: SigningKey::generate().public(),
        role: Role::Admin,
        max_uses: 1,
        expires_at: T + 10,
    };
    assert!(matches!(
        refused(&m, &m.admin, admin_invite),
        LogFault::Unauthorized { .. }
    ));
    let kick_admin = EntryBody::Remove {
        member: m.owner.public(),
        how: RemoveKind::Kick,
    };
    assert!(matches!(
        refused(&m, &m.admin, kick_admin),
        LogFault::Unauthorized { .. }
    ));
    let mut m = m;
    m.log.push(&m.owner, T, grant).unwrap();
    assert_eq!(m.log.roster().role_of(&m.alice.public()), Some(Role::Admin));
}

#[test]
fn invites_are_single_purpose_and_bounded() {
    let mut m = mesh();
    let inv = SigningKey::generate();
    m.log
        .invite(&m.admin, &inv.public(), Role::Member, 1, T, T + 100)
        .unwrap();
    // The same invite key again.
    let again = EntryBody::Invite {
        invite_key: inv.public(),
        role: Role::Member,
        max_uses: 1,
        expires_at: T + 100,
    };
    assert!(matches!(
        refused(&m, &m.admin, again),
        LogFault::DuplicateInvite(_)
    ));
    let zero = EntryBody::Invite {
        invite_key: SigningKey::generate().public(),
        role: Role::Member,
        max_uses: 0,
        expires_at: T + 100,
    };
    assert!(matches!(refused(&m, &m.admin, zero), LogFault::Invalid(_)));

    // First admit succeeds; the second exceeds max_uses.
    let bob = SigningKey::generate();
    m.log.admit(&bob, &inv, T).unwrap();
    let carol = SigningKey::generate();
    let r = m.log.roster();
    let e = LogEntry::admit(&carol, &inv, r.len(), r.head(), T);
    let err = r.clone().apply(&e).unwrap_err();
    assert!(
        matches!(err.fault, LogFault::InviteExhausted { max_uses: 1, .. }),
        "{err}"
    );
    // Already a member.
    let inv2 = SigningKey::generate();
    m.log
        .invite(&m.owner, &inv2.public(), Role::Member, 5, T, T + 100)
        .unwrap();
    let r = m.log.roster();
    let e = LogEntry::admit(&bob, &inv2, r.len(), r.head(), T);
    assert!(matches!(
        r.clone().apply(&e).unwrap_err().fault,
        LogFault::AlreadyMember(_)
    ));
}

#[test]
fn revoked_and_expired_invites_admit_no_one() {
    let mut m = mesh();
    let inv = SigningKey::generate();
    m.log
        .invite(&m.owner, &inv.public(), Role::Member, 5, T, T + 100)
        .unwrap();
    let r = m.log.roster();
    let late = LogEntry::admit(&SigningKey::generate(), &inv, r.len(), r.head(), T + 101);
    assert!(matches!(
        r.clone().apply(&late).unwrap_err().fault,
        LogFault::InviteExpired(_)
    ));

    m.log
        .push(
            &m.admin,
            T,
            EntryBody::RevokeInvite {
                invite_key: inv.public(),
            },
        )
        .unwrap();
    let r = m.log.roster();
    let e = LogEntry::admit(&SigningKey::generate(), &inv, r.len(), r.head(), T);
    let err = r.clone().apply(&e).unwrap_err();
    assert!(matches!(err.fault, LogFault::InviteRevoked { .. }), "{err}");
    assert!(err.to_string().contains("was revoked at entry"), "{err}");
}

#[test]
fn an_admit_needs_the_invite_signature() {
    let mut m = mesh();
    let inv = SigningKey::generate();
    m.log
        .invite(&m.owner, &inv.public(), Role::Member, 1, T, T + 100)
        .unwrap();
    let r = m.log.roster();
    let joiner = SigningKey::generate();
    // Signed by someone who does not hold the invite secret.
    let forged = LogEntry::admit(&joiner, &SigningKey::generate(), r.len(), r.head(), T);
    let mut e = forged.clone();
    e.body = EntryBody::Admit {
        member: joiner.public(),
        invite_key: inv.public(),
    };
    e.sig = joiner.sign(&e.signed_bytes());
    assert!(matches!(
        r.clone().apply(&e).unwrap_err().fault,
        LogFault::BadSignature(_)
    ));
    // Missing invite signature.
    let mut e = LogEntry::admit(&joiner, &inv, r.len(), r.head(), T);
    e.invite_sig = None;
    assert_eq!(
        r.clone().apply(&e).unwrap_err().fault,
        LogFault::InviteSignature
    );
}

#[test]
fn a_removal_must_be_followed_by_the_removers_rekey() {
    let mut m = mesh();
    let alice = m.alice.public();
    m.log
        .push(
            &m.admin,
            T,
            EntryBody::Remove {
                member: alice,
                how: RemoveKind::Kick,
            },
        )
        .unwrap();
    let removal = m.log.roster().len() - 1;
    assert!(m.log.roster().needs_rekey());
    // Anything else next is refused.
    let invite = EntryBody::Invite {
        invite_key: SigningKey::generate().public(),
        role: Role::Member,
        max_uses: 1,
        expires_at: T + 10,
    };
    assert_eq!(
        refused(&m, &m.admin, invite),
        LogFault::MissingRekey(removal)
    );
    // A rekey that includes the removed member is refused.
    let mut with_removed: Vec<_> = m.log.roster().members().keys().copied().collect();
    with_removed.push(alice);
    let bad = rekey_body(&EpochRootKey::generate(1), &with_removed).unwrap();
    assert!(matches!(
        refused(&m, &m.admin, bad),
        LogFault::RekeyRecipients(_)
    ));
    // A rekey that leaves a member out is refused.
    let missing = rekey_body(&EpochRootKey::generate(1), &[m.admin.public()]).unwrap();
    assert!(matches!(
        refused(&m, &m.admin, missing),
        LogFault::RekeyRecipients(_)
    ));
    // Wrong epoch.
    let members: Vec<_> = m.log.roster().members().keys().copied().collect();
    let skip = rekey_body(&EpochRootKey::generate(2), &members).unwrap();
    assert!(matches!(refused(&m, &m.admin, skip), LogFault::Invalid(_)));
    // The right rekey.
    m.log.rekey(&m.admin, T).unwrap();
    assert!(!m.log.roster().needs_rekey());
    assert_eq!(m.log.roster().epoch(), 1);
}

#[test]
fn a_removed_member_cannot_open_the_new_root_key() {
    let mut m = mesh();
    let root = m
        .log
        .remove(&m.owner, &m.alice.public(), RemoveKind::Ban, T)
        .unwrap()
        .unwrap();
    let roster = m.log.roster();
    assert!(!roster.is_member(&m.alice.public()));
    assert!(roster.banned().contains(&m.alice.public()));
    // Alice has no sealed copy and cannot open anyone else's.
    assert!(roster.sealed_root_key(1, &m.alice.public()).is_none());
    for member in roster.members().keys() {
        let sealed = roster.sealed_root_key(1, member).unwrap();
        assert!(open_root_key(1, sealed, &m.alice).is_err());
    }
    assert!(roster.open_root_keys(&m.alice).unwrap().is_empty());
    // The remaining members can.
    let admins = roster.open_root_keys(&m.admin).unwrap();
    assert_eq!(admins.len(), 1);
    assert_eq!(admins[0], root);
    // A banned key cannot be re-admitted until unbanned.
    let inv = SigningKey::generate();
    m.log
        .invite(&m.owner, &inv.public(), Role::Member, 2, T, T + 100)
        .unwrap();
    let r = m.log.roster();
    let e = LogEntry::admit(&m.alice, &inv, r.len(), r.head(), T);
    assert!(matches!(
        r.clone().apply(&e).unwrap_err().fault,
        LogFault::Banned(_)
    ));
    m.log
        .push(
            &m.owner,
            T,
            EntryBody::Unban {
                member: m.alice.public(),
            },
        )
        .unwrap();
    m.log.admit(&m.alice, &inv, T).unwrap();
    assert!(m.log.roster().is_member(&m.alice.public()));
}

#[test]
fn leaving_sets_needs_rekey_and_owner_cannot_leave() {
    let mut m = mesh();
    let leave = EntryBody::Remove {
        member: m.owner.public(),
        how: RemoveKind::Leave,
    };
    assert!(matches!(
        refused(&m, &m.owner, leave),
        LogFault::Unauthorized { .. }
    ));
    let other = EntryBody::Remove {
        member: m.alice.public(),
        how: RemoveKind::Leave,
    };
    assert!(matches!(
        refused(&m, &m.admin, other),
        LogFault::Unauthorized { .. }
    ));
    m.log
        .remove(&m.alice, &m.alice.public(), RemoveKind::Leave, T)
        .unwrap();
    assert!(m.log.roster().needs_rekey());
    m.log.rekey(&m.owner, T).unwrap();
    assert!(!m.log.roster().needs_rekey());
}

#[test]
fn membership_as_of_a_head() {
    let mut m = mesh();
    let before = m.log.roster().head();
    let bob = m.log.add_member(&m.owner, Role::Member, T).unwrap();
    let with_bob = m.log.roster().head();
    m.log
        .remove(&m.owner, &m.alice.public(), RemoveKind::Kick, T)
        .unwrap();
    let r = m.log.roster();
    assert!(!r.was_member_at(&bob.public(), &before));
    assert!(r.was_member_at(&bob.public(), &with_bob));
    assert!(r.was_member_at(&m.alice.public(), &with_bob));
    assert!(!r.was_member_at(&m.alice.public(), &r.head()));
    assert!(!r.was_member_at(&m.alice.public(), &Hash32([9; 32])));
}

#[test]
fn profiles_are_encrypted_and_only_members_write_them() {
    let mut m = mesh();
    let root = EpochRootKey::generate(0);
    let mesh_id = m.log.roster().mesh_id();
    let profile = Profile {
        name: "Alice".into(),
        summary: Some("refactoring the parser".into()),
        peer_type: PeerType::Human,
    };
    let body = profile.seal(&root, &mesh_id);
    let json = serde_json::to_string(&body).unwrap();
    assert!(!json.contains("Alice") && !json.contains("parser"));
    m.log.push(&m.alice, T, body.clone()).unwrap();
    let stored = m
        .log
        .roster()
        .member(&m.alice.public())
        .unwrap()
        .profile
        .clone()
        .unwrap();
    let opened = Profile::open(&root, &mesh_id, &stored.nonce, &stored.ciphertext).unwrap();
    assert_eq!(opened, profile);
    let wrong = EpochRootKey::generate(0);
    assert!(Profile::open(&wrong, &mesh_id, &stored.nonce, &stored.ciphertext).is_err());
    // Not a member.
    let outsider = SigningKey::generate();
    assert!(matches!(
        refused(&m, &outsider, body),
        LogFault::NotAMember(_)
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn entry_json_roundtrip(members in 0usize..4, seed in any::<[u8; 32]>()) {
        let owner = SigningKey::from_seed(&seed);
        let mut log = LogBuilder::new(&owner, T);
        for _ in 0..members {
            log.add_member(&owner, Role::Member, T).unwrap();
        }
        log.rekey(&owner, T).unwrap();
        for e in log.entries() {
            let back: LogEntry = serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap();
            prop_assert_eq!(&back, e);
            prop_assert_eq!(back.hash(), e.hash());
        }
    }
}

mod spaces {
    //! Topics and groups: who may create, join, leave and rekey, and who was
    //! a recipient when.

    use super::*;
    use crate::envelope::Target;

    fn push(m: &mut Mesh, who: &SigningKey, body: EntryBody) {
        m.log.push(who, T, body).unwrap();
    }

    #[test]
    fn public_topic_join_leave_and_recipients_as_of_send_time() {
        let mut m = mesh();
        let (owner, alice, admin) = (m.owner.clone(), m.alice.clone(), m.admin.clone());
        let (body, key) = topic_create_body("deploys", false, "ship it", &owner.public()).unwrap();
        assert!(key.is_none());
        push(&mut m, &owner, body);
        let before_alice = m.log.roster().len();
        push(
            &mut m,
            &alice,
            topic_join_body("deploys", &alice.public(), None).unwrap(),
        );
        let with_alice = m.log.roster().len();
        let t = Target::Topic("deploys".into());
        let r = m.log.roster();
        assert!(r.is_recipient_at(&owner.public(), &t, before_alice));
        assert!(!r.is_recipient_at(&alice.public(), &t, before_alice));
        assert!(r.is_recipient_at(&alice.public(), &t, with_alice));
        assert!(!r.is_recipient_at(&admin.public(), &t, with_alice));
        assert_eq!(r.recipients_now(&t).len(), 2);
        // Someone else cannot be added to a public topic by a non-admin …
        let f = refused(
            &m,
            &alice,
            topic_join_body("deploys", &admin.public(), None).unwrap(),
        );
        assert!(matches!(f, LogFault::Unauthorized { .. }), "{f}");
        // … nor join twice, nor join a topic that does not exist.
        let f = refused(
            &m,
            &alice,
            topic_join_body("deploys", &alice.public(), None).unwrap(),
        );
        assert!(matches!(f, LogFault::Invalid(_)), "{f}");
        let f = refused(
            &m,
            &alice,
            topic_join_body("nope", &alice.public(), None).unwrap(),
        );
        assert!(matches!(f, LogFault::Invalid("no such topic")), "{f}");
        // A second topic with the same name is refused.
        let (dup, _) = topic_create_body("deploys", false, "", &alice.public()).unwrap();
        assert!(matches!(refused(&m, &alice, dup), LogFault::Invalid(_)));
        push(
            &mut m,
            &alice,
            EntryBody::TopicLeave {
                topic: "deploys".into(),
                member: alice.public(),
            },
        );
        let r = m.log.roster();
        // Still a recipient of what was sent while it was in, not after.
        assert!(r.is_recipient_at(&alice.public(), &t, with_alice));
        assert!(!r.is_recipient_at(&alice.public(), &t, r.len()));
        assert_eq!(verify_log(m.log.entries()).unwrap().topics(), r.topics());
    }

    #[test]
    fn private_topic_keys_are_sealed_to_members_and_rotate_on_leave() {
        let mut m = mesh();
        let (owner, alice, admin) = (m.owner.clone(), m.alice.clone(), m.admin.clone());
        let (body, key) = topic_create_body("secret", true, "", &alice.public()).unwrap();
        let k0 = key.unwrap();
        push(&mut m, &alice, body);
        // Only a topic member can add someone, and must seal the key to them.
        let f = refused(
            &m,
            &owner,
            topic_join_body("secret", &owner.public(), None).unwrap(),
        );
        assert!(matches!(f, LogFault::Unauthorized { .. }), "{f}");
        let f = refused(
            &m,
            &alice,
            topic_join_body("secret", &owner.public(), None).unwrap(),
        );
        assert!(matches!(f, LogFault::RekeyRecipients(_)), "{f}");
        push(
            &mut m,
            &alice,
            topic_join_body("secret", &owner.public(), Some(&k0)).unwrap(),
        );
        let info = m.log.roster().topic("secret").unwrap().clone();
        let opened = info.open_keys(&owner).unwrap();
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].1.as_bytes(), k0.as_bytes());
        assert!(info.open_keys(&admin).unwrap().is_empty());
        // The owner leaves: nobody may add members until a rekey that leaves
        // the owner out.
        push(
            &mut m,
            &owner,
            EntryBody::TopicLeave {
                topic: "secret".into(),
                member: owner.public(),
            },
        );
        assert!(m.log.roster().topic("secret").unwrap().needs_rekey);
        let f = refused(
            &m,
            &alice,
            topic_join_body("secret", &admin.public(), Some(&k0)).unwrap(),
        );
        assert!(matches!(f, LogFault::Invalid(_)), "{f}");
        let stale = topic_rekey_body("secret", &info).unwrap().0; // still seals to the owner
        assert!(matches!(
            refused(&m, &alice, stale),
            LogFault::RekeyRecipients(_)
        ));
        let info = m.log.roster().topic("secret").unwrap().clone();
        let (rekey, k1) = topic_rekey_body("secret", &info).unwrap();
        push(&mut m, &alice, rekey);
        let info = m.log.roster().topic("secret").unwrap();
        assert!(!info.needs_rekey);
        assert_eq!(info.key_epoch, 1);
        let alice_keys = info.open_keys(&alice).unwrap();
        assert_eq!(alice_keys.len(), 2);
        assert_eq!(alice_keys[1].1.as_bytes(), k1.as_bytes());
        // The owner kept only epoch 0.
        assert_eq!(info.open_keys(&owner).unwrap().len(), 1);
    }

    #[test]
    fn removal_from_the_mesh_ends_topic_and_group_memberships() {
        let mut m = mesh();
        let (owner, alice) = (m.owner.clone(), m.alice.clone());
        let (body, key) = topic_create_body("ops", true, "", &owner.public()).unwrap();
        push(&mut m, &owner, body);
        push(
            &mut m,
            &owner,
            topic_join_body("ops", &alice.public(), key.as_ref()).unwrap(),
        );
        push(
            &mut m,
            &alice,
            EntryBody::GroupJoin {
                group: "eng/backend".into(),
                member: alice.public(),
                role: Some("lead".into()),
            },
        );
        let sent = m.log.roster().len();
        m.log
            .remove(&owner, &alice.public(), RemoveKind::Ban, T)
            .unwrap();
        let r = m.log.roster();
        assert!(r.topic("ops").unwrap().needs_rekey);
        assert!(r.groups_of(&alice.public()).is_empty());
        let eng = Target::Group("eng".into());
        assert!(r.is_recipient_at(&alice.public(), &eng, sent));
        assert!(!r.is_recipient_at(&alice.public(), &eng, r.len()));
        assert!(!r.is_recipient_at(&alice.public(), &Target::Broadcast, r.len()));
        assert!(r.is_recipient_at(&alice.public(), &Target::Broadcast, sent));
    }

    #[test]
    fn groups_are_hierarchical_and_self_service() {
        let mut m = mesh();
        let (owner, alice, admin) = (m.owner.clone(), m.alice.clone(), m.admin.clone());
        let join = |group: &str, member: &SigningKey, role: Option<&str>| EntryBody::GroupJoin {
            group: group.into(),
            member: member.public(),
            role: role.map(str::to_owned),
        };
        push(&mut m, &alice, join("eng/backend", &alice, Some("lead")));
        push(&mut m, &admin, join("eng", &admin, None));
        push(&mut m, &owner, join("engineering", &owner, None));
        let r = m.log.roster();
        let eng = r.recipients_now(&Target::Group("eng".into()));
        assert_eq!(eng, [alice.public(), admin.public()].into_iter().collect());
        let backend = r.recipients_now(&Target::Group("eng/backend".into()));
        assert_eq!(backend, [alice.public()].into_iter().collect());
        assert_eq!(
            r.groups_of(&alice.public()),
            vec![("eng/backend", Some("lead"))]
        );
        // A member cannot put someone else in a group; an admin can.
        let f = refused(&m, &alice, join("eng", &owner, None));
        assert!(matches!(f, LogFault::Unauthorized { .. }), "{f}");
        let f = refused(&m, &alice, join("bad name!", &alice, None));
        assert!(matches!(f, LogFault::Invalid(_)), "{f}");
        push(&mut m, &admin, join("eng", &owner, None));
        // A leave of a group one is not in is refused.
        let f = refused(
            &m,
            &alice,
            EntryBody::GroupLeave {
                group: "eng".into(),
                member: alice.public(),
            },
        );
        assert!(matches!(f, LogFault::Invalid(_)), "{f}");
        assert!(group_is_under("eng/backend", "eng"));
        assert!(!group_is_under("engineering", "eng"));
    }

    #[test]
    fn after_a_voluntary_leave_any_member_may_rekey() {
        let mut m = mesh();
        let (alice, admin) = (m.alice.clone(), m.admin.clone());
        let extra = m.log.add_member(&admin, Role::Member, T).unwrap();
        // Without a pending removal a plain member may not rekey …
        let root = EpochRootKey::generate(1);
        let members: Vec<_> = m.log.roster().members().keys().copied().collect();
        let body = rekey_body(&root, &members).unwrap();
        assert!(matches!(
            refused(&m, &alice, body),
            LogFault::Unauthorized { .. }
        ));
        m.log
            .remove(&extra, &extra.public(), RemoveKind::Leave, T)
            .unwrap();
        assert!(m.log.roster().needs_rekey());
        // … but after a leave, one may.
        m.log.rekey(&alice, T).unwrap();
        assert!(!m.log.roster().needs_rekey());
        assert_eq!(m.log.roster().epoch(), 1);
    }
}

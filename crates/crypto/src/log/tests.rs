//! Tests of the membership log: valid chains verify; every kind of forged,
//! reordered, duplicated or unauthorized entry is refused at that entry.

use proptest::prelude::*;

use super::*;
use crate::boxes::EpochRootKey;
use crate::encoding::Hash32;
use crate::ids::MeshId;
use crate::keys::{PublicKey, SigningKey};

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
    assert_eq!(roster.mesh_id(), MeshId(m.log.entries()[0].hash()));
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
    let rekey = rekey_body(&root, &m.log.roster().mesh_id(), &members).unwrap();
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
fn a_removal_must_be_followed_by_a_rekey() {
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
    let bad = rekey_body(
        &EpochRootKey::generate(1),
        &m.log.roster().mesh_id(),
        &with_removed,
    )
    .unwrap();
    assert!(matches!(
        refused(&m, &m.admin, bad),
        LogFault::RekeyRecipients(_)
    ));
    // A rekey that leaves a member out is refused.
    let missing = rekey_body(
        &EpochRootKey::generate(1),
        &m.log.roster().mesh_id(),
        &[m.admin.public()],
    )
    .unwrap();
    assert!(matches!(
        refused(&m, &m.admin, missing),
        LogFault::RekeyRecipients(_)
    ));
    // Wrong epoch.
    let members: Vec<_> = m.log.roster().members().keys().copied().collect();
    let skip = rekey_body(
        &EpochRootKey::generate(2),
        &m.log.roster().mesh_id(),
        &members,
    )
    .unwrap();
    assert!(matches!(refused(&m, &m.admin, skip), LogFault::Invalid(_)));
    // The right rekey.
    m.log.rekey(&m.admin, T).unwrap();
    assert!(!m.log.roster().needs_rekey());
    assert_eq!(m.log.roster().epoch(), 1);
}

/// Signs a `rekey` to the next epoch whose seal for `victim` is `bad_seal`
/// (every other member gets the right key), and returns the right key.
fn rekey_with_bad_seal(
    m: &mut Mesh,
    author: &SigningKey,
    victim: &PublicKey,
    bad_seal: Vec<u8>,
) -> EpochRootKey {
    let r = m.log.roster();
    let root = EpochRootKey::generate(r.epoch() + 1);
    let members: Vec<_> = r.members().keys().copied().collect();
    let mut body = rekey_body(&root, &r.mesh_id(), &members).unwrap();
    let EntryBody::Rekey { sealed, .. } = &mut body else {
        unreachable!()
    };
    for s in sealed.iter_mut().filter(|s| s.recipient == *victim) {
        s.ciphertext = bad_seal.clone();
    }
    m.log.push(author, T, body).unwrap();
    root
}

#[test]
fn the_owner_or_any_admin_repairs_a_pending_removal() {
    let mut m = mesh();
    let admin2 = m.log.add_member(&m.owner, Role::Admin, T).unwrap();
    let bob = m.log.add_member(&m.owner, Role::Member, T).unwrap();
    let alice = m.alice.public();
    // The admin appends a lone kick and never writes the rekey.
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
    let r = m.log.roster();
    assert_eq!(r.pending_removal(), Some(removal));
    assert!(r.may_rekey(&m.owner.public()) && r.may_rekey(&admin2.public()));
    // Nothing but a rekey comes next, not even from the owner …
    let invite = EntryBody::Invite {
        invite_key: SigningKey::generate().public(),
        role: Role::Member,
        max_uses: 1,
        expires_at: T + 10,
    };
    assert_eq!(
        refused(&m, &m.owner, invite),
        LogFault::MissingRekey(removal)
    );
    // … and a plain member may not write it.
    let members: Vec<_> = m.log.roster().members().keys().copied().collect();
    let body = rekey_body(
        &EpochRootKey::generate(1),
        &m.log.roster().mesh_id(),
        &members,
    )
    .unwrap();
    assert_eq!(refused(&m, &bob, body), LogFault::MissingRekey(removal));
    // The other admin, or the owner, may.
    let mut by_admin2 = m.log.clone();
    by_admin2.rekey(&admin2, T).unwrap();
    assert!(!by_admin2.roster().needs_rekey());
    m.log.rekey(&m.owner, T).unwrap();
    let r = m.log.roster();
    assert_eq!((r.epoch(), r.pending_removal()), (1, None));
    // And the owner can go on: remove that admin, invite again.
    m.log
        .remove(&m.owner, &m.admin.public(), RemoveKind::Kick, T)
        .unwrap();
    m.log.add_member(&m.owner, Role::Member, T).unwrap();
}

#[test]
fn a_plain_member_cannot_rekey_while_a_kick_is_pending() {
    let mut m = mesh();
    let carol = m.log.add_member(&m.owner, Role::Member, T).unwrap();
    m.log
        .push(
            &m.owner,
            T,
            EntryBody::Remove {
                member: carol.public(),
                how: RemoveKind::Kick,
            },
        )
        .unwrap();
    let removal = m.log.roster().len() - 1;
    assert!(!m.log.roster().may_rekey(&m.alice.public()));
    let members: Vec<_> = m.log.roster().members().keys().copied().collect();
    let body = rekey_body(
        &EpochRootKey::generate(1),
        &m.log.roster().mesh_id(),
        &members,
    )
    .unwrap();
    assert_eq!(refused(&m, &m.alice, body), LogFault::MissingRekey(removal));
}

#[test]
fn who_may_rekey_when() {
    let mut m = mesh();
    let (alice, admin) = (m.alice.clone(), m.admin.clone());
    let bob = m.log.add_member(&m.owner, Role::Member, T).unwrap();
    let carol = m.log.add_member(&m.owner, Role::Member, T).unwrap();
    let r = m.log.roster();
    // Owners and admins always; members not at rest.
    assert!(r.may_rekey(&m.owner.public()) && r.may_rekey(&admin.public()));
    assert!(!r.may_rekey(&alice.public()));
    assert!(!r.may_rekey(&SigningKey::generate().public()));
    // (a) after a leave a member may, and that epoch is member-made …
    m.log
        .remove(&carol, &carol.public(), RemoveKind::Leave, T)
        .unwrap();
    assert!(m.log.roster().may_rekey(&alice.public()));
    m.log.rekey(&alice, T).unwrap();
    let r = m.log.roster();
    assert!(r.current_epoch_is_member_made());
    assert_eq!(r.key_epochs()[&1].author, alice.public());
    // (c) … so any member may re-roll it, and again, …
    assert!(r.may_rekey(&bob.public()));
    m.log.rekey(&bob, T).unwrap();
    m.log.rekey(&alice, T).unwrap();
    // … until the owner or an admin makes one.
    m.log.rekey(&admin, T).unwrap();
    let r = m.log.roster();
    assert!(!r.current_epoch_is_member_made());
    assert!(!r.may_rekey(&bob.public()));
    let members: Vec<_> = r.members().keys().copied().collect();
    let body = rekey_body(&EpochRootKey::generate(5), &r.mesh_id(), &members).unwrap();
    assert!(matches!(
        refused(&m, &bob, body),
        LogFault::Unauthorized { .. }
    ));
}

#[test]
fn a_rekey_seals_to_the_current_members_only() {
    let mut m = mesh();
    let inv = SigningKey::generate();
    m.log
        .invite(&m.owner, &inv.public(), Role::Member, 5, T, T + 100)
        .unwrap();
    let r = m.log.roster();
    let mut recipients: Vec<_> = r.members().keys().copied().collect();
    recipients.push(inv.public());
    let body = rekey_body(&EpochRootKey::generate(1), &r.mesh_id(), &recipients).unwrap();
    let f = refused(&m, &m.owner, body);
    assert!(
        matches!(&f, LogFault::RekeyRecipients(why) if why.contains("not a current member")),
        "{f}"
    );
}

#[test]
fn a_kick_or_ban_revokes_the_removed_members_invites() {
    let mut m = mesh();
    // Mallory joins with a 5-use invite; an unrelated invite is open too.
    let hers = SigningKey::generate();
    let other = SigningKey::generate();
    m.log
        .invite(&m.owner, &hers.public(), Role::Member, 5, T, T + 100)
        .unwrap();
    m.log
        .invite(&m.owner, &other.public(), Role::Member, 5, T, T + 100)
        .unwrap();
    let mallory = SigningKey::generate();
    m.log.admit(&mallory, &hers, T).unwrap();
    // An invite the admin authored.
    let admins = SigningKey::generate();
    m.log
        .invite(&m.admin, &admins.public(), Role::Member, 1, T, T + 100)
        .unwrap();
    m.log
        .remove(&m.owner, &mallory.public(), RemoveKind::Ban, T)
        .unwrap();
    let ban = m.log.roster().len() - 2;
    let r = m.log.roster();
    assert_eq!(r.invites()[&hers.public()].revoked_at, Some(ban));
    assert!(r.invites()[&other.public()].is_open());
    assert!(r.invites()[&admins.public()].is_open());
    // Her invite admits no one now.
    let e = LogEntry::admit(&SigningKey::generate(), &hers, r.len(), r.head(), T);
    assert!(matches!(
        r.clone().apply(&e).unwrap_err().fault,
        LogFault::InviteRevoked { at, .. } if at == ban
    ));
    // Kicking the admin revokes the invites it authored.
    m.log
        .remove(&m.owner, &m.admin.public(), RemoveKind::Kick, T)
        .unwrap();
    let kick = m.log.roster().len() - 2;
    let r = m.log.roster();
    assert_eq!(r.invites()[&admins.public()].revoked_at, Some(kick));
    assert_eq!(r.invites()[&hers.public()].revoked_at, Some(ban));
    assert!(r.invites()[&other.public()].is_open());
    assert!(m.log.roster().invites()[&other.public()].is_open());
    // The same verdict from scratch.
    let again = verify_log(m.log.entries()).unwrap();
    assert_eq!(again.invites(), m.log.roster().invites());
}

#[test]
fn leaving_or_losing_admin_revokes_the_members_invites() {
    let mut m = mesh();
    // A second admin, who joined with a 5-use admin invite and made two
    // invites of its own; and an unrelated open invite.
    let joined_with = SigningKey::generate();
    m.log
        .invite(&m.owner, &joined_with.public(), Role::Admin, 5, T, T + 100)
        .unwrap();
    let eve = SigningKey::generate();
    m.log.admit(&eve, &joined_with, T).unwrap();
    let eves: Vec<SigningKey> = (0..2).map(|_| SigningKey::generate()).collect();
    for k in &eves {
        m.log
            .invite(&eve, &k.public(), Role::Member, 5, T, T + 100)
            .unwrap();
    }
    let other = SigningKey::generate();
    m.log
        .invite(&m.owner, &other.public(), Role::Member, 5, T, T + 100)
        .unwrap();

    // Eve leaves: her invites and the one she joined with are revoked, so
    // no key she holds opens a door back in.
    m.log
        .remove(&eve, &eve.public(), RemoveKind::Leave, T)
        .unwrap();
    let leave = m.log.roster().len() - 1;
    let r = m.log.roster();
    for k in eves.iter().chain([&joined_with]) {
        assert_eq!(r.invites()[&k.public()].revoked_at, Some(leave));
    }
    assert!(r.invites()[&other.public()].is_open());
    let back = LogEntry::admit(&SigningKey::generate(), &eves[0], r.len(), r.head(), T);
    assert!(matches!(
        r.clone().apply(&back).unwrap_err().fault,
        LogFault::InviteRevoked { at, .. } if at == leave
    ));
    m.log.rekey(&m.owner, T).unwrap();

    // The admin made at setup loses admin: the invite it made is revoked,
    // the one it joined with (the owner's) is not, nor anyone else's.
    let admins = SigningKey::generate();
    m.log
        .invite(&m.admin, &admins.public(), Role::Member, 5, T, T + 100)
        .unwrap();
    let admin_joined_with = joined_with_of(&m, &m.admin.public());
    m.log
        .push(
            &m.owner,
            T,
            EntryBody::Role {
                member: m.admin.public(),
                role: Role::Member,
            },
        )
        .unwrap();
    let demoted = m.log.roster().len() - 1;
    let r = m.log.roster();
    assert_eq!(r.invites()[&admins.public()].revoked_at, Some(demoted));
    assert_eq!(
        r.invites()[&admin_joined_with].revoked_at,
        None,
        "a demoted admin stays a member: its own way in is not revoked"
    );
    assert!(r.invites()[&other.public()].is_open());
    // Granting admin, or a role entry that keeps it a member, revokes nothing.
    let mine = SigningKey::generate();
    m.log
        .invite(&m.owner, &mine.public(), Role::Member, 5, T, T + 100)
        .unwrap();
    for role in [Role::Member, Role::Admin] {
        m.log
            .push(
                &m.owner,
                T,
                EntryBody::Role {
                    member: m.alice.public(),
                    role,
                },
            )
            .unwrap();
    }
    assert!(m.log.roster().invites()[&mine.public()].is_open());
    assert!(m.log.roster().invites()[&other.public()].is_open());
    // The same verdict from scratch.
    let again = verify_log(m.log.entries()).unwrap();
    assert_eq!(again.invites(), m.log.roster().invites());
}

/// The invite `member` joined with.
fn joined_with_of(m: &Mesh, member: &PublicKey) -> PublicKey {
    m.log.roster().member(member).unwrap().invite.unwrap()
}

#[test]
fn a_joiner_with_an_invite_of_an_earlier_epoch_is_owed_the_key() {
    let mut m = mesh();
    let inv = SigningKey::generate();
    m.log
        .invite(&m.owner, &inv.public(), Role::Member, 2, T, T + 100)
        .unwrap();
    assert_eq!(m.log.roster().invites()[&inv.public()].epoch, 0);
    m.log.rekey(&m.owner, T).unwrap();
    let joiner = SigningKey::generate();
    m.log.admit(&joiner, &inv, T).unwrap();
    let r = m.log.roster();
    assert!(r.needs_rekey() && r.owed().contains(&joiner.public()));
    assert_eq!(r.pending_removal(), None);
    // Any member (the joiner itself first of all) may write the rekey.
    assert!(r.may_rekey(&joiner.public()) && r.may_rekey(&m.alice.public()));
    m.log.rekey(&joiner, T).unwrap();
    let r = m.log.roster();
    assert!(!r.needs_rekey() && r.owed().is_empty());
    let mine: Vec<_> = r.open_root_keys(&joiner).into_iter().collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].as_ref().unwrap().epoch, 2);
    // An invite of the current epoch owes nothing.
    let inv2 = SigningKey::generate();
    m.log
        .invite(&m.owner, &inv2.public(), Role::Member, 1, T, T + 100)
        .unwrap();
    m.log.admit(&SigningKey::generate(), &inv2, T).unwrap();
    assert!(!m.log.roster().needs_rekey());
}

#[test]
fn a_bad_seal_is_reported_per_epoch_and_blocks_no_other() {
    let mut m = mesh();
    let (alice, admin) = (m.alice.clone(), m.admin.clone());
    let carol = m.log.add_member(&m.owner, Role::Member, T).unwrap();
    m.log
        .remove(&carol, &carol.public(), RemoveKind::Leave, T)
        .unwrap();
    // The leave is repaired with garbage for alice: 80 bytes that do not
    // open.
    let garbage = vec![0x5a; SEALED_ROOT_KEY_BYTES];
    let bad_seq = m.log.roster().len();
    let root1 = rekey_with_bad_seal(&mut m, &admin, &alice.public(), garbage);
    let r = m.log.roster();
    let got = r.open_root_keys(&alice);
    assert_eq!(
        got,
        vec![Err(Box::new(BadSeal {
            scope: SealScope::Mesh { epoch: 1 },
            author: admin.public(),
            seq: bad_seq,
            reason: BadSealReason::DoesNotOpen,
        }))]
    );
    assert_eq!(r.open_root_key(1, &m.owner), Some(Ok(root1)));
    // A seal of another key that opens fine but fails the confirmation.
    let wrong = seal_key_to(&crate::boxes::SymmetricKey::generate(), &[alice.public()])
        .unwrap()
        .remove(0)
        .ciphertext;
    let bad_seq2 = m.log.roster().len();
    rekey_with_bad_seal(&mut m, &admin, &alice.public(), wrong);
    // The next, correct epoch opens for alice whatever came before.
    let root3 = m.log.rekey(&m.owner, T).unwrap();
    let got = m.log.roster().open_root_keys(&alice);
    assert_eq!(got.len(), 3);
    assert!(matches!(&got[0], Err(b) if b.scope == SealScope::Mesh { epoch: 1 }));
    assert_eq!(
        got[1],
        Err(Box::new(BadSeal {
            scope: SealScope::Mesh { epoch: 2 },
            author: admin.public(),
            seq: bad_seq2,
            reason: BadSealReason::ConfirmMismatch,
        }))
    );
    assert_eq!(got[2], Ok(root3));
    let msg = got[1].clone().unwrap_err().to_string();
    assert!(
        msg.contains(&admin.public().to_hex()[..8]) && msg.contains("epoch 2"),
        "{msg}"
    );
}

#[test]
fn key_confirmations_are_domain_separated_known_answers() {
    let key = crate::boxes::SymmetricKey::from_bytes([7; 32]);
    let mesh_id = MeshId(Hash32([9; 32]));
    let mesh1 = key_confirm(&key, &mesh_id, ConfirmContext::Mesh { epoch: 1 });
    let topic = key_confirm(
        &key,
        &mesh_id,
        ConfirmContext::Topic {
            topic: "ops",
            key_epoch: 2,
        },
    );
    // Checked against an independent Python HKDF (hmac + hashlib) of §5.
    assert_eq!(
        mesh1.to_hex(),
        "a5170d405191c6e60415362767df8b2bab58e845563c6be50673e5b136b4c650"
    );
    assert_eq!(
        topic.to_hex(),
        "9338963885351f4b7ff2490bee2400ca2a3b82857acd739a590a0de22e2c58cd"
    );
    let root = EpochRootKey::from_bytes(1, [7; 32]);
    assert_eq!(mesh_key_confirm(&root, &mesh_id), mesh1);
    assert_eq!(topic_key_confirm(&key, &mesh_id, "ops", 2), topic);
    // Every part of the context counts, and nothing equals a derived key.
    let others = [
        key_confirm(&key, &mesh_id, ConfirmContext::Mesh { epoch: 2 }),
        key_confirm(
            &key,
            &MeshId(Hash32([8; 32])),
            ConfirmContext::Mesh { epoch: 1 },
        ),
        topic_key_confirm(&key, &mesh_id, "ops", 1),
        topic_key_confirm(&key, &mesh_id, "opt", 2),
        Hash32(*root.mesh_key(&mesh_id).as_bytes()),
        Hash32(*root.profile_key(&mesh_id).as_bytes()),
    ];
    for o in others {
        assert_ne!(o, mesh1);
        assert_ne!(o, topic);
    }
}

#[test]
fn the_confirmation_is_signed() {
    let mut m = mesh();
    m.log.rekey(&m.owner, T).unwrap();
    let mut entries = m.log.entries().to_vec();
    let last = entries.len() - 1;
    if let EntryBody::Rekey { confirm, .. } = &mut entries[last].body {
        confirm.0[0] ^= 1;
    }
    let err = verify_log(&entries).unwrap_err();
    assert_eq!(err.seq, last as u64);
    assert!(matches!(err.fault, LogFault::BadSignature(_)));
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
    assert!(roster.open_root_keys(&m.alice).is_empty());
    // The remaining members can.
    let admins: Vec<_> = roster
        .open_root_keys(&m.admin)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
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
    use crate::target::Target;

    fn push(m: &mut Mesh, who: &SigningKey, body: EntryBody) {
        m.log.push(who, T, body).unwrap();
    }

    /// Every key of a private topic sealed to `who`; panics on a bad seal.
    fn open_all(
        info: &TopicInfo,
        topic: &str,
        m: &Mesh,
        who: &SigningKey,
    ) -> Vec<(u64, crate::boxes::SymmetricKey)> {
        info.open_keys(topic, &m.log.roster().mesh_id(), who)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn public_topic_join_leave_and_recipients_as_of_send_time() {
        let mut m = mesh();
        let (owner, alice, admin) = (m.owner.clone(), m.alice.clone(), m.admin.clone());
        let (body, key) = topic_create_body(
            "deploys",
            false,
            "ship it",
            &owner.public(),
            &m.log.roster().mesh_id(),
        )
        .unwrap();
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
        let (dup, _) = topic_create_body(
            "deploys",
            false,
            "",
            &alice.public(),
            &m.log.roster().mesh_id(),
        )
        .unwrap();
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
        let (body, key) = topic_create_body(
            "secret",
            true,
            "",
            &alice.public(),
            &m.log.roster().mesh_id(),
        )
        .unwrap();
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
        let opened = open_all(&info, "secret", &m, &owner);
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].1.as_bytes(), k0.as_bytes());
        assert!(open_all(&info, "secret", &m, &admin).is_empty());
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
        let stale = topic_rekey_body("secret", &info, &m.log.roster().mesh_id())
            .unwrap()
            .0; // still seals to the owner
        assert!(matches!(
            refused(&m, &alice, stale),
            LogFault::RekeyRecipients(_)
        ));
        let info = m.log.roster().topic("secret").unwrap().clone();
        let (rekey, k1) = topic_rekey_body("secret", &info, &m.log.roster().mesh_id()).unwrap();
        push(&mut m, &alice, rekey);
        let info = m.log.roster().topic("secret").unwrap();
        assert!(!info.needs_rekey);
        assert_eq!(info.key_epoch, 1);
        let alice_keys = open_all(info, "secret", &m, &alice);
        assert_eq!(alice_keys.len(), 2);
        assert_eq!(alice_keys[1].1.as_bytes(), k1.as_bytes());
        // The owner kept only epoch 0.
        assert_eq!(open_all(info, "secret", &m, &owner).len(), 1);
    }

    #[test]
    fn removal_from_the_mesh_ends_topic_and_group_memberships() {
        let mut m = mesh();
        let (owner, alice) = (m.owner.clone(), m.alice.clone());
        let (body, key) =
            topic_create_body("ops", true, "", &owner.public(), &m.log.roster().mesh_id()).unwrap();
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
    fn private_topic_keys_carry_a_confirmation_and_a_bad_join_seal_is_reported() {
        let mut m = mesh();
        let (owner, alice, admin) = (m.owner.clone(), m.alice.clone(), m.admin.clone());
        let mesh_id = m.log.roster().mesh_id();
        // A private topic without a confirmation, or a public one with one,
        // is refused.
        let (mut body, _) = topic_create_body("ops", true, "", &alice.public(), &mesh_id).unwrap();
        if let EntryBody::TopicCreate { confirm, .. } = &mut body {
            *confirm = None;
        }
        assert!(matches!(refused(&m, &alice, body), LogFault::Invalid(_)));
        let (mut body, _) = topic_create_body("pub", false, "", &alice.public(), &mesh_id).unwrap();
        if let EntryBody::TopicCreate { confirm, .. } = &mut body {
            *confirm = Some(Hash32([1; 32]));
        }
        assert!(matches!(refused(&m, &alice, body), LogFault::Invalid(_)));

        let (body, k0) = topic_create_body("ops", true, "", &alice.public(), &mesh_id).unwrap();
        let k0 = k0.unwrap();
        push(&mut m, &alice, body);
        // Alice adds the owner with a seal of another key.
        let wrong = crate::boxes::SymmetricKey::generate();
        let join_seq = m.log.roster().len();
        push(
            &mut m,
            &alice,
            topic_join_body("ops", &owner.public(), Some(&wrong)).unwrap(),
        );
        let info = m.log.roster().topic("ops").unwrap().clone();
        let got = info.open_keys("ops", &mesh_id, &owner);
        assert_eq!(
            got,
            vec![Err(Box::new(BadSeal {
                scope: SealScope::Topic {
                    topic: "ops".into(),
                    key_epoch: 0
                },
                author: alice.public(),
                seq: join_seq,
                reason: BadSealReason::ConfirmMismatch,
            }))]
        );
        // The creator's own seal is fine.
        assert_eq!(open_all(&info, "ops", &m, &alice)[0].1, k0);
        // The owner, a topic member, re-rolls the key; it opens.
        let (rekey, k1) = topic_rekey_body("ops", &info, &mesh_id).unwrap();
        push(&mut m, &owner, rekey);
        let info = m.log.roster().topic("ops").unwrap();
        let got = info.open_keys("ops", &mesh_id, &owner);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_err());
        assert_eq!(got[1].as_ref().unwrap().1, k1);
        // Not a topic member: nothing to open.
        assert!(info.open_keys("ops", &mesh_id, &admin).is_empty());
        // A confirmation made for another topic name does not pass.
        assert_ne!(
            topic_key_confirm(&k1, &mesh_id, "ops", 1),
            topic_key_confirm(&k1, &mesh_id, "ops2", 1)
        );
    }

    #[test]
    fn after_a_voluntary_leave_any_member_may_rekey() {
        let mut m = mesh();
        let (alice, admin) = (m.alice.clone(), m.admin.clone());
        let extra = m.log.add_member(&admin, Role::Member, T).unwrap();
        // Without a pending removal a plain member may not rekey …
        let root = EpochRootKey::generate(1);
        let members: Vec<_> = m.log.roster().members().keys().copied().collect();
        let body = rekey_body(&root, &m.log.roster().mesh_id(), &members).unwrap();
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

//! Unit tests of the rules beside the mesh state (key rotation, removals,
//! mentions, sealing to topics and groups), over logs built in memory: no
//! broker, no disk.

use std::collections::BTreeMap;

use claudemesh_crypto::SigningKey;
use claudemesh_crypto::envelope::{Envelope, OpeningKeys as _};
use claudemesh_crypto::log::{LogBuilder, PeerType, Profile};
use claudemesh_proto::frames::Status;

use claudemesh_crypto::envelope::{EnvelopeError, Priority};
use claudemesh_crypto::log::{
    EntryBody, LogEntry, RemoveKind, Role, topic_create_body, topic_join_body,
};
use claudemesh_crypto::{EpochRootKey, MeshId, PublicKey};
use claudemesh_proto::ErrorCode;

use super::certs::ephemeral_session;
use claudemesh_crypto::envelope::{Target, VerifiedMessage};

use super::mentions::{MAX_MENTIONS, flags_me, mentioned_members, mentions_name, my_name};
use super::removal::{removal_entries, topic_rekey_batch};
use super::rotation::{
    Rotation, mesh_rekey_body, pending_removal, repairs_needed, rotation_entry, rotation_needed,
};
use super::state::MeshState;
use crate::error::ClientError;
use crate::home::{MeshConfig, MeshKeys};
use claudemesh_crypto::MemberKey;
use claudemesh_proto::clock::now_ms;

const T: u64 = 1_800_000_000;

/// A mesh owned by alice with members bob, carol and dave, each with a
/// profile (names), and the epoch-0 root every member holds.
struct World {
    log: LogBuilder,
    root0: EpochRootKey,
    alice: SigningKey,
    bob: SigningKey,
    carol: SigningKey,
    dave: SigningKey,
}

impl World {
    fn new() -> World {
        let alice = SigningKey::generate();
        let mut log = LogBuilder::new(&alice, T);
        let root0 = EpochRootKey::generate(0);
        let bob = log.add_member(&alice, Role::Member, T).unwrap();
        let carol = log.add_member(&alice, Role::Member, T).unwrap();
        let dave = log.add_member(&alice, Role::Member, T).unwrap();
        let mesh_id = log.roster().mesh_id();
        for (who, name) in [
            (&alice, "alice"),
            (&bob, "bob"),
            (&carol, "carol"),
            (&dave, "Bob Smith"),
        ] {
            let p = Profile {
                name: name.into(),
                summary: None,
                peer_type: PeerType::Human,
            };
            log.push(who, T, p.seal(&root0, &mesh_id)).unwrap();
        }
        World {
            log,
            root0,
            alice,
            bob,
            carol,
            dave,
        }
    }

    /// What `who`'s device knows: the whole log, its member key, root 0.
    fn state(&self, who: &SigningKey) -> MeshState {
        let mesh_id = self.log.roster().mesh_id();
        let config = MeshConfig {
            id: mesh_id,
            name: "team".into(),
            broker_url: "ws://127.0.0.1:1".into(),
            display_name: "me".into(),
            peer_type: PeerType::Human,
            joined_at: T,
            status: Status::Idle,
            summary: None,
            ca: None,
        };
        let keys = MeshKeys {
            member: who.clone(),
            invite: None,
            sessions: BTreeMap::new(),
            roots: BTreeMap::from([(0, self.root0.clone())]),
        };
        let session = ephemeral_session(who, mesh_id, now_ms() / 1000).unwrap();
        MeshState::new(config, keys, self.log.entries().to_vec(), session).unwrap()
    }

    fn mid(&self) -> MeshId {
        self.log.roster().mesh_id()
    }

    fn push(&mut self, who: &SigningKey, body: EntryBody) {
        self.log.push(who, T, body).unwrap();
    }

    fn push_all(&mut self, entries: Vec<LogEntry>) {
        for e in entries {
            self.log.push_entry(e).unwrap();
        }
    }
}

fn seal(s: &MeshState, target: &str, body: &str) -> Result<Envelope, ClientError> {
    s.seal(
        target.parse().unwrap(),
        body.as_bytes(),
        Priority::Next,
        None,
        now_ms(),
    )
}

fn open(s: &MeshState, env: &Envelope) -> Result<String, EnvelopeError> {
    env.verify_and_open(s.roster(), s)
        .map(|m| String::from_utf8_lossy(m.body()).into_owned())
}

#[test]
fn private_topic_posts_open_for_its_members_only_and_its_key_rotates_after_a_leave() {
    let mut w = World::new();
    let alice_pk = w.alice.public();
    let (body, k0) = topic_create_body("secret", true, "", &alice_pk, &w.mid()).unwrap();
    let alice = w.alice.clone();
    w.push(&alice, body);
    let bob_pk = w.bob.public();
    w.push(
        &alice,
        topic_join_body("secret", &bob_pk, k0.as_ref()).unwrap(),
    );

    let (sa, sb, sc) = (w.state(&w.alice), w.state(&w.bob), w.state(&w.carol));
    // Both members hold the topic's key (opened from its seals).
    assert_eq!(sa.private_topic_key("secret", 0), k0.as_ref());
    assert_eq!(sb.private_topic_key("secret", 0), k0.as_ref());
    assert!(sc.private_topic_key("secret", 0).is_none());

    let env = seal(&sa, "#secret", "for members").unwrap();
    assert_eq!(env.epoch, 0, "the topic's key epoch, not the mesh's");
    assert_eq!(open(&sb, &env).unwrap(), "for members");
    // Carol is in the mesh but not the topic: no key, nothing shown.
    assert!(matches!(open(&sc, &env), Err(EnvelopeError::NoKey { .. })));
    // Nor may she post to it.
    assert!(matches!(
        seal(&sc, "#secret", "let me in"),
        Err(ClientError::NotAllowed(_))
    ));
    // The mesh key does not open a private topic's post.
    assert!(
        w.root0
            .mesh_key(&sa.mesh_id())
            .decrypt(&env.ciphertext, &env.nonce)
            .is_err()
    );

    // Bob leaves: nobody may post until the key rotates, and it falls
    // to the next member who posts.
    let bob = w.bob.clone();
    w.push(
        &bob,
        EntryBody::TopicLeave {
            topic: "secret".into(),
            member: bob_pk,
        },
    );
    let sa = w.state(&w.alice);
    let topic = Target::Topic("secret".into());
    assert!(matches!(
        sa.sealing_key(&topic),
        Err(ClientError::Refused {
            code: ErrorCode::RekeyRequired,
            ..
        })
    ));
    let rotation = rotation_needed(&sa, &topic).unwrap();
    assert_eq!(rotation, Some(Rotation::Topic("secret".into())));
    // Bob, out of the topic, has nothing to rotate.
    assert_eq!(rotation_needed(&w.state(&w.bob), &topic).unwrap(), None);
    let entry = rotation_entry(&sa, &Rotation::Topic("secret".into()), T).unwrap();
    w.push_all(vec![entry]);

    let sa = w.state(&w.alice);
    assert_eq!(rotation_needed(&sa, &topic).unwrap(), None);
    let after = seal(&sa, "#secret", "after bob left").unwrap();
    assert_eq!(after.epoch, 1);
    assert_eq!(open(&sa, &after).unwrap(), "after bob left");
    let sb = w.state(&w.bob);
    assert!(matches!(
        open(&sb, &after),
        Err(EnvelopeError::NoKey { .. })
    ));
    // What he could read before, he still can.
    assert_eq!(open(&sb, &env).unwrap(), "for members");
}

#[test]
fn public_topics_groups_and_broadcast_use_the_current_mesh_epoch() {
    let mut w = World::new();
    let alice = w.alice.clone();
    let alice_pk = alice.public();
    w.push(
        &alice,
        topic_create_body("deploys", false, "", &alice_pk, &w.mid())
            .unwrap()
            .0,
    );
    let bob = w.bob.clone();
    w.push(
        &bob,
        EntryBody::GroupJoin {
            group: "eng/backend".into(),
            member: bob.public(),
            role: Some("lead".into()),
        },
    );
    let sa = w.state(&w.alice);
    let sb = w.state(&w.bob);
    for (target, text) in [("#deploys", "topic"), ("@eng", "group"), ("*", "everyone")] {
        let env = seal(&sa, target, text).unwrap();
        assert_eq!(env.epoch, 0);
        assert_eq!(open(&sb, &env).unwrap(), text);
    }
    let env = seal(&sa, "#deploys", "x").unwrap();
    let key = w.root0.topic_key(&sa.mesh_id(), b"deploys");
    assert!(key.decrypt(&env.ciphertext, &env.nonce).is_ok());

    // Alice bans carol: remove + rekey; everything after is epoch 1,
    // which bob holds and carol does not.
    let carol_pk = w.carol.public();
    let (entries, topics) = removal_entries(&sa, &carol_pk, RemoveKind::Ban).unwrap();
    assert_eq!(entries.len(), 2);
    assert!(topics.is_empty());
    w.push_all(entries);
    let sa = w.state(&w.alice);
    let sb = w.state(&w.bob);
    let sc = w.state(&w.carol);
    assert!(sa.root(1).is_some() && sb.root(1).is_some() && sc.root(1).is_none());
    for (target, text) in [("#deploys", "topic"), ("@eng", "group"), ("*", "everyone")] {
        let env = seal(&sa, target, text).unwrap();
        assert_eq!(env.epoch, 1);
        assert_eq!(open(&sb, &env).unwrap(), text);
        assert!(sc.symmetric_key(&env.target, env.epoch).is_none());
    }
}

#[test]
fn after_a_leave_anyone_rekeys_and_a_pending_kick_is_any_admins() {
    let mut w = World::new();
    // An open invite gets nothing: rekeys seal to members only.
    let invite = SigningKey::generate();
    let alice = w.alice.clone();
    w.log
        .invite(&alice, &invite.public(), Role::Member, 1, T, T + 3600)
        .unwrap();
    let carol = w.carol.clone();
    w.push(
        &carol,
        EntryBody::Remove {
            member: carol.public(),
            how: RemoveKind::Leave,
        },
    );
    let sb = w.state(&w.bob);
    assert_eq!(
        rotation_needed(&sb, &Target::Broadcast).unwrap(),
        Some(Rotation::Mesh)
    );
    assert_eq!(
        rotation_needed(&sb, &Target::Group("eng".into())).unwrap(),
        Some(Rotation::Mesh)
    );
    assert_eq!(
        rotation_needed(&sb, &Target::Member(MemberKey(w.alice.public()))).unwrap(),
        None,
        "direct messages need no rotation"
    );
    // A leave is left to the next sender, not repaired on connect.
    assert!(repairs_needed(&sb).is_empty());
    // Bob is a plain member, and may write it.
    let entry = rotation_entry(&sb, &Rotation::Mesh, T).unwrap();
    let EntryBody::Rekey { sealed, .. } = &entry.body else {
        panic!("not a rekey: {entry:?}");
    };
    assert!(!sealed.iter().any(|s| s.recipient == invite.public()));
    assert!(!sealed.iter().any(|s| s.recipient == carol.public()));
    assert_eq!(sealed.len(), 3);
    w.push_all(vec![entry]);
    assert_eq!(w.log.roster().epoch(), 1);
    assert!(!w.log.roster().needs_rekey());
    assert_eq!(
        rotation_needed(&w.state(&w.bob), &Target::Broadcast).unwrap(),
        None
    );

    // Dave, made an admin, kicks bob and never writes the rekey: the
    // owner (not the remover) writes it, a plain member is told who can.
    let dave = w.dave.clone();
    w.push(
        &alice,
        EntryBody::Role {
            member: dave.public(),
            role: Role::Admin,
        },
    );
    w.push(
        &dave,
        EntryBody::Remove {
            member: w.bob.public(),
            how: RemoveKind::Kick,
        },
    );
    let sa = w.state(&w.alice);
    assert_eq!(pending_removal(&sa), Some((dave.public(), w.bob.public())));
    assert_eq!(
        rotation_needed(&sa, &Target::Broadcast).unwrap(),
        Some(Rotation::Mesh)
    );
    assert_eq!(repairs_needed(&sa), vec![Rotation::Mesh]);
    w.push_all(vec![rotation_entry(&sa, &Rotation::Mesh, T).unwrap()]);
    assert_eq!(w.log.roster().epoch(), 2);
    assert_eq!(w.log.roster().pending_removal(), None);
}

#[test]
fn a_plain_member_is_told_an_admin_must_write_a_pending_removals_key() {
    let mut w = World::new();
    let alice = w.alice.clone();
    w.push(
        &alice,
        EntryBody::Remove {
            member: w.carol.public(),
            how: RemoveKind::Ban,
        },
    );
    let sb = w.state(&w.bob);
    let err = rotation_needed(&sb, &Target::Broadcast).unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { code: ErrorCode::RekeyRequired, message }
            if message.contains("alice removed carol") && message.contains("claudemesh mesh rekey")),
        "{err}"
    );
    assert!(repairs_needed(&sb).is_empty());
}

/// Signs a `rekey` by `author` whose seal for `victim` is garbage.
fn bad_rekey(w: &World, author: &SigningKey, victim: &PublicKey) -> LogEntry {
    let r = w.log.roster();
    let mut body = mesh_rekey_body(r).unwrap();
    let EntryBody::Rekey { sealed, .. } = &mut body else {
        unreachable!()
    };
    for s in sealed.iter_mut().filter(|s| s.recipient == *victim) {
        s.ciphertext = vec![7; s.ciphertext.len()];
    }
    LogEntry::sign(author, r.len(), r.head(), T, body)
}

#[test]
fn a_bad_seal_is_reported_and_a_member_made_epoch_is_re_rolled_by_its_victim() {
    let mut w = World::new();
    let carol = w.carol.clone();
    w.push(
        &carol,
        EntryBody::Remove {
            member: carol.public(),
            how: RemoveKind::Leave,
        },
    );
    // Dave ("Bob Smith"), a plain member, repairs the leave with garbage
    // for bob.
    let bad_seq = w.log.roster().len();
    let entry = bad_rekey(&w, &w.dave, &w.bob.public());
    w.push_all(vec![entry]);
    let sb = w.state(&w.bob);
    assert!(sb.lacks_current_root());
    let reports = sb.bad_seal_reports();
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!((r.kind, r.epoch, r.seq), ("mesh", 1, bad_seq));
    assert_eq!(r.author_name, "Bob Smith");
    assert_eq!(r.author, w.dave.public().to_hex());
    assert!(r.current && !r.fresh);
    let warning = r.warning();
    assert!(
        warning.contains("Bob Smith") && warning.contains(&r.author[..8]),
        "{warning}"
    );
    // The epoch is member-made: bob may re-roll it, on his own.
    assert_eq!(repairs_needed(&sb), vec![Rotation::Mesh]);
    assert_eq!(
        rotation_needed(&sb, &Target::Broadcast).unwrap(),
        Some(Rotation::Mesh)
    );
    w.push_all(vec![rotation_entry(&sb, &Rotation::Mesh, T).unwrap()]);
    let sb = w.state(&w.bob);
    assert!(!sb.lacks_current_root());
    assert!(!sb.bad_seal_reports()[0].current);
    let sa = w.state(&w.alice);
    let env = seal(&sa, "*", "after the re-roll").unwrap();
    assert_eq!(env.epoch, 2);
    assert_eq!(open(&sb, &env).unwrap(), "after the re-roll");

    // An epoch the owner made with a bad seal: bob may not rekey, and is
    // told to ask an admin.
    let entry = bad_rekey(&w, &w.alice, &w.bob.public());
    w.push_all(vec![entry]);
    let sb = w.state(&w.bob);
    assert!(repairs_needed(&sb).is_empty());
    let err = rotation_needed(&sb, &Target::Broadcast).unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { code: ErrorCode::RekeyRequired, message }
            if message.contains("alice") && message.contains("claudemesh mesh rekey")),
        "{err}"
    );
    assert!(sb.bad_seal_reports()[1].warning().contains("mesh rekey"));
}

#[test]
fn a_bad_private_topic_seal_is_reported_and_re_rolled() {
    let mut w = World::new();
    let alice = w.alice.clone();
    let (body, _k0) = topic_create_body("secret", true, "", &alice.public(), &w.mid()).unwrap();
    w.push(&alice, body);
    // Alice adds bob with the seal of some other key.
    let wrong = claudemesh_crypto::SymmetricKey::generate();
    w.push(
        &alice,
        topic_join_body("secret", &w.bob.public(), Some(&wrong)).unwrap(),
    );
    let sb = w.state(&w.bob);
    assert!(sb.lacks_topic_key("secret"));
    let reports = sb.bad_seal_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].topic.as_deref(), Some("secret"));
    assert_eq!(reports[0].author_name, "alice");
    let topic = Target::Topic("secret".into());
    assert_eq!(
        rotation_needed(&sb, &topic).unwrap(),
        Some(Rotation::Topic("secret".into()))
    );
    assert_eq!(repairs_needed(&sb), vec![Rotation::Topic("secret".into())]);
    w.push_all(vec![
        rotation_entry(&sb, &Rotation::Topic("secret".into()), T).unwrap(),
    ]);
    let (sa, sb) = (w.state(&w.alice), w.state(&w.bob));
    let env = seal(&sa, "#secret", "readable again").unwrap();
    assert_eq!(env.epoch, 1);
    assert_eq!(open(&sb, &env).unwrap(), "readable again");
}

#[test]
fn a_ban_rotates_every_private_topic_the_member_was_in_and_only_admins_remove() {
    let mut w = World::new();
    let alice = w.alice.clone();
    let alice_pk = alice.public();
    let carol_pk = w.carol.public();
    let (body, k0) = topic_create_body("secret", true, "", &alice_pk, &w.mid()).unwrap();
    w.push(&alice, body);
    w.push(
        &alice,
        topic_join_body("secret", &carol_pk, k0.as_ref()).unwrap(),
    );
    let sa = w.state(&w.alice);

    let sb = w.state(&w.bob);
    assert!(matches!(
        removal_entries(&sb, &carol_pk, RemoveKind::Kick),
        Err(ClientError::Refused {
            code: ErrorCode::Forbidden,
            ..
        })
    ));
    assert!(matches!(
        removal_entries(&sa, &alice_pk, RemoveKind::Kick),
        Err(ClientError::Invalid(_))
    ));

    let (entries, topics) = removal_entries(&sa, &carol_pk, RemoveKind::Ban).unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.body.kind()).collect();
    assert_eq!(kinds, ["remove", "rekey"]);
    assert_eq!(topics, ["secret"]);
    w.push_all(entries);
    let sa = w.state(&w.alice);
    let (entries, names) = topic_rekey_batch(&sa, &topics, 1 << 20).unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.body.kind()).collect();
    assert_eq!((kinds, names), (vec!["topic_rekey"], topics.clone()));
    w.push_all(entries);
    let roster = w.log.roster();
    assert!(roster.banned().contains(&carol_pk));
    assert_eq!(roster.topic("secret").unwrap().key_epoch, 1);
    assert!(!roster.topic("secret").unwrap().needs_rekey);
    let sa = w.state(&w.alice);
    let env = seal(&sa, "#secret", "after the ban").unwrap();
    let sc = w.state(&w.carol);
    assert!(matches!(open(&sc, &env), Err(EnvelopeError::NoKey { .. })));
}

#[test]
fn a_removals_topic_rekeys_come_in_bounded_appends_and_a_cut_one_heals_on_the_next_post() {
    let mut w = World::new();
    let (alice, carol) = (w.alice.clone(), w.carol.clone());
    let carol_pk = carol.public();
    // Carol makes 40 private topics and puts alice, bob and dave in each.
    let names: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
    for name in &names {
        let (body, k0) = topic_create_body(name, true, "", &carol_pk, &w.mid()).unwrap();
        w.push(&carol, body);
        for who in [w.alice.public(), w.bob.public(), w.dave.public()] {
            w.push(&carol, topic_join_body(name, &who, k0.as_ref()).unwrap());
        }
    }
    let sa = w.state(&alice);
    let (entries, due) = removal_entries(&sa, &carol_pk, RemoveKind::Kick).unwrap();
    assert_eq!(entries.len(), 2, "the remove and its rekey, nothing more");
    assert_eq!(due, names);
    w.push_all(entries);

    // Cut here: every topic still needs its rekey, so a member posting
    // to it writes one first, and the broker takes no post until then.
    let sb = w.state(&w.bob);
    for name in &names {
        let target = Target::Topic(name.clone());
        assert_eq!(
            rotation_needed(&sb, &target).unwrap(),
            Some(Rotation::Topic(name.clone()))
        );
    }

    // The owner's appends: each within the budget (or a single entry),
    // each at the head left by the one before, all topics covered.
    let budget = 4 * 1024;
    let mut appends = 0;
    let mut rotated = Vec::new();
    loop {
        let sa = w.state(&alice);
        let (entries, batch) = topic_rekey_batch(&sa, &due, budget).unwrap();
        if entries.is_empty() {
            break;
        }
        let bytes: usize = entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap().len() + 1)
            .sum();
        assert!(bytes <= budget || entries.len() == 1, "{bytes} bytes");
        assert_eq!(entries[0].seq, w.log.roster().len());
        appends += 1;
        rotated.extend(batch);
        w.push_all(entries);
    }
    assert_eq!(rotated, names);
    assert!(appends > 1, "{appends} appends");
    let roster = w.log.roster();
    for name in &names {
        let t = roster.topic(name).unwrap();
        assert!(!t.needs_rekey && t.key_epoch == 1);
        assert!(!t.key_epochs[&1].seals.contains_key(&carol_pk));
    }
}

#[test]
fn fanout_targets_resolve_only_to_topics_and_groups_that_exist() {
    let mut w = World::new();
    let sa = w.state(&w.alice);
    assert_eq!(sa.resolve("*", &[]).unwrap(), Target::Broadcast);
    // What users of the TypeScript claudemesh type for a broadcast.
    assert_eq!(sa.resolve("@all", &[]).unwrap(), Target::Broadcast);
    let err = sa.resolve("#nope", &[]).unwrap_err();
    assert!(matches!(err, ClientError::NotFound(_)), "{err}");
    assert!(err.to_string().contains("no topics yet"), "{err}");
    let err = sa.resolve("@eng", &[]).unwrap_err();
    assert!(err.to_string().contains("no groups yet"), "{err}");

    let alice = w.alice.clone();
    w.push(
        &alice,
        topic_create_body("deploys", false, "", &alice.public(), &w.mid())
            .unwrap()
            .0,
    );
    let bob = w.bob.clone();
    w.push(
        &bob,
        EntryBody::GroupJoin {
            group: "eng/backend".into(),
            member: bob.public(),
            role: None,
        },
    );
    let sa = w.state(&w.alice);
    assert_eq!(
        sa.resolve("#deploys", &[]).unwrap(),
        Target::Topic("deploys".into())
    );
    let err = sa.resolve("#nope", &[]).unwrap_err();
    assert!(err.to_string().contains("#deploys"), "{err}");
    // Hierarchical: @eng reaches @eng/backend.
    assert_eq!(
        sa.resolve("@eng", &[]).unwrap(),
        Target::Group("eng".into())
    );
    let err = sa.resolve("@ops", &[]).unwrap_err();
    assert!(err.to_string().contains("@eng/backend"), "{err}");
    // A group really named `all` wins over the alias.
    w.push(
        &bob,
        EntryBody::GroupJoin {
            group: "all".into(),
            member: bob.public(),
            role: None,
        },
    );
    let sa = w.state(&w.alice);
    assert_eq!(
        sa.resolve("@all", &[]).unwrap(),
        Target::Group("all".into())
    );
}

#[test]
fn mentions_are_at_names_outside_words() {
    assert!(mentions_name("hi @Bob!", "bob"));
    assert!(mentions_name("@bob.", "bob"));
    assert!(mentions_name("@bob", "bob"));
    assert!(!mentions_name("hi @bobby", "bob"));
    assert!(!mentions_name("@bob-smith", "bob"));
    assert!(!mentions_name("mail bob@example.com", "example"));
    assert!(!mentions_name("no at sign", "bob"));
    // Only the first MAX_MENTIONS `@` count.
    let many = format!("{}@bob", "@x ".repeat(MAX_MENTIONS));
    assert!(!mentions_name(&many, "bob"));

    let w = World::new();
    let sa = w.state(&w.alice);
    let got = mentioned_members(&sa, "ping @Bob Smith and @bob, also @nobody and @bob again");
    assert_eq!(got, vec![w.dave.public(), w.bob.public()]);
    assert!(mentioned_members(&sa, "bob@example.com").is_empty());
    assert_eq!(my_name(&sa), "alice");
}

#[test]
fn received_fanout_messages_that_mention_me_are_flagged() {
    let mut w = World::new();
    let alice = w.alice.clone();
    w.push(
        &alice,
        topic_create_body("deploys", false, "", &alice.public(), &w.mid())
            .unwrap()
            .0,
    );
    let sa = w.state(&w.alice);
    let sb = w.state(&w.bob);
    let post = seal(&sa, "#deploys", "@bob please look").unwrap();
    let msg = post.verify_and_open(sb.roster(), &sb).unwrap();
    assert!(flags_me(&msg, &my_name(&sb)));
    let other = seal(&sa, "#deploys", "@carol please look").unwrap();
    let msg = other.verify_and_open(sb.roster(), &sb).unwrap();
    assert!(!flags_me(&msg, &my_name(&sb)));
    // A direct message is for me anyway: never flagged.
    let dm = seal(&sa, &format!("member:{}", w.bob.public()), "@bob hi").unwrap();
    let msg = dm.verify_and_open(sb.roster(), &sb).unwrap();
    assert!(!flags_me(&msg, &my_name(&sb)));
}

#[test]
fn names_of_departed_members_come_from_their_last_profile() {
    let mut w = World::new();
    let sa = w.state(&w.alice);
    let carol_pk = w.carol.public();
    let (entries, _) = removal_entries(&sa, &carol_pk, RemoveKind::Ban).unwrap();
    w.push_all(entries);
    let sa = w.state(&w.alice);
    assert!(!sa.roster().is_member(&carol_pk));
    assert_eq!(sa.name_of(&carol_pk), "carol");
    assert_eq!(sa.name_of(&w.bob.public()), "bob");
}

#[tokio::test]
async fn the_local_store_counts_unread_per_target_and_forgets_a_mesh() {
    let mut w = World::new();
    let alice = w.alice.clone();
    w.push(
        &alice,
        topic_create_body("deploys", false, "", &alice.public(), &w.mid())
            .unwrap()
            .0,
    );
    let sa = w.state(&w.alice);
    let sb = w.state(&w.bob);
    let dir = tempfile::tempdir().unwrap();
    let local = crate::local::LocalStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let mesh = sb.mesh_id();
    let envs = [
        seal(&sa, "#deploys", "one @bob").unwrap(),
        seal(&sa, "#deploys", "two").unwrap(),
        seal(&sa, "*", "three").unwrap(),
    ];
    let msgs: Vec<VerifiedMessage> = envs
        .iter()
        .map(|e| e.verify_and_open(sb.roster(), &sb).unwrap())
        .collect();
    let name = my_name(&sb);
    let batch: Vec<_> = msgs
        .iter()
        .zip(10u64..)
        .map(|(m, seq)| (m, seq, flags_me(m, &name)))
        .collect();
    local.store_inbound_flagged(&mesh, &batch, T).await.unwrap();

    let unread = local.unread_by_target(&mesh).await.unwrap();
    assert_eq!(unread.get("#deploys"), Some(&2));
    assert_eq!(unread.get("*"), Some(&1));
    let topic = local
        .inbox_of(&mesh, Some("#deploys"), true, u32::MAX)
        .await
        .unwrap();
    assert_eq!(topic.len(), 2);
    assert!(topic[0].mentions_me && !topic[1].mentions_me);
    assert_eq!(
        local
            .seq_of_message(&mesh, &envs[1].id, Some("#deploys"))
            .await
            .unwrap(),
        Some(11)
    );
    assert_eq!(
        local
            .seq_of_message(&mesh, &envs[2].id, Some("#deploys"))
            .await
            .unwrap(),
        None,
        "a broadcast is not in the topic"
    );
    let ids: Vec<i64> = topic.iter().map(|m| m.local_id).collect();
    local.mark_read(&mesh, &ids, T).await.unwrap();
    let unread = local.unread_by_target(&mesh).await.unwrap();
    assert_eq!(unread.get("#deploys"), None);
    assert_eq!(unread.get("*"), Some(&1));

    // A resealed message replaces its pending outbox row (same id).
    let first = seal(&sa, "*", "v1").unwrap();
    local.outbox_upsert(&first, T).await.unwrap();
    let again = sa
        .seal_as(
            first.id,
            Target::Broadcast,
            b"v1",
            Priority::Next,
            None,
            now_ms(),
        )
        .unwrap();
    local.outbox_upsert(&again, T).await.unwrap();
    let pending = local.outbox_pending(&mesh).await.unwrap();
    assert_eq!(pending, vec![again]);

    local.forget_mesh(&mesh).await.unwrap();
    assert!(local.inbox(&mesh, false, 100).await.unwrap().is_empty());
    assert!(local.outbox_pending(&mesh).await.unwrap().is_empty());
}

/// A direct message from `from` to the session of `to`'s state.
fn seal_to_session(from: &MeshState, to: &MeshState, body: &str) -> Envelope {
    use claudemesh_crypto::envelope::{EnvelopeHeader, MessageId, SealingKey};
    let session = to.session().public();
    let header = EnvelopeHeader {
        mesh: from.mesh_id(),
        epoch: from.roster().epoch(),
        target: Target::Session(session),
        id: MessageId::random(),
        reply_to: None,
        priority: Priority::Next,
        sent_at: now_ms(),
        log_head: from.roster().head(),
    };
    Envelope::seal(
        from.session(),
        header,
        body.as_bytes(),
        SealingKey::Direct(&session.0),
    )
    .unwrap()
}

#[tokio::test]
async fn the_local_store_keeps_the_receipts_owed_and_the_numbers_held() {
    use crate::local::{Inbound, InboxMessage};
    use claudemesh_crypto::envelope::MessageId;
    use claudemesh_crypto::receipt::Via;

    let mut w = World::new();
    let alice = w.alice.clone();
    w.push(
        &alice,
        topic_create_body("deploys", false, "", &alice.public(), &w.mid())
            .unwrap()
            .0,
    );
    let (sa, sb, sb2) = (w.state(&w.alice), w.state(&w.bob), w.state(&w.bob));
    let dir = tempfile::tempdir().unwrap();
    let local = crate::local::LocalStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let mesh = sb.mesh_id();
    let mine = Target::Session(sb.session().public()).to_string();
    let bob = format!("member:{}", w.bob.public().to_hex());
    let other = Target::Session(sb2.session().public()).to_string();
    // A DM to bob, one to this session, one to bob's other session, and
    // posts numbered 1, 2 and 4 in #deploys (3 is bob's own).
    let sent = [
        (seal(&sa, &bob, "dm").unwrap(), None),
        (seal_to_session(&sa, &sb, "to me"), None),
        (seal_to_session(&sa, &sb2, "to my twin"), None),
        (seal(&sa, "#deploys", "one").unwrap(), Some(1)),
        (seal(&sa, "#deploys", "two").unwrap(), Some(2)),
        (seal(&sa, "#deploys", "four").unwrap(), Some(4)),
    ];
    let msgs: Vec<VerifiedMessage> = sent
        .iter()
        .map(|(e, _)| {
            let opener = if e.target.to_string() == other {
                &sb2
            } else {
                &sb
            };
            e.verify_and_open(opener.roster(), opener).unwrap()
        })
        .collect();
    let batch: Vec<Inbound<'_>> = msgs
        .iter()
        .zip(&sent)
        .zip(10u64..)
        .map(|((msg, (_, tseq)), seq)| Inbound {
            msg,
            seq,
            tseq: *tseq,
            mentions_me: false,
            deadline_ms: None,
        })
        .collect();
    let fresh = local.store_inbound(&mesh, &batch, T).await.unwrap();
    assert!(fresh.iter().all(|f| *f));
    assert_eq!(
        local.fanout_held(&mesh, "#deploys", false).await.unwrap(),
        vec![4, 2, 1]
    );
    assert!(
        local
            .fanout_held(&mesh, "#deploys", true)
            .await
            .unwrap()
            .is_empty()
    );
    // Bob's own post, accepted as #3 of the topic, counts as held.
    let own = seal(&sb, "#deploys", "three").unwrap();
    local.outbox_upsert(&own, T).await.unwrap();
    local
        .outbox_accepted(&mesh, &[(own.id, 12, Some(3))], T)
        .await
        .unwrap();
    assert_eq!(
        local.fanout_held(&mesh, "#deploys", false).await.unwrap(),
        vec![4, 3, 2, 1]
    );
    assert_eq!(
        local.fanout_targets_held(&mesh).await.unwrap(),
        vec!["#deploys".to_owned()]
    );

    // Shown: the fan-out rows owe no receipt of their own; the DMs do, but
    // the one to the other session is that session's to sign.
    let all = local.inbox(&mesh, false, 100).await.unwrap();
    let ids = |pick: &dyn Fn(&InboxMessage) -> bool| -> Vec<i64> {
        all.iter().filter(|m| pick(m)).map(|m| m.local_id).collect()
    };
    local
        .mark_shown(
            &mesh,
            &ids(&|m| m.body == "one" || m.body == "four"),
            T,
            Via::Hook,
        )
        .await
        .unwrap();
    assert_eq!(
        local.fanout_held(&mesh, "#deploys", true).await.unwrap(),
        vec![4, 3, 1]
    );
    assert_eq!(
        local.fanout_last_via(&mesh, "#deploys").await.unwrap(),
        Via::Hook
    );
    let dms: Vec<(&str, &str)> = all
        .iter()
        .filter(|m| m.target.starts_with("member:") || m.target.starts_with("session:"))
        .map(|m| (m.from.as_str(), m.id.as_str()))
        .collect();
    local
        .mark_shown_by_id(&mesh, &dms, T + 1, Via::McpTool)
        .await
        .unwrap();
    // Shown once: a later showing does not change how.
    local
        .mark_shown_by_id(&mesh, &dms, T + 2, Via::Inbox)
        .await
        .unwrap();
    let due = local.shown_receipts_due(&mesh, &mine).await.unwrap();
    let bodies: Vec<&str> = due
        .iter()
        .map(|d| {
            all.iter()
                .find(|m| m.local_id == d.local_id)
                .map(|m| m.body.as_str())
                .unwrap()
        })
        .collect();
    assert_eq!(bodies, ["dm", "to me"]);
    assert!(
        due.iter()
            .all(|d| d.via == Via::McpTool && d.shown_at == T + 1)
    );
    let done: Vec<i64> = due.iter().map(|d| d.local_id).collect();
    local.shown_receipts_sent(&mesh, &done).await.unwrap();
    assert!(
        local
            .shown_receipts_due(&mesh, &mine)
            .await
            .unwrap()
            .is_empty()
    );

    // Answered: recorded once, owed until sent.
    let dm_id = sent[0].0.id.to_hex();
    let reply = MessageId::random().to_hex();
    let to_alice = format!("member:{}", alice.public().to_hex());
    assert!(
        local
            .record_answer(&mesh, &dm_id, &reply, &to_alice)
            .await
            .unwrap()
    );
    assert!(
        !local
            .record_answer(&mesh, &dm_id, "00", &to_alice)
            .await
            .unwrap()
    );
    assert!(
        !local
            .record_answer(&mesh, "ff", &reply, &to_alice)
            .await
            .unwrap()
    );
    let due = local.answered_receipts_due(&mesh, &mine).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].msg_id.as_str(), due[0].reply.as_str()),
        (dm_id.as_str(), reply.as_str())
    );
    local
        .answered_receipts_sent(&mesh, &[due[0].local_id])
        .await
        .unwrap();
    assert!(
        local
            .answered_receipts_due(&mesh, &mine)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_expired_message_is_no_longer_unread_and_is_never_marked_shown() {
    use crate::local::Inbound;
    let w = World::new();
    let sa = w.state(&w.alice);
    let sb = w.state(&w.bob);
    let dir = tempfile::tempdir().unwrap();
    let local = crate::local::LocalStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let mesh = sb.mesh_id();
    let now = now_ms();
    let envs = [
        seal(&sa, "*", "no ttl").unwrap(),
        seal(&sa, "*", "still live").unwrap(),
        seal(&sa, "*", "too late").unwrap(),
    ];
    let msgs: Vec<VerifiedMessage> = envs
        .iter()
        .map(|e| e.verify_and_open(sb.roster(), &sb).unwrap())
        .collect();
    let deadlines = [None, Some(now + 60_000), Some(now - 1)];
    let batch: Vec<Inbound<'_>> = msgs
        .iter()
        .zip(deadlines)
        .zip(1u64..)
        .map(|((msg, deadline_ms), seq)| Inbound {
            msg,
            seq,
            tseq: Some(seq),
            mentions_me: false,
            deadline_ms,
        })
        .collect();
    local.store_inbound(&mesh, &batch, now).await.unwrap();

    let unread = local.inbox(&mesh, true, 100).await.unwrap();
    let bodies: Vec<&str> = unread.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["no ttl", "still live"]);
    assert!(unread.iter().all(|m| !m.expired));
    assert_eq!(unread[1].deadline_ms, Some(now + 60_000));
    assert_eq!(local.unread_count(&mesh).await.unwrap(), 2);
    assert_eq!(
        local.unread_by_target(&mesh).await.unwrap().get("*"),
        Some(&2)
    );
    assert_eq!(
        local
            .unread_count_for_session(&mesh, "session:00")
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        local
            .inbox_after(&mesh, 0, true, None, 100)
            .await
            .unwrap()
            .len(),
        2
    );

    // Listed with the read ones, marked expired; showing it changes nothing.
    let all = local.inbox(&mesh, false, 100).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[2].expired && all[2].read == Some(false));
    let ids: Vec<i64> = all.iter().map(|m| m.local_id).collect();
    local.mark_read(&mesh, &ids, now_ms()).await.unwrap();
    local
        .mark_read_by_id(&mesh, &[(&all[2].from, &all[2].id)], now_ms())
        .await
        .unwrap();
    let all = local.inbox(&mesh, false, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|m| m.read).collect::<Vec<_>>(),
        [Some(true), Some(true), Some(false)]
    );
    assert!(!all[1].expired, "shown in time: not expired");
    assert!(all[2].expired);
    assert_eq!(
        local.fanout_held(&mesh, "*", true).await.unwrap(),
        vec![2, 1],
        "the expired message is missing from the shown watermark"
    );

    // The outbox keeps a deadline for resends, and an expired entry is
    // never pending again.
    let out = seal(&sa, "*", "ttl").unwrap();
    local
        .outbox_upsert_until(&out, Some(now + 5000), now)
        .await
        .unwrap();
    let pending = local.outbox_pending_sends(&mesh).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].deadline_ms, Some(now + 5000));
    let one = local.outbox_pending_one(&mesh, &out.id).await.unwrap();
    assert_eq!(one.map(|p| p.deadline_ms), Some(Some(now + 5000)));
    local.outbox_expired(&mesh, &out.id).await.unwrap();
    assert!(local.outbox_pending_sends(&mesh).await.unwrap().is_empty());
    let entry = local.outbox_get(&mesh, &out.id).await.unwrap().unwrap();
    assert_eq!(entry.state, "expired");
    assert_eq!(entry.deadline_ms, Some(now + 5000));
}

#[tokio::test]
async fn the_outbox_keeps_a_delivery_time_and_a_held_message_is_not_resent() {
    let w = World::new();
    let sa = w.state(&w.alice);
    let dir = tempfile::tempdir().unwrap();
    let local = crate::local::LocalStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let mesh = sa.mesh_id();
    let now = now_ms();
    let at = now + 3_600_000;
    // Written before it is sent: pending, with its time, so a resend after
    // a lost connection asks the broker to hold it again.
    let out = seal(&sa, "*", "later").unwrap();
    local
        .outbox_upsert_timed(&out, Some(at + 60_000), Some(at), now)
        .await
        .unwrap();
    let pending = local.outbox_pending_sends(&mesh).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].deliver_at_ms, Some(at));
    assert_eq!(pending[0].deadline_ms, Some(at + 60_000));
    let one = local.outbox_pending_one(&mesh, &out.id).await.unwrap();
    assert_eq!(one.and_then(|p| p.deliver_at_ms), Some(at));
    // The broker holds it: scheduled (with the time it confirmed), never
    // resent.
    local
        .outbox_scheduled(&mesh, &[(out.id, at + 5)])
        .await
        .unwrap();
    assert!(local.outbox_pending_sends(&mesh).await.unwrap().is_empty());
    let entry = local.outbox_get(&mesh, &out.id).await.unwrap().unwrap();
    assert_eq!(entry.state, "scheduled");
    assert_eq!(entry.deliver_at_ms, Some(at + 5));
    // Cancelled: once.
    assert!(local.outbox_cancelled(&mesh, &out.id).await.unwrap());
    assert!(!local.outbox_cancelled(&mesh, &out.id).await.unwrap());
    let entry = local.outbox_get(&mesh, &out.id).await.unwrap().unwrap();
    assert_eq!(entry.state, "cancelled");
    // A late `scheduled` answer does not bring a cancelled message back,
    // nor take an accepted one back.
    local
        .outbox_scheduled(&mesh, &[(out.id, at)])
        .await
        .unwrap();
    assert_eq!(
        local
            .outbox_get(&mesh, &out.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        "cancelled"
    );
    let sent = seal(&sa, "*", "sent").unwrap();
    local
        .outbox_upsert_timed(&sent, None, Some(now + 10), now)
        .await
        .unwrap();
    local
        .outbox_accepted(&mesh, &[(sent.id, 42, Some(7))], now)
        .await
        .unwrap();
    local
        .outbox_scheduled(&mesh, &[(sent.id, now + 10)])
        .await
        .unwrap();
    let entry = local.outbox_get(&mesh, &sent.id).await.unwrap().unwrap();
    assert_eq!((entry.state.as_str(), entry.seq), ("accepted", Some(42)));
    assert!(!local.outbox_cancelled(&mesh, &sent.id).await.unwrap());
    // Written without a time (an ordinary send): none.
    let now_one = seal(&sa, "*", "now").unwrap();
    local
        .outbox_upsert_until(&now_one, None, now)
        .await
        .unwrap();
    let entry = local.outbox_get(&mesh, &now_one.id).await.unwrap().unwrap();
    assert_eq!(entry.deliver_at_ms, None);
}

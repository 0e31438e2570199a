//! A malicious member against the membership log, through the protocol
//! (findings 2–4 of the log review): an admin who appends a lone kick
//! cannot freeze the mesh; a member who seals garbage to a peer in a rekey
//! cuts it off from nothing for long; a banned member holding invite links
//! opens no key of any epoch after its ban. Each attack is played by a real
//! client signing its own entries (`append_entries`) or by raw frames.

use claudemesh_client::invites;
use claudemesh_client::invites::ShareOptions;
use claudemesh_client::mesh;
use claudemesh_client::mesh::rotation::Rotation;
use claudemesh_client::messages;
use claudemesh_client::moderation;
use claudemesh_client::topics;
use claudemesh_client::{ClientError, MeshClient};
use claudemesh_crypto::envelope::{Priority, Target};
use claudemesh_crypto::invite::Invite;
use claudemesh_crypto::keys::random_bytes;
use claudemesh_crypto::log::{
    EntryBody, LogEntry, RemoveKind, Role, SEALED_ROOT_KEY_BYTES, verify_log,
};
use claudemesh_crypto::{EpochRootKey, PublicKey};
use claudemesh_proto::frames::{InviteFetch, LogFetch};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};

use crate::both;
use crate::support::*;

fn now_secs() -> u64 {
    claudemesh_client::client::now_ms() / 1000
}

fn member_key(peer: &Peer) -> PublicKey {
    peer.home.load_keys(&peer.mesh.id).unwrap().member.public()
}

async fn send_all(c: &MeshClient, text: &str) -> Result<(), ClientError> {
    c.send(Target::Broadcast, text.as_bytes(), Priority::Next, None)
        .await
        .map(|_| ())
}

fn is_rekey_required(r: &Result<(), ClientError>) -> bool {
    matches!(
        r,
        Err(ClientError::Refused {
            code: ErrorCode::RekeyRequired,
            ..
        })
    )
}

/// Finding 2: an admin appends a kick and never the rekey the log requires
/// next. The owner still invites, writes that rekey, removes the admin,
/// and broadcasts flow again.
async fn attack_admin_lone_kick_does_not_freeze_the_mesh(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let admin_invite = invite(
        &alice,
        ShareOptions {
            role: Role::Admin,
            ..ShareOptions::default()
        },
    )
    .await;
    let eve = join_with(&broker, &admin_invite, "eve").await.unwrap();
    let bob = joiner(&broker, &alice, "bob").await;
    let dave = joiner(&broker, &alice, "dave").await;

    // Eve, an admin, kicks bob alone.
    let bob_key = member_key(&bob);
    let e = eve.connect().await;
    e.append_entries(|s| {
        Ok(vec![LogEntry::sign(
            s.member_key(),
            s.roster().len(),
            s.roster().head(),
            now_secs(),
            EntryBody::Remove {
                member: bob_key,
                how: RemoveKind::Kick,
            },
        )])
    })
    .await
    .unwrap();
    e.close().await;

    // Dave, a plain member, cannot send to everyone and is told who can.
    let d = dave.connect().await;
    let r = send_all(&d, "dave, during the freeze").await;
    assert!(is_rekey_required(&r), "{r:?}");
    assert!(
        format!("{r:?}").contains("claudemesh mesh rekey"),
        "the refusal says an admin must write the key: {r:?}"
    );
    // Nor append anything else, and is told why.
    let r = topics::topic_create(&d, "ops", false, "").await.map(|_| ());
    assert!(is_rekey_required(&r), "{r:?}");
    assert!(!d.with_state(mesh::rotation::may_rekey));
    d.close().await;

    // The owner's SDK creates an invite: the rekey goes in first.
    let a = alice.connect().await;
    let kick_seq = a.with_state(|s| s.roster().pending_removal()).unwrap();
    let shared = invites::share(
        &a,
        &ShareOptions {
            max_uses: 2,
            ..ShareOptions::default()
        },
    )
    .await
    .unwrap();
    a.with_state(|s| {
        let r = s.roster();
        assert_eq!(r.pending_removal(), None);
        assert_eq!(r.epoch(), 1);
        let next = &s.entries()[usize::try_from(kick_seq).unwrap() + 1];
        assert!(matches!(next.body, EntryBody::Rekey { .. }));
        assert_eq!(next.author, s.member_key().public(), "the owner wrote it");
    });
    // It removes that admin, and broadcasts flow again.
    let removed = moderation::remove(&a, "eve", RemoveKind::Kick)
        .await
        .unwrap();
    assert_eq!(removed.epoch, 2);
    send_all(&a, "after the repair").await.unwrap();
    a.close().await;
    assert_eq!(dave.read_inbox().await, vec!["after the repair"]);
    // The invite made during the freeze works (its joiner, owed the key of
    // a later epoch, writes the rekey itself) and reads what is sent next.
    let carol = join_with(&broker, &shared.url, "carol").await.unwrap();
    let c = carol.connect().await;
    assert!(c.with_state(|s| !s.lacks_current_root() && !s.roster().needs_rekey()));
    c.close().await;
    let a = alice.connect().await;
    send_all(&a, "hello carol").await.unwrap();
    a.close().await;
    assert_eq!(carol.read_inbox().await, vec!["hello carol"]);
    broker.stop().await;
}
both!(attack_admin_lone_kick_does_not_freeze_the_mesh);

/// Finding 3: after carol leaves, mallory (a plain member) writes the
/// repairing rekey with garbage sealed to bob. Bob's client names mallory,
/// re-rolls the key itself, reads what is sent after, and opens the later,
/// correct epochs too; mallory cannot re-roll an epoch the owner made.
async fn attack_member_seals_garbage_to_a_peer(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let mallory = joiner(&broker, &alice, "mallory").await;
    let mut carol = joiner(&broker, &alice, "carol").await;
    let c = carol.connect().await;
    moderation::mesh_leave(&mut carol.home, c).await.unwrap();

    let bob_key = member_key(&bob);
    let m = mallory.connect().await;
    m.append_entries(|s| {
        let r = s.roster();
        let root = EpochRootKey::generate(r.epoch() + 1);
        let members: Vec<PublicKey> = r.members().keys().copied().collect();
        let mut body = claudemesh_crypto::log::rekey_body(&root, &r.mesh_id(), &members)
            .map_err(|e| ClientError::Invalid(e.to_string().into()))?;
        if let EntryBody::Rekey { sealed, .. } = &mut body {
            for s in sealed.iter_mut().filter(|s| s.recipient == bob_key) {
                s.ciphertext = random_bytes::<SEALED_ROOT_KEY_BYTES>().to_vec();
            }
        }
        Ok(vec![LogEntry::sign(
            s.member_key(),
            r.len(),
            r.head(),
            now_secs(),
            body,
        )])
    })
    .await
    .unwrap();
    let bad_seq = m.with_state(|s| s.roster().len() - 1);
    m.close().await;

    // Bob's client reports it, naming mallory, and re-rolls the key.
    let b = bob.connect().await;
    let reports = b.with_state(|s| s.bad_seal_reports());
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = &reports[0];
    assert_eq!(
        (report.kind, report.epoch, report.seq),
        ("mesh", 1, bad_seq)
    );
    assert_eq!(report.author_name, "mallory");
    assert_eq!(report.author, member_key(&mallory).to_hex());
    assert!(report.current && report.fresh);
    assert!(report.warning().contains("mallory"), "{}", report.warning());
    assert_eq!(b.repair_keys().await.unwrap(), vec![Rotation::Mesh]);
    assert!(b.with_state(|s| !s.lacks_current_root() && s.roster().epoch() == 2));
    b.close().await;

    let a = alice.connect().await;
    send_all(&a, "after the re-roll").await.unwrap();
    a.close().await;
    assert_eq!(bob.read_inbox().await, vec!["after the re-roll"]);
    assert_eq!(mallory.read_inbox().await, vec!["after the re-roll"]);

    // The owner writes a correct epoch later: bob opens it too, and
    // mallory may not re-roll an epoch the owner made (SDK and raw append).
    let a = alice.connect().await;
    let rekeyed = moderation::mesh_rekey(&a).await.unwrap();
    assert_eq!(rekeyed.epoch, 3);
    send_all(&a, "epoch three").await.unwrap();
    a.close().await;
    assert_eq!(bob.read_inbox().await, vec!["epoch three"]);
    let b = bob.connect().await;
    b.with_state(|s| {
        assert!(s.root(2).is_some() && s.root(3).is_some());
        assert!(s.root(1).is_none(), "the bad epoch stays unreadable");
        assert!(!s.bad_seal_reports()[0].current);
    });
    b.close().await;
    let m = mallory.connect().await;
    let r = moderation::mesh_rekey(&m).await;
    assert!(
        matches!(
            r,
            Err(ClientError::Refused {
                code: ErrorCode::Forbidden,
                ..
            })
        ),
        "{r:?}"
    );
    let raw = m
        .append_entries(|s| {
            let r = s.roster();
            let body = mesh::rotation::mesh_rekey_body(r)?;
            Ok(vec![LogEntry::sign(
                s.member_key(),
                r.len(),
                r.head(),
                now_secs(),
                body,
            )])
        })
        .await;
    assert!(
        matches!(
            raw,
            Err(ClientError::Refused {
                code: ErrorCode::LogInvalid,
                ..
            })
        ),
        "the broker refuses it: {raw:?}"
    );
    m.close().await;
    broker.stop().await;
}
both!(attack_member_seals_garbage_to_a_peer);

/// Fetches an invite's bundle and the whole log with raw frames (no SDK),
/// as anyone holding the link can; or the broker's refusal.
async fn fetch_with_invite(
    url: &str,
    invite_url: &str,
) -> Result<Vec<LogEntry>, claudemesh_proto::frames::ErrorFrame> {
    let secret = Invite::parse(invite_url).unwrap().secret;
    let mut raw = Raw::open(url).await;
    raw.send(&ClientFrame::InviteFetch(InviteFetch {
        req: Some("f".into()),
        invite_key: secret.public_key(),
        proof: secret.prove(&raw.challenge.nonce.0),
    }))
    .await;
    let mut entries = match raw.recv().await.unwrap() {
        BrokerFrame::InviteBundle(b) => b.log,
        BrokerFrame::Error(e) => return Err(e),
        other => panic!("unexpected {other:?}"),
    };
    loop {
        raw.send(&ClientFrame::LogFetch(LogFetch {
            req: Some("l".into()),
            from_seq: entries.len() as u64,
            limit: None,
        }))
        .await;
        match raw.recv().await.unwrap() {
            BrokerFrame::LogEntries(le) if le.entries.is_empty() => return Ok(entries),
            BrokerFrame::LogEntries(le) => {
                let more = le.more;
                entries.extend(le.entries);
                if !more {
                    return Ok(entries);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Finding 4: mallory joined with a 5-use invite and also holds another
/// open invite made before her ban. After the ban, hers is revoked; the
/// other serves a log whose later rekeys seal to members only, so she opens
/// no epoch after the ban — while a fresh joiner with that same pre-ban
/// invite joins and reads what is sent next.
async fn attack_banned_member_reads_nothing_through_invites(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let five = ShareOptions {
        max_uses: 5,
        ..ShareOptions::default()
    };
    let hers = invite(&alice, five.clone()).await;
    let other = invite(&alice, five).await;
    let mallory = join_with(&broker, &hers, "mallory").await.unwrap();
    let bob = joiner(&broker, &alice, "bob").await;
    let mallory_keys = mallory.home.load_keys(&mallory.mesh.id).unwrap();
    let mallory_epochs: Vec<u64> = mallory_keys.roots.keys().copied().collect();
    assert_eq!(mallory_epochs, vec![0]);

    let a = alice.connect().await;
    let removed = moderation::remove(&a, "mallory", RemoveKind::Ban)
        .await
        .unwrap();
    assert_eq!(removed.epoch, 1);
    assert_eq!(removed.invites_revoked, 1, "the invite she joined with");
    let ban_seq = a.with_state(|s| s.roster().departed()[&mallory_keys.member.public()].seq);
    send_all(&a, "after the ban").await.unwrap();
    a.close().await;

    // Her own invite: revoked, at the broker's door.
    let e = fetch_with_invite(&broker.url, &hers).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InviteRevoked);
    // The other one serves the log, whose post-ban rekeys seal to members
    // only: nothing in it opens for any key she holds.
    let log = fetch_with_invite(&broker.url, &other).await.unwrap();
    let roster = verify_log(&log).unwrap();
    let invite_keys: Vec<PublicKey> = roster.invites().keys().copied().collect();
    let mut post_ban_rekeys = 0;
    for e in log.iter().filter(|e| e.seq > ban_seq) {
        if let EntryBody::Rekey { sealed, .. } = &e.body {
            post_ban_rekeys += 1;
            for s in sealed {
                assert!(!invite_keys.contains(&s.recipient), "sealed to an invite");
                assert_ne!(s.recipient, mallory_keys.member.public());
            }
        }
    }
    assert!(post_ban_rekeys >= 1);
    let other_signer = Invite::parse(&other).unwrap().secret.signing_key();
    let hers_signer = Invite::parse(&hers).unwrap().secret.signing_key();
    for k in [&mallory_keys.member, &other_signer, &hers_signer] {
        assert!(
            roster.open_root_keys(k).is_empty(),
            "a key mallory holds opens a post-ban epoch"
        );
    }
    assert!(roster.key_epochs().keys().all(|e| {
        roster
            .sealed_root_key(*e, &mallory_keys.member.public())
            .is_none()
    }));
    // Nor can her key be admitted again through the other invite.
    let e = LogEntry::admit(
        &mallory_keys.member,
        &other_signer,
        roster.len(),
        roster.head(),
        now_secs(),
    );
    let refused = roster.clone().apply(&e).unwrap_err().fault;
    assert!(
        matches!(refused, claudemesh_crypto::log::LogFault::Banned(_)),
        "{refused}"
    );

    // A fresh joiner with the pre-ban invite (epoch 0, the mesh is past
    // it): owed the current key, it writes the rekey itself and reads what
    // is sent next. So does bob.
    let dave = join_with(&broker, &other, "dave").await.unwrap();
    let d = dave.connect().await;
    d.with_state(|s| {
        assert!(!s.lacks_current_root());
        assert!(!s.roster().needs_rekey());
        assert!(s.bad_seal_reports().is_empty());
    });
    d.close().await;
    let a = alice.connect().await;
    send_all(&a, "hello dave").await.unwrap();
    a.close().await;
    assert_eq!(dave.read_inbox().await, vec!["hello dave"]);
    assert_eq!(bob.read_inbox().await, vec!["after the ban", "hello dave"]);
    broker.stop().await;
}
both!(attack_banned_member_reads_nothing_through_invites);

/// Mallory's private topics, each holding every member: `topic_create`
/// and `topic_join`s signed at the head, in appends of at most `per_append`
/// entries.
async fn fill_private_topics(
    m: &MeshClient,
    names: &[String],
    per_append: usize,
) -> Result<(), ClientError> {
    let per_topic = m.with_state(|s| s.roster().members().len());
    for chunk in names.chunks((per_append / per_topic).max(1)) {
        m.append_entries(|s| {
            let me = s.member_key().public();
            let mut r = s.roster().clone();
            let mut out = Vec::new();
            let members: Vec<PublicKey> = r.members().keys().copied().collect();
            for name in chunk {
                let (create, key) =
                    claudemesh_crypto::log::topic_create_body(name, true, "", &me, &r.mesh_id())
                        .map_err(|e| ClientError::Invalid(e.to_string().into()))?;
                let mut bodies = vec![create];
                for who in members.iter().filter(|k| **k != me) {
                    bodies.push(
                        claudemesh_crypto::log::topic_join_body(name, who, key.as_ref())
                            .map_err(|e| ClientError::Invalid(e.to_string().into()))?,
                    );
                }
                for body in bodies {
                    let e = LogEntry::sign(s.member_key(), r.len(), r.head(), now_secs(), body);
                    r.apply(&e)
                        .map_err(|e| ClientError::Invalid(e.to_string().into()))?;
                    out.push(e);
                }
            }
            Ok(out)
        })
        .await?;
    }
    Ok(())
}

/// Review finding: a plain member puts every member, owner included, in
/// so many large private topics that one append of its kick (the remove,
/// the rekey and a topic rekey per topic) no longer fits in a frame. The
/// SDK refuses to send a frame that large (clearly, staying connected);
/// the owner's kick goes through anyway, its topic rekeys in appends of
/// their own, and every one of those topics is rekeyed without mallory.
async fn attack_member_makes_itself_too_big_to_kick(backend: Backend) {
    let broker = start_with(backend, |c| {
        c.log_entries_per_hour = 100_000;
        c.log_burst = 10_000;
    })
    .await;
    let alice = owner(&broker, "alice").await;
    let mut others = Vec::new();
    for i in 0..8 {
        others.push(joiner(&broker, &alice, &format!("member{i}")).await);
    }
    let mallory = joiner(&broker, &alice, "mallory").await;
    let mallory_key = member_key(&mallory);

    // 70 private topics of 10 members each.
    let names: Vec<String> = (0..70).map(|i| format!("trap{i:02}")).collect();
    let m = mallory.connect().await;
    // All in one frame: the SDK refuses, and the connection stays up.
    let r = fill_private_topics(&m, &names[..30], 10_000).await;
    assert!(
        matches!(
            r,
            Err(ClientError::FrameTooLarge { bytes, max_bytes, .. }) if bytes > max_bytes
        ),
        "{r:?}"
    );
    m.ping().await.expect("still connected");
    fill_private_topics(&m, &names, 100).await.unwrap();
    m.close().await;

    let a = alice.connect().await;
    let before = a.with_state(|s| s.roster().len());
    let removed = moderation::remove(&a, "mallory", RemoveKind::Kick)
        .await
        .expect("the kick goes through");
    assert_eq!(removed.topics_rekeyed, names);
    assert!(removed.topics_pending.is_empty());
    a.with_state(|s| {
        let r = s.roster();
        assert!(!r.is_member(&mallory_key));
        let entries = &s.entries()[usize::try_from(before).unwrap()..];
        let kinds: Vec<&str> = entries.iter().map(|e| e.body.kind()).collect();
        assert_eq!(&kinds[..2], ["remove", "rekey"]);
        assert!(kinds[2..].iter().all(|k| *k == "topic_rekey"));
        let bytes: usize = entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap().len())
            .sum();
        assert!(
            bytes > claudemesh_proto::limits::MAX_FRAME_BYTES,
            "the scenario must not fit in one frame ({bytes} bytes)"
        );
        for name in &names {
            let t = r.topic(name).unwrap();
            assert!(!t.needs_rekey, "#{name} still needs its rekey");
            assert!(!t.members.contains_key(&mallory_key));
            assert!(!t.key_epochs[&t.key_epoch].seals.contains_key(&mallory_key));
            assert_eq!(t.key_epoch, 1);
        }
    });
    // The topics work again for their members.
    let target = Target::Topic(names[69].clone());
    messages::send(&a, target, "after the kick", Priority::Next, None)
        .await
        .unwrap();
    a.close().await;
    assert_eq!(others[0].read_inbox().await, vec!["after the kick"]);
    broker.stop().await;
}
both!(attack_member_makes_itself_too_big_to_kick);

/// Waits (at most 10 s) until `done` holds for `c`'s state, collecting the
/// bad-seal notices its events carried meanwhile.
async fn until_state(
    c: &MeshClient,
    events: &mut tokio::sync::broadcast::Receiver<claudemesh_client::Event>,
    done: impl Fn(&claudemesh_client::mesh::MeshState) -> bool,
) -> Vec<claudemesh_client::mesh::BadSealReport> {
    let mut notices = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        while let Ok(e) = events.try_recv() {
            if let claudemesh_client::Event::BadSeal(b) = e {
                notices.push(*b);
            }
        }
        if c.with_state(&done) {
            return notices;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the state never got there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Review finding: the victim of a bad seal repaired it only at its next
/// connection or fan-out send, so a long-lived client could not read what
/// was sent meanwhile. Now a live connection (not reconnecting) re-rolls
/// the bad key on its own as soon as the bad entry reaches it — a mesh
/// epoch, then a private topic's key — is still told who did it, and reads
/// what is sent next.
async fn attack_bad_seal_victim_repairs_while_connected(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let mallory = joiner(&broker, &alice, "mallory").await;
    let mut carol = joiner(&broker, &alice, "carol").await;
    let a = alice.connect().await;
    topics::topic_create(&a, "ops", true, "").await.unwrap();
    topics::topic_add(&a, "ops", "bob").await.unwrap();
    topics::topic_add(&a, "ops", "mallory").await.unwrap();
    a.close().await;
    let c = carol.connect().await;
    moderation::mesh_leave(&mut carol.home, c).await.unwrap();

    let bob_key = member_key(&bob);
    let b = bob.connect().await;
    let mut events = b.events();

    // Mallory writes the rekey the leave allows, with garbage for bob.
    let m = mallory.connect().await;
    m.append_entries(|s| {
        let r = s.roster();
        let root = EpochRootKey::generate(r.epoch() + 1);
        let members: Vec<PublicKey> = r.members().keys().copied().collect();
        let mut body = claudemesh_crypto::log::rekey_body(&root, &r.mesh_id(), &members)
            .map_err(|e| ClientError::Invalid(e.to_string().into()))?;
        if let EntryBody::Rekey { sealed, .. } = &mut body {
            for s in sealed.iter_mut().filter(|s| s.recipient == bob_key) {
                s.ciphertext = random_bytes::<SEALED_ROOT_KEY_BYTES>().to_vec();
            }
        }
        Ok(vec![LogEntry::sign(
            s.member_key(),
            r.len(),
            r.head(),
            now_secs(),
            body,
        )])
    })
    .await
    .unwrap();

    // Bob's live client is told, and re-rolls the epoch itself.
    let notices = until_state(&b, &mut events, |s| {
        s.roster().epoch() == 2 && !s.lacks_current_root()
    })
    .await;
    assert!(
        notices
            .iter()
            .any(|n| n.kind == "mesh" && n.epoch == 1 && n.author_name == "mallory"),
        "{notices:?}"
    );
    b.with_state(|s| {
        let author = s.roster().key_epochs()[&2].author;
        assert_eq!(author, bob_key, "bob wrote the new epoch");
    });
    let a = alice.connect().await;
    send_all(&a, "after the re-roll").await.unwrap();
    a.close().await;
    assert_eq!(next_message(&mut events).await.body, "after the re-roll");

    // The same with the private topic's key.
    m.sync_log().await.unwrap();
    m.append_entries(|s| {
        let r = s.roster();
        let info = r.topic("ops").expect("#ops");
        let (mut body, _) = claudemesh_crypto::log::topic_rekey_body("ops", info, &r.mesh_id())
            .map_err(|e| ClientError::Invalid(e.to_string().into()))?;
        if let EntryBody::TopicRekey { sealed, .. } = &mut body {
            for s in sealed.iter_mut().filter(|s| s.recipient == bob_key) {
                s.ciphertext = random_bytes::<SEALED_ROOT_KEY_BYTES>().to_vec();
            }
        }
        Ok(vec![LogEntry::sign(
            s.member_key(),
            r.len(),
            r.head(),
            now_secs(),
            body,
        )])
    })
    .await
    .unwrap();
    m.close().await;
    let bad_epoch = b.with_state(|s| s.roster().topic("ops").map(|t| t.key_epoch));
    let notices = until_state(&b, &mut events, |s| {
        s.roster()
            .topic("ops")
            .is_some_and(|t| t.key_epoch >= 2 && t.key_epochs[&t.key_epoch].author == bob_key)
            && !s.lacks_topic_key("ops")
    })
    .await;
    assert!(
        notices.iter().any(|n| n.kind == "topic" && n.epoch == 1),
        "{notices:?} (bad epoch then {bad_epoch:?})"
    );
    let a = alice.connect().await;
    messages::send(
        &a,
        Target::Topic("ops".into()),
        "ops, after the re-roll",
        Priority::Next,
        None,
    )
    .await
    .unwrap();
    a.close().await;
    assert_eq!(
        next_message(&mut events).await.body,
        "ops, after the re-roll"
    );
    b.close().await;
    broker.stop().await;
}
both!(attack_bad_seal_victim_repairs_while_connected);

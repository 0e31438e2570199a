//! The trust requirements a user's safety rests on: no secret or plaintext
//! reaches the broker's store (TM1), a captured hello is useless on another
//! connection (TM2), and a broker that invents a member, swaps a key or
//! rewrites history is caught by the clients (TM3).

use std::sync::Arc;

use claudemesh_client::ClientError;
use claudemesh_client::invites::ShareOptions;
use claudemesh_crypto::SigningKey;
use claudemesh_crypto::encoding::b64_encode;
use claudemesh_crypto::envelope::{Priority, Target};
use claudemesh_crypto::log::{EntryBody, LogEntry, Role};
use claudemesh_proto::frames::LogEntries;
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};

use crate::both;
use crate::support::*;

const SECRET_A: &str = "the launch code is 0000, tell nobody";
const SECRET_B: &str = "Zanzibar-protocol reply: acknowledged";
const SECRET_TOPIC: &str = "topic post: the Quillfeather rollout is at 40%";
const SECRET_GROUP: &str = "group note: rotate the Marrowind credentials";
const SECRET_ALL: &str = "to everyone: Thistledown offsite moved to Friday";
const SECRET_HELD: &str = "held for later: the Brackenfall keys rotate at noon";
const SECRET_NOTE: &str = "team memory: the Gallowmere vault code is under the sink";
const SECRET_TASK: &str = "task: migrate the Hollowbrook ledger";
const SECRET_TASK_BODY: &str = "task body: the Hollowbrook export lives in bucket Yarrowmoor";
const SECRET_TOPIC_TASK: &str = "topic task: audit the Wrenfield firewall";
const SECRET_RESULT: &str = "task result: Hollowbrook migrated, checksum Fennimore";
const SECRET_PATH: &str = "src/quillhaven/";
const SECRET_REPO: &str = "github.com/acme/brindlemoor";
const SECRET_REASON: &str = "lease reason: rewriting the Oakhurst parser";

/// TM1: after a full scenario with known plaintexts, display names, a mesh
/// name, summaries and invite secrets, no table row of the store contains
/// any of them, nor any secret key (in hex or base64).
async fn tm1_no_secret_reaches_the_store(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "Alice-Quinterra").await;
    let url = invite(
        &alice,
        ShareOptions {
            max_uses: 2,
            ..ShareOptions::default()
        },
    )
    .await;
    let bob = join_with(&broker, &url, "Bob-Vexworth").await.unwrap();
    let a = alice.connect().await;
    a.set_presence(None, Some("summary: merging the Orbweaver branch".into()))
        .await
        .unwrap();
    let to_bob = a.resolve("Bob-Vexworth").await.unwrap();
    a.send(to_bob, SECRET_A.as_bytes(), Priority::Now, None)
        .await
        .unwrap();
    a.close().await;
    let b = bob.connect().await;
    b.settle().await.unwrap();
    let to_alice = b.resolve("Alice-Quinterra").await.unwrap();
    b.send(to_alice, SECRET_B.as_bytes(), Priority::Next, None)
        .await
        .unwrap();
    b.close().await;
    assert_eq!(alice.read_inbox().await, vec![SECRET_B]);
    // Topics, groups and broadcasts: names are routing metadata, bodies are not.
    let a = alice.connect().await;
    crate::fanout::append(&a, |s| {
        claudemesh_crypto::log::topic_create_body(
            "ops",
            false,
            "",
            &s.member_key().public(),
            &s.mesh_id(),
        )
        .unwrap()
        .0
    })
    .await;
    crate::fanout::append(&a, |s| EntryBody::GroupJoin {
        group: "eng".into(),
        member: s.member_key().public(),
        role: Some("lead".into()),
    })
    .await;
    for (target, body) in [
        (Target::Topic("ops".into()), SECRET_TOPIC),
        (Target::Group("eng".into()), SECRET_GROUP),
        (Target::Broadcast, SECRET_ALL),
    ] {
        a.send(target, body.as_bytes(), Priority::Next, None)
            .await
            .unwrap();
    }
    // A message held for later: the broker keeps its envelope until then.
    let to_bob = a.resolve("Bob-Vexworth").await.unwrap();
    let held = a
        .send_with(
            claudemesh_crypto::envelope::MessageId::random(),
            to_bob,
            SECRET_HELD.as_bytes(),
            claudemesh_client::SendOptions::new(Priority::Next, None)
                .deliver_at_ms(Some(a.broker_now_ms() + 3_600_000)),
        )
        .await
        .unwrap();
    assert!(held.scheduled_for_ms.is_some(), "{held:?}");
    // A task, which Bob completes with a result: sealed, as the note.
    let task = a
        .task_create(claudemesh_client::tasks::TaskDraft {
            title: SECRET_TASK.into(),
            body: Some(SECRET_TASK_BODY.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    // A task sealed to #ops: under the topic's coordination key.
    let topic_task = a
        .task_create(claudemesh_client::tasks::TaskDraft {
            title: SECRET_TOPIC_TASK.into(),
            topic: Some("#ops".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(topic_task.topic.as_deref(), Some("ops"));
    // A file lease: its repository, path and reason sealed, its paths
    // only as keyed tags.
    a.lease_take(&claudemesh_client::leases::LeaseRequest {
        repo: SECRET_REPO.into(),
        paths: vec![SECRET_PATH.into()],
        exclusive: true,
        ttl: std::time::Duration::from_secs(600),
        reason: Some(SECRET_REASON.into()),
    })
    .await
    .unwrap();
    // A team memory note: stored sealed, under the coordination key.
    let mut raw = Raw::open(&broker.url).await;
    crate::messaging::hello_raw(&mut raw, &alice).await;
    let note = {
        let keys = alice.home.load_keys(&alice.mesh.id).unwrap();
        let (epoch, root) = keys.roots.iter().next_back().unwrap();
        claudemesh_crypto::coord::CoordObject::seal(
            keys.sessions.get("cli").unwrap(),
            &claudemesh_crypto::coord::coord_key(root, &alice.mesh.id),
            *epoch,
            claudemesh_crypto::coord::CoordFacts {
                kind: claudemesh_crypto::coord::CoordKind::Memory,
                id: claudemesh_crypto::coord::CoordId::random(),
                rev: 1,
                at_ms: a.broker_now_ms(),
            },
            format!("{{\"text\":\"{SECRET_NOTE}\"}}").as_bytes(),
        )
        .unwrap()
    };
    raw.send(&ClientFrame::CoordPut(claudemesh_proto::frames::CoordPut {
        req: None,
        object: Box::new(note.clone()),
    }))
    .await;
    loop {
        match raw.recv().await.unwrap() {
            BrokerFrame::CoordStored(s) => break assert_eq!(s.id, note.id),
            BrokerFrame::Presence(_) | BrokerFrame::LogUpdate(_) | BrokerFrame::CoordChanged(_) => {
                continue;
            }
            other => panic!("expected coord_stored, got {other:?}"),
        }
    }
    let mesh_id = alice.mesh.id;
    let derived: Vec<Vec<u8>> = a.with_state(|s| {
        s.keys()
            .roots
            .values()
            .flat_map(|r| {
                [
                    r.mesh_key(&mesh_id).as_bytes().to_vec(),
                    r.topic_key(&mesh_id, b"ops").as_bytes().to_vec(),
                    r.profile_key(&mesh_id).as_bytes().to_vec(),
                    claudemesh_crypto::coord::coord_key(r, &mesh_id)
                        .as_bytes()
                        .to_vec(),
                ]
            })
            .collect()
    });
    a.close().await;
    // Bob is in neither the topic nor the group: only the broadcast is his.
    let got = bob.read_inbox().await;
    assert!(got.iter().any(|m| m == SECRET_ALL), "{got:?}");
    assert!(!got.iter().any(|m| m == SECRET_TOPIC || m == SECRET_GROUP));
    let b = bob.connect().await;
    b.task_complete(&task.id.to_hex(), Some(SECRET_RESULT), false)
        .await
        .unwrap();
    b.close().await;

    let mut forbidden: Vec<String> = vec![
        SECRET_A.into(),
        SECRET_B.into(),
        SECRET_TOPIC.into(),
        SECRET_GROUP.into(),
        SECRET_ALL.into(),
        SECRET_HELD.into(),
        SECRET_NOTE.into(),
        SECRET_TASK.into(),
        SECRET_TASK_BODY.into(),
        SECRET_TOPIC_TASK.into(),
        "Wrenfield".into(),
        SECRET_RESULT.into(),
        SECRET_PATH.into(),
        "quillhaven".into(),
        SECRET_REPO.into(),
        "brindlemoor".into(),
        SECRET_REASON.into(),
        "Alice-Quinterra".into(),
        "Bob-Vexworth".into(),
        "test-mesh".into(),
        "Orbweaver".into(),
    ];
    // The invite token (secret + broker URL), and every secret key both
    // devices hold, in hex and base64.
    forbidden.push(url.split('#').nth(1).unwrap().to_owned());
    for peer in [&alice, &bob] {
        let keys = peer.home.load_keys(&peer.mesh.id).unwrap();
        let mut secrets: Vec<Vec<u8>> = vec![keys.member.seed().to_vec()];
        secrets.extend(keys.invite.iter().map(|k| k.seed().to_vec()));
        secrets.extend(keys.sessions.values().map(|s| s.key.seed().to_vec()));
        secrets.extend(keys.roots.values().map(|r| r.key().as_bytes().to_vec()));
        for s in secrets {
            forbidden.push(hex::encode(&s));
            forbidden.push(b64_encode(&s).trim_end_matches('=').to_owned());
        }
    }
    for k in derived {
        forbidden.push(hex::encode(&k));
        forbidden.push(b64_encode(&k).trim_end_matches('=').to_owned());
    }
    let dump = dump_text(&broker).await;
    assert!(dump.contains("messages") && dump.contains("log_entries"));
    assert!(
        dump.contains(&held.id.to_hex()),
        "the held message is there, in scheduled_messages"
    );
    assert!(
        dump.contains(&hex::encode_upper(note.id.0)),
        "the note is there, in coord_objects"
    );
    assert!(
        dump.contains(&hex::encode_upper(task.id.0)),
        "the task is there, in coord_objects"
    );
    assert!(
        dump.contains("#ops") && dump.contains("@eng"),
        "routing metadata is there"
    );
    for f in &forbidden {
        assert!(
            !dump.to_lowercase().contains(&f.to_lowercase()),
            "the broker's store contains {f:?}"
        );
    }
    // SQLite: the raw database files too (WAL included), byte for byte.
    if backend == Backend::Sqlite {
        let mut raw = Vec::new();
        for entry in std::fs::read_dir(broker.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("broker.db"))
            {
                raw.extend(std::fs::read(&path).unwrap());
            }
        }
        for f in &forbidden[..10] {
            assert!(
                !raw.windows(f.len()).any(|w| w == f.as_bytes()),
                "the broker's database files contain {f:?}"
            );
        }
    }
    broker.stop().await;
}
both!(tm1_no_secret_reaches_the_store);

/// TM2: a hello signed for one connection's challenge is refused on another.
async fn tm2_replayed_hello_is_refused(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let keys = alice.home.load_keys(&alice.mesh.id).unwrap();
    let session = keys.sessions.get("cli").unwrap().clone();
    let first = Raw::open(&broker.url).await;
    let captured = claudemesh_proto::hello::Hello::sign(
        &session,
        &first.challenge.nonce.0,
        1,
        None,
        Default::default(),
        "test",
    );
    let mut second = Raw::open(&broker.url).await;
    assert_ne!(first.challenge.nonce, second.challenge.nonce);
    second
        .send(&ClientFrame::Hello(Box::new(captured.clone())))
        .await;
    let e = second.expect_error().await;
    assert_eq!(e.code, ErrorCode::BadSignature);
    let (code, reason) = second.expect_close().await;
    assert_eq!((code, reason.as_str()), (1008, "bad_signature"));
    // Any field changed after signing fails too (nothing rides unsigned).
    let mut third = Raw::open(&broker.url).await;
    let mut tampered = claudemesh_proto::hello::Hello::sign(
        &session,
        &third.challenge.nonce.0,
        1,
        None,
        Default::default(),
        "test",
    );
    tampered.presence.status = claudemesh_proto::frames::Status::Dnd;
    third.send(&ClientFrame::Hello(Box::new(tampered))).await;
    assert_eq!(third.expect_error().await.code, ErrorCode::BadSignature);
    // The honest hello on its own connection works.
    let mut fourth = Raw::open(&broker.url).await;
    let honest = claudemesh_proto::hello::Hello::sign(
        &session,
        &fourth.challenge.nonce.0,
        1,
        None,
        Default::default(),
        "test",
    );
    fourth.send(&ClientFrame::Hello(Box::new(honest))).await;
    assert!(matches!(fourth.recv().await, Ok(BrokerFrame::Welcome(_))));
    broker.stop().await;
}
both!(tm2_replayed_hello_is_refused);

/// Rewrites every `log_entries` answer with `f`.
fn rewriting(
    f: impl Fn(LogEntries) -> LogEntries + Send + Sync + 'static,
) -> Arc<dyn Fn(BrokerFrame) -> BrokerFrame + Send + Sync> {
    Arc::new(move |frame| match frame {
        BrokerFrame::LogEntries(le) => BrokerFrame::LogEntries(f(le)),
        other => other,
    })
}

/// TM3: a broker that invents a member (an invite it signed itself, or an
/// admit without a real invite signature), swaps a member's key, or rewrites
/// an entry the client verified earlier, is refused with a clear message.
async fn tm3_lying_broker_is_caught(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;

    let point_at = |peer: &Peer, url: &str| {
        let mut mesh = peer.mesh.clone();
        mesh.broker_url = url.to_owned();
        Peer {
            name: peer.name.clone(),
            home: peer.home.clone(),
            mesh,
        }
    };
    let expect_refusal = |r: Result<claudemesh_client::MeshClient, ClientError>, what: &str| match r
    {
        Err(e @ ClientError::LogInvalid(_)) | Err(e @ ClientError::LogFork(_)) => {
            let text = e.to_string();
            assert!(text.contains("membership log"), "{what}: {text}");
            assert!(e.is_security());
            text
        }
        Err(other) => panic!("{what}: refused for the wrong reason: {other}"),
        Ok(_) => panic!("{what}: the client trusted a forged log"),
    };

    // 1. The broker appends an invite "signed" by a key of its own, and an
    //    admit of a member of its own through it.
    let mallory = SigningKey::generate();
    let fake_invite = SigningKey::generate();
    let inject = move |mut le: LogEntries| {
        if !le.more {
            let seq = le.len;
            let prev = le.head;
            let invite = LogEntry::sign(
                &mallory,
                seq,
                prev,
                1,
                EntryBody::Invite {
                    invite_key: fake_invite.public(),
                    role: Role::Member,
                    max_uses: 1,
                    expires_at: u64::MAX / 2,
                },
            );
            le.head = invite.hash();
            le.entries.push(invite);
            le.len += 1;
        }
        le
    };
    let proxy = lying_proxy(broker.url.clone(), rewriting(inject)).await;
    let text = expect_refusal(
        claudemesh_client::MeshClient::connect(
            &alice.home,
            &point_at(&alice, &proxy).mesh,
            Default::default(),
        )
        .await,
        "injected invite",
    );
    assert!(text.contains("not allowed"), "{text}");

    // 2. An admit of a broker-made key through bob's (real) invite, without
    //    the invite key's signature.
    // (The log names the invite each member joined with.)
    let bob_key = bob.home.load_keys(&bob.mesh.id).unwrap().member.public();
    let a = alice.connect().await;
    let invite_key = a
        .with_state(|s| s.roster().member(&bob_key).and_then(|m| m.invite))
        .unwrap();
    a.close().await;
    let stranger = SigningKey::generate();
    let forged_admit = move |mut le: LogEntries| {
        if !le.more {
            let not_the_invite = SigningKey::generate();
            let mut admit = LogEntry::admit(&stranger, &not_the_invite, le.len, le.head, 1);
            if let EntryBody::Admit { invite_key: k, .. } = &mut admit.body {
                *k = invite_key;
            }
            le.head = admit.hash();
            le.entries.push(admit);
            le.len += 1;
        }
        le
    };
    let proxy = lying_proxy(broker.url.clone(), rewriting(forged_admit)).await;
    expect_refusal(
        claudemesh_client::MeshClient::connect(
            &alice.home,
            &point_at(&alice, &proxy).mesh,
            Default::default(),
        )
        .await,
        "forged admit",
    );

    // 3. A device catching up is served a log where bob's key is swapped
    //    for another: the entry's signature (and the chain) no longer hold.
    let swap_key = SigningKey::generate().public();
    let swap = move |mut le: LogEntries| {
        for e in &mut le.entries {
            if let EntryBody::Admit { member, .. } = &mut e.body {
                *member = swap_key;
                e.author = swap_key;
            }
        }
        le
    };
    let proxy = lying_proxy(broker.url.clone(), rewriting(swap)).await;
    let text = expect_refusal(
        {
            // Alice's device with its local log trimmed to the genesis, so it
            // fetches bob's admit through the proxy.
            let trimmed = home(broker.dir.path(), "alice-trimmed");
            copy_mesh(&alice, &trimmed, 1).await;
            claudemesh_client::MeshClient::connect(
                &trimmed,
                &point_at(&alice, &proxy).mesh,
                Default::default(),
            )
            .await
        },
        "swapped key",
    );
    assert!(text.contains("does not verify"), "{text}");

    // 4. History rewritten: the broker answers with a log shorter than what
    //    alice verified before (a rollback that drops bob).
    let rollback = |mut le: LogEntries| {
        le.len = 2;
        le.entries.clear();
        le
    };
    let proxy = lying_proxy(broker.url.clone(), rewriting(rollback)).await;
    let r = claudemesh_client::MeshClient::connect(
        &alice.home,
        &point_at(&alice, &proxy).mesh,
        Default::default(),
    )
    .await;
    assert!(matches!(r, Err(ClientError::LogFork(_))), "rollback: {r:?}");

    // The honest broker is still trusted, and nothing was lost.
    let a = alice.connect().await;
    assert_eq!(a.with_state(|s| s.roster().members().len()), 2);
    a.close().await;
    broker.stop().await;
}
both!(tm3_lying_broker_is_caught);

/// Makes a copy of `from`'s mesh in `to` with only the first `keep` log
/// entries stored locally.
async fn copy_mesh(from: &Peer, to: &claudemesh_client::Home, keep: usize) {
    let keys = from.home.load_keys(&from.mesh.id).unwrap();
    to.save_keys(&from.mesh.id, &keys).unwrap();
    let src = claudemesh_client::local::LocalStore::open(&from.home.state_db_path())
        .await
        .unwrap();
    let entries = src.log_entries(&from.mesh.id).await.unwrap();
    let dst = claudemesh_client::local::LocalStore::open(&to.state_db_path())
        .await
        .unwrap();
    dst.append_log(&from.mesh.id, &entries[..keep])
        .await
        .unwrap();
    let mut h = claudemesh_client::Home::open(to.root()).unwrap();
    h.add_mesh(from.mesh.clone()).unwrap();
}

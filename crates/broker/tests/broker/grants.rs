//! Grants (TM7) through real clients: a blocked sender is refused at the
//! broker (`refused: blocked by recipient`), a silent block is accepted and
//! never delivered, grants survive a broker restart, a forged grant set is
//! refused, fan-out skips recipients who revoked the capability, a refused
//! viewer sees the member offline, and the recipient's client re-checks
//! what the broker delivers anyway. Tasks, shared state and notes follow
//! their author's grants too (`task`, `state`, `memory`).

use claudemesh_broker::config::{BrokerConfig, sqlite_url};
use claudemesh_broker::server;
use claudemesh_client::ClientError;
use claudemesh_client::grants::{self, GrantChange};
use claudemesh_crypto::SigningKey;
use claudemesh_crypto::envelope::{Priority, Target};
use claudemesh_crypto::grants::{Cap, GrantMap, GrantSet};
use claudemesh_proto::ErrorCode;

use crate::both;
use crate::memory::texts;
use crate::support::*;
use crate::tasks::draft;

fn assert_blocked(r: Result<claudemesh_client::SendOutcome, ClientError>) {
    match r {
        Err(ClientError::Refused { code, message }) => {
            assert_eq!(code, ErrorCode::Refused);
            assert_eq!(message, "refused: blocked by recipient");
        }
        other => panic!("expected refused, got {other:?}"),
    }
}

async fn a_blocked_sender_is_refused_and_unblock_restores(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;

    let b = bob.connect().await;
    grants::change(&b, &bob.home, "alice", GrantChange::Block { silent: false })
        .await
        .unwrap();
    b.close().await;

    let a = alice.connect().await;
    let to_bob = a.resolve("bob").await.unwrap();
    assert_blocked(a.send(to_bob.clone(), b"hi", Priority::Next, None).await);

    let b = bob.connect().await;
    grants::change(&b, &bob.home, "alice", GrantChange::Unblock)
        .await
        .unwrap();
    b.close().await;
    a.send(to_bob, b"hi again", Priority::Next, None)
        .await
        .unwrap();
    a.close().await;
    assert_eq!(bob.read_inbox().await, vec!["hi again"]);
    broker.stop().await;
}
both!(a_blocked_sender_is_refused_and_unblock_restores);

async fn a_silent_block_is_accepted_and_never_delivered(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;

    let b = bob.connect().await;
    grants::change(&b, &bob.home, "alice", GrantChange::Block { silent: true })
        .await
        .unwrap();
    b.close().await;

    let a = alice.connect().await;
    let to_bob = a.resolve("bob").await.unwrap();
    let sent = a
        .send(to_bob, b"into the void", Priority::Next, None)
        .await
        .unwrap();
    let status = a.message_status(&sent.id).await.unwrap();
    assert!(status.recipients.is_empty(), "{:?}", status.recipients);
    a.close().await;
    assert!(bob.read_inbox().await.is_empty());
    broker.stop().await;
}
both!(a_silent_block_is_accepted_and_never_delivered);

async fn grants_survive_a_broker_restart(backend: Backend) {
    let mut broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let b = bob.connect().await;
    grants::change(&b, &bob.home, "alice", GrantChange::Block { silent: false })
        .await
        .unwrap();
    b.close().await;

    // Same address, same database, nothing in memory.
    let db_url = match &broker.db {
        Some(db) => db.url().to_owned(),
        None => sqlite_url(&broker.dir.path().join("broker.db")),
    };
    let addr = broker.running().local_addr;
    if let Some(running) = broker.broker.take() {
        running.shutdown().await;
    }
    let mut config = BrokerConfig::with_sqlite_file(&broker.dir.path().join("unused.db"));
    config.database_url = db_url;
    config.broker_id = "test-broker".into();
    config.listen = addr;
    broker.broker = Some(server::start(config).await.expect("broker restarts"));

    // Bob stays away: only the broker's stored copy can refuse this.
    let a = alice.connect().await;
    let to_bob = a.resolve("bob").await.unwrap();
    assert_blocked(a.send(to_bob, b"hi", Priority::Next, None).await);
    a.close().await;
    broker.stop().await;
}
both!(grants_survive_a_broker_restart);

async fn forged_grants_are_refused(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let a = alice.connect().await;
    let b = bob.connect().await;
    let alice_key = a.with_state(|s| s.member_key().public());
    let bob_key = b.with_state(|s| s.member_key().public());
    let mut map = GrantMap::new();
    map.insert(alice_key, (Default::default(), false));

    // Alice pushes a set claiming to be Bob's (she cannot sign as him).
    let mallory = SigningKey::generate();
    let mut forged = GrantSet::sign(&mallory, alice.mesh.id, 10, &map);
    forged.member = bob_key;
    match a.push_grants(&forged).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::Forbidden),
        other => panic!("expected forbidden, got {other:?}"),
    }
    // Her own set, with a broken signature.
    let a_key = a.with_state(|s| s.member_key().clone());
    let mut broken = GrantSet::sign(&a_key, alice.mesh.id, 10, &GrantMap::new());
    broken.sig.0[3] ^= 0x40;
    match a.push_grants(&broken).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::Malformed),
        other => panic!("expected malformed, got {other:?}"),
    }
    // Another mesh.
    let other_mesh = GrantSet::sign(
        &a_key,
        claudemesh_crypto::MeshId(claudemesh_crypto::Hash32([9; 32])),
        10,
        &GrantMap::new(),
    );
    match a.push_grants(&other_mesh).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::Malformed),
        other => panic!("expected malformed, got {other:?}"),
    }
    // Bob still hears from Alice.
    let to_bob = a.resolve("bob").await.unwrap();
    a.send(to_bob, b"still here", Priority::Next, None)
        .await
        .unwrap();
    // Versions: equal is idempotent, lower is refused.
    let b_key = b.with_state(|s| s.member_key().clone());
    let v20 = GrantSet::sign(&b_key, bob.mesh.id, 20, &GrantMap::new());
    assert_eq!(b.push_grants(&v20).await.unwrap(), 20);
    assert_eq!(b.push_grants(&v20).await.unwrap(), 20);
    let v19 = GrantSet::sign(&b_key, bob.mesh.id, 19, &map);
    assert!(matches!(
        b.push_grants(&v19).await,
        Err(ClientError::Refused {
            code: ErrorCode::Malformed,
            ..
        })
    ));
    a.close().await;
    b.close().await;
    broker.stop().await;
}
both!(forged_grants_are_refused);

async fn the_client_rechecks_what_the_broker_delivers(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;

    // Alice's message is queued while the broker knows no grants of Bob's.
    let a = alice.connect().await;
    let alice_key = a.with_state(|s| s.member_key().public());
    let to_bob = a.resolve("bob").await.unwrap();
    a.send(
        to_bob.clone(),
        b"queued before the block",
        Priority::Next,
        None,
    )
    .await
    .unwrap();

    // Bob blocks her on his device only (not pushed: the broker still
    // holds no grants of his and delivers everything).
    let b = bob.connect().await;
    b.settle().await.unwrap();
    b.local().take_rejections(&bob.mesh.id).await.unwrap();
    let inbox = b.local().inbox(&bob.mesh.id, true, 10).await.unwrap();
    assert_eq!(inbox.len(), 1, "delivered before the block");
    b.mark_read(&inbox).await.unwrap();
    b.with_state(|s| {
        grants::change_local(
            &bob.home,
            s,
            alice_key,
            &GrantChange::Block { silent: false },
        )
    })
    .unwrap();
    a.send(to_bob, b"after the block", Priority::Next, None)
        .await
        .unwrap();
    // Broadcast too (the broker's copy allows it, Bob's does not).
    a.send(Target::Broadcast, b"to everyone", Priority::Next, None)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut rejected = Vec::new();
    while rejected.len() < 2 && std::time::Instant::now() < deadline {
        b.settle().await.unwrap();
        rejected.extend(b.local().take_rejections(&bob.mesh.id).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    for r in &rejected {
        assert_eq!(r.reason, "blocked by your grants");
        assert_eq!(r.sender.as_deref(), Some(alice_key.to_hex().as_str()));
    }
    assert!(
        b.local()
            .inbox(&bob.mesh.id, true, 10)
            .await
            .unwrap()
            .is_empty()
    );
    b.close().await;
    // Acked: not delivered again.
    assert!(bob.read_inbox().await.is_empty());
    a.close().await;
    broker.stop().await;
}
both!(the_client_rechecks_what_the_broker_delivers);

async fn fanout_skips_recipients_who_revoked_it(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;

    let b = bob.connect().await;
    grants::change(
        &b,
        &bob.home,
        "alice",
        GrantChange::Revoke(vec![Cap::Broadcast]),
    )
    .await
    .unwrap();
    // Bob online (live path) ...
    let a = alice.connect().await;
    a.send(Target::Broadcast, b"live to all", Priority::Now, None)
        .await
        .unwrap();
    b.close().await;
    // ... and offline (drain path).
    a.send(Target::Broadcast, b"queued to all", Priority::Next, None)
        .await
        .unwrap();
    // Direct messages still pass.
    let to_bob = a.resolve("bob").await.unwrap();
    a.send(to_bob, b"just you", Priority::Next, None)
        .await
        .unwrap();
    a.close().await;

    let mut got = carol.read_inbox().await;
    got.sort();
    assert_eq!(got, vec!["live to all", "queued to all"]);
    assert_eq!(bob.read_inbox().await, vec!["just you"]);
    broker.stop().await;
}
both!(fanout_skips_recipients_who_revoked_it);

async fn a_refused_viewer_sees_the_member_offline(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;

    let b = bob.connect().await;
    grants::change(
        &b,
        &bob.home,
        "alice",
        GrantChange::Revoke(vec![Cap::Presence]),
    )
    .await
    .unwrap();
    let a = alice.connect().await;
    let c = carol.connect().await;
    let seen_by = |peers: Vec<claudemesh_client::mesh::PeerView>| {
        peers
            .into_iter()
            .find(|p| p.name == "bob")
            .expect("bob is listed")
    };
    let to_alice = seen_by(a.peers().await.unwrap());
    assert!(!to_alice.online, "alice may not see bob online");
    assert!(to_alice.sessions.is_empty());
    assert!(to_alice.summary.is_none());
    let to_carol = seen_by(c.peers().await.unwrap());
    assert!(to_carol.online, "carol still sees bob");
    a.close().await;
    b.close().await;
    c.close().await;
    broker.stop().await;
}
both!(a_refused_viewer_sees_the_member_offline);

async fn task_titles(c: &claudemesh_client::MeshClient) -> Vec<String> {
    let all = claudemesh_client::tasks::TaskFilter {
        status: vec![
            claudemesh_proto::frames::TaskPhase::Open,
            claudemesh_proto::frames::TaskPhase::Claimed,
            claudemesh_proto::frames::TaskPhase::Done,
        ],
        ..Default::default()
    };
    let mut t: Vec<String> = c
        .task_list(&all)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.title)
        .collect();
    t.sort();
    t
}

/// Issue 17 item 7: a member whose grants refuse a peer `task`, `state`
/// or `memory` keeps its tasks, state entries and notes from that peer
/// (the feed withholds them), and the peer cannot claim or complete its
/// tasks, only give back one it holds; the creator's own list flags a task
/// held by a peer it refuses. Another member sees everything; unblocking
/// lets what is written next through.
async fn coordination_follows_the_authors_grants(backend: Backend) {
    use serde_json::json;
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;
    let (a, b, c) = (
        alice.connect().await,
        bob.connect().await,
        carol.connect().await,
    );
    let before = a
        .task_create(draft("write the release notes"))
        .await
        .unwrap();
    let held = a
        .task_create(draft("rotate the staging keys"))
        .await
        .unwrap();
    a.state_set("deploy/lock", json!("alice"), Some(0))
        .await
        .unwrap();
    a.memory_remember("the staging database listens on port 5433", &[])
        .await
        .unwrap();
    b.task_claim(&held.id.to_hex()).await.unwrap();
    assert_eq!(
        b.state_get("deploy/lock").await.unwrap().map(|e| e.value),
        Some(json!("alice"))
    );

    grants::change(&a, &alice.home, "bob", GrantChange::Block { silent: false })
        .await
        .unwrap();
    // The creator's device flags its task held by a peer it now refuses.
    let flagged = a.task_show(&held.id.to_hex()).await.unwrap();
    assert!(flagged.holder_refused, "{flagged:?}");
    assert!(
        !a.task_show(&before.id.to_hex())
            .await
            .unwrap()
            .holder_refused
    );

    let after = a.task_create(draft("ship 1.4.3")).await.unwrap();
    a.state_set("deploy/lock", json!("alice again"), Some(1))
        .await
        .unwrap();
    a.memory_remember("the staging cache listens on port 6380", &[])
        .await
        .unwrap();

    // Bob: nothing new from Alice, and her work is not his to take.
    assert_eq!(b.state_get("deploy/lock").await.unwrap(), None);
    assert!(texts(&b, "cache").await.is_empty());
    assert!(!task_titles(&b).await.contains(&"ship 1.4.3".to_owned()));
    for attempt in [
        b.task_claim(&before.id.to_hex()).await,
        b.task_complete(&held.id.to_hex(), None, false).await,
    ] {
        match attempt {
            Err(ClientError::NotAllowed(m)) => assert!(m.contains("grants"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // Carol is not refused anything: she sees all of it.
    assert_eq!(
        c.state_get("deploy/lock").await.unwrap().map(|e| e.value),
        Some(json!("alice again"))
    );
    assert_eq!(texts(&c, "cache").await.len(), 1);
    assert_eq!(
        task_titles(&c).await,
        vec![
            "rotate the staging keys",
            "ship 1.4.3",
            "write the release notes"
        ]
    );
    c.task_claim(&after.id.to_hex()).await.unwrap();

    // Taking back only `state` lets state through, still not tasks.
    grants::change(&a, &alice.home, "bob", GrantChange::Grant(vec![Cap::State]))
        .await
        .unwrap();
    a.state_set("deploy/lock", json!("free"), Some(2))
        .await
        .unwrap();
    assert_eq!(
        b.state_get("deploy/lock").await.unwrap().map(|e| e.value),
        Some(json!("free"))
    );
    // The grants moved, so Bob's device synced tasks from the start: the
    // ones withheld from him now are gone from his copy too, but for the
    // one he holds, which stays his to give back.
    let gone = b.task_claim(&before.id.to_hex()).await;
    assert!(matches!(gone, Err(ClientError::NotFound(_))), "{gone:?}");
    assert_eq!(task_titles(&b).await, vec!["rotate the staging keys"]);
    let given_back = b.task_release(&held.id.to_hex(), false).await.unwrap();
    assert_eq!(given_back.status, claudemesh_proto::frames::TaskPhase::Open);
    assert_eq!(task_titles(&b).await, Vec::<String>::new());

    grants::change(&a, &alice.home, "bob", GrantChange::Unblock)
        .await
        .unwrap();
    // What was withheld comes back with the next sync (the grants moved,
    // so Bob's device syncs again from the start).
    assert_eq!(texts(&b, "cache").await.len(), 1);
    assert!(task_titles(&b).await.contains(&"ship 1.4.3".to_owned()));
    b.task_claim(&before.id.to_hex()).await.unwrap();
    for client in [a, b, c] {
        client.close().await;
    }
    broker.stop().await;
}
both!(coordination_follows_the_authors_grants);

/// A member refused `state` and `task` cannot read what the feed
/// withholds through the answers to writes that lose: a `state_set` at a
/// wrong version is told the version only, and any act on a task of a
/// creator that refuses it, a release at a stale version included, is
/// refused without saying where the task stands.
async fn lost_writes_do_not_hand_over_what_grants_withhold(backend: Backend) {
    use claudemesh_client::client::now_ms;
    use claudemesh_crypto::coord::{CoordFacts, CoordKind, CoordObject, coord_key, state_id};
    use claudemesh_proto::frames::{StateSet, TaskActFrame};
    use claudemesh_proto::{BrokerFrame, ClientFrame};
    use serde_json::json;

    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let a = alice.connect().await;
    a.state_set("deploy/lock", json!("held by alice"), Some(0))
        .await
        .unwrap();
    let task = a.task_create(draft("rotate the keys")).await.unwrap();
    a.task_complete(&task.id.to_hex(), Some("rotated: see vault"), false)
        .await
        .unwrap();
    grants::change(&a, &alice.home, "bob", GrantChange::Block { silent: false })
        .await
        .unwrap();
    a.close().await;

    let keys = bob.home.load_keys(&bob.mesh.id).unwrap();
    let me = keys.sessions.get("cli").unwrap().clone();
    let (epoch, root) = keys.roots.iter().next_back().unwrap();
    let key = coord_key(root, &bob.mesh.id);
    let seal = |kind, id, rev| {
        CoordObject::seal(
            &me,
            &key,
            *epoch,
            CoordFacts {
                kind,
                id,
                rev,
                at_ms: now_ms(),
            },
            b"{}",
        )
        .unwrap()
    };
    let mut raw = Raw::open(&broker.url).await;
    crate::messaging::hello_raw(&mut raw, &bob).await;

    // A state write at version 1 loses (the key is at 1): the answer says
    // so, with no entry to open.
    let id = state_id(&key, &bob.mesh.id, "deploy/lock");
    raw.send(&ClientFrame::StateSet(StateSet {
        req: None,
        object: Box::new(seal(CoordKind::State, id, 1)),
    }))
    .await;
    match next_answer(&mut raw).await {
        BrokerFrame::StateAnswer(a) => {
            assert!(!a.ok, "{a:?}");
            assert_eq!(a.version, 1, "{a:?}");
            assert!(a.current.is_none(), "the withheld entry leaked: {a:?}");
        }
        other => panic!("expected state_answer, got {other:?}"),
    }
    // A release at a stale version of alice's done task: refused, not
    // answered with the task's last act (its result).
    raw.send(&ClientFrame::TaskAct(TaskActFrame {
        req: None,
        act: Box::new(seal(CoordKind::TaskRelease, task.id, 9)),
        force: false,
    }))
    .await;
    match next_answer(&mut raw).await {
        BrokerFrame::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden, "{e:?}"),
        other => panic!("expected forbidden, got {other:?}"),
    }
    broker.stop().await;
}
both!(lost_writes_do_not_hand_over_what_grants_withhold);

/// The next frame that is not presence, log or coordination chatter.
async fn next_answer(raw: &mut Raw) -> claudemesh_proto::BrokerFrame {
    use claudemesh_proto::BrokerFrame;
    loop {
        match raw.recv().await.unwrap() {
            BrokerFrame::Presence(_) | BrokerFrame::LogUpdate(_) | BrokerFrame::CoordChanged(_) => {
                continue;
            }
            other => return other,
        }
    }
}

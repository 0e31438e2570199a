//! Direct messages as users send them: to an offline member (queued, read
//! later), to an online one (pushed), resent (stored once), to every session
//! of a member or to one session, with delivery status.

use claudemesh_client::{ConnectOptions, SessionChoice};
use claudemesh_crypto::envelope::{Priority, Target};
use claudemesh_proto::frames::Status;

use crate::both;
use crate::support::*;

async fn offline_then_online(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;

    // Bob is offline: the message is queued.
    let a = alice.connect().await;
    let to_bob = a.resolve("bob").await.unwrap();
    let sent = a
        .send(to_bob.clone(), b"while you were away", Priority::Next, None)
        .await
        .unwrap();
    assert!(!sent.duplicate);
    let status = a.message_status(&sent.id).await.unwrap();
    assert_eq!(status.recipients.len(), 1);
    assert_eq!(status.recipients[0].state, "queued");
    assert_eq!(status.recipients[0].name, "bob");

    // Bob comes back and reads it, exactly once.
    assert_eq!(bob.read_inbox().await, vec!["while you were away"]);
    assert!(bob.read_inbox().await.is_empty(), "read once, not again");
    let status = a.message_status(&sent.id).await.unwrap();
    assert_eq!(status.recipients[0].state, "shown");
    assert_eq!(
        status.recipients[0].proven,
        Some(claudemesh_crypto::receipt::ReceiptState::Shown),
        "signed by Bob: {:?}",
        status.recipients[0].proofs
    );

    // Bob online: a message is pushed to him live.
    let b = bob.connect().await;
    let mut events = b.events();
    a.send(to_bob, b"live now", Priority::Now, None)
        .await
        .unwrap();
    let m = next_message(&mut events).await;
    assert_eq!(m.body, "live now");
    assert_eq!(m.priority, "now");
    assert_eq!(m.from, a.with_state(|s| s.member_key().public().to_hex()));

    // And back: bob answers alice with a reply-to.
    let to_alice = b.resolve("alice").await.unwrap();
    let reply = b
        .send(to_alice, b"got it", Priority::Next, Some(sent.id))
        .await
        .unwrap();
    b.close().await;
    a.close().await;
    let c = alice.connect().await;
    c.settle().await.unwrap();
    let inbox = c.local().inbox(&alice.mesh.id, true, 10).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].body, "got it");
    assert_eq!(inbox[0].id, reply.id.to_hex());
    assert_eq!(
        inbox[0].reply_to.as_deref(),
        Some(sent.id.to_hex().as_str())
    );
    c.close().await;
    broker.stop().await;
}
both!(offline_then_online);

async fn resends_are_stored_once(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let a = alice.connect().await;
    let to_bob = a.resolve("bob").await.unwrap();
    let env = a.with_state(|s| {
        s.seal(
            to_bob,
            b"only once",
            Priority::Next,
            None,
            claudemesh_client::client::now_ms(),
        )
        .unwrap()
    });
    a.close().await;
    // The same envelope sent on three connections (as a client resending
    // after lost acks would): one stored copy, the others are duplicates.
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let mut raw = Raw::open(&broker.url).await;
        hello_raw(&mut raw, &alice).await;
        raw.send(&claudemesh_proto::ClientFrame::Send(
            claudemesh_proto::frames::Send {
                req: Some("s".into()),
                envelope: Box::new(env.clone()),
                ttl_ms: None,
                deliver_at_ms: None,
            },
        ))
        .await;
        loop {
            match raw.recv().await.unwrap() {
                claudemesh_proto::BrokerFrame::Accepted(acc) => {
                    seqs.push((acc.seq, acc.duplicate));
                    break;
                }
                _ => continue,
            }
        }
    }
    assert!(!seqs[0].1);
    assert!(seqs[1..].iter().all(|(s, dup)| *dup && *s == seqs[0].0));
    assert_eq!(bob.read_inbox().await, vec!["only once"]);
    broker.stop().await;
}
both!(resends_are_stored_once);

/// Says hello on a raw connection as `peer`'s stored CLI session.
pub async fn hello_raw(raw: &mut Raw, peer: &Peer) {
    let keys = peer.home.load_keys(&peer.mesh.id).unwrap();
    let session = keys.sessions.get("cli").expect("cli session").clone();
    let hello = claudemesh_proto::hello::Hello::sign(
        &session,
        &raw.challenge.nonce.0,
        1,
        None,
        Default::default(),
        "test",
    );
    raw.send(&claudemesh_proto::ClientFrame::Hello(Box::new(hello)))
        .await;
    match raw.recv().await.unwrap() {
        claudemesh_proto::BrokerFrame::Welcome(_) => {}
        other => panic!("expected welcome, got {other:?}"),
    }
}

async fn member_and_session_targets(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let named = |n: &str| ConnectOptions {
        session: SessionChoice::Named(n.into()),
        profile: claudemesh_client::mesh::SessionProfile {
            name: Some(n.into()),
            ..Default::default()
        },
        ..ConnectOptions::default()
    };
    let b1 = bob.connect_with(named("bob@editor")).await;
    let b2 = bob.connect_with(named("bob@tests")).await;
    let (mut e1, mut e2) = (b1.events(), b2.events());
    let a = alice.connect().await;

    // To the member: every session of bob gets it.
    let to_bob = a.resolve("bob").await.unwrap();
    a.send(to_bob, b"to all of bob", Priority::Next, None)
        .await
        .unwrap();
    assert_eq!(next_message(&mut e1).await.body, "to all of bob");
    assert_eq!(next_message(&mut e2).await.body, "to all of bob");

    // To one session, by its (encrypted) session name `<member>@<name>`:
    // only that one.
    let to_tests = a.resolve("bob@tests").await.unwrap();
    assert!(matches!(to_tests, Target::Session(_)));
    a.send(to_tests, b"just the tests", Priority::Next, None)
        .await
        .unwrap();
    assert_eq!(next_message(&mut e2).await.body, "just the tests");
    // b1 sees nothing more: a ping round trip later its stream is quiet.
    b1.ping().await.unwrap();
    while let Ok(e) = e1.try_recv() {
        assert!(
            !matches!(e, claudemesh_client::Event::Message(_)),
            "a session-addressed message reached another session"
        );
    }

    // Peer list: bob online with both named sessions.
    let peers = a.peers().await.unwrap();
    let bob_view = peers.iter().find(|p| p.name == "bob").unwrap();
    assert!(bob_view.online);
    let mut names: Vec<_> = bob_view
        .sessions
        .iter()
        .filter_map(|s| s.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, vec!["bob@editor", "bob@tests"]);
    b1.close().await;
    b2.close().await;
    a.close().await;
    broker.stop().await;
}
both!(member_and_session_targets);

async fn busy_sessions_get_urgent_messages_only(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let b = bob
        .connect_with(ConnectOptions {
            status: Status::Working,
            ..ConnectOptions::default()
        })
        .await;
    let mut events = b.events();
    let a = alice.connect().await;
    let to_bob = a.resolve("bob").await.unwrap();
    a.send(to_bob.clone(), b"later", Priority::Low, None)
        .await
        .unwrap();
    a.send(to_bob, b"urgent", Priority::Now, None)
        .await
        .unwrap();
    // While working, only the urgent one is pushed.
    assert_eq!(next_message(&mut events).await.body, "urgent");
    // Going idle releases what was held.
    b.set_presence(Some(Status::Idle), None).await.unwrap();
    assert_eq!(next_message(&mut events).await.body, "later");
    b.close().await;
    a.close().await;
    broker.stop().await;
}
both!(busy_sessions_get_urgent_messages_only);

async fn presence_and_summary(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let b = bob.connect().await;
    b.set_presence(Some(Status::Dnd), Some("deep in the parser".into()))
        .await
        .unwrap();
    let a = alice.connect().await;
    let peers = a.peers().await.unwrap();
    let v = peers.iter().find(|p| p.name == "bob").unwrap();
    assert!(v.online);
    assert_eq!(v.status, Status::Dnd);
    assert_eq!(v.summary.as_deref(), Some("deep in the parser"));
    b.close().await;
    // Offline: the last state is kept, with when it was last seen.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let peers = a.peers().await.unwrap();
    let v = peers.iter().find(|p| p.name == "bob").unwrap();
    assert!(!v.online);
    assert!(v.last_seen_ms.is_some());
    assert_eq!(v.summary.as_deref(), Some("deep in the parser"));
    a.close().await;
    broker.stop().await;
}
both!(presence_and_summary);

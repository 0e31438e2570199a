//! Messages held for later (`send.deliver_at_ms`): held, listed, never
//! delivered before their time, delivered at it to online and offline
//! recipients (directly and through a topic), fired once across two
//! replicas, and a cancel before the time wins.

use std::time::{Duration, Instant};

use claudemesh_client::client::now_ms;
use claudemesh_client::topics;
use claudemesh_client::{Event, MeshClient};
use claudemesh_crypto::envelope::{Envelope, Priority, Target};
use claudemesh_proto::frames::{MessageStatusQuery, ScheduleCancel, ScheduleListQuery, Send};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};

use crate::both;
use crate::messaging::hello_raw;
use crate::support::*;

/// How far ahead the tests schedule: long enough to look before it.
const AHEAD_MS: u64 = 4000;

fn seal(c: &MeshClient, to: Target, body: &[u8]) -> Envelope {
    c.with_state(|s| s.seal(to, body, Priority::Next, None, now_ms()).unwrap())
}

fn send(env: &Envelope, deliver_at_ms: u64) -> ClientFrame {
    ClientFrame::Send(Send {
        req: Some(env.id.to_hex()),
        envelope: Box::new(env.clone()),
        ttl_ms: None,
        deliver_at_ms: Some(deliver_at_ms),
    })
}

/// The next frame that is not presence or log chatter.
async fn answer(raw: &mut Raw) -> BrokerFrame {
    loop {
        match raw.recv().await.unwrap() {
            BrokerFrame::Presence(_) | BrokerFrame::LogUpdate(_) | BrokerFrame::CoordChanged(_) => {
                continue;
            }
            other => return other,
        }
    }
}

async fn held_ids(raw: &mut Raw) -> Vec<(String, String)> {
    raw.send(&ClientFrame::ScheduleList(ScheduleListQuery { req: None }))
        .await;
    match answer(raw).await {
        BrokerFrame::SchedulePage(p) => p
            .messages
            .into_iter()
            .map(|m| (m.id.to_hex(), m.state))
            .collect(),
        other => panic!("expected a schedule page, got {other:?}"),
    }
}

async fn held_message_waits_for_its_time(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;
    let a = alice.connect().await;
    topics::topic_create(&a, "ops", false, "").await.unwrap();
    let b = bob.connect().await;
    topics::topic_join(&b, "ops").await.unwrap();
    let mut bob_events = b.events();

    let to_bob = a.resolve("bob").await.unwrap();
    let to_carol = a.resolve("carol").await.unwrap();
    let a = {
        // A fresh client sees bob's topic join.
        a.close().await;
        alice.connect().await
    };
    let direct = seal(&a, to_bob.clone(), b"at three");
    let offline = seal(&a, to_carol, b"for later, carol");
    let topic = seal(&a, Target::Topic("ops".into()), b"ops at three");
    let cancelled = seal(&a, to_bob, b"never");
    a.close().await;

    let mut raw = Raw::open(&broker.url).await;
    hello_raw(&mut raw, &alice).await;
    let at = now_ms() + AHEAD_MS;
    for env in [&direct, &offline, &topic, &cancelled] {
        raw.send(&send(env, at)).await;
        match answer(&mut raw).await {
            BrokerFrame::Scheduled(s) => {
                assert_eq!((s.id, s.deliver_at_ms, s.duplicate), (env.id, at, false));
            }
            other => panic!("expected scheduled, got {other:?}"),
        }
    }
    // A resend (a lost answer) keeps the first hold.
    raw.send(&send(&direct, at + 60_000)).await;
    match answer(&mut raw).await {
        BrokerFrame::Scheduled(s) => assert_eq!((s.deliver_at_ms, s.duplicate), (at, true)),
        other => panic!("expected scheduled, got {other:?}"),
    }
    let mut listed = held_ids(&mut raw).await;
    listed.sort();
    let mut want: Vec<(String, String)> = [&direct, &offline, &topic, &cancelled]
        .iter()
        .map(|e| (e.id.to_hex(), "held".to_owned()))
        .collect();
    want.sort();
    assert_eq!(listed, want);
    // Its status says it is not sent yet.
    raw.send(&ClientFrame::MessageStatus(MessageStatusQuery {
        req: None,
        id: direct.id,
        after: None,
    }))
    .await;
    match answer(&mut raw).await {
        BrokerFrame::Error(e) => {
            assert_eq!(e.code, ErrorCode::NotFound);
            assert!(e.message.contains("scheduled"), "{}", e.message);
        }
        other => panic!("expected not_found, got {other:?}"),
    }
    raw.send(&ClientFrame::ScheduleCancel(ScheduleCancel {
        req: None,
        id: cancelled.id,
    }))
    .await;
    assert!(matches!(
        answer(&mut raw).await,
        BrokerFrame::ScheduleCancelled(c) if c.id == cancelled.id
    ));

    // Bob, online, gets the direct message and the topic post at their
    // time, never before.
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = next_message(&mut bob_events).await;
        assert!(now_ms() >= at, "delivered {} ms early", at - now_ms());
        got.push(m.body.clone());
    }
    got.sort();
    assert_eq!(got, vec!["at three", "ops at three"]);
    // Held rows are gone once stored; the cancelled one never arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !held_ids(&mut raw).await.is_empty() {
        assert!(Instant::now() < deadline, "held messages never fired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let inbox: Vec<String> = b
        .local()
        .inbox(&bob.mesh.id, false, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    assert!(!inbox.contains(&"never".to_owned()));
    // Carol, offline at its time, gets it when she connects.
    assert_eq!(carol.read_inbox().await, vec!["for later, carol"]);
    // After its time, a resend is a duplicate of the stored message, and a
    // cancel comes too late.
    raw.send(&send(&direct, at)).await;
    assert!(matches!(
        answer(&mut raw).await,
        BrokerFrame::Accepted(acc) if acc.duplicate && acc.id == direct.id
    ));
    raw.send(&ClientFrame::ScheduleCancel(ScheduleCancel {
        req: None,
        id: direct.id,
    }))
    .await;
    match answer(&mut raw).await {
        BrokerFrame::Error(e) => {
            assert_eq!(e.code, ErrorCode::NotFound);
            assert!(e.message.contains("already sent"), "{}", e.message);
        }
        other => panic!("expected not_found, got {other:?}"),
    }
    b.close().await;
    broker.stop().await;
}
both!(held_message_waits_for_its_time);

/// Two replicas on one Postgres both sweep the held message: it is held
/// through one and delivered, once, to a recipient connected to the other.
/// (That two firings store it once is the store's conformance test
/// `held_messages_fire_once_…`, two transactions racing for the row.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_message_fires_across_replicas() {
    let (ra, rb) = start_replicas().await;
    let alice = owner(&ra, "alice").await;
    let mut bob = joiner(&ra, &alice, "bob").await;
    bob.mesh.broker_url = rb.url.clone();
    let b = bob.connect().await;
    let mut bob_events = b.events();
    let a = alice.connect().await;
    let to_bob = a.resolve("bob").await.unwrap();
    let env = seal(&a, to_bob, b"once, from either");
    a.close().await;

    let mut raw = Raw::open(&ra.url).await;
    hello_raw(&mut raw, &alice).await;
    let at = now_ms() + AHEAD_MS;
    raw.send(&send(&env, at)).await;
    assert!(matches!(answer(&mut raw).await, BrokerFrame::Scheduled(_)));
    let m = next_message(&mut bob_events).await;
    assert!(now_ms() >= at);
    assert_eq!(m.body, "once, from either");
    // Both sweepers have seen it due by now; one stored it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let inbox = b.local().inbox(&bob.mesh.id, false, 10).await.unwrap();
    assert_eq!(inbox.len(), 1);
    // Stored (once: the id is unique per sender), no longer held.
    let store = ra.running().store();
    let sender = alice
        .home
        .load_keys(&alice.mesh.id)
        .unwrap()
        .member
        .public();
    assert!(
        store
            .message_status(&alice.mesh.id, &sender, &env.id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.due_held(u64::MAX / 2, 10).await.unwrap().is_empty());
    b.close().await;
    rb.stop().await;
    ra.stop().await;
}

/// TM5 for held messages: a broadcast sealed under epoch N and held for
/// later is not sent after a ban moved the mesh to epoch N+1 (the banned
/// member holds N's key): it is kept failed, with why, for its sender, and
/// reaches no one; the sender's `message status` and `schedule_list` say so.
async fn a_held_broadcast_fails_once_a_ban_rotates_its_key(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let _mallory = joiner(&broker, &alice, "mallory").await;
    let a = alice.connect().await;
    let b = bob.connect().await;
    let mut bob_events = b.events();
    // An hour ahead, so the broker's own sweep leaves it alone; the test
    // fires it by calling the sweep with a clock an hour on.
    const HOUR: u64 = 3_600_000;
    let later = || {
        claudemesh_client::SendOptions::new(Priority::Next, None)
            .deliver_at_ms(Some(a.broker_now_ms() + HOUR))
    };
    let state = broker.running().state.clone();
    let fire = || {
        let state = state.clone();
        async move {
            let mut in_flight = claudemesh_broker::scheduled::InFlight::new();
            claudemesh_broker::scheduled::fire_due(&state, now_ms() + 2 * HOUR, &mut in_flight)
                .await
        }
    };
    let id = claudemesh_crypto::envelope::MessageId::random();
    let held = a
        .send_with(id, Target::Broadcast, b"to all, later", later())
        .await
        .unwrap();
    assert!(held.scheduled_for_ms.is_some(), "{held:?}");
    claudemesh_client::moderation::remove(&a, "mallory", claudemesh_crypto::log::RemoveKind::Ban)
        .await
        .unwrap();

    // Its time comes: failed, with why, and delivered to no one.
    assert_eq!(fire().await, 0, "nothing handed to the writer");
    let list = a.schedule_list().await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0].id, list[0].state.as_str()), (id, "failed"));
    let why = list[0].error.clone().unwrap_or_default();
    assert!(why.contains("send it again"), "{why}");
    let status = a.message_status(&id).await.unwrap();
    assert_eq!(status.state, "failed", "{status:?}");
    // The sender's device keeps what it learned.
    let mesh = alice.mesh.id;
    let entry = a.local().outbox_get(&mesh, &id).await.unwrap().unwrap();
    assert_eq!(entry.state, "failed", "{entry:?}");
    // Fired again: a failed message stays failed.
    assert_eq!(fire().await, 0);
    // Sent again with the same id, sealed under the current key: held anew,
    // and it goes.
    let again = a
        .send_with(id, Target::Broadcast, b"to all, later", later())
        .await
        .unwrap();
    assert!(
        again.scheduled_for_ms.is_some() && !again.duplicate,
        "{again:?}"
    );
    assert_eq!(fire().await, 1);
    let m = next_message(&mut bob_events).await;
    assert_eq!(m.body, "to all, later");
    // Only that one came: nothing of the failed round arrived before it.
    let more = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Some(Event::Message(m)) = MeshClient::next_event(&mut bob_events).await {
                return m;
            }
        }
    })
    .await;
    assert!(more.is_err(), "bob got {:?}", more.map(|m| m.body.clone()));
    // One cancelled from another device (here: at the store) reads
    // cancelled on this one once it asks.
    let other = claudemesh_crypto::envelope::MessageId::random();
    a.send_with(other, Target::Broadcast, b"never", later())
        .await
        .unwrap();
    let sender = alice.home.load_keys(&mesh).unwrap().member.public();
    broker
        .running()
        .store()
        .cancel_held(&mesh, &sender, &other)
        .await
        .unwrap();
    let status = a.message_status(&other).await.unwrap();
    assert_eq!(status.state, "cancelled", "{status:?}");
    a.close().await;
    b.close().await;
    broker.stop().await;
}
both!(a_held_broadcast_fails_once_a_ban_rotates_its_key);

//! Delivery evidence at the protocol level (issue 15, `docs/security.md`
//! §8.1): fan-out messages are numbered per target; a member's signed
//! watermark stops the redelivery of exactly what it covers (a listed gap
//! is delivered again) without a row per (recipient, message); receipts and
//! watermarks are bound to the connection that sends them; a TTL expires
//! what was not shown.

use claudemesh_client::MeshClient;
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::envelope::{MessageId, Priority, Target};
use claudemesh_crypto::log::{EntryBody, topic_create_body};
use claudemesh_crypto::receipt::{
    Receipt, ReceiptFacts, ReceiptState, Via, Watermark, WatermarkFacts,
};
use claudemesh_proto::frames::{ReceiptFrame, Request, SeqReceipt, WatermarkFrame};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};

use crate::both;
use crate::fanout::append;
use crate::messaging::hello_raw;
use crate::support::*;

fn now_ms() -> u64 {
    claudemesh_client::client::now_ms()
}

/// Alice (owner) opens `#deploys`; Bob joins it.
async fn topic_with_bob(broker: &TestBroker) -> (Peer, Peer, MeshClient) {
    let alice = owner(broker, "alice").await;
    let bob = joiner(broker, &alice, "bob").await;
    let a = alice.connect().await;
    append(&a, |s| {
        topic_create_body("deploys", false, "", &s.member_key().public(), &s.mesh_id())
            .unwrap()
            .0
    })
    .await;
    let b = bob.connect().await;
    append(&b, |s| EntryBody::TopicJoin {
        topic: "deploys".into(),
        member: s.member_key().public(),
        sealed: Vec::new(),
    })
    .await;
    b.close().await;
    a.sync_log().await.unwrap();
    (alice, bob, a)
}

/// Bob's stored CLI session (the one `hello_raw` says hello with).
fn cli_session(peer: &Peer) -> SessionIdentity {
    let keys = peer.home.load_keys(&peer.mesh.id).unwrap();
    keys.sessions.get("cli").expect("cli session").clone()
}

/// Every `deliver` up to the `pong` of a ping sent after the hello (the
/// first drain runs before the next frame is read): (seq, tseq).
async fn backlog(raw: &mut Raw) -> Vec<(u64, Option<u64>)> {
    raw.send(&ClientFrame::Ping(Request {
        req: Some("end".into()),
    }))
    .await;
    let mut out = Vec::new();
    loop {
        match raw.recv().await.expect("frames") {
            BrokerFrame::Deliver(d) => out.push((d.seq, d.tseq)),
            BrokerFrame::Pong(_) => return out,
            _ => continue,
        }
    }
}

fn mark(me: &SessionIdentity, upto: u64, missing: Vec<u64>) -> Watermark {
    Watermark::sign(
        me,
        WatermarkFacts {
            state: ReceiptState::Delivered,
            target: Target::Topic("deploys".into()),
            from: 0,
            upto,
            missing,
            at_ms: now_ms(),
            via: Via::Store,
        },
    )
    .unwrap()
}

async fn watermarks_skip_exactly_what_they_cover(backend: Backend) {
    let broker = start(backend).await;
    let (_alice, bob, a) = topic_with_bob(&broker).await;
    for i in 0..3 {
        a.send(
            Target::Topic("deploys".into()),
            format!("post {i}").as_bytes(),
            Priority::Next,
            None,
        )
        .await
        .unwrap();
    }
    let me = cli_session(&bob);
    let mut raw = Raw::open(&broker.url).await;
    hello_raw(&mut raw, &bob).await;
    let first = backlog(&mut raw).await;
    assert_eq!(
        first.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
        vec![Some(1), Some(2), Some(3)],
        "numbered 1, 2, 3 within the topic"
    );
    // Bob claims 1 and 3 only: 2 is listed missing.
    raw.send(&ClientFrame::Watermark(WatermarkFrame {
        marks: vec![mark(&me, 3, vec![2])],
    }))
    .await;
    let _ = backlog(&mut raw).await;
    drop(raw);
    let mut raw = Raw::open(&broker.url).await;
    hello_raw(&mut raw, &bob).await;
    let again = backlog(&mut raw).await;
    assert_eq!(
        again.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
        vec![Some(2)],
        "only the gap is delivered again"
    );
    raw.send(&ClientFrame::Watermark(WatermarkFrame {
        marks: vec![mark(&me, 3, vec![])],
    }))
    .await;
    let _ = backlog(&mut raw).await;
    drop(raw);
    let mut raw = Raw::open(&broker.url).await;
    hello_raw(&mut raw, &bob).await;
    assert!(backlog(&mut raw).await.is_empty(), "all covered");
    drop(raw);
    // Kept as one row per (member, target, state) once flushed, and not one
    // row per (recipient, message).
    tokio::time::sleep(
        claudemesh_broker::watermarks::flush_every(broker.running().store().backend())
            + std::time::Duration::from_millis(700),
    )
    .await;
    let dump = broker.running().store().dump().await.unwrap();
    let rows = |name: &str| dump.iter().find(|t| t.table == name).unwrap().rows.len();
    assert_eq!(rows("watermarks"), 1);
    assert_eq!(rows("fanout_receipts"), 0);
    a.close().await;
    broker.stop().await;
}
both!(watermarks_skip_exactly_what_they_cover);

async fn evidence_is_bound_to_its_connection(backend: Backend) {
    let broker = start(backend).await;
    let (alice, bob, a) = topic_with_bob(&broker).await;
    let to_bob = Target::Member(claudemesh_crypto::MemberKey(
        bob.home.load_keys(&bob.mesh.id).unwrap().member.public(),
    ));
    let sent = a
        .send(to_bob.clone(), b"hello bob", Priority::Next, None)
        .await
        .unwrap();
    // Another session Bob's member key certified, not the one connected.
    let member = bob.home.load_keys(&bob.mesh.id).unwrap().member;
    let other = SessionIdentity::new(&member, bob.mesh.id, now_ms() / 1000, 3600).unwrap();
    let receipt = Receipt::sign(
        &other,
        ReceiptFacts {
            state: ReceiptState::Shown,
            sender: claudemesh_crypto::MemberKey(
                alice
                    .home
                    .load_keys(&alice.mesh.id)
                    .unwrap()
                    .member
                    .public(),
            ),
            id: sent.id,
            target: to_bob.clone(),
            at_ms: now_ms(),
            via: Via::Inbox,
            reply: None,
        },
    )
    .unwrap();
    let mut raw = Raw::open(&broker.url).await;
    hello_raw(&mut raw, &bob).await;
    let seq = backlog(&mut raw).await[0].0;
    raw.send(&ClientFrame::Receipt(ReceiptFrame {
        receipts: vec![SeqReceipt { seq, receipt }],
    }))
    .await;
    assert_eq!(raw.expect_error().await.code, ErrorCode::Forbidden);
    raw.send(&ClientFrame::Watermark(WatermarkFrame {
        marks: vec![mark(&other, 1, vec![])],
    }))
    .await;
    assert_eq!(raw.expect_error().await.code, ErrorCode::Forbidden);
    // Signed by the connected session but about another message id: the
    // store keeps nothing, and the message is still queued.
    let me = cli_session(&bob);
    let wrong = Receipt::sign(
        &me,
        ReceiptFacts {
            state: ReceiptState::Delivered,
            sender: claudemesh_crypto::MemberKey(
                alice
                    .home
                    .load_keys(&alice.mesh.id)
                    .unwrap()
                    .member
                    .public(),
            ),
            id: MessageId::random(),
            target: to_bob.clone(),
            at_ms: now_ms(),
            via: Via::Store,
            reply: None,
        },
    )
    .unwrap();
    raw.send(&ClientFrame::Receipt(ReceiptFrame {
        receipts: vec![SeqReceipt {
            seq,
            receipt: wrong,
        }],
    }))
    .await;
    let _ = backlog(&mut raw).await;
    broker.running().state.writer.flush().await;
    let st = a.message_status(&sent.id).await.unwrap();
    assert_eq!(st.recipients.len(), 1);
    assert_eq!(st.recipients[0].observed, "queued");
    let dump = broker.running().store().dump().await.unwrap();
    let receipts = dump.iter().find(|t| t.table == "receipts").unwrap();
    assert!(receipts.rows.is_empty());
    drop(raw);
    a.close().await;
    broker.stop().await;
}
both!(evidence_is_bound_to_its_connection);

/// Two replicas on one Postgres: Bob reads on replica B what Alice sent on
/// replica A; Alice's status on A shows it proven `shown` by Bob's
/// signature, a direct message at once (its receipt is a row) and a topic
/// post once B has flushed Bob's watermark (within a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_crosses_replicas() {
    let (ra, rb) = start_replicas().await;
    let (alice, mut bob, a) = topic_with_bob(&ra).await;
    bob.mesh.broker_url = rb.url.clone();
    let to_bob = Target::Member(claudemesh_crypto::MemberKey(
        bob.home.load_keys(&bob.mesh.id).unwrap().member.public(),
    ));
    let dm = a
        .send(to_bob, b"across replicas", Priority::Next, None)
        .await
        .unwrap();
    let post = a
        .send(
            Target::Topic("deploys".into()),
            b"post across replicas",
            Priority::Next,
            None,
        )
        .await
        .unwrap();
    let mut got = bob.read_inbox().await;
    got.sort();
    assert_eq!(got, vec!["across replicas", "post across replicas"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    for id in [dm.id, post.id] {
        loop {
            let st = a.message_status(&id).await.unwrap();
            let r = &st.recipients[0];
            if r.proven == Some(ReceiptState::Shown) {
                assert!(r.proofs.iter().all(|p| p.ok), "{:?}", r.proofs);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never proven shown on the other replica: {r:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    drop(alice);
    a.close().await;
    rb.stop().await;
    ra.stop().await;
}

/// A broker that lies about delivery proves nothing: a `shown` it records
/// with no receipt stays broker-observed; Bob's real receipt for another
/// message, filed under this one, and a receipt Carol signed, filed under
/// Bob, are shown as bad and never raise the state.
async fn a_lying_broker_proves_nothing(backend: Backend) {
    use claudemesh_broker::store::{AckOp, ReceiptRow};
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;
    let a = alice.connect().await;
    let bob_key = bob.home.load_keys(&bob.mesh.id).unwrap().member.public();
    let alice_key = alice
        .home
        .load_keys(&alice.mesh.id)
        .unwrap()
        .member
        .public();
    let to_bob = Target::Member(claudemesh_crypto::MemberKey(bob_key));
    let m1 = a
        .send(to_bob.clone(), b"seen", Priority::Next, None)
        .await
        .unwrap();
    assert_eq!(bob.read_inbox().await, vec!["seen"]);
    let m3 = a
        .send(to_bob.clone(), b"never delivered", Priority::Next, None)
        .await
        .unwrap();
    let store = broker.running().store().clone();
    broker.running().state.writer.flush().await;
    let m1_status = store
        .message_status(&alice.mesh.id, &alice_key, &m1.id)
        .await
        .unwrap()
        .unwrap();
    let bobs_shown = m1_status
        .receipts
        .iter()
        .map(|(_, doc)| doc.clone())
        .find(|doc| doc.contains("\"shown\""))
        .expect("bob's shown receipt for m1");
    // 1. The broker records `shown` for m3 with no receipt.
    store
        .write_batch(
            &[],
            &[AckOp {
                mesh: alice.mesh.id,
                member: bob_key,
                session: bob_key,
                seqs: vec![m3.seq],
                state: claudemesh_proto::frames::DeliveryState::Read,
                at_ms: now_ms(),
                fanout_targets: Vec::new(),
            }],
        )
        .await
        .unwrap();
    let st = a.message_status(&m3.id).await.unwrap();
    let r = &st.recipients[0];
    assert_eq!(r.observed, "shown");
    assert_eq!(r.proven, None, "observed only: {r:?}");
    assert!(r.proofs.is_empty());
    // 2. Bob's receipt for m1, filed under m3; 3. Carol's signature, filed
    // under Bob.
    let carol_session = cli_session(&carol);
    let forged = Receipt::sign(
        &carol_session,
        ReceiptFacts {
            state: ReceiptState::Shown,
            sender: claudemesh_crypto::MemberKey(alice_key),
            id: m3.id,
            target: to_bob.clone(),
            at_ms: now_ms(),
            via: Via::Inbox,
            reply: None,
        },
    )
    .unwrap();
    let row = |state, doc: String| ReceiptRow {
        mesh: alice.mesh.id,
        member: bob_key,
        session: bob_key,
        seq: m3.seq,
        sender: alice_key,
        id: m3.id,
        target: to_bob.to_string(),
        direct: true,
        state,
        at_ms: now_ms(),
        doc,
    };
    store
        .write_receipts(&[
            row(ReceiptState::Shown, bobs_shown),
            row(
                ReceiptState::Answered,
                serde_json::to_string(&forged).unwrap(),
            ),
        ])
        .await
        .unwrap();
    let st = a.message_status(&m3.id).await.unwrap();
    let r = &st.recipients[0];
    assert_eq!(r.proven, None, "nothing proven: {r:?}");
    assert_eq!(r.proofs.len(), 2, "{r:?}");
    assert!(r.proofs.iter().all(|p| !p.ok && p.error.is_some()), "{r:?}");
    // m1 itself is still proven by Bob's own receipts.
    let st = a.message_status(&m1.id).await.unwrap();
    assert_eq!(st.recipients[0].proven, Some(ReceiptState::Shown));
    a.close().await;
    broker.stop().await;
}
both!(a_lying_broker_proves_nothing);

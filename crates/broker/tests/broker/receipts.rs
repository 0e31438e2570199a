//! Signed receipts end to end (issue 15, `docs/security.md` §8.1): a
//! direct message's recipient signs `delivered` when it stores it, `shown`
//! when its inbox prints it, `answered` when it replies, and the sender's
//! `message status` proves each from those signatures; a topic's members
//! sign watermarks, which prove delivered and shown per member.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use claudemesh_client::client::StatusReport;
use claudemesh_client::receipts::ProofKind;
use claudemesh_client::{MeshClient, ReceiptState, Via};
use claudemesh_crypto::envelope::{MessageId, Priority, Target};
use claudemesh_crypto::log::{EntryBody, topic_create_body};

use crate::both;
use crate::fanout::append;
use crate::support::*;

/// Asks `id`'s status until `done` holds (the broker writes receipts in
/// the background), at most 10 s.
async fn status_until(
    c: &MeshClient,
    id: &MessageId,
    what: &str,
    done: impl Fn(&StatusReport) -> bool,
) -> StatusReport {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = c.message_status(id).await.unwrap();
        if done(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "{what}: {st:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The one recipient named `name`.
fn of<'a>(st: &'a StatusReport, name: &str) -> &'a claudemesh_client::client::RecipientReport {
    st.recipients
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no recipient {name}: {st:#?}"))
}

async fn direct_message_delivered_shown_answered(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let a = alice.connect().await;
    let to_bob = a.resolve("bob").await.unwrap();
    let sent = a
        .send(to_bob, b"sign for this", Priority::Next, None)
        .await
        .unwrap();
    let st = a.message_status(&sent.id).await.unwrap();
    assert_eq!(of(&st, "bob").state, "queued");
    assert!(of(&st, "bob").proofs.is_empty());
    assert_eq!(of(&st, "bob").proven, None);

    // Bob's device stores it: a signed `delivered`, via the store.
    let b = bob.connect().await;
    b.settle().await.unwrap();
    let st = status_until(&a, &sent.id, "delivered, signed", |st| {
        of(st, "bob").proven == Some(ReceiptState::Delivered)
    })
    .await;
    let r = of(&st, "bob");
    assert_eq!(r.state, "delivered");
    let p = r
        .proofs
        .iter()
        .find(|p| p.state == ReceiptState::Delivered)
        .unwrap();
    assert!(p.ok && p.error.is_none(), "{p:?}");
    assert_eq!((p.kind, p.via), (ProofKind::Receipt, Via::Store));
    assert_eq!(
        p.session,
        b.with_state(|s| s.session().public().to_hex()),
        "signed by the session that stored it"
    );

    // Bob's inbox prints it: a signed `shown`, via the inbox.
    let list = b.local().inbox(&bob.mesh.id, true, 10).await.unwrap();
    assert_eq!(list.len(), 1);
    b.mark_read(&list).await.unwrap();
    let st = status_until(&a, &sent.id, "shown, signed", |st| {
        of(st, "bob").proven == Some(ReceiptState::Shown)
    })
    .await;
    let r = of(&st, "bob");
    assert_eq!((r.state.as_str(), r.observed.as_str()), ("shown", "shown"));
    assert!(r.proofs.iter().all(|p| p.ok), "{r:?}");
    assert!(
        r.proofs
            .iter()
            .any(|p| p.state == ReceiptState::Shown && p.via == Via::Inbox)
    );

    // Bob answers: a signed `answered`, naming the reply.
    let to_alice = b.resolve("alice").await.unwrap();
    let reply = b
        .send(to_alice, b"signed", Priority::Next, Some(sent.id))
        .await
        .unwrap();
    let st = status_until(&a, &sent.id, "answered, signed", |st| {
        of(st, "bob").proven == Some(ReceiptState::Answered)
    })
    .await;
    let p = of(&st, "bob")
        .proofs
        .iter()
        .find(|p| p.state == ReceiptState::Answered)
        .unwrap()
        .clone();
    assert!(p.ok, "{p:?}");
    assert_eq!(p.via, Via::Reply);
    assert_eq!(p.reply, Some(reply.id.to_hex()));
    b.close().await;
    a.close().await;
}
both!(direct_message_delivered_shown_answered);

async fn topic_members_sign_watermarks(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;
    let dave = joiner(&broker, &alice, "dave").await;
    let a = alice.connect().await;
    append(&a, |s| {
        topic_create_body("deploys", false, "", &s.member_key().public(), &s.mesh_id())
            .unwrap()
            .0
    })
    .await;
    for peer in [&bob, &carol, &dave] {
        let c = peer.connect().await;
        append(&c, |s| EntryBody::TopicJoin {
            topic: "deploys".into(),
            member: s.member_key().public(),
            sealed: Vec::new(),
        })
        .await;
        c.close().await;
    }
    a.sync_log().await.unwrap();
    let topic = Target::Topic("deploys".into());
    let mut sent = Vec::new();
    for body in ["one", "two"] {
        sent.push(
            a.send(topic.clone(), body.as_bytes(), Priority::Next, None)
                .await
                .unwrap(),
        );
    }

    // Bob reads both (shown); carol's device only stores them (delivered);
    // dave stays away (queued).
    assert_eq!(bob.read_inbox().await.len(), 2);
    let c = carol.connect().await;
    c.settle().await.unwrap();
    c.close().await;

    let st = status_until(&a, &sent[0].id, "bob shown, carol delivered", |st| {
        st.recipients.len() == 3
            && of(st, "bob").proven == Some(ReceiptState::Shown)
            && of(st, "carol").proven == Some(ReceiptState::Delivered)
    })
    .await;
    let states: BTreeMap<&str, (&str, Option<ReceiptState>)> = st
        .recipients
        .iter()
        .map(|r| (r.name.as_str(), (r.state.as_str(), r.proven)))
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("bob", ("shown", Some(ReceiptState::Shown))),
            ("carol", ("delivered", Some(ReceiptState::Delivered))),
            ("dave", ("queued", None)),
        ])
    );
    for name in ["bob", "carol"] {
        let r = of(&st, name);
        assert!(!r.proofs.is_empty(), "{name}: {r:?}");
        assert!(
            r.proofs
                .iter()
                .all(|p| p.ok && p.kind == ProofKind::Watermark),
            "{name}: {r:?}"
        );
    }
    assert!(
        of(&st, "bob")
            .proofs
            .iter()
            .any(|p| p.state == ReceiptState::Shown && p.via == Via::Inbox)
    );
    assert!(of(&st, "dave").proofs.is_empty());
    a.close().await;
}
both!(topic_members_sign_watermarks);

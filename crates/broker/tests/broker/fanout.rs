//! Topics, groups and broadcasts (issue 4) through real clients: everyone
//! in the target as of send time gets each message exactly once, online or
//! offline; a banned member is cut off and — handed every ciphertext the
//! store holds from after its removal — can open none of them (TM5).

use std::collections::BTreeMap;

use claudemesh_client::MeshClient;
use claudemesh_client::mesh::MeshState;
use claudemesh_crypto::boxes::box_decrypt;
use claudemesh_crypto::envelope::{Envelope, Priority, Target};
use claudemesh_crypto::log::{EntryBody, LogBuilder, LogEntry, RemoveKind, topic_create_body};
use claudemesh_crypto::receipt::ReceiptState;

use crate::both;
use crate::support::*;

fn now_secs() -> u64 {
    claudemesh_client::client::now_ms() / 1000
}

/// Signs `body` as this client's member and appends it.
pub async fn append(c: &MeshClient, body: impl Fn(&MeshState) -> EntryBody) {
    c.append_entry(|s| {
        Ok(LogEntry::sign(
            s.member_key(),
            s.roster().len(),
            s.roster().head(),
            now_secs(),
            body(s),
        ))
    })
    .await
    .unwrap();
}

async fn join_topic_and_group(peer: &Peer, topic: &str, group: &str) {
    let c = peer.connect().await;
    let (topic, group) = (topic.to_owned(), group.to_owned());
    append(&c, |s| EntryBody::TopicJoin {
        topic: topic.clone(),
        member: s.member_key().public(),
        sealed: Vec::new(),
    })
    .await;
    append(&c, |s| EntryBody::GroupJoin {
        group: group.clone(),
        member: s.member_key().public(),
        role: None,
    })
    .await;
    c.close().await;
}

/// Every stored envelope with its seq, straight from the store's dump.
async fn stored_envelopes(broker: &TestBroker) -> BTreeMap<u64, Envelope> {
    let dump = broker.running().store().dump().await.unwrap();
    let t = dump.iter().find(|t| t.table == "messages").unwrap();
    let col = |n: &str| t.columns.iter().position(|c| c == n).unwrap();
    t.rows
        .iter()
        .filter(|r| r[col("envelope")] != "NULL")
        .map(|r| {
            let quoted = &r[col("envelope")];
            let json = quoted[1..quoted.len() - 1].replace("''", "'");
            (
                r[col("seq")].parse().unwrap(),
                serde_json::from_str(&json).unwrap(),
            )
        })
        .collect()
}

/// Whether any key `peer` holds opens `env`'s body: the mesh key and the
/// topic key of every epoch root it has, and its member key for boxes.
fn opens_with_any_key(peer: &Peer, env: &Envelope) -> bool {
    let keys = peer.home.load_keys(&peer.mesh.id).unwrap();
    let mesh_id = peer.mesh.id;
    let symmetric = keys.roots.values().flat_map(|root| {
        let mut ks = vec![root.mesh_key(&mesh_id)];
        if let Target::Topic(name) = &env.target {
            ks.push(root.topic_key(&mesh_id, name.as_bytes()));
        }
        ks
    });
    let by_secretbox = symmetric
        .into_iter()
        .any(|k| k.decrypt(&env.ciphertext, &env.nonce).is_ok());
    let by_box = box_decrypt(
        &env.ciphertext,
        &env.nonce,
        &env.sender.session.to_box_public(),
        &keys.member.to_box_secret(),
    )
    .is_ok();
    by_secretbox || by_box
}

async fn fanout_reaches_everyone_once_then_not_the_banned(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;

    let a = alice.connect().await;
    append(&a, |s| {
        topic_create_body(
            "deploys",
            false,
            "release notes",
            &s.member_key().public(),
            &s.mesh_id(),
        )
        .unwrap()
        .0
    })
    .await;
    join_topic_and_group(&bob, "deploys", "eng/backend").await;
    join_topic_and_group(&carol, "deploys", "eng/backend").await;
    a.sync_log().await.unwrap();

    // Bob is online, Carol is not.
    let b = bob.connect().await;
    let mut events = b.events();
    let targets = [
        Target::Topic("deploys".into()),
        Target::Group("eng".into()),
        Target::Broadcast,
    ];
    let mut sent = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let body = format!("before #{i}");
        sent.push(
            a.send(t.clone(), body.as_bytes(), Priority::Next, None)
                .await
                .unwrap(),
        );
    }
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(next_message(&mut events).await.body);
    }
    live.sort();
    assert_eq!(live, vec!["before #0", "before #1", "before #2"]);
    b.close().await;
    assert_eq!(
        bob.read_inbox().await.len(),
        3,
        "stored once each, no duplicates"
    );
    // Carol comes back: each exactly once.
    let mut got = carol.read_inbox().await;
    got.sort();
    assert_eq!(got, vec!["before #0", "before #1", "before #2"]);
    assert!(carol.read_inbox().await.is_empty());
    // Per-recipient status, as of send time.
    let st = a.message_status(&sent[2].id).await.unwrap();
    let states: BTreeMap<String, (String, Option<ReceiptState>)> = st
        .recipients
        .iter()
        .map(|r| (r.name.clone(), (r.state.clone(), r.proven)))
        .collect();
    let shown = ("shown".to_string(), Some(ReceiptState::Shown));
    assert_eq!(
        states,
        BTreeMap::from([("bob".into(), shown.clone()), ("carol".into(), shown)]),
        "shown, proven by each one's signed watermark"
    );

    // A late joiner does not get what was sent before it joined.
    a.close().await;
    let dave = joiner(&broker, &alice, "dave").await;
    assert!(dave.read_inbox().await.is_empty());
    let a = alice.connect().await;

    // Alice bans Carol: the removal and a rekey in one append.
    let carol_key = carol
        .home
        .load_keys(&carol.mesh.id)
        .unwrap()
        .member
        .public();
    a.append_entries(|s| {
        let mut log = LogBuilder::from_verified(s.entries().to_vec(), s.roster().clone());
        let before = log.entries().len();
        log.remove(s.member_key(), &carol_key, RemoveKind::Ban, now_secs())
            .map_err(|e| claudemesh_client::ClientError::Invalid(e.to_string().into()))?;
        Ok(log.entries()[before..].to_vec())
    })
    .await
    .unwrap();
    let last_before_ban = *stored_envelopes(&broker).await.keys().last().unwrap();
    assert_eq!(a.with_state(|s| s.roster().epoch()), 1);

    let b = bob.connect().await;
    let mut events = b.events();
    for (i, t) in targets.iter().enumerate() {
        let body = format!("after #{i}");
        a.send(t.clone(), body.as_bytes(), Priority::Next, None)
            .await
            .unwrap();
    }
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(next_message(&mut events).await.body);
    }
    live.sort();
    assert_eq!(live, vec!["after #0", "after #1", "after #2"]);
    b.close().await;
    // Carol is refused at the door.
    assert!(
        MeshClient::connect(
            &carol.home,
            &carol.mesh,
            claudemesh_client::ConnectOptions::default()
        )
        .await
        .is_err()
    );
    // And cannot open anything stored after her removal, with any key she
    // holds — though the same check opens what was sent before.
    let stored = stored_envelopes(&broker).await;
    let (before, after): (Vec<_>, Vec<_>) =
        stored.iter().partition(|(seq, _)| **seq <= last_before_ban);
    assert!(after.len() >= 3);
    for (seq, env) in &after {
        assert!(
            !opens_with_any_key(&carol, env),
            "carol opened message {seq} sent after her ban"
        );
    }
    assert!(
        before
            .iter()
            .filter(|(_, e)| !e.target.is_direct())
            .all(|(_, e)| opens_with_any_key(&carol, e)),
        "the check itself can open what carol could read"
    );
    a.close().await;
    broker.stop().await;
}
both!(fanout_reaches_everyone_once_then_not_the_banned);

//! Shared state through the SDK (`claudemesh_client::state`): a value one
//! member sets is read by another with its version and writer; a write
//! with `if_version` fails once someone else moved the key (compare-and-
//! set), and of concurrent creators of one key exactly one wins; a delete
//! moves the version on, so a stale writer never brings the old value back;
//! a watcher is told of each change as the broker pushes it, on one broker
//! and across two replicas.

use std::time::Duration;

use claudemesh_client::state::StateChange;
use claudemesh_client::{ClientError, MeshClient};
use serde_json::json;

use crate::both;
use crate::support::*;

async fn a_value_is_shared_with_compare_and_set(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let (a, b) = (alice.connect().await, bob.connect().await);
    let v1 = a
        .state_set("deploy/staging", json!({"version": "1.4.2"}), Some(0))
        .await
        .unwrap();
    assert_eq!((v1.version, v1.writer_name.as_str()), (1, "alice"));
    let got = b.state_get("deploy/staging").await.unwrap().unwrap();
    assert_eq!(got.value, json!({"version": "1.4.2"}));
    assert_eq!((got.version, got.writer_name.as_str()), (1, "alice"));
    assert_eq!(b.state_get("deploy/prod").await.unwrap(), None);
    // Creating it again (if_version 0) fails: it exists.
    let e = b
        .state_set("deploy/staging", json!("mine"), Some(0))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::StateMoved { .. }), "{e}");
    assert_eq!(e.kind(), claudemesh_client::error_kind::ErrorKind::Conflict);
    // Bob moves it from version 1; Alice's stale read-modify-write fails.
    let v2 = b
        .state_set("deploy/staging", json!({"version": "1.4.3"}), Some(1))
        .await
        .unwrap();
    assert_eq!((v2.version, v2.writer_name.as_str()), (2, "bob"));
    let e = a
        .state_set("deploy/staging", json!({"version": "1.5.0"}), Some(1))
        .await
        .unwrap_err();
    match &e {
        ClientError::StateMoved { detail, .. } => assert!(detail.contains("bob"), "{e}"),
        other => panic!("expected a moved version, got {other}"),
    }
    // Without if_version a write goes over whatever is there.
    let v3 = a.state_set("deploy/staging", json!(7), None).await.unwrap();
    assert_eq!(v3.version, 3);
    a.state_set("deploy/prod", json!(true), None).await.unwrap();
    a.state_set("owner", json!("alice"), None).await.unwrap();
    let keys: Vec<String> = b
        .state_list("deploy/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, vec!["deploy/prod", "deploy/staging"]);
    assert_eq!(b.state_list("").await.unwrap().len(), 3);

    // A delete moves the version on: a writer stale at 3 cannot revive it.
    assert_eq!(b.state_delete("deploy/staging", Some(3)).await.unwrap(), 4);
    assert_eq!(a.state_get("deploy/staging").await.unwrap(), None);
    let e = a
        .state_set("deploy/staging", json!("old"), Some(3))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::StateMoved { .. }), "{e}");
    let e = a.state_delete("deploy/staging", None).await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound(_)), "{e}");
    // Re-created, it goes on from the delete's version.
    let again = a
        .state_set("deploy/staging", json!("back"), Some(4))
        .await
        .unwrap();
    assert_eq!(again.version, 5);
    // Bad input is refused before anything is sent.
    let e = a.state_set("", json!(1), None).await.unwrap_err();
    assert!(matches!(e, ClientError::BadInput(_)), "{e}");
    let e = a
        .state_set("k", json!("x".repeat(9000)), None)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::BadInput(_)), "{e}");
    // A fresh device of Bob's (an empty copy) gets every live key.
    b.close().await;
    let db = bob.home.state_db_path();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let b2 = bob.connect().await;
    assert_eq!(b2.state_list("").await.unwrap().len(), 3);
    b2.close().await;
    a.close().await;
    broker.stop().await;
}
both!(a_value_is_shared_with_compare_and_set);

async fn of_concurrent_creators_of_one_key_exactly_one_wins(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let mut peers = vec![alice];
    for name in ["bob", "carol", "dave"] {
        let p = joiner(&broker, &peers[0], name).await;
        peers.push(p);
    }
    let mut clients = Vec::new();
    for p in &peers {
        clients.push(p.connect().await);
    }
    for round in 0..3 {
        let key = format!("lock/{round}");
        let outcomes = futures_util::future::join_all(
            clients
                .iter()
                .enumerate()
                .map(|(i, c)| c.state_set(&key, json!(i), Some(0))),
        )
        .await;
        let won: Vec<_> = outcomes.iter().filter(|o| o.is_ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {outcomes:?}");
        for o in &outcomes {
            if let Err(e) = o {
                assert!(matches!(e, ClientError::StateMoved { .. }), "{e}");
            }
        }
    }
    for c in clients {
        c.close().await;
    }
    broker.stop().await;
}
both!(of_concurrent_creators_of_one_key_exactly_one_wins);

/// Runs `state_watch` on `c` for `keys`, sending each change on a channel.
fn watcher(
    c: MeshClient,
    keys: Vec<String>,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<StateChange>,
    tokio::task::JoinHandle<MeshClient>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let _ = c.state_watch(&keys, |ch| tx.send(ch).is_ok()).await;
        c
    });
    (rx, task)
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<StateChange>) -> StateChange {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a change within 10 s")
        .expect("the watcher is running")
}

/// A watcher on `w` sees Alice's writes on `a`: where the key stands
/// first, then each version, a delete included.
async fn watch_sees_each_change(a: &MeshClient, w: MeshClient) {
    let (mut rx, task) = watcher(w, vec!["build/number".into()]);
    let first = next(&mut rx).await;
    assert_eq!(
        (first.key.as_str(), first.version, first.entry),
        ("build/number", 0, None)
    );
    a.state_set("build/number", json!(41), None).await.unwrap();
    let c = next(&mut rx).await;
    assert_eq!(c.version, 1);
    assert_eq!(c.entry.map(|e| e.value), Some(json!(41)));
    // A key nobody watches changes nothing for the watcher.
    a.state_set("other", json!(1), None).await.unwrap();
    a.state_set("build/number", json!(42), Some(1))
        .await
        .unwrap();
    let c = next(&mut rx).await;
    assert_eq!((c.version, c.entry.map(|e| e.value)), (2, Some(json!(42))));
    a.state_delete("build/number", None).await.unwrap();
    let c = next(&mut rx).await;
    assert_eq!((c.version, c.entry), (3, None));
    task.abort();
}

async fn a_watcher_is_told_of_each_change(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let a = alice.connect().await;
    watch_sees_each_change(&a, bob.connect().await).await;
    a.close().await;
    broker.stop().await;
}
both!(a_watcher_is_told_of_each_change);

/// Two replicas on one Postgres: Bob watches on replica B what Alice
/// writes on replica A (the push crosses through the replicas' wake).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_another_replica_is_told_of_each_change() {
    let (ra, rb) = start_replicas().await;
    let alice = owner(&ra, "alice").await;
    let mut bob = joiner(&ra, &alice, "bob").await;
    bob.mesh.broker_url = rb.url.clone();
    let a = alice.connect().await;
    watch_sees_each_change(&a, bob.connect().await).await;
    a.close().await;
    rb.stop().await;
    ra.stop().await;
}

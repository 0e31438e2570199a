//! File leases through the SDK (`claudemesh_client::leases`): a lease on a
//! directory keeps another session from leasing a file below it (and the
//! refusal names the holder, the path and the reason), but not from a
//! sibling; shared leases coexist; a session's own leases never stand in
//! its way; checking a path before an edit finds another session's lease;
//! releasing frees the path; renewing extends it; of concurrent overlapping
//! exclusive takes exactly one is granted, on one broker and across two
//! replicas; a lease tagged under an older key epoch still conflicts after
//! a rekey. The broker never sees a path: TM1 (`trust.rs`) dumps every
//! table.

use std::time::Duration;

use claudemesh_client::leases::LeaseRequest;
use claudemesh_client::{ClientError, MeshClient};

use crate::both;
use crate::support::*;

const REPO: &str = "github.com/acme/api";

fn req(paths: &[&str], exclusive: bool) -> LeaseRequest {
    LeaseRequest {
        repo: REPO.into(),
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        exclusive,
        ttl: Duration::from_secs(1800),
        reason: Some("refactoring net".into()),
    }
}

fn held(e: &ClientError) -> &str {
    match e {
        ClientError::LeaseHeld { detail } => detail,
        other => panic!("expected a lease in the way, got {other}"),
    }
}

async fn leases_keep_overlapping_edits_apart(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let (a, b) = (alice.connect().await, bob.connect().await);
    let lease = a.lease_take(&req(&["src/net/"], true)).await.unwrap();
    assert!(lease.mine && lease.exclusive);
    assert_eq!(lease.paths, vec!["src/net/"]);
    assert_eq!(lease.holder_name, "alice");

    // Bob cannot lease a file below it, and is told whose it is and why.
    let e = b
        .lease_take(&req(&["src/net/a.rs"], true))
        .await
        .unwrap_err();
    let why = held(&e);
    assert!(
        why.contains("src/net/") && why.contains("alice") && why.contains("refactoring net"),
        "{why}"
    );
    assert_eq!(e.kind(), claudemesh_client::error_kind::ErrorKind::Conflict);
    // Nor the directory above it, even shared.
    b.lease_take(&req(&["src/"], false)).await.unwrap_err();
    // A sibling, and another repository, are free.
    b.lease_take(&req(&["src/ui/"], true)).await.unwrap();
    let mut other = req(&["src/net/"], true);
    other.repo = "github.com/acme/web".into();
    b.lease_take(&other).await.unwrap();
    // Alice's own session is never in her way.
    a.lease_take(&req(&["src/net/b.rs"], true)).await.unwrap();

    // Bob sees the leases and what an edit would step on.
    let listed = b.lease_list().await.unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    let hits = b
        .lease_conflicts(REPO, &["src/net/a.rs".into(), "src/ui/x.rs".into()], &[])
        .await
        .unwrap();
    // src/net/ covers a.rs; her lease on src/net/b.rs does not; src/ui/ is
    // Bob's own.
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (hits[0].0.as_str(), hits[0].1.paths[0].as_str()),
        ("src/net/a.rs", "src/net/")
    );
    assert_eq!(hits[0].1.holder_name, "alice");
    assert!(
        a.lease_conflicts(REPO, &["src/net/a.rs".into()], &[])
            .await
            .unwrap()
            .is_empty(),
        "her own leases are not in her way"
    );

    // Renewing extends; releasing frees the path.
    let before = lease.expires_at_ms;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let renewed = a
        .lease_renew(
            &[lease.id.to_hex()[..8].to_owned()],
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert_eq!(renewed.len(), 1);
    assert!(renewed[0].expires_at_ms > before + 1_700_000, "{renewed:?}");
    let e = b.lease_release(&[lease.id.to_hex()]).await.unwrap_err();
    assert!(matches!(e, ClientError::NotAllowed(_)), "{e}");
    let released = a.lease_release(&[]).await.unwrap();
    assert_eq!(released.len(), 2, "every lease of this session");
    b.lease_take(&req(&["src/net/a.rs"], true)).await.unwrap();

    // Shared leases coexist; an exclusive one does not join them.
    a.lease_take(&req(&["docs/"], false)).await.unwrap();
    b.lease_take(&req(&["docs/guide.md"], false)).await.unwrap();
    a.lease_take(&req(&["docs/guide.md"], true))
        .await
        .unwrap_err();
    // Bad requests are refused before anything is sent.
    let mut short = req(&["x"], true);
    short.ttl = Duration::from_secs(5);
    assert!(matches!(
        a.lease_take(&short).await.unwrap_err(),
        ClientError::BadInput(_)
    ));
    assert!(matches!(
        a.lease_take(&req(&[], true)).await.unwrap_err(),
        ClientError::BadInput(_)
    ));
    a.close().await;
    b.close().await;
    broker.stop().await;
}
both!(leases_keep_overlapping_edits_apart);

async fn a_lease_from_before_a_rekey_still_conflicts(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let (a, b) = (alice.connect().await, bob.connect().await);
    a.lease_take(&req(&["src/"], true)).await.unwrap();
    let epoch = a.with_state(|s| s.roster().epoch());
    claudemesh_client::moderation::mesh_rekey(&a).await.unwrap();
    b.sync_log().await.unwrap();
    assert!(b.with_state(|s| s.roster().epoch()) > epoch);
    // Bob's probe covers the epoch Alice's lease was tagged under.
    let e = b
        .lease_take(&req(&["src/main.rs"], true))
        .await
        .unwrap_err();
    assert!(held(&e).contains("alice"), "{e}");
    a.close().await;
    b.close().await;
    broker.stop().await;
}
both!(a_lease_from_before_a_rekey_still_conflicts);

/// A member removed from the mesh leaves no lease in anyone's way: the next
/// take that meets it releases it.
async fn a_removed_members_lease_stands_in_no_ones_way(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;
    let b = bob.connect().await;
    b.lease_take(&req(&["src/"], true)).await.unwrap();
    b.close().await;
    let c = carol.connect().await;
    c.lease_take(&req(&["src/a.rs"], true)).await.unwrap_err();
    let a = alice.connect().await;
    claudemesh_client::moderation::remove(&a, "bob", claudemesh_crypto::log::RemoveKind::Kick)
        .await
        .unwrap();
    c.sync_log().await.unwrap();
    c.lease_take(&req(&["src/a.rs"], true)).await.unwrap();
    let live = a.lease_list().await.unwrap();
    assert!(live.iter().all(|l| l.holder_name != "bob"), "{live:?}");
    a.close().await;
    c.close().await;
    broker.stop().await;
}
both!(a_removed_members_lease_stands_in_no_ones_way);

/// Every client tries to lease `path` exclusively at once: the one granted.
async fn race(clients: &[MeshClient], path: &str) -> usize {
    for c in clients {
        c.lease_sync().await.unwrap();
    }
    let take = req(&[path], true);
    let outcomes =
        futures_util::future::join_all(clients.iter().map(|c| c.lease_take(&take))).await;
    let mut granted = 0;
    for o in outcomes {
        match o {
            Ok(_) => granted += 1,
            Err(ClientError::LeaseHeld { .. }) => {}
            Err(e) => panic!("a refused take is LeaseHeld, got {e}"),
        }
    }
    granted
}

async fn of_concurrent_exclusive_takes_exactly_one_is_granted(backend: Backend) {
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
        assert_eq!(
            race(&clients, &format!("round{round}/")).await,
            1,
            "round {round}"
        );
    }
    for c in clients {
        c.close().await;
    }
    broker.stop().await;
}
both!(of_concurrent_exclusive_takes_exactly_one_is_granted);

/// Two replicas on one Postgres: takers on either side race for one path,
/// and exactly one is granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_exclusive_takes_across_replicas_exactly_one_is_granted() {
    let (ra, rb) = start_replicas().await;
    let alice = owner(&ra, "alice").await;
    let mut bob = joiner(&ra, &alice, "bob").await;
    let carol = joiner(&ra, &alice, "carol").await;
    let mut dave = joiner(&ra, &alice, "dave").await;
    bob.mesh.broker_url = rb.url.clone();
    dave.mesh.broker_url = rb.url.clone();
    let clients = vec![
        alice.connect().await,
        bob.connect().await,
        carol.connect().await,
        dave.connect().await,
    ];
    for round in 0..3 {
        assert_eq!(
            race(&clients, &format!("round{round}/a.rs")).await,
            1,
            "round {round}"
        );
    }
    for c in clients {
        c.close().await;
    }
    rb.stop().await;
    ra.stop().await;
}

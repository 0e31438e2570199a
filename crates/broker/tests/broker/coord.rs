//! Team memory at the broker (issue 17): sealed notes stored, numbered,
//! synced and forgotten over raw frames; who may forget; epochs and the key
//! ring; and that the broker refuses what it can check without the key,
//! for notes, task acts, state entries, leases and renewals alike.

use claudemesh_client::client::now_ms;
use claudemesh_client::moderation;
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::coord::{CoordFacts, CoordId, CoordKind, CoordObject, RingLink, coord_key};
use claudemesh_crypto::log::RemoveKind;
use claudemesh_crypto::{MeshId, SymmetricKey};
use claudemesh_proto::frames::{
    CoordForget, CoordPage, CoordPut, CoordRingPut, CoordRingQuery, CoordStored, CoordSync,
};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};

use crate::both;
use crate::messaging::hello_raw;
use crate::support::*;

const NOTE: &str = "{\"text\":\"the Cobblewick staging db listens on 5433\"}";

/// A peer's `cli` session and the coordination key of its newest epoch.
fn sealer(peer: &Peer) -> (SessionIdentity, u64, SymmetricKey, MeshId) {
    let keys = peer.home.load_keys(&peer.mesh.id).unwrap();
    let me = keys.sessions.get("cli").unwrap().clone();
    let (epoch, root) = keys.roots.iter().next_back().unwrap();
    (me, *epoch, coord_key(root, &peer.mesh.id), peer.mesh.id)
}

fn seal(peer: &Peer, id: CoordId, text: &str) -> CoordObject {
    seal_as(peer, CoordKind::Memory, id, 1, text)
}

fn put(o: &CoordObject) -> ClientFrame {
    ClientFrame::CoordPut(CoordPut {
        req: Some("p".into()),
        object: Box::new(o.clone()),
    })
}

fn forget(id: CoordId) -> ClientFrame {
    ClientFrame::CoordForget(CoordForget {
        req: Some("f".into()),
        kind: CoordKind::Memory,
        id,
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

async fn stored(raw: &mut Raw, frame: ClientFrame) -> CoordStored {
    raw.send(&frame).await;
    match answer(raw).await {
        BrokerFrame::CoordStored(s) => s,
        other => panic!("expected coord_stored, got {other:?}"),
    }
}

async fn refused(raw: &mut Raw, frame: ClientFrame) -> (ErrorCode, String) {
    raw.send(&frame).await;
    match answer(raw).await {
        BrokerFrame::Error(e) => (e.code, e.message),
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn sync(raw: &mut Raw, after: u64) -> CoordPage {
    raw.send(&ClientFrame::CoordSync(CoordSync {
        req: None,
        kind: CoordKind::Memory,
        after,
    }))
    .await;
    match answer(raw).await {
        BrokerFrame::CoordPage(p) => p,
        other => panic!("expected coord_page, got {other:?}"),
    }
}

async fn memory_notes_are_stored_synced_and_forgotten(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let (mut ra, mut rb) = (Raw::open(&broker.url).await, Raw::open(&broker.url).await);
    hello_raw(&mut ra, &alice).await;
    hello_raw(&mut rb, &bob).await;

    let n1 = seal(&alice, CoordId::random(), NOTE);
    let s = stored(&mut ra, put(&n1)).await;
    assert_eq!((s.id, s.cseq, s.duplicate), (n1.id, 1, false));
    assert_eq!(s.req.as_deref(), Some("p"));
    // A resend (a lost answer) is the same change.
    let s = stored(&mut ra, put(&n1)).await;
    assert_eq!((s.cseq, s.duplicate), (1, true));
    // Other bytes under a stored id are refused.
    let other = seal(&alice, n1.id, "{\"text\":\"something else\"}");
    let (code, msg) = refused(&mut ra, put(&other)).await;
    assert_eq!(code, ErrorCode::Malformed, "{msg}");
    // What the broker checks without the key: the signature, the author
    // being this session, the epoch.
    let mut tampered = seal(&alice, CoordId::random(), NOTE);
    tampered.ciphertext[0] ^= 1;
    assert_eq!(
        refused(&mut ra, put(&tampered)).await.0,
        ErrorCode::BadSignature
    );
    let alices = seal(&alice, CoordId::random(), NOTE);
    assert_eq!(refused(&mut rb, put(&alices)).await.0, ErrorCode::Forbidden);
    let (me, epoch, key, _) = sealer(&alice);
    let future = CoordObject::seal(
        &me,
        &key,
        epoch + 1,
        CoordFacts {
            kind: CoordKind::Memory,
            id: CoordId::random(),
            rev: 1,
            at_ms: now_ms(),
        },
        NOTE.as_bytes(),
    )
    .unwrap();
    let (code, msg) = refused(&mut ra, put(&future)).await;
    assert_eq!(code, ErrorCode::RekeyRequired, "{msg}");

    // Bob reads it: the object as alice signed it, which he opens.
    let page = sync(&mut rb, 0).await;
    assert_eq!((page.head, page.more, page.changes.len()), (1, false, 1));
    let got = page.changes[0].object.as_deref().unwrap();
    assert_eq!(got, &n1);
    let (_, _, bob_key, _) = sealer(&bob);
    assert!(got.open(&bob_key).unwrap().starts_with(NOTE.as_bytes()));

    let n2 = seal(&bob, CoordId::random(), "{\"text\":\"bob's\"}");
    assert_eq!(stored(&mut rb, put(&n2)).await.cseq, 2);
    // Bob may not forget alice's note; alice, the owner, may forget his.
    let (code, msg) = refused(&mut rb, forget(n1.id)).await;
    assert_eq!(code, ErrorCode::Forbidden, "{msg}");
    let s = stored(&mut ra, forget(n2.id)).await;
    assert_eq!((s.id, s.cseq, s.duplicate), (n2.id, 3, false));
    let s = stored(&mut ra, forget(n2.id)).await;
    assert_eq!((s.cseq, s.duplicate), (3, true));
    assert_eq!(
        refused(&mut ra, forget(CoordId::random())).await.0,
        ErrorCode::NotFound
    );
    // A forgotten id is never stored again.
    assert_eq!(refused(&mut rb, put(&n2)).await.0, ErrorCode::NotFound);
    let page = sync(&mut rb, 1).await;
    assert_eq!(page.head, 3);
    assert_eq!(page.changes.len(), 1);
    assert_eq!((page.changes[0].id, page.changes[0].cseq), (n2.id, 3));
    assert!(page.changes[0].object.is_none());
    // Its author forgets her own.
    assert_eq!(stored(&mut ra, forget(n1.id)).await.cseq, 4);
    broker.stop().await;
}
both!(memory_notes_are_stored_synced_and_forgotten);

async fn notes_follow_the_epoch_and_the_ring_links_it(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let _carol = joiner(&broker, &alice, "carol").await;
    let old = seal(&alice, CoordId::random(), NOTE);
    let (_, e0, k0, mesh) = sealer(&alice);
    // Carol is kicked: the remove and its rekey go in together.
    let a = alice.connect().await;
    moderation::remove(&a, "carol", RemoveKind::Kick)
        .await
        .unwrap();
    a.close().await;
    let (me, e1, k1, _) = sealer(&alice);
    assert_eq!(e1, e0 + 1);

    let mut ra = Raw::open(&broker.url).await;
    hello_raw(&mut ra, &alice).await;
    // Sealed under the epoch carol held: refused.
    let (code, msg) = refused(&mut ra, put(&old)).await;
    assert_eq!(code, ErrorCode::RekeyRequired, "{msg}");
    assert!(msg.contains("epoch"), "{msg}");
    assert_eq!(
        stored(&mut ra, put(&seal(&alice, CoordId::random(), NOTE)))
            .await
            .cseq,
        1
    );

    let ring_put = |link: &RingLink| {
        ClientFrame::CoordRingPut(CoordRingPut {
            req: None,
            link: Box::new(link.clone()),
        })
    };
    // Alice's SDK may have written her link when it rotated the key (the
    // first one stands); her second is a duplicate either way.
    let link = RingLink::seal(&me, e1, &k1, &k0, now_ms());
    for _ in 0..2 {
        ra.send(&ring_put(&link)).await;
        match answer(&mut ra).await {
            BrokerFrame::CoordRingStored(s) => assert_eq!(s.epoch, e1),
            other => panic!("expected coord_ring_stored, got {other:?}"),
        }
    }
    ra.send(&ring_put(&link)).await;
    match answer(&mut ra).await {
        BrokerFrame::CoordRingStored(s) => assert_eq!((s.epoch, s.duplicate), (e1, true)),
        other => panic!("expected coord_ring_stored, got {other:?}"),
    }
    // Bob, a plain member who did not write the rekey, may not link it
    // (readers would not trust him, and the ring stays a few links per epoch).
    let b = bob.connect().await;
    b.settle().await.unwrap();
    b.close().await;
    let (bob_me, bob_e1, bob_k1, _) = sealer(&bob);
    assert_eq!(bob_e1, e1);
    let mut rb = Raw::open(&broker.url).await;
    hello_raw(&mut rb, &bob).await;
    let (code, msg) = refused(
        &mut rb,
        ring_put(&RingLink::seal(&bob_me, e1, &bob_k1, &k0, now_ms())),
    )
    .await;
    assert_eq!(code, ErrorCode::Forbidden, "{msg}");
    // An epoch the mesh has not had, or none, is refused.
    for epoch in [e1 + 1, 0] {
        let bad = RingLink::seal(&me, epoch, &k1, &k0, now_ms());
        assert_eq!(
            refused(&mut ra, ring_put(&bad)).await.0,
            ErrorCode::Malformed
        );
    }
    ra.send(&ClientFrame::CoordRing(CoordRingQuery {
        req: None,
        after: 0,
    }))
    .await;
    match answer(&mut ra).await {
        BrokerFrame::CoordRingPage(p) => {
            // One link, alice's, which hands the older key to whoever
            // holds the newer.
            assert_eq!(p.links.len(), 1, "{:?}", p.links);
            let got = &p.links[0];
            assert_eq!((got.epoch, got.member()), (e1, me.cert.member));
            got.verify(&mesh).unwrap();
            assert_eq!(got.open(&k1).unwrap(), k0);
        }
        other => panic!("expected coord_ring_page, got {other:?}"),
    }
    broker.stop().await;
}
both!(notes_follow_the_epoch_and_the_ring_links_it);

/// `seal` for any kind and revision.
fn seal_as(peer: &Peer, kind: CoordKind, id: CoordId, rev: u64, text: &str) -> CoordObject {
    let (me, epoch, key, _) = sealer(peer);
    CoordObject::seal(
        &me,
        &key,
        epoch,
        CoordFacts {
            kind,
            id,
            rev,
            at_ms: now_ms(),
        },
        text.as_bytes(),
    )
    .unwrap()
}

fn act(o: &CoordObject, force: bool) -> ClientFrame {
    ClientFrame::TaskAct(claudemesh_proto::frames::TaskActFrame {
        req: Some("a".into()),
        act: Box::new(o.clone()),
        force,
    })
}

fn state_set(o: &CoordObject) -> ClientFrame {
    ClientFrame::StateSet(claudemesh_proto::frames::StateSet {
        req: Some("s".into()),
        object: Box::new(o.clone()),
    })
}

fn lease_take(o: &CoordObject, ttl_ms: u64, tags: usize, probe: usize) -> ClientFrame {
    ClientFrame::LeaseTake(claudemesh_proto::frames::LeaseTake {
        req: Some("l".into()),
        object: Box::new(o.clone()),
        exclusive: true,
        ttl_ms,
        tags: (0..tags).map(|_| CoordId::random()).collect(),
        probe: (0..probe).map(|_| CoordId::random()).collect(),
    })
}

async fn page_of(raw: &mut Raw, kind: CoordKind) -> CoordPage {
    raw.send(&ClientFrame::CoordSync(CoordSync {
        req: None,
        kind,
        after: 0,
    }))
    .await;
    match answer(raw).await {
        BrokerFrame::CoordPage(p) => p,
        other => panic!("expected coord_page, got {other:?}"),
    }
}

/// Task acts, state writes, lease takes and renewals the broker can check
/// without the key are refused with a clear code, and change nothing: a
/// kind that is not theirs, a revision no act or write makes, another
/// session's signature, a bad signature, an unknown task, a length of
/// lease outside its bounds, tags or a probe of the wrong size.
async fn bad_coordination_writes_are_refused_and_change_nothing(backend: Backend) {
    use claudemesh_crypto::coord::{LEASE_PROBES_PER_PATH, LEASE_TAGS_PER_PATH};
    use claudemesh_proto::limits::{
        MAX_LEASE_PATHS, MAX_LEASE_PROBE_EPOCHS, MAX_LEASE_TTL_MS, MAX_LEASES_PER_MEMBER,
        MIN_LEASE_TTL_MS,
    };
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let (mut ra, mut rb) = (Raw::open(&broker.url).await, Raw::open(&broker.url).await);
    hello_raw(&mut ra, &alice).await;
    hello_raw(&mut rb, &bob).await;
    let malformed = ErrorCode::Malformed;

    // A task, and acts on it that are not acts.
    let task = seal_as(
        &alice,
        CoordKind::Task,
        CoordId::random(),
        1,
        "{\"title\":\"t\"}",
    );
    assert_eq!(stored(&mut ra, put(&task)).await.cseq, 1);
    let note = seal_as(&bob, CoordKind::Memory, task.id, 2, NOTE);
    assert_eq!(refused(&mut rb, act(&note, false)).await.0, malformed);
    let rev1 = seal_as(&bob, CoordKind::TaskClaim, task.id, 1, "{}");
    assert_eq!(refused(&mut rb, act(&rev1, false)).await.0, malformed);
    // Alice's claim sent on Bob's connection; a claim with a bad signature.
    let hers = seal_as(&alice, CoordKind::TaskClaim, task.id, 2, "{}");
    assert_eq!(
        refused(&mut rb, act(&hers, false)).await.0,
        ErrorCode::Forbidden
    );
    let mut tampered = seal_as(&bob, CoordKind::TaskClaim, task.id, 2, "{}");
    tampered.ciphertext[0] ^= 1;
    assert_eq!(
        refused(&mut rb, act(&tampered, false)).await.0,
        ErrorCode::BadSignature
    );
    let nowhere = seal_as(&bob, CoordKind::TaskClaim, CoordId::random(), 2, "{}");
    assert_eq!(
        refused(&mut rb, act(&nowhere, false)).await.0,
        ErrorCode::NotFound
    );
    // Acts, entries and leases are not put as plain objects.
    for kind in [CoordKind::TaskClaim, CoordKind::State, CoordKind::Lease] {
        let o = seal_as(&bob, kind, CoordId::random(), 1, "{}");
        assert_eq!(refused(&mut rb, put(&o)).await.0, malformed, "{kind}");
    }

    // State: only entries, at a version a write makes, by their signer.
    let as_note = seal_as(&bob, CoordKind::Memory, CoordId::random(), 1, NOTE);
    assert_eq!(refused(&mut rb, state_set(&as_note)).await.0, malformed);
    let alices_entry = seal_as(&alice, CoordKind::State, CoordId::random(), 1, "{}");
    assert_eq!(
        refused(&mut rb, state_set(&alices_entry)).await.0,
        ErrorCode::Forbidden
    );

    // Leases: kind, length, tag and probe sizes, signer.
    let lease = seal_as(&bob, CoordKind::Lease, CoordId::random(), 1, "{}");
    let (tags, probe) = (LEASE_TAGS_PER_PATH, LEASE_PROBES_PER_PATH);
    let as_note = seal_as(&bob, CoordKind::Memory, CoordId::random(), 1, NOTE);
    for (frame, why) in [
        (lease_take(&as_note, 60_000, tags, probe), "not a lease"),
        (
            lease_take(&lease, MIN_LEASE_TTL_MS - 1, tags, probe),
            "too short",
        ),
        (
            lease_take(&lease, MAX_LEASE_TTL_MS + 1, tags, probe),
            "too long",
        ),
        (lease_take(&lease, 60_000, 0, probe), "no tags"),
        (
            lease_take(&lease, 60_000, tags - 1, probe),
            "a path's tags cut",
        ),
        (
            lease_take(&lease, 60_000, tags * (MAX_LEASE_PATHS + 1), probe),
            "too many paths",
        ),
        (lease_take(&lease, 60_000, tags, 0), "no probe"),
        (
            lease_take(&lease, 60_000, tags, probe + 1),
            "a probe not whole",
        ),
        (
            lease_take(
                &lease,
                60_000,
                tags,
                probe * MAX_LEASE_PATHS * (MAX_LEASE_PROBE_EPOCHS + 1),
            ),
            "a probe over too many epochs",
        ),
    ] {
        assert_eq!(refused(&mut rb, frame).await.0, malformed, "{why}");
    }
    let alices_lease = seal_as(&alice, CoordKind::Lease, CoordId::random(), 1, "{}");
    assert_eq!(
        refused(&mut rb, lease_take(&alices_lease, 60_000, tags, probe))
            .await
            .0,
        ErrorCode::Forbidden
    );
    for (ttl_ms, count) in [
        (0, 1),
        (MAX_LEASE_TTL_MS + 1, 1),
        (60_000, MAX_LEASES_PER_MEMBER + 1),
    ] {
        let renew = ClientFrame::LeaseRenew(claudemesh_proto::frames::LeaseRenew {
            req: None,
            ids: (0..count).map(|_| CoordId::random()).collect(),
            ttl_ms,
        });
        assert_eq!(
            refused(&mut rb, renew).await.0,
            malformed,
            "{ttl_ms} {count}"
        );
    }
    // Renewing what this member does not hold renews nothing.
    rb.send(&ClientFrame::LeaseRenew(
        claudemesh_proto::frames::LeaseRenew {
            req: None,
            ids: vec![CoordId::random()],
            ttl_ms: 60_000,
        },
    ))
    .await;
    match answer(&mut rb).await {
        BrokerFrame::LeaseRenewed(r) => assert!(r.ids.is_empty(), "{r:?}"),
        other => panic!("expected lease_renewed, got {other:?}"),
    }

    // Nothing moved: the task is as created, no entry, no lease.
    let tasks = page_of(&mut ra, CoordKind::Task).await;
    assert_eq!(tasks.changes.len(), 1);
    assert!(tasks.changes[0].act.is_none(), "{tasks:?}");
    assert!(page_of(&mut ra, CoordKind::State).await.changes.is_empty());
    assert!(page_of(&mut ra, CoordKind::Lease).await.changes.is_empty());
    // And a well-formed claim still works.
    let claim = seal_as(&bob, CoordKind::TaskClaim, task.id, 2, "{}");
    rb.send(&act(&claim, false)).await;
    match answer(&mut rb).await {
        BrokerFrame::TaskState(s) => assert!(s.ok, "{s:?}"),
        other => panic!("expected task_state, got {other:?}"),
    }
    broker.stop().await;
}
both!(bad_coordination_writes_are_refused_and_change_nothing);

/// `seal_as` for another scope (the broker cannot check the key, so any
/// key will do for what it refuses).
fn seal_in(
    peer: &Peer,
    scope: &str,
    kind: CoordKind,
    id: CoordId,
    rev: u64,
    epoch: u64,
) -> CoordObject {
    let (me, _, key, _) = sealer(peer);
    CoordObject::seal_in(
        &me,
        scope,
        &key,
        epoch,
        CoordFacts {
            kind,
            id,
            rev,
            at_ms: now_ms(),
        },
        b"{}",
    )
    .unwrap()
}

/// A task sealed to a topic, at the broker: members outside the topic are
/// sent it withheld (its id only) and cannot act on it or seal to it; an
/// act must carry the task's scope; a note cannot be sealed to a topic; an
/// unknown topic and a stale key epoch are refused. A member of the topic
/// is sent it whole and may claim it.
async fn topic_tasks_are_refused_to_outsiders(backend: Backend) {
    use claudemesh_client::topics;
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;
    let a = alice.connect().await;
    topics::topic_create(&a, "secret", true, "").await.unwrap();
    topics::topic_add(&a, "secret", "bob").await.unwrap();
    let task = a
        .task_create(claudemesh_client::tasks::TaskDraft {
            title: "rotate the vault key".into(),
            topic: Some("secret".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    a.close().await;
    let (mut rb, mut rc) = (Raw::open(&broker.url).await, Raw::open(&broker.url).await);
    hello_raw(&mut rb, &bob).await;
    hello_raw(&mut rc, &carol).await;

    // Carol, outside #secret, is sent its id only.
    let page = page_of(&mut rc, CoordKind::Task).await;
    let change = page.changes.iter().find(|c| c.id == task.id).unwrap();
    assert!(change.withheld && change.object.is_none(), "{change:?}");
    // She cannot act on it, sealed to the topic or to the mesh.
    let (code, msg) = refused(
        &mut rc,
        act(
            &seal_in(&carol, "#secret", CoordKind::TaskClaim, task.id, 2, 0),
            false,
        ),
    )
    .await;
    assert_eq!(code, ErrorCode::Forbidden, "{msg}");
    let (code, msg) = refused(
        &mut rc,
        act(
            &seal_in(&carol, "mesh", CoordKind::TaskClaim, task.id, 2, 1),
            false,
        ),
    )
    .await;
    assert_eq!(code, ErrorCode::Malformed, "{msg}");
    // The refusal does not name the topic a withheld task belongs to.
    assert!(!msg.contains("secret"), "{msg}");
    // Nor create one there; a topic nobody made is not found.
    for (topic, want) in [
        ("#secret", ErrorCode::Forbidden),
        ("#nowhere", ErrorCode::NotFound),
    ] {
        let task = seal_in(&carol, topic, CoordKind::Task, CoordId::random(), 1, 0);
        let (code, msg) = refused(&mut rc, put(&task)).await;
        assert_eq!(code, want, "{topic}: {msg}");
    }
    // Only tasks are sealed to a topic: a note there (signed so) is
    // malformed.
    let mut note = seal(&bob, CoordId::random(), NOTE);
    note.scope = "#secret".into();
    let (me, ..) = sealer(&bob);
    note.sig = me.key.sign(&note.signed_bytes());
    assert_eq!(refused(&mut rb, put(&note)).await.0, ErrorCode::Malformed);

    // Bob, in #secret, is sent it whole; an act under a key epoch the
    // topic is not at needs a reseal; at its own, his claim applies.
    let page = page_of(&mut rb, CoordKind::Task).await;
    let change = page.changes.iter().find(|c| c.id == task.id).unwrap();
    assert!(!change.withheld && change.object.is_some(), "{change:?}");
    let (code, _) = refused(
        &mut rb,
        act(
            &seal_in(&bob, "#secret", CoordKind::TaskClaim, task.id, 2, 7),
            false,
        ),
    )
    .await;
    assert_eq!(code, ErrorCode::RekeyRequired);
    rb.send(&act(
        &seal_in(&bob, "#secret", CoordKind::TaskClaim, task.id, 2, 0),
        false,
    ))
    .await;
    match answer(&mut rb).await {
        BrokerFrame::TaskState(s) => assert!(s.ok, "{s:?}"),
        other => panic!("expected task_state, got {other:?}"),
    }
    broker.stop().await;
}
both!(topic_tasks_are_refused_to_outsiders);

//! Team memory through the SDK (`claudemesh_client::memory`): a note one
//! member remembers is found by another's search (a word of it, its tags),
//! with its author; forgetting it takes it from every device, and only its
//! author (or an owner or admin) may; a member who joined after a rekey
//! reads notes written before it came, through the coordination key ring
//! (a note it cannot open yet waits, sealed, for a link it trusts; a link
//! from a member it does not trust for that epoch is ignored, and a wrong
//! link from one it does trust hides nothing once a right one exists); a
//! departed author's notes stay, marked departed; a note whose author this
//! device's log did not know yet is not lost.

use claudemesh_client::client::now_ms;
use claudemesh_client::moderation;
use claudemesh_client::{ClientError, MeshClient};
use claudemesh_crypto::SymmetricKey;
use claudemesh_crypto::coord::{RingLink, coord_key};
use claudemesh_crypto::envelope::{Priority, Target};
use claudemesh_crypto::log::RemoveKind;
use claudemesh_proto::frames::CoordRingPut;
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};

use crate::both;
use crate::messaging::hello_raw;
use crate::support::*;

fn tags(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| (*s).to_owned()).collect()
}

pub(crate) async fn texts(c: &MeshClient, query: &str) -> Vec<String> {
    c.memory_recall(query, &[], 10)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.text)
        .collect()
}

async fn a_note_is_found_by_a_word_and_forgotten_for_everyone(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let a = alice.connect().await;
    let note = a
        .memory_remember(
            "  the staging database listens on port 5433 ",
            &tags(&["Staging", "db"]),
        )
        .await
        .unwrap();
    assert_eq!(note.text, "the staging database listens on port 5433");
    assert_eq!(note.tags, tags(&["staging", "db"]));
    assert_eq!(note.author_name.as_deref(), Some("alice"));
    assert!(!note.departed);
    a.memory_remember("deploys freeze on Fridays", &tags(&["ops"]))
        .await
        .unwrap();

    let b = bob.connect().await;
    let found = b.memory_recall("staging port", &[], 10).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let got = &found[0];
    assert_eq!(got.id, note.id);
    assert_eq!(got.text, note.text);
    assert_eq!(got.tags, note.tags);
    assert_eq!(got.author, note.author);
    assert_eq!(got.author_session, note.author_session);
    assert_eq!(got.author_name.as_deref(), Some("alice"));
    assert!(!got.departed);
    // Prefixes of words, and tags, match; a tag filter needs every tag.
    assert_eq!(texts(&b, "stag").await, vec![note.text.clone()]);
    assert_eq!(texts(&b, "ops").await, vec!["deploys freeze on Fridays"]);
    let by_tag = b.memory_recall("port fridays", &tags(&["DB"]), 10).await;
    assert_eq!(by_tag.unwrap().len(), 1);
    let none = b.memory_recall("port", &tags(&["ops"]), 10).await.unwrap();
    assert!(none.is_empty(), "{none:?}");
    let e = b.memory_recall(" ?! ", &[], 10).await.unwrap_err();
    assert!(matches!(e, ClientError::BadInput(_)), "{e}");
    // Newest first.
    let listed: Vec<String> = b
        .memory_list(&[], 10)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.text)
        .collect();
    assert_eq!(listed, vec!["deploys freeze on Fridays", &note.text]);
    // Nothing new since.
    let again = b.memory_sync().await.unwrap();
    assert_eq!((again.added, again.forgotten, again.unreadable), (0, 0, 0));

    // Bob may not forget Alice's note; she may, by a prefix of its id.
    let hex = note.id.to_hex();
    let e = b.memory_forget(&hex[..6]).await.unwrap_err();
    assert!(matches!(e, ClientError::NotAllowed(_)), "{e}");
    assert_eq!(a.memory_forget(&hex[..8]).await.unwrap(), note.id);
    assert!(texts(&b, "staging port").await.is_empty());
    assert!(texts(&a, "staging").await.is_empty());
    let e = a.memory_forget(&hex[..8]).await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound(_)), "{e}");
    // A fresh device of Bob's (an empty copy) gets the one note left.
    let b2 = {
        b.close().await;
        let db = bob.home.state_db_path();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        bob.connect().await
    };
    let sync = b2.memory_sync().await.unwrap();
    assert_eq!((sync.added, sync.unreadable), (1, 0), "{sync:?}");
    assert_eq!(texts(&b2, "fridays").await.len(), 1);
    b2.close().await;
    a.close().await;
    broker.stop().await;
}
both!(a_note_is_found_by_a_word_and_forgotten_for_everyone);

async fn a_later_joiner_reads_older_notes_through_the_ring(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;
    let c = carol.connect().await;
    c.memory_remember("carol's runbook is in ops/runbook.md", &[])
        .await
        .unwrap();
    c.close().await;
    let a = alice.connect().await;
    a.memory_remember("the pager rota lives in the wiki", &tags(&["oncall"]))
        .await
        .unwrap();
    // A kick, and the rekey that follows it: epoch 1.
    let removed = moderation::remove(&a, "carol", RemoveKind::Kick)
        .await
        .unwrap();
    assert_eq!(removed.epoch, 1);
    // As the CLI does on connecting: her name, for members of epoch 1.
    assert!(a.ensure_profile().await.unwrap());
    a.memory_remember("deploys freeze on fridays", &[])
        .await
        .unwrap();
    a.close().await;

    // Dave joins at epoch 1: he holds no key of epoch 0.
    let dave = joiner(&broker, &alice, "dave").await;
    let d = dave.connect().await;
    assert!(d.with_state(|s| s.root(0).is_none() && s.root(1).is_some()));
    let sync = d.memory_sync().await.unwrap();
    assert_eq!((sync.added, sync.unreadable), (3, 0), "{sync:?}");
    let old = d.memory_recall("pager rota", &[], 10).await.unwrap();
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(old[0].text, "the pager rota lives in the wiki");
    assert_eq!(old[0].tags, tags(&["oncall"]));
    assert_eq!(old[0].author_name.as_deref(), Some("alice"));
    assert_eq!(
        texts(&d, "fridays").await,
        vec!["deploys freeze on fridays"]
    );
    // Carol's note stays, marked: she is no longer a member.
    let hers = d.memory_recall("runbook", &[], 10).await.unwrap();
    assert_eq!(hers.len(), 1, "{hers:?}");
    assert!(hers[0].departed);
    // Bob, who held both keys all along, reads the same.
    let b = bob.connect().await;
    assert_eq!(b.memory_list(&[], 10).await.unwrap().len(), 3);
    b.close().await;
    d.close().await;
    broker.stop().await;
}
both!(a_later_joiner_reads_older_notes_through_the_ring);

async fn a_note_waits_for_a_trusted_link(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let mut carol = joiner(&broker, &alice, "carol").await;
    let eve = joiner(&broker, &alice, "eve").await;
    let a = alice.connect().await;
    a.memory_remember("the vpn profile is in the shared vault", &[])
        .await
        .unwrap();
    a.close().await;
    // Carol leaves; Bob's next post to everyone writes the new key (epoch
    // 1), and no ring link: he has not used team memory since.
    let c = carol.connect().await;
    moderation::mesh_leave(&mut carol.home, c).await.unwrap();
    let b = bob.connect().await;
    b.send(Target::Broadcast, b"hello all", Priority::Next, None)
        .await
        .unwrap();
    let bob_key = b.with_state(|s| s.my_key());
    b.close().await;

    // Eve holds both keys but neither wrote that rekey nor administers the
    // mesh: the broker refuses her link (to a wrong key), as every reader
    // would distrust it.
    let e = eve.connect().await;
    e.sync_log().await.unwrap();
    let forged = e.with_state(|s| {
        assert_eq!(s.roster().epoch(), 1);
        assert_eq!(s.roster().key_epochs()[&1].author, bob_key);
        let newer = coord_key(s.root(1).unwrap(), &s.mesh_id());
        RingLink::seal(s.session(), 1, &newer, &SymmetricKey::generate(), now_ms())
    });
    e.close().await;
    let mut raw = Raw::open(&broker.url).await;
    hello_raw(&mut raw, &eve).await;
    raw.send(&ClientFrame::CoordRingPut(CoordRingPut {
        req: Some("r".into()),
        link: Box::new(forged),
    }))
    .await;
    loop {
        match raw.recv().await.unwrap() {
            BrokerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::Forbidden, "{e:?}");
                break;
            }
            BrokerFrame::Presence(_) | BrokerFrame::LogUpdate(_) | BrokerFrame::CoordChanged(_) => {
                continue;
            }
            other => panic!("expected forbidden, got {other:?}"),
        }
    }

    // Dave joins at epoch 1: the note waits, sealed, not shown.
    let dave = joiner(&broker, &alice, "dave").await;
    let d = dave.connect().await;
    let sync = d.memory_sync().await.unwrap();
    assert_eq!((sync.added, sync.unreadable), (0, 0), "{sync:?}");
    assert!(texts(&d, "vpn").await.is_empty());
    // Bob, who wrote the rekey, writes its link on his next sync.
    let b = bob.connect().await;
    b.memory_sync().await.unwrap();
    b.close().await;
    let sync = d.memory_sync().await.unwrap();
    assert_eq!((sync.added, sync.unreadable), (1, 0), "{sync:?}");
    assert_eq!(
        texts(&d, "vault").await,
        vec!["the vpn profile is in the shared vault"]
    );
    d.close().await;
    broker.stop().await;
}
both!(a_note_waits_for_a_trusted_link);

/// Stores `link` through a raw connection of `peer`'s session (its SDK
/// client closed), as a member who may link that epoch.
async fn put_link_raw(broker: &TestBroker, peer: &Peer, link: RingLink) {
    let mut raw = Raw::open(&broker.url).await;
    hello_raw(&mut raw, peer).await;
    raw.send(&ClientFrame::CoordRingPut(CoordRingPut {
        req: Some("r".into()),
        link: Box::new(link),
    }))
    .await;
    loop {
        match raw.recv().await.unwrap() {
            BrokerFrame::CoordRingStored(s) => {
                assert_eq!(s.req.as_deref(), Some("r"));
                break;
            }
            BrokerFrame::Presence(_) | BrokerFrame::LogUpdate(_) | BrokerFrame::CoordChanged(_) => {
                continue;
            }
            other => panic!("expected coord_ring_stored, got {other:?}"),
        }
    }
}

/// A link of `epoch` signed by `c`'s session that holds a random key, not
/// the key of `epoch − 1`.
fn wrong_link(c: &MeshClient, epoch: u64) -> RingLink {
    c.with_state(|s| {
        let newer = coord_key(s.root(epoch).unwrap(), &s.mesh_id());
        RingLink::seal(
            s.session(),
            epoch,
            &newer,
            &SymmetricKey::generate(),
            now_ms(),
        )
    })
}

async fn a_note_by_a_member_who_joined_since_is_found_and_named(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let b = bob.connect().await;
    let sync = b.memory_sync().await.unwrap();
    assert_eq!((sync.added, sync.unreadable), (0, 0), "{sync:?}");
    // Dave joins after Bob's last sync of the log, and writes a note.
    let dave = joiner(&broker, &alice, "dave").await;
    let d = dave.connect().await;
    let note = d
        .memory_remember("dave's first week: read the onboarding doc", &[])
        .await
        .unwrap();
    let dave_key = d.with_state(|s| s.my_key());
    d.close().await;
    let sync = b.memory_sync().await.unwrap();
    assert_eq!((sync.added, sync.unreadable), (1, 0), "{sync:?}");
    let found = b.memory_recall("onboarding", &[], 10).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(*found[0].author.as_key(), dave_key);
    // One note, by its id or a unique prefix, as opened here.
    let hex = note.id.to_hex();
    let got = b.memory_note(&hex[..5]).await.unwrap();
    assert_eq!((got.id, &got.text), (note.id, &note.text));
    assert_eq!(*got.author.as_key(), dave_key);
    assert_eq!(b.memory_note(&hex).await.unwrap().id, note.id);
    let e = b.memory_note("abc").await.unwrap_err();
    assert!(matches!(e, ClientError::BadInput(_)), "{e}");
    let other = if hex.starts_with('0') { "1" } else { "0" }.repeat(32);
    let e = b.memory_note(&other).await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound(_)), "{e}");
    b.close().await;
    broker.stop().await;
}
both!(a_note_by_a_member_who_joined_since_is_found_and_named);

async fn a_wrong_link_from_a_trusted_signer_hides_nothing(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let mut carol = joiner(&broker, &alice, "carol").await;
    let mut frank = joiner(&broker, &alice, "frank").await;
    let a = alice.connect().await;
    a.memory_remember("the release checklist is pinned in #ops", &[])
        .await
        .unwrap();
    a.close().await;
    // Carol leaves; Bob's next post to everyone writes epoch 1.
    let c = carol.connect().await;
    moderation::mesh_leave(&mut carol.home, c).await.unwrap();
    let b = bob.connect().await;
    b.send(Target::Broadcast, b"hello all", Priority::Next, None)
        .await
        .unwrap();
    b.close().await;

    // Alice, an owner (trusted for every epoch), links epoch 1 to a wrong
    // key before anyone links it right.
    let a = alice.connect().await;
    a.sync_log().await.unwrap();
    let bad = wrong_link(&a, 1);
    a.close().await;
    put_link_raw(&broker, &alice, bad).await;

    // Dave joins at epoch 1: the note does not open with the key Alice's
    // link gives. It is kept, not shown, counted once.
    let dave = joiner(&broker, &alice, "dave").await;
    let d = dave.connect().await;
    assert!(d.with_state(|s| s.root(0).is_none()));
    let sync = d.memory_sync().await.unwrap();
    assert_eq!((sync.added, sync.unreadable), (0, 1), "{sync:?}");
    assert!(texts(&d, "checklist").await.is_empty());
    assert!(d.memory_list(&[], 10).await.unwrap().is_empty());
    let sync = d.memory_sync().await.unwrap();
    assert_eq!((sync.added, sync.unreadable), (0, 0), "{sync:?}");

    // Bob wrote that rekey: his sync writes his own link, though a trusted
    // one exists (it is wrong). Dave's same client then reads the note:
    // the wrong key was not kept.
    let b = bob.connect().await;
    b.memory_sync().await.unwrap();
    let sync = d.memory_sync().await.unwrap();
    assert_eq!((sync.added, sync.unreadable), (1, 0), "{sync:?}");
    assert_eq!(
        texts(&d, "checklist").await,
        vec!["the release checklist is pinned in #ops"]
    );
    let later = d
        .memory_remember("epoch one: the staging cluster moved", &[])
        .await
        .unwrap();
    d.close().await;

    // Now the rekey author's own link is the wrong one: Frank leaves, Bob
    // writes epoch 2 and links it to a wrong key; Alice's sync finds no
    // right link of epoch 2 and writes hers.
    let f = frank.connect().await;
    moderation::mesh_leave(&mut frank.home, f).await.unwrap();
    b.send(Target::Broadcast, b"hello again", Priority::Next, None)
        .await
        .unwrap();
    assert_eq!(b.with_state(|s| s.roster().epoch()), 2);
    let bad = wrong_link(&b, 2);
    b.close().await;
    put_link_raw(&broker, &bob, bad).await;
    let a = alice.connect().await;
    a.memory_sync().await.unwrap();
    a.close().await;

    // Erin joins at epoch 2: Bob's link is tried first and gives nothing
    // that opens; Alice's does, for both notes, down the ring.
    let erin = joiner(&broker, &alice, "erin").await;
    let e = erin.connect().await;
    assert!(e.with_state(|s| s.root(1).is_none() && s.root(2).is_some()));
    let sync = e.memory_sync().await.unwrap();
    assert_eq!((sync.added, sync.unreadable), (2, 0), "{sync:?}");
    assert_eq!(texts(&e, "checklist").await.len(), 1);
    let got = e.memory_note(&later.id.to_hex()).await.unwrap();
    assert_eq!(got.text, later.text);
    e.close().await;
    broker.stop().await;
}
both!(a_wrong_link_from_a_trusted_signer_hides_nothing);

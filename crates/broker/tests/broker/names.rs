//! Names a malicious member chooses (TM3, TM8): a session name is
//! self-chosen and encrypted, so `alice@api` reaches only a session of the
//! member whose verified display name is `alice`.

use std::time::Duration;

use claudemesh_client::error::SessionNameProblem;
use claudemesh_client::mesh::SessionProfile;
use claudemesh_client::{ClientError, ConnectOptions, Event, MeshClient, SessionChoice};
use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::{Priority, Target};

use crate::both;
use crate::support::{Backend, joiner, next_message, owner, start};

/// A session that publishes `name` in its (encrypted) presence.
fn named(name: &str) -> ConnectOptions {
    ConnectOptions {
        session: SessionChoice::Named(format!("mcp/{name}")),
        profile: SessionProfile {
            name: Some(name.into()),
            ..SessionProfile::default()
        },
        ..ConnectOptions::default()
    }
}

fn session_key(c: &MeshClient) -> PublicKey {
    c.with_state(|s| s.session().public())
}

/// Asks for the peer list until `f` holds (presence travels a moment after
/// a connection opens or closes).
async fn peers_until(c: &MeshClient, f: impl Fn(&[claudemesh_client::mesh::PeerView]) -> bool) {
    for _ in 0..200 {
        if f(&c.peers().await.expect("peers")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the peer list never matched: {:?}", c.peers().await);
}

/// Asserts no message reached `events` (a ping round trip later).
async fn nothing_arrived(c: &MeshClient, events: &mut tokio::sync::broadcast::Receiver<Event>) {
    c.ping().await.expect("ping");
    tokio::time::sleep(Duration::from_millis(100)).await;
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e, Event::Message(_)),
            "a message reached the squatter: {e:?}"
        );
    }
}

async fn a_squatted_session_name_never_receives(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let mallory = joiner(&broker, &alice, "mallory").await;

    let a1 = alice.connect_with(named("alice@api")).await;
    // Mallory runs `claudemesh mcp --name alice@api`.
    let m1 = mallory.connect_with(named("alice@api")).await;
    let mut m_events = m1.events();
    let b = bob.connect().await;
    let (alice_session, mallory_session) = (session_key(&a1), session_key(&m1));
    peers_until(&b, |ps| ps.iter().filter(|p| p.online).count() >= 3).await;

    // Both publish the name; only alice's is alice's.
    let peers = b.peers().await.expect("peers");
    let session = |member: &str| {
        peers
            .iter()
            .find(|p| p.name == member)
            .and_then(|p| p.sessions.first())
            .cloned()
            .unwrap_or_else(|| panic!("{member}'s session in {peers:?}"))
    };
    assert!(!session("alice").foreign_name);
    assert!(
        session("mallory").foreign_name,
        "mallory's alice@api is not hers"
    );

    // bob resolves alice@api: alice's session, never mallory's, whatever
    // the case.
    for typed in ["alice@api", "ALICE@api", " alice@API "] {
        assert_eq!(
            b.resolve(typed).await.expect("alice's session"),
            Target::Session(alice_session),
            "{typed:?}"
        );
    }
    let mut a_events = a1.events();
    let to = b.resolve("alice@api").await.expect("resolve");
    b.send(to, b"the password is hunter2", Priority::Next, None)
        .await
        .expect("send");
    assert_eq!(
        next_message(&mut a_events).await.body,
        "the password is hunter2"
    );
    nothing_arrived(&m1, &mut m_events).await;

    // Only the squatter online: a clear error, nothing sent.
    a1.close().await;
    peers_until(&b, |ps| {
        ps.iter()
            .find(|p| p.name == "alice")
            .is_some_and(|p| p.sessions.is_empty())
    })
    .await;
    let e = b.resolve("alice@api").await.expect_err("alice is offline");
    match &e {
        ClientError::SessionName {
            problem: SessionNameProblem::NotOnline { member },
            ..
        } => assert!(member.starts_with("alice ("), "{e}"),
        other => panic!("expected NotOnline, got {other:?}"),
    }
    assert!(
        e.to_string().contains("no session of that name online"),
        "{e}"
    );
    // Mallory's own name for it does not reach it either: a name that is
    // not its member's is matched by key prefix only.
    assert!(matches!(
        b.resolve("mallory@api").await,
        Err(ClientError::SessionName {
            problem: SessionNameProblem::NotOnline { .. },
            ..
        })
    ));
    assert!(matches!(
        b.resolve("zed@api").await,
        Err(ClientError::SessionName {
            problem: SessionNameProblem::NoMember { .. },
            ..
        })
    ));
    assert_eq!(
        b.resolve(&mallory_session.to_hex()[..16])
            .await
            .expect("by key"),
        Target::Session(mallory_session)
    );
    nothing_arrived(&m1, &mut m_events).await;

    // A member whose display name is "alice@api" is no way around it: with
    // alice in the mesh the name is ambiguous, never a silent choice.
    let trudy = joiner(&broker, &alice, "alice@api").await;
    b.sync_log().await.expect("sync");
    let e = b.resolve("alice@api").await.expect_err("ambiguous");
    assert!(matches!(e, ClientError::AmbiguousPeer { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("the member alice@api") && text.contains("a session of alice ("),
        "{text}"
    );
    let _ = trudy;

    m1.close().await;
    b.close().await;
    broker.stop().await;
}
both!(a_squatted_session_name_never_receives);

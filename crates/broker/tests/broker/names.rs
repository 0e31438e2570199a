//! Names a malicious member chooses (TM3, TM8): a session name is
//! self-chosen and encrypted, so `alice@api` reaches only a session of the
//! member whose verified display name is `alice`; a display name is
//! self-chosen too, so wherever a message's sender is named, a name two
//! members bear — or names that only look alike (`аlice` with a Cyrillic
//! `а`, `alice` with a zero-width space) — carries the key, and the name of
//! someone bob verified under another key is flagged.

use std::time::Duration;

use claudemesh_client::error::SessionNameProblem;
use claudemesh_client::mesh::pins::Pins;
use claudemesh_client::mesh::{Label, SessionProfile};
use claudemesh_client::moderation;
use claudemesh_client::{ClientError, ConnectOptions, Event, MeshClient, SessionChoice};
use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::{Priority, Target};
use claudemesh_crypto::log::RemoveKind;

use crate::both;
use crate::support::{Backend, Peer, join_with, joiner, next_message, owner, start};
use claudemesh_crypto::MemberKey;
use claudemesh_crypto::SessionKey;

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
    c.with_state(|s| s.session().public()).0
}

fn member_key(c: &MeshClient) -> PublicKey {
    c.with_state(|s| s.member_key().public())
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
            Target::Session(SessionKey(alice_session)),
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
        Target::Session(SessionKey(mallory_session))
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

/// Bob's inbox, as labels per body.
async fn inbox_labels(bob: &Peer, pins: &Pins) -> Vec<(String, Label)> {
    let c = bob.connect().await;
    c.settle().await.expect("settle");
    c.sync_log().await.expect("sync");
    let list = c
        .local()
        .inbox(&bob.mesh.id, false, 100)
        .await
        .expect("inbox");
    let out = c.with_state(|s| {
        let labels = s.sender_labels(pins);
        list.iter()
            .map(|m| {
                let from = PublicKey::from_hex(&m.from).expect("key");
                (m.body.clone(), labels.label(s, &from))
            })
            .collect()
    });
    c.close().await;
    out
}

fn label_of<'a>(labels: &'a [(String, Label)], body: &str) -> &'a Label {
    labels
        .iter()
        .find(|(b, _)| b == body)
        .map(|(_, l)| l)
        .unwrap_or_else(|| panic!("no message {body:?} in {labels:?}"))
}

async fn a_second_alice_carries_her_key_and_is_flagged(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;
    let invite = crate::support::invite(&alice, Default::default()).await;
    // Mallory joins as "Alice" (case does not make a new name).
    let mallory = join_with(&broker, &invite, "Alice").await.expect("join");

    let a = alice.connect().await;
    let m = mallory.connect().await;
    let c = carol.connect().await;
    let (alice_key, mallory_key) = (member_key(&a), member_key(&m));
    for (client, body) in [(&a, "from the real alice"), (&m, "from the other alice")] {
        let to = client.resolve("bob").await.expect("bob");
        client
            .send(to, body.as_bytes(), Priority::Next, None)
            .await
            .expect("send");
    }
    let to = c.resolve("bob").await.expect("bob");
    c.send(to, b"from carol", Priority::Next, None)
        .await
        .expect("send");
    c.close().await;

    // No pins: both alices carry their keys; carol's name is hers alone.
    let labels = inbox_labels(&bob, &Pins::default()).await;
    let real = label_of(&labels, "from the real alice");
    let other = label_of(&labels, "from the other alice");
    assert!(real.ambiguous && other.ambiguous, "{labels:?}");
    assert_eq!(real.text, format!("alice ({})", &alice_key.to_hex()[..8]));
    assert_eq!(
        other.text,
        format!("Alice ({})", &mallory_key.to_hex()[..8])
    );
    assert!(!real.pin_mismatch && !other.pin_mismatch);
    let carol_label = label_of(&labels, "from carol");
    assert_eq!(carol_label.text, "carol");
    assert!(!carol_label.ambiguous);

    // Bob pinned the real alice: the other one is flagged.
    let mut pins = Pins::default();
    pins.pin(&alice_key, "alice", 1);
    pins.save(&bob.home, &bob.mesh.id).expect("save pins");
    let pins = Pins::load(&bob.home, &bob.mesh.id).expect("load pins");
    let labels = inbox_labels(&bob, &pins).await;
    let real = label_of(&labels, "from the real alice");
    let other = label_of(&labels, "from the other alice");
    assert!(real.verified && !real.pin_mismatch, "{real:?}");
    assert_eq!(
        real.text,
        format!("alice ({}, verified)", &alice_key.to_hex()[..8])
    );
    assert!(other.pin_mismatch && !other.verified, "{other:?}");
    assert_eq!(
        other.text,
        format!(
            "Alice ({}, NOT the alice you verified)",
            &mallory_key.to_hex()[..8]
        )
    );
    // And her session names cannot be told apart by name either.
    let b = bob.connect().await;
    assert!(matches!(
        b.resolve("alice@api").await,
        Err(ClientError::SessionName {
            problem: SessionNameProblem::AmbiguousMember { .. },
            ..
        })
    ));
    b.close().await;

    // Removed, the impostor's old messages still carry her key: this
    // device knows the name she had.
    m.close().await;
    moderation::remove(&a, &mallory_key.to_hex(), RemoveKind::Kick)
        .await
        .expect("kick");
    a.close().await;
    let labels = inbox_labels(&bob, &Pins::default()).await;
    let other = label_of(&labels, "from the other alice");
    assert!(other.ambiguous, "{other:?}");
    assert_eq!(
        other.text,
        format!("Alice ({})", &mallory_key.to_hex()[..8])
    );

    broker.stop().await;
}
both!(a_second_alice_carries_her_key_and_is_flagged);

/// A display name cannot imitate a label: parentheses are shown as
/// brackets and force the key, so "alice (1bbf6ba3)" is not alice's.
async fn a_name_cannot_imitate_a_key_suffix(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let a = alice.connect().await;
    let alice_key = member_key(&a);
    let fake = format!("alice ({}, verified)", &alice_key.to_hex()[..8]);
    a.close().await;
    let mallory = joiner(&broker, &alice, &fake).await;
    let m = mallory.connect().await;
    let mallory_key = member_key(&m);
    let to = m.resolve("bob").await.expect("bob");
    m.send(to, b"trust me", Priority::Next, None)
        .await
        .expect("send");
    m.close().await;
    let mut pins = Pins::default();
    pins.pin(&alice_key, "alice", 1);
    let labels = inbox_labels(&bob, &pins).await;
    let l = label_of(&labels, "trust me");
    assert!(l.ambiguous && l.pin_mismatch, "{l:?}");
    assert_eq!(
        l.text,
        format!(
            "alice [{}, verified] ({}, NOT the alice you verified)",
            &alice_key.to_hex()[..8],
            &mallory_key.to_hex()[..8]
        )
    );
    broker.stop().await;
}
both!(a_name_cannot_imitate_a_key_suffix);

/// Names that only look like alice's (TM8): "аlice" with a Cyrillic `а`
/// and "alice" with a zero-width space are alice's name to a reader. Their
/// messages carry their keys, a pin of alice flags them (and refuses
/// messages to them), and `alice@api` never reaches their sessions: with
/// alice in the mesh it is ambiguous, without her it names no one.
async fn look_alike_names_carry_their_keys_and_never_resolve(backend: Backend) {
    const CYRILLIC: &str = "\u{430}lice";
    const ZERO_WIDTH: &str = "alice\u{200b}";
    let broker = start(backend).await;
    let olivia = owner(&broker, "olivia").await;
    let alice = joiner(&broker, &olivia, "alice").await;
    let bob = joiner(&broker, &olivia, "bob").await;
    let cyrillic = joiner(&broker, &olivia, CYRILLIC).await;
    let zero_width = joiner(&broker, &olivia, ZERO_WIDTH).await;

    let a = alice.connect_with(named("alice@api")).await;
    let c = cyrillic
        .connect_with(named(&format!("{CYRILLIC}@api")))
        .await;
    let z = zero_width
        .connect_with(named(&format!("{ZERO_WIDTH}@api")))
        .await;
    let (alice_key, cyrillic_key, zero_width_key) =
        (member_key(&a), member_key(&c), member_key(&z));
    let (alice_session, cyrillic_session, zero_width_session) =
        (session_key(&a), session_key(&c), session_key(&z));
    for (client, body) in [
        (&a, "from the real alice"),
        (&c, "from the cyrillic alice"),
        (&z, "from the zero-width alice"),
    ] {
        let to = client.resolve("bob").await.expect("bob");
        client
            .send(to, body.as_bytes(), Priority::Next, None)
            .await
            .expect("send");
    }
    let short = |k: &PublicKey| k.to_hex()[..8].to_owned();

    // No pins: every one carries its key, the invisible character shown.
    let labels = inbox_labels(&bob, &Pins::default()).await;
    let real = label_of(&labels, "from the real alice");
    let cyr = label_of(&labels, "from the cyrillic alice");
    let zw = label_of(&labels, "from the zero-width alice");
    assert!(
        real.ambiguous && cyr.ambiguous && zw.ambiguous,
        "{labels:?}"
    );
    assert_eq!(real.text, format!("alice ({})", short(&alice_key)));
    assert_eq!(cyr.text, format!("{CYRILLIC} ({})", short(&cyrillic_key)));
    assert_eq!(zw.text, format!("alice? ({})", short(&zero_width_key)));
    assert!(!real.pin_mismatch && !cyr.pin_mismatch && !zw.pin_mismatch);

    // Bob pinned the real alice: both impostors are flagged, and messages
    // to them are refused until bob verifies them.
    let mut pins = Pins::default();
    pins.pin(&alice_key, "alice", 1);
    let labels = inbox_labels(&bob, &pins).await;
    let real = label_of(&labels, "from the real alice");
    assert!(real.verified && !real.pin_mismatch, "{real:?}");
    for (body, shown, key) in [
        ("from the cyrillic alice", CYRILLIC, cyrillic_key),
        ("from the zero-width alice", "alice?", zero_width_key),
    ] {
        let l = label_of(&labels, body);
        assert!(l.pin_mismatch && !l.verified, "{l:?}");
        assert_eq!(
            l.text,
            format!("{shown} ({}, NOT the alice you verified)", short(&key))
        );
    }
    let b = bob.connect().await;
    b.with_state(|s| {
        assert!(pins.check_send(s, &alice_key).is_ok());
        for key in [cyrillic_key, zero_width_key] {
            assert!(matches!(
                pins.check_send(s, &key),
                Err(ClientError::KeyChanged(ref n)) if n == "alice"
            ));
        }
    });

    // alice@api, however spelled, is ambiguous while alice is here; a key
    // prefix still reaches each session.
    peers_until(&b, |ps| ps.iter().filter(|p| p.online).count() >= 4).await;
    let zero_width_at_api = format!("{ZERO_WIDTH}@api");
    let cyrillic_at_api = format!("{CYRILLIC}@api");
    for typed in [
        "alice@api",
        "ALICE@api",
        cyrillic_at_api.as_str(),
        zero_width_at_api.as_str(),
    ] {
        let e = b.resolve(typed).await.expect_err("ambiguous");
        assert!(
            matches!(
                e,
                ClientError::SessionName {
                    problem: SessionNameProblem::AmbiguousMember { .. },
                    ..
                }
            ),
            "{typed:?}: {e:?}"
        );
        for key in [alice_key, cyrillic_key, zero_width_key] {
            assert!(e.to_string().contains(&short(&key)), "{e}");
        }
    }
    for typed in ["alice", CYRILLIC, ZERO_WIDTH] {
        let e = b.resolve(typed).await.expect_err("ambiguous");
        assert!(matches!(e, ClientError::AmbiguousPeer { .. }), "{e:?}");
    }
    for session in [alice_session, cyrillic_session, zero_width_session] {
        assert_eq!(
            b.resolve(&session.to_hex()[..16]).await.expect("by key"),
            Target::Session(SessionKey(session))
        );
    }

    // Without alice (and the other look-alike), alice@api and alice name
    // no one: the look-alike is reached only by its own name or its key.
    a.close().await;
    z.close().await;
    let o = olivia.connect().await;
    for key in [alice_key, zero_width_key] {
        moderation::remove(&o, &key.to_hex(), RemoveKind::Kick)
            .await
            .expect("kick");
    }
    o.close().await;
    b.sync_log().await.expect("sync");
    for typed in ["alice@api", "alice"] {
        let e = b.resolve(typed).await.expect_err("a look-alike only");
        assert!(
            matches!(e, ClientError::LookAlikePeer { ref candidate, .. }
                if candidate.contains(&short(&cyrillic_key))),
            "{typed:?}: {e:?}"
        );
    }
    assert_eq!(
        b.resolve(&cyrillic_at_api).await.expect("its own name"),
        Target::Session(SessionKey(cyrillic_session))
    );
    assert_eq!(
        b.resolve(CYRILLIC).await.expect("its own name"),
        Target::Member(MemberKey(cyrillic_key))
    );

    c.close().await;
    b.close().await;
    broker.stop().await;
}
both!(look_alike_names_carry_their_keys_and_never_resolve);

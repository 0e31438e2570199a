//! Bad input (TM10): malformed and unknown frames, oversized frames,
//! unknown versions, bad signatures, expired certificates, removed members,
//! frames before the handshake, a flood of frames, a reader that never
//! reads. Each gets a typed error, the connection stays sane where the
//! protocol says so, and nothing already stored is lost.

use claudemesh_client::{ClientError, ConnectOptions, Event, MeshClient};
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::envelope::Priority;
use claudemesh_crypto::log::{EntryBody, LogEntry, RemoveKind};
use claudemesh_proto::frames::{Ack, Request};
use claudemesh_proto::hello::Hello;
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};

use crate::both;
use crate::messaging::hello_raw;
use crate::support::*;
use claudemesh_crypto::SessionKey;

fn ping(req: &str) -> ClientFrame {
    ClientFrame::Ping(Request {
        req: Some(req.into()),
    })
}

async fn expect_pong(raw: &mut Raw, req: &str) {
    loop {
        match raw.recv().await {
            Ok(BrokerFrame::Pong(p)) if p.req.as_deref() == Some(req) => return,
            Ok(
                BrokerFrame::Presence(_)
                | BrokerFrame::LogUpdate(_)
                | BrokerFrame::Deliver(_)
                | BrokerFrame::CoordChanged(_),
            ) => {
                continue;
            }
            other => panic!("expected pong {req}, got {other:?}"),
        }
    }
}

async fn bad_frames_get_typed_errors(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    // A message is stored before any of this starts.
    let a = alice.connect().await;
    let to_bob = a.resolve("bob").await.unwrap();
    a.send(to_bob, b"kept safe", Priority::Next, None)
        .await
        .unwrap();
    a.close().await;

    let mut raw = Raw::open(&broker.url).await;
    // Before hello: requests are refused, the connection stays.
    raw.send(&ClientFrame::Ack(Ack {
        seqs: vec![1],
        read: false,
    }))
    .await;
    assert_eq!(raw.expect_error().await.code, ErrorCode::NotAuthenticated);
    // Not JSON; not an object; a known type with bad fields; an unknown type.
    for (text, code) in [
        ("this is not json", ErrorCode::Malformed),
        ("[1,2,3]", ErrorCode::Malformed),
        (
            r#"{"type":"send","req":"x1","envelope":{"v":1}}"#,
            ErrorCode::Malformed,
        ),
        (r#"{"type":"teleport","req":"x2"}"#, ErrorCode::UnknownType),
    ] {
        raw.send_text(text.into()).await;
        let e = raw.expect_error().await;
        assert_eq!(e.code, code, "{text}");
    }
    // The correlation id of a malformed frame is still echoed.
    raw.send_text(r#"{"type":"log_fetch","req":"keep-me","from_seq":"x"}"#.into())
        .await;
    assert_eq!(raw.expect_error().await.req.as_deref(), Some("keep-me"));
    raw.send(&ping("p1")).await;
    expect_pong(&mut raw, "p1").await;

    // Authenticated now; the same garbage still leaves the connection usable.
    hello_raw(&mut raw, &alice).await;
    raw.send_text("{".into()).await;
    assert_eq!(raw.expect_error().await.code, ErrorCode::Malformed);
    raw.send(&ClientFrame::Hello(Box::new(Hello::sign(
        &alice.home.load_keys(&alice.mesh.id).unwrap().sessions["cli"],
        &raw.challenge.nonce.0,
        1,
        None,
        Default::default(),
        "test",
    ))))
    .await;
    assert_eq!(
        raw.expect_error().await.code,
        ErrorCode::AlreadyAuthenticated
    );
    // Too many seqs in one ack.
    raw.send(&ClientFrame::Ack(Ack {
        seqs: (0..300).collect(),
        read: false,
    }))
    .await;
    assert_eq!(raw.expect_error().await.code, ErrorCode::Malformed);
    raw.send(&ping("p2")).await;
    expect_pong(&mut raw, "p2").await;

    // An oversized frame closes the connection with 1009.
    let big = format!(r#"{{"type":"ping","req":"{}"}}"#, "x".repeat(200 * 1024));
    raw.send_text(big).await;
    let e = raw.expect_error().await;
    assert_eq!(e.code, ErrorCode::FrameTooLarge);
    assert_eq!(raw.expect_close().await.0, 1009);

    // Nothing stored was lost.
    assert_eq!(bob.read_inbox().await, vec!["kept safe"]);
    broker.stop().await;
}
both!(bad_frames_get_typed_errors);

async fn bad_hellos_are_refused_and_closed(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let keys = alice.home.load_keys(&alice.mesh.id).unwrap();
    let session = keys.sessions["cli"].clone();

    // Unknown protocol version: 4000.
    let mut raw = Raw::open(&broker.url).await;
    let h = Hello::sign(
        &session,
        &raw.challenge.nonce.0,
        99,
        None,
        Default::default(),
        "t",
    );
    raw.send(&ClientFrame::Hello(Box::new(h))).await;
    assert_eq!(raw.expect_error().await.code, ErrorCode::UnsupportedVersion);
    assert_eq!(raw.expect_close().await.0, 4000);

    // An expired certificate: cert_expired, 1008.
    let mut raw = Raw::open(&broker.url).await;
    let old = SessionIdentity::new(&keys.member, alice.mesh.id, 1_000_000, 3600).unwrap();
    let h = Hello::sign(
        &old,
        &raw.challenge.nonce.0,
        1,
        None,
        Default::default(),
        "t",
    );
    raw.send(&ClientFrame::Hello(Box::new(h))).await;
    assert_eq!(raw.expect_error().await.code, ErrorCode::CertExpired);
    assert_eq!(raw.expect_close().await.0, 1008);

    // A key that was never admitted: not_a_member, 1008.
    let mut raw = Raw::open(&broker.url).await;
    let stranger = claudemesh_crypto::SigningKey::generate();
    let s = SessionIdentity::new(
        &stranger,
        alice.mesh.id,
        claudemesh_client::client::now_ms() / 1000,
        3600,
    )
    .unwrap();
    let h = Hello::sign(&s, &raw.challenge.nonce.0, 1, None, Default::default(), "t");
    raw.send(&ClientFrame::Hello(Box::new(h))).await;
    assert_eq!(raw.expect_error().await.code, ErrorCode::NotAMember);
    assert_eq!(raw.expect_close().await.0, 1008);

    // An unknown mesh.
    let mut raw = Raw::open(&broker.url).await;
    let s = SessionIdentity::new(
        &stranger,
        claudemesh_crypto::MeshId(claudemesh_crypto::Hash32([9; 32])),
        claudemesh_client::client::now_ms() / 1000,
        3600,
    )
    .unwrap();
    let h = Hello::sign(&s, &raw.challenge.nonce.0, 1, None, Default::default(), "t");
    raw.send(&ClientFrame::Hello(Box::new(h))).await;
    assert_eq!(raw.expect_error().await.code, ErrorCode::UnknownMesh);

    // A removed member: alice kicks bob (with the rekey the log requires);
    // bob's live connection is closed with 4001 and he cannot come back.
    let b = bob.connect().await;
    let mut bob_events = b.events();
    let a = alice.connect().await;
    let bob_key = bob.home.load_keys(&bob.mesh.id).unwrap().member.public();
    a.append_entries(|s| {
        let at = claudemesh_client::client::now_ms() / 1000;
        let remove = LogEntry::sign(
            s.member_key(),
            s.roster().len(),
            s.roster().head(),
            at,
            EntryBody::Remove {
                member: bob_key,
                how: RemoveKind::Kick,
            },
        );
        let mut after = s.roster().clone();
        after
            .apply(&remove)
            .map_err(claudemesh_client::ClientError::LogInvalid)?;
        let root = claudemesh_crypto::EpochRootKey::generate(after.epoch() + 1);
        let recipients: Vec<_> = after.members().keys().copied().collect();
        let body = claudemesh_crypto::log::rekey_body(&root, &after.mesh_id(), &recipients)
            .map_err(|e| claudemesh_client::ClientError::Invalid(e.to_string().into()))?;
        let rekey = LogEntry::sign(s.member_key(), after.len(), after.head(), at, body);
        Ok(vec![remove, rekey])
    })
    .await
    .unwrap();
    loop {
        match claudemesh_client::MeshClient::next_event(&mut bob_events).await {
            Some(claudemesh_client::Event::Stopped { reason }) => {
                assert!(reason.contains("4001"), "{reason}");
                break;
            }
            Some(_) => continue,
            None => panic!("no stop event"),
        }
    }
    let again =
        claudemesh_client::MeshClient::connect(&bob.home, &bob.mesh, Default::default()).await;
    assert!(
        matches!(
            again,
            Err(claudemesh_client::ClientError::Refused {
                code: ErrorCode::Removed,
                ..
            })
        ),
        "{again:?}"
    );
    a.close().await;
    broker.stop().await;
}
both!(bad_hellos_are_refused_and_closed);

async fn flooding_is_rate_limited(backend: Backend) {
    let broker = start_with(backend, |c| {
        c.rate_per_sec = 5;
        c.rate_burst = 5;
    })
    .await;
    let mut raw = Raw::open(&broker.url).await;
    for i in 0..20 {
        raw.send(&ping(&format!("f{i}"))).await;
    }
    let mut limited = 0;
    let mut pongs = 0;
    while pongs + limited < 20 {
        match raw.recv().await.unwrap() {
            BrokerFrame::Pong(_) => pongs += 1,
            BrokerFrame::Error(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                assert!(e.retry_after_ms.is_some_and(|ms| ms > 0));
                limited += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        pongs >= 5 && limited >= 10,
        "pongs {pongs}, limited {limited}"
    );
    // After waiting, it answers again.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    raw.send(&ping("after")).await;
    expect_pong(&mut raw, "after").await;
    broker.stop().await;
}
both!(flooding_is_rate_limited);

/// A recipient that stops reading while thousands of messages arrive is
/// not cut off by that traffic: once its queue is full, live pushes stop and
/// its stored messages wait for it (a drain at its pace, with
/// backpressure). When it reads again it is still connected, and every
/// message arrives. (A reader that never reads again is cut off by the
/// socket write timeout: `abuse::big_answers_are_paged_and_a_reader_that_never_reads_is_cut_off`.)
async fn slow_consumer_falls_behind_nothing_lost(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let mut stalled = Raw::open(&broker.url).await;
    hello_raw(&mut stalled, &bob).await;
    let a = alice
        .connect_with(claudemesh_client::ConnectOptions {
            request_timeout: std::time::Duration::from_secs(60),
            ..Default::default()
        })
        .await;
    let to_bob = a.resolve("bob").await.unwrap();
    let body = vec![b'x'; 4096];
    let total = 4000;
    let a = std::sync::Arc::new(a);
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        let a = a.clone();
        let to = to_bob.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..total / 8 {
                a.send(to.clone(), &body, Priority::Next, None)
                    .await
                    .unwrap();
            }
            chunk
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Far more than its 4 MiB queue was sent to it; it reads again now and
    // is still there (its ping is answered after whatever it is given).
    stalled.send(&ping("awake")).await;
    let mut delivered = 0;
    loop {
        match stalled.recv().await {
            Ok(BrokerFrame::Pong(p)) if p.req.as_deref() == Some("awake") => break,
            Ok(BrokerFrame::Deliver(_)) => delivered += 1,
            Ok(_) => {}
            Err(close) => panic!("the stalled reader was cut off: {close:?}"),
        }
    }
    assert!(delivered > 0);
    drop(stalled);
    let got = bob.read_inbox_limit(total + 10).await;
    assert_eq!(got.len(), total as usize);
    broker.stop().await;
}
both!(slow_consumer_falls_behind_nothing_lost);

/// Stores, as `who`'s `cli` session, a certificate issued at `issued_at`
/// for the longest lifetime (the same session key).
fn store_cli_cert(who: &Peer, issued_at: u64) -> claudemesh_crypto::cert::SessionCert {
    use claudemesh_crypto::cert::SessionCert;
    let lifetime = claudemesh_client::mesh::SESSION_CERT_LIFETIME;
    let id = who.mesh.id;
    who.home
        .update_keys(&id, |k| {
            let key = k
                .sessions
                .get("cli")
                .map(|s| s.key.clone())
                .unwrap_or_else(claudemesh_crypto::SigningKey::generate);
            let cert =
                SessionCert::issue(&k.member, id, SessionKey(key.public()), issued_at, lifetime)
                    .unwrap();
            k.sessions.insert(
                "cli".into(),
                SessionIdentity {
                    key,
                    cert: cert.clone(),
                },
            );
            Ok(cert)
        })
        .unwrap()
}

/// Waits for `Connected` after a `Disconnected` whose reason contains
/// `why`.
async fn reconnects_after(rx: &mut tokio::sync::broadcast::Receiver<Event>, why: &str) {
    let wait = async {
        let mut dropped = false;
        loop {
            match MeshClient::next_event(rx).await {
                Some(Event::Disconnected { reason }) => {
                    assert!(reason.contains(why), "{reason}");
                    dropped = true;
                }
                Some(Event::Connected) if dropped => return,
                Some(Event::Stopped { reason }) => panic!("stopped: {reason}"),
                Some(_) => continue,
                None => panic!("event stream ended"),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), wait)
        .await
        .expect("reconnected within 20 s");
}

/// Review finding (regression): the broker ends a connection whose
/// certificate expires while it is open (`cert_expired`). A long-lived
/// client renews the certificate with its member key and reconnects, and
/// still sends and receives — it does not leave the mesh.
async fn a_long_lived_client_renews_its_certificate_when_it_expires(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let lifetime = claudemesh_client::mesh::SESSION_CERT_LIFETIME;
    let now = claudemesh_client::client::now_ms() / 1000;
    // Expires 3 s from now; kept at connect (no renewal ahead of expiry).
    let short = store_cli_cert(&alice, now + 3 - lifetime);
    let a = alice
        .connect_with(ConnectOptions {
            reconnect: true,
            connect_timeout: std::time::Duration::from_secs(10),
            cert_renew_before: std::time::Duration::ZERO,
            ..ConnectOptions::default()
        })
        .await;
    assert_eq!(a.with_state(|s| s.session().cert.clone()), short);
    let mut events = a.events();
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    // The next frame after expiry: the broker refuses it and closes.
    let _ = a.ping().await;
    reconnects_after(&mut events, "cert_expired").await;

    let renewed = a.with_state(|s| s.session().cert.clone());
    let now = claudemesh_client::client::now_ms() / 1000;
    assert!(renewed.expires_at > now + lifetime - 60, "{renewed:?}");
    assert_eq!(renewed.session, short.session, "the same session key");
    let stored = alice.home.load_keys(&alice.mesh.id).unwrap();
    assert_eq!(stored.sessions["cli"].cert, renewed, "and stored");

    // It still sends and receives.
    let to_bob = a.resolve("bob").await.unwrap();
    a.send(to_bob, b"after renewal", Priority::Next, None)
        .await
        .unwrap();
    assert_eq!(bob.read_inbox().await, vec!["after renewal"]);
    let b = bob.connect().await;
    let to_alice = b.resolve("alice").await.unwrap();
    b.send(to_alice, b"hello again", Priority::Next, None)
        .await
        .unwrap();
    b.close().await;
    assert_eq!(next_message(&mut events).await.body, "hello again");
    a.close().await;
    broker.stop().await;
}
both!(a_long_lived_client_renews_its_certificate_when_it_expires);

/// A hello refused `cert_expired` (the broker's clock disagrees with this
/// device's) is retried once with a renewed certificate; refused again, it
/// is final. Played by a proxy that turns welcomes into that refusal.
async fn a_hello_refused_as_expired_is_retried_once_renewed(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let refuse = |times: usize| {
        let seen = Arc::new(AtomicUsize::new(0));
        let f: Arc<dyn Fn(BrokerFrame) -> BrokerFrame + Send + Sync> =
            Arc::new(move |frame| match frame {
                BrokerFrame::Welcome(_) if seen.fetch_add(1, Ordering::SeqCst) < times => {
                    BrokerFrame::Error(claudemesh_proto::frames::ErrorFrame {
                        req: None,
                        code: ErrorCode::CertExpired,
                        message: "certificate expired".into(),
                        retry_after_ms: None,
                    })
                }
                other => other,
            });
        f
    };
    let via = |url: String| {
        let mut mesh = alice.mesh.clone();
        mesh.broker_url = url;
        mesh
    };
    let now = claudemesh_client::client::now_ms() / 1000;
    let opts = ConnectOptions {
        connect_timeout: std::time::Duration::from_secs(10),
        ..ConnectOptions::default()
    };

    // Refused once: renewed (issued now, not an hour ago) and connected.
    let old = store_cli_cert(&alice, now - 3600);
    let proxy = lying_proxy(broker.url.clone(), refuse(1)).await;
    let a = MeshClient::connect(&alice.home, &via(proxy), opts.clone())
        .await
        .expect("connects with a renewed certificate");
    let renewed = a.with_state(|s| s.session().cert.clone());
    assert!(renewed.issued_at > old.issued_at, "{renewed:?}");
    assert_eq!(renewed.session, old.session);
    a.close().await;

    // Refused every time: final after one renewal.
    let proxy = lying_proxy(broker.url.clone(), refuse(usize::MAX)).await;
    let r = MeshClient::connect(&alice.home, &via(proxy), opts).await;
    assert!(
        matches!(
            r,
            Err(ClientError::Refused {
                code: ErrorCode::CertExpired,
                ..
            })
        ),
        "{r:?}"
    );
    broker.stop().await;
}
both!(a_hello_refused_as_expired_is_retried_once_renewed);

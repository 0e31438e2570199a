//! A stranger or a malicious member abusing the broker's resources (TM10),
//! each attack performed through the protocol with a raw client and its
//! own keys, as the security review did, and each seen refused: answers
//! bigger than a frame, a reader that never reads, presence floods, many
//! sessions of one member, huge peer lists, a log grown without bound, a
//! back-dated admit, meshes created by strangers, receipts for messages one
//! never received, a certificate that expires mid-connection, and hellos
//! that make a replica re-read the log.

use claudemesh_client::messages;
use claudemesh_client::moderation;
use claudemesh_client::topics;
use std::time::{Duration, Instant};

use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::envelope::{Priority, Target};
use claudemesh_crypto::log::{EntryBody, LogEntry, RemoveKind, Role};
use claudemesh_crypto::{MeshId, Nonce, SigningKey};
use claudemesh_proto::frames::{
    Ack, EncryptedBlob, MeshCreate, PeerListQuery, PresenceSet, Request, Status, TopicHistoryQuery,
};
use claudemesh_proto::hello::{Hello, HelloPresence};
use claudemesh_proto::limits::MAX_FRAME_BYTES;
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::both;
use crate::support::*;

fn now_secs() -> u64 {
    claudemesh_broker::now_ms() / 1000
}

/// A member's keys, used by hand as a malicious member's own client would.
struct Hand {
    member: SigningKey,
    mesh: MeshId,
}

impl Hand {
    fn of(peer: &Peer) -> Hand {
        let keys = peer.home.load_keys(&peer.mesh.id).unwrap();
        Hand {
            member: keys.member,
            mesh: peer.mesh.id,
        }
    }

    /// A fresh session certified by the member key.
    fn session(&self) -> SessionIdentity {
        SessionIdentity::new(&self.member, self.mesh, now_secs(), 3600).unwrap()
    }
}

/// Says hello on `raw` as `session`: `Ok` on welcome, else the refusal's
/// code and the close code that followed.
async fn hello(
    raw: &mut Raw,
    session: &SessionIdentity,
    summary: Option<EncryptedBlob>,
) -> Result<(), (ErrorCode, u16)> {
    let presence = HelloPresence {
        summary,
        ..Default::default()
    };
    let hello = Hello::sign(session, &raw.challenge.nonce.0, 1, None, presence, "abuse");
    raw.send(&ClientFrame::Hello(Box::new(hello))).await;
    match raw.recv().await {
        Ok(BrokerFrame::Welcome(_)) => Ok(()),
        Ok(BrokerFrame::Error(e)) => Err((e.code, raw.expect_close().await.0)),
        other => panic!("expected welcome or an error, got {other:?}"),
    }
}

/// A raw connection that said hello as a fresh session of `hand`.
async fn session(url: &str, hand: &Hand, summary: Option<EncryptedBlob>) -> Raw {
    let mut raw = Raw::open(url).await;
    hello(&mut raw, &hand.session(), summary)
        .await
        .expect("welcome");
    raw
}

fn ping(req: &str) -> ClientFrame {
    ClientFrame::Ping(Request {
        req: Some(req.into()),
    })
}

/// Reads until the pong `req`, counting the frames of each kind before it.
async fn until_pong(raw: &mut Raw, req: &str) -> (usize, usize) {
    let (mut presence, mut limited) = (0, 0);
    loop {
        match raw.recv().await {
            Ok(BrokerFrame::Pong(p)) if p.req.as_deref() == Some(req) => {
                return (presence, limited);
            }
            Ok(BrokerFrame::Presence(_)) => presence += 1,
            Ok(BrokerFrame::Error(e)) if e.code == ErrorCode::RateLimited => limited += 1,
            Ok(_) => {}
            Err(close) => panic!("closed while waiting for pong {req}: {close:?}"),
        }
    }
}

/// Waits (up to `within`) for the broker to hold `n` connections.
async fn connections_become(broker: &TestBroker, n: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if broker.running().state.connections.count() == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Finding 1: one `topic_history` answer was a 17.7 MB frame, the outbound
/// queue was bounded in frames, and a reader that stopped reading held its
/// memory for minutes. Now answers are paged under the frame limit, the
/// queue is bounded in bytes, and a reader that never reads is closed once
/// a socket write times out.
async fn big_answers_are_paged_and_a_reader_that_never_reads_is_cut_off(backend: Backend) {
    let broker = start_with(backend, |c| c.write_timeout = Duration::from_secs(1)).await;
    let alice = owner(&broker, "alice").await;
    let a = alice.connect().await;
    topics::topic_create(&a, "big", false, "").await.unwrap();
    let body = "x".repeat(60 * 1024);
    let mut posted = Vec::new();
    for _ in 0..40 {
        let p = messages::send(&a, Target::Topic("big".into()), &body, Priority::Low, None)
            .await
            .unwrap();
        posted.push(p.seq);
    }
    let hand = Hand::of(&alice);

    // Paged: every answer fits a frame, and paging reaches every message once.
    let mut reader = session(&broker.url, &hand, None).await;
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        reader
            .send(&ClientFrame::TopicHistory(TopicHistoryQuery {
                req: Some("h".into()),
                topic: "big".into(),
                limit: Some(200),
                before_seq: before,
            }))
            .await;
        let text = loop {
            match reader.ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str().contains("topic_history_result") => {
                    break t;
                }
                Some(Ok(_)) => continue,
                other => panic!("no history answer: {other:?}"),
            }
        };
        assert!(
            text.len() <= MAX_FRAME_BYTES,
            "a history answer of {} bytes",
            text.len()
        );
        let Ok(BrokerFrame::TopicHistoryResult(r)) =
            claudemesh_proto::decode_broker_frame(text.as_str())
        else {
            panic!("not a history result")
        };
        assert!(!r.messages.is_empty());
        seen.extend(r.messages.iter().map(|m| m.seq));
        if !r.more {
            break;
        }
        before = r.messages.last().map(|m| m.seq);
    }
    seen.sort_unstable();
    posted.sort_unstable();
    assert_eq!(seen, posted);
    drop(reader);
    assert!(connections_become(&broker, 1, Duration::from_secs(10)).await);

    // A reader that asks for 200 big answers and reads none: the broker
    // holds at most its byte budget for it, then cuts it off.
    let mut stalled = session(&broker.url, &hand, None).await;
    assert_eq!(broker.running().state.connections.count(), 2);
    for i in 0..200 {
        stalled
            .send(&ClientFrame::TopicHistory(TopicHistoryQuery {
                req: Some(format!("s{i}")),
                topic: "big".into(),
                limit: Some(200),
                before_seq: None,
            }))
            .await;
    }
    assert!(
        connections_become(&broker, 1, Duration::from_secs(30)).await,
        "the broker still holds the connection of a reader that never reads"
    );
    // The mesh is fine for everyone else.
    a.ping().await.unwrap();
    a.close().await;
    broker.stop().await;
}
both!(big_answers_are_paged_and_a_reader_that_never_reads_is_cut_off);

/// Finding 7: one member's `presence_set` flood filled every other
/// session's queue (4003 for them) and spawned a task each. Now presence
/// has its own rate per connection, and what reaches others is coalesced
/// per peer, outside their byte budget: nobody else is cut off.
async fn a_presence_flood_cuts_no_one_else_off(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let mallory = joiner(&broker, &alice, "mallory").await;
    let hand = Hand::of(&mallory);
    // Bob does not read while mallory floods.
    let mut watcher = session(&broker.url, &Hand::of(&bob), None).await;
    let mut floods = Vec::new();
    for _ in 0..4 {
        floods.push(session(&broker.url, &hand, None).await);
    }
    for i in 0..2000 {
        for raw in &mut floods {
            raw.send(&ClientFrame::PresenceSet(PresenceSet {
                req: None,
                status: Some(if i % 2 == 0 {
                    Status::Working
                } else {
                    Status::Idle
                }),
                summary: None,
                peer_type: None,
            }))
            .await;
        }
    }
    // Mallory was told to slow down (the ping waits for her member's
    // bucket to refill first).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    floods[0].send(&ping("m")).await;
    let (_, limited) = until_pong(&mut floods[0], "m").await;
    assert!(limited > 1000, "only {limited} rate_limited answers");
    // Bob is still connected and answered, with a handful of presence
    // frames rather than 8,000.
    watcher.send(&ping("b")).await;
    let (presence, _) = until_pong(&mut watcher, "b").await;
    assert!(presence < 400, "{presence} presence frames reached bob");
    // A fresh hello still gets in.
    let b = bob.connect().await;
    b.ping().await.unwrap();
    b.close().await;
    broker.stop().await;
}
both!(a_presence_flood_cuts_no_one_else_off);

/// Finding 8: eight sessions of one member had 8,000 frames answered in a
/// quarter second, and nothing capped the sessions per member or the
/// connections an address holds before its hello.
async fn one_member_one_rate_and_capped_sessions_and_handshakes(backend: Backend) {
    let broker = start_with(backend, |c| {
        c.member_rate_per_sec = 20;
        c.member_rate_burst = 40;
        c.max_sessions_per_member = 3;
        c.max_pending_per_address = 4;
    })
    .await;
    let alice = owner(&broker, "alice").await;
    let mallory = joiner(&broker, &alice, "mallory").await;
    let hand = Hand::of(&mallory);

    // Three sessions share one bucket of 40 frames (and 20 a second).
    let first = hand.session();
    let mut sessions = vec![Raw::open(&broker.url).await];
    hello(&mut sessions[0], &first, None).await.unwrap();
    for _ in 0..2 {
        sessions.push(session(&broker.url, &hand, None).await);
    }
    for raw in &mut sessions {
        for i in 0..40 {
            raw.send(&ping(&format!("p{i}"))).await;
        }
    }
    // Once the bucket is full again, one last ping each to count the answers.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut limited = 0;
    for raw in &mut sessions {
        raw.send(&ping("end")).await;
        loop {
            match raw.recv().await.unwrap() {
                BrokerFrame::Pong(p) if p.req.as_deref() == Some("end") => break,
                BrokerFrame::Error(e) if e.code == ErrorCode::RateLimited => limited += 1,
                _ => {}
            }
        }
    }
    assert!(limited >= 50, "only {limited} of 123 frames were refused");

    // A fourth session is refused (4005), not terminal; the same session
    // key reconnecting replaces its old connection instead.
    let mut fourth = Raw::open(&broker.url).await;
    assert_eq!(
        hello(&mut fourth, &hand.session(), None).await,
        Err((ErrorCode::TooManySessions, 4005))
    );
    let mut again = Raw::open(&broker.url).await;
    hello(&mut again, &first, None).await.unwrap();
    assert_eq!(sessions[0].expect_close().await.1, "session_replaced");

    // Before their hello, one address holds at most 4 connections.
    let local = "127.0.0.1".parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.running().state.pending.count(local) > 0 {
        assert!(Instant::now() < deadline, "refused connections still count");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut waiting = Vec::new();
    for _ in 0..4 {
        waiting.push(Raw::open(&broker.url).await);
    }
    match Raw::open_with(&broker.url, &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
        }
        Ok(_) => panic!("a fifth connection before any hello was accepted"),
        Err(e) => panic!("unexpected error: {e}"),
    }
    // Behind a proxy on this machine (a trusted one), the cap counts the
    // address the proxy names: one client's handshakes do not lock out
    // another's, and a client cannot name itself to escape it.
    let via = |client: &'static str| [("x-forwarded-for", client)];
    assert!(
        Raw::open_with(&broker.url, &via("203.0.113.9"))
            .await
            .is_ok()
    );
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            Raw::open_with(&broker.url, &via("203.0.113.8"))
                .await
                .unwrap(),
        );
    }
    assert!(matches!(
        Raw::open_with(&broker.url, &via("203.0.113.8")).await,
        Err(tokio_tungstenite::tungstenite::Error::Http(_))
    ));
    // Once one says hello, there is room again.
    let alice_hand = Hand::of(&alice);
    hello(&mut waiting[0], &alice_hand.session(), None)
        .await
        .unwrap();
    assert!(Raw::open_with(&broker.url, &[]).await.is_ok());
    broker.stop().await;
}
both!(one_member_one_rate_and_capped_sessions_and_handshakes);

/// Finding 9: 160 sessions of one member with 1 KiB summaries made the
/// `peers` answer 345 KB, over what clients accept: `claudemesh peers` and
/// name resolution failed for the whole mesh. Now it is paged.
async fn peers_is_paged_whatever_one_member_does(backend: Backend) {
    let broker = start_with(backend, |c| c.max_sessions_per_member = 200).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let mallory = joiner(&broker, &alice, "mallory").await;
    let hand = Hand::of(&mallory);
    let mut held = Vec::new();
    for _ in 0..160 {
        let summary = EncryptedBlob {
            epoch: 0,
            nonce: Nonce::random(),
            ciphertext: vec![7; 1024],
        };
        held.push(session(&broker.url, &hand, Some(summary)).await);
    }
    // Pages on the wire: each under the frame limit, together everything.
    let mut raw = session(&broker.url, &Hand::of(&bob), None).await;
    let mut after = None;
    let mut entries = 0;
    let mut pages = 0;
    loop {
        raw.send(&ClientFrame::PeerList(PeerListQuery {
            req: Some("p".into()),
            after: after.clone(),
        }))
        .await;
        let text = loop {
            match raw.ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str().starts_with("{\"type\":\"peers\"") => {
                    break t;
                }
                Some(Ok(_)) => continue,
                other => panic!("no peers answer: {other:?}"),
            }
        };
        assert!(text.len() <= MAX_FRAME_BYTES, "{} bytes", text.len());
        let Ok(BrokerFrame::Peers(p)) = claudemesh_proto::decode_broker_frame(text.as_str()) else {
            panic!("not peers")
        };
        entries += p.peers.len();
        pages += 1;
        match p.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert!(pages > 1, "{pages} page");
    // 160 of mallory's, bob's own session, alice offline.
    assert_eq!(entries, 162);
    // The SDK (what `claudemesh peers` and `send` use) reads every page.
    let b = bob.connect().await;
    let peers = b.peers().await.unwrap();
    let m = peers.iter().find(|p| p.name == "mallory").unwrap();
    assert_eq!(m.sessions.len(), 160);
    assert!(b.resolve("alice").await.is_ok());
    b.close().await;
    broker.stop().await;
}
both!(peers_is_paged_whatever_one_member_does);

/// A `profile` entry with a 4 KiB body, signed by `s`'s member as the next
/// entry of its log.
fn fat_profile(s: &claudemesh_client::mesh::MeshState) -> LogEntry {
    LogEntry::sign(
        s.member_key(),
        s.roster().len(),
        s.roster().head(),
        now_secs(),
        EntryBody::Profile {
            epoch: s.roster().epoch(),
            nonce: Nonce::random(),
            ciphertext: vec![0; 4096],
        },
    )
}

/// Finding 10: any member could append 5,000 profile entries of 4 KiB in
/// two seconds (46 MB, kept in broker memory, verified by every client).
/// Now each member has an hourly quota of entries, and a mesh's log has a
/// size cap above which only removals and key rotations are taken, so the
/// owner can still remove whoever filled it.
async fn the_log_cannot_be_grown_without_bound(backend: Backend) {
    let broker = start_with(backend, |c| {
        c.log_burst = 20;
        c.log_entries_per_hour = 60;
    })
    .await;
    let alice = owner(&broker, "alice").await;
    let mallory = joiner(&broker, &alice, "mallory").await;
    let m = mallory.connect().await;
    let mut refused = None;
    for i in 0..40 {
        if let Err(e) = m.append_entries(|s| Ok(vec![fat_profile(s)])).await {
            refused = Some((i, e));
            break;
        }
    }
    // Mallory's join wrote two entries (admit, profile) of her 20.
    match refused {
        Some((
            i,
            claudemesh_client::ClientError::Refused {
                code: ErrorCode::RateLimited,
                ..
            },
        )) => assert_eq!(i, 18),
        other => panic!("expected rate_limited after 18 profiles, got {other:?}"),
    }
    m.close().await;
    // The owner, her own quota spent too, can still remove her: an owner's
    // or admin's removals and rotations are never counted.
    let a = alice.connect().await;
    while a.append_entries(|s| Ok(vec![fat_profile(s)])).await.is_ok() {}
    let mallory_key = Hand::of(&mallory).member.public().to_hex();
    moderation::remove(&a, &mallory_key[..16], RemoveKind::Kick)
        .await
        .unwrap();
    a.close().await;
    broker.stop().await;

    // The size cap: mallory fills the log; the owner still bans her.
    let broker = start_with(backend, |c| c.max_log_bytes = 64 * 1024).await;
    let alice = owner(&broker, "alice").await;
    let mallory = joiner(&broker, &alice, "mallory").await;
    let m = mallory.connect().await;
    let mut full = false;
    for _ in 0..40 {
        match m.append_entries(|s| Ok(vec![fat_profile(s)])).await {
            Ok(()) => {}
            Err(claudemesh_client::ClientError::Refused {
                code: ErrorCode::Forbidden,
                message,
            }) => {
                assert!(message.contains("limit"), "{message}");
                full = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(full, "the log never filled");
    m.close().await;
    let a = alice.connect().await;
    // Her last profile is the garbage one: she is known by her key now.
    let mallory_key = Hand::of(&mallory).member.public().to_hex();
    moderation::remove(&a, &mallory_key[..16], RemoveKind::Ban)
        .await
        .unwrap();
    // Nothing but removals and rotations now: alice's own profile waits.
    assert!(matches!(
        a.append_entries(|s| Ok(vec![fat_profile(s)])).await,
        Err(claudemesh_client::ClientError::Refused {
            code: ErrorCode::Forbidden,
            ..
        })
    ));
    a.close().await;
    broker.stop().await;
}
both!(the_log_cannot_be_grown_without_bound);

/// Finding 11: the broker held an invite to its expiry only in
/// `invite_join`; an `admit` back-dated before the expiry and sent with
/// `log_append` was taken. Now every append checks it by the broker's clock.
async fn an_expired_invite_admits_no_one_on_any_path(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let a = alice.connect().await;
    let invite = SigningKey::generate();
    let expires_at = now_secs() + 1;
    a.append_entries(|s| {
        Ok(vec![LogEntry::sign(
            s.member_key(),
            s.roster().len(),
            s.roster().head(),
            now_secs(),
            EntryBody::Invite {
                invite_key: invite.public(),
                role: Role::Member,
                max_uses: 5,
                expires_at,
            },
        )])
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let joiner = SigningKey::generate();
    let back_dated = a
        .append_entries(|s| {
            Ok(vec![LogEntry::admit(
                &joiner,
                &invite,
                s.roster().len(),
                s.roster().head(),
                expires_at - 1,
            )])
        })
        .await;
    assert!(
        matches!(
            back_dated,
            Err(claudemesh_client::ClientError::Refused {
                code: ErrorCode::InviteExpired,
                ..
            })
        ),
        "{back_dated:?}"
    );
    assert!(!a.with_state(|s| s.roster().is_member(&joiner.public())));
    a.close().await;
    broker.stop().await;
}
both!(an_expired_invite_admits_no_one_on_any_path);

fn genesis_frame(token: Option<&str>) -> ClientFrame {
    ClientFrame::MeshCreate(MeshCreate {
        req: Some("c".into()),
        genesis: LogEntry::genesis(&SigningKey::generate(), now_secs()),
        token: token.map(str::to_owned),
    })
}

/// Whether `mesh_create` from a connection with `headers` is taken.
async fn creates(url: &str, headers: &[(&'static str, &str)], token: Option<&str>) -> bool {
    let mut raw = Raw::open_with(url, headers).await.unwrap();
    raw.send(&genesis_frame(token)).await;
    match raw.recv().await.unwrap() {
        BrokerFrame::LogAppended(_) => true,
        BrokerFrame::Error(e) => {
            assert_eq!(e.code, ErrorCode::Forbidden);
            false
        }
        other => panic!("{other:?}"),
    }
}

/// Finding 12: anyone who could reach a broker could create meshes (and so
/// reach everything a member can). Now only local clients may by default —
/// a reverse proxy's clients are not local — or holders of the operator's
/// token, or anyone if the operator says so.
async fn strangers_cannot_create_meshes(backend: Backend) {
    use claudemesh_broker::config::{MeshCreatePolicy, MeshCreateToken};
    let proxied = [("x-forwarded-for", "203.0.113.7")];
    let broker = start(backend).await;
    assert!(creates(&broker.url, &[], None).await);
    assert!(!creates(&broker.url, &proxied, None).await);
    broker.stop().await;

    let token = "a-long-operator-token";
    let broker = start_with(backend, |c| {
        c.allow_mesh_create = MeshCreatePolicy::Nobody;
        c.mesh_create_token = Some(MeshCreateToken::new(token).unwrap());
    })
    .await;
    assert!(!creates(&broker.url, &[], None).await);
    assert!(!creates(&broker.url, &proxied, Some("a-wrong-operator-token")).await);
    assert!(creates(&broker.url, &proxied, Some(token)).await);
    // The SDK (what `claudemesh mesh create --create-token` uses).
    let dir = tempfile::tempdir().unwrap();
    let mut home = home(dir.path(), "op");
    claudemesh_client::membership::create_mesh(
        &mut home,
        "ops",
        &broker.url,
        "op",
        claudemesh_crypto::log::PeerType::Human,
        Some(token),
    )
    .await
    .unwrap();
    broker.stop().await;

    let broker = start_with(backend, |c| c.allow_mesh_create = MeshCreatePolicy::Anyone).await;
    assert!(creates(&broker.url, &proxied, None).await);
    broker.stop().await;
}
both!(strangers_cannot_create_meshes);

/// Seen from reading: an `ack` wrote a fan-out receipt for any seq, even of
/// a private topic the acking member is not in. Now receipts are written
/// only for messages of targets the member could have received.
async fn acks_of_messages_never_received_write_nothing(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let mallory = joiner(&broker, &alice, "mallory").await;
    let a = alice.connect().await;
    topics::topic_create(&a, "secret", true, "").await.unwrap();
    topics::topic_add(&a, "secret", "bob").await.unwrap();
    let posted = messages::send(
        &a,
        Target::Topic("secret".into()),
        "for bob only",
        Priority::Next,
        None,
    )
    .await
    .unwrap();
    let mut raw = session(&broker.url, &Hand::of(&mallory), None).await;
    raw.send(&ClientFrame::Ack(Ack {
        seqs: vec![posted.seq, posted.seq + 1000],
        read: true,
    }))
    .await;
    raw.send(&ping("after")).await;
    until_pong(&mut raw, "after").await;
    // Bob reads it (his receipt is written after mallory's ack was taken).
    assert_eq!(bob.read_inbox().await, vec!["for bob only"]);
    let bob_key = Hand::of(&bob).member.public().to_hex();
    let mallory_key = Hand::of(&mallory).member.public().to_hex();
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        // Bob's client signs watermarks (the broker flushes them every
        // 2 s, or 10 s on SQLite); an old client's unsigned ack would
        // write a receipt row.
        let dump = broker.running().store().dump().await.unwrap();
        let evidence: String = dump
            .iter()
            .filter(|t| t.table == "fanout_receipts" || t.table == "watermarks")
            .map(|t| format!("{:?}", t.rows).to_uppercase())
            .collect();
        if evidence.contains(&bob_key.to_uppercase()) {
            assert!(!evidence.contains(&mallory_key.to_uppercase()));
            break;
        }
        assert!(Instant::now() < deadline, "bob's receipt never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.close().await;
    broker.stop().await;
}
both!(acks_of_messages_never_received_write_nothing);

/// Seen from reading: any member of a private topic may add anyone to it,
/// and each topic added a query to the victim's every drain (a thousand
/// topics made a connect cost ~1 s of queries). Drains now read every
/// target in one query per page; this checks that merged paging still
/// delivers each message exactly once when the topics' messages span more
/// than one page.
async fn a_member_put_in_hundreds_of_topics_still_gets_each_message_once(backend: Backend) {
    use claudemesh_crypto::log::{topic_create_body, topic_join_body};
    let broker = start_with(backend, |c| c.log_burst = 1000).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let mallory = joiner(&broker, &alice, "mallory").await;
    let bob_key = Hand::of(&bob).member.public();
    let m = mallory.connect().await;
    // Six appends of 50 topics (100 entries each stay well inside a frame).
    let (chunks, per_chunk) = (6, 50);
    for chunk in 0..chunks {
        m.append_entries(|s| {
            let mut roster = s.roster().clone();
            let mut out = Vec::new();
            for i in 0..per_chunk {
                let name = format!("trap{chunk}-{i}");
                let (body, key) =
                    topic_create_body(&name, true, "", &s.member_key().public(), &s.mesh_id())
                        .map_err(|e| {
                            claudemesh_client::ClientError::Invalid(e.to_string().into())
                        })?;
                for body in [
                    body,
                    topic_join_body(&name, &bob_key, key.as_ref()).map_err(|e| {
                        claudemesh_client::ClientError::Invalid(e.to_string().into())
                    })?,
                ] {
                    let e = LogEntry::sign(
                        s.member_key(),
                        roster.len(),
                        roster.head(),
                        now_secs(),
                        body,
                    );
                    roster
                        .apply(&e)
                        .map_err(claudemesh_client::ClientError::LogInvalid)?;
                    out.push(e);
                }
            }
            Ok(out)
        })
        .await
        .unwrap();
    }
    for chunk in 0..chunks {
        for i in 0..per_chunk {
            messages::send(
                &m,
                Target::Topic(format!("trap{chunk}-{i}")),
                &format!("{chunk}-{i}"),
                Priority::Low,
                None,
            )
            .await
            .unwrap();
        }
    }
    m.close().await;
    let mut got = bob.read_inbox_limit(1000).await;
    got.sort();
    let mut want: Vec<String> = (0..chunks)
        .flat_map(|c| (0..per_chunk).map(move |i| format!("{c}-{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want);
    assert!(bob.read_inbox().await.is_empty(), "each exactly once");
    broker.stop().await;
}
both!(a_member_put_in_hundreds_of_topics_still_gets_each_message_once);

/// Seen from reading: receivers judge a sender's certificate at the
/// sender-chosen `sent_at`, so only the broker's clock can stop a session
/// whose certificate expired while it was connected. It does: the next
/// frame is refused (`cert_expired`) and the connection closed, not
/// terminally (the client renews and reconnects).
async fn a_certificate_that_expires_mid_connection_ends_it(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let hand = Hand::of(&alice);
    let lifetime = 30 * 24 * 3600;
    let short_lived =
        SessionIdentity::new(&hand.member, hand.mesh, now_secs() + 2 - lifetime, lifetime).unwrap();
    let mut raw = Raw::open(&broker.url).await;
    hello(&mut raw, &short_lived, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    raw.send(&ping("late")).await;
    assert_eq!(raw.expect_error().await.code, ErrorCode::CertExpired);
    assert_eq!(raw.expect_close().await, (1000, "cert_expired".to_owned()));
    broker.stop().await;
}
both!(a_certificate_that_expires_mid_connection_ends_it);

fn catch_ups() -> u64 {
    let text = claudemesh_broker::metrics::handle().unwrap().render();
    text.lines()
        .find(|l| l.starts_with(claudemesh_broker::metrics::LOG_CATCH_UPS))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Seen from reading: with replicas, a hello from a key no one admitted
/// made the broker take the mesh's append lock and read the store, each
/// time. Now such catch-ups take turns, at most one per 200 ms per mesh,
/// and one that a later catch-up covered does not read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hellos_from_strangers_do_not_make_a_replica_reread_the_log_each_time() {
    let (a, b) = start_replicas().await;
    let alice = owner(&a, "alice").await;
    let mesh = alice.mesh.id;
    let before = catch_ups();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let url = b.url.clone();
        tasks.push(tokio::spawn(async move {
            let stranger = Hand {
                member: SigningKey::generate(),
                mesh,
            };
            let mut raw = Raw::open(&url).await;
            hello(&mut raw, &stranger.session(), None).await
        }));
    }
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            Err((ErrorCode::NotAMember, 1008)),
            "a stranger's hello"
        );
    }
    let reads = catch_ups() - before;
    let allowed = started.elapsed().as_millis() as u64 / 200 + 2;
    assert!(
        reads <= allowed,
        "{reads} catch-ups for 40 hellos in {:?}",
        started.elapsed()
    );
    b.stop().await;
    a.stop().await;
}

//! Several brokers on one Postgres serving one mesh (issue 7): a peer on
//! replica A reaches a peer on replica B — direct, topic, group, broadcast,
//! live and offline — sees its presence, and a kick on A closes B's
//! connections of the kicked member; grants set on one replica hold on the
//! other. Then two broker processes under traffic, one SIGKILLed: its peers
//! fail over to the other and every accepted message is delivered exactly
//! once after client dedupe.
//!
//! Correctness only: every wait has a generous deadline, nothing is timed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use claudemesh_client::grants::{self, GrantChange};
use claudemesh_client::groups;
use claudemesh_client::messages;
use claudemesh_client::moderation;
use claudemesh_client::topics;
use claudemesh_client::{ClientError, ConnectOptions, Event, MeshClient};
use claudemesh_crypto::envelope::{Priority, Target};
use claudemesh_crypto::log::RemoveKind;
use claudemesh_proto::ErrorCode;
use claudemesh_proto::frames::Status;

use crate::support::*;
use claudemesh_crypto::MemberKey;

/// Deadline for anything that crosses replicas.
const PATIENCE: Duration = Duration::from_secs(30);

/// `peer` as a device that connects to the broker at `url`.
fn on(mut peer: Peer, url: &str) -> Peer {
    peer.mesh.broker_url = url.to_owned();
    peer
}

/// Syncs `c`'s log until it is at least `len` long: its broker (which serves
/// the log from memory) has then adopted every entry up to there.
async fn wait_log(c: &MeshClient, len: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        c.sync_log().await.unwrap();
        if c.with_state(|s| s.roster().len()) >= len {
            return;
        }
        assert!(Instant::now() < deadline, "the log never reached {len}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn log_len(c: &MeshClient) -> u64 {
    c.with_state(|s| s.roster().len())
}

/// Waits for the next message event and returns its body.
async fn next_body(rx: &mut tokio::sync::broadcast::Receiver<Event>) -> String {
    let wait = async {
        loop {
            match MeshClient::next_event(rx).await {
                Some(Event::Message(m)) => return m.body,
                Some(_) => continue,
                None => panic!("event stream ended"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("a message from the other replica")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_replicas_live_and_offline() {
    let (ra, rb) = start_replicas().await;
    let alice = owner(&ra, "alice").await;
    let bob = on(joiner(&ra, &alice, "bob").await, &rb.url);
    let carol = on(joiner(&ra, &alice, "carol").await, &rb.url);

    // Bob joins a topic and a group through B; alice, on A, creates the
    // topic first.
    let a = alice.connect().await;
    topics::topic_create(&a, "deploys", false, "")
        .await
        .unwrap();
    let b = bob.connect().await;
    wait_log(&b, log_len(&a)).await;
    topics::topic_join(&b, "deploys").await.unwrap();
    groups::group_join(&b, "eng/backend", None).await.unwrap();
    // Alice's broker has adopted B's appends once she can read them.
    wait_log(&a, log_len(&b)).await;

    let mut bob_events = b.events();
    let mut alice_events = a.events();

    // Direct, live, both ways.
    let to_bob = a.resolve("bob").await.unwrap();
    a.send(to_bob.clone(), b"A to B", Priority::Next, None)
        .await
        .unwrap();
    assert_eq!(next_body(&mut bob_events).await, "A to B");
    let to_alice = b.resolve("alice").await.unwrap();
    b.send(to_alice, b"B to A", Priority::Next, None)
        .await
        .unwrap();
    assert_eq!(next_body(&mut alice_events).await, "B to A");

    // Topic, group, broadcast: stored once on A, pushed by B.
    for (target, body) in [
        (Target::Topic("deploys".into()), "topic from A"),
        (Target::Group("eng".into()), "group from A"),
        (Target::Broadcast, "broadcast from A"),
    ] {
        messages::send(&a, target, body, Priority::Next, None)
            .await
            .unwrap();
        assert_eq!(next_body(&mut bob_events).await, body);
    }

    // Offline: carol is not connected anywhere; she connects to B later.
    let to_carol = a.resolve("carol").await.unwrap();
    a.send(to_carol, b"while you were away", Priority::Next, None)
        .await
        .unwrap();
    messages::send(
        &a,
        Target::Broadcast,
        "broadcast for all",
        Priority::Next,
        None,
    )
    .await
    .unwrap();
    assert_eq!(next_body(&mut bob_events).await, "broadcast for all");
    let inbox = carol.read_inbox().await;
    assert_eq!(
        inbox.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "while you were away",
            "broadcast from A",
            "broadcast for all"
        ]),
    );

    // A session-addressed message to carol's session on B, from A.
    let c = carol.connect().await;
    let mut carol_events = c.events();
    let carol_session = c.info().welcome.session;
    let deadline = Instant::now() + PATIENCE;
    // Alice's client learns the session (its certificate) from a peer list
    // that A answers with B's sessions.
    loop {
        a.peers().await.unwrap();
        match a
            .send(
                Target::Session(carol_session),
                b"to your session",
                Priority::Next,
                None,
            )
            .await
        {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(next_body(&mut carol_events).await, "to your session");

    c.close().await;
    a.close().await;
    b.close().await;
    rb.stop().await;
    ra.stop().await;
}

/// Waits for a `presence` event saying `member` is `want` (`working`,
/// `online` or `offline`).
async fn presence_of(
    rx: &mut tokio::sync::broadcast::Receiver<Event>,
    member: &claudemesh_crypto::PublicKey,
    want: &str,
) {
    let wait = async {
        loop {
            match MeshClient::next_event(rx).await {
                Some(Event::Presence(p)) if p.member == *member => {
                    let seen = match (p.online, p.status) {
                        (false, _) => "offline",
                        (true, Status::Working) => "working",
                        (true, _) => "online",
                    };
                    if seen == want {
                        return;
                    }
                }
                Some(_) => continue,
                None => panic!("event stream ended"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("never saw the peer {want}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_crosses_replicas() {
    let (ra, rb) = start_replicas().await;
    let alice = owner(&ra, "alice").await;
    let bob = on(joiner(&ra, &alice, "bob").await, &rb.url);

    let b = bob.connect().await;
    let mut bob_events = b.events();
    let a = alice.connect().await;
    let alice_key = alice
        .home
        .load_keys(&alice.mesh.id)
        .unwrap()
        .member
        .public();
    let alice_hex = alice_key.to_hex();

    // Bob's peer list (answered by B) shows alice, connected to A.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let peers = b.peers().await.unwrap();
        let view = peers.iter().find(|p| p.key == alice_hex).unwrap();
        if view.online && !view.sessions.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "alice never showed online on B");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Her presence changes reach bob as `presence` events.
    a.set_presence(Some(Status::Working), None).await.unwrap();
    presence_of(&mut bob_events, &alice_key, "working").await;
    a.close().await;
    presence_of(&mut bob_events, &alice_key, "offline").await;
    let peers = b.peers().await.unwrap();
    let view = peers.iter().find(|p| p.key == alice_hex).unwrap();
    assert!(!view.online && view.sessions.is_empty(), "{view:?}");

    b.close().await;
    rb.stop().await;
    ra.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_on_one_replica_closes_the_member_on_the_other() {
    let (ra, rb) = start_replicas().await;
    let alice = owner(&ra, "alice").await;
    let bob = on(joiner(&ra, &alice, "bob").await, &rb.url);

    let b = bob.connect().await;
    let mut bob_events = b.events();
    let a = alice.connect().await;
    moderation::remove(&a, "bob", RemoveKind::Kick)
        .await
        .unwrap();
    let wait = async {
        loop {
            match MeshClient::next_event(&mut bob_events).await {
                Some(Event::Stopped { reason }) => return reason,
                Some(_) => continue,
                None => panic!("event stream ended"),
            }
        }
    };
    let reason = tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("B closes bob's connection");
    assert!(reason.contains("4001"), "{reason}");
    // And B refuses him from then on.
    match MeshClient::connect(&bob.home, &bob.mesh, ConnectOptions::default()).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::Removed),
        other => panic!("expected removed, got {other:?}"),
    }
    a.close().await;
    rb.stop().await;
    ra.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_set_on_one_replica_hold_on_the_other() {
    let (ra, rb) = start_replicas().await;
    let alice = owner(&ra, "alice").await;
    let bob = on(joiner(&ra, &alice, "bob").await, &rb.url);

    let b = bob.connect().await;
    grants::change(&b, &bob.home, "alice", GrantChange::Block { silent: false })
        .await
        .unwrap();
    b.close().await;

    // A reloads bob's grant set when B tells it; until then a send may
    // still be accepted.
    let a = alice.connect().await;
    let to_bob = a.resolve("bob").await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match a.send(to_bob.clone(), b"hi", Priority::Next, None).await {
            Err(ClientError::Refused { code, .. }) => {
                assert_eq!(code, ErrorCode::Refused);
                break;
            }
            Ok(_) => assert!(Instant::now() < deadline, "A never took bob's grants"),
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.close().await;
    rb.stop().await;
    ra.stop().await;
}

/// A broker killed between its commit and its notification leaves an
/// accepted message nobody was woken for. Simulated: a message written
/// straight into the store (no writer, so no wake-up) and a dead broker's
/// row with a stale heartbeat. The replica that removes the dead broker
/// has every replica drain its sessions, so the message still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_brokers_unannounced_messages_still_arrive() {
    let (ra, rb) = start_replicas().await;
    let alice = owner(&ra, "alice").await;
    let bob = on(joiner(&ra, &alice, "bob").await, &rb.url);
    let b = bob.connect().await;
    let mut bob_events = b.events();
    let a = alice.connect().await;
    let bob_key = bob.home.load_keys(&bob.mesh.id).unwrap().member.public();
    let alice_key = alice
        .home
        .load_keys(&alice.mesh.id)
        .unwrap()
        .member
        .public();

    let now = claudemesh_client::client::now_ms();
    let env = a
        .with_state(|s| {
            s.seal(
                Target::Member(MemberKey(bob_key)),
                b"committed, never announced",
                Priority::Next,
                None,
                now,
            )
        })
        .unwrap();
    let store = ra.running().store().clone();
    store
        .write_batch(
            &[claudemesh_broker::store::NewMessage {
                mesh: alice.mesh.id,
                sender_member: alice_key,
                id: env.id,
                target: env.target.to_string(),
                priority: Priority::Next,
                envelope_json: serde_json::to_string(&env).unwrap(),
                recipients: vec![bob_key],
                at_len: None,
                created_at_ms: now,
                expires_at_ms: now + 3_600_000,
                deadline_ms: None,
                held: false,
            }],
            &[],
        )
        .await
        .unwrap();
    let db_url = ra.db.as_ref().unwrap().url().to_owned();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db_url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO brokers (broker_id, started_at_ms, heartbeat_at_ms) VALUES ('ghost', 0, 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        next_body(&mut bob_events).await,
        "committed, never announced"
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM brokers WHERE broker_id = 'ghost'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "the dead broker was removed");
    drop(conn);
    a.close().await;
    b.close().await;
    rb.stop().await;
    ra.stop().await;
}

// ------------------------------------------------------------- processes

const BROKER: &str = env!("CARGO_BIN_EXE_claudemesh-broker");

/// A broker process, killed when dropped.
struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Proc {
    fn spawn(db_url: &str, id: &str, dir: &std::path::Path) -> Proc {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let stderr = std::fs::File::create(dir.join(format!("{id}.stderr"))).unwrap();
        let child = Command::new(BROKER)
            .args(["--listen", &addr.to_string(), "--database-url", db_url])
            .args(["--broker-id", id])
            .env("CLAUDEMESH_BROKER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Proc { child, addr }
    }

    async fn wait_ready(&self) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(self.addr).await {
                let req = format!(
                    "GET /readyz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.addr
                );
                s.write_all(req.as_bytes()).await.unwrap();
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf).await;
                if String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "broker {} never ready",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two broker processes on one database, four peers spread over them
/// (each behind a proxy that prefers its own broker and fails over to the
/// other), every peer sending to a peer on the other replica and one on
/// its own. SIGKILL one broker mid-stream: its peers reconnect to the
/// other, and each recipient's inbox ends up holding every message that
/// was accepted for it, exactly once, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_replica_under_traffic_loses_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let db = claudemesh_broker::testing::fresh_postgres_url()
        .await
        .expect("these tests need Postgres");
    let mut pa = Proc::spawn(db.url(), "proc-a", dir.path());
    let pb = Proc::spawn(db.url(), "proc-b", dir.path());
    pa.wait_ready().await;
    pb.wait_ready().await;
    let (addr_a, addr_b) = (pa.addr, pb.addr);

    let alice = owner_at(dir.path(), &format!("ws://{addr_a}"), "alice").await;
    let mut peers = vec![alice];
    for name in ["bob", "carol", "dave"] {
        let url = invite(&peers[0], Default::default()).await;
        peers.push(join_at(dir.path(), &url, name).await.unwrap());
    }
    // alice and bob live on A, carol and dave on B.
    for (i, p) in peers.iter_mut().enumerate() {
        let order = if i < 2 {
            vec![addr_a, addr_b]
        } else {
            vec![addr_b, addr_a]
        };
        p.mesh.broker_url = failover_proxy(order).await;
    }
    let resilient = ConnectOptions {
        reconnect: true,
        request_timeout: Duration::from_secs(120),
        connect_timeout: Duration::from_secs(20),
        ..ConnectOptions::default()
    };
    let mut clients = Vec::new();
    for p in &peers {
        clients.push(Arc::new(p.connect_with(resilient.clone()).await));
    }
    // Each peer sends to the peer on the other replica and to its
    // neighbour on its own: alice→carol, alice→bob, bob→dave, bob→alice,
    // carol→alice, carol→dave, dave→bob, dave→carol.
    let routes = [
        (0, 2),
        (0, 1),
        (1, 3),
        (1, 0),
        (2, 0),
        (2, 3),
        (3, 1),
        (3, 2),
    ];
    let per_route = 60;
    let accepted: Arc<Mutex<BTreeMap<usize, BTreeSet<String>>>> = Arc::default();
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for (from, to) in routes {
        let c = clients[from].clone();
        let to_name = peers[to].name.clone();
        let (accepted, total) = (accepted.clone(), total.clone());
        senders.push(tokio::spawn(async move {
            let target = c.resolve(&to_name).await.unwrap();
            for i in 0..per_route {
                let body = format!("{from}->{to} #{i}");
                let out = c
                    .send(target.clone(), body.as_bytes(), Priority::Next, None)
                    .await
                    .unwrap_or_else(|e| panic!("{body}: {e}"));
                accepted
                    .lock()
                    .unwrap()
                    .entry(to)
                    .or_default()
                    .insert(out.id.to_hex());
                total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    // SIGKILL A a third of the way through.
    let deadline = Instant::now() + Duration::from_secs(120);
    while total.load(std::sync::atomic::Ordering::Relaxed) < routes.len() * per_route / 3 {
        assert!(Instant::now() < deadline, "traffic never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pa.child.kill().unwrap();
    let _ = pa.child.wait();
    for s in senders {
        s.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(
        accepted.values().map(BTreeSet::len).sum::<usize>(),
        routes.len() * per_route
    );

    // Every recipient — now all on B — has each message once.
    for (to, want) in &accepted {
        let c = &clients[*to];
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            c.settle().await.ok();
            let inbox = c
                .local()
                .inbox(&peers[*to].mesh.id, false, 10_000)
                .await
                .unwrap();
            let ids: BTreeSet<String> = inbox.iter().map(|m| m.id.clone()).collect();
            assert_eq!(ids.len(), inbox.len(), "an inbox holds a message twice");
            if want.is_subset(&ids) {
                assert_eq!(
                    &ids, want,
                    "{} got messages nobody sent it",
                    peers[*to].name
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {} accepted messages never arrived",
                peers[*to].name,
                want.difference(&ids).count()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for (c, p) in clients.iter().zip(&peers) {
        let pending = c.local().outbox_pending(&p.mesh.id).await.unwrap();
        assert!(
            pending.is_empty(),
            "{}: {} still pending",
            p.name,
            pending.len()
        );
    }
    for c in clients {
        if let Ok(c) = Arc::try_unwrap(c) {
            c.close().await;
        }
    }
    drop(pb);
    db.drop_database().await;
}

//! The broker as a process: HTTP health, readiness and metrics; start with
//! no arguments; clear start-up failures; SIGTERM closes connections with
//! 1001 after flushing; and SIGKILL under load loses nothing it accepted
//! (every accepted message is delivered exactly once after client dedupe).

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use claudemesh_client::{ConnectOptions, Event, MeshClient};
use claudemesh_crypto::envelope::Priority;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::both;
use crate::support::*;

const BROKER: &str = env!("CARGO_BIN_EXE_claudemesh-broker");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Raw HTTP/1.1 GET; returns (status, body).
async fn http_get(addr: &str, path: &str, headers: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

async fn http_endpoints(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    alice.connect().await.close().await;
    let addr = broker.running().local_addr.to_string();
    let (s, b) = http_get(&addr, "/healthz", "").await;
    assert_eq!((s, b.trim()), (200, "ok"));
    let (s, _) = http_get(&addr, "/readyz", "").await;
    assert_eq!(s, 200);
    let (s, b) = http_get(&addr, "/metrics", "").await;
    assert_eq!(s, 200);
    for name in [
        "claudemesh_handshakes_total",
        "claudemesh_commit_seconds",
        "claudemesh_connections",
        "claudemesh_writer_queue_depth",
    ] {
        assert!(b.contains(name), "/metrics lacks {name}");
    }
    // A websocket upgrade without the subprotocol is refused.
    let (s, _) = http_get(
        &addr,
        "/ws",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    )
    .await;
    assert_eq!(s, 400);
    // The invite landing page, with no wildcard CORS.
    let (s, b) = http_get(&addr, "/join", "Origin: https://evil.example\r\n").await;
    assert_eq!(s, 200);
    assert!(b.contains("claudemesh join"));
    broker.stop().await;
}
both!(http_endpoints);

struct Proc {
    child: Child,
    stderr_path: std::path::PathBuf,
}

impl Proc {
    fn spawn(args: &[&str], envs: &[(&str, &str)], dir: &std::path::Path, tag: &str) -> Proc {
        let stderr_path = dir.join(format!("{tag}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut cmd = Command::new(BROKER);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .env("CLAUDEMESH_BROKER_LOG", "warn");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().unwrap(),
            stderr_path,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit; stderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let (s, _) = http_get(addr, "/readyz", "").await;
            if s == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "broker at {addr} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn start_up_failures_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    // Nobody listens on port 1.
    let mut p = Proc::spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/nope",
        ],
        &[],
        dir.path(),
        "pg",
    );
    assert!(!p.wait_exit(Duration::from_secs(30)).success());
    let err = p.stderr();
    assert!(err.contains("cannot start"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // Bad YAML in the config file: exit 2, with line and column.
    let cfg = dir.path().join("broker.yaml");
    std::fs::write(&cfg, "listen: [oops\n").unwrap();
    let mut p = Proc::spawn(
        &["--config", cfg.to_str().unwrap()],
        &[],
        dir.path(),
        "yaml",
    );
    assert_eq!(p.wait_exit(Duration::from_secs(10)).code(), Some(2));
    assert!(p.stderr().contains("line"), "{}", p.stderr());
    // An unknown database scheme.
    let mut p = Proc::spawn(
        &["--listen", "127.0.0.1:0", "--database-url", "mysql://x"],
        &[],
        dir.path(),
        "scheme",
    );
    assert!(!p.wait_exit(Duration::from_secs(10)).success());
    assert!(
        p.stderr().contains("unsupported database URL"),
        "{}",
        p.stderr()
    );
}

#[tokio::test]
async fn no_arguments_means_sqlite_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let data = dir.path().join("data");
    let p = Proc::spawn(
        &[],
        &[
            ("HOME", dir.path().to_str().unwrap()),
            ("XDG_DATA_HOME", data.to_str().unwrap()),
            ("CLAUDEMESH_BROKER_LISTEN", addr.as_str()),
        ],
        dir.path(),
        "default",
    );
    wait_ready(&addr).await;
    assert!(data.join("claudemesh/broker.db").exists(), "{}", p.stderr());
    drop(p);
}

async fn sigterm_closes_with_1001_after_flushing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (db_url, db) = database(backend, dir.path()).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut p = Proc::spawn(
        &["--listen", &addr, "--database-url", &db_url],
        &[],
        dir.path(),
        "term",
    );
    wait_ready(&addr).await;
    let url = format!("ws://{addr}");
    let alice = owner_at(dir.path(), &url, "alice").await;
    let bob = join_at(dir.path(), &invite(&alice, Default::default()).await, "bob")
        .await
        .unwrap();
    let a = alice.connect().await;
    let to_bob = a.resolve("bob").await.unwrap();
    a.send(to_bob, b"before the end", Priority::Next, None)
        .await
        .unwrap();
    let mut events = a.events();
    p.signal("-TERM");
    let reason = loop {
        match tokio::time::timeout(Duration::from_secs(10), MeshClient::next_event(&mut events))
            .await
            .unwrap()
        {
            Some(Event::Stopped { reason }) => break reason,
            Some(_) => continue,
            None => panic!("no stop event"),
        }
    };
    assert!(reason.contains("1001"), "{reason}");
    let st = p.wait_exit(Duration::from_secs(15));
    assert!(st.success(), "exit {st:?}: {}", p.stderr());
    drop(p);
    // Restart: the message accepted before SIGTERM is still there.
    let _p = Proc::spawn(
        &["--listen", &addr, "--database-url", &db_url],
        &[],
        dir.path(),
        "term2",
    );
    wait_ready(&addr).await;
    assert_eq!(bob.read_inbox().await, vec!["before the end"]);
    drop(_p);
    if let Some(db) = db {
        db.drop_database().await;
    }
}
both!(sigterm_closes_with_1001_after_flushing);

/// SIGKILL the broker while four senders stream messages, restart it, and
/// check that every message the broker accepted reaches the recipient, and
/// the recipient's inbox holds each exactly once.
async fn sigkill_under_load_loses_nothing_accepted(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (db_url, db) = database(backend, dir.path()).await;
    let addr = format!("127.0.0.1:{}", free_port());
    let args = ["--listen", addr.as_str(), "--database-url", db_url.as_str()];
    let mut p = Proc::spawn(&args, &[], dir.path(), "run1");
    wait_ready(&addr).await;
    let url = format!("ws://{addr}");
    let alice = owner_at(dir.path(), &url, "alice").await;
    let bob = join_at(dir.path(), &invite(&alice, Default::default()).await, "bob")
        .await
        .unwrap();
    let resilient = ConnectOptions {
        reconnect: true,
        request_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(10),
        ..ConnectOptions::default()
    };
    let b = bob.connect_with(resilient.clone()).await;
    let a = Arc::new(alice.connect_with(resilient).await);
    let to_bob = a.resolve("bob").await.unwrap();

    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let per_sender = 150;
    let mut senders = Vec::new();
    for s in 0..4 {
        let (a, to, accepted) = (a.clone(), to_bob.clone(), accepted.clone());
        senders.push(tokio::spawn(async move {
            for i in 0..per_sender {
                let body = format!("sender {s} message {i}");
                let out = a
                    .send(to.clone(), body.as_bytes(), Priority::Next, None)
                    .await
                    .unwrap_or_else(|e| panic!("{body}: {e}"));
                accepted.lock().unwrap().insert(out.id.to_hex());
            }
        }));
    }
    // Kill it mid-stream.
    while accepted.lock().unwrap().len() < 150 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    p.child.kill().unwrap();
    let _ = p.child.wait();
    drop(p);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _p2 = Proc::spawn(&args, &[], dir.path(), "run2");
    for s in senders {
        s.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 4 * per_sender);
    // Everything accepted reaches bob, once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        b.settle().await.ok();
        let inbox = b.local().inbox(&bob.mesh.id, false, 10_000).await.unwrap();
        let ids: BTreeSet<String> = inbox.iter().map(|m| m.id.clone()).collect();
        assert_eq!(ids.len(), inbox.len(), "the inbox holds a message twice");
        if accepted.is_subset(&ids) {
            assert_eq!(ids.len(), accepted.len(), "bob got messages nobody sent");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} accepted messages never arrived",
            accepted.difference(&ids).count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing is left pending in alice's outbox.
    let pending = a.local().outbox_pending(&alice.mesh.id).await.unwrap();
    assert!(pending.is_empty(), "{} still pending", pending.len());
    b.close().await;
    drop(_p2);
    if let Some(db) = db {
        db.drop_database().await;
    }
}
both!(sigkill_under_load_loses_nothing_accepted);

//! Scenario `handshake`: `--senders` concurrent clients each open a
//! connection, authenticate, and close it, over and over, until
//! `--messages` handshakes are done or the time limit passes. Latency is
//! connect → `welcome`.
//!
//! Two client paths:
//! - `wire` (default): TCP connect, websocket upgrade, the broker's
//!   challenge, a `hello` signed with a session certificate made before the
//!   clock starts, `welcome`, close. This is the broker's handshake rate with
//!   the least client work (one ed25519 signature per connection).
//! - `sdk`: `MeshClient::connect_with` (ephemeral session: a new key and
//!   certificate, the local log read and verified from genesis, the
//!   handshake, log catch-up, outbox and receipts checked) then `close`,
//!   sharing one open local store; what a short-lived CLI command pays.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use claudemesh_client::local::LocalStore;
use claudemesh_client::{ConnectOptions, MeshClient, SessionChoice, wire};
use claudemesh_crypto::cert::SessionIdentity;
use futures_util::SinkExt as _;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::args::{ClientPath, ClientState, HandshakeArgs};
use crate::light::next_light;
use crate::report::{ClientInfo, Counts, Report, Rss, build_profile, cpus, now_rfc3339};
use crate::setup::{Member, build_mesh};
use crate::stats::Samples;
use crate::target::{Probe, Target, client_dir};
use crate::{BenchError, Result};

/// How long one handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the scenario.
pub async fn run(a: HandshakeArgs) -> Result<Report> {
    Target::run(&a.common, async |target| on_target(&a, target).await).await
}

/// Counters shared by the workers.
#[derive(Debug, Default)]
struct Tally {
    next: AtomicU64,
    attempted: AtomicU64,
    completed: AtomicU64,
    errors: AtomicU64,
    last_done_ns: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn error(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }
}

/// What one handshake needs.
enum Path {
    Wire {
        url: String,
        sessions: Arc<Vec<SessionIdentity>>,
    },
    Sdk {
        owner: Box<Member>,
        local: LocalStore,
    },
}

async fn on_target(a: &HandshakeArgs, target: &Target) -> Result<Report> {
    let state = a.common.client_state.unwrap_or(ClientState::Tmpfs);
    let dir = client_dir(state)?;
    let setup_started = Instant::now();
    let setup = tokio::time::timeout(
        crate::dm::SETUP_LIMIT,
        build_mesh(&target.url, dir.path(), 0, |i| format!("m{i}")),
    )
    .await
    .map_err(|_| BenchError("setting up took too long".into()))??;
    let owner = setup.owner;
    let k = a.messages;
    let path = match a.client {
        ClientPath::Wire => {
            // One fresh session certificate per connection, made now.
            let keys = owner.keys()?;
            let mesh_id = owner.mesh.id;
            let now = claudemesh_client::client::now_ms() / 1000;
            let workers = crate::report::cpus().max(1) as u64;
            let mut makers = JoinSet::new();
            for w in 0..workers {
                let member = keys.member.clone();
                let count = k / workers + u64::from(w < k % workers);
                makers.spawn_blocking(move || -> Result<Vec<SessionIdentity>> {
                    (0..count)
                        .map(|_| {
                            SessionIdentity::new(
                                &member,
                                mesh_id,
                                now,
                                crate::setup::BENCH_CERT_LIFETIME,
                            )
                            .map_err(|e| BenchError::ctx("cannot certify a session", e))
                        })
                        .collect()
                });
            }
            let mut sessions = Vec::with_capacity(k as usize);
            while let Some(r) = makers.join_next().await {
                sessions.extend(r.map_err(|e| BenchError::ctx("certifying failed", e))??);
            }
            Path::Wire {
                url: target.url.clone(),
                sessions: Arc::new(sessions),
            }
        }
        ClientPath::Sdk => {
            let local = LocalStore::open(&owner.home.state_db_path()).await?;
            Path::Sdk {
                owner: Box::new(owner),
                local,
            }
        }
    };
    let path = Arc::new(path);
    let setup_s = setup_started.elapsed().as_secs_f64();

    let tally = Arc::new(Tally::default());
    let base = Instant::now();
    let limit = Duration::from_secs(a.common.duration);
    let probe = Probe::begin(target, a.common.wait_idle).await;
    let baseline = crate::sys::scrape_metrics(target.addr)
        .await
        .map(|m| m.connections);
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..a.senders {
        let (tally, path) = (tally.clone(), path.clone());
        workers.spawn(async move {
            let mut samples = Samples::default();
            loop {
                if started.elapsed() >= limit {
                    break;
                }
                let i = tally.next.fetch_add(1, Ordering::Relaxed);
                if i >= k {
                    break;
                }
                tally.attempted.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                let r = tokio::time::timeout(HANDSHAKE_TIMEOUT, one(&path, i as usize, t0)).await;
                match r {
                    Ok(Ok(welcomed)) => {
                        samples.push(u64::try_from(welcomed.as_nanos()).unwrap_or(u64::MAX));
                        tally.completed.fetch_add(1, Ordering::Relaxed);
                        let done = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        tally.last_done_ns.fetch_max(done, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => tally.error(e),
                    Err(_) => tally.error("a handshake took longer than 10 s"),
                }
            }
            samples
        });
    }
    let mut latency = Samples::default();
    while let Some(r) = workers.join_next().await {
        if let Ok(s) = r {
            latency.merge(s);
        }
    }
    // The broker may still be working on connections the clients have
    // closed (session records, presence); the run ends when it is done.
    let caught_up = match baseline {
        Some(b) => crate::sys::wait_connections(target.addr, b, crate::dm::DRAIN_LIMIT * 4).await,
        None => None,
    };
    let measured = probe.end().await;
    let start_ns = u64::try_from((started - base).as_nanos()).unwrap_or(0);
    let welcomed_s = tally
        .last_done_ns
        .load(Ordering::Relaxed)
        .saturating_sub(start_ns) as f64
        / 1e9;
    let completed = tally.completed.load(Ordering::Relaxed);
    drop(dir);
    let mut notes = vec![match a.client {
        ClientPath::Wire => {
            "latency is TCP connect + upgrade + challenge + hello + welcome; the client then closes"
                .to_owned()
        }
        ClientPath::Sdk => {
            "latency is MeshClient::connect_with (ephemeral session); close() is not timed"
                .to_owned()
        }
    }];
    let elapsed_s = match caught_up {
        Some(t) => {
            let total = (t - started).as_secs_f64();
            notes.push(format!(
                "welcomed at {:.0}/s (last welcome after {welcomed_s:.3} s); the broker closed the last connection {:.3} s after the last welcome: throughput counts until then",
                if welcomed_s > 0.0 { completed as f64 / welcomed_s } else { 0.0 },
                (total - welcomed_s).max(0.0)
            ));
            total
        }
        None => {
            notes.push(
                "could not see the broker's open connections (/metrics): throughput counts until the last welcome only".into(),
            );
            welcomed_s
        }
    };
    if target.info.mode == "embedded" {
        notes.push(
            "embedded broker: the broker and every client share this process and its cores".into(),
        );
    }
    Ok(Report {
        scenario: "handshake",
        date_utc: now_rfc3339(),
        build: build_profile(),
        cpus: cpus(),
        broker: target.info.clone(),
        client: ClientInfo {
            path: a.client.as_str(),
            what: match a.client {
                ClientPath::Wire => {
                    "raw frames: connect, upgrade, challenge, hello signed with a pre-made session certificate, welcome, close"
                }
                ClientPath::Sdk => {
                    "MeshClient::connect_with (ephemeral session, local log verified) then close"
                }
            },
            state: state.as_str(),
        },
        params: serde_json::json!({
            "concurrency": a.senders,
            "handshakes": k,
            "duration_limit_s": a.common.duration,
        }),
        unit: "handshakes",
        counts: Counts {
            attempted: tally.attempted.load(Ordering::Relaxed),
            completed,
            errors: tally.errors.load(Ordering::Relaxed),
            first_error: tally
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            ..Counts::default()
        },
        elapsed_s,
        throughput_per_s: if elapsed_s > 0.0 {
            completed as f64 / elapsed_s
        } else {
            0.0
        },
        latency_of: "connect → welcome",
        latency: latency.summary(),
        latency2_of: None,
        latency2: None,
        latency_more: Vec::new(),
        rss: Rss::of(&measured),
        cpu: measured.cpu,
        broker_metrics: measured.metrics,
        setup_s,
        notes,
    })
}

/// One handshake; returns the time from `t0` to `welcome`.
async fn one(path: &Path, i: usize, t0: Instant) -> Result<Duration> {
    match path {
        Path::Wire { url, sessions } => {
            let session = sessions
                .get(i)
                .ok_or_else(|| BenchError("no session certificate left".into()))?;
            let mut opened = wire::open(url, HANDSHAKE_TIMEOUT).await?;
            crate::dm::send_hello(&mut opened, session).await?;
            loop {
                let f = next_light(&mut opened.stream).await?;
                match f.kind.as_str() {
                    "welcome" => break,
                    "error" => {
                        return Err(BenchError(format!(
                            "hello refused: {}: {}",
                            f.code.map(|c| c.to_string()).unwrap_or_default(),
                            f.message.unwrap_or_default()
                        )));
                    }
                    _ => continue,
                }
            }
            let welcomed = t0.elapsed();
            let _ = opened.sink.send(Message::Close(None)).await;
            Ok(welcomed)
        }
        Path::Sdk { owner, local } => {
            let client = MeshClient::connect_with(
                &owner.home,
                local.clone(),
                &owner.mesh,
                ConnectOptions {
                    session: SessionChoice::Ephemeral,
                    connect_timeout: HANDSHAKE_TIMEOUT,
                    client_name: "claudemesh-bench".into(),
                    ..ConnectOptions::default()
                },
            )
            .await?;
            let welcomed = t0.elapsed();
            client.close().await;
            Ok(welcomed)
        }
    }
}

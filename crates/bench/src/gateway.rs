//! `gateway`: two homes in one mesh, each served by a real `claudemesh
//! serve` process; a script's path end to end. The sender POSTs direct
//! messages to its gateway's REST API at a paced rate (several keep-alive
//! connections, as a script with a small pool would); the recipient's
//! gateway streams them as server-sent events. Reports POST → `201`
//! latency, POST → SSE `message` event latency (sealing, the broker, the
//! recipient's verification and inbox write, the journal, the stream),
//! and the gateways' resident memory idle (both links up, nothing sent)
//! and under load, read from `/proc`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncBufReadExt as _;

use crate::args::{ClientState, GatewayArgs};
use crate::report::{
    ClientInfo, Counts, NamedLatency, Report, Rss, build_profile, cpus, mb, now_rfc3339,
};
use crate::setup::build_mesh;
use crate::stats::Samples;
use crate::sys::{CpuSnapshot, CpuUse, RssSampler, cpu_seconds, rss_bytes};
use crate::target::{Target, client_dir};
use crate::{BenchError, Result};

/// How long the links may take to come up.
const UP_WITHIN: Duration = Duration::from_secs(30);
/// How long to wait for the last events after the last POST.
const DRAIN: Duration = Duration::from_secs(15);
/// Settling time before the idle reading.
const IDLE_SETTLE: Duration = Duration::from_secs(2);

/// Runs the scenario.
pub async fn run(a: GatewayArgs) -> Result<Report> {
    let cli = match &a.cli {
        Some(p) => p.clone(),
        None => crate::peer_list::default_cli()?,
    };
    if !cli.is_file() {
        return Err(BenchError(format!(
            "{} is not a file: build it (cargo build --release -p claudemesh) or pass --cli",
            cli.display()
        )));
    }
    let mut report =
        Target::run(&a.common, async |target| on_target(&a, target, &cli).await).await?;
    // The start figure is the sending gateway's, idle (not the broker's).
    report.rss.start_mb = report.params["sender_gateway_idle_rss_mb"].as_f64();
    Ok(report)
}

/// A running `claudemesh serve`.
struct Served {
    child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
    key: String,
}

impl Served {
    async fn start(cli: &Path, home: &Path) -> Result<Served> {
        let key = make_key(cli, home).await?;
        let mut child = tokio::process::Command::new(cli)
            .arg("--home")
            .arg(home)
            // The bench measures the gateway, not its per-key limit.
            .args([
                "--json",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--rate",
                "100000",
            ])
            .env_remove("CLAUDEMESH_MESH")
            .env_remove("CLAUDEMESH_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::ctx("cannot start claudemesh serve", e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError("claudemesh serve has no stdout".into()))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(UP_WITHIN, lines.next_line())
            .await
            .map_err(|_| BenchError("claudemesh serve did not say where it listens".into()))?
            .map_err(|e| BenchError::ctx("reading claudemesh serve", e))?
            .ok_or_else(|| BenchError("claudemesh serve exited before listening".into()))?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| BenchError::ctx("claudemesh serve's first line", e))?;
        let url = v["listening"].as_str().unwrap_or_default();
        let addr: SocketAddr = url
            .trim_start_matches("http://")
            .parse()
            .map_err(|e| BenchError::ctx(&format!("the address {url:?}"), e))?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError("claudemesh serve exited".into()))?;
        Ok(Served {
            child,
            pid,
            addr,
            key,
        })
    }

    /// Waits until its link to the broker is up.
    async fn wait_up(&self) -> Result<()> {
        let deadline = Instant::now() + UP_WITHIN;
        loop {
            let mut conn = connect(self.addr).await?;
            let (status, body) = request(&mut conn, self, "GET", "/api/v1/meshes", None).await?;
            if status == StatusCode::OK
                && serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .is_some_and(|v| v[0]["link"] == "up")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BenchError(format!(
                    "the gateway's link did not come up ({status}: {})",
                    String::from_utf8_lossy(&body)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then how long it took to exit.
    async fn stop(mut self) -> Option<Duration> {
        let t0 = Instant::now();
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(_)) => Some(t0.elapsed()),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        }
    }
}

/// `claudemesh apikey create bench --cap read,send` in `home`: the key.
async fn make_key(cli: &Path, home: &Path) -> Result<String> {
    let out = tokio::process::Command::new(cli)
        .arg("--home")
        .arg(home)
        .args(["apikey", "create", "bench", "--cap", "read,send"])
        .env_remove("CLAUDEMESH_MESH")
        .env_remove("CLAUDEMESH_HOME")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| BenchError::ctx("cannot run claudemesh apikey create", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(k) if out.status.success() && k.starts_with("cmk_") => Ok(k.to_owned()),
        _ => Err(BenchError(format!(
            "claudemesh apikey create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

type Conn = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Conn> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| BenchError::ctx("connecting to the gateway", e))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| BenchError::ctx("HTTP handshake with the gateway", e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn request(
    conn: &mut Conn,
    to: &Served,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Bytes)> {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", to.addr.to_string())
        .header("authorization", format!("Bearer {}", to.key))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| BenchError::ctx("building a request", e))?;
    conn.ready()
        .await
        .map_err(|e| BenchError::ctx("the gateway connection", e))?;
    let resp = conn
        .send_request(req)
        .await
        .map_err(|e| BenchError::ctx("a request to the gateway", e))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| BenchError::ctx("reading the gateway's answer", e))?
        .to_bytes();
    Ok((status, body))
}

/// Reads `message` events from the recipient's stream; each body names
/// its sequence number (`bench <i> …`): when it arrived.
async fn read_events(
    to: SocketAddr,
    key: String,
    arrived: Arc<Mutex<HashMap<u64, Instant>>>,
    duplicates: Arc<Mutex<u64>>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Result<()> {
    let tcp = tokio::net::TcpStream::connect(to)
        .await
        .map_err(|e| BenchError::ctx("connecting to the gateway", e))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| BenchError::ctx("HTTP handshake with the gateway", e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get("/api/v1/events?kinds=message")
        .header("host", to.to_string())
        .header("authorization", format!("Bearer {key}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| BenchError::ctx("building a request", e))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| BenchError::ctx("opening the event stream", e))?;
    if resp.status() != StatusCode::OK {
        return Err(BenchError(format!(
            "the event stream answered {}",
            resp.status()
        )));
    }
    let _ = ready.send(());
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BenchError::ctx("the event stream", e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        buf.extend_from_slice(&data);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            for line in text.lines() {
                let Some(json) = line.strip_prefix("data:") else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(json.trim()) else {
                    continue;
                };
                let Some(i) = v["body"]
                    .as_str()
                    .and_then(|b| b.strip_prefix("bench "))
                    .and_then(|b| b.split(' ').next())
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                if claudemesh_proto::sync::lock(&arrived)
                    .insert(i, now)
                    .is_some()
                {
                    *claudemesh_proto::sync::lock(&duplicates) += 1;
                }
            }
        }
    }
    Ok(())
}

async fn on_target(a: &GatewayArgs, target: &Target, cli: &Path) -> Result<Report> {
    let state = a.common.client_state.unwrap_or(ClientState::Tmpfs);
    let dir = client_dir(state)?;
    let setup_started = Instant::now();
    let setup = build_mesh(&target.url, dir.path(), 1, |_| "bob".into()).await?;
    let bob = setup
        .members
        .first()
        .ok_or_else(|| BenchError("the mesh has no second member".into()))?;
    let sender_home: PathBuf = setup.owner.home.root().to_path_buf();
    let recipient_home: PathBuf = bob.home.root().to_path_buf();
    let sender = Served::start(cli, &sender_home).await?;
    let sender_pid = sender.pid;
    let recipient = Served::start(cli, &recipient_home).await?;
    sender.wait_up().await?;
    recipient.wait_up().await?;
    tokio::time::sleep(IDLE_SETTLE).await;
    let idle = (rss_bytes(sender.pid), rss_bytes(recipient.pid));
    let setup_s = setup_started.elapsed().as_secs_f64();

    let arrived = Arc::new(Mutex::new(HashMap::<u64, Instant>::new()));
    let duplicates = Arc::new(Mutex::new(0u64));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(read_events(
        recipient.addr,
        recipient.key.clone(),
        arrived.clone(),
        duplicates.clone(),
        ready_tx,
    ));
    ready_rx
        .await
        .map_err(|_| BenchError("the event stream did not open".into()))?;

    let n = a.messages;
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let workers = a.connections.max(1);
    let sampler = RssSampler::start(sender.pid);
    let cpu_before = CpuSnapshot::take(Some(sender.pid), None);
    let gateways_cpu_before = (cpu_seconds(sender.pid), cpu_seconds(recipient.pid));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.common.duration);
    let sender = Arc::new(sender);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let sender = sender.clone();
        let pad = "x".repeat(a.body_bytes.saturating_sub(16));
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(sender.addr).await?;
            let mut sent = Vec::new();
            let mut post_latency = Samples::default();
            let mut errors = (0u64, None::<String>);
            let mut i = u64::from(w);
            while i < n {
                let at = started + interval.mul_f64(i as f64);
                if at > deadline {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                let body = serde_json::json!({"to": "bob", "body": format!("bench {i} {pad}")});
                let t0 = Instant::now();
                match request(
                    &mut conn,
                    &sender,
                    "POST",
                    "/api/v1/messages",
                    Some(body.to_string().into_bytes()),
                )
                .await
                {
                    Ok((StatusCode::CREATED, _)) => {
                        post_latency.push(nanos(t0.elapsed()));
                        sent.push((i, t0));
                    }
                    Ok((status, body)) => {
                        errors.0 += 1;
                        errors.1.get_or_insert_with(|| {
                            format!("{status}: {}", String::from_utf8_lossy(&body))
                        });
                    }
                    Err(e) => {
                        errors.0 += 1;
                        errors.1.get_or_insert_with(|| e.to_string());
                        conn = connect(sender.addr).await?;
                    }
                }
                i += u64::from(workers);
            }
            Ok::<_, BenchError>((sent, post_latency, errors))
        }));
    }
    let mut sent = Vec::new();
    let mut post_latency = Samples::default();
    let mut counts = Counts::default();
    for t in tasks {
        let (s, p, (errors, first)) = t
            .await
            .map_err(|e| BenchError::ctx("a sending task", e))??;
        sent.extend(s);
        post_latency.merge(p);
        counts.errors += errors;
        if counts.first_error.is_none() {
            counts.first_error = first;
        }
    }
    let sending_done = Instant::now();
    let drain_until = sending_done + DRAIN;
    while Instant::now() < drain_until && claudemesh_proto::sync::lock(&arrived).len() < sent.len()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_arrival = claudemesh_proto::sync::lock(&arrived)
        .values()
        .max()
        .copied()
        .unwrap_or(sending_done);
    let cpu_after = CpuSnapshot::take(Some(sender.pid), None);
    let gateways_cpu = (
        cpu_seconds(sender.pid)
            .zip(gateways_cpu_before.0)
            .map(|(a, b)| a - b),
        cpu_seconds(recipient.pid)
            .zip(gateways_cpu_before.1)
            .map(|(a, b)| a - b),
    );
    let peak = sampler.stop(sender.pid);
    let after = (rss_bytes(sender.pid), rss_bytes(recipient.pid));
    reader.abort();
    let mut e2e = Samples::with_capacity(sent.len());
    {
        let arrived = claudemesh_proto::sync::lock(&arrived);
        for (i, t0) in &sent {
            if let Some(t1) = arrived.get(i) {
                e2e.push(nanos(t1.saturating_duration_since(*t0)));
            }
        }
    }
    counts.attempted = n.min(sent.len() as u64 + counts.errors);
    counts.completed = sent.len() as u64;
    counts.delivered = Some(e2e.len() as u64);
    counts.missing = Some((sent.len() - e2e.len()) as u64);
    counts.duplicates = Some(*claudemesh_proto::sync::lock(&duplicates));
    let elapsed_s = last_arrival
        .max(sending_done)
        .duration_since(started)
        .as_secs_f64();
    let sender = Arc::into_inner(sender)
        .ok_or_else(|| BenchError("a sending task still holds the gateway".into()))?;
    let stop_sender = sender.stop().await;
    let stop_recipient = recipient.stop().await;
    let mut notes = vec![
        "POST latency and POST → event latency are measured by this process from the start of each request; both gateways, the broker and this process share the machine's cores".into(),
        format!(
            "gateway RSS (MB): sender idle {:.1}, after {:.1}; recipient idle {:.1}, after {:.1}",
            mb(idle.0).unwrap_or(0.0),
            mb(after.0).unwrap_or(0.0),
            mb(idle.1).unwrap_or(0.0),
            mb(after.1).unwrap_or(0.0),
        ),
    ];
    if let (Some(s), Some(r)) = gateways_cpu {
        notes.push(format!(
            "gateway CPU during the run: sender {s:.2} s, recipient {r:.2} s (the bench process's figure includes the embedded broker)"
        ));
    }
    if let (Some(s), Some(r)) = (stop_sender, stop_recipient) {
        notes.push(format!(
            "SIGTERM to exit: sender {:.0} ms, recipient {:.0} ms",
            s.as_secs_f64() * 1e3,
            r.as_secs_f64() * 1e3
        ));
    }
    let cpu = CpuUse::between(&cpu_before, &cpu_after);
    Ok(Report {
        scenario: "gateway",
        date_utc: now_rfc3339(),
        build: build_profile(),
        cpus: cpus(),
        broker: crate::report::TargetInfo {
            rss_of: format!(
                "the sending gateway (claudemesh serve, pid {sender_pid}); CPU is that process's too"
            ),
            ..target.info.clone()
        },
        client: ClientInfo {
            path: "http",
            what: "POST /api/v1/messages to one gateway; GET /api/v1/events (SSE) on the other",
            state: state.as_str(),
        },
        params: serde_json::json!({
            "cli": cli.display().to_string(),
            "messages": n,
            "rate_per_s": a.rate,
            "connections": workers,
            "body_bytes": a.body_bytes,
            "duration_limit_s": a.common.duration,
            "sender_gateway_idle_rss_mb": mb(idle.0),
            "recipient_gateway_idle_rss_mb": mb(idle.1),
            "recipient_gateway_after_rss_mb": mb(after.1),
        }),
        unit: "messages",
        counts,
        elapsed_s,
        throughput_per_s: if elapsed_s > 0.0 {
            e2e.len() as f64 / elapsed_s
        } else {
            0.0
        },
        latency_of: "POST /api/v1/messages → SSE message event on the other gateway",
        latency: e2e.summary(),
        latency2_of: Some("POST /api/v1/messages → 201"),
        latency2: post_latency.summary(),
        latency_more: Vec::<NamedLatency>::new(),
        rss: Rss {
            start_mb: mb(idle.0),
            before_mb: mb(idle.0),
            peak_mb: mb(Some(peak)),
            after_mb: mb(after.0),
        },
        cpu,
        broker_metrics: None,
        setup_s,
        notes,
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

//! Scenario `dm`: N sending members send durable direct messages,
//! round-robin, to M receiving members that stay connected. A message
//! counts as accepted when its sender gets `accepted` (the broker committed
//! it) and as delivered when its recipient has it. Latency is send →
//! deliver: from just before the send to the moment the recipient's client
//! has the message (`Event::Message` on the SDK path: verified, opened and
//! stored in the inbox; the parsed `deliver` frame on the wire path).
//!
//! Closed loop by default (each sender keeps `--pipeline` sends in flight);
//! `--rate R` paces all senders together to R msgs/s whatever the answers
//! (open loop, for latency at a given load).
//!
//! Two client paths: `sdk` drives `MeshClient::send` and reads events,
//! with the send timestamp carried in the body; `wire` seals every envelope
//! before the clock starts, sends raw `send` frames, and recipients match
//! `deliver` frames to their send time by message id, then ack in batches.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use claudemesh_client::wire::{self, WsSink, WsStream};
use claudemesh_client::{ConnectOptions, Event, MeshClient, SessionChoice};
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::envelope::{MessageId, Priority, Target as To};
use claudemesh_proto::frames::{Ack, Send};
use claudemesh_proto::hello::{Hello, HelloPresence};
use claudemesh_proto::limits::MAX_IDS_PER_ACK;
use claudemesh_proto::{ClientFrame, ErrorCode, encode_client_frame};
use futures_util::SinkExt as _;
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::args::{ClientPath, ClientState, DmArgs, StoreKind};
use crate::light::{LightFrame, next_light};
use crate::report::{ClientInfo, Counts, Report, Rss, build_profile, cpus, now_rfc3339};
use crate::setup::{Member, build_mesh, full_log};
use crate::stats::Samples;
use crate::target::{Measured, Probe, Target, client_dir};
use crate::{BenchError, Result};

/// Messages when neither `--messages` nor `--duration` bounds the run.
pub const DEFAULT_MESSAGES: u64 = 20_000;
/// Smallest body: the SDK path carries a 20-digit timestamp in it.
pub const MIN_BODY_BYTES: usize = 24;
/// Bound on setting up (mesh, joins, connections, sealing).
pub const SETUP_LIMIT: Duration = Duration::from_secs(600);
/// How long to wait for deliveries after the last send.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// Open loop: most sends in flight per sender before pacing falls behind.
pub const OPEN_LOOP_IN_FLIGHT: usize = 4096;
/// How long a client may take to connect.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the scenario.
pub async fn run(a: DmArgs) -> Result<Report> {
    if !(MIN_BODY_BYTES..=claudemesh_proto::limits::MAX_BODY_BYTES).contains(&a.body_bytes) {
        return Err(BenchError(format!(
            "--body-bytes must be {MIN_BODY_BYTES}..={}",
            claudemesh_proto::limits::MAX_BODY_BYTES
        )));
    }
    if let Some(r) = a.rate
        && !(r.is_finite() && r > 0.0 && r <= 1e7)
    {
        return Err(BenchError(
            "--rate must be a positive number of msgs/s".into(),
        ));
    }
    if a.replicas > 1 && (a.common.store != StoreKind::Postgres || a.common.broker.is_some()) {
        return Err(BenchError(
            "--replicas 2 starts two embedded brokers on one Postgres database: pass --store postgres and no --broker".into(),
        ));
    }
    Target::run_with(&a.common, a.replicas, async |target| {
        on_target(&a, target).await
    })
    .await
}

/// What both paths hand back.
#[derive(Debug, Default)]
struct Outcome {
    attempted: u64,
    accepted: u64,
    delivered: u64,
    duplicates: u64,
    errors: u64,
    first_error: Option<String>,
    deliver: Samples,
    accept: Samples,
    /// ns since the run's base: first send, last `accepted`, last delivery.
    elapsed_accept_s: f64,
    elapsed_deliver_s: f64,
    max_lag_ms: f64,
    setup: Duration,
    measured: Measured,
    notes: Vec<String>,
}

/// Counters shared by a run's tasks.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) base: Instant,
    pub(crate) stop: AtomicBool,
    pub(crate) attempted: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) first_error: Mutex<Option<String>>,
    pub(crate) first_send_ns: AtomicU64,
    pub(crate) last_accept_ns: AtomicU64,
    pub(crate) last_deliver_ns: AtomicU64,
    pub(crate) max_lag_ns: AtomicU64,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Tally {
            base: Instant::now(),
            stop: AtomicBool::new(false),
            attempted: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            first_send_ns: AtomicU64::new(u64::MAX),
            last_accept_ns: AtomicU64::new(0),
            last_deliver_ns: AtomicU64::new(0),
            max_lag_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn error(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }

    fn sent(&self, at_ns: u64) {
        self.attempted.fetch_add(1, Ordering::Relaxed);
        self.first_send_ns.fetch_min(at_ns, Ordering::Relaxed);
    }

    fn accepted(&self, at_ns: u64) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.last_accept_ns.fetch_max(at_ns, Ordering::Relaxed);
    }

    pub(crate) fn delivered(&self, at_ns: u64) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_deliver_ns.fetch_max(at_ns, Ordering::Relaxed);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sets `stop` after `limit`.
    pub(crate) fn stop_after(self: &Arc<Self>, limit: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            me.stop.store(true, Ordering::Relaxed);
        })
    }

    /// Waits until every accepted message was delivered, or `limit`.
    async fn wait_deliveries(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while self.delivered.load(Ordering::Relaxed) < self.accepted.load(Ordering::Relaxed)
            && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn into_outcome(self: Arc<Self>) -> Outcome {
        let first = self.first_send_ns.load(Ordering::Relaxed);
        let secs = |last: u64| {
            if first == u64::MAX || last < first {
                0.0
            } else {
                (last - first) as f64 / 1e9
            }
        };
        Outcome {
            attempted: self.attempted.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            first_error: self
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            elapsed_accept_s: secs(self.last_accept_ns.load(Ordering::Relaxed)),
            elapsed_deliver_s: secs(self.last_deliver_ns.load(Ordering::Relaxed)),
            max_lag_ms: self.max_lag_ns.load(Ordering::Relaxed) as f64 / 1e6,
            ..Outcome::default()
        }
    }
}

/// When message `j` of sender `s` is due, open loop: all senders together
/// send at `rate`, interleaved.
pub(crate) fn due_ns(j: u64, s: u64, senders: u64, rate: f64) -> u64 {
    (((j * senders + s) as f64 / rate) * 1e9) as u64
}

async fn on_target(a: &DmArgs, target: &Target) -> Result<Report> {
    let state = a.common.client_state.unwrap_or(ClientState::Tmpfs);
    let dir = client_dir(state)?;
    let n = a.senders as usize;
    let m = a.recipients as usize;
    let k = match (a.messages, a.common.duration) {
        (Some(k), _) => k,
        (None, _) if a.rate.is_some() => a
            .rate
            .map(|r| (r * a.common.duration as f64).ceil() as u64)
            .unwrap_or(DEFAULT_MESSAGES),
        (None, _) => DEFAULT_MESSAGES,
    };
    let setup = tokio::time::timeout(
        SETUP_LIMIT,
        build_mesh(&target.url, dir.path(), n + m, |i| {
            if i < n {
                format!("sender{i}")
            } else {
                format!("recipient{}", i - n)
            }
        }),
    )
    .await
    .map_err(|_| BenchError(format!("setting up took more than {SETUP_LIMIT:?}")))??;
    let (senders, recipients) = setup.members.split_at(n);
    let limit = Duration::from_secs(a.common.duration);
    let mut out = match a.client {
        ClientPath::Sdk => run_sdk(a, target, senders, recipients, k, limit).await?,
        ClientPath::Wire => {
            let entries = full_log(&setup.owner).await?;
            run_wire(a, target, senders, recipients, &entries, k, limit).await?
        }
    };
    out.setup += setup.took;
    let setup_s = out.setup.as_secs_f64();
    drop(dir);
    Ok(report(a, target, state, k, out, setup_s))
}

fn report(
    a: &DmArgs,
    target: &Target,
    state: ClientState,
    k: u64,
    out: Outcome,
    setup_s: f64,
) -> Report {
    let mut notes = out.notes;
    let missing = out.accepted.saturating_sub(out.delivered);
    if out.elapsed_deliver_s > 0.0 {
        notes.push(format!(
            "delivered {:.0} msgs/s (first send to last delivery, {:.3} s)",
            out.delivered as f64 / out.elapsed_deliver_s,
            out.elapsed_deliver_s
        ));
    }
    if let Some(r) = a.rate {
        notes.push(format!(
            "open loop at {r} msgs/s in total; the worst send ran {:.1} ms behind its schedule",
            out.max_lag_ms
        ));
    }
    if target.info.mode == "embedded" {
        notes.push(
            "embedded broker: the broker and every client share this process and its cores".into(),
        );
    }
    if a.replicas > 1 {
        notes.push(
            "two replicas on one Postgres database: senders on the first broker, recipients on the second (every message crosses replicas)".into(),
        );
    }
    Report {
        scenario: "dm",
        date_utc: now_rfc3339(),
        build: build_profile(),
        cpus: cpus(),
        broker: target.info.clone(),
        client: ClientInfo {
            path: a.client.as_str(),
            what: match a.client {
                ClientPath::Sdk => {
                    "MeshClient: seal + sign, outbox, send, accepted; recipient verifies, opens, stores, acks"
                }
                ClientPath::Wire => {
                    "raw frames: envelopes sealed before the clock starts; clients read only type/req/seq/id of answers (no key decoded), recipient acks without opening"
                }
            },
            state: state.as_str(),
        },
        params: serde_json::json!({
            "senders": a.senders,
            "recipients": a.recipients,
            "messages": k,
            "loop": if a.rate.is_some() { "open" } else { "closed" },
            "rate": a.rate,
            "pipeline": if a.rate.is_some() { None } else { Some(a.pipeline) },
            "body_bytes": a.body_bytes,
            "replicas": a.replicas,
            "priority": "next",
            "duration_limit_s": a.common.duration,
        }),
        unit: "messages",
        counts: Counts {
            attempted: out.attempted,
            completed: out.accepted,
            delivered: Some(out.delivered),
            missing: Some(missing),
            duplicates: Some(out.duplicates),
            errors: out.errors,
            first_error: out.first_error,
        },
        elapsed_s: out.elapsed_accept_s,
        throughput_per_s: if out.elapsed_accept_s > 0.0 {
            out.accepted as f64 / out.elapsed_accept_s
        } else {
            0.0
        },
        latency_of: "send → deliver",
        latency: out.deliver.summary(),
        latency2_of: Some("send → accepted"),
        latency2: out.accept.summary(),
        latency_more: Vec::new(),
        rss: Rss::of(&out.measured),
        cpu: out.measured.cpu,
        broker_metrics: out.measured.metrics,
        setup_s,
        notes,
    }
}

// ---------------------------------------------------------------- SDK path

fn body_with_time(ns: u64, len: usize) -> Vec<u8> {
    let mut b = format!("{ns:020}").into_bytes();
    b.resize(len, b'.');
    b
}

fn time_in_body(body: &str) -> Option<u64> {
    body.get(..20)?.parse().ok()
}

async fn run_sdk(
    a: &DmArgs,
    target: &Target,
    senders: &[Member],
    recipients: &[Member],
    k: u64,
    limit: Duration,
) -> Result<Outcome> {
    let setup_started = Instant::now();
    let opts = ConnectOptions {
        session: SessionChoice::Ephemeral,
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: Duration::from_secs(30),
        client_name: "claudemesh-bench".into(),
        ..ConnectOptions::default()
    };
    let mut rx_clients = Vec::with_capacity(recipients.len());
    for r in recipients {
        // With two replicas, recipients are on the second one.
        let mut mesh = r.mesh.clone();
        mesh.broker_url = target.recipient_url().to_owned();
        rx_clients.push(MeshClient::connect(&r.home, &mesh, opts.clone()).await?);
    }
    let mut tx_clients = Vec::with_capacity(senders.len());
    for s in senders {
        tx_clients.push(Arc::new(
            MeshClient::connect(&s.home, &s.mesh, opts.clone()).await?,
        ));
    }
    let targets: Arc<Vec<To>> = Arc::new(recipients.iter().map(|r| To::Member(r.key)).collect());
    let tally = Arc::new(Tally::new());
    let (done_tx, done_rx) = watch::channel(false);
    let mut receivers = JoinSet::new();
    let lagged = Arc::new(AtomicU64::new(0));
    for c in &rx_clients {
        let events = c.events();
        receivers.spawn(receive_events(
            events,
            tally.clone(),
            done_rx.clone(),
            lagged.clone(),
        ));
    }
    let setup = setup_started.elapsed();

    let probe = Probe::begin(target, a.common.wait_idle).await;
    let stopper = tally.stop_after(limit);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    let n = tx_clients.len() as u64;
    match a.rate {
        None => {
            for (s, client) in tx_clients.iter().enumerate() {
                for p in 0..a.pipeline {
                    workers.spawn(sdk_closed_loop(
                        client.clone(),
                        targets.clone(),
                        tally.clone(),
                        next.clone(),
                        k,
                        s + p as usize,
                        a.body_bytes,
                    ));
                }
            }
        }
        Some(rate) => {
            for (s, client) in tx_clients.iter().enumerate() {
                workers.spawn(sdk_open_loop(
                    client.clone(),
                    targets.clone(),
                    tally.clone(),
                    next.clone(),
                    k,
                    (s as u64, n, rate),
                    a.body_bytes,
                ));
            }
        }
    }
    // Each send is bounded by the client's request timeout (30 s).
    let bound = limit + Duration::from_secs(45);
    let mut accept = Samples::default();
    let joined = tokio::time::timeout(bound, async {
        while let Some(r) = workers.join_next().await {
            if let Ok(s) = r {
                accept.merge(s);
            }
        }
    })
    .await;
    if joined.is_err() {
        tally.error("senders did not finish within the time limit");
        workers.abort_all();
    }
    tally.wait_deliveries(DRAIN_LIMIT).await;
    let _ = done_tx.send(true);
    let mut deliver = Samples::default();
    while let Some(r) = receivers.join_next().await {
        if let Ok(s) = r {
            deliver.merge(s);
        }
    }
    let measured = probe.end().await;
    stopper.abort();
    for c in rx_clients {
        c.close().await;
    }
    for c in tx_clients {
        if let Ok(c) = Arc::try_unwrap(c) {
            c.close().await;
        }
    }
    let mut out = tally.into_outcome();
    out.deliver = deliver;
    out.accept = accept;
    out.setup = setup;
    out.measured = measured;
    let lagged = lagged.load(Ordering::Relaxed);
    if lagged > 0 {
        out.notes.push(format!(
            "{lagged} message events were dropped by a lagging event subscriber (delivered but not timed)"
        ));
    }
    Ok(out)
}

async fn receive_events(
    mut events: broadcast::Receiver<Event>,
    tally: Arc<Tally>,
    mut done: watch::Receiver<bool>,
    lagged: Arc<AtomicU64>,
) -> Samples {
    let mut samples = Samples::default();
    loop {
        tokio::select! {
            biased;
            ev = events.recv() => match ev {
                Ok(Event::Message(m)) => {
                    let now = tally.now_ns();
                    match time_in_body(&m.body) {
                        Some(t) => {
                            samples.push(now.saturating_sub(t));
                            tally.delivered(now);
                        }
                        None => tally.error("a message without the bench's timestamp arrived"),
                    }
                }
                Ok(Event::Rejected(r)) => tally.error(format!("recipient refused an envelope: {}", r.reason)),
                Ok(Event::Stopped { reason }) => {
                    tally.error(format!("a recipient's client stopped: {reason}"));
                    break;
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    lagged.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = done.changed() => break,
        }
    }
    samples
}

async fn sdk_closed_loop(
    client: Arc<MeshClient>,
    targets: Arc<Vec<To>>,
    tally: Arc<Tally>,
    next: Arc<AtomicU64>,
    k: u64,
    offset: usize,
    body_bytes: usize,
) -> Samples {
    let mut accept = Samples::default();
    let mut turn = offset;
    while !tally.stopping() {
        if next.fetch_add(1, Ordering::Relaxed) >= k {
            break;
        }
        let to = targets[turn % targets.len()].clone();
        turn += 1;
        let t0 = tally.now_ns();
        let body = body_with_time(t0, body_bytes);
        tally.sent(t0);
        match client.send(to, &body, Priority::Next, None).await {
            Ok(_) => {
                let t1 = tally.now_ns();
                accept.push(t1.saturating_sub(t0));
                tally.accepted(t1);
            }
            Err(e) => tally.error(e),
        }
    }
    accept
}

async fn sdk_open_loop(
    client: Arc<MeshClient>,
    targets: Arc<Vec<To>>,
    tally: Arc<Tally>,
    next: Arc<AtomicU64>,
    k: u64,
    (s, n, rate): (u64, u64, f64),
    body_bytes: usize,
) -> Samples {
    let in_flight = Arc::new(Semaphore::new(OPEN_LOOP_IN_FLIGHT));
    let start = tally.base + Duration::from_nanos(tally.now_ns());
    let start_ns = tally.now_ns();
    let mut sends = JoinSet::new();
    let mut j = 0u64;
    while !tally.stopping() {
        let due = due_ns(j, s, n, rate);
        tokio::time::sleep_until((start + Duration::from_nanos(due)).into()).await;
        if tally.stopping() || next.fetch_add(1, Ordering::Relaxed) >= k {
            break;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let to = targets[((s + j) % targets.len() as u64) as usize].clone();
        j += 1;
        let t0 = tally.now_ns();
        tally
            .max_lag_ns
            .fetch_max(t0.saturating_sub(start_ns + due), Ordering::Relaxed);
        let body = body_with_time(t0, body_bytes);
        tally.sent(t0);
        let (client, tally) = (client.clone(), tally.clone());
        sends.spawn(async move {
            let r = client.send(to, &body, Priority::Next, None).await;
            drop(permit);
            match r {
                Ok(_) => {
                    let t1 = tally.now_ns();
                    tally.accepted(t1);
                    Some(t1.saturating_sub(t0))
                }
                Err(e) => {
                    tally.error(e);
                    None
                }
            }
        });
    }
    let mut accept = Samples::default();
    while let Some(r) = sends.join_next().await {
        if let Ok(Some(ns)) = r {
            accept.push(ns);
        }
    }
    accept
}

// --------------------------------------------------------------- wire path

/// Every pre-sealed message: its send frame and where its times go.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// Message id → global index.
    pub(crate) index: HashMap<MessageId, usize>,
    /// Send time per index (ns since base; `u64::MAX` = not sent).
    pub(crate) sent_ns: Vec<AtomicU64>,
    /// Whether a recipient has it.
    pub(crate) seen: Vec<AtomicBool>,
}

/// One sender's connection material.
struct WireSender {
    session: SessionIdentity,
    /// (global index, `send` frame text).
    frames: Vec<(usize, Utf8Bytes)>,
}

async fn run_wire(
    a: &DmArgs,
    target: &Target,
    senders: &[Member],
    recipients: &[Member],
    entries: &[claudemesh_crypto::log::LogEntry],
    k: u64,
    limit: Duration,
) -> Result<Outcome> {
    let setup_started = Instant::now();
    let n = senders.len() as u64;
    let recipient_keys: Arc<Vec<To>> =
        Arc::new(recipients.iter().map(|r| To::Member(r.key)).collect());
    // Seal every envelope now, on every core, before the clock starts.
    let mut sealers = JoinSet::new();
    let mut first_index = 0usize;
    for (s, member) in senders.iter().enumerate() {
        let count = (k / n + u64::from((s as u64) < k % n)) as usize;
        let session = member.new_session()?;
        let state = member.state(entries, session.clone())?;
        let targets = recipient_keys.clone();
        let body_bytes = a.body_bytes;
        let base = first_index;
        first_index += count;
        sealers.spawn_blocking(move || -> Result<(usize, WireSender, Vec<MessageId>)> {
            let mut frames = Vec::with_capacity(count);
            let mut ids = Vec::with_capacity(count);
            let body = vec![b'.'; body_bytes];
            for j in 0..count {
                let to = targets[(s + j) % targets.len()].clone();
                let env = state.seal(
                    to,
                    &body,
                    Priority::Next,
                    None,
                    claudemesh_client::client::now_ms(),
                )?;
                ids.push(env.id);
                let idx = base + j;
                let text = encode_client_frame(&ClientFrame::Send(Send {
                    req: Some(idx.to_string()),
                    envelope: Box::new(env),
                }));
                frames.push((idx, Utf8Bytes::from(text)));
            }
            Ok((s, WireSender { session, frames }, ids))
        });
    }
    let mut wire_senders: Vec<Option<WireSender>> = (0..senders.len()).map(|_| None).collect();
    let mut index = HashMap::with_capacity(first_index);
    while let Some(r) = sealers.join_next().await {
        let (s, ws, ids) = r.map_err(|e| BenchError::ctx("sealing failed", e))??;
        for (j, id) in ids.into_iter().enumerate() {
            index.insert(id, ws.frames[j].0);
        }
        wire_senders[s] = Some(ws);
    }
    let prepared = Arc::new(Prepared {
        index,
        sent_ns: (0..first_index).map(|_| AtomicU64::new(u64::MAX)).collect(),
        seen: (0..first_index).map(|_| AtomicBool::new(false)).collect(),
    });

    let tally = Arc::new(Tally::new());
    let (done_tx, done_rx) = watch::channel(false);
    // Wait out other work before connecting: the senders read nothing
    // until the measured phase, and the broker closes a connection that
    // is silent for 75 s.
    if a.common.wait_idle > 0 {
        crate::sys::wait_idle(
            Duration::from_secs(a.common.wait_idle),
            crate::target::IDLE_BELOW_PCT,
        )
        .await;
    }
    let mut receivers = JoinSet::new();
    for r in recipients {
        let (sink, stream) = hello(target.recipient_url(), &r.new_session()?).await?;
        receivers.spawn(wire_receive(
            sink,
            stream,
            prepared.clone(),
            tally.clone(),
            done_rx.clone(),
        ));
    }
    let mut connected = Vec::with_capacity(senders.len());
    for ws in wire_senders.into_iter().flatten() {
        let (sink, stream) = hello(&target.url, &ws.session).await?;
        connected.push((sink, stream, ws.frames));
    }
    let setup = setup_started.elapsed();

    let probe = Probe::begin(target, 0).await;
    let stopper = tally.stop_after(limit);
    let start = Instant::now();
    let start_ns = tally.now_ns();
    let hard_stop = start + limit + DRAIN_LIMIT;
    let accept = send_all(
        connected,
        &prepared,
        &tally,
        a.rate,
        a.pipeline,
        (start, start_ns),
        hard_stop,
    )
    .await;
    tally.wait_deliveries(DRAIN_LIMIT).await;
    let _ = done_tx.send(true);
    let mut deliver = Samples::default();
    while let Some(r) = receivers.join_next().await {
        if let Ok(s) = r {
            deliver.merge(s);
        }
    }
    let measured = probe.end().await;
    stopper.abort();
    let mut out = tally.into_outcome();
    out.deliver = deliver;
    out.accept = accept;
    out.setup = setup;
    out.measured = measured;
    Ok(out)
}

/// Signs and sends a hello for this connection's challenge as `session`.
pub(crate) async fn send_hello(opened: &mut wire::Opened, session: &SessionIdentity) -> Result<()> {
    let hello = Hello::sign(
        session,
        &opened.challenge.nonce.0,
        opened.version,
        None,
        HelloPresence::default(),
        "claudemesh-bench",
    );
    wire::send_frame(&mut opened.sink, &ClientFrame::Hello(Box::new(hello))).await?;
    Ok(())
}

/// Opens a connection and authenticates as `session`.
pub(crate) async fn hello(url: &str, session: &SessionIdentity) -> Result<(WsSink, WsStream)> {
    let mut opened = wire::open(url, CONNECT_TIMEOUT).await?;
    send_hello(&mut opened, session).await?;
    let answer = tokio::time::timeout(CONNECT_TIMEOUT, next_light(&mut opened.stream))
        .await
        .map_err(|_| BenchError("the broker did not answer the hello".into()))??;
    match answer.kind.as_str() {
        "welcome" => Ok((opened.sink, opened.stream)),
        other => Err(BenchError(format!(
            "hello answered with {other}: {}",
            answer.message.unwrap_or_default()
        ))),
    }
}

/// When one sender sends, open loop: (clock start, its ns, sender index,
/// senders, total rate).
pub(crate) type Pace = (Instant, u64, u64, u64, f64);

/// A sender's open connection and the pre-sealed frames it will send
/// (each with its index into [`Prepared`]).
pub(crate) type ConnectedSender = (WsSink, WsStream, Vec<(usize, Utf8Bytes)>);

/// Runs [`wire_send`] on every connected sender at once (closed loop with
/// `pipeline` in flight, or paced together at `rate`), and merges their
/// send → accepted samples.
pub(crate) async fn send_all(
    connected: Vec<ConnectedSender>,
    prepared: &Arc<Prepared>,
    tally: &Arc<Tally>,
    rate: Option<f64>,
    pipeline: u32,
    (start, start_ns): (Instant, u64),
    hard_stop: Instant,
) -> Samples {
    let n = connected.len() as u64;
    let window = match rate {
        None => pipeline as usize,
        Some(_) => OPEN_LOOP_IN_FLIGHT,
    };
    let mut workers = JoinSet::new();
    for (s, (sink, stream, frames)) in connected.into_iter().enumerate() {
        let pace = rate.map(|rate| (start, start_ns, s as u64, n, rate));
        workers.spawn(wire_send(
            sink,
            stream,
            frames,
            prepared.clone(),
            tally.clone(),
            window,
            pace,
            hard_stop,
        ));
    }
    let mut accept = Samples::default();
    while let Some(r) = workers.join_next().await {
        if let Ok(s) = r {
            accept.merge(s);
        }
    }
    accept
}

/// One sending connection: this task sends (paced, or keeping at most
/// `window` unanswered), a reader task takes the answers (`accepted`, or a
/// `rate_limited` error whose send is queued again). Reading and sending
/// are separate tasks so an answer is timed when it arrives, not when the
/// sender next wakes.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn wire_send(
    mut sink: WsSink,
    stream: WsStream,
    frames: Vec<(usize, Utf8Bytes)>,
    prepared: Arc<Prepared>,
    tally: Arc<Tally>,
    window: usize,
    pace: Option<Pace>,
    hard_stop: Instant,
) -> Samples {
    let first = frames.first().map(|f| f.0).unwrap_or(0);
    let permits = Arc::new(Semaphore::new(window));
    let outstanding = Arc::new(AtomicU64::new(0));
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<(Instant, usize)>();
    let (finished_tx, finished_rx) = watch::channel(false);
    let reader = tokio::spawn(wire_answers(
        stream,
        first,
        prepared.clone(),
        tally.clone(),
        permits.clone(),
        outstanding.clone(),
        retry_tx,
        finished_rx,
        hard_stop,
    ));
    let mut retries: VecDeque<(Instant, usize)> = VecDeque::new();
    let mut next = 0usize;
    loop {
        while let Ok(r) = retry_rx.try_recv() {
            retries.push_back(r);
        }
        if tally.stopping() || Instant::now() >= hard_stop {
            break;
        }
        let now = Instant::now();
        let (pos, due, fresh) = match retries.front() {
            Some(&(at, p)) if at <= now || next >= frames.len() => {
                retries.pop_front();
                (p, at, false)
            }
            _ if next < frames.len() => {
                let due = match pace {
                    Some((start, _, s, n, rate)) => {
                        start + Duration::from_nanos(due_ns(next as u64, s, n, rate))
                    }
                    None => now,
                };
                next += 1;
                (next - 1, due, true)
            }
            _ => {
                // Everything sent once: wait for answers (or retries).
                if outstanding.load(Ordering::Relaxed) == 0 {
                    // A retry is queued before its send stops counting.
                    match retry_rx.try_recv() {
                        Ok(r) => {
                            retries.push_back(r);
                            continue;
                        }
                        Err(_) => break,
                    }
                }
                tokio::select! {
                    r = retry_rx.recv() => if let Some(r) = r { retries.push_back(r) },
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
                continue;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = tokio::time::sleep_until(hard_stop.into()) => break,
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            _ = tokio::time::sleep_until(hard_stop.into()) => break,
        };
        let Ok(permit) = permit else { break };
        // Given back by the reader when the answer comes.
        permit.forget();
        let Some((idx, frame)) = frames.get(pos) else {
            continue;
        };
        let t0 = tally.now_ns();
        if let (Some((_, start_ns, s, n, rate)), true) = (pace, fresh) {
            let due = start_ns + due_ns(pos as u64, s, n, rate);
            tally
                .max_lag_ns
                .fetch_max(t0.saturating_sub(due), Ordering::Relaxed);
        }
        if let Some(slot) = prepared.sent_ns.get(*idx) {
            slot.store(t0, Ordering::Relaxed);
        }
        if fresh {
            tally.sent(t0);
        }
        outstanding.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = sink.send(Message::Text(frame.clone())).await {
            tally.error(format!("sender connection: {e}"));
            break;
        }
    }
    // Let the answers to what was sent come in (bounded by `hard_stop`).
    while outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < hard_stop {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let left = outstanding.load(Ordering::Relaxed);
    if left > 0 {
        tally.error(format!("{left} sends still unanswered at the time limit"));
    }
    let _ = finished_tx.send(true);
    let accept = reader.await.unwrap_or_default();
    let _ = sink.send(Message::Close(None)).await;
    accept
}

/// Reads one sender's answers until told to stop.
#[allow(clippy::too_many_arguments)]
async fn wire_answers(
    mut stream: WsStream,
    first: usize,
    prepared: Arc<Prepared>,
    tally: Arc<Tally>,
    permits: Arc<Semaphore>,
    outstanding: Arc<AtomicU64>,
    retry: mpsc::UnboundedSender<(Instant, usize)>,
    mut finished: watch::Receiver<bool>,
    hard_stop: Instant,
) -> Samples {
    let mut accept = Samples::default();
    let answered = || {
        permits.add_permits(1);
        let _ = outstanding.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
            Some(o.saturating_sub(1))
        });
    };
    loop {
        tokio::select! {
            biased;
            f = next_light(&mut stream) => match f {
                Ok(f) if f.kind == "accepted" => {
                    let t1 = tally.now_ns();
                    let idx = f.req.as_deref().and_then(|r| r.parse::<usize>().ok())
                        .or_else(|| f.id.and_then(|id| prepared.index.get(&id).copied()));
                    if let Some(t0) = idx.and_then(|i| prepared.sent_ns.get(i)).map(|t| t.load(Ordering::Relaxed)) {
                        accept.push(t1.saturating_sub(t0));
                    }
                    tally.accepted(t1);
                    answered();
                }
                Ok(f) if f.kind == "error" => {
                    let idx = f.req.as_deref().and_then(|r| r.parse::<usize>().ok());
                    let what = format!(
                        "{}: {}",
                        f.code.map(|c| c.to_string()).unwrap_or_default(),
                        f.message.unwrap_or_default()
                    );
                    match (f.code, idx) {
                        (Some(ErrorCode::RateLimited), Some(i)) if i >= first => {
                            let wait = Duration::from_millis(f.retry_after_ms.unwrap_or(10));
                            let _ = retry.send((Instant::now() + wait, i - first));
                            answered();
                        }
                        (_, Some(_)) => {
                            tally.error(what);
                            answered();
                        }
                        (_, None) => tally.error(what),
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tally.error(format!("sender connection: {e}"));
                    break;
                }
            },
            _ = finished.changed() => break,
            _ = tokio::time::sleep_until(hard_stop.into()) => break,
        }
    }
    accept
}

async fn wire_receive(
    mut sink: WsSink,
    mut stream: WsStream,
    prepared: Arc<Prepared>,
    tally: Arc<Tally>,
    mut done: watch::Receiver<bool>,
) -> Samples {
    let mut samples = Samples::default();
    let mut acks: Vec<u64> = Vec::with_capacity(MAX_IDS_PER_ACK);
    loop {
        tokio::select! {
            biased;
            _ = done.changed() => break,
            f = next_light(&mut stream) => match f {
                Ok(LightFrame { kind, seq: Some(seq), envelope: Some(env), .. }) if kind == "deliver" => {
                    let now = tally.now_ns();
                    match prepared.index.get(&env.id) {
                        Some(&i) => {
                            if prepared.seen[i].swap(true, Ordering::Relaxed) {
                                tally.duplicates.fetch_add(1, Ordering::Relaxed);
                            } else {
                                let t0 = prepared.sent_ns[i].load(Ordering::Relaxed);
                                samples.push(now.saturating_sub(t0));
                                tally.delivered(now);
                            }
                        }
                        None => tally.error("a message the bench did not send arrived"),
                    }
                    acks.push(seq);
                    if acks.len() >= MAX_IDS_PER_ACK && flush_acks(&mut sink, &mut acks).await.is_err() {
                        tally.error("recipient connection closed while acking");
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tally.error(format!("recipient connection: {e}"));
                    break;
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(1)), if !acks.is_empty() => {
                if flush_acks(&mut sink, &mut acks).await.is_err() {
                    tally.error("recipient connection closed while acking");
                    break;
                }
            }
        }
    }
    let _ = flush_acks(&mut sink, &mut acks).await;
    let _ = sink.send(Message::Close(None)).await;
    samples
}

pub(crate) async fn flush_acks(sink: &mut WsSink, acks: &mut Vec<u64>) -> Result<()> {
    if acks.is_empty() {
        return Ok(());
    }
    let frame = ClientFrame::Ack(Ack {
        seqs: std::mem::take(acks),
        read: false,
    });
    wire::send_frame(sink, &frame).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_the_send_time() {
        let b = body_with_time(123_456_789, 256);
        assert_eq!(b.len(), 256);
        let s = String::from_utf8(b).unwrap();
        assert_eq!(time_in_body(&s), Some(123_456_789));
        assert_eq!(time_in_body("short"), None);
    }

    #[test]
    fn open_loop_schedule_interleaves_senders() {
        // 4 senders at 1000/s: together one message per millisecond.
        let at = |j, s| due_ns(j, s, 4, 1000.0);
        assert_eq!(at(0, 0), 0);
        assert_eq!(at(0, 1), 1_000_000);
        assert_eq!(at(0, 3), 3_000_000);
        assert_eq!(at(1, 0), 4_000_000);
    }
}

//! Scenario `fanout`: one poster (the mesh's owner) sends fan-out messages
//! to a public topic (default) or to everyone (`--target broadcast`),
//! paced at `--rate` msgs/s so that each message's fan-out is measured on
//! its own, to S subscribers (`--recipients`) that stay connected. The
//! broker stores each message once and pushes `deliver` to every connected
//! recipient session at commit.
//!
//! Per message, latency **to the last subscriber**: from just before the
//! send to the moment the last of the S subscribers has parsed its
//! `deliver`. Also per delivery (send → each subscriber) and send →
//! `accepted`.
//!
//! This module also holds the engine the `topic` scenario shares
//! ([`run_spread`]): the mesh from [`crate::crowd`], posts sealed before the
//! clock starts and sent by `dm`'s wire senders (paced or closed loop),
//! and the subscribers: raw websocket connections with pre-made session
//! certificates that read only the `seq` and message id of each `deliver`
//! (the light parser) and ack in batches without opening, so that the
//! bench's side stays cheap next to the broker it measures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use claudemesh_client::wire::{WsSink, WsStream};
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::envelope::{MessageId, Priority, Target as To};
use claudemesh_crypto::receipt::{
    MAX_WATERMARK_MISSING, ReceiptState, Via, Watermark, WatermarkFacts,
};
use claudemesh_proto::frames::{Send, WatermarkFrame};
use claudemesh_proto::limits::MAX_IDS_PER_ACK;
use claudemesh_proto::{ClientFrame, encode_client_frame};
use futures_util::SinkExt as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::args::{AckMode, ClientState, Common, FanoutArgs, FanoutTarget};
use crate::crowd::{Crowd, build_crowd};
use crate::dm::{
    CONNECT_TIMEOUT, DRAIN_LIMIT, MIN_BODY_BYTES, Prepared, SETUP_LIMIT, Tally, flush_acks, hello,
    send_all,
};
use crate::light::{LightFrame, next_light};
use crate::report::{
    ClientInfo, Counts, NamedLatency, Report, Rss, build_profile, cpus, now_rfc3339,
};
use crate::stats::Samples;
use crate::target::{Measured, Probe, Target, client_dir};
use crate::{BenchError, Result};

/// The topic the scenarios post to.
pub const TOPIC: &str = "bench";
/// The subscribers are settled when none of them has read a frame for
/// this long (the presence pushes of their own hellos are over).
const SETTLED_AFTER: Duration = Duration::from_millis(500);
/// Longest wait for the subscribers to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Checks the options the fan-out scenarios share with `dm`.
pub(crate) fn check_body_and_rate(body_bytes: usize, rate: Option<f64>) -> Result<()> {
    if !(MIN_BODY_BYTES..=claudemesh_proto::limits::MAX_BODY_BYTES).contains(&body_bytes) {
        return Err(BenchError(format!(
            "--body-bytes must be {MIN_BODY_BYTES}..={}",
            claudemesh_proto::limits::MAX_BODY_BYTES
        )));
    }
    if let Some(r) = rate
        && !(r.is_finite() && r > 0.0 && r <= 1e7)
    {
        return Err(BenchError(
            "--rate must be a positive number of msgs/s".into(),
        ));
    }
    Ok(())
}

/// Runs the scenario.
pub async fn run(a: FanoutArgs) -> Result<Report> {
    check_body_and_rate(a.body_bytes, Some(a.rate))?;
    Target::run(&a.common, async |target| {
        let state = a.common.client_state.unwrap_or(ClientState::Tmpfs);
        let dir = client_dir(state)?;
        let topic = match a.target {
            FanoutTarget::Topic => Some(TOPIC),
            FanoutTarget::Broadcast => None,
        };
        let crowd = tokio::time::timeout(
            SETUP_LIMIT,
            build_crowd(&target.url, dir.path(), 1, a.recipients as usize, topic),
        )
        .await
        .map_err(|_| BenchError(format!("setting up took more than {SETUP_LIMIT:?}")))??;
        let plan = Plan {
            common: &a.common,
            target,
            crowd: &crowd,
            to: match a.target {
                FanoutTarget::Topic => To::Topic(TOPIC.into()),
                FanoutTarget::Broadcast => To::Broadcast,
            },
            messages: a.messages,
            rate: Some(a.rate),
            pipeline: 1,
            body_bytes: a.body_bytes,
            ack_delay: Duration::from_millis(a.ack_delay_ms),
            acks: a.acks,
        };
        let out = run_spread(&plan).await?;
        drop(dir);
        Ok(report(&a, target, state, &crowd, out))
    })
    .await
}

fn report(
    a: &FanoutArgs,
    target: &Target,
    state: ClientState,
    crowd: &Crowd,
    out: Spread,
) -> Report {
    let mut notes = out.notes(crowd);
    notes.push(format!(
        "paced at {} msgs/s (one message every {:.1} ms); the worst send ran {:.1} ms behind its schedule",
        a.rate,
        1e3 / a.rate,
        out.max_lag_ms
    ));
    if target.info.mode == "embedded" {
        notes.push(
            "embedded broker: the broker and every subscriber share this process and its cores"
                .into(),
        );
    }
    let target_name = match a.target {
        FanoutTarget::Topic => format!("#{TOPIC}"),
        FanoutTarget::Broadcast => "*".into(),
    };
    Report {
        scenario: "fanout",
        date_utc: now_rfc3339(),
        build: build_profile(),
        cpus: cpus(),
        broker: target.info.clone(),
        client: ClientInfo {
            path: "wire",
            what: WIRE_WHAT,
            state: state.as_str(),
        },
        params: serde_json::json!({
            "subscribers": a.recipients,
            "target": target_name,
            "messages": a.messages,
            "rate": a.rate,
            "body_bytes": a.body_bytes,
            "ack_delay_ms": a.ack_delay_ms,
            "acks": format!("{:?}", a.acks).to_lowercase(),
            "priority": "next",
            "duration_limit_s": a.common.duration,
        }),
        unit: "messages",
        counts: out.counts(),
        elapsed_s: out.elapsed_accept_s,
        throughput_per_s: out.throughput(),
        latency_of: "send → last subscriber (per message)",
        latency: out.to_last.summary(),
        latency2_of: Some("send → each subscriber (per delivery)"),
        latency2: out.each.summary(),
        latency_more: vec![NamedLatency {
            of: "send → accepted",
            latency: out.accept.summary(),
        }],
        rss: Rss::of(&out.measured),
        cpu: out.measured.cpu,
        broker_metrics: out.measured.metrics,
        setup_s: out.setup.as_secs_f64(),
        notes,
    }
}

/// What the wire clients of the fan-out scenarios do.
pub(crate) const WIRE_WHAT: &str = "raw frames: posts sealed before the clock starts; subscribers are websocket connections with pre-made session certificates that read only seq and message id of each deliver (no key decoded, nothing opened) and ack in batches";

/// How many of the slowest messages the notes name.
const SLOWEST_SHOWN: usize = 4;

/// What [`run_spread`] runs.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    /// The common options (duration, wait-idle).
    pub common: &'a Common,
    /// The broker.
    pub target: &'a Target,
    /// The mesh: every poster posts, every reader subscribes.
    pub crowd: &'a Crowd,
    /// Where the posts go.
    pub to: To,
    /// Posts in total, spread over the posters.
    pub messages: u64,
    /// Open loop: all posters together at this many msgs/s.
    pub rate: Option<f64>,
    /// Closed loop: sends in flight per poster.
    pub pipeline: u32,
    /// Body size.
    pub body_bytes: usize,
    /// A subscriber acks this long after its first unacked `deliver` (or
    /// at 256). The default 5 ms makes at most 200 ack frames a second,
    /// inside the broker's rate limit of 500 frames/s per connection.
    pub ack_delay: Duration,
    /// Signed watermarks (as the SDK) or unsigned acks.
    pub acks: AckMode,
}

/// What [`run_spread`] measured.
#[derive(Debug, Default)]
pub(crate) struct Spread {
    pub attempted: u64,
    pub accepted: u64,
    /// Deliveries (message × subscriber) seen.
    pub deliveries: u64,
    pub duplicates: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Connected subscribers.
    pub subscribers: u64,
    /// Messages every subscriber had by the end.
    pub complete: u64,
    /// Per complete message: send → last subscriber.
    pub to_last: Samples,
    /// The slowest messages to reach their last subscriber: (ms, seconds
    /// after the first send), slowest first; to line an outlier up with
    /// what else ran then (a flush, a checkpoint, another process).
    pub slowest: Vec<(f64, f64)>,
    /// Per delivery: send → that subscriber.
    pub each: Samples,
    /// Per post: send → `accepted`.
    pub accept: Samples,
    pub elapsed_accept_s: f64,
    pub elapsed_deliver_s: f64,
    pub max_lag_ms: f64,
    /// Setting up: the crowd, sealing, connecting, settling.
    pub setup: Duration,
    /// Of which connecting the subscribers and letting them settle.
    pub connect: Duration,
    /// Ack frames the subscribers sent during the measured phase, and the
    /// seqs in them.
    pub ack_frames: u64,
    pub acked_seqs: u64,
    pub measured: Measured,
}

impl Spread {
    /// Deliveries expected: every accepted post to every subscriber.
    pub fn expected(&self) -> u64 {
        self.accepted.saturating_mul(self.subscribers)
    }

    /// Accepted posts per second of the measured phase.
    pub fn throughput(&self) -> f64 {
        if self.elapsed_accept_s > 0.0 {
            self.accepted as f64 / self.elapsed_accept_s
        } else {
            0.0
        }
    }

    /// The report's counts: posts, and deliveries per subscriber.
    pub fn counts(&self) -> Counts {
        Counts {
            attempted: self.attempted,
            completed: self.accepted,
            delivered: Some(self.deliveries),
            missing: Some(self.expected().saturating_sub(self.deliveries)),
            duplicates: Some(self.duplicates),
            errors: self.errors,
            first_error: self.first_error.clone(),
        }
    }

    /// Notes both scenarios print.
    pub fn notes(&self, crowd: &Crowd) -> Vec<String> {
        let mut notes = vec![format!(
            "{} subscribers; \"delivered\" and \"missing\" count deliveries (message × subscriber): {} expected; {} of {} accepted messages reached every subscriber",
            self.subscribers,
            self.expected(),
            self.complete,
            self.accepted
        )];
        if self.elapsed_deliver_s > 0.0 {
            notes.push(format!(
                "delivered {:.0} deliveries/s (first send to last delivery, {:.3} s)",
                self.deliveries as f64 / self.elapsed_deliver_s,
                self.elapsed_deliver_s
            ));
        }
        notes.push(format!(
            "the subscribers sent {} ack frames during the measured phase ({:.1} seqs each; the rest after it)",
            self.ack_frames,
            if self.ack_frames > 0 { self.acked_seqs as f64 / self.ack_frames as f64 } else { 0.0 }
        ));
        if !self.slowest.is_empty() {
            let each: Vec<String> = self
                .slowest
                .iter()
                .map(|(ms, at)| format!("{ms:.1} ms (sent at +{at:.2} s)"))
                .collect();
            notes.push(format!(
                "slowest to the last subscriber: {}",
                each.join(", ")
            ));
        }
        notes.push(crowd.steps_note());
        notes.push(format!(
            "connecting the subscribers and letting their presence pushes settle took {:.2} s",
            self.connect.as_secs_f64()
        ));
        notes
    }
}

/// Per message: how many subscribers have it and when the last one got it.
#[derive(Debug)]
struct Track {
    got: Vec<AtomicU32>,
    last_ns: Vec<AtomicU64>,
    /// When any subscriber last read any frame (ns since the tally's base).
    last_frame_ns: AtomicU64,
    /// Ack frames the subscribers sent, and the seqs in them.
    ack_frames: AtomicU64,
    acked_seqs: AtomicU64,
}

impl Track {
    /// Signs and sends the subscriber's watermark if it covers more than
    /// the last one, counting it.
    async fn watermark(&self, sink: &mut WsSink, acking: &Acking, held: &mut Held) -> Result<()> {
        let Acking::Watermark(me, target) = acking else {
            return Ok(());
        };
        let Some(facts) = held.facts(target) else {
            return Ok(());
        };
        let mark = Watermark::sign(me, facts)
            .map_err(|e| BenchError::ctx("cannot sign a watermark", e))?;
        self.ack_frames.fetch_add(1, Ordering::Relaxed);
        let frame = ClientFrame::Watermark(WatermarkFrame { marks: vec![mark] });
        let text = encode_client_frame(&frame);
        sink.send(Message::Text(Utf8Bytes::from(text)))
            .await
            .map_err(|e| BenchError::ctx("sending a watermark", e))
    }

    /// Sends the waiting acks, counting them.
    async fn ack(&self, sink: &mut WsSink, acks: &mut Vec<u64>) -> Result<()> {
        if acks.is_empty() {
            return Ok(());
        }
        self.ack_frames.fetch_add(1, Ordering::Relaxed);
        self.acked_seqs
            .fetch_add(acks.len() as u64, Ordering::Relaxed);
        flush_acks(sink, acks).await
    }
}

/// One poster's connection material.
struct Poster {
    session: claudemesh_crypto::cert::SessionIdentity,
    /// (global index, `send` frame text).
    frames: Vec<(usize, Utf8Bytes)>,
}

/// Seals every post, on every core, before the clock starts.
async fn seal_posts(plan: &Plan<'_>) -> Result<(Vec<Poster>, Prepared)> {
    let posters = &plan.crowd.posters;
    let n = posters.len() as u64;
    let k = plan.messages;
    let entries = Arc::new(plan.crowd.entries.clone());
    let mut sealers = JoinSet::new();
    let mut total = 0usize;
    for (p, member) in posters.iter().enumerate() {
        let count = (k / n + u64::from((p as u64) < k % n)) as usize;
        let session = member.new_session()?;
        let (member, entries, to) = (member.clone(), entries.clone(), plan.to.clone());
        let body_bytes = plan.body_bytes;
        let base = total;
        total += count;
        sealers.spawn_blocking(move || -> Result<(usize, Poster, Vec<MessageId>)> {
            let state = member.state(&entries, session.clone())?;
            let body = vec![b'.'; body_bytes];
            let mut frames = Vec::with_capacity(count);
            let mut ids = Vec::with_capacity(count);
            for j in 0..count {
                let env = state.seal(
                    to.clone(),
                    &body,
                    Priority::Next,
                    None,
                    claudemesh_client::client::now_ms(),
                )?;
                ids.push(env.id);
                let text = encode_client_frame(&ClientFrame::Send(Send {
                    req: Some((base + j).to_string()),
                    envelope: Box::new(env),
                    ttl_ms: None,
                    deliver_at_ms: None,
                }));
                frames.push((base + j, Utf8Bytes::from(text)));
            }
            Ok((p, Poster { session, frames }, ids))
        });
    }
    let mut sealed: Vec<Option<Poster>> = (0..posters.len()).map(|_| None).collect();
    let mut index = std::collections::HashMap::with_capacity(total);
    while let Some(r) = sealers.join_next().await {
        let (p, poster, ids) = r.map_err(|e| BenchError::ctx("sealing failed", e))??;
        for (id, (i, _)) in ids.into_iter().zip(&poster.frames) {
            index.insert(id, *i);
        }
        sealed[p] = Some(poster);
    }
    let prepared = Prepared {
        index,
        sent_ns: (0..total).map(|_| AtomicU64::new(u64::MAX)).collect(),
        seen: (0..total).map(|_| AtomicBool::new(false)).collect(),
    };
    Ok((sealed.into_iter().flatten().collect(), prepared))
}

/// Connects the subscribers and posters, measures the posts' fan-out,
/// and disconnects.
pub(crate) async fn run_spread(plan: &Plan<'_>) -> Result<Spread> {
    let setup_started = Instant::now();
    let (posters, prepared) = seal_posts(plan).await?;
    let prepared = Arc::new(prepared);
    let total = prepared.sent_ns.len();
    let track = Arc::new(Track {
        got: (0..total).map(|_| AtomicU32::new(0)).collect(),
        last_ns: (0..total).map(|_| AtomicU64::new(0)).collect(),
        last_frame_ns: AtomicU64::new(0),
        ack_frames: AtomicU64::new(0),
        acked_seqs: AtomicU64::new(0),
    });
    let tally = Arc::new(Tally::new());
    let (done_tx, done_rx) = watch::channel(false);

    // Wait out other work before connecting, not after: a connection that
    // sends nothing for 75 s is closed by the broker, and the posters
    // send nothing until the measured phase.
    if plan.common.wait_idle > 0 {
        crate::sys::wait_idle(
            Duration::from_secs(plan.common.wait_idle),
            crate::target::IDLE_BELOW_PCT,
        )
        .await;
    }
    let connect_started = Instant::now();
    let mut subscribers = JoinSet::new();
    for key in &plan.crowd.readers {
        let me = plan.crowd.session(key)?;
        let (sink, stream) = hello(&plan.target.url, &me).await?;
        let acking = match plan.acks {
            AckMode::Unsigned => Acking::Unsigned(plan.ack_delay),
            AckMode::Watermark => Acking::Watermark(Box::new(me), plan.to.clone()),
        };
        subscribers.spawn(subscribe(
            sink,
            stream,
            prepared.clone(),
            track.clone(),
            tally.clone(),
            done_rx.clone(),
            acking,
        ));
    }
    let mut connected = Vec::with_capacity(posters.len());
    for p in posters {
        let (sink, stream) = hello(&plan.target.url, &p.session).await?;
        connected.push((sink, stream, p.frames));
    }
    settle(&tally, &track).await;
    let connect = connect_started.elapsed();
    let setup = setup_started.elapsed();

    let probe = Probe::begin(plan.target, 0).await;
    let limit = Duration::from_secs(plan.common.duration);
    let stopper = tally.stop_after(limit);
    let start = Instant::now();
    let start_ns = tally.now_ns();
    let hard_stop = start + limit + DRAIN_LIMIT;
    let accept = send_all(
        connected,
        &prepared,
        &tally,
        plan.rate,
        plan.pipeline,
        (start, start_ns),
        hard_stop,
    )
    .await;
    let subscriber_count = plan.crowd.readers.len() as u64;
    let until = Instant::now() + DRAIN_LIMIT;
    while tally.delivered.load(Ordering::Relaxed)
        < tally
            .accepted
            .load(Ordering::Relaxed)
            .saturating_mul(subscriber_count)
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let measured = probe.end().await;
    let ack_frames = track.ack_frames.load(Ordering::Relaxed);
    let acked_seqs = track.acked_seqs.load(Ordering::Relaxed);
    stopper.abort();
    let _ = done_tx.send(true);
    let mut each = Samples::default();
    while let Some(r) = subscribers.join_next().await {
        match r {
            Ok(s) => each.merge(s),
            Err(e) => tally.error(format!("a subscriber failed: {e}")),
        }
    }

    let mut to_last = Samples::with_capacity(total);
    let first = tally.first_send_ns.load(Ordering::Relaxed);
    let mut slowest = Vec::new();
    for i in 0..total {
        let sent = prepared.sent_ns[i].load(Ordering::Relaxed);
        if sent != u64::MAX && u64::from(track.got[i].load(Ordering::Relaxed)) >= subscriber_count {
            let took = track.last_ns[i]
                .load(Ordering::Relaxed)
                .saturating_sub(sent);
            to_last.push(took);
            slowest.push((took as f64 / 1e6, sent.saturating_sub(first) as f64 / 1e9));
        }
    }
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    slowest.truncate(SLOWEST_SHOWN);
    let secs = |last: u64| {
        if first == u64::MAX || last < first {
            0.0
        } else {
            (last - first) as f64 / 1e9
        }
    };
    Ok(Spread {
        attempted: tally.attempted.load(Ordering::Relaxed),
        accepted: tally.accepted.load(Ordering::Relaxed),
        deliveries: tally.delivered.load(Ordering::Relaxed),
        duplicates: tally.duplicates.load(Ordering::Relaxed),
        errors: tally.errors.load(Ordering::Relaxed),
        first_error: tally
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        subscribers: subscriber_count,
        complete: to_last.len() as u64,
        to_last,
        slowest,
        each,
        accept,
        elapsed_accept_s: secs(tally.last_accept_ns.load(Ordering::Relaxed)),
        elapsed_deliver_s: secs(tally.last_deliver_ns.load(Ordering::Relaxed)),
        max_lag_ms: tally.max_lag_ns.load(Ordering::Relaxed) as f64 / 1e6,
        setup: setup + plan.crowd.took(),
        connect,
        ack_frames,
        acked_seqs,
        measured,
    })
}

/// Waits until no subscriber has read a frame for [`SETTLED_AFTER`]
/// (each hello is pushed to every session already there), or the limit.
async fn settle(tally: &Tally, track: &Track) {
    let until = Instant::now() + SETTLE_LIMIT;
    let quiet = u64::try_from(SETTLED_AFTER.as_nanos()).unwrap_or(u64::MAX);
    while Instant::now() < until
        && tally
            .now_ns()
            .saturating_sub(track.last_frame_ns.load(Ordering::Relaxed))
            < quiet
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which messages one subscriber has seen, one bit each.
#[derive(Debug)]
struct Seen(Vec<u64>);

impl Seen {
    fn new(n: usize) -> Self {
        Seen(vec![0; n.div_ceil(64)])
    }

    /// Marks `i`; whether it was marked already.
    fn mark(&mut self, i: usize) -> bool {
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        match self.0.get_mut(word) {
            Some(w) => {
                let had = *w & bit != 0;
                *w |= bit;
                had
            }
            None => false,
        }
    }
}

/// How a subscriber acknowledges what it got.
pub(crate) enum Acking {
    /// Unsigned acks, in batches (when 256 are waiting, or this long after
    /// the first).
    Unsigned(Duration),
    /// A signed watermark for the target, at most every
    /// [`WATERMARK_EVERY`], as the SDK sends.
    Watermark(Box<SessionIdentity>, To),
}

/// How often the SDK sends a target's watermark at most (`claudemesh_client`'s `WATERMARK_EVERY`).
const WATERMARK_EVERY: Duration = Duration::from_secs(1);

/// The SDK's random wait before a watermark (up to half the interval).
fn watermark_jitter() -> Duration {
    let r = u64::from(u32::from_le_bytes(
        claudemesh_crypto::keys::random_bytes::<4>(),
    ));
    let half = u64::try_from(WATERMARK_EVERY.as_micros() / 2)
        .unwrap_or(1)
        .max(1);
    Duration::from_micros(r % half)
}

/// Which per-target numbers a subscriber holds.
#[derive(Debug, Default)]
struct Held {
    got: std::collections::BTreeSet<u64>,
    sent_upto: u64,
}

impl Held {
    /// The watermark facts for what is held, if it covers more than the
    /// last one sent (the SDK's rule: every gap listed, at most 64).
    fn facts(&mut self, target: &To) -> Option<WatermarkFacts> {
        let (&lo, &hi) = (self.got.first()?, self.got.last()?);
        if hi <= self.sent_upto {
            return None;
        }
        let mut from = lo - 1;
        let mut missing: Vec<u64> = (lo..=hi).filter(|t| !self.got.contains(t)).collect();
        if missing.len() > MAX_WATERMARK_MISSING {
            let cut = missing.len() - MAX_WATERMARK_MISSING;
            from = missing[cut - 1];
            missing.drain(..cut);
        }
        self.sent_upto = hi;
        Some(WatermarkFacts {
            state: ReceiptState::Delivered,
            target: target.clone(),
            from,
            upto: hi,
            missing,
            at_ms: claudemesh_client::client::now_ms(),
            via: Via::Store,
        })
    }
}

/// One subscriber: reads every frame, times each `deliver`, and
/// acknowledges as `acking` says.
async fn subscribe(
    mut sink: WsSink,
    mut stream: WsStream,
    prepared: Arc<Prepared>,
    track: Arc<Track>,
    tally: Arc<Tally>,
    mut done: watch::Receiver<bool>,
    acking: Acking,
) -> Samples {
    let mut samples = Samples::default();
    let mut seen = Seen::new(prepared.sent_ns.len());
    let mut acks: Vec<u64> = Vec::with_capacity(MAX_IDS_PER_ACK);
    let mut held = Held::default();
    let mut ack_due: Option<tokio::time::Instant> = None;
    let ack_delay = match &acking {
        Acking::Unsigned(d) => *d,
        Acking::Watermark(..) => WATERMARK_EVERY,
    };
    let mut last_mark = tokio::time::Instant::now() - WATERMARK_EVERY;
    loop {
        tokio::select! {
            biased;
            _ = done.changed() => break,
            f = next_light(&mut stream) => {
                let now = tally.now_ns();
                track.last_frame_ns.fetch_max(now, Ordering::Relaxed);
                match f {
                    Ok(LightFrame { kind, seq: Some(seq), envelope: Some(env), tseq, .. }) if kind == "deliver" => {
                        match prepared.index.get(&env.id) {
                            Some(&i) if seen.mark(i) => {
                                tally.duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(&i) => {
                                let t0 = prepared.sent_ns[i].load(Ordering::Relaxed);
                                samples.push(now.saturating_sub(t0));
                                track.got[i].fetch_add(1, Ordering::Relaxed);
                                track.last_ns[i].fetch_max(now, Ordering::Relaxed);
                                tally.delivered(now);
                            }
                            None => tally.error("a message the bench did not send arrived"),
                        }
                        match tseq {
                            Some(t) if matches!(acking, Acking::Watermark(..)) => {
                                held.got.insert(t);
                            }
                            _ => acks.push(seq),
                        }
                        if ack_due.is_none() {
                            ack_due = Some(match acking {
                                Acking::Unsigned(_) => tokio::time::Instant::now() + ack_delay,
                                // As the SDK's coalescer: not before the
                                // interval after the last watermark, then a
                                // random wait of up to half the interval
                                // (drawn anew each time, so subscribers
                                // woken by the same message drift apart).
                                Acking::Watermark(..) => tokio::time::Instant::now()
                                    .max(last_mark + ack_delay)
                                    + watermark_jitter(),
                            });
                        }
                        if acks.len() >= MAX_IDS_PER_ACK {
                            ack_due = None;
                            if track.ack(&mut sink, &mut acks).await.is_err() {
                                tally.error("subscriber connection closed while acking");
                                break;
                            }
                        }
                    }
                    Ok(LightFrame { kind, code, message, .. }) if kind == "error" => {
                        tally.error(format!(
                            "subscriber got an error: {}: {}",
                            code.map(|c| c.to_string()).unwrap_or_default(),
                            message.unwrap_or_default()
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tally.error(format!("subscriber connection: {e}"));
                        break;
                    }
                }
            },
            _ = tokio::time::sleep_until(ack_due.unwrap_or_else(tokio::time::Instant::now)), if ack_due.is_some() => {
                ack_due = None;
                last_mark = tokio::time::Instant::now();
                if track.ack(&mut sink, &mut acks).await.is_err()
                    || track.watermark(&mut sink, &acking, &mut held).await.is_err()
                {
                    tally.error("subscriber connection closed while acking");
                    break;
                }
            }
        }
    }
    let _ = track.ack(&mut sink, &mut acks).await;
    let _ = track.watermark(&mut sink, &acking, &mut held).await;
    let _ = tokio::time::timeout(CONNECT_TIMEOUT, sink.send(Message::Close(None))).await;
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_marks_each_message_once() {
        let mut s = Seen::new(130);
        assert!(!s.mark(0));
        assert!(s.mark(0));
        assert!(!s.mark(129));
        assert!(s.mark(129));
        assert!(!s.mark(64));
        assert!(!s.mark(1000), "out of range is never a duplicate");
    }
}

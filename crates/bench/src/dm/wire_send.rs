//! Sending pre-sealed `send` frames over raw connections, closed loop or
//! paced ([`send_all`]), timing each `accepted`. Shared by `dm` and
//! `fanout`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use claudemesh_client::wire::{WsSink, WsStream};
use claudemesh_crypto::envelope::MessageId;
use claudemesh_proto::ErrorCode;
use futures_util::SinkExt as _;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::light::next_light;
use crate::stats::Samples;

use super::bounds::OPEN_LOOP_IN_FLIGHT;
use super::tally::{Tally, due_ns};

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

//! The `wire` client path of `dm`: every envelope sealed before the clock
//! starts, raw `send` frames, and recipients that match `deliver` frames to
//! their send time by message id and ack in batches ([`flush_acks`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use claudemesh_client::wire::{self, WsSink, WsStream};
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::envelope::{MessageId, Priority, Target as To};
use claudemesh_proto::frames::{Ack, Send};
use claudemesh_proto::limits::MAX_IDS_PER_ACK;
use claudemesh_proto::{ClientFrame, encode_client_frame};
use futures_util::SinkExt as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::args::DmArgs;
use crate::light::{LightFrame, next_light};
use crate::setup::Member;
use crate::stats::Samples;
use crate::target::{Probe, Target};
use crate::{BenchError, Result};

use super::bounds::DRAIN_LIMIT;
use super::connect::hello;
use super::tally::{Outcome, Tally};
use super::wire_send::{Prepared, send_all};
use claudemesh_crypto::MemberKey;

/// One sender's connection material.
struct WireSender {
    session: SessionIdentity,
    /// (global index, `send` frame text).
    frames: Vec<(usize, Utf8Bytes)>,
}

pub(super) async fn run_wire(
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
    let recipient_keys: Arc<Vec<To>> = Arc::new(
        recipients
            .iter()
            .map(|r| To::Member(MemberKey(r.key)))
            .collect(),
    );
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
                    ttl_ms: None,
                    deliver_at_ms: None,
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

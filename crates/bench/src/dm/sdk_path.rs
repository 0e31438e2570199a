//! The `sdk` client path of `dm`: senders drive `MeshClient::send` with the
//! send time carried in the body; recipients read `Event::Message`, so a
//! delivery counts once it is verified, opened and stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use claudemesh_client::{ConnectOptions, Event, MeshClient, SessionChoice};
use claudemesh_crypto::envelope::{Priority, Target as To};
use tokio::sync::{Semaphore, broadcast, watch};
use tokio::task::JoinSet;

use crate::Result;
use crate::args::DmArgs;
use crate::setup::Member;
use crate::stats::Samples;
use crate::target::{Probe, Target};

use super::bounds::{CONNECT_TIMEOUT, DRAIN_LIMIT, OPEN_LOOP_IN_FLIGHT};
use super::tally::{Outcome, Tally, due_ns};
use claudemesh_crypto::MemberKey;

fn body_with_time(ns: u64, len: usize) -> Vec<u8> {
    let mut b = format!("{ns:020}").into_bytes();
    b.resize(len, b'.');
    b
}

fn time_in_body(body: &str) -> Option<u64> {
    body.get(..20)?.parse().ok()
}

pub(super) async fn run_sdk(
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
    let targets: Arc<Vec<To>> = Arc::new(
        recipients
            .iter()
            .map(|r| To::Member(MemberKey(r.key)))
            .collect(),
    );
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
}

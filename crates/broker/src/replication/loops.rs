//! Replication's long-running tasks: the notifier (one round of wake-ups
//! at a time), the presence writer (`sessions_online`), the heartbeat (and
//! removing dead brokers), and the listener (with a catch-up after a lost
//! connection).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use claudemesh_crypto::{MeshId, PublicKey};
use tokio::sync::mpsc;

use super::inbound::recheck;
use super::replica::{HEARTBEAT, Replication, lock, stale_ms};
use super::wake::Wake;
use crate::metrics as m;
use crate::state::BrokerState;
use crate::store::replicas::{PresenceWrite, WakeListener};

/// Longest wait between retries of a failed database step.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Waits before retrying a failed database step, longer each time.
async fn backoff(attempt: &mut u32) {
    let wait = Duration::from_millis(50u64 << (*attempt).min(6)).min(MAX_BACKOFF);
    *attempt = attempt.saturating_add(1);
    tokio::time::sleep(wait).await;
}

/// Sends what accumulated, one round at a time: while a round is in flight
/// the next one accumulates (natural coalescing, like the writer's).
pub(super) async fn notify_loop(rep: Arc<Replication>) {
    let mut sender = rep.store.notifier();
    loop {
        rep.outbox_ready.notified().await;
        let out = std::mem::take(&mut *lock(&rep.outbox));
        let payloads = rep.round(out);
        if payloads.is_empty() {
            continue;
        }
        let mut attempt = 0;
        loop {
            match sender.send(&payloads).await {
                Ok(()) => {
                    metrics::counter!(m::REPLICA_WAKES_SENT).increment(payloads.len() as u64);
                    break;
                }
                Err(e) => {
                    metrics::counter!(m::STORE_ERRORS).increment(1);
                    tracing::warn!(error = %e, "could not wake other brokers; retrying");
                    backoff(&mut attempt).await;
                }
            }
        }
    }
}

/// Writes this broker's session changes to `sessions_online` (collapsed per
/// session key, one transaction per round), then wakes the others.
pub(super) async fn presence_loop(rep: Arc<Replication>) {
    let mut attempt = 0;
    loop {
        rep.presence_ready.notified().await;
        let taken = std::mem::take(&mut *lock(&rep.presence));
        if taken.is_empty() {
            continue;
        }
        let writes: Vec<PresenceWrite> = taken.values().map(|(_, w)| w.clone()).collect();
        match rep.store.write_presence(&rep.instance, &writes).await {
            Ok(()) => {
                attempt = 0;
                let mut out = lock(&rep.outbox);
                for ((mesh, _), (member, _)) in taken {
                    out.entry(mesh).or_default().presence.insert(member);
                }
                drop(out);
                rep.outbox_ready.notify_one();
            }
            Err(e) => {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::warn!(error = %e, "could not record sessions for other brokers; retrying");
                {
                    // Put back what no newer change replaced meanwhile.
                    let mut q = lock(&rep.presence);
                    for (k, v) in taken {
                        q.entry(k).or_insert(v);
                    }
                }
                backoff(&mut attempt).await;
                rep.presence_ready.notify_one();
            }
        }
    }
}

/// Moves the heartbeat; re-registers (and republishes every session) if
/// another replica took this one for dead; removes dead brokers and their
/// sessions, and then has every replica recheck everything (a dead broker
/// may have committed messages it never woke anyone for).
pub(super) async fn heartbeat_loop(state: Arc<BrokerState>, rep: Arc<Replication>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first round also sweeps rows left by brokers removed earlier.
    let mut first = true;
    loop {
        tick.tick().await;
        match rep.store.heartbeat(&rep.instance).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("other brokers took this one for dead; registering again");
                match rep.store.register(&rep.instance).await {
                    Ok(()) => {
                        rep.announce().await;
                        for mesh in state.hub.loaded_meshes() {
                            for s in mesh.sessions().all() {
                                rep.session_changed(&s);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not register again"),
                }
            }
            Err(e) => {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::warn!(error = %e, "heartbeat failed");
                continue;
            }
        }
        match rep.store.reap(stale_ms(), first).await {
            Ok(reaped) => {
                first = false;
                if !reaped.brokers.is_empty() {
                    // A broker that died may have committed messages it
                    // never woke anyone for (killed between its commit and
                    // its notification): every replica drains every
                    // session it holds, and this one tells the others to.
                    tracing::warn!(
                        brokers = ?reaped.brokers,
                        sessions = reaped.sessions.len(),
                        "removed brokers that stopped answering; catching up"
                    );
                    metrics::counter!(m::REPLICA_CATCH_UPS).increment(1);
                    rep.outbox_all.store(true, Ordering::SeqCst);
                    rep.outbox_ready.notify_one();
                    // Not on this task: the heartbeat must keep its pace.
                    let (state, rep) = (state.clone(), rep.clone());
                    tokio::spawn(async move {
                        for mesh in state.hub.loaded_meshes() {
                            recheck(&state, &rep, &mesh).await;
                        }
                    });
                } else if !reaped.sessions.is_empty() {
                    let mut by_mesh: HashMap<MeshId, Vec<PublicKey>> = HashMap::new();
                    for (mesh, member) in reaped.sessions {
                        by_mesh.entry(mesh).or_default().push(member);
                    }
                    for (mesh, members) in by_mesh {
                        if let Some(hub) = state.hub.loaded(&mesh)
                            && let Err(e) = rep.refresh_presence(&hub, Some(&members)).await
                        {
                            tracing::warn!(error = %e, "could not refresh presence");
                        }
                        rep.queue(mesh, |o| o.presence.extend(members));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "removing dead brokers failed"),
        }
        if let Ok(n) = rep.store.live_peers(&rep.instance, stale_ms()).await {
            metrics::gauge!(m::REPLICAS).set(n as f64);
            rep.peers_seen(n > 0);
        }
    }
}

/// Receives notifications; after a lost connection, listens again and
/// then asks for a catch-up of everything.
pub(super) async fn listen_loop(
    rep: Arc<Replication>,
    mut listener: Box<dyn WakeListener>,
    tx: mpsc::Sender<Wake>,
) {
    loop {
        let why = match listener.try_recv().await {
            Ok(Some(n)) => {
                let payload = n.as_str();
                if payload.starts_with(&rep.own_prefix) {
                    continue;
                }
                rep.peers_seen(true);
                match serde_json::from_str::<Wake>(payload) {
                    Ok(w) => {
                        metrics::counter!(m::REPLICA_WAKES_RECEIVED).increment(1);
                        if tx.send(w).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "a wake-up notification does not parse"),
                }
                continue;
            }
            Ok(None) => "connection lost".to_owned(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(reason = %why, "stopped hearing other brokers; listening again");
        let mut attempt = 0;
        listener = loop {
            backoff(&mut attempt).await;
            match rep.store.listen().await {
                Ok(l) => break l,
                Err(e) => tracing::warn!(error = %e, "cannot listen for other brokers yet"),
            }
        };
        // Anything said while nobody listened is read from the tables.
        metrics::counter!(m::REPLICA_CATCH_UPS).increment(1);
        let catch_up = Wake {
            all: true,
            ..Wake::default()
        };
        if tx.send(catch_up).await.is_err() {
            return;
        }
    }
}

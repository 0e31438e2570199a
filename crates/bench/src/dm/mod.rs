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

//!
//! - `bounds`: counts, sizes and time limits.
//! - `tally`: counters shared by a run's tasks, and what a path hands back.
//! - `sdk_path`: the `sdk` client path.
//! - `wire_path`: the `wire` client path (sealing, receiving, acks).
//! - `wire_send`: sending pre-sealed frames, shared with `fanout`.
//! - `connect`: a raw connection with its hello, shared with `fanout` and
//!   `handshake`.

use std::time::Duration;

use crate::args::{ClientPath, ClientState, DmArgs, StoreKind};
use crate::report::{ClientInfo, Counts, Report, Rss, build_profile, cpus, now_rfc3339};
use crate::setup::{build_mesh, full_log};
use crate::target::{Target, client_dir};
use crate::{BenchError, Result};

use sdk_path::run_sdk;
use tally::Outcome;
use wire_path::run_wire;

mod bounds;
mod connect;
mod sdk_path;
mod tally;
mod wire_path;
mod wire_send;

pub(crate) use bounds::CONNECT_TIMEOUT;
pub use bounds::{DEFAULT_MESSAGES, DRAIN_LIMIT, MIN_BODY_BYTES, OPEN_LOOP_IN_FLIGHT, SETUP_LIMIT};
pub(crate) use connect::{hello, send_hello};
pub(crate) use tally::Tally;
pub(crate) use wire_path::flush_acks;
pub(crate) use wire_send::{Prepared, send_all};

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

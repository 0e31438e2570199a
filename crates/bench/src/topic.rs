//! Scenario `topic`: P posters (`--senders`, default 8: the owner and
//! members who joined by invite) post to one public topic that R readers
//! (`--recipients`, default 64) have joined and stay connected to. Open
//! loop with `--rate` (all posters together, paced); closed loop without
//! it (each poster keeps `--pipeline` posts unanswered). Reports accepted
//! posts/s, deliveries/s and send → deliver latency per delivery and to
//! the last reader per post.
//!
//! The mesh, the posts and the readers are those of `fanout`
//! ([`crate::fanout::run_spread`]): posts sealed before the clock starts,
//! readers that read only `seq` and message id of each `deliver` and ack
//! in batches.

use claudemesh_crypto::envelope::Target as To;

use crate::args::{ClientState, TopicArgs};
use crate::crowd::build_crowd;
use crate::dm::SETUP_LIMIT;
use crate::fanout::{Plan, Spread, TOPIC, WIRE_WHAT, check_body_and_rate, run_spread};
use crate::report::{NamedLatency, Report, Rss, build_profile, cpus, now_rfc3339};
use crate::target::{Target, client_dir};
use crate::{BenchError, Result};

/// Posts when neither `--messages` nor `--rate` says how many.
pub const DEFAULT_MESSAGES: u64 = 5_000;

/// Runs the scenario.
pub async fn run(a: TopicArgs) -> Result<Report> {
    check_body_and_rate(a.body_bytes, a.rate)?;
    Target::run(&a.common, async |target| {
        let state = a.common.client_state.unwrap_or(ClientState::Tmpfs);
        let dir = client_dir(state)?;
        let k = messages(&a);
        let crowd = tokio::time::timeout(
            SETUP_LIMIT,
            build_crowd(
                &target.url,
                dir.path(),
                a.senders as usize,
                a.recipients as usize,
                Some(TOPIC),
            ),
        )
        .await
        .map_err(|_| BenchError(format!("setting up took more than {SETUP_LIMIT:?}")))??;
        let plan = Plan {
            common: &a.common,
            target,
            crowd: &crowd,
            to: To::Topic(TOPIC.into()),
            messages: k,
            rate: a.rate,
            pipeline: a.pipeline,
            body_bytes: a.body_bytes,
            ack_delay: std::time::Duration::from_millis(a.ack_delay_ms),
            acks: a.acks,
        };
        let out = run_spread(&plan).await?;
        let mut notes = out.notes(&crowd);
        drop(dir);
        if let Some(r) = a.rate {
            notes.push(format!(
                "open loop at {r} posts/s in total; the worst send ran {:.1} ms behind its schedule",
                out.max_lag_ms
            ));
        }
        if target.info.mode == "embedded" {
            notes.push(
                "embedded broker: the broker and every poster and reader share this process and its cores"
                    .into(),
            );
        }
        Ok(report(&a, target, state, k, out, notes))
    })
    .await
}

/// Posts in total: `--messages`, or with `--rate` rate × duration.
fn messages(a: &TopicArgs) -> u64 {
    match (a.messages, a.rate) {
        (Some(k), _) => k,
        (None, Some(r)) => (r * a.common.duration as f64).ceil() as u64,
        (None, None) => DEFAULT_MESSAGES,
    }
}

fn report(
    a: &TopicArgs,
    target: &Target,
    state: ClientState,
    k: u64,
    out: Spread,
    notes: Vec<String>,
) -> Report {
    Report {
        scenario: "topic",
        date_utc: now_rfc3339(),
        build: build_profile(),
        cpus: cpus(),
        broker: target.info.clone(),
        client: crate::report::ClientInfo {
            path: "wire",
            what: WIRE_WHAT,
            state: state.as_str(),
        },
        params: serde_json::json!({
            "posters": a.senders,
            "readers": a.recipients,
            "target": format!("#{TOPIC}"),
            "messages": k,
            "loop": if a.rate.is_some() { "open" } else { "closed" },
            "rate": a.rate,
            "pipeline": if a.rate.is_some() { None } else { Some(a.pipeline) },
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
        latency_of: "send → each reader (per delivery)",
        latency: out.each.summary(),
        latency2_of: Some("send → last reader (per post)"),
        latency2: out.to_last.summary(),
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

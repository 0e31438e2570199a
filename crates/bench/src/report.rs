//! The result of a run: one struct, printed as a text block or as one JSON
//! object (`--json`). Every figure in it was measured in this run. The
//! readings it is made of are defined here too ([`TargetInfo`] about the
//! broker, [`Measured`] from a probe), so that `target`, which fills them
//! in, depends on the report and not the other way round.

use serde::Serialize;

use crate::stats::Summary;
use crate::sys::{CpuUse, MetricsDelta};

/// What the report says about the broker.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// `embedded` or `external`.
    pub mode: &'static str,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// The websocket URL.
    pub url: String,
    /// The database (password redacted), when embedded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Whose RSS is reported.
    pub rss_of: String,
    /// The second replica's websocket URL, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_url: Option<String>,
}

/// What a [`Probe`](crate::target::Probe) measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    /// CPU used during the phase.
    pub cpu: CpuUse,
    /// The broker's counters during the phase.
    pub metrics: Option<MetricsDelta>,
    /// RSS before, bytes.
    pub rss_before: Option<u64>,
    /// Largest RSS during, bytes.
    pub rss_peak: Option<u64>,
    /// RSS after, bytes.
    pub rss_after: Option<u64>,
}

/// How the clients were driven.
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    /// `sdk` or `wire`.
    pub path: &'static str,
    /// What that path does per operation.
    pub what: &'static str,
    /// Where the peers' homes were: `tmpfs` or `disk`.
    pub state: &'static str,
}

/// Counts of the run's operations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Operations started (messages sent, connections opened, runs).
    pub attempted: u64,
    /// Completed: messages accepted by the broker, handshakes welcomed,
    /// successful runs.
    pub completed: u64,
    /// Messages delivered to (and seen by) their recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
    /// Accepted but never seen by the recipient before the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<u64>,
    /// Seen more than once by a recipient.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<u64>,
    /// Failures.
    pub errors: u64,
    /// The first failure's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Resident memory of the process named in `broker.rss_of`, MB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Rss {
    /// Right after the broker started (before any peer).
    pub start_mb: Option<f64>,
    /// After setup, just before the measured phase.
    pub before_mb: Option<f64>,
    /// Largest seen during the measured phase (sampled every 50 ms).
    pub peak_mb: Option<f64>,
    /// Just after the measured phase.
    pub after_mb: Option<f64>,
}

impl Rss {
    /// The RSS of a measured phase (the start is filled in by `Target::run`).
    pub fn of(m: &Measured) -> Rss {
        Rss {
            start_mb: None,
            before_mb: mb(m.rss_before),
            peak_mb: mb(m.rss_peak),
            after_mb: mb(m.rss_after),
        }
    }
}

/// Bytes to MB (10^6).
pub fn mb(bytes: Option<u64>) -> Option<f64> {
    bytes.map(|b| b as f64 / 1e6)
}

/// A further latency of a run, with what it measures.
#[derive(Debug, Clone, Serialize)]
pub struct NamedLatency {
    /// What it measures.
    pub of: &'static str,
    /// Its percentiles.
    pub latency: Option<Summary>,
}

/// One run's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `handshake`, `dm`, `fanout`, `topic` or `peer-list`.
    pub scenario: &'static str,
    /// When it ran (UTC, RFC 3339).
    pub date_utc: String,
    /// `release` or `debug`.
    pub build: &'static str,
    /// CPUs the OS offers.
    pub cpus: usize,
    /// The broker.
    pub broker: TargetInfo,
    /// The clients.
    pub client: ClientInfo,
    /// The scenario's parameters.
    pub params: serde_json::Value,
    /// What a unit of work is: `messages`, `handshakes`, `runs`.
    pub unit: &'static str,
    /// Counts.
    pub counts: Counts,
    /// Seconds of the measured phase (first operation to last completion).
    pub elapsed_s: f64,
    /// Completed operations per second.
    pub throughput_per_s: f64,
    /// What `latency` measures.
    pub latency_of: &'static str,
    /// Its percentiles.
    pub latency: Option<Summary>,
    /// A second latency (dm: send → `accepted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency2_of: Option<&'static str>,
    /// Its percentiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency2: Option<Summary>,
    /// Further latencies (fanout, topic: send → `accepted`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency_more: Vec<NamedLatency>,
    /// Memory.
    pub rss: Rss,
    /// CPU during the measured phase.
    pub cpu: CpuUse,
    /// The broker's counters during the measured phase.
    pub broker_metrics: Option<MetricsDelta>,
    /// Seconds spent setting up (mesh, joins, connections, pre-sealing).
    pub setup_s: f64,
    /// Caveats worth reading next to the figures.
    pub notes: Vec<String>,
}

impl Report {
    /// Prints the report: JSON or the text block.
    pub fn print(&self, json: bool) {
        if json {
            match serde_json::to_string_pretty(self) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("claudemesh-bench: cannot encode the report: {e}"),
            }
        } else {
            print!("{}", self.text());
        }
    }

    /// The text block.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let f1 = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.1}"));
        let _ = writeln!(
            o,
            "claudemesh-bench {} ({} build, {} CPUs, {})",
            self.scenario, self.build, self.cpus, self.date_utc
        );
        let db = self
            .broker
            .database
            .as_deref()
            .map(|d| format!(" [{d}]"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  broker        {} at {}, store {}{db}",
            self.broker.mode, self.broker.url, self.broker.store
        );
        let _ = writeln!(
            o,
            "  clients       {} ({}), homes on {}",
            self.client.path, self.client.what, self.client.state
        );
        let params = match &self.params {
            serde_json::Value::Object(m) => m
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        };
        let _ = writeln!(o, "  params        {params}");
        let c = &self.counts;
        let mut counts = format!(
            "{} attempted, {} completed, {} errors",
            c.attempted, c.completed, c.errors
        );
        if let Some(d) = c.delivered {
            let _ = write!(counts, ", {d} delivered");
        }
        if let Some(m) = c.missing {
            let _ = write!(counts, ", {m} missing");
        }
        if let Some(d) = c.duplicates.filter(|d| *d > 0) {
            let _ = write!(counts, ", {d} duplicated");
        }
        let _ = writeln!(o, "  {:<13} {counts}", self.unit);
        if let Some(e) = &c.first_error {
            let _ = writeln!(o, "  first error   {e}");
        }
        let _ = writeln!(
            o,
            "  elapsed       {:.3} s (setup {:.1} s)",
            self.elapsed_s, self.setup_s
        );
        let _ = writeln!(
            o,
            "  throughput    {:.0} {}/s",
            self.throughput_per_s, self.unit
        );
        let lat = |o: &mut String, of: &str, s: &Option<Summary>| match s {
            Some(s) => {
                let _ = writeln!(
                    o,
                    "  latency       {of}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (mean {:.2} ms, {} samples)",
                    s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms, s.mean_ms, s.samples
                );
            }
            None => {
                let _ = writeln!(o, "  latency       {of}: no samples");
            }
        };
        lat(&mut o, self.latency_of, &self.latency);
        if let Some(of) = self.latency2_of {
            lat(&mut o, of, &self.latency2);
        }
        for more in &self.latency_more {
            lat(&mut o, more.of, &more.latency);
        }
        let r = &self.rss;
        let _ = writeln!(
            o,
            "  RSS (MB)      start {}, before {}, peak {}, after {}  ({})",
            f1(r.start_mb),
            f1(r.before_mb),
            f1(r.peak_mb),
            f1(r.after_mb),
            self.broker.rss_of
        );
        let cpu = &self.cpu;
        let f2 = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.2} s"));
        let _ = writeln!(
            o,
            "  CPU           bench process {}, broker process {}, postgres {}{}, machine busy {}",
            f2(cpu.bench_s),
            f2(cpu.broker_s),
            f2(cpu.postgres_s),
            cpu.postgres_broker_db_s
                .map_or(String::new(), |s| format!(" (broker's database: {s:.2} s)")),
            cpu.machine_busy_pct
                .map_or("-".to_owned(), |p| format!("{p:.0} %"))
        );
        if let Some(bg) = cpu.background_busy_pct {
            let _ = writeln!(
                o,
                "  background    machine {bg:.0} % busy in the second before the run{}",
                if bg >= 10.0 {
                    " (other work was running: figures are skewed)"
                } else {
                    ""
                }
            );
        }
        if let Some(m) = &self.broker_metrics {
            let _ = writeln!(
                o,
                "  broker        {} commits, {} jobs/commit (messages + ack frames), {} ms/commit; {} accepted, {} hellos ok, {} rate-limited, {} slow consumers",
                m.commits,
                f1(m.mean_rows_per_commit),
                m.mean_commit_ms
                    .map_or("-".to_owned(), |x| format!("{x:.2}")),
                m.accepted,
                m.handshakes_ok,
                m.rate_limited,
                m.slow_consumers
            );
        }
        for n in &self.notes {
            let _ = writeln!(o, "  note          {n}");
        }
        o
    }
}

/// `release` or `debug`.
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// CPUs the OS offers this process.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_595_000), "2026-11-25T08:23:20Z");
    }
}

//! What the machine says about a run: resident memory (`VmRSS` in
//! `/proc/<pid>/status`), CPU time of a process and of every Postgres
//! backend (`/proc/<pid>/stat`), the machine's busy share (`/proc/stat`),
//! and the broker's own counters from its `/metrics` endpoint (group-commit
//! batch sizes and durations). Linux only; elsewhere the readings are absent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on every
/// Linux architecture this runs on).
const TICKS_PER_SEC: f64 = 100.0;

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// User + system CPU seconds `pid` has used.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&stat)
}

/// utime + stime from a `/proc/<pid>/stat` line (fields 14 and 15; the
/// command name in parentheses may contain spaces, so count from its end).
fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field n is at index n - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

/// CPU seconds used so far by each process named `postgres`, by pid, and
/// whether its title (`postgres: user db addr state`) names `database`.
pub fn postgres_cpu(database: Option<&str>) -> HashMap<u32, (f64, bool)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        if comm.trim() != "postgres" {
            continue;
        }
        let ours = database.is_some_and(|db| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .split([' ', '\0'])
                        .any(|w| w == db)
                })
                .unwrap_or(false)
        });
        if let Some(s) = cpu_seconds(pid) {
            out.insert(pid, (s, ours));
        }
    }
    out
}

/// Busy and total jiffies of the whole machine (`/proc/stat`, first line).
pub fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// The machine's busy share over `window`, percent.
pub async fn busy_over(window: Duration) -> Option<f64> {
    let (b0, t0) = machine_jiffies()?;
    tokio::time::sleep(window).await;
    let (b1, t1) = machine_jiffies()?;
    (t1 > t0).then(|| 100.0 * b1.saturating_sub(b0) as f64 / (t1 - t0) as f64)
}

/// Waits (at most `max_wait`) until the machine was less than
/// `threshold_pct` busy over one second; returns the last reading. Other
/// work on a shared machine skews every figure, so runs can wait it out.
pub async fn wait_idle(max_wait: Duration, threshold_pct: f64) -> Option<f64> {
    let until = std::time::Instant::now() + max_wait;
    loop {
        let busy = busy_over(Duration::from_secs(1)).await;
        if busy.is_none_or(|b| b < threshold_pct) || std::time::Instant::now() >= until {
            return busy;
        }
    }
}

/// A CPU reading at one moment.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    /// This process.
    pub bench: Option<f64>,
    /// The external broker process.
    pub broker: Option<f64>,
    /// Every `postgres` process: CPU seconds and whether it serves the
    /// broker's database.
    pub postgres: HashMap<u32, (f64, bool)>,
    /// Machine (busy, total) jiffies.
    pub machine: Option<(u64, u64)>,
}

impl CpuSnapshot {
    /// Reads everything now.
    pub fn take(broker_pid: Option<u32>, database: Option<&str>) -> Self {
        CpuSnapshot {
            bench: cpu_seconds(std::process::id()),
            broker: broker_pid.and_then(cpu_seconds),
            postgres: postgres_cpu(database),
            machine: machine_jiffies(),
        }
    }
}

/// CPU used between two snapshots.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuUse {
    /// CPU seconds of this process (in embedded mode: broker and clients).
    pub bench_s: Option<f64>,
    /// CPU seconds of the external broker process.
    pub broker_s: Option<f64>,
    /// CPU seconds of every `postgres` process on the machine (the server's
    /// own background processes and other databases' backends included).
    pub postgres_s: Option<f64>,
    /// CPU seconds of the backends connected to the broker's database
    /// (embedded Postgres broker only).
    pub postgres_broker_db_s: Option<f64>,
    /// Share of the machine's CPU time that was busy, percent.
    pub machine_busy_pct: Option<f64>,
    /// The machine's busy share in the second before the run started
    /// (other work on the machine), percent.
    pub background_busy_pct: Option<f64>,
}

impl CpuUse {
    /// `after - before`.
    pub fn between(before: &CpuSnapshot, after: &CpuSnapshot) -> Self {
        let d = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        CpuUse {
            bench_s: d(before.bench, after.bench),
            broker_s: d(before.broker, after.broker),
            postgres_s: postgres_delta(before, after, false),
            postgres_broker_db_s: postgres_delta(before, after, true),
            machine_busy_pct: match (before.machine, after.machine) {
                (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                    Some(100.0 * (b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64)
                }
                _ => None,
            },
            background_busy_pct: None,
        }
    }
}

/// CPU the `postgres` processes used between two snapshots: all of them,
/// or only the broker database's backends. Processes that started in
/// between count from zero; those that ended are lost.
fn postgres_delta(before: &CpuSnapshot, after: &CpuSnapshot, only_ours: bool) -> Option<f64> {
    let mut any = false;
    let mut total = 0.0;
    for (pid, (cpu, ours)) in &after.postgres {
        if only_ours && !ours {
            continue;
        }
        any = true;
        let start = before.postgres.get(pid).map(|(c, _)| *c).unwrap_or(0.0);
        total += (cpu - start).max(0.0);
    }
    any.then_some(total)
}

/// Samples a process's RSS every 50 ms and keeps the largest.
#[derive(Debug)]
pub struct RssSampler {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_bytes(pid).unwrap_or(0)));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                if let Some(r) = rss_bytes(pid) {
                    p.fetch_max(r, Ordering::Relaxed);
                }
            }
        });
        RssSampler { peak, task }
    }

    /// Stops; the largest RSS seen, bytes.
    pub fn stop(self, pid: u32) -> u64 {
        self.task.abort();
        if let Some(r) = rss_bytes(pid) {
            self.peak.fetch_max(r, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// The broker's Prometheus counters that explain a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrokerMetrics {
    /// Group commits.
    pub commits: f64,
    /// Sum of jobs (messages + ack frames) over commits.
    pub commit_rows: f64,
    /// Sum of commit seconds.
    pub commit_seconds: f64,
    /// Messages accepted.
    pub accepted: f64,
    /// Frames refused by the rate limiter.
    pub rate_limited: f64,
    /// Connections cut as slow consumers.
    pub slow_consumers: f64,
    /// Successful hellos.
    pub handshakes_ok: f64,
    /// Open websocket connections (a gauge).
    pub connections: f64,
}

/// What the broker's counters say about the run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct MetricsDelta {
    /// Group commits during the run.
    pub commits: u64,
    /// Mean jobs per commit: messages plus ack frames (the broker's
    /// `claudemesh_commit_batch_size`).
    pub mean_rows_per_commit: Option<f64>,
    /// Mean duration of a commit, ms.
    pub mean_commit_ms: Option<f64>,
    /// Messages the broker counted as accepted.
    pub accepted: u64,
    /// Frames refused by the rate limiter.
    pub rate_limited: u64,
    /// Slow-consumer disconnects.
    pub slow_consumers: u64,
    /// Successful hellos.
    pub handshakes_ok: u64,
}

impl MetricsDelta {
    /// `after - before`.
    pub fn between(before: &BrokerMetrics, after: &BrokerMetrics) -> Self {
        let commits = (after.commits - before.commits).max(0.0);
        let n = |a: f64, b: f64| (b - a).max(0.0).round() as u64;
        MetricsDelta {
            commits: commits.round() as u64,
            mean_rows_per_commit: (commits > 0.0)
                .then(|| (after.commit_rows - before.commit_rows) / commits),
            mean_commit_ms: (commits > 0.0)
                .then(|| 1000.0 * (after.commit_seconds - before.commit_seconds) / commits),
            accepted: n(before.accepted, after.accepted),
            rate_limited: n(before.rate_limited, after.rate_limited),
            slow_consumers: n(before.slow_consumers, after.slow_consumers),
            handshakes_ok: n(before.handshakes_ok, after.handshakes_ok),
        }
    }
}

/// Waits (at most `limit`) until the broker holds no more than `baseline`
/// open connections; returns when it did, or `None` if it never did (or
/// `/metrics` cannot be read).
pub async fn wait_connections(
    addr: SocketAddr,
    baseline: f64,
    limit: Duration,
) -> Option<std::time::Instant> {
    let until = std::time::Instant::now() + limit;
    loop {
        let m = scrape_metrics(addr).await?;
        if m.connections <= baseline {
            return Some(std::time::Instant::now());
        }
        if std::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `http://addr/metrics` (plain HTTP/1.1 on loopback).
pub async fn scrape_metrics(addr: SocketAddr) -> Option<BrokerMetrics> {
    let body = tokio::time::timeout(Duration::from_secs(5), http_get(addr, "/metrics"))
        .await
        .ok()??;
    Some(parse_metrics(&body))
}

async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        Some(dechunk(body))
    } else {
        Some(body.to_owned())
    }
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sums each metric over its labels (or one label set where asked).
fn parse_metrics(text: &str) -> BrokerMetrics {
    let mut values: HashMap<String, f64> = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, l)) => (n, l),
            None => (name_labels, ""),
        };
        *values.entry(name.to_owned()).or_default() += v;
        if name == "claudemesh_handshakes_total" && labels.contains("result=\"ok\"") {
            *values.entry("handshakes_ok".to_owned()).or_default() += v;
        }
    }
    let g = |k: &str| values.get(k).copied().unwrap_or(0.0);
    BrokerMetrics {
        commits: g("claudemesh_commit_batch_size_count"),
        commit_rows: g("claudemesh_commit_batch_size_sum"),
        commit_seconds: g("claudemesh_commit_seconds_sum"),
        accepted: g("claudemesh_messages_accepted_total"),
        rate_limited: g("claudemesh_rate_limited_total"),
        slow_consumers: g("claudemesh_slow_consumer_disconnects_total"),
        handshakes_ok: g("handshakes_ok"),
        connections: g("claudemesh_connections"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_skips_names_with_spaces() {
        let line = "1234 (tokio runtime) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(parse_stat_cpu(line), Some(3.0));
    }

    #[test]
    fn metrics_are_summed_and_labelled() {
        let text = "# TYPE x counter\n\
            claudemesh_commit_batch_size_count 10\n\
            claudemesh_commit_batch_size_sum 250\n\
            claudemesh_commit_seconds_sum 0.02\n\
            claudemesh_handshakes_total{result=\"ok\"} 7\n\
            claudemesh_handshakes_total{result=\"bad_signature\"} 1\n";
        let m = parse_metrics(text);
        assert_eq!(m.commits, 10.0);
        assert_eq!(m.handshakes_ok, 7.0);
        let d = MetricsDelta::between(&BrokerMetrics::default(), &m);
        assert_eq!(d.mean_rows_per_commit, Some(25.0));
        assert!((d.mean_commit_ms.unwrap() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }

    #[test]
    fn own_rss_and_cpu_are_readable() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes(std::process::id()).unwrap() > 0);
            assert!(cpu_seconds(std::process::id()).is_some());
        }
    }
}

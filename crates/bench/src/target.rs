//! The broker under test: embedded (started in this process with
//! `claudemesh_broker::server::start` on a temporary SQLite file, or on a
//! fresh Postgres database that is dropped afterwards) or external (a
//! `ws://` URL on loopback, with its pid for RSS and CPU readings). Also the
//! directories the peers' homes go in.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::path::Path;
use std::time::Duration;

use claudemesh_broker::config::BrokerConfig;
use claudemesh_broker::server::RunningBroker;
use claudemesh_broker::testing::TestDatabase;

use crate::args::{ClientState, Common, StoreKind};
use crate::sys::{
    BrokerMetrics, CpuSnapshot, CpuUse, MetricsDelta, RssSampler, rss_bytes, scrape_metrics,
};
use crate::{BenchError, Result};

// The data a report is made of lives in `report`, which must not import the
// target back; re-exported so their paths stay.
pub use crate::report::{Measured, TargetInfo};

/// The broker a scenario runs against.
#[derive(Debug)]
pub struct Target {
    /// `ws://127.0.0.1:PORT`.
    pub url: String,
    /// Its HTTP address (for `/metrics`).
    pub addr: SocketAddr,
    /// The process to read RSS and CPU of (this one when embedded).
    pub pid: Option<u32>,
    /// Facts for the report.
    pub info: TargetInfo,
    running: Option<RunningBroker>,
    /// A second embedded broker on the same Postgres database
    /// (`dm --replicas 2`): recipients connect to it.
    replica: Option<RunningBroker>,
    postgres: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

/// The embedded broker's abuse limits opened wide: a load generator is one
/// address with hundreds of sessions per member, and its owner writes
/// thousands of log entries to build a crowd. The per-connection frame
/// rate stays as shipped; the per-member buckets and log quotas still run
/// (their cost is measured), they just never refuse.
fn open_for_load(config: &mut BrokerConfig) {
    config.member_rate_per_sec = u32::MAX / 2;
    config.member_rate_burst = u32::MAX / 2;
    config.member_bytes_per_sec = u32::MAX / 2;
    config.member_bytes_burst = u32::MAX / 2;
    config.max_sessions_per_member = usize::MAX / 2;
    config.max_pending_per_address = usize::MAX / 2;
    config.log_entries_per_hour = u32::MAX / 2;
    config.log_burst = u32::MAX / 2;
    config.log_bytes_per_hour = u32::MAX / 2;
}

impl Target {
    /// Starts an embedded broker, or checks an external one's URL.
    pub async fn start(common: &Common) -> Result<Target> {
        match &common.broker {
            Some(url) => {
                let addr = loopback_addr(url)?;
                let pid = common.broker_pid;
                Ok(Target {
                    url: url.trim_end_matches('/').to_owned(),
                    addr,
                    pid,
                    info: TargetInfo {
                        mode: "external",
                        store: common.store.as_str(),
                        url: url.clone(),
                        database: None,
                        rss_of: match pid {
                            Some(p) => format!("broker process {p}"),
                            None => "unknown (pass --broker-pid)".into(),
                        },
                        replica_url: None,
                    },
                    running: None,
                    replica: None,
                    postgres: None,
                    _dir: None,
                })
            }
            None => Self::embedded(common.store).await,
        }
    }

    async fn embedded(store: StoreKind) -> Result<Target> {
        // The broker's database goes on the real disk (never tmpfs): its
        // fsyncs are part of what is measured.
        let dir = tempfile::Builder::new()
            .prefix("claudemesh-bench-broker-")
            .tempdir()
            .map_err(|e| BenchError::ctx("cannot make a temporary directory", e))?;
        let mut config = BrokerConfig::with_sqlite_file(&dir.path().join("broker.db"));
        config.broker_id = "bench-a".into();
        open_for_load(&mut config);
        let mut postgres = None;
        if store == StoreKind::Postgres {
            let db = claudemesh_broker::testing::fresh_postgres_url()
                .await
                .map_err(|e| BenchError(e.to_string()))?;
            config.database_url = db.url().to_owned();
            postgres = Some(db);
        }
        let database = claudemesh_broker::db_url::redact_url(&config.database_url);
        let running = match claudemesh_broker::server::start(config).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(db) = postgres {
                    db.drop_database().await;
                }
                return Err(BenchError::ctx("cannot start the embedded broker", e));
            }
        };
        Ok(Target {
            url: running.ws_url(),
            addr: running.local_addr,
            pid: Some(std::process::id()),
            info: TargetInfo {
                mode: "embedded",
                store: store.as_str(),
                url: running.ws_url(),
                database: Some(database),
                rss_of: "this process (broker and all clients)".into(),
                replica_url: None,
            },
            running: Some(running),
            replica: None,
            postgres,
            _dir: Some(dir),
        })
    }

    /// Starts a second embedded broker (`bench-b`) on the same Postgres
    /// database: a replica.
    async fn add_replica(&mut self) -> Result<()> {
        let (Some(db), None) = (&self.postgres, &self.replica) else {
            return Err(BenchError(
                "a second replica needs the embedded broker on Postgres (--store postgres, no --broker)"
                    .into(),
            ));
        };
        let mut config = BrokerConfig::with_sqlite_file(Path::new("unused.db"));
        config.database_url = db.url().to_owned();
        config.broker_id = "bench-b".into();
        open_for_load(&mut config);
        let replica = claudemesh_broker::server::start(config)
            .await
            .map_err(|e| BenchError::ctx("cannot start the second replica", e))?;
        self.info.replica_url = Some(replica.ws_url());
        self.info.rss_of = "this process (both brokers and all clients)".into();
        self.replica = Some(replica);
        Ok(())
    }

    /// Where recipients connect: the second replica if there is one.
    pub fn recipient_url(&self) -> &str {
        self.info.replica_url.as_deref().unwrap_or(&self.url)
    }

    /// Starts the target named by `common`, runs `scenario` on it, stops it
    /// whatever happened, and records the RSS it had right after starting.
    pub async fn run(
        common: &Common,
        scenario: impl AsyncFnOnce(&Target) -> Result<crate::report::Report>,
    ) -> Result<crate::report::Report> {
        Self::run_with(common, 1, scenario).await
    }

    /// [`Target::run`] with `replicas` embedded brokers on one Postgres
    /// database (1 or 2).
    pub async fn run_with(
        common: &Common,
        replicas: u32,
        scenario: impl AsyncFnOnce(&Target) -> Result<crate::report::Report>,
    ) -> Result<crate::report::Report> {
        let mut target = Target::start(common).await?;
        if replicas > 1
            && let Err(e) = target.add_replica().await
        {
            target.stop().await;
            return Err(e);
        }
        let rss_start = target.rss_now();
        let result = scenario(&target).await;
        target.stop().await;
        let mut report = result?;
        report.rss.start_mb = crate::report::mb(rss_start);
        Ok(report)
    }

    /// Stops the embedded brokers and drops their Postgres database.
    pub async fn stop(self) {
        if let Some(r) = self.replica {
            r.shutdown().await;
        }
        if let Some(r) = self.running {
            r.shutdown().await;
        }
        if let Some(db) = self.postgres {
            db.drop_database().await;
        }
    }
}

/// `--wait-idle` waits until the machine is less busy than this, percent.
pub const IDLE_BELOW_PCT: f64 = 10.0;

/// Readings taken around a measured phase.
#[derive(Debug)]
pub struct Probe {
    rss_pid: Option<u32>,
    external_pid: Option<u32>,
    addr: SocketAddr,
    cpu: CpuSnapshot,
    metrics: Option<BrokerMetrics>,
    rss_before: Option<u64>,
    sampler: Option<RssSampler>,
    background: Option<f64>,
    database: Option<String>,
}

impl Probe {
    /// Starts measuring `target`, after reading (or, with `wait_idle`
    /// seconds, waiting out) other work on the machine.
    pub async fn begin(target: &Target, wait_idle: u64) -> Probe {
        let background = if wait_idle > 0 {
            crate::sys::wait_idle(Duration::from_secs(wait_idle), IDLE_BELOW_PCT).await
        } else {
            crate::sys::busy_over(Duration::from_secs(1)).await
        };
        let metrics = scrape_metrics(target.addr).await;
        let external_pid = target.running.is_none().then_some(target.pid).flatten();
        let database = target.postgres.as_ref().map(|db| db.name().to_owned());
        Probe {
            rss_pid: target.pid,
            external_pid,
            addr: target.addr,
            cpu: CpuSnapshot::take(external_pid, database.as_deref()),
            metrics,
            rss_before: target.pid.and_then(rss_bytes),
            sampler: target.pid.map(RssSampler::start),
            background,
            database,
        }
    }

    /// Stops measuring.
    pub async fn end(self) -> Measured {
        let cpu_after = CpuSnapshot::take(self.external_pid, self.database.as_deref());
        let rss_after = self.rss_pid.and_then(rss_bytes);
        let rss_peak = match (self.sampler, self.rss_pid) {
            (Some(s), Some(pid)) => Some(s.stop(pid)),
            _ => None,
        };
        let metrics_after = scrape_metrics(self.addr).await;
        Measured {
            cpu: CpuUse {
                background_busy_pct: self.background,
                ..CpuUse::between(&self.cpu, &cpu_after)
            },
            metrics: match (self.metrics, metrics_after) {
                (Some(a), Some(b)) => Some(MetricsDelta::between(&a, &b)),
                _ => None,
            },
            rss_before: self.rss_before,
            rss_peak,
            rss_after,
        }
    }
}

impl Target {
    /// RSS of the broker's process now, bytes.
    pub fn rss_now(&self) -> Option<u64> {
        self.pid.and_then(rss_bytes)
    }
}

/// The socket address of a `ws://host:port[/path]` URL, if it is loopback.
pub fn loopback_addr(url: &str) -> Result<SocketAddr> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| {
        BenchError(format!(
            "{url:?}: give a ws://127.0.0.1:PORT URL (loopback only)"
        ))
    })?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']').unwrap_or((v6, ""));
            (h, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let literal_loopback = match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if !literal_loopback {
        return Err(BenchError(format!(
            "{url:?}: the load generator only targets loopback (127.0.0.0/8, ::1, localhost)"
        )));
    }
    let port: u16 = match port {
        Some(p) => p
            .parse()
            .map_err(|_| BenchError(format!("{url:?}: bad port {p:?}")))?,
        None => 80,
    };
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| BenchError::ctx(&format!("cannot resolve {url:?}"), e))?
        .collect();
    addrs
        .iter()
        .find(|a| a.ip().is_loopback())
        .copied()
        .filter(|_| addrs.iter().all(|a| a.ip().is_loopback()))
        .ok_or_else(|| BenchError(format!("{url:?} does not resolve to loopback only")))
}

/// A fresh directory for the peers' homes: on tmpfs (`/dev/shm`) or on
/// the disk the broker uses.
pub fn client_dir(state: ClientState) -> Result<tempfile::TempDir> {
    let mut b = tempfile::Builder::new();
    b.prefix("claudemesh-bench-peers-");
    let dir = match state {
        ClientState::Tmpfs if Path::new("/dev/shm").is_dir() => b.tempdir_in("/dev/shm"),
        ClientState::Tmpfs => {
            return Err(BenchError(
                "/dev/shm is not available; pass --client-state disk".into(),
            ));
        }
        ClientState::Disk => b.tempdir(),
    };
    dir.map_err(|e| BenchError::ctx("cannot make a directory for the peers", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_brokers_are_accepted() {
        assert_eq!(
            loopback_addr("ws://127.0.0.1:7900").unwrap(),
            "127.0.0.1:7900".parse().unwrap()
        );
        assert!(loopback_addr("ws://127.0.0.2:7900/ws").is_ok());
        assert!(loopback_addr("ws://[::1]:7900").is_ok());
        assert!(loopback_addr("ws://localhost:7900").is_ok());
        assert!(loopback_addr("ws://10.0.0.1:7900").is_err());
        assert!(loopback_addr("ws://example.com:7900").is_err());
        assert!(loopback_addr("wss://127.0.0.1:7900").is_err());
        assert!(loopback_addr("http://127.0.0.1:7900").is_err());
    }
}

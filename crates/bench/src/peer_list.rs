//! Scenario `peer-list`: the CLI round trip from a cold process. It builds
//! a mesh (owner plus `--recipients` members), then runs
//! `claudemesh --home <owner> peer list` as a new process `--messages`
//! times (after one untimed warm-up) and reports the wall time of each:
//! process start, home and key files, local SQLite, log verification,
//! handshake, `peer_list`, output, exit.
//!
//! Also `setup`: the same mesh on an external broker, kept on disk, so the
//! CLI can be timed by other tools (hyperfine).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::args::{ClientState, PeerListArgs, SetupArgs};
use crate::report::{ClientInfo, Counts, Report, Rss, build_profile, cpus, now_rfc3339};
use crate::setup::build_mesh;
use crate::stats::Samples;
use crate::target::{Probe, Target, client_dir, loopback_addr};
use crate::{BenchError, Result};

/// How long one CLI run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the scenario.
pub async fn run(a: PeerListArgs) -> Result<Report> {
    let cli = match &a.cli {
        Some(p) => p.clone(),
        None => default_cli()?,
    };
    if !cli.is_file() {
        return Err(BenchError(format!(
            "{} is not a file: build it (cargo build --release -p claudemesh) or pass --cli",
            cli.display()
        )));
    }
    Target::run(&a.common, async |target| on_target(&a, target, &cli).await).await
}

/// `claudemesh` next to this executable.
pub(crate) fn default_cli() -> Result<PathBuf> {
    let exe =
        std::env::current_exe().map_err(|e| BenchError::ctx("cannot find this executable", e))?;
    let dir = exe
        .parent()
        .ok_or_else(|| BenchError("this executable has no directory".into()))?;
    Ok(dir.join(format!("claudemesh{}", std::env::consts::EXE_SUFFIX)))
}

/// One `peer list` process; its wall time.
async fn run_once(cli: &Path, home: &Path) -> Result<Duration> {
    let t0 = Instant::now();
    let child = tokio::process::Command::new(cli)
        .arg("--home")
        .arg(home)
        .args(["peer", "list"])
        .env_remove("CLAUDEMESH_MESH")
        .env_remove("CLAUDEMESH_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BenchError::ctx(&format!("cannot run {}", cli.display()), e))?;
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| BenchError(format!("peer list took more than {RUN_TIMEOUT:?}")))?
        .map_err(|e| BenchError::ctx("peer list", e))?;
    let took = t0.elapsed();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(BenchError(format!(
            "peer list exited with {}: {}",
            out.status,
            err.lines().next().unwrap_or("")
        )));
    }
    Ok(took)
}

async fn on_target(a: &PeerListArgs, target: &Target, cli: &Path) -> Result<Report> {
    let state = a.common.client_state.unwrap_or(ClientState::Disk);
    let dir = client_dir(state)?;
    let started = Instant::now();
    let setup = tokio::time::timeout(
        crate::dm::SETUP_LIMIT,
        build_mesh(&target.url, dir.path(), a.recipients as usize, |i| {
            format!("member{i}")
        }),
    )
    .await
    .map_err(|_| BenchError("setting up took too long".into()))??;
    let home = setup.owner.home.root().to_owned();
    let warmup = run_once(cli, &home).await?;
    let setup_s = started.elapsed().as_secs_f64();

    let limit = Duration::from_secs(a.common.duration);
    let probe = Probe::begin(target, a.common.wait_idle).await;
    let t_start = Instant::now();
    let mut samples = Samples::default();
    let mut counts = Counts::default();
    for _ in 0..a.messages {
        if t_start.elapsed() >= limit {
            break;
        }
        counts.attempted += 1;
        match run_once(cli, &home).await {
            Ok(d) => {
                samples.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
                counts.completed += 1;
            }
            Err(e) => {
                counts.errors += 1;
                if counts.first_error.is_none() {
                    counts.first_error = Some(e.to_string());
                }
            }
        }
    }
    let elapsed_s = t_start.elapsed().as_secs_f64();
    let measured = probe.end().await;
    drop(dir);
    let mut notes = vec![
        format!(
            "untimed warm-up run: {:.1} ms; runs are sequential, each a new process",
            warmup.as_secs_f64() * 1e3
        ),
        format!(
            "{} members in the mesh's log (owner included)",
            a.recipients + 1
        ),
    ];
    if target.info.mode == "embedded" {
        notes.push(
            "embedded broker: it runs in the bench process; the CLI is a separate process".into(),
        );
    }
    Ok(Report {
        scenario: "peer-list",
        date_utc: now_rfc3339(),
        build: build_profile(),
        cpus: cpus(),
        broker: target.info.clone(),
        client: ClientInfo {
            path: "cli",
            what: "claudemesh --home <owner> peer list, one cold process per run",
            state: state.as_str(),
        },
        params: serde_json::json!({
            "cli": cli.display().to_string(),
            "runs": a.messages,
            "members": a.recipients + 1,
            "duration_limit_s": a.common.duration,
        }),
        unit: "runs",
        counts,
        elapsed_s,
        throughput_per_s: if elapsed_s > 0.0 {
            samples.len() as f64 / elapsed_s
        } else {
            0.0
        },
        latency_of: "process wall time",
        latency: samples.summary(),
        latency2_of: None,
        latency2: None,
        latency_more: Vec::new(),
        rss: Rss::of(&measured),
        cpu: measured.cpu,
        broker_metrics: measured.metrics,
        setup_s,
        notes,
    })
}

/// `setup`: a mesh on an external broker, homes kept in `--home`.
pub async fn setup(a: SetupArgs) -> Result<()> {
    loopback_addr(&a.broker)?;
    if a.home.exists()
        && std::fs::read_dir(&a.home)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(BenchError(format!(
            "{} exists and is not empty; give a new directory",
            a.home.display()
        )));
    }
    claudemesh_client::home::ensure_private_dir(&a.home)?;
    let setup = tokio::time::timeout(
        crate::dm::SETUP_LIMIT,
        build_mesh(&a.broker, &a.home, a.recipients as usize, |i| {
            format!("member{i}")
        }),
    )
    .await
    .map_err(|_| BenchError("setting up took too long".into()))??;
    let owner = setup.owner.home.root().display().to_string();
    println!(
        "mesh {} on {} with {} members; owner home {owner} (set up in {:.1} s)",
        setup.owner.mesh.short_id(),
        a.broker,
        setup.members.len() + 1,
        setup.took.as_secs_f64()
    );
    println!("time the CLI with, e.g.:");
    println!("  hyperfine -N --warmup 3 'target/release/claudemesh --home {owner} peer list'");
    Ok(())
}

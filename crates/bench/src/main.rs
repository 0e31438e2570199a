//! `claudemesh-bench`: runs one scenario and prints its result block (or
//! one JSON object with `--json`). Exit status: 0 when every operation
//! completed (and every accepted message was delivered), 3 when some failed
//! or went missing (the report is still printed), 1 when the run could not
//! be made at all (a bad value among the arguments included), 2 when the
//! arguments do not parse.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use claudemesh_bench::args::{Cli, Scenario};
use claudemesh_bench::report::Report;
use claudemesh_bench::{BenchError, dm, fanout, gateway, handshake, peer_list, topic};

/// Beyond the scenario's own limits (setup, measured phase, drain), the
/// whole process never runs longer than this.
const OVERALL_SLACK: Duration = Duration::from_secs(900);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("claudemesh-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (json, limit) = match &cli.scenario {
            Scenario::Handshake(a) => (a.common.json, a.common.duration),
            Scenario::Dm(a) => (a.common.json, a.common.duration),
            Scenario::Fanout(a) => (a.common.json, a.common.duration),
            Scenario::Topic(a) => (a.common.json, a.common.duration),
            Scenario::PeerList(a) => (a.common.json, a.common.duration),
            Scenario::Gateway(a) => (a.common.json, a.common.duration),
            Scenario::Setup(_) => (false, 0),
        };
        let bound = Duration::from_secs(limit) + OVERALL_SLACK;
        let run = async move {
            match cli.scenario {
                Scenario::Handshake(a) => handshake::run(a).await.map(Some),
                Scenario::Dm(a) => dm::run(a).await.map(Some),
                Scenario::Fanout(a) => fanout::run(a).await.map(Some),
                Scenario::Topic(a) => topic::run(a).await.map(Some),
                Scenario::PeerList(a) => peer_list::run(a).await.map(Some),
                Scenario::Gateway(a) => gateway::run(a).await.map(Some),
                Scenario::Setup(a) => peer_list::setup(a).await.map(|()| None),
            }
        };
        let result: Result<Option<Report>, BenchError> =
            match tokio::time::timeout(bound, run).await {
                Ok(r) => r,
                Err(_) => Err(BenchError(format!(
                    "the run exceeded its overall bound of {} s",
                    bound.as_secs()
                ))),
            };
        match result {
            Ok(Some(report)) => {
                report.print(json);
                let c = &report.counts;
                if c.errors > 0 || c.missing.unwrap_or(0) > 0 || c.completed == 0 {
                    ExitCode::from(3)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Ok(None) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("claudemesh-bench: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

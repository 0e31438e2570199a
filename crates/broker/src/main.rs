//! `claudemesh-broker`: reads its configuration (flags, then
//! `CLAUDEMESH_BROKER_*` environment, then an optional YAML file), applies
//! migrations, serves until SIGTERM or Ctrl-C, then shuts down cleanly. Any
//! start-up failure prints one line and exits non-zero.

use std::process::ExitCode;

use clap::Parser as _;
use claudemesh_broker::config::{Args, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("claudemesh-broker: {e}");
            return ExitCode::from(2);
        }
    };
    let filter =
        EnvFilter::try_from_env("CLAUDEMESH_BROKER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("claudemesh-broker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let db = claudemesh_broker::store::redact_url(&config.database_url);
        let broker = match claudemesh_broker::server::start(config).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("claudemesh-broker: cannot start ({db}): {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "claudemesh-broker listening on {} ({db}); Ctrl-C to stop",
            broker.ws_url()
        );
        wait_for_signal().await;
        broker.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

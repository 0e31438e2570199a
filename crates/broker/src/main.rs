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
    let health_check = args.health_check;
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("claudemesh-broker: {e}");
            return ExitCode::from(2);
        }
    };
    if health_check {
        return match ready(config.listen, config.tls_cert.is_some()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("claudemesh-broker: not ready: {e}");
                ExitCode::FAILURE
            }
        };
    }
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
        let db = claudemesh_broker::db_url::redact_url(&config.database_url);
        let broker = match claudemesh_broker::server::start(config).await {
            Ok(b) => b,
            Err(e @ claudemesh_broker::server::StartError::Tls(_)) => {
                // The message names the file; the database is beside the point.
                eprintln!("claudemesh-broker: cannot start: {e}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("claudemesh-broker: cannot start ({db}): {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "claudemesh-broker listening on {} ({db}); Ctrl-C to stop",
            broker.ws_url()
        );
        claudemesh_broker::server::wait_for_signal().await;
        broker.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// `GET /readyz` on the broker listening at `listen` (an unspecified address
/// is reached on loopback): Ok when it answers 200. With `tls`, over TLS
/// without checking the certificate: it asks its own port, it is no
/// certificate monitor (`claudemesh_broker::tls::health_check_client_config`).
fn ready(listen: std::net::SocketAddr, tls: bool) -> Result<(), String> {
    use std::time::Duration;
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let timeout = Duration::from_secs(5);
    let stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    for set in [
        std::net::TcpStream::set_read_timeout,
        std::net::TcpStream::set_write_timeout,
    ] {
        set(&stream, Some(timeout)).map_err(|e| e.to_string())?;
    }
    let answer = if tls {
        let config = claudemesh_broker::tls::health_check_client_config()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        ask_readyz(&mut rustls::StreamOwned::new(conn, stream), addr)?
    } else {
        let mut stream = stream;
        ask_readyz(&mut stream, addr)?
    };
    let status = answer.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("{addr} answered {status:?}"))
    }
}

/// Sends `GET /readyz` and reads the answer until the broker closes.
fn ask_readyz(
    stream: &mut (impl std::io::Read + std::io::Write),
    addr: std::net::SocketAddr,
) -> Result<String, String> {
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .and_then(|()| stream.flush())
    .map_err(|e| format!("cannot ask {addr}: {e}"))?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify: the answer is whole.
        Err(_) if !answer.is_empty() => {}
        Err(e) => return Err(format!("no answer from {addr}: {e}")),
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

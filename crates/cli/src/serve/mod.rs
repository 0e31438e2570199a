//! `claudemesh serve`: the local gateway, so scripts and people take part
//! over HTTP while the keys and the crypto stay on this device. It takes
//! the home's `serve.lock` (one gateway per home), binds its listener —
//! loopback TCP by default, a Unix socket with `--unix`, TLS with
//! `--tls-cert/--tls-key` (the broker's rustls setup), and refuses a
//! non-loopback address without TLS unless `--insecure-listen` — runs
//! [`claudemesh_gateway::Gateway`] on it, records each use of an API key
//! in the audit log, and drains on SIGTERM or Ctrl-C. `--install-service`
//! and `--uninstall-service` ([`service`]) manage a systemd user unit
//! (a launchd agent on macOS) that runs it.

pub mod service;
pub mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use claudemesh_gateway::host::AllowedHosts;
use claudemesh_gateway::lock::{GatewayLock, LockError};
use claudemesh_gateway::{Gateway, GatewayConfig, KeyUse, SessionSettings};

use crate::exit::{self, Failure, Outcome};
use crate::global::{Global, open_home};
use crate::policy::audit_log;
use crate::policy::{Request, Verb};
use crate::workdir;

/// The default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7901";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    /// `open` (sign a browser in to the web app) or `sessions`; none: run the gateway
    #[command(subcommand)]
    pub cmd: Option<web::ServeCmd>,
    /// Address to listen on (a non-loopback one needs --tls-cert/--tls-key or --insecure-listen)
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN, conflicts_with = "unix")]
    pub listen: SocketAddr,
    /// Listen on this Unix socket instead (mode 0600)
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// TLS certificate chain (PEM), with --tls-key
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "unix"
    )]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (API keys then cross the network in clear)
    #[arg(long)]
    pub insecure_listen: bool,
    /// The gateway's session name in each mesh, after your display name and @ [default: serve]
    #[arg(long, value_name = "NAME", default_value = "serve")]
    pub name: String,
    /// Also answer requests whose Host is this name (repeat; e.g. the name in the TLS certificate)
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// Let web pages from this origin call the API (repeat; none by default)
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// Requests per second each API key may make (bursts of twice that)
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub rate: u32,
    /// Write a systemd user unit (a launchd agent on macOS) that runs `serve` with these options, and start it
    #[arg(long, conflicts_with = "uninstall_service")]
    pub install_service: bool,
    /// Stop and remove the unit `--install-service` wrote
    #[arg(long)]
    pub uninstall_service: bool,
}

impl ServeArgs {
    /// What it asks the policy.
    pub fn request(&self) -> Request {
        if let Some(cmd) = &self.cmd {
            return cmd.request();
        }
        if self.install_service || self.uninstall_service {
            Request::new(Verb::ServeService, None, false)
        } else {
            Request::new(Verb::Serve, None, true)
        }
    }

    pub async fn run(self, g: &Global) -> Outcome {
        if let Some(cmd) = self.cmd {
            return cmd.run(g).await;
        }
        if self.install_service {
            return service::install(g, &self);
        }
        if self.uninstall_service {
            return service::uninstall(g);
        }
        serve(g, self).await
    }
}

/// Where the gateway listens, bound.
enum Bound {
    Tcp(tokio::net::TcpListener, SocketAddr),
    /// With the accept loop's task and its stop signal (the loop ends
    /// when the signal is given or dropped, so it is kept until then).
    Tls(
        claudemesh_broker::tls::TlsListener,
        SocketAddr,
        tokio::task::JoinHandle<()>,
        tokio::sync::watch::Sender<bool>,
    ),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener, PathBuf),
}

impl Bound {
    fn url(&self) -> String {
        match self {
            Bound::Tcp(_, a) => format!("http://{a}"),
            Bound::Tls(_, a, ..) => format!("https://{a}"),
            #[cfg(unix)]
            Bound::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }
}

async fn serve(g: &Global, a: ServeArgs) -> Outcome {
    let home = open_home(g)?;
    if home.meshes().is_empty() {
        return Err(Failure::new(
            exit::NOT_FOUND,
            "this device is in no mesh yet: nothing to serve",
        )
        .hint("create one (claudemesh mesh create) or join one (claudemesh join <invite-url>)"));
    }
    let tls = a.tls_cert.is_some();
    if a.unix.is_none() && !a.listen.ip().is_loopback() && !tls && !a.insecure_listen {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "{} is not a loopback address: API keys would cross the network in clear",
                a.listen
            ),
        )
        .hint(
            "give --tls-cert and --tls-key, or --insecure-listen if the network is yours alone",
        ));
    }
    let what = match &a.unix {
        Some(p) => format!("unix:{}", p.display()),
        None => a.listen.to_string(),
    };
    let mut lock = GatewayLock::acquire(home.root(), &what).map_err(|e| match e {
        LockError::Held { .. } => Failure::new(exit::EXISTS, e.to_string()).hint(
            "stop the other gateway first, or use it (one gateway serves every mesh of a home)",
        ),
        LockError::Io { .. } => Failure::new(exit::IO, e.to_string()),
    })?;
    let bound = bind(&a).await?;
    // The address bound (`--listen …:0` picks the port), for a second
    // `serve` to name.
    if let Err(e) = lock.listening(&bound.url()) {
        tracing::warn!("{e}");
    }
    let allowed_hosts = match &bound {
        Bound::Tcp(_, addr) | Bound::Tls(_, addr, ..) => {
            AllowedHosts::for_tcp(*addr, &a.allow_hosts)
        }
        #[cfg(unix)]
        Bound::Unix(..) => AllowedHosts::Any,
    };
    let root = home.root().to_path_buf();
    // Written off the request's thread: the log is a file under a lock.
    let audit: claudemesh_gateway::AuditHook = Arc::new(move |u: KeyUse| {
        let root = root.clone();
        tokio::task::spawn_blocking(move || record(&root, u));
    });
    let config = GatewayConfig {
        home: home.clone(),
        session: SessionSettings {
            name: a.name.trim().to_owned(),
            host: workdir::host_name(),
        },
        allowed_hosts,
        tls,
        cors_origins: a.cors_origins.clone(),
        rate: (a.rate.max(1), a.rate.max(1).saturating_mul(2)),
        audit: Some(audit),
    };
    let gateway = Gateway::start(config).await?;
    let url = bound.url();
    if g.json {
        // One line, printed once serving, so a script can wait for it.
        println!(
            "{}",
            serde_json::json!({
                "listening": url,
                "meshes": gateway.links().iter().map(|(m, _)| m).collect::<Vec<_>>(),
                "pid": std::process::id(),
            })
        );
    } else if !g.quiet {
        let meshes: Vec<String> = home.meshes().iter().map(|m| m.name.clone()).collect();
        eprintln!(
            "claudemesh gateway on {url} for {} {}; API reference at {url}/api-docs",
            if meshes.len() == 1 { "mesh" } else { "meshes" },
            meshes.join(", ")
        );
        eprintln!("Make a key for a script: claudemesh apikey create <label> --cap read,send");
        // The sign-in link only to a person at a terminal: under a service
        // manager stderr goes to a log, where a secret does not belong.
        if url.starts_with("http") && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            match gateway.signin_link().await {
                Ok(link) => eprintln!(
                    "The web app, signed in (this link works once, within {} minutes):\n  {}",
                    claudemesh_gateway::web::sessions::SIGNIN_TTL_MS / 60_000,
                    web::signin_url(&url, &link.token)
                ),
                Err(e) => tracing::warn!("no sign-in link: {e}"),
            }
        } else if url.starts_with("http") {
            eprintln!("The web app: run `claudemesh serve open` for a sign-in link.");
        }
    }
    let router = gateway.router();
    // The signal stops the gateway (its event streams end), then the
    // server finishes the requests in flight, then the sessions close.
    let served = serve_on(
        bound,
        router,
        gateway.stop_on(claudemesh_broker::server::wait_for_signal()),
    )
    .await;
    gateway.shutdown().await;
    drop(lock);
    served?;
    if !g.quiet && !g.json {
        eprintln!("claudemesh gateway stopped.");
    }
    Ok(())
}

async fn bind(a: &ServeArgs) -> Result<Bound, Failure> {
    #[cfg(unix)]
    if let Some(path) = &a.unix {
        use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
        let io = |what: &str, e: std::io::Error| {
            Failure::new(exit::IO, format!("cannot {what} {}: {e}", path.display()))
        };
        // The lock is ours: a socket file left by a gateway that died is
        // stale. Anything else there is not ours to replace.
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                std::fs::remove_file(path).map_err(|e| io("replace the stale socket", e))?
            }
            Ok(_) => {
                return Err(Failure::new(
                    exit::IO,
                    format!(
                        "cannot listen on {}: it exists and is not a socket",
                        path.display()
                    ),
                ));
            }
            Err(_) => {}
        }
        // Bound in a fresh 0700 directory beside it, made 0600, then moved
        // into place: no other user can connect in between, whatever the
        // umask.
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        };
        let private = tempfile::Builder::new()
            .prefix(".claudemesh-serve-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .map_err(|e| io("make a private directory beside", e))?;
        let staged = private.path().join("gateway.sock");
        let listener = tokio::net::UnixListener::bind(&staged).map_err(|e| io("listen on", e))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("make private", e))?;
        std::fs::rename(&staged, path).map_err(|e| io("put the socket at", e))?;
        return Ok(Bound::Unix(listener, path.clone()));
    }
    let listener = tokio::net::TcpListener::bind(a.listen).await.map_err(|e| {
        Failure::new(exit::IO, format!("cannot listen on {}: {e}", a.listen))
            .hint("another program uses that port: pick another with --listen")
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::new(exit::IO, format!("cannot read the bound address: {e}")))?;
    match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => {
            let config = claudemesh_broker::tls::server_config(cert, key)
                .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
            // Stopped once the server is done: the sender lives as long
            // as the listener (dropping it would end the accept loop now).
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let (listener, task) = claudemesh_broker::tls::spawn(listener, config, stopped)
                .map_err(|e| Failure::new(exit::IO, format!("cannot listen on {addr}: {e}")))?;
            Ok(Bound::Tls(listener, addr, task, stop))
        }
        _ => Ok(Bound::Tcp(listener, addr)),
    }
}

async fn serve_on(
    bound: Bound,
    router: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Failure> {
    let result = match bound {
        Bound::Tcp(listener, _) => {
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
        }
        Bound::Tls(listener, _, task, stop_accepting) => {
            let r = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await;
            stop_accepting.send_replace(true);
            task.abort();
            r
        }
        #[cfg(unix)]
        Bound::Unix(listener, path) => {
            let r = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await;
            let _ = std::fs::remove_file(path);
            r
        }
    };
    result.map_err(|e| Failure::new(exit::IO, format!("the gateway stopped serving: {e}")))
}

/// One use of an API key in the audit log (a failure to write it is
/// logged: the request was answered already).
fn record(home: &std::path::Path, u: KeyUse) {
    let key = match (&u.key, &u.label) {
        (Some(k), Some(l)) => format!("{k} ({l})"),
        (Some(k), None) => k.clone(),
        _ => String::new(),
    };
    let reason = format!("API key {key}: HTTP {}", u.status);
    let r = audit_log::Record {
        decision: u.decision,
        verb: &u.verb,
        target: u.key.as_deref(),
        mesh: u.mesh.as_deref(),
        mode: "apikey",
        reason: &reason,
    };
    if let Err(e) = audit_log::append(home, &r) {
        tracing::error!("{e}");
    }
}

impl From<claudemesh_gateway::StartError> for Failure {
    fn from(e: claudemesh_gateway::StartError) -> Self {
        match e {
            claudemesh_gateway::StartError::Local(e) => e.into(),
            e => Failure::new(exit::IO, e.to_string()),
        }
    }
}

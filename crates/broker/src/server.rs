//! Starting and stopping a broker: load the TLS certificate if one is
//! configured, open the store (migrations first), start the group-commit
//! writer and the retention sweeper, serve HTTP and `/ws` on one port
//! (HTTPS and `wss://` with TLS, see [`crate::tls`]), and on shutdown stop
//! accepting, commit what is pending, and close every connection with 1001.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::BrokerConfig;
use crate::hub::Hub;
pub use crate::state::{BrokerState, ConnectionGuard, ConnectionTracker};
use crate::store::{self, Store, StoreError};
use crate::writer::{self, WriteJob};

/// How often messages past their sender's deadline are expired.
const TTL_INTERVAL: Duration = Duration::from_secs(1);

/// How often retention runs.
const RETENTION_INTERVAL: Duration = Duration::from_secs(600);
/// How long shutdown waits for connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or migrated.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The TLS certificate or key cannot be served.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A broker serving in the background.
#[derive(Debug)]
pub struct RunningBroker {
    /// The address it listens on (useful with port 0).
    pub local_addr: SocketAddr,
    /// Shared state (tests and the demo read the store through it).
    pub state: Arc<BrokerState>,
    shutdown_tx: watch::Sender<bool>,
    flushed_tx: watch::Sender<bool>,
    server: JoinHandle<()>,
    /// The TLS accept loop, when serving TLS.
    acceptor: Option<JoinHandle<()>>,
    sweeper: JoinHandle<()>,
    marks_flusher: JoinHandle<()>,
    state_saver: JoinHandle<()>,
    replication: Option<crate::replication::ReplicationTasks>,
}

impl RunningBroker {
    /// The websocket URL (`ws://addr`, or `wss://addr` with TLS; the
    /// address, not the name the certificate is for).
    pub fn ws_url(&self) -> String {
        let scheme = if self.is_tls() { "wss" } else { "ws" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Whether it serves TLS (HTTPS and `wss://`).
    pub fn is_tls(&self) -> bool {
        self.acceptor.is_some()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.state.store
    }

    /// Stops accepting, stops reading frames, commits everything pending
    /// (answering `accepted`), closes every connection with 1001.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: no new connections, flushing pending writes");
        let _ = self.shutdown_tx.send(true);
        self.state.writer.flush().await;
        let _ = self.flushed_tx.send(true);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.state.connections.wait_zero()).await;
        // Anything a connection submitted while closing is committed too.
        self.state.writer.flush().await;
        if let Some(r) = self.replication {
            r.stop().await;
        }
        self.sweeper.abort();
        self.marks_flusher.abort();
        let marks = self.state.watermarks.take_dirty();
        if !marks.is_empty()
            && let Err(e) = self.state.store.write_watermarks(&marks).await
        {
            tracing::warn!(error = %e, "could not store watermarks at shutdown");
        }
        self.state_saver.abort();
        self.state
            .member_states
            .flush(self.state.store.as_ref())
            .await;
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.server).await;
        if let Some(acceptor) = self.acceptor {
            // It stopped at the shutdown signal; wait so the port is free.
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, acceptor).await;
        }
        tracing::info!("broker stopped");
    }
}

/// Loads the TLS certificate (if configured), opens the store, binds the
/// port, and starts serving.
pub async fn start(config: BrokerConfig) -> Result<RunningBroker, StartError> {
    // Before the store: a bad certificate should not cost a migration run.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        _ => None,
    };
    let store = store::open(&config.database_url, config.migration_lock_timeout).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let hub = Arc::new(Hub::new(store.clone()));
    let writers = config
        .writers
        .unwrap_or(if store.backend() == "postgres" { 4 } else { 1 });
    let writer = writer::spawn(store.clone(), hub.clone(), config.max_batch, writers);
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (flushed_tx, flushed) = watch::channel(false);
    let _ = crate::metrics::handle();
    let retention = config.retention;
    let state = Arc::new(BrokerState {
        config,
        store: store.clone(),
        hub,
        writer,
        shutdown: shutdown.clone(),
        flushed,
        connections: ConnectionTracker::default(),
        member_states: Arc::new(crate::state_saver::StateSaver::default()),
        pending: crate::admission::PendingByAddress::default(),
        watermarks: crate::watermarks::Watermarks::default(),
    });
    let state_saver = tokio::spawn(state.member_states.clone().run(store.clone()));
    // Before serving: other replicas must hear of this one's sessions.
    let replication = crate::replication::start(&state).await?;
    let app = crate::http::router(state.clone());
    let mut stop = shutdown.clone();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let (server, acceptor) =
        match tls {
            Some(tls) => {
                // The TCP accept loop and each handshake run in tasks of their
                // own; axum gets connections whose handshake is done.
                let (listener, acceptor) = crate::tls::spawn(listener, tls, shutdown.clone())
                    .map_err(|source| StartError::Bind {
                        addr: local_addr,
                        source,
                    })?;
                // A no-op tap: axum then gives handlers the peer address.
                let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
                (spawn_server(listener, app, stopped), Some(acceptor))
            }
            None => {
                // Frames are small and latency matters: without TCP_NODELAY an
                // `accepted` waits for the client's delayed ACK (up to ~40 ms).
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                });
                (spawn_server(listener, app, stopped), None)
            }
        };
    let sweeper = tokio::spawn(sweep(state.clone(), retention));
    let marks_flusher = tokio::spawn(flush_watermarks(state.clone()));
    tracing::info!(
        addr = %local_addr,
        tls = acceptor.is_some(),
        backend = state.store.backend(),
        broker_id = %state.config.broker_id,
        "broker listening"
    );
    Ok(RunningBroker {
        local_addr,
        state,
        shutdown_tx,
        flushed_tx,
        server,
        acceptor,
        sweeper,
        marks_flusher,
        state_saver,
        replication,
    })
}

/// Writes the watermarks held in memory to the store every
/// [`crate::watermarks::flush_every`], through the writer, as a trickle of
/// small transactions ([`crate::watermarks::FLUSH_CHUNK`] rows each, one
/// committed before the next is queued), so messages interleave with them.
/// Rows not yet taken when the broker stops are written by its shutdown.
async fn flush_watermarks(state: Arc<BrokerState>) {
    let mut tick = tokio::time::interval(crate::watermarks::flush_every(state.store.backend()));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            let rows = state
                .watermarks
                .take_dirty_upto(crate::watermarks::FLUSH_CHUNK);
            if rows.is_empty() {
                break;
            }
            if !state.writer.submit(WriteJob::Watermarks(rows)).await {
                return;
            }
            state.writer.flush().await;
        }
    }
}

/// Serves `app` on `listener` until `stopped` completes.
fn spawn_server<L>(
    listener: L,
    app: axum::Router,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    for<'a> SocketAddr: axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    tokio::spawn(async move {
        // Handlers see the peer's address (`ConnectInfo`): the per-address
        // cap and "is this client local" need it.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(stopped);
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "server stopped with an error");
        }
    })
}

/// Every second: held messages whose time came are fired
/// ([`crate::scheduled`]) and messages past their TTL expire; every ten
/// minutes, retention.
async fn sweep(state: Arc<BrokerState>, retention: Duration) {
    let store = state.store.clone();
    let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(TTL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retention: Option<std::time::Instant> = None;
    let mut in_flight = crate::scheduled::InFlight::new();
    loop {
        tick.tick().await;
        let now = crate::now_ms();
        let fired = crate::scheduled::fire_due(&state, now, &mut in_flight).await;
        if fired > 0 {
            tracing::debug!(fired, "held messages fired");
        }
        // Messages sent with a TTL expire within a second of their deadline.
        match store.expire_due(now).await {
            Ok(n) if n > 0 => tracing::debug!(expired = n, "deadline sweep"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "deadline sweep failed"),
        }
        if last_retention.is_some_and(|t| t.elapsed() < RETENTION_INTERVAL) {
            continue;
        }
        last_retention = Some(std::time::Instant::now());
        match store
            .sweep_retention(now, now.saturating_sub(retention_ms))
            .await
        {
            Ok(r) if r.expired > 0 || r.purged > 0 => {
                tracing::info!(expired = r.expired, purged = r.purged, "retention sweep")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
    }
}

/// SIGTERM (a service manager stopping the process) or Ctrl-C: what the
/// broker and the gateway (`claudemesh serve`) both drain on.
pub async fn wait_for_signal() {
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

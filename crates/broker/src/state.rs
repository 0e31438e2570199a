//! What every connection, handler and background task of a broker shares
//! ([`BrokerState`]): its configuration, store, loaded meshes, writer and
//! shutdown signals, and the count of live connections shutdown waits for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

use crate::config::BrokerConfig;
use crate::hub::Hub;
use crate::store::Store;
use crate::writer::WriterHandle;

/// Counts live connections so shutdown can wait for them.
#[derive(Debug, Default)]
pub struct ConnectionTracker {
    count: AtomicUsize,
    zero: Notify,
}

/// Held by a connection while it lives.
#[derive(Debug)]
pub struct ConnectionGuard<'a>(&'a ConnectionTracker);

impl ConnectionTracker {
    /// Counts one connection until the guard drops.
    pub fn enter(&self) -> ConnectionGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard(self)
    }

    /// Open connections.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Completes once no connection is open.
    pub async fn wait_zero(&self) {
        loop {
            let notified = self.zero.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

/// Everything a connection needs, shared.
#[derive(Debug)]
pub struct BrokerState {
    /// The configuration it started with.
    pub config: BrokerConfig,
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Loaded meshes and connected sessions.
    pub hub: Arc<Hub>,
    /// The group-commit writer.
    pub writer: WriterHandle,
    /// Becomes true when shutdown begins.
    pub shutdown: watch::Receiver<bool>,
    /// Becomes true once everything pending at shutdown is committed.
    pub flushed: watch::Receiver<bool>,
    /// Live connections.
    pub connections: ConnectionTracker,
    /// Members' last presence, written by one worker.
    pub member_states: Arc<crate::state_saver::StateSaver>,
    /// Connections per address that have not said hello yet.
    pub pending: crate::admission::PendingByAddress,
    /// Fan-out watermarks held in memory, flushed to the store in batches.
    pub watermarks: crate::watermarks::Watermarks,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.backend())
    }
}

//! What a run counts as it goes ([`Tally`], shared by its tasks) and what
//! a client path hands back when it is done ([`Outcome`]), and the open-loop
//! schedule ([`due_ns`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::stats::Samples;
use crate::target::Measured;

/// What both paths hand back.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) attempted: u64,
    pub(super) accepted: u64,
    pub(super) delivered: u64,
    pub(super) duplicates: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    pub(super) deliver: Samples,
    pub(super) accept: Samples,
    /// ns since the run's base: first send, last `accepted`, last delivery.
    pub(super) elapsed_accept_s: f64,
    pub(super) elapsed_deliver_s: f64,
    pub(super) max_lag_ms: f64,
    pub(super) setup: Duration,
    pub(super) measured: Measured,
    pub(super) notes: Vec<String>,
}

/// Counters shared by a run's tasks.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) base: Instant,
    pub(crate) stop: AtomicBool,
    pub(crate) attempted: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) first_error: Mutex<Option<String>>,
    pub(crate) first_send_ns: AtomicU64,
    pub(crate) last_accept_ns: AtomicU64,
    pub(crate) last_deliver_ns: AtomicU64,
    pub(crate) max_lag_ns: AtomicU64,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Tally {
            base: Instant::now(),
            stop: AtomicBool::new(false),
            attempted: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            first_send_ns: AtomicU64::new(u64::MAX),
            last_accept_ns: AtomicU64::new(0),
            last_deliver_ns: AtomicU64::new(0),
            max_lag_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn error(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }

    pub(super) fn sent(&self, at_ns: u64) {
        self.attempted.fetch_add(1, Ordering::Relaxed);
        self.first_send_ns.fetch_min(at_ns, Ordering::Relaxed);
    }

    pub(super) fn accepted(&self, at_ns: u64) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.last_accept_ns.fetch_max(at_ns, Ordering::Relaxed);
    }

    pub(crate) fn delivered(&self, at_ns: u64) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_deliver_ns.fetch_max(at_ns, Ordering::Relaxed);
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sets `stop` after `limit`.
    pub(crate) fn stop_after(self: &Arc<Self>, limit: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            me.stop.store(true, Ordering::Relaxed);
        })
    }

    /// Waits until every accepted message was delivered, or `limit`.
    pub(super) async fn wait_deliveries(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while self.delivered.load(Ordering::Relaxed) < self.accepted.load(Ordering::Relaxed)
            && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub(super) fn into_outcome(self: Arc<Self>) -> Outcome {
        let first = self.first_send_ns.load(Ordering::Relaxed);
        let secs = |last: u64| {
            if first == u64::MAX || last < first {
                0.0
            } else {
                (last - first) as f64 / 1e9
            }
        };
        Outcome {
            attempted: self.attempted.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            first_error: self
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            elapsed_accept_s: secs(self.last_accept_ns.load(Ordering::Relaxed)),
            elapsed_deliver_s: secs(self.last_deliver_ns.load(Ordering::Relaxed)),
            max_lag_ms: self.max_lag_ns.load(Ordering::Relaxed) as f64 / 1e6,
            ..Outcome::default()
        }
    }
}

/// When message `j` of sender `s` is due, open loop: all senders together
/// send at `rate`, interleaved.
pub(crate) fn due_ns(j: u64, s: u64, senders: u64, rate: f64) -> u64 {
    (((j * senders + s) as f64 / rate) * 1e9) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_schedule_interleaves_senders() {
        // 4 senders at 1000/s: together one message per millisecond.
        let at = |j, s| due_ns(j, s, 4, 1000.0);
        assert_eq!(at(0, 0), 0);
        assert_eq!(at(0, 1), 1_000_000);
        assert_eq!(at(0, 3), 3_000_000);
        assert_eq!(at(1, 0), 4_000_000);
    }
}

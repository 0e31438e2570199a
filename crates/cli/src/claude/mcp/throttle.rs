//! When channel pushes may flow: not before the MCP client finished
//! initializing, and at most [`LIMIT`] messages per [`WINDOW`]; the rest
//! are held (they wait in the inbox) and counted for one notice at the
//! window's end.

use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

/// At most this many messages are pushed per [`WINDOW`].
pub const LIMIT: u32 = 8;
/// The rate limit's window.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Window {
    start: Instant,
    sent: u32,
    held: u32,
}

/// What to do with one arrived message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Push it now.
    Push,
    /// Hold it back; for the first one held in this window, when the window
    /// ends (the moment for the notice about everything held).
    Hold { first_until: Option<Instant> },
}

/// The readiness flag and the rate limit of channel pushes.
#[derive(Debug)]
pub struct Throttle {
    ready: watch::Sender<bool>,
    window: Mutex<Window>,
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle {
            ready: watch::channel(false).0,
            window: Mutex::new(Window {
                start: Instant::now(),
                sent: 0,
                held: 0,
            }),
        }
    }

    /// The client finished initializing: notifications may flow.
    pub fn ready(&self) {
        self.ready.send_replace(true);
    }

    /// Waits until the client is initialized.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Counts one arrived message against the window.
    pub async fn admit(&self) -> Admission {
        let mut w = self.window.lock().await;
        if w.start.elapsed() >= WINDOW {
            w.start = Instant::now();
            w.sent = 0;
        }
        if w.sent < LIMIT {
            w.sent += 1;
            Admission::Push
        } else {
            w.held += 1;
            Admission::Hold {
                first_until: (w.held == 1).then_some(w.start + WINDOW),
            }
        }
    }

    /// How many were held since the last notice (and none from now on).
    pub async fn take_held(&self) -> u32 {
        std::mem::take(&mut self.window.lock().await.held)
    }
}

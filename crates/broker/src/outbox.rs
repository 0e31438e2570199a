//! A connection's way out: the frames waiting for its socket task, bounded
//! by **bytes** (a frame count says nothing when one answer can be 100 KiB),
//! a separate, coalescing slot for presence (the latest frame per peer,
//! never counted against the budget and never a reason to cut a reader off),
//! and the connection's kill switch.
//!
//! Two ways to queue a frame: [`Outbox::push`] never waits (live pushes and
//! answers: a full budget means the peer does not read, and the connection
//! is killed as a slow consumer), [`Outbox::push_wait`] waits for room
//! (drains of stored messages: backpressure instead of a disconnect). A
//! close never waits for room. The socket task ([`OutboxReader`]) returns
//! each frame's bytes to the budget once it is written, and closes the
//! budget when it ends, so nothing waits on a dead connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use claudemesh_crypto::PublicKey;
use claudemesh_proto::{ErrorCode, close};
use tokio::sync::{Notify, Semaphore, mpsc};

/// What the socket task takes from the queue.
#[derive(Debug)]
pub enum Outgoing {
    /// One text frame, and the budget it holds until written.
    Text(Utf8Bytes, u32),
    /// Close the websocket with this code and reason.
    Close(u16, &'static str),
}

/// Whose presence a coalesced frame describes: a session, or a member with
/// no session (an offline entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceKey {
    /// One session of a peer.
    Session(PublicKey),
    /// A member as a whole.
    Member(PublicKey),
}

#[derive(Debug)]
struct Shared {
    tx: mpsc::UnboundedSender<Outgoing>,
    budget: Semaphore,
    max_bytes: usize,
    presence: Mutex<HashMap<PresenceKey, Utf8Bytes>>,
    presence_ready: Notify,
    killed: AtomicBool,
    kill_reason: Mutex<Option<(u16, &'static str)>>,
    kill_signal: Notify,
}

/// The sending side, shared by the connection and its session handle.
#[derive(Debug, Clone)]
pub struct Outbox(Arc<Shared>);

/// The socket task's side.
#[derive(Debug)]
pub struct OutboxReader {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The budget is spent: the peer does not read (the connection is killed).
    Full,
    /// The connection is ending.
    Closed,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Outbox {
    /// A queue of at most `max_bytes` of frames.
    pub fn new(max_bytes: usize) -> (Outbox, OutboxReader) {
        let max_bytes = max_bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            tx,
            budget: Semaphore::new(max_bytes),
            max_bytes,
            presence: Mutex::new(HashMap::new()),
            presence_ready: Notify::new(),
            killed: AtomicBool::new(false),
            kill_reason: Mutex::new(None),
            kill_signal: Notify::new(),
        });
        (Outbox(shared.clone()), OutboxReader { rx, shared })
    }

    /// A frame's cost: its bytes, capped at the whole budget so even the
    /// largest frame can be queued into an empty queue.
    fn permits(&self, frame: &Utf8Bytes) -> u32 {
        u32::try_from(frame.len().clamp(1, self.0.max_bytes)).unwrap_or(u32::MAX)
    }

    /// Queues a frame without waiting. A spent budget means the peer reads
    /// too slowly: the connection is killed (4003) and the frame dropped
    /// (stored messages stay stored and are delivered when it comes back).
    pub fn push(&self, frame: Utf8Bytes) -> Result<(), PushError> {
        if self.is_killed() {
            return Err(PushError::Closed);
        }
        let n = self.permits(&frame);
        match self.0.budget.try_acquire_many(n) {
            Ok(permit) => permit.forget(),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                metrics::counter!(crate::metrics::SLOW_CONSUMERS).increment(1);
                tracing::warn!("slow consumer: outbound queue full, closing");
                self.kill(close::SLOW_CONSUMER, ErrorCode::SlowConsumer.as_str());
                return Err(PushError::Full);
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(PushError::Closed),
        }
        self.0
            .tx
            .send(Outgoing::Text(frame, n))
            .map_err(|_| PushError::Closed)
    }

    /// Queues a frame, waiting for room. False if the connection ended.
    pub async fn push_wait(&self, frame: Utf8Bytes) -> bool {
        if self.is_killed() {
            return false;
        }
        let n = self.permits(&frame);
        match self.0.budget.acquire_many(n).await {
            Ok(permit) => permit.forget(),
            Err(_closed) => return false,
        }
        self.0.tx.send(Outgoing::Text(frame, n)).is_ok()
    }

    /// Queues the close frame, after everything already queued. Never waits.
    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.0.tx.send(Outgoing::Close(code, reason));
    }

    /// Sets the latest presence frame about `key`, replacing one not yet
    /// written. Presence is never counted against the budget: at most one
    /// frame per peer waits, whatever the peers do.
    pub fn set_presence(&self, key: PresenceKey, frame: Utf8Bytes) {
        if self.is_killed() {
            return;
        }
        lock(&self.0.presence).insert(key, frame);
        self.0.presence_ready.notify_one();
    }

    /// Completes when presence frames are waiting (for the socket task).
    pub async fn presence_ready(&self) {
        self.0.presence_ready.notified().await;
    }

    /// Takes the waiting presence frames (for the socket task).
    pub fn take_presence(&self) -> Vec<Utf8Bytes> {
        lock(&self.0.presence).drain().map(|(_, f)| f).collect()
    }

    /// Ends the connection with `code` after the frames already queued.
    pub fn kill(&self, code: u16, reason: &'static str) {
        if self.0.killed.swap(true, Ordering::SeqCst) {
            return;
        }
        *lock(&self.0.kill_reason) = Some((code, reason));
        self.0.kill_signal.notify_waiters();
        self.0.kill_signal.notify_one();
    }

    /// Whether [`Outbox::kill`] was called.
    pub fn is_killed(&self) -> bool {
        self.0.killed.load(Ordering::SeqCst)
    }

    /// The close code and reason given to [`Outbox::kill`].
    pub fn kill_reason(&self) -> Option<(u16, &'static str)> {
        *lock(&self.0.kill_reason)
    }

    /// Completes once [`Outbox::kill`] has been called.
    pub async fn killed(&self) {
        loop {
            let notified = self.0.kill_signal.notified();
            if self.is_killed() {
                return;
            }
            notified.await;
        }
    }
}

impl OutboxReader {
    /// The next queued frame (`None` once every sender is gone).
    pub async fn recv(&mut self) -> Option<Outgoing> {
        self.rx.recv().await
    }

    /// A queued frame, if one is ready now.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        self.rx.try_recv().ok()
    }

    /// Gives a written frame's bytes back to the budget.
    pub fn written(&self, permits: u32) {
        self.shared.budget.add_permits(permits as usize);
    }

    /// A view of the sending side (for the kill switch).
    pub fn outbox(&self) -> Outbox {
        Outbox(self.shared.clone())
    }
}

impl Drop for OutboxReader {
    fn drop(&mut self) {
        // Whoever waits for room (a drain) stops waiting: nothing will be
        // written any more.
        self.shared.budget.close();
        self.shared.killed.store(true, Ordering::SeqCst);
        lock(&self.shared.presence).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Utf8Bytes {
        Utf8Bytes::from("x".repeat(n))
    }

    #[tokio::test]
    async fn the_budget_is_bytes_and_a_full_queue_kills() {
        let (out, mut reader) = Outbox::new(1000);
        out.push(frame(600)).unwrap();
        out.push(frame(400)).unwrap();
        assert_eq!(out.push(frame(1)), Err(PushError::Full));
        assert!(out.is_killed());
        assert_eq!(
            out.kill_reason(),
            Some((close::SLOW_CONSUMER, "slow_consumer"))
        );
        // Written frames give their bytes back.
        let Some(Outgoing::Text(t, n)) = reader.recv().await else {
            panic!("a frame")
        };
        assert_eq!((t.len(), n), (600, 600));
        reader.written(n);
        // A killed queue takes nothing more.
        assert_eq!(out.push(frame(1)), Err(PushError::Closed));
    }

    #[tokio::test]
    async fn push_wait_waits_for_room_and_stops_when_the_reader_goes() {
        let (out, mut reader) = Outbox::new(100);
        assert!(out.push_wait(frame(100)).await);
        let waiting = tokio::spawn({
            let out = out.clone();
            async move { out.push_wait(frame(50)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let Some(Outgoing::Text(_, n)) = reader.recv().await else {
            panic!("a frame")
        };
        reader.written(n);
        assert!(waiting.await.unwrap());
        // With the reader gone, a waiting drain is released with false.
        let blocked = tokio::spawn({
            let out = out.clone();
            async move { out.push_wait(frame(100)).await }
        });
        tokio::task::yield_now().await;
        drop(reader);
        assert!(!blocked.await.unwrap());
    }

    #[tokio::test]
    async fn an_oversized_frame_fits_an_empty_queue_and_close_never_waits() {
        let (out, mut reader) = Outbox::new(10);
        out.push(frame(50)).unwrap();
        out.close(1000, "bye");
        assert!(matches!(reader.recv().await, Some(Outgoing::Text(_, 10))));
        assert!(matches!(
            reader.recv().await,
            Some(Outgoing::Close(1000, "bye"))
        ));
    }

    #[tokio::test]
    async fn presence_keeps_the_latest_frame_per_peer_outside_the_budget() {
        let (out, _reader) = Outbox::new(10);
        let a = PresenceKey::Session(claudemesh_crypto::SigningKey::generate().public());
        let b = PresenceKey::Member(claudemesh_crypto::SigningKey::generate().public());
        for i in 0..1000 {
            out.set_presence(a, Utf8Bytes::from(format!("a{i}")));
        }
        out.set_presence(b, frame(100));
        assert!(!out.is_killed());
        out.presence_ready().await;
        let mut got: Vec<String> = out
            .take_presence()
            .iter()
            .map(|f| f.as_str().chars().take(4).collect())
            .collect();
        got.sort();
        assert_eq!(got, vec!["a999".to_owned(), "xxxx".to_owned()]);
        assert!(out.take_presence().is_empty());
    }
}

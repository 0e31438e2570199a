//! A connection's way out: the frames waiting for its socket task, bounded
//! by **bytes** (a frame count says nothing when one answer can be 100 KiB)
//! in two lanes that never starve each other — stored messages (live pushes
//! and drains) and answers to the peer's own requests — a coalescing slot
//! for presence (the latest frame per peer, bounded by bytes too), the
//! connection's kill switch, and its "behind" signal.
//!
//! Three ways to queue a frame:
//! - [`Outbox::push`] never waits (answers to the peer's own requests): a
//!   spent budget means the peer does not read its answers, and the
//!   connection is killed as a slow consumer;
//! - [`Outbox::push_live`] never waits either (live pushes of stored
//!   messages): a spent budget only marks the session **behind** — live
//!   pushes stop and a drain of the stored messages takes over, at the
//!   reader's pace, so a burst of traffic never cuts off a reader that is
//!   merely slower than it;
//! - [`Outbox::push_wait`] waits for room (drains: backpressure).
//!
//! A close never waits for room. The socket task ([`OutboxReader`]) returns
//! each frame's bytes to the budget once it is written, reports frames that
//! waited too long (a reader that does not keep up at all), and closes the
//! budget when it ends, so nothing waits on a dead connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use claudemesh_crypto::PublicKey;
use claudemesh_proto::{ErrorCode, close};
use tokio::sync::{Notify, Semaphore, mpsc};

/// A frame that waited longer than this in the queue means a reader that
/// does not keep up at all (below ~35 KB/s with a full 4 MiB queue): the
/// connection is cut off as a slow consumer.
pub const MAX_QUEUE_AGE: Duration = Duration::from_secs(120);

/// Bytes of answers (to the peer's own requests) queued for a connection
/// before it counts as a slow consumer: a lane of their own, so an answer
/// never waits behind (or is refused for) a drain that filled the other.
pub const MAX_QUEUED_ANSWER_BYTES: usize = 2 * 1024 * 1024;
/// Bytes of unwritten presence one connection may hold.
pub const MAX_PRESENCE_BYTES: usize = 1024 * 1024;

/// Which budget a queued frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Stored messages: live pushes and drains.
    Messages,
    /// Answers to the peer's requests (and notices such as `log_update`).
    Answers,
}

/// What the socket task takes from the queue.
#[derive(Debug)]
pub enum Outgoing {
    /// One text frame, the lane and budget it holds until written, and when
    /// it was queued.
    Text(Utf8Bytes, Lane, u32, Instant),
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
    /// A hint that coordination objects of one kind changed
    /// (`coord_changed`): it carries no state, so the latest one waiting
    /// stands for all, and a burst of writes costs a reader one frame.
    Coord(claudemesh_crypto::coord::CoordKind),
}

#[derive(Debug)]
struct Shared {
    tx: mpsc::UnboundedSender<Outgoing>,
    budget: Semaphore,
    max_bytes: usize,
    answers: Semaphore,
    max_answer_bytes: usize,
    presence: Mutex<HashMap<PresenceKey, Utf8Bytes>>,
    max_presence_bytes: usize,
    presence_bytes: AtomicUsize,
    presence_ready: Notify,
    killed: AtomicBool,
    kill_reason: Mutex<Option<(u16, &'static str)>>,
    kill_signal: Notify,
    behind: AtomicBool,
    behind_signal: Notify,
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
    /// The budget is spent (see each push for what follows).
    Full,
    /// The connection is ending.
    Closed,
}

use claudemesh_proto::sync::lock;

impl Outbox {
    /// A queue of at most `max_bytes` of stored messages, the answer lane
    /// and presence budget of [`MAX_QUEUED_ANSWER_BYTES`] and
    /// [`MAX_PRESENCE_BYTES`].
    pub fn new(max_bytes: usize) -> (Outbox, OutboxReader) {
        Self::with_lanes(max_bytes, MAX_QUEUED_ANSWER_BYTES, MAX_PRESENCE_BYTES)
    }

    /// A queue with the given budgets, in bytes.
    pub fn with_lanes(
        max_bytes: usize,
        max_answer_bytes: usize,
        max_presence_bytes: usize,
    ) -> (Outbox, OutboxReader) {
        let cap = |n: usize| n.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let (max_bytes, max_answer_bytes) = (cap(max_bytes), cap(max_answer_bytes));
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            tx,
            budget: Semaphore::new(max_bytes),
            max_bytes,
            answers: Semaphore::new(max_answer_bytes),
            max_answer_bytes,
            presence: Mutex::new(HashMap::new()),
            max_presence_bytes,
            presence_bytes: AtomicUsize::new(0),
            presence_ready: Notify::new(),
            killed: AtomicBool::new(false),
            kill_reason: Mutex::new(None),
            kill_signal: Notify::new(),
            behind: AtomicBool::new(false),
            behind_signal: Notify::new(),
        });
        (Outbox(shared.clone()), OutboxReader { rx, shared })
    }

    fn semaphore(&self, lane: Lane) -> (&Semaphore, usize) {
        match lane {
            Lane::Messages => (&self.0.budget, self.0.max_bytes),
            Lane::Answers => (&self.0.answers, self.0.max_answer_bytes),
        }
    }

    /// A frame's cost in `lane`: its bytes, capped at the lane's whole
    /// budget so even the largest frame can be queued into an empty lane.
    fn permits(&self, lane: Lane, frame: &Utf8Bytes) -> u32 {
        let max = self.semaphore(lane).1;
        u32::try_from(frame.len().clamp(1, max)).unwrap_or(u32::MAX)
    }

    /// Takes budget in `lane` for `frame` without waiting.
    fn try_take(&self, lane: Lane, frame: &Utf8Bytes) -> Result<u32, PushError> {
        if self.is_killed() {
            return Err(PushError::Closed);
        }
        let n = self.permits(lane, frame);
        match self.semaphore(lane).0.try_acquire_many(n) {
            Ok(permit) => {
                permit.forget();
                Ok(n)
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => Err(PushError::Full),
            Err(tokio::sync::TryAcquireError::Closed) => Err(PushError::Closed),
        }
    }

    fn send(&self, frame: Utf8Bytes, lane: Lane, permits: u32) -> Result<(), PushError> {
        self.0
            .tx
            .send(Outgoing::Text(frame, lane, permits, Instant::now()))
            .map_err(|_| PushError::Closed)
    }

    /// Queues an answer without waiting. A spent budget means the peer does
    /// not read its own answers: the connection is killed (4003) and the
    /// frame dropped.
    pub fn push(&self, frame: Utf8Bytes) -> Result<(), PushError> {
        match self.try_take(Lane::Answers, &frame) {
            Ok(n) => self.send(frame, Lane::Answers, n),
            Err(PushError::Full) => {
                self.slow_consumer("outbound queue full");
                Err(PushError::Full)
            }
            Err(e) => Err(e),
        }
    }

    /// Queues a live push of a stored message without waiting. A spent
    /// budget does not cut the reader off: it marks the session behind
    /// (live pushes stop, a drain catches up) and drops the frame, which
    /// stays stored.
    pub fn push_live(&self, frame: Utf8Bytes) -> Result<(), PushError> {
        match self.try_take(Lane::Messages, &frame) {
            Ok(n) => self.send(frame, Lane::Messages, n),
            Err(PushError::Full) => {
                if !self.0.behind.swap(true, Ordering::SeqCst) {
                    self.0.behind_signal.notify_one();
                }
                Err(PushError::Full)
            }
            Err(e) => Err(e),
        }
    }

    /// Queues a frame, waiting for room. False if the connection ended.
    pub async fn push_wait(&self, frame: Utf8Bytes) -> bool {
        if self.is_killed() {
            return false;
        }
        let n = self.permits(Lane::Messages, &frame);
        match self.0.budget.acquire_many(n).await {
            Ok(permit) => permit.forget(),
            Err(_closed) => return false,
        }
        self.send(frame, Lane::Messages, n).is_ok()
    }

    /// Whether live pushes overflowed and a drain must catch up.
    pub fn is_behind(&self) -> bool {
        self.0.behind.load(Ordering::SeqCst)
    }

    /// Completes when the session falls behind (a live push overflowed).
    pub async fn fell_behind(&self) {
        loop {
            let notified = self.0.behind_signal.notified();
            if self.is_behind() {
                return;
            }
            notified.await;
        }
    }

    /// A drain that started after the session fell behind clears it (live
    /// pushes resume once that drain has caught up).
    pub fn caught_up(&self) {
        self.0.behind.store(false, Ordering::SeqCst);
    }

    /// Queues the close frame, after everything already queued. Never waits.
    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.0.tx.send(Outgoing::Close(code, reason));
    }

    /// Sets the latest presence frame about `key`, replacing one not yet
    /// written. Presence is not counted against the frame lanes — at most
    /// one frame per peer waits — but it has a budget of its own: a
    /// connection whose unwritten presence outgrows it (a reader that does
    /// not read while peers come and go) is a slow consumer.
    pub fn set_presence(&self, key: PresenceKey, frame: Utf8Bytes) {
        if self.is_killed() {
            return;
        }
        let over = {
            let mut map = lock(&self.0.presence);
            let added = frame.len();
            let removed = map.insert(key, frame).map_or(0, |old| old.len());
            let total =
                (self.0.presence_bytes.load(Ordering::SeqCst) + added).saturating_sub(removed);
            self.0.presence_bytes.store(total, Ordering::SeqCst);
            total > self.0.max_presence_bytes
        };
        if over {
            self.slow_consumer("unwritten presence over its budget");
            return;
        }
        self.0.presence_ready.notify_one();
    }

    /// Completes when presence frames are waiting (for the socket task).
    pub async fn presence_ready(&self) {
        self.0.presence_ready.notified().await;
    }

    /// Takes the waiting presence frames (for the socket task).
    pub fn take_presence(&self) -> Vec<Utf8Bytes> {
        let mut map = lock(&self.0.presence);
        self.0.presence_bytes.store(0, Ordering::SeqCst);
        map.drain().map(|(_, f)| f).collect()
    }

    fn slow_consumer(&self, why: &'static str) {
        metrics::counter!(crate::metrics::SLOW_CONSUMERS).increment(1);
        tracing::warn!(why, "slow consumer: closing");
        self.kill(close::SLOW_CONSUMER, ErrorCode::SlowConsumer.as_str());
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

    /// Gives a written (or dropped) frame's bytes back to its lane.
    pub fn written(&self, lane: Lane, permits: u32) {
        self.outbox()
            .semaphore(lane)
            .0
            .add_permits(permits as usize);
    }

    /// Notes a frame taken from the queue after `waited`: one that waited
    /// longer than [`MAX_QUEUE_AGE`] cuts the connection off as a slow
    /// consumer. Returns whether the connection may go on.
    pub fn check_age(&self, waited: Duration) -> bool {
        if waited > MAX_QUEUE_AGE {
            self.outbox()
                .slow_consumer("a frame waited too long in the queue");
            return false;
        }
        true
    }

    /// A view of the sending side (for the kill switch and presence).
    pub fn outbox(&self) -> Outbox {
        Outbox(self.shared.clone())
    }
}

impl Drop for OutboxReader {
    fn drop(&mut self) {
        // Whoever waits for room (a drain) stops waiting, and the
        // connection's reading side learns it is over (a write that timed
        // out ends the socket task first).
        self.shared.budget.close();
        self.shared.answers.close();
        lock(&self.shared.presence).clear();
        if !self.shared.killed.swap(true, Ordering::SeqCst) {
            *lock(&self.shared.kill_reason) = Some((close::NORMAL, "write_failed"));
        }
        self.shared.kill_signal.notify_waiters();
        self.shared.kill_signal.notify_one();
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
        let (out, mut reader) = Outbox::with_lanes(10, 1000, 10);
        out.push(frame(600)).unwrap();
        out.push(frame(400)).unwrap();
        assert_eq!(out.push(frame(1)), Err(PushError::Full));
        assert!(out.is_killed());
        assert_eq!(
            out.kill_reason(),
            Some((close::SLOW_CONSUMER, "slow_consumer"))
        );
        // Written frames give their bytes back.
        let Some(Outgoing::Text(t, lane, n, _)) = reader.recv().await else {
            panic!("a frame")
        };
        assert_eq!((t.len(), lane, n), (600, Lane::Answers, 600));
        reader.written(lane, n);
        // A killed queue takes nothing more.
        assert_eq!(out.push(frame(1)), Err(PushError::Closed));
    }

    #[tokio::test]
    async fn a_full_budget_makes_a_live_push_fall_behind_not_die() {
        let (out, mut reader) = Outbox::with_lanes(1000, 100, 100);
        out.push_live(frame(1000)).unwrap();
        assert_eq!(out.push_live(frame(10)), Err(PushError::Full));
        assert!(!out.is_killed());
        assert!(out.is_behind());
        out.fell_behind().await;
        // An answer still has its own lane while messages fill theirs.
        out.push(frame(50)).unwrap();
        // The reader takes the first; a drain catches up and clears it.
        let Some(Outgoing::Text(_, lane, n, _)) = reader.recv().await else {
            panic!("a frame")
        };
        reader.written(lane, n);
        out.caught_up();
        assert!(!out.is_behind());
        out.push_live(frame(10)).unwrap();
    }

    #[tokio::test]
    async fn push_wait_waits_for_room_and_stops_when_the_reader_goes() {
        let (out, mut reader) = Outbox::with_lanes(100, 100, 100);
        assert!(out.push_wait(frame(100)).await);
        let waiting = tokio::spawn({
            let out = out.clone();
            async move { out.push_wait(frame(50)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let Some(Outgoing::Text(_, lane, n, _)) = reader.recv().await else {
            panic!("a frame")
        };
        reader.written(lane, n);
        assert!(waiting.await.unwrap());
        let blocked = tokio::spawn({
            let out = out.clone();
            async move { out.push_wait(frame(100)).await }
        });
        tokio::task::yield_now().await;
        drop(reader);
        assert!(!blocked.await.unwrap());
        // The reading side learns the connection is over.
        out.killed().await;
    }

    #[tokio::test]
    async fn an_oversized_frame_fits_an_empty_queue_and_close_never_waits() {
        let (out, mut reader) = Outbox::with_lanes(10, 10, 10);
        out.push(frame(50)).unwrap();
        out.close(1000, "bye");
        assert!(matches!(
            reader.recv().await,
            Some(Outgoing::Text(_, Lane::Answers, 10, _))
        ));
        assert!(matches!(
            reader.recv().await,
            Some(Outgoing::Close(1000, "bye"))
        ));
    }

    #[tokio::test]
    async fn presence_keeps_the_latest_frame_per_peer_within_its_own_budget() {
        let (out, _reader) = Outbox::with_lanes(10, 10, 1000);
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
        // Many peers' presence never written: over its budget, cut off.
        for _ in 0..20 {
            let k = PresenceKey::Session(claudemesh_crypto::SigningKey::generate().public());
            out.set_presence(k, frame(100));
        }
        assert!(out.is_killed());
    }

    #[test]
    fn a_frame_that_waited_too_long_cuts_the_reader_off() {
        let (out, reader) = Outbox::new(10);
        assert!(reader.check_age(Duration::from_secs(1)));
        assert!(!out.is_killed());
        assert!(!reader.check_age(MAX_QUEUE_AGE + Duration::from_secs(1)));
        assert_eq!(
            out.kill_reason(),
            Some((close::SLOW_CONSUMER, "slow_consumer"))
        );
    }
}

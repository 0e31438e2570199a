//! The group-commit writer: one task that takes messages and acks from every
//! connection, commits whatever has accumulated in one transaction, and only
//! then answers `accepted` and pushes the messages to connected recipients.
//!
//! Batching is natural rather than timed: while one commit is in flight the
//! next jobs queue up, so an idle broker commits each message at once (lowest
//! latency) and a busy one commits hundreds per fsync (highest throughput).

use std::sync::Arc;
use std::time::Instant;

use claudemesh_proto::frames::Accepted;
use claudemesh_proto::{BrokerFrame, ErrorCode};
use tokio::sync::{mpsc, oneshot};

use crate::delivery::deliver_live;
use crate::hub::{Hub, Stored};
use crate::metrics as m;
use crate::sessions::SessionHandle;
use crate::store::{AckOp, NewMessage, ReceiptRow, SessionRecord, Store, WatermarkRow};
use crate::wire::{deliver_text, error_text, text};

/// Acked seqs in one batch above which the batch's messages commit first,
/// in a transaction of their own, and the acks after them.
const ACK_WAVE: usize = 256;

/// Jobs waiting for the writer before senders feel backpressure.
pub const WRITER_QUEUE_CAPACITY: usize = 8192;

/// Who to answer once a message is committed.
#[derive(Debug)]
pub struct AcceptReply {
    /// The sending connection.
    pub session: Arc<SessionHandle>,
    /// The `send`'s correlation id.
    pub req: Option<String>,
}

/// Work for the writer.
#[derive(Debug)]
pub enum WriteJob {
    /// Store a message, then answer its sender and deliver it.
    Message(Box<NewMessage>, Option<AcceptReply>),
    /// Record acknowledgements.
    Ack(Box<AckOp>),
    /// Record a session key first seen in a hello.
    Session(Box<SessionRecord>),
    /// Store signed receipts (a direct message's also acks it).
    Receipts(Vec<ReceiptRow>),
    /// Persist watermarks kept in memory (`crate::watermarks`).
    Watermarks(Vec<WatermarkRow>),
    /// Answer when everything queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// The sending side of the writers.
///
/// With several writers (Postgres), each commits on its own connection, so
/// one batch's fsync overlaps the next batch's statements. A sender's
/// direct messages and a member's acks always go to the same writer, and a
/// target's fan-out messages to the target's writer: each sender's messages
/// to one target stay in order, and writers stay off each other's rows.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    txs: Vec<mpsc::Sender<WriteJob>>,
}

impl WriterHandle {
    /// Queues a job, waiting for room (backpressure on the sender's
    /// connection). Returns false once the writer has stopped.
    pub async fn submit(&self, job: WriteJob) -> bool {
        let key = match &job {
            // A fan-out message goes to its target's writer: one writer
            // then numbers the target's messages (`tseq`), in batches, and
            // writers never queue on each other's counter row.
            WriteJob::Message(m, _) if m.at_len.is_some() => target_key(&m.mesh, &m.target),
            WriteJob::Message(m, _) => m.sender_member.as_bytes()[0],
            WriteJob::Ack(a) => a.member.as_bytes()[0],
            WriteJob::Session(s) => s.member.as_bytes()[0],
            WriteJob::Receipts(r) => r.first().map_or(0, |r| r.member.as_bytes()[0]),
            WriteJob::Watermarks(_) | WriteJob::Flush(_) => 0,
        };
        let Some(tx) = self.txs.get(usize::from(key) % self.txs.len().max(1)) else {
            return false;
        };
        let ok = tx.send(job).await.is_ok();
        metrics::gauge!(m::WRITER_QUEUE).set((WRITER_QUEUE_CAPACITY - tx.capacity()) as f64);
        ok
    }

    /// Waits until every job queued so far is committed.
    pub async fn flush(&self) {
        for tx in &self.txs {
            let (done, rx) = oneshot::channel();
            if tx.send(WriteJob::Flush(done)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }
}

/// A byte that spreads fan-out targets over the writers (FNV-1a).
fn target_key(mesh: &claudemesh_crypto::MeshId, target: &str) -> u8 {
    let mut h: u32 = 0x811c_9dc5;
    for b in mesh.as_bytes().iter().chain(target.as_bytes()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.to_le_bytes()[0] ^ h.to_le_bytes()[2]
}

/// Starts `writers` writer tasks (at least one).
pub fn spawn(
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    max_batch: usize,
    writers: usize,
) -> WriterHandle {
    let txs = (0..writers.max(1))
        .map(|_| {
            let (tx, rx) = mpsc::channel(WRITER_QUEUE_CAPACITY);
            tokio::spawn(run(rx, store.clone(), hub.clone(), max_batch.max(1)));
            tx
        })
        .collect();
    WriterHandle { txs }
}

async fn run(
    mut rx: mpsc::Receiver<WriteJob>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    max_batch: usize,
) {
    let mut jobs = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        jobs.push(first);
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        metrics::gauge!(m::WRITER_QUEUE).set(rx.len() as f64);
        commit(&mut jobs, store.as_ref(), &hub).await;
    }
}

async fn commit(jobs: &mut Vec<WriteJob>, store: &dyn Store, hub: &Hub) {
    let mut messages = Vec::new();
    let mut replies = Vec::new();
    let mut acks = Vec::new();
    let mut flushes = Vec::new();
    let mut sessions = Vec::new();
    let mut receipts = Vec::new();
    let mut watermarks = Vec::new();
    for job in jobs.drain(..) {
        match job {
            WriteJob::Message(msg, reply) => {
                messages.push(*msg);
                replies.push(reply);
            }
            WriteJob::Ack(a) => acks.push(*a),
            WriteJob::Session(s) => sessions.push(*s),
            WriteJob::Receipts(r) => receipts.extend(r),
            WriteJob::Watermarks(w) => watermarks.extend(w),
            WriteJob::Flush(done) => flushes.push(done),
        }
    }
    // A batch is one transaction, unless it carries a wave of acks (a
    // fan-out message to a thousand members brings a thousand): then the
    // messages commit and go out first, and the next message does not wait
    // behind those receipts.
    let ack_seqs: usize = acks.iter().map(|a| a.seqs.len()).sum();
    let (together, acks_after) = if ack_seqs > ACK_WAVE {
        (Vec::new(), acks)
    } else {
        (acks, Vec::new())
    };
    if !messages.is_empty() || !together.is_empty() {
        commit_batch(&messages, replies, &together, store, hub).await;
    }
    if !acks_after.is_empty() {
        commit_batch(&[], Vec::new(), &acks_after, store, hub).await;
    }
    if !sessions.is_empty()
        && let Err(e) = store.record_sessions(&sessions).await
    {
        metrics::counter!(m::STORE_ERRORS).increment(1);
        tracing::warn!(error = %e, sessions = sessions.len(), "could not record sessions");
    }
    if let Err(e) = store.write_receipts(&receipts).await {
        metrics::counter!(m::STORE_ERRORS).increment(1);
        tracing::warn!(error = %e, receipts = receipts.len(), "could not store receipts");
    }
    if let Err(e) = store.write_watermarks(&watermarks).await {
        metrics::counter!(m::STORE_ERRORS).increment(1);
        tracing::warn!(error = %e, marks = watermarks.len(), "could not store watermarks");
    }
    for done in flushes {
        let _ = done.send(());
    }
}

/// Commits messages and acks in one transaction, then delivers the
/// messages and answers their senders.
async fn commit_batch(
    messages: &[NewMessage],
    replies: Vec<Option<AcceptReply>>,
    acks: &[AckOp],
    store: &dyn Store,
    hub: &Hub,
) {
    {
        let started = Instant::now();
        let result = store.write_batch(messages, acks).await;
        metrics::histogram!(m::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(m::COMMIT_BATCH).record((messages.len() + acks.len()) as f64);
        match result {
            Ok(outcomes) => {
                let acked: usize = acks.iter().map(|a| a.seqs.len()).sum();
                if acked > 0 {
                    metrics::counter!(m::DELIVERED).increment(acked as u64);
                }
                // Other replicas hear of the new messages after the commit,
                // ids only, from the notifier task (never in the
                // transaction, never a round trip of this writer's).
                if let Some(r) = hub.replicas().filter(|r| r.has_peers()) {
                    let stored: Vec<Stored<'_>> = messages
                        .iter()
                        .zip(&outcomes)
                        .filter(|(_, o)| !o.duplicate)
                        .map(|(msg, o)| match &msg.at_len {
                            Some(_) => Stored::Fanout {
                                mesh: msg.mesh,
                                seq: o.seq,
                                target: &msg.target,
                            },
                            None => Stored::Direct {
                                mesh: msg.mesh,
                                seq: o.seq,
                                recipients: &msg.recipients,
                            },
                        })
                        .collect();
                    r.messages_stored(&stored);
                }
                for ((msg, reply), outcome) in messages.iter().zip(replies).zip(outcomes) {
                    if outcome.duplicate {
                        metrics::counter!(m::DUPLICATES).increment(1);
                    } else {
                        metrics::counter!(m::ACCEPTED).increment(1);
                        // Deliver first: the sender's `accepted` never
                        // overtakes the recipient's `deliver`.
                        if let Ok(Some(mesh)) = hub.mesh(&msg.mesh).await {
                            let frame = deliver_text(
                                outcome.seq,
                                &msg.envelope_json,
                                msg.created_at_ms,
                                outcome.tseq,
                                msg.deadline_ms,
                            );
                            let n = deliver_live(&mesh, &msg.recipients, msg.priority, &frame);
                            metrics::counter!(m::PUSHED).increment(n as u64);
                        }
                    }
                    if let Some(r) = reply {
                        r.session.push(text(&BrokerFrame::Accepted(Accepted {
                            req: r.req,
                            id: msg.id,
                            seq: outcome.seq,
                            duplicate: outcome.duplicate,
                            tseq: outcome.tseq,
                        })));
                    }
                }
            }
            Err(e) => {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::error!(error = %e, messages = messages.len(), acks = acks.len(),
                    "group commit failed; senders will resend");
                for r in replies.into_iter().flatten() {
                    r.session.push(error_text(
                        r.req,
                        ErrorCode::Internal,
                        "the broker could not store the message; resend it",
                    ));
                }
            }
        }
    }
}

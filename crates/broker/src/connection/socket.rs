//! A connection's socket task: writes what the bounded outbound queue holds
//! and the coalesced presence beside it, pings, and closes; a peer that
//! stops reading is cut off rather than waited for.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use claudemesh_proto::limits::PING_INTERVAL_MS;
use futures_util::SinkExt;

use crate::metrics as m;
use crate::outbox::{OutboxReader, Outgoing};

/// How long the socket task keeps writing what is queued once the
/// connection must end.
const CLOSING_GRACE: Duration = Duration::from_secs(2);

/// The socket's sending half.
pub type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// Writes one message; false if it failed or took longer than `limit`.
async fn write(sink: &mut Sink, m: Message, limit: Duration) -> bool {
    matches!(tokio::time::timeout(limit, sink.send(m)).await, Ok(Ok(())))
}

/// Writes queued frames and coalesced presence to the socket, pings every
/// 30 s, closes on request. A write that does not complete within
/// `write_timeout` (a peer that stopped reading, its socket buffers full),
/// or a frame that waited in the queue longer than
/// [`crate::outbox::MAX_QUEUE_AGE`], ends the connection: nothing waits on
/// a reader that does not read. Once the connection must end, what is still
/// queued gets [`CLOSING_GRACE`] in all, then the socket is dropped.
pub async fn write_loop(mut sink: Sink, mut reader: OutboxReader, write_timeout: Duration) {
    let mut ping = tokio::time::interval(Duration::from_millis(PING_INTERVAL_MS));
    ping.tick().await;
    let outbox = reader.outbox();
    let close_frame = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }))
    };
    // Presence goes out only after the first queued frame (an
    // authenticated session's first frame is its `welcome`).
    let mut wrote_first = false;
    let mut deadline: Option<tokio::time::Instant> = None;
    let limit = |deadline: Option<tokio::time::Instant>| match deadline {
        Some(d) => d.saturating_duration_since(tokio::time::Instant::now()),
        None => write_timeout,
    };
    loop {
        if deadline.is_none() && outbox.is_killed() {
            deadline = Some(tokio::time::Instant::now() + CLOSING_GRACE);
        }
        let grace_over = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = grace_over => break,
            out = reader.recv() => match out {
                Some(Outgoing::Text(t, lane, permits, queued_at)) => {
                    if deadline.is_none() && !reader.check_age(queued_at.elapsed()) {
                        reader.written(lane, permits);
                        continue;
                    }
                    let ok = write(&mut sink, Message::Text(t), limit(deadline)).await;
                    reader.written(lane, permits);
                    if !ok {
                        metrics::counter!(m::WRITE_TIMEOUTS).increment(1);
                        break;
                    }
                    wrote_first = true;
                    // Presence goes out between queued frames too, so a busy
                    // queue never starves it.
                    if deadline.is_none() {
                        for f in outbox.take_presence() {
                            if !write(&mut sink, Message::Text(f), write_timeout).await {
                                metrics::counter!(m::WRITE_TIMEOUTS).increment(1);
                                deadline = Some(tokio::time::Instant::now());
                                break;
                            }
                        }
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let room = limit(deadline).min(CLOSING_GRACE);
                    let _ = write(&mut sink, close_frame(code, reason), room).await;
                    break;
                }
                None => break,
            },
            () = outbox.killed(), if deadline.is_none() => {}
            () = outbox.presence_ready(), if deadline.is_none() && wrote_first => {
                for f in outbox.take_presence() {
                    if !write(&mut sink, Message::Text(f), write_timeout).await {
                        metrics::counter!(m::WRITE_TIMEOUTS).increment(1);
                        deadline = Some(tokio::time::Instant::now());
                        break;
                    }
                }
            }
            _ = ping.tick(), if deadline.is_none() => {
                if !write(&mut sink, Message::Ping(Default::default()), write_timeout).await {
                    metrics::counter!(m::WRITE_TIMEOUTS).increment(1);
                    break;
                }
            }
        }
    }
    drop(reader);
    let _ = tokio::time::timeout(CLOSING_GRACE, sink.close()).await;
}

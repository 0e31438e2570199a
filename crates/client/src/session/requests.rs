//! Requests and their answers: a request id per request, the waiter its
//! answer is handed to, the frame size check before anything is sent, a
//! request answered only when it fails, and the requests the session makes
//! itself (`ping`; `grants_set`, again after each connect).

use claudemesh_proto::frames::{GrantsSetFrame, Request};
use claudemesh_proto::limits::{MAX_FRAME_BYTES, MAX_LOG_ENTRIES_PER_FRAME};
use claudemesh_proto::{BrokerFrame, ClientFrame, close, encode_client_frame};
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use super::core::{Link, Session, lock};
use crate::error::ClientError;

impl Session {
    pub(super) fn new_req(&self) -> String {
        format!("r{}", self.next_req.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) async fn wait_up(&self) -> Result<(), ClientError> {
        let mut rx = self.link.subscribe();
        let wait = rx.wait_for(|l| matches!(l, Link::Up | Link::Stopped(_)));
        match tokio::time::timeout(self.opts.request_timeout, wait).await {
            Ok(Ok(l)) => match &*l {
                Link::Up => Ok(()),
                Link::Stopped(why) => Err(ClientError::Closed {
                    code: close::NORMAL,
                    reason: why.clone(),
                }),
                _ => Err(ClientError::Disconnected),
            },
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => Err(ClientError::Timeout("reconnect")),
        }
    }

    pub(super) async fn send_raw(&self, frame: &ClientFrame) -> Result<(), ClientError> {
        let text = encode_client_frame(frame);
        check_frame_size(frame, text.len())?;
        let writer = lock(&self.writer).clone();
        match writer {
            Some(w) => w
                .send(Message::text(text))
                .await
                .map_err(|_| ClientError::Disconnected),
            None => Err(ClientError::Disconnected),
        }
    }

    /// A request on the current connection (without waiting for `Up`: the
    /// handshake's own log sync uses it).
    pub(crate) async fn request_now(
        &self,
        make: impl FnOnce(String) -> ClientFrame,
        what: &'static str,
    ) -> Result<BrokerFrame, ClientError> {
        let req = self.new_req();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(req.clone(), tx);
        if let Err(e) = self.send_raw(&make(req.clone())).await {
            lock(&self.pending).remove(&req);
            return Err(e);
        }
        match tokio::time::timeout(self.opts.request_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ClientError::Disconnected),
            Err(_) => {
                lock(&self.pending).remove(&req);
                Err(ClientError::Timeout(what))
            }
        }
    }

    pub(crate) async fn request(
        &self,
        make: impl FnOnce(String) -> ClientFrame,
        what: &'static str,
    ) -> Result<BrokerFrame, ClientError> {
        self.wait_up().await?;
        self.request_now(make, what).await
    }

    /// A round trip to the broker; returns its clock (unix ms).
    pub(crate) async fn ping(&self) -> Result<u64, ClientError> {
        let frame = self
            .request(
                |req| ClientFrame::Ping(Request { req: Some(req) }),
                "answer a ping",
            )
            .await?;
        match frame {
            BrokerFrame::Pong(p) => Ok(p.time_ms),
            other => Err(unexpected(&other)),
        }
    }

    /// A request the broker answers only when it fails (`presence_set`):
    /// a ping behind it proves it was processed.
    pub(crate) async fn request_unanswered(
        &self,
        make: impl FnOnce(String) -> ClientFrame,
    ) -> Result<(), ClientError> {
        let req = self.new_req();
        let (tx, mut rx) = oneshot::channel();
        lock(&self.pending).insert(req.clone(), tx);
        let frame = make(req.clone());
        self.wait_up().await?;
        self.send_raw(&frame).await?;
        let pong = self.ping().await;
        let failed = rx.try_recv();
        lock(&self.pending).remove(&req);
        if let Ok(Err(e)) = failed {
            return Err(e);
        }
        pong?;
        Ok(())
    }

    /// Sends `grants_set` on the current connection.
    pub(crate) async fn push_grants(
        &self,
        set: &claudemesh_crypto::grants::GrantSet,
    ) -> Result<u64, ClientError> {
        let frame = self
            .request_now(
                |req| {
                    ClientFrame::GrantsSet(GrantsSetFrame {
                        req: Some(req),
                        grants: Box::new(set.clone()),
                    })
                },
                "store the grants",
            )
            .await?;
        match frame {
            BrokerFrame::GrantsStored(g) => Ok(g.version),
            other => Err(unexpected(&other)),
        }
    }
}

/// An answer of the wrong kind: the broker broke the protocol.
pub(crate) fn unexpected(frame: &BrokerFrame) -> ClientError {
    ClientError::Protocol(format!("unexpected {} frame", frame.type_name()))
}

/// Refuses a `log_append` or `invite_create` the broker would not take: one
/// over the protocol's frame size (the broker would answer
/// `frame_too_large` and close the connection) or carrying more log entries
/// than one frame may. Other frames are bounded by construction.
fn check_frame_size(frame: &ClientFrame, bytes: usize) -> Result<(), ClientError> {
    let entries = match frame {
        ClientFrame::LogAppend(a) => a.entries.len(),
        ClientFrame::InviteCreate(_) => 1,
        _ => return Ok(()),
    };
    if bytes > MAX_FRAME_BYTES || entries > MAX_LOG_ENTRIES_PER_FRAME {
        return Err(ClientError::FrameTooLarge {
            frame: frame.type_name(),
            bytes,
            entries,
            max_bytes: MAX_FRAME_BYTES,
            max_entries: MAX_LOG_ENTRIES_PER_FRAME,
        });
    }
    Ok(())
}

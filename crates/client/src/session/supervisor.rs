//! The reconnect supervisor: owns a session's connection life. It
//! connects, waits for the connection to end, and reconnects with
//! exponential backoff and full jitter, unless the failure is terminal
//! (removed, banned, a log that does not verify) or the session stops; a
//! hello refused as `cert_expired` is retried once with a renewed
//! certificate. Beside it, the repair task, which rotates the keys sealed
//! badly to this member as soon as a log sync finds them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use claudemesh_proto::{ErrorCode, close};
use tokio::sync::oneshot;

use super::core::{Link, Session};
use super::events::Event;
use super::handshake::ConnInfo;
use crate::error::ClientError;
use crate::mesh::rotation;

/// Whether the broker refused or ended the session because its certificate
/// expired (renewing it helps).
fn is_cert_expired(e: &ClientError) -> bool {
    match e {
        ClientError::Refused { code, .. } => *code == ErrorCode::CertExpired,
        ClientError::Closed { reason, .. } => reason == ErrorCode::CertExpired.as_str(),
        _ => false,
    }
}

/// Whether a failure means retrying cannot help (a `cert_expired` is
/// retried once with a renewed certificate before this is asked).
fn is_terminal(e: &ClientError) -> bool {
    match e {
        ClientError::Refused { code, .. } => matches!(
            code,
            ErrorCode::NotAMember
                | ErrorCode::Removed
                | ErrorCode::Banned
                | ErrorCode::UnknownMesh
                | ErrorCode::BadCertificate
                | ErrorCode::CertExpired
                | ErrorCode::UnsupportedVersion
                | ErrorCode::BadSignature
        ),
        ClientError::Closed { code, .. } => matches!(
            *code,
            close::KICKED | close::BANNED | close::POLICY | close::UNSUPPORTED_VERSION
        ),
        ClientError::LogInvalid(_) | ClientError::LogFork(_) | ClientError::Protocol(_) => true,
        ClientError::Local(_) => true,
        ClientError::Tls(e) => e.is_terminal(),
        _ => false,
    }
}

/// Failed repairs in a row after which the repair task waits for the next
/// bad seal (or the caller's own repair) instead of retrying.
const MAX_REPAIR_FAILURES: u32 = 6;

/// Writes the keys this member should rotate on its own
/// ([`MeshClient::repair_keys`]) as soon as a log sync finds a bad seal of
/// a current key, so a long-lived client (the MCP server, `inbox --watch`)
/// reads what is sent under the next key at once. A failed repair is
/// retried after [`backoff`], at most [`MAX_REPAIR_FAILURES`] times in a
/// row. Holds the client only while it works; ends when the client is gone
/// or stopped.
pub(super) async fn repair_loop(inner: std::sync::Weak<Session>, wanted: Arc<tokio::sync::Notify>) {
    loop {
        wanted.notified().await;
        let mut failures: u32 = 0;
        loop {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if inner.stopping.load(Ordering::SeqCst)
                || matches!(*inner.link.borrow(), Link::Stopped(_))
            {
                return;
            }
            if inner.read_state(rotation::repairs_needed).is_empty() {
                break;
            }
            match inner.repair_keys().await {
                Ok(done) => {
                    tracing::info!(
                        rotated = done.len(),
                        "rotated the keys sealed badly to this member"
                    );
                    break;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures >= MAX_REPAIR_FAILURES {
                        tracing::warn!(error = %e, "could not rotate the keys sealed badly to this member; waiting for the next bad seal");
                        break;
                    }
                    tracing::warn!(error = %e, "could not rotate the keys sealed badly to this member; retrying");
                }
            }
            drop(inner);
            tokio::time::sleep(backoff(failures)).await;
        }
    }
}

/// Exponential backoff with full jitter: 250 ms doubling to 30 s, each wait
/// a random point in the upper half of the window.
fn backoff(attempt: u32) -> Duration {
    let base_ms = 250u64.saturating_mul(1u64 << attempt.min(7)).min(30_000);
    let r: [u8; 2] = claudemesh_crypto::keys::random_bytes();
    let frac = f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX);
    Duration::from_millis((base_ms as f64 * (0.5 + 0.5 * frac)) as u64)
}

pub(super) async fn supervise(
    inner: Arc<Session>,
    first: oneshot::Sender<Result<Arc<ConnInfo>, ClientError>>,
) {
    let mut first = Some(first);
    let started = Instant::now();
    let mut attempt: u32 = 0;
    // A hello refused `cert_expired` is retried once with a renewed
    // certificate (this device's clock may disagree with the broker's)
    // before it counts as final.
    let mut renewed_for_refusal = false;
    let stop = |inner: &Session, reason: String| {
        let _ = inner.link.send_replace(Link::Stopped(reason.clone()));
        inner.emit(Event::Stopped { reason });
        inner.drop_connection();
        // The repair task and the watermark coalescer see the client
        // stopped and end.
        inner.repair_wanted.notify_one();
        inner.marks_wanted.notify_one();
    };
    loop {
        if inner.stopping.load(Ordering::SeqCst) {
            stop(&inner, "closed".into());
            return;
        }
        let _ = inner.link.send_replace(Link::Connecting);
        match inner.establish().await {
            Ok((info, reader)) => {
                attempt = 0;
                renewed_for_refusal = false;
                if let Some(f) = first.take() {
                    let _ = f.send(Ok(info));
                }
                inner.emit(Event::Connected);
                let why = reader.await.unwrap_or(ClientError::Disconnected);
                let _ = inner.link.send_replace(Link::Down);
                inner.drop_connection();
                if inner.stopping.load(Ordering::SeqCst) {
                    stop(&inner, "closed".into());
                    return;
                }
                if is_terminal(&why) || !inner.opts.reconnect {
                    stop(&inner, why.to_string());
                    return;
                }
                if is_cert_expired(&why) {
                    // The certificate expired while connected: the next
                    // hello carries a renewed one.
                    inner.renew_cert.store(true, Ordering::SeqCst);
                }
                tracing::info!(reason = %why, "connection lost; reconnecting");
                inner.emit(Event::Disconnected {
                    reason: why.to_string(),
                });
            }
            Err(e) if is_cert_expired(&e) && !renewed_for_refusal => {
                tracing::info!(
                    "the broker refused this session's certificate as expired; renewing it"
                );
                renewed_for_refusal = true;
                inner.renew_cert.store(true, Ordering::SeqCst);
            }
            Err(e) => {
                let out_of_time = started.elapsed() >= inner.opts.connect_timeout;
                if is_terminal(&e) || (first.is_some() && out_of_time) {
                    let reason = e.to_string();
                    match first.take() {
                        Some(f) => {
                            let _ = f.send(Err(e));
                        }
                        None => tracing::warn!(error = %reason, "cannot reconnect"),
                    }
                    stop(&inner, reason);
                    return;
                }
                if first.is_none() && !inner.opts.reconnect {
                    stop(&inner, e.to_string());
                    return;
                }
            }
        }
        attempt = attempt.saturating_add(1);
        let mut wait = backoff(attempt);
        if first.is_some() {
            let left = inner.opts.connect_timeout.saturating_sub(started.elapsed());
            wait = wait.min(left);
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        for attempt in 0..20 {
            let d = backoff(attempt);
            let base = 250u64.saturating_mul(1 << attempt.min(7)).min(30_000);
            assert!(d.as_millis() as u64 >= base / 2 && d.as_millis() as u64 <= base);
        }
    }

    #[test]
    fn kicks_and_auth_failures_are_terminal_network_blips_are_not() {
        assert!(is_terminal(&ClientError::Closed {
            code: close::KICKED,
            reason: String::new()
        }));
        assert!(!is_terminal(&ClientError::Closed {
            code: close::GOING_AWAY,
            reason: String::new()
        }));
        assert!(!is_terminal(&ClientError::Unreachable {
            url: String::new(),
            reason: String::new()
        }));
        assert!(is_terminal(&ClientError::Refused {
            code: ErrorCode::NotAMember,
            message: String::new()
        }));
    }
}

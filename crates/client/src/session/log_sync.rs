//! Keeping this device's verified copy of the membership log in step with
//! the broker's: fetch what is new, verify it against what was verified
//! before (a shorter or different log is a fork, TM3), store it, adopt it
//! (opening any new keys), and report keys sealed badly to this member.
//! Also the log fetch over a one-shot connection (joining, and recovering
//! a member's whole log when this device has none stored).

use std::time::Duration;

use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::log::{LogEntry, verify_log};
use claudemesh_proto::frames::{LogFetch, Status};
use claudemesh_proto::hello::HelloPresence;
use claudemesh_proto::{BrokerFrame, ClientFrame};

use super::core::Session;
use super::events::Event;
use super::handshake::{Greeting, greet};
use super::requests::unexpected;
use crate::error::ClientError;
use crate::home::MeshConfig;
use crate::wire;

/// How long a request over a one-shot connection may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

impl Session {
    /// Fetches new log entries, verifies them against what this device
    /// already verified, and adopts them (opening any new root keys).
    pub(crate) async fn sync_log(&self) -> Result<(), ClientError> {
        let _one = self.sync_lock.lock().await;
        loop {
            let from = self.read_state(|s| s.roster().len());
            let frame = self
                .request_now(
                    |req| {
                        ClientFrame::LogFetch(LogFetch {
                            req: Some(req),
                            from_seq: from,
                            limit: None,
                        })
                    },
                    "send the membership log",
                )
                .await?;
            let BrokerFrame::LogEntries(le) = frame else {
                return Err(unexpected(&frame));
            };
            if le.len < from {
                // The broker forgot entries this device verified: a rollback.
                return Err(ClientError::LogFork(le.len));
            }
            if le.entries.is_empty() {
                let head = self.read_state(|s| s.roster().head());
                if le.len == from && le.head != head {
                    return Err(ClientError::LogFork(from.saturating_sub(1)));
                }
                if le.len > from {
                    return Err(ClientError::Protocol(
                        "the broker claims a longer log but sent no entries".into(),
                    ));
                }
                return Ok(());
            }
            if le.entries.first().map(|e| e.seq) != Some(from) {
                return Err(ClientError::Protocol(
                    "the broker sent log entries from the wrong position".into(),
                ));
            }
            let roster = self.read_state(|s| s.verify_extension(&le.entries))?;
            self.local.append_log(&self.mesh.id, &le.entries).await?;
            let (new_roots, len, bad) = {
                let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
                let known = s.bad_seals().len();
                let new = s.extend(le.entries, roster);
                let bad: Vec<_> = s.bad_seals()[known..]
                    .iter()
                    .map(|b| s.bad_seal_report(b))
                    .collect();
                (new.then(|| s.keys().roots.clone()), s.roster().len(), bad)
            };
            if bad.iter().any(|b| b.current) {
                // A key this member needs now: rotate it at once, without
                // waiting for a message to send or a reconnection.
                self.repair_wanted.notify_one();
            }
            for b in bad {
                self.emit(Event::BadSeal(Box::new(b)));
            }
            if let Some(roots) = new_roots {
                self.home.update_keys(&self.mesh.id, |k| {
                    for (e, r) in roots {
                        k.roots.entry(e).or_insert(r);
                    }
                    Ok(())
                })?;
            }
            self.emit(Event::LogChanged { len });
            if !le.more {
                return Ok(());
            }
        }
    }
}

/// Fetches and verifies a mesh's whole membership log from its broker, as
/// the member `session` certifies (signed hello, then `log_fetch` from
/// genesis). For a home that has the mesh's keys but no stored log: a
/// restored backup, or a lost `state.db`. The mesh id (the hash of the
/// genesis entry) anchors it, so the broker cannot substitute another
/// mesh's log; every later entry is verified as when joining. What is lost
/// is only the fork check against a log this device verified before.
pub(crate) async fn recover_log(
    mesh: &MeshConfig,
    session: &SessionIdentity,
    client_name: &str,
    timeout: Duration,
) -> Result<Vec<LogEntry>, ClientError> {
    let mut opened = wire::open_with_ca(&mesh.broker_url, mesh.ca.as_deref(), timeout).await?;
    let greeting = Greeting {
        session,
        log_head: None,
        presence: HelloPresence {
            status: Status::Dnd,
            peer_type: None,
            summary: None,
        },
        client_name,
    };
    let welcome = greet(&mut opened, greeting, timeout).await?.welcome;
    let mut entries = Vec::new();
    fetch_log(&mut opened, &mut entries, welcome.log_len).await?;
    let roster = verify_log(&entries).map_err(ClientError::LogInvalid)?;
    if roster.mesh_id() != mesh.id {
        // The genesis entry does not hash to the mesh id this device holds.
        return Err(ClientError::LogFork(0));
    }
    if !roster.is_member(&session.cert.member) {
        return Err(ClientError::NotAllowed(format!(
            "the membership log of {:?} does not list this device's member key: it was removed from the mesh",
            mesh.name
        )));
    }
    Ok(entries)
}

/// Reads log entries after `entries` until the broker has no more (before
/// hello this is allowed only after a successful `invite_fetch`).
pub(crate) async fn fetch_log(
    opened: &mut wire::Opened,
    entries: &mut Vec<LogEntry>,
    want_len: u64,
) -> Result<(), ClientError> {
    loop {
        let from = entries.len() as u64;
        if from >= want_len {
            return Ok(());
        }
        let answer = wire::request(
            opened,
            &ClientFrame::LogFetch(LogFetch {
                req: Some(format!("log{from}")),
                from_seq: from,
                limit: None,
            }),
            REQUEST_TIMEOUT,
            "send the membership log",
        )
        .await?;
        let BrokerFrame::LogEntries(le) = answer else {
            return Err(wire::refused(answer));
        };
        if le.entries.is_empty() {
            return Ok(());
        }
        if le.entries[0].seq != from {
            return Err(ClientError::Protocol(
                "the broker sent log entries from the wrong position".into(),
            ));
        }
        entries.extend(le.entries);
        if !le.more {
            return Ok(());
        }
    }
}

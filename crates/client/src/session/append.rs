//! Appending to the membership log: entries built from the current
//! verified state, signed, appended atomically, and built again after a
//! re-sync when the log moved meanwhile. Before anything else, an owner or
//! admin writes the rekey an admin's lone kick or ban left owed; before a
//! fan-out send, the key it needs is rotated when that falls to this
//! member; and the keys this member should rotate on its own are written
//! on demand ([`Session::repair_keys`]).

use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::log::LogEntry;
use claudemesh_proto::frames::LogAppend;
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};

use super::core::Session;
use super::requests::unexpected;
use crate::error::ClientError;
use crate::mesh::MeshState;
use crate::mesh::rotation::{self, Rotation};
use claudemesh_proto::clock::now_ms;

impl Session {
    /// Signs entries built from the current verified state and appends
    /// them atomically (or, with a bundle, one `invite_create`), retrying
    /// after re-syncing the log when it moved meanwhile. Nothing to append
    /// (`make` returned no entries, e.g. someone else already wrote the
    /// rekey) is success.
    pub(crate) async fn append_with(
        &self,
        make: impl Fn(&MeshState) -> Result<(Vec<LogEntry>, Option<Vec<u8>>), ClientError>,
    ) -> Result<(), ClientError> {
        self.append_inner(make, true).await
    }

    /// [`Session::append_with`]; without `sync_after` it returns as soon as
    /// the broker answers `log_appended` (for a member's own `leave`,
    /// after which it can no longer fetch the log). An owner or admin
    /// first writes the rekey a kick or ban left pending (nothing else may
    /// be appended before it).
    pub(crate) async fn append_inner(
        &self,
        make: impl Fn(&MeshState) -> Result<(Vec<LogEntry>, Option<Vec<u8>>), ClientError>,
        sync_after: bool,
    ) -> Result<(), ClientError> {
        let owed = |s: &MeshState| s.roster().pending_removal().is_some() && rotation::may_rekey(s);
        if self.read_state(owed) {
            self.append_raw(
                |s| {
                    if !owed(s) {
                        return Ok((Vec::new(), None));
                    }
                    let r = Rotation::Mesh;
                    Ok((
                        vec![rotation::rotation_entry(s, &r, now_ms() / 1000)?],
                        None,
                    ))
                },
                true,
            )
            .await?;
        }
        self.append_raw(make, sync_after).await
    }

    /// Appends what `make` builds, retrying after re-syncing the log when
    /// it moved meanwhile.
    pub(crate) async fn append_raw(
        &self,
        make: impl Fn(&MeshState) -> Result<(Vec<LogEntry>, Option<Vec<u8>>), ClientError>,
        sync_after: bool,
    ) -> Result<(), ClientError> {
        for _ in 0..8 {
            let (entries, bundle) = self.read_state(&make)?;
            if entries.is_empty() {
                return Ok(());
            }
            let frame = |req: String| match (&bundle, entries.first()) {
                (Some(b), Some(entry)) => {
                    ClientFrame::InviteCreate(claudemesh_proto::frames::InviteCreate {
                        req: Some(req),
                        entry: entry.clone(),
                        bundle: b.clone(),
                    })
                }
                _ => ClientFrame::LogAppend(LogAppend {
                    req: Some(req),
                    entries: entries.clone(),
                }),
            };
            match self.request(frame, "append to the membership log").await {
                Ok(BrokerFrame::LogAppended(_)) => {
                    if sync_after {
                        self.sync_log().await?;
                    }
                    return Ok(());
                }
                Ok(other) => return Err(unexpected(&other)),
                Err(ClientError::Refused {
                    code: ErrorCode::LogConflict,
                    ..
                }) => {
                    self.sync_log().await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Timeout(
            "settle the membership log (it kept moving)",
        ))
    }

    /// [`MeshClient::repair_keys`].
    pub(crate) async fn repair_keys(&self) -> Result<Vec<Rotation>, ClientError> {
        let mut done = Vec::new();
        for _ in 0..8 {
            let Some(next) = self
                .read_state(rotation::repairs_needed)
                .into_iter()
                .find(|r| !done.contains(r))
            else {
                break;
            };
            let want = next.clone();
            self.append_raw(
                |s| {
                    if !rotation::repairs_needed(s).contains(&want) {
                        return Ok((Vec::new(), None));
                    }
                    Ok((
                        vec![rotation::rotation_entry(s, &want, now_ms() / 1000)?],
                        None,
                    ))
                },
                true,
            )
            .await?;
            done.push(next);
        }
        Ok(done)
    }

    /// Rotates the key a fan-out message to `target` needs, if it must
    /// rotate and it falls to this member: a `rekey` of the mesh (`*`,
    /// `@group`, public topics) or a `topic_rekey` (private topics).
    pub(crate) async fn rotate_keys_for(&self, target: &Target) -> Result<(), ClientError> {
        if target.is_direct() {
            return Ok(());
        }
        for _ in 0..4 {
            if self
                .read_state(|s| rotation::rotation_needed(s, target))?
                .is_none()
            {
                return Ok(());
            }
            self.append_with(|s| match rotation::rotation_needed(s, target)? {
                None => Ok((Vec::new(), None)),
                Some(r) => Ok((
                    vec![rotation::rotation_entry(s, &r, now_ms() / 1000)?],
                    None,
                )),
            })
            .await?;
        }
        Err(ClientError::Timeout(
            "settle the key rotation (the log kept moving)",
        ))
    }
}

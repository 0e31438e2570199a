//! `coord_ring_put`: the caller's session stores a coordination key ring
//! link (the previous epoch's coordination key sealed under this epoch's).
//! The broker checks the signer is this session, the signature and
//! certificate, that the epoch is one the mesh has had (1 to its
//! current), and that the signer is one readers would trust (the author of
//! the rekey that began the epoch, or an owner or admin now), so a mesh
//! keeps at most a few links per epoch; it keeps the first link per epoch
//! and signer, and readers check the same rule themselves.

use claudemesh_crypto::log::Role;
use claudemesh_proto::frames::{CoordRingPut, CoordRingStored};
use claudemesh_proto::limits::MAX_RING_LINKS_PER_EPOCH;
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::coord_put::coord_refusal;
use super::{Caller, Context, Handle, Refusal, Reply};
use crate::metrics as m;

impl Handle for CoordRingPut {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let Caller {
            broker,
            session,
            mesh,
        } = caller;
        let link = self.link;
        if link.signer.session != session.session || link.signer.member != session.member {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "the link's signer is not this connection's session",
            ));
        }
        link.verify(&mesh.id).map_err(coord_refusal)?;
        let known = || mesh.read_log(|l| (1..=l.roster.epoch()).contains(&link.epoch));
        // An epoch past ours may be a rekey another replica appended a
        // moment ago: adopt it and look again.
        let known = known() || (link.epoch >= 1 && mesh.caught_up().await && known());
        if !known {
            let now = mesh.read_log(|l| l.roster.epoch());
            return Err(Refusal::new(
                ErrorCode::Malformed,
                format!(
                    "a ring link's epoch must be from 1 to the mesh's epoch ({now}), not {}",
                    link.epoch
                ),
            ));
        }
        let (rekey_author, admin) = mesh.read_log(|l| {
            (
                l.roster
                    .key_epochs()
                    .get(&link.epoch)
                    .is_some_and(|ke| ke.author == session.member),
                matches!(
                    l.roster.role_of(&session.member),
                    Some(Role::Owner | Role::Admin)
                ),
            )
        });
        if !rekey_author && !admin {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!(
                    "only the author of the rekey that began epoch {} or an owner or admin may \
                     link its key",
                    link.epoch
                ),
            ));
        }
        if !rekey_author {
            // Owners' and admins' links are capped per epoch, so the ring
            // stays small; the rekey author's own link is always taken, so
            // bad links from others can never crowd out the one that counts.
            let others = broker
                .store
                .coord_ring(&mesh.id, link.epoch.saturating_sub(1))
                .await
                .map_err(|e| {
                    metrics::counter!(m::STORE_ERRORS).increment(1);
                    tracing::error!(error = %e, "reading the ring failed");
                    Refusal::internal("the broker could not read the ring; try again")
                })?
                .into_iter()
                .filter(|(epoch, _)| *epoch == link.epoch)
                .count();
            if others >= MAX_RING_LINKS_PER_EPOCH {
                return Err(Refusal::new(
                    ErrorCode::Refused,
                    format!(
                        "epoch {} already has {MAX_RING_LINKS_PER_EPOCH} ring links from owners and \
                         admins",
                        link.epoch
                    ),
                ));
            }
        }
        let json = serde_json::to_string(&*link).map_err(|e| {
            tracing::error!(error = %e, "serializing a ring link failed");
            Refusal::internal("the broker could not store it")
        })?;
        let duplicate = broker
            .store
            .coord_ring_put(&mesh.id, &link.scope, link.epoch, &session.member, &json)
            .await
            .map_err(|e| {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::error!(error = %e, "storing a ring link failed");
                Refusal::internal("the broker could not store it; try again")
            })?;
        if !duplicate {
            metrics::counter!(m::COORD_WRITES, "op" => "ring").increment(1);
        }
        Ok(Reply::Frame(BrokerFrame::CoordRingStored(
            CoordRingStored {
                req: self.req,
                epoch: link.epoch,
                duplicate,
            },
        )))
    }
}

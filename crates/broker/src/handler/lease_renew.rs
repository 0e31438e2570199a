//! `lease_renew`: extends leases the caller's member holds to `ttl_ms` from
//! now (each moves to a new feed position, so mirrors learn the new end).
//! An expired or released lease is gone: it is not in the answer, and its
//! holder takes it again.

use claudemesh_crypto::coord::CoordKind;
use claudemesh_proto::frames::{LeaseRenew, LeaseRenewed};
use claudemesh_proto::limits::{MAX_LEASE_TTL_MS, MAX_LEASES_PER_MEMBER, MIN_LEASE_TTL_MS};
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::metrics as m;

impl Handle for LeaseRenew {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let Caller {
            broker,
            session,
            mesh,
        } = caller;
        if !(MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(&self.ttl_ms) {
            return Err(Refusal::new(
                ErrorCode::Malformed,
                format!(
                    "a lease lasts {MIN_LEASE_TTL_MS} to {MAX_LEASE_TTL_MS} ms, not {}",
                    self.ttl_ms
                ),
            ));
        }
        if self.ids.len() > MAX_LEASES_PER_MEMBER {
            return Err(Refusal::new(
                ErrorCode::Malformed,
                format!("at most {MAX_LEASES_PER_MEMBER} leases per renewal"),
            ));
        }
        let now_ms = crate::now_ms();
        let expires_at_ms = now_ms.saturating_add(self.ttl_ms);
        let ids = broker
            .store
            .lease_renew(&mesh.id, &session.member, &self.ids, now_ms, expires_at_ms)
            .await
            .map_err(|e| {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::error!(error = %e, "renewing leases failed");
                Refusal::internal("the broker could not renew them; try again")
            })?;
        if !ids.is_empty() {
            metrics::counter!(m::COORD_WRITES, "op" => "lease_renew").increment(1);
            mesh.coord_changed(&[CoordKind::Lease], Some(session.conn_id));
        }
        Ok(Reply::Frame(BrokerFrame::LeaseRenewed(LeaseRenewed {
            req: self.req,
            ids,
            expires_at_ms,
        })))
    }
}

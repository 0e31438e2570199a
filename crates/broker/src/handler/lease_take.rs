//! `lease_take`: takes a file lease. The lease is a sealed, signed object of
//! kind `lease` (its repository, paths and reason, never read here) with its
//! keyed path tags and a probe; the broker checks the object as a
//! `coord_put`, then grants it unless a live lease of another session meets
//! the probe (and one of the two is exclusive), under the mesh's
//! coordination lock, so of two overlapping exclusive takes exactly one is
//! granted, on any replica. A conflict is an answer (`granted: false` with
//! the leases in the way), not an error.

use claudemesh_crypto::coord::{
    CoordKind, CoordObject, LEASE_PROBES_PER_PATH, LEASE_TAGS_PER_PATH,
};
use claudemesh_crypto::{MemberKey, SessionKey};
use claudemesh_proto::frames::{LeaseAnswer, LeaseHeld, LeaseTake};
use claudemesh_proto::limits::{
    LEASE_CONFLICT_BYTES, MAX_LEASE_CONFLICTS, MAX_LEASE_PATHS, MAX_LEASE_PLAINTEXT,
    MAX_LEASE_PROBE_EPOCHS, MAX_LEASE_TTL_MS, MAX_LEASES_PER_MEMBER, MIN_LEASE_TTL_MS,
};
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::coord_put::{check_authored, coord_refusal};
use super::{Caller, Context, Handle, Refusal, Reply};
use crate::metrics as m;
use crate::store::{LeaseOutcome, LeaseTakeRequest, NewCoordObject};

impl Handle for LeaseTake {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let Caller {
            broker,
            session,
            mesh,
        } = caller;
        let o = self.object;
        o.check_shape().map_err(coord_refusal)?;
        let malformed = |why: String| Err(Refusal::new(ErrorCode::Malformed, why));
        if o.kind != CoordKind::Lease {
            return malformed(format!("a {} is not a lease", o.kind));
        }
        if o.ciphertext.len() > MAX_LEASE_PLAINTEXT + claudemesh_crypto::boxes::MAC_BYTES {
            return malformed(format!(
                "a lease holds at most {MAX_LEASE_PLAINTEXT} bytes (its paths and reason)"
            ));
        }
        if !(MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(&self.ttl_ms) {
            return malformed(format!(
                "a lease lasts {MIN_LEASE_TTL_MS} to {MAX_LEASE_TTL_MS} ms, not {}",
                self.ttl_ms
            ));
        }
        let (tags, probe) = (self.tags.len(), self.probe.len());
        if tags == 0
            || !tags.is_multiple_of(LEASE_TAGS_PER_PATH)
            || tags > MAX_LEASE_PATHS * LEASE_TAGS_PER_PATH
        {
            return malformed(format!(
                "a lease has {LEASE_TAGS_PER_PATH} tags per path and at most {MAX_LEASE_PATHS} \
                 paths, not {tags} tags"
            ));
        }
        if probe == 0
            || !probe.is_multiple_of(LEASE_PROBES_PER_PATH)
            || probe > MAX_LEASE_PATHS * LEASE_PROBES_PER_PATH * MAX_LEASE_PROBE_EPOCHS
        {
            return malformed(format!(
                "a probe has {LEASE_PROBES_PER_PATH} tags per path and key epoch, for at most \
                 {MAX_LEASE_PATHS} paths and {MAX_LEASE_PROBE_EPOCHS} epochs, not {probe} tags"
            ));
        }
        check_authored(&o, session, mesh).await?;
        let object_json = serde_json::to_string(&*o).map_err(|e| {
            tracing::error!(error = %e, "serializing a lease failed");
            Refusal::internal("the broker could not store it")
        })?;
        let now_ms = crate::now_ms();
        let expires_at_ms = now_ms.saturating_add(self.ttl_ms);
        let take = LeaseTakeRequest {
            new: NewCoordObject {
                mesh: mesh.id,
                kind: CoordKind::Lease,
                id: o.id,
                author_member: session.member,
                epoch: o.epoch,
                object_json,
                now_ms,
            },
            session: session.session,
            exclusive: self.exclusive,
            expires_at_ms,
            tags: self.tags,
            probe: self.probe,
            max_per_member: MAX_LEASES_PER_MEMBER as u64,
            max_conflicts: MAX_LEASE_CONFLICTS,
            max_conflict_bytes: LEASE_CONFLICT_BYTES,
            departed: mesh.read_log(|l| l.roster.departed().keys().copied().collect()),
        };
        let outcome = broker.store.lease_take(&take).await.map_err(|e| {
            metrics::counter!(m::STORE_ERRORS).increment(1);
            tracing::error!(error = %e, "taking a lease failed");
            Refusal::internal("the broker could not take it; try again")
        })?;
        let answer = match outcome {
            LeaseOutcome::Granted { cseq } => {
                metrics::counter!(m::COORD_WRITES, "op" => "lease").increment(1);
                mesh.coord_changed(&[CoordKind::Lease], Some(session.conn_id));
                LeaseAnswer {
                    req: self.req,
                    granted: true,
                    id: o.id,
                    expires_at_ms,
                    cseq,
                    conflicts: Vec::new(),
                }
            }
            LeaseOutcome::Conflict(rows) => LeaseAnswer {
                req: self.req,
                granted: false,
                id: o.id,
                expires_at_ms: 0,
                cseq: 0,
                conflicts: rows
                    .into_iter()
                    .filter_map(|r| {
                        // Stored only after it verified: only an altered
                        // database fails here (logged by category).
                        let object = serde_json::from_str::<CoordObject>(&r.object_json)
                            .map_err(|e| {
                                tracing::error!(category = ?e.classify(), "a stored lease does not parse");
                            })
                            .ok()?;
                        Some(LeaseHeld {
                            id: r.id,
                            holder: MemberKey(r.holder),
                            session: SessionKey(r.session),
                            exclusive: r.exclusive,
                            expires_at_ms: r.expires_at_ms,
                            object: Box::new(object),
                        })
                    })
                    .collect(),
            },
            LeaseOutcome::TooMany => {
                return Err(Refusal::new(
                    ErrorCode::Refused,
                    format!(
                        "this member holds {MAX_LEASES_PER_MEMBER} live leases, the most it may; \
                         release some first"
                    ),
                ));
            }
            LeaseOutcome::Exists => {
                return malformed(format!(
                    "lease {} is (or was) stored already; take it with a new id",
                    o.id
                ));
            }
        };
        Ok(Reply::Frame(BrokerFrame::LeaseAnswer(answer)))
    }
}

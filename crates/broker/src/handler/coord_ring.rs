//! `coord_ring`: the mesh's coordination key ring links after an epoch, by
//! epoch then signer, as stored (readers verify each and choose whose to
//! trust). A page holds whole epochs and stops past `COORD_PAGE_BYTES`, so
//! it fits a frame however many rekeys a mesh has seen.

use claudemesh_crypto::coord::RingLink;
use claudemesh_proto::BrokerFrame;
use claudemesh_proto::frames::{CoordRingPage, CoordRingQuery};
use claudemesh_proto::limits::COORD_PAGE_BYTES;

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::metrics as m;

impl Handle for CoordRingQuery {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let Caller { broker, mesh, .. } = caller;
        let stored = broker
            .store
            .coord_ring(&mesh.id, self.after)
            .await
            .map_err(|e| {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::error!(error = %e, "reading the ring failed");
                Refusal::internal("the broker could not read the ring; try again")
            })?;
        let (mut links, mut bytes, mut more) = (Vec::new(), 0usize, false);
        let mut last_epoch = None;
        for (epoch, json) in &stored {
            // Cut only between epochs: the next page starts after the last
            // epoch of this one, so an epoch is never split.
            if bytes >= COORD_PAGE_BYTES && last_epoch != Some(*epoch) {
                more = true;
                break;
            }
            last_epoch = Some(*epoch);
            bytes += json.len();
            match serde_json::from_str::<RingLink>(json) {
                Ok(link) => links.push(link),
                Err(e) => {
                    // Stored only after it parsed and verified: only an
                    // altered database gets here. No error text: it may
                    // quote the link.
                    tracing::error!(
                        category = ?e.classify(),
                        line = e.line(),
                        column = e.column(),
                        "a stored ring link does not parse; skipped"
                    );
                }
            }
        }
        Ok(Reply::Frame(BrokerFrame::CoordRingPage(CoordRingPage {
            req: self.req,
            links,
            more,
        })))
    }
}

//! `grants_set`: the caller's member replaces its signed grant set (who may
//! message it, see its presence, …); verified, then stored.

use claudemesh_proto::BrokerFrame;
use claudemesh_proto::frames::{GrantsSetFrame, GrantsStored};

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::grant_table::GrantsSetError;

impl Handle for GrantsSetFrame {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        handle(caller, self).await
    }
}

/// Stores a grant set and answers `grants_stored` with the version held.
async fn handle(caller: Caller<'_>, f: GrantsSetFrame) -> Result<Reply, Refusal> {
    let Caller {
        broker,
        session,
        mesh,
    } = caller;
    let version = mesh
        .set_grants(&*broker.store, &session.member, *f.grants)
        .await
        .map_err(|e| {
            if let GrantsSetError::Store(err) = &e {
                tracing::error!(error = %err, "storing grants failed");
            }
            Refusal::new(e.code(), e.to_string())
        })?;
    Ok(Reply::Frame(BrokerFrame::GrantsStored(GrantsStored {
        req: f.req,
        version,
    })))
}

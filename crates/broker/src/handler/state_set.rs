//! `state_set`: writes a shared state entry at a version. The entry is a
//! sealed, signed object of kind `state` filed under its key's keyed hash;
//! the broker checks it as a `coord_put` and stores it only if the entry is
//! at the version before the write's, under the mesh's coordination lock,
//! so of concurrent writers of one version exactly one wins, on any
//! replica. A moved version is an answer (`ok: false` with the entry as it
//! is), not an error.

use claudemesh_crypto::coord::{CoordKind, CoordObject};
use claudemesh_crypto::grants::Cap;
use claudemesh_proto::frames::{StateAnswer, StateSet};
use claudemesh_proto::limits::MAX_COORD_PER_MEMBER;
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::coord_put::{check_authored, coord_refusal};
use super::{Caller, Context, Handle, Refusal, Reply};
use crate::metrics as m;
use crate::store::{NewCoordObject, StateOutcome};

impl Handle for StateSet {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let Caller {
            broker,
            session,
            mesh,
        } = caller;
        let o = self.object;
        o.check_shape().map_err(coord_refusal)?;
        if o.kind != CoordKind::State {
            return Err(Refusal::new(
                ErrorCode::Malformed,
                format!("a {} is not a shared state entry", o.kind),
            ));
        }
        if o.rev == 0 {
            return Err(Refusal::new(
                ErrorCode::Malformed,
                "an entry's rev is the version it makes: at least 1",
            ));
        }
        check_authored(&o, session, mesh).await?;
        let object_json = serde_json::to_string(&*o).map_err(|e| {
            tracing::error!(error = %e, "serializing a state entry failed");
            Refusal::internal("the broker could not store it")
        })?;
        let new = NewCoordObject {
            mesh: mesh.id,
            kind: CoordKind::State,
            id: o.id,
            author_member: session.member,
            epoch: o.epoch,
            object_json,
            now_ms: crate::now_ms(),
        };
        let outcome = broker
            .store
            .state_put(&new, o.rev, MAX_COORD_PER_MEMBER as u64)
            .await
            .map_err(|e| {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::error!(error = %e, "storing a state entry failed");
                Refusal::internal("the broker could not store it; try again")
            })?;
        let answer = match outcome {
            StateOutcome::Stored { cseq } => {
                metrics::counter!(m::COORD_WRITES, "op" => "state").increment(1);
                mesh.coord_changed(&[CoordKind::State], Some(session.conn_id));
                StateAnswer {
                    req: self.req,
                    ok: true,
                    id: o.id,
                    version: o.rev,
                    cseq,
                    current: None,
                }
            }
            StateOutcome::Moved {
                version,
                object_json,
                cseq,
            } => StateAnswer {
                req: self.req,
                ok: false,
                id: o.id,
                version,
                cseq,
                // Stored only after it verified: only an altered database
                // fails to parse (logged by category, never by contents).
                // An entry its writer's grants keep from this member (TM7)
                // is not handed over here either: the version alone lets
                // a blind write go on.
                current: object_json
                    .and_then(|j| {
                        serde_json::from_str::<CoordObject>(&j)
                            .map_err(|e| {
                                tracing::error!(category = ?e.classify(), "a stored state entry does not parse");
                            })
                            .ok()
                    })
                    .filter(|c| {
                        mesh.grants_allow(&c.author.member.0, &session.member, Cap::State)
                    })
                    .map(Box::new),
            },
            StateOutcome::TooMany => {
                return Err(Refusal::new(
                    ErrorCode::Refused,
                    format!(
                        "this member has {MAX_COORD_PER_MEMBER} coordination objects stored, the \
                         most it may; delete some first"
                    ),
                ));
            }
        };
        Ok(Reply::Frame(BrokerFrame::StateAnswer(answer)))
    }
}

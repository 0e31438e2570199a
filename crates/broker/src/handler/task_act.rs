//! `task_act`: claims, releases or completes a task. The act is a sealed,
//! signed object (its kind says which, its `rev` the version it makes); the
//! broker checks it as a `coord_put`, then applies it with the store's
//! task state machine under the mesh's coordination lock, so of concurrent
//! claims of one version exactly one wins, on any replica. A lost race is
//! an answer (`ok: false` and the task as it stands), not an error.

use claudemesh_crypto::coord::{CoordKind, CoordObject};
use claudemesh_crypto::grants::Cap;
use claudemesh_crypto::log::Roster;
use claudemesh_crypto::{MemberKey, PublicKey};
use claudemesh_proto::frames::{TaskActFrame, TaskState};
use claudemesh_proto::{BrokerFrame, ErrorCode};

use super::coord_forget::is_admin;
use super::coord_put::{check_authored, coord_refusal};
use super::{Caller, Context, Handle, Refusal, Reply};
use crate::metrics as m;
use crate::store::{TaskActOutcome, TaskActRequest, TaskRow};

impl Handle for TaskActFrame {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let Caller {
            broker,
            session,
            mesh,
        } = caller;
        let act = self.act;
        act.check_shape().map_err(coord_refusal)?;
        if !act.kind.is_task_act() {
            return Err(Refusal::new(
                ErrorCode::Malformed,
                format!("a {} is not an act on a task", act.kind),
            ));
        }
        if act.rev < 2 {
            return Err(Refusal::new(
                ErrorCode::Malformed,
                "an act's rev is the version it makes: at least 2",
            ));
        }
        // An act is sealed to the task's scope: to its topic's members, for
        // a task sealed to a topic (so only they may act on it).
        let task_scope = match broker
            .store
            .coord_object(&mesh.id, CoordKind::Task, &act.id)
            .await
            .map_err(|e| {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::error!(error = %e, "reading a task failed");
                Refusal::internal("the broker could not read the task; try again")
            })? {
            Some(json) => parse_act(&json)?.scope,
            None => {
                return Err(Refusal::new(
                    ErrorCode::NotFound,
                    format!("no task {} in this mesh", act.id),
                ));
            }
        };
        if act.scope != task_scope {
            // Not named: a member outside a topic knows a withheld task's
            // id, and must not learn its topic by sending a wrong act.
            return Err(Refusal::new(
                ErrorCode::Malformed,
                "an act on a task is sealed to the task's own scope (the mesh, or its topic)",
            ));
        }
        check_authored(&act, session, mesh).await?;
        let act_json = serde_json::to_string(&*act).map_err(|e| {
            tracing::error!(error = %e, "serializing a task act failed");
            Refusal::internal("the broker could not store it")
        })?;
        let request = TaskActRequest {
            mesh: mesh.id,
            id: act.id,
            kind: act.kind,
            version: act.rev,
            actor: session.member,
            force: self.force,
            actor_is_admin: self.force && is_admin(mesh, &session.member).await,
            refused_by: mesh.grants_refusing(&session.member, Cap::Task),
            departed: mesh.read_log(|l| released_by_leaving(&l.roster, act.topic())),
            act_json,
            now_ms: crate::now_ms(),
        };
        let outcome = broker.store.task_act(&request).await.map_err(|e| {
            metrics::counter!(m::STORE_ERRORS).increment(1);
            tracing::error!(error = %e, "applying a task act failed");
            Refusal::internal("the broker could not apply it; try again")
        })?;
        let answer = |ok: bool, row: TaskRow| -> Result<Reply, Refusal> {
            let act = match row.act_json.as_deref() {
                None => None,
                Some(json) => Some(Box::new(parse_act(json)?)),
            };
            Ok(Reply::Frame(BrokerFrame::TaskState(TaskState {
                req: self.req.clone(),
                ok,
                id: request.id,
                version: row.version,
                phase: row.phase,
                holder: row.holder.map(MemberKey),
                act,
                cseq: row.cseq,
            })))
        };
        match outcome {
            TaskActOutcome::Applied(row) => {
                metrics::counter!(m::COORD_WRITES, "op" => request.kind.as_str()).increment(1);
                mesh.coord_changed(&[CoordKind::Task], Some(session.conn_id));
                answer(true, row)
            }
            TaskActOutcome::Lost(row) => answer(false, row),
            TaskActOutcome::Held(_) if self.force => Err(Refusal::new(
                ErrorCode::Forbidden,
                "only the task's creator, an owner or an admin may take a task another member \
                 claimed",
            )),
            TaskActOutcome::Held(row) => answer(false, row),
            TaskActOutcome::Refused(_) => Err(Refusal::new(
                ErrorCode::Forbidden,
                "refused: the task's creator does not let you take on its tasks (grants)",
            )),
            TaskActOutcome::NotFound => Err(Refusal::new(
                ErrorCode::NotFound,
                format!("no task {} in this mesh", request.id),
            )),
        }
    }
}

/// The members whose claims bind no one on a task of `topic` (or of the
/// whole mesh): those who left the mesh, and for a topic's task, the
/// mesh's members who are not (or no longer) in the topic.
fn released_by_leaving(roster: &Roster, topic: Option<&str>) -> Vec<PublicKey> {
    let mut out: Vec<PublicKey> = roster.departed().keys().copied().collect();
    if let Some(info) = topic.and_then(|t| roster.topic(t)) {
        out.extend(
            roster
                .members()
                .keys()
                .filter(|m| !info.members.contains_key(*m))
                .copied(),
        );
    }
    out
}

/// A stored object or act: it parsed and verified before it was stored, so
/// only an altered database fails here (logged by category, never by
/// contents).
fn parse_act(json: &str) -> Result<CoordObject, Refusal> {
    serde_json::from_str(json).map_err(|e| {
        tracing::error!(
            category = ?e.classify(),
            "a stored task or task act does not parse"
        );
        Refusal::internal("the broker's copy of the task is damaged")
    })
}

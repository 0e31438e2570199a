//! `coord_sync`: one page of the mesh's changes to a kind of coordination
//! object after a feed position, oldest first, each object at its latest
//! change (without contents once forgotten), cut to fit a frame. An
//! object whose author's grants refuse the reader its kind's capability
//! (`task`, `state`, `memory`) is sent as withheld: its id and position
//! only, like a forgotten one, so the reader's copy drops it; so is a task
//! sealed to a topic the reader is not in. Each page carries a generation
//! (the mesh's grants generation; for tasks, combined with its log's
//! length), so a reader that was refused something syncs again from the
//! start once any grant (or, for tasks, topic membership) changes.

use std::collections::HashMap;

use claudemesh_crypto::coord::{CoordKind, CoordObject};
use claudemesh_crypto::grants::Cap;
use claudemesh_proto::BrokerFrame;
use claudemesh_proto::frames::{CoordChange, CoordPage, CoordSync};
use claudemesh_proto::limits::COORD_PAGE_BYTES;

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::metrics as m;

impl Handle for CoordSync {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let Caller {
            broker,
            mesh,
            session,
        } = caller;
        let (rows, more) = broker
            .store
            .coord_changes(&mesh.id, self.kind, self.after, COORD_PAGE_BYTES as u64)
            .await
            .map_err(|e| {
                metrics::counter!(m::STORE_ERRORS).increment(1);
                tracing::error!(error = %e, "reading the coordination feed failed");
                Refusal::internal("the broker could not read the feed; try again")
            })?;
        // The generation these rows are judged under, taken before judging
        // them: a grant changed meanwhile shows as a newer one next time,
        // so the reader syncs again rather than trusting this page.
        // For tasks the log's length is part of it: a task sealed to a
        // topic is withheld from those outside the topic, and joining one
        // is a log entry, so a reader who was refused one syncs again
        // after it. Rotated, not added, so a grant change and an entry
        // never cancel out into the same number.
        let grants = match self.kind {
            CoordKind::Task => {
                mesh.grants_generation().rotate_left(32) ^ mesh.read_log(|l| l.entries.len() as u64)
            }
            _ => mesh.grants_generation(),
        };
        // Which topics the reader is in, looked up once per topic.
        let mut in_topic: HashMap<String, bool> = HashMap::new();
        // The head moves past every row read, one skipped included, so a
        // client never asks for the same page forever.
        let head = rows.last().map_or(self.after, |r| r.cseq);
        let mut changes = Vec::with_capacity(rows.len());
        for r in rows {
            let object = match r.object_json {
                None => None,
                Some(json) => match serde_json::from_str::<CoordObject>(&json) {
                    Ok(o) => Some(Box::new(o)),
                    Err(e) => {
                        // Stored only after it parsed and verified: only an
                        // altered database gets here. The error's category
                        // and place only: its text may quote the object.
                        tracing::error!(
                            cseq = r.cseq,
                            category = ?e.classify(),
                            line = e.line(),
                            column = e.column(),
                            "a stored coordination object does not parse; skipped"
                        );
                        continue;
                    }
                },
            };
            // A task its reader holds (its last act is the reader's claim)
            // is never withheld: giving it back stays the holder's to do.
            let holds = || {
                r.act_json.as_deref().is_some_and(|json| {
                    serde_json::from_str::<CoordObject>(json).is_ok_and(|a| {
                        a.kind == CoordKind::TaskClaim && a.author.member.0 == session.member
                    })
                })
            };
            // Outside the topic a task is sealed to, it is withheld even
            // from its holder: the claim binds no one once its claimant
            // left the topic, and only members may act on it.
            let outside = object.as_ref().and_then(|o| o.topic()).is_some_and(|t| {
                !*in_topic.entry(t.to_owned()).or_insert_with(|| {
                    mesh.read_log(|l| {
                        l.roster
                            .topic(t)
                            .is_some_and(|i| i.members.contains_key(&session.member))
                    })
                })
            });
            let refused = object.as_ref().is_some_and(|o| {
                Cap::for_coord(o.kind)
                    .is_some_and(|cap| !mesh.grants_allow(&o.author.member.0, &session.member, cap))
            }) && !holds();
            let withheld = outside || refused;
            if withheld {
                metrics::counter!(m::COORD_WITHHELD).increment(1);
                changes.push(CoordChange {
                    cseq: r.cseq,
                    id: r.id,
                    object: None,
                    act: None,
                    expires_at_ms: None,
                    withheld: true,
                });
                continue;
            }
            // A task's last act: stored after it verified, as the object.
            let act = r.act_json.and_then(|json| {
                serde_json::from_str::<CoordObject>(&json)
                    .map_err(|e| {
                        tracing::error!(
                            cseq = r.cseq,
                            category = ?e.classify(),
                            "a stored task act does not parse; the task is sent without it"
                        );
                    })
                    .ok()
                    .map(Box::new)
            });
            changes.push(CoordChange {
                cseq: r.cseq,
                id: r.id,
                object,
                act,
                expires_at_ms: r.expires_at_ms,
                withheld: false,
            });
        }
        Ok(Reply::Frame(BrokerFrame::CoordPage(CoordPage {
            req: self.req,
            kind: self.kind,
            changes,
            head,
            more,
            grants,
        })))
    }
}

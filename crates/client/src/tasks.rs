//! Tasks (issue 17 item 1, `docs/protocol.md` "Tasks"): work items sealed
//! to the mesh, or to one topic's members, that members claim, release and
//! complete, with the broker
//! arbitrating who holds one but never reading its title, body or result.
//! This module owns what a task is ([`Task`], its plaintext and the rules
//! of its input), the [`MeshClient`] requests (`task_create`, `task_list`,
//! `task_show`, `task_claim`, `task_release`, `task_complete`,
//! `task_delete`, `task_sync`) and what a device accepts from the feed.
//!
//! A task is a [`CoordObject`] of kind `task` sealed under the coordination
//! key of its epoch, like a memory note. Each act on it (claim, release,
//! completion) is another sealed, signed object whose kind says which and
//! whose `rev` is the version it makes; the broker applies it only to the
//! task at the version before, under its mesh lock, so of concurrent
//! claims exactly one wins. The feed carries each task with its last act.
//! A device verifies both (signatures, certificates, authors admitted by
//! its verified roster) and opens both every time it reads them; a task
//! whose object or act fails is not shown (it is logged by id and why),
//! so a broker can hide a task or replay nothing but what was signed for
//! that version. A broker can still keep an older act back; the act it
//! shows is always one the named member signed for the version shown.
//!
//! Nothing here logs a title, body, result or key.

use std::str::FromStr;

use claudemesh_crypto::coord::{CoordFacts, CoordId, CoordKind};
use claudemesh_crypto::grants::{Cap, Decision};
use claudemesh_crypto::{MemberKey, SessionKey};
use claudemesh_proto::frames::{CoordForget, TaskActFrame, TaskPhase};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::client::{MeshClient, now_ms};
use crate::coord_mirror::offline_ok;
use crate::error::{BadInput, ClientError};
use crate::local::StoredItem;
use crate::memory::{MIN_ID_PREFIX, SyncPass, normalize_tags, seal_coord_in};
use crate::session::unexpected;

/// Most bytes of a task's title (after trimming).
pub const MAX_TITLE: usize = 256;
/// Most bytes of a task's body, or of a completion's result.
pub const MAX_TASK_TEXT: usize = 8192;

/// How urgent a task is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskPriority {
    /// When there is time.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Before the normal ones.
    High,
    /// Drop other things.
    Urgent,
}

impl TaskPriority {
    /// The spelling users type and JSON carries.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskPriority::Low => "low",
            TaskPriority::Normal => "normal",
            TaskPriority::High => "high",
            TaskPriority::Urgent => "urgent",
        }
    }
}

impl FromStr for TaskPriority {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Ok(TaskPriority::Low),
            "normal" => Ok(TaskPriority::Normal),
            "high" => Ok(TaskPriority::High),
            "urgent" => Ok(TaskPriority::Urgent),
            _ => Err(ClientError::BadInput(BadInput::Task {
                field: "priority",
                reason: format!("{s:?} is none of low, normal, high, urgent"),
            })),
        }
    }
}

/// A task to create.
#[derive(Debug, Clone, Default)]
pub struct TaskDraft {
    /// One line: what is to be done (1–256 bytes).
    pub title: String,
    /// More detail (at most 8 KiB).
    pub body: Option<String>,
    /// A peer (name or key) it is meant for; anyone may still claim it.
    pub assignee: Option<String>,
    /// How urgent (normal when absent).
    pub priority: Option<TaskPriority>,
    /// Tags (at most 16, each at most 32 bytes; lowercased).
    pub tags: Vec<String>,
    /// When it is due, unix ms.
    pub due_ms: Option<u64>,
    /// A topic (`ops` or `#ops`) whose members alone see and take on the
    /// task: it is sealed to them. The whole mesh when absent.
    pub topic: Option<String>,
}

/// A task as this device can show it: its sealed contents opened, and where
/// it stands by the last act the feed carried, verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    /// Its id (32 hex digits in JSON).
    pub id: CoordId,
    /// The topic it is sealed to (its members alone see it), without `#`;
    /// absent for a task of the whole mesh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The title.
    pub title: String,
    /// The body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Its tags, lowercase.
    pub tags: Vec<String>,
    /// How urgent.
    pub priority: TaskPriority,
    /// When it is due, unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
    /// The member it is meant for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<MemberKey>,
    /// The assignee's display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee_name: Option<String>,
    /// Its creator.
    pub creator: MemberKey,
    /// The creator's display name.
    pub creator_name: String,
    /// When it was created (the creator's clock), unix ms.
    pub created_at_ms: u64,
    /// `open`, `claimed` or `done`.
    pub status: TaskPhase,
    /// Who claimed it (claimed) or completed it (done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<MemberKey>,
    /// The holder's display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_name: Option<String>,
    /// The holder's session that signed the act.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_session: Option<SessionKey>,
    /// 1 when created, one more per act.
    pub version: u64,
    /// When the last act was signed (or the creation), unix ms.
    pub updated_at_ms: u64,
    /// What the completer reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// This member created the task and its grants refuse the holder
    /// `task` (TM7's second check): a broker with an older grant set, or
    /// one that ignores grants, let a refused member take it. Its creator
    /// may release it with `--force`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub holder_refused: bool,
    /// The claimant left the mesh (or was removed): the claim binds no
    /// one, and anyone may claim, give back or complete the task.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub holder_departed: bool,
}

/// Which tasks a listing shows.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only these phases (empty: open and claimed).
    pub status: Vec<TaskPhase>,
    /// Only tasks meant for, or held by, this member.
    pub assignee: Option<MemberKey>,
    /// Only tasks carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only the tasks sealed to this topic (`ops` or `#ops`).
    pub topic: Option<String>,
}

/// A task's plaintext, as sealed.
#[derive(Debug, Serialize, Deserialize)]
struct TaskBody {
    title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    assignee: Option<MemberKey>,
    #[serde(default)]
    priority: TaskPriority,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_ms: Option<u64>,
}

/// An act's plaintext, as sealed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ActBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<String>,
}

/// A free text field: trimmed, at most `max` bytes, no control characters
/// but newlines and tabs (`None` when empty).
fn text_field(field: &'static str, text: &str, max: usize) -> Result<Option<String>, ClientError> {
    let t = text.trim();
    let bad = |reason: String| ClientError::BadInput(BadInput::Task { field, reason });
    if t.len() > max {
        return Err(bad(format!("{} bytes, at most {max}", t.len())));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad("control characters are not allowed".into()));
    }
    Ok((!t.is_empty()).then(|| t.to_owned()))
}

/// A title: one line, 1 to [`MAX_TITLE`] bytes.
fn title_of(title: &str) -> Result<String, ClientError> {
    let t = text_field("title", title, MAX_TITLE)?.ok_or_else(|| {
        ClientError::BadInput(BadInput::Task {
            field: "title",
            reason: "it is empty".into(),
        })
    })?;
    if t.contains('\n') || t.contains('\t') {
        return Err(ClientError::BadInput(BadInput::Task {
            field: "title",
            reason: "one line only; put the rest in the body".into(),
        }));
    }
    Ok(t)
}

/// `input` as a task id or id prefix (lowercase): 4 to 32 hex digits.
pub fn task_id_prefix(input: &str) -> Result<String, ClientError> {
    let prefix = input.trim().to_ascii_lowercase();
    if prefix.len() < MIN_ID_PREFIX
        || prefix.len() > 32
        || !prefix.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(ClientError::BadInput(BadInput::TaskId {
            input: input.to_owned(),
        }));
    }
    Ok(prefix)
}

/// The wording of where a task stands, for a lost act ("claimed by bob").
pub fn describe(task: &Task) -> String {
    let by = task.holder_name.as_deref().unwrap_or("someone");
    let by = if task.holder_refused {
        format!("{by}, whom your grants refuse tasks")
    } else if task.holder_departed && task.status == TaskPhase::Claimed {
        match &task.topic {
            Some(t) => format!("{by}, who left #{t} or the mesh (anyone in #{t} may claim it)"),
            None => format!("{by}, who left the mesh (anyone may claim it)"),
        }
    } else {
        by.to_owned()
    };
    match task.status {
        TaskPhase::Open => "it is open (nobody holds it)".into(),
        TaskPhase::Claimed => format!("it is claimed by {by}"),
        TaskPhase::Done => format!("it is done (by {by})"),
    }
}

/// An answer to a task request from a broker that predates tasks.
fn unsupported(e: ClientError) -> ClientError {
    match e {
        ClientError::MemoryUnsupported
        | ClientError::Refused {
            code: ErrorCode::UnknownType,
            ..
        } => ClientError::TasksUnsupported,
        e => e,
    }
}

/// The phase and holder an act makes.
fn phase_of(kind: CoordKind, signer: MemberKey) -> Option<(TaskPhase, Option<MemberKey>)> {
    match kind {
        CoordKind::TaskClaim => Some((TaskPhase::Claimed, Some(signer))),
        CoordKind::TaskRelease => Some((TaskPhase::Open, None)),
        CoordKind::TaskDone => Some((TaskPhase::Done, Some(signer))),
        _ => None,
    }
}

/// Sorts tasks for a listing: unfinished first, the most urgent and then
/// the oldest first; finished ones after, the latest first.
fn sort_tasks(tasks: &mut [Task]) {
    tasks.sort_by(|a, b| {
        let done = |t: &Task| t.status == TaskPhase::Done;
        done(a).cmp(&done(b)).then_with(|| {
            if done(a) {
                b.updated_at_ms.cmp(&a.updated_at_ms)
            } else {
                b.priority
                    .cmp(&a.priority)
                    .then(a.created_at_ms.cmp(&b.created_at_ms))
            }
        })
    });
}

impl MeshClient {
    /// Creates a task for the whole mesh: sealed under the current epoch's
    /// coordination key and stored by the broker (rotating the mesh key
    /// first when that falls to this member, and sealing again once after
    /// a `rekey_required`, as `memory_remember` does).
    pub async fn task_create(&self, draft: TaskDraft) -> Result<Task, ClientError> {
        let title = title_of(&draft.title)?;
        let body = match &draft.body {
            Some(b) => text_field("body", b, MAX_TASK_TEXT)?,
            None => None,
        };
        let tags = normalize_tags(&draft.tags)?;
        let topic = draft
            .topic
            .as_deref()
            .map(crate::topics::topic_name)
            .transpose()?;
        let assignee = match &draft.assignee {
            Some(peer) => Some(crate::grants::resolve_member(self, peer).await?),
            None => None,
        };
        if let (Some(t), Some(a)) = (&topic, &assignee) {
            // A task sealed to a topic is for its members: one outside it
            // could neither read it nor claim it.
            let outside = self.with_state(|s| {
                s.roster()
                    .topic(t)
                    .is_some_and(|info| !info.members.contains_key(a.as_key()))
                    .then(|| s.name_of(a.as_key()))
            });
            if let Some(name) = outside {
                return Err(ClientError::BadInput(BadInput::Task {
                    field: "assignee",
                    reason: format!(
                        "{name} is not in #{t}, so could not see the task; add them first \
                         (`claudemesh topic add {t} {name}`) or leave out --topic"
                    ),
                }));
            }
        }
        let plaintext = serde_json::to_vec(&TaskBody {
            title,
            body,
            assignee,
            priority: draft.priority.unwrap_or_default(),
            tags,
            due_ms: draft.due_ms,
        })
        .map_err(|e| ClientError::Local(format!("cannot encode a task: {e}")))?;
        let facts = CoordFacts {
            kind: CoordKind::Task,
            id: CoordId::random(),
            rev: 1,
            at_ms: now_ms(),
        };
        let id = facts.id;
        let (facts, plaintext, topic) = (&facts, &plaintext, topic.as_deref());
        self.resealing_in(topic, || async move {
            let object = self.with_state(|s| {
                seal_coord_in(s, topic, facts.clone(), plaintext, |reason| {
                    ClientError::BadInput(BadInput::Task {
                        field: "body",
                        reason,
                    })
                })
            })?;
            self.coord_put_object(object, "store the task").await
        })
        .await
        .map_err(unsupported)?;
        self.task_sync().await?;
        self.task_by_id(id)
            .await?
            .ok_or_else(|| ClientError::Local("the task just stored cannot be read back".into()))
    }

    /// The tasks `filter` selects, in listing order. Syncs first; when the
    /// broker cannot be reached, lists this device's copy as it is.
    pub async fn task_list(&self, filter: &TaskFilter) -> Result<Vec<Task>, ClientError> {
        let tags = normalize_tags(&filter.tags)?;
        let topic = filter
            .topic
            .as_deref()
            .map(crate::topics::topic_name)
            .transpose()?;
        offline_ok(self.task_sync().await, "tasks")?;
        let mut pass = SyncPass::default();
        let mut out = Vec::new();
        for row in self
            .local()
            .coord_items(&self.mesh().id, CoordKind::Task)
            .await?
        {
            let Some(task) = self.read_task(&row, &mut pass).await? else {
                continue;
            };
            let status_ok = if filter.status.is_empty() {
                task.status != TaskPhase::Done
            } else {
                filter.status.contains(&task.status)
            };
            let assignee_ok = filter
                .assignee
                .is_none_or(|m| task.assignee == Some(m) || task.holder == Some(m));
            let tags_ok = tags.iter().all(|t| task.tags.contains(t));
            let topic_ok = topic.is_none() || task.topic == topic;
            if status_ok && assignee_ok && tags_ok && topic_ok {
                out.push(task);
            }
        }
        sort_tasks(&mut out);
        Ok(out)
    }

    /// One task, named by its id or a unique prefix of at least
    /// [`MIN_ID_PREFIX`] hex digits (after a sync).
    pub async fn task_show(&self, id_or_prefix: &str) -> Result<Task, ClientError> {
        let id = self.synced_task_id(id_or_prefix).await?;
        self.readable_task(id).await
    }

    /// Claims a task for this member. Claiming a task this member holds
    /// already changes nothing.
    pub async fn task_claim(&self, id_or_prefix: &str) -> Result<Task, ClientError> {
        self.act_on(id_or_prefix, CoordKind::TaskClaim, false, None)
            .await
    }

    /// Gives a claimed task back (open again). `force` takes it from another
    /// member's claim: its creator's, an owner's or an admin's to do.
    pub async fn task_release(&self, id_or_prefix: &str, force: bool) -> Result<Task, ClientError> {
        self.act_on(id_or_prefix, CoordKind::TaskRelease, force, None)
            .await
    }

    /// Completes a task, with what came of it. An open task may be
    /// completed by anyone; a claimed one by its claimant, or forced.
    pub async fn task_complete(
        &self,
        id_or_prefix: &str,
        result: Option<&str>,
        force: bool,
    ) -> Result<Task, ClientError> {
        let result = match result {
            Some(r) => text_field("result", r, MAX_TASK_TEXT)?,
            None => None,
        };
        self.act_on(id_or_prefix, CoordKind::TaskDone, force, result)
            .await
    }

    /// Deletes a task for everyone (its creator, an owner or an admin
    /// may). Returns its id.
    pub async fn task_delete(&self, id_or_prefix: &str) -> Result<CoordId, ClientError> {
        let id = self.synced_task_id(id_or_prefix).await?;
        let short_id = id.to_hex()[..8].to_owned();
        let frame = self
            .session()
            .request(
                |req| {
                    ClientFrame::CoordForget(CoordForget {
                        req: Some(req),
                        kind: CoordKind::Task,
                        id,
                    })
                },
                "delete the task",
            )
            .await
            .map_err(|e| match unsupported(e) {
                ClientError::Refused {
                    code: ErrorCode::Forbidden,
                    ..
                } => ClientError::NotAllowed(format!(
                    "only the creator of task {short_id}, an owner or an admin can delete it"
                )),
                e => e,
            })?;
        match frame {
            BrokerFrame::CoordStored(s) if s.id == id => {}
            other => return Err(unexpected(&other)),
        }
        self.task_sync().await?;
        Ok(id)
    }

    /// Brings this device's copy of the task feed up to date.
    pub async fn task_sync(&self) -> Result<(), ClientError> {
        self.mirror_sync(CoordKind::Task).await.map_err(unsupported)
    }

    /// Signs and sends an act on a task this device has (after a sync),
    /// at the version it shows; a lost race is [`ClientError::TaskTaken`]
    /// with where the task stands after syncing again.
    async fn act_on(
        &self,
        id_or_prefix: &str,
        kind: CoordKind,
        force: bool,
        result: Option<String>,
    ) -> Result<Task, ClientError> {
        let id = self.synced_task_id(id_or_prefix).await?;
        let task = self.readable_task(id).await?;
        let me = MemberKey(self.with_state(|s| s.my_key()));
        let short_id = id.to_hex()[..8].to_owned();
        let taken = |task: &Task| ClientError::TaskTaken {
            id: short_id.clone(),
            detail: describe(task),
        };
        // What the broker would refuse, said from this device's copy. A
        // claim of a member who left binds no one.
        match (kind, task.status) {
            (CoordKind::TaskClaim, TaskPhase::Claimed) if task.holder == Some(me) => {
                return Ok(task);
            }
            (_, TaskPhase::Claimed) if task.holder_departed => {}
            (_, TaskPhase::Done) | (CoordKind::TaskClaim, TaskPhase::Claimed) => {
                return Err(taken(&task));
            }
            (CoordKind::TaskRelease, TaskPhase::Open) => return Err(taken(&task)),
            _ => {}
        }
        let plaintext = serde_json::to_vec(&ActBody { result })
            .map_err(|e| ClientError::Local(format!("cannot encode a task act: {e}")))?;
        let facts = CoordFacts {
            kind,
            id,
            rev: task.version + 1,
            at_ms: now_ms(),
        };
        let (facts, plaintext, topic) = (&facts, &plaintext, task.topic.as_deref());
        let sent = self
            .resealing_in(topic, || async move {
                let act = self.with_state(|s| {
                    seal_coord_in(s, topic, facts.clone(), plaintext, |reason| {
                        ClientError::BadInput(BadInput::Task {
                            field: "result",
                            reason,
                        })
                    })
                })?;
                self.session()
                    .request(
                        |req| {
                            ClientFrame::TaskAct(TaskActFrame {
                                req: Some(req),
                                act: Box::new(act),
                                force,
                            })
                        },
                        "apply the task act",
                    )
                    .await
            })
            .await;
        let answer = match sent {
            Err(ClientError::Refused {
                code: ErrorCode::Forbidden,
                message,
            }) => return Err(ClientError::NotAllowed(message)),
            Err(e) => return Err(unsupported(e)),
            Ok(BrokerFrame::TaskState(s)) if s.id == id => s,
            Ok(other) => return Err(unexpected(&other)),
        };
        self.task_sync().await?;
        let now = match self.task_by_id(id).await? {
            Some(now) => now,
            // The feed withholds the task from this member now (its
            // creator's grants refuse it `task`; giving a task back stays
            // allowed): where it stands is the broker's answer.
            None => self.with_state(|s| Task {
                status: answer.phase,
                holder: answer.holder,
                holder_name: answer.holder.as_ref().map(|m| s.name_of(m.as_key())),
                holder_session: None,
                version: answer.version,
                updated_at_ms: now_ms(),
                result: None,
                holder_refused: false,
                holder_departed: false,
                ..task
            }),
        };
        if answer.ok { Ok(now) } else { Err(taken(&now)) }
    }

    /// The task `id` of this device's copy, readable, or why not.
    async fn readable_task(&self, id: CoordId) -> Result<Task, ClientError> {
        self.task_by_id(id).await?.ok_or_else(|| {
            ClientError::NotFound(format!(
                "task {} cannot be read on this device (see the log for why)",
                &id.to_hex()[..8]
            ))
        })
    }

    /// The task `id` of this device's copy, if it is there and verifies.
    async fn task_by_id(&self, id: CoordId) -> Result<Option<Task>, ClientError> {
        let mut pass = SyncPass::default();
        match self
            .local()
            .coord_item(&self.mesh().id, CoordKind::Task, &id.to_hex())
            .await?
        {
            Some(row) => self.read_task(&row, &mut pass).await,
            None => Ok(None),
        }
    }

    /// Syncs, then names the task `id_or_prefix` stands for.
    async fn synced_task_id(&self, id_or_prefix: &str) -> Result<CoordId, ClientError> {
        let prefix = task_id_prefix(id_or_prefix)?;
        self.task_sync().await?;
        let matching = self
            .local()
            .coord_ids_with_prefix(&self.mesh().id, CoordKind::Task, &prefix, 8)
            .await?;
        match matching.as_slice() {
            [one] => CoordId::from_hex(one)
                .map_err(|e| ClientError::Local(format!("a stored task's id is damaged: {e}"))),
            [] => Err(ClientError::NotFound(format!(
                "no task {prefix}… (see claudemesh task list --status all)"
            ))),
            many => Err(ClientError::AmbiguousTask {
                prefix,
                candidates: many
                    .iter()
                    .map(|id| id.get(..12).unwrap_or(id).to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// A mirror row as shown, or `None` (logged with why) when its object
    /// or last act does not verify or open.
    async fn read_task(
        &self,
        row: &StoredItem,
        pass: &mut SyncPass,
    ) -> Result<Option<Task>, ClientError> {
        let id = &row.item_id;
        let hide = |what: &str, why: String| {
            tracing::warn!(id = %id, why = %why, "tasks: a task's {what} cannot be trusted or read; it is not shown");
            Ok(None)
        };
        let (object, plain) = match self
            .open_mirrored(&row.object, id, |k| k == CoordKind::Task, pass)
            .await?
        {
            Ok(o) => o,
            Err(why) => return hide("contents", why),
        };
        // A task sealed to a topic is its members' only: one this member
        // left (the feed sends it whole to members alone, but a copy synced
        // before may linger) is not shown.
        if let Some(t) = object.topic()
            && !self.with_state(|s| {
                s.roster()
                    .topic(t)
                    .is_some_and(|info| info.members.contains_key(&s.my_key()))
            })
        {
            tracing::debug!(id = %id, "tasks: a task of a topic this member is not in; not shown");
            return Ok(None);
        }
        let Ok(body) = serde_json::from_slice::<TaskBody>(&plain) else {
            return hide("contents", "they are not a task".into());
        };
        let (title, tags) = match (title_of(&body.title), normalize_tags(&body.tags)) {
            (Ok(t), Ok(tags)) => (t, tags),
            _ => return hide("contents", "they are not a well-formed task".into()),
        };
        let body_text = match body
            .body
            .as_deref()
            .map(|b| text_field("body", b, MAX_TASK_TEXT))
        {
            None => None,
            Some(Ok(b)) => b,
            Some(Err(_)) => return hide("contents", "its body is not well formed".into()),
        };
        let mut status = TaskPhase::Open;
        let mut holder = None;
        let mut holder_session = None;
        let mut version = 1;
        let mut updated_at_ms = object.at_ms;
        let mut result = None;
        if let Some(act_json) = &row.act {
            let (act, plain) = match self
                .open_mirrored(act_json, id, CoordKind::is_task_act, pass)
                .await?
            {
                Ok(o) => o,
                Err(why) => return hide("last act", why),
            };
            let (Some((phase, by)), Ok(act_body)) = (
                phase_of(act.kind, act.member()),
                serde_json::from_slice::<ActBody>(&plain),
            ) else {
                return hide("last act", "it is not a task act".into());
            };
            if act.rev < 2 {
                return hide("last act", "its version is not one an act makes".into());
            }
            if act.scope != object.scope {
                return hide(
                    "last act",
                    "it is sealed to another scope than the task".into(),
                );
            }
            status = phase;
            holder = by;
            holder_session = by.map(|_| act.author.session);
            version = act.rev;
            updated_at_ms = act.at_ms;
            result = match act_body
                .result
                .as_deref()
                .map(|r| text_field("result", r, MAX_TASK_TEXT))
            {
                None => None,
                Some(Ok(r)) => r,
                Some(Err(_)) => return hide("last act", "its result is not well formed".into()),
            };
        }
        let creator = object.member();
        let me = self.with_state(|s| s.my_key());
        // Only the creator's grants decide who may take on its tasks; read
        // them (a file) only when they could matter.
        let holder_refused = match holder {
            Some(h) if creator.0 == me && h.0 != me => self
                .session()
                .local_grants()
                .is_some_and(|set| set.allows(&h.0, Cap::Task) != Decision::Allow),
            _ => false,
        };
        Ok(Some(self.with_state(|s| {
            let name = |m: &MemberKey| s.name_of(m.as_key());
            // A claimant who left the mesh, or the topic the task is sealed
            // to, holds it no longer.
            let holder_departed = holder.is_some_and(|h| {
                matches!(
                    crate::memory::standing(s, h.as_key()),
                    crate::memory::Standing::Departed { .. }
                ) || object.topic().is_some_and(|t| {
                    s.roster()
                        .topic(t)
                        .is_none_or(|info| !info.members.contains_key(h.as_key()))
                })
            });
            Task {
                id: object.id,
                topic: object.topic().map(str::to_owned),
                title,
                body: body_text,
                tags,
                priority: body.priority,
                due_ms: body.due_ms,
                assignee: body.assignee,
                assignee_name: body.assignee.as_ref().map(name),
                creator,
                creator_name: name(&creator),
                created_at_ms: object.at_ms,
                status,
                holder,
                holder_name: holder.as_ref().map(name),
                holder_session,
                version,
                updated_at_ms,
                result,
                holder_refused,
                holder_departed,
            }
        })))
    }
}

/// A short id (the first 8 hex digits) for messages.
pub fn short_task_id(id: &CoordId) -> String {
    id.to_hex()[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_one_trimmed_line_and_bodies_bounded() {
        assert_eq!(
            title_of("  fix the login test \n").unwrap(),
            "fix the login test"
        );
        assert!(title_of("   ").is_err());
        assert!(title_of("two\nlines").is_err());
        assert!(title_of(&"x".repeat(MAX_TITLE + 1)).is_err());
        assert!(title_of("bell\u{7}").is_err());
        assert_eq!(
            text_field("body", " a\n b ", 10).unwrap().as_deref(),
            Some("a\n b")
        );
        assert_eq!(text_field("body", "  ", 10).unwrap(), None);
        assert!(text_field("body", "12345678901", 10).is_err());
    }

    #[test]
    fn priorities_parse_in_any_case_and_sort_by_urgency() {
        assert_eq!("HIGH".parse::<TaskPriority>().unwrap(), TaskPriority::High);
        assert!("soon".parse::<TaskPriority>().is_err());
        assert!(TaskPriority::Urgent > TaskPriority::High);
        assert!(TaskPriority::Normal > TaskPriority::Low);
    }

    #[test]
    fn task_ids_are_named_by_hex_prefixes_of_four_or_more() {
        assert_eq!(task_id_prefix(" 3FA2c1 ").unwrap(), "3fa2c1");
        assert!(task_id_prefix("3fa").is_err());
        assert!(task_id_prefix("zzzz").is_err());
        assert!(task_id_prefix(&"a".repeat(33)).is_err());
    }

    #[test]
    fn the_plaintext_round_trips_and_an_act_names_its_phase() {
        let body = TaskBody {
            title: "t".into(),
            body: None,
            assignee: None,
            priority: TaskPriority::Urgent,
            tags: vec!["infra".into()],
            due_ms: Some(5),
        };
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            r#"{"title":"t","priority":"urgent","tags":["infra"],"due_ms":5}"#
        );
        // A task sealed with only a title reads with the defaults.
        let back: TaskBody = serde_json::from_str(r#"{"title":"t"}"#).unwrap();
        assert_eq!(back.priority, TaskPriority::Normal);
        let m = MemberKey(claudemesh_crypto::SigningKey::generate().public());
        assert_eq!(
            phase_of(CoordKind::TaskClaim, m),
            Some((TaskPhase::Claimed, Some(m)))
        );
        assert_eq!(
            phase_of(CoordKind::TaskRelease, m),
            Some((TaskPhase::Open, None))
        );
        assert_eq!(phase_of(CoordKind::Task, m), None);
    }
}

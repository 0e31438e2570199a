//! `/api/v1/tasks`: the mesh's shared task list, as `claudemesh task`
//! keeps it (`docs/security.md` §16.1): titles, bodies and results sealed
//! to the mesh or to one topic's members, claims arbitrated by the broker
//! so that of two claimants exactly one wins (the other gets 409). Listing
//! reads the device's copy after a sync. A key limited to topics sees and
//! acts on the tasks sealed to those topics only, and creates tasks there
//! only. Taking a task from its claimant (`force`) or deleting another
//! member's task is moderation: the key needs `admin` unless this member
//! created the task.

use axum::Json;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use claudemesh_client::MeshClient;
use claudemesh_client::memory::normalize_tags;
use claudemesh_client::naming::utc_time;
use claudemesh_client::tasks::{Task, TaskDraft, TaskFilter, TaskPriority};
use claudemesh_crypto::MemberKey;
use claudemesh_crypto::coord::CoordKind;
use claudemesh_proto::frames::TaskPhase;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{Object, Params, comma_list, coordination_written, standing};
use crate::apikeys::Cap;
use crate::app::{AppState, Caller};
use crate::problem::Problem;

/// A task, opened on this device.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    /// Its id (32 hex digits).
    pub id: String,
    /// Its first 8 hex digits, as the CLI shows it.
    pub short_id: String,
    /// The topic it is sealed to (its members alone see it), without `#`;
    /// absent for a task of the whole mesh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// One line: what is to be done (a peer's words).
    pub title: String,
    /// More detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Its tags, lowercase.
    pub tags: Vec<String>,
    /// `low`, `normal`, `high` or `urgent`.
    pub priority: String,
    /// When it is due (UTC, RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// The same, unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
    /// The member it is meant for (hex); anyone may still claim it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// The assignee's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee_name: Option<String>,
    /// Its creator's member key (hex).
    pub creator: String,
    /// The creator's name.
    pub creator_name: String,
    /// When it was created (UTC, RFC 3339, the creator's clock).
    pub created_at: String,
    /// The same, unix ms.
    pub created_at_ms: u64,
    /// `open`, `claimed` or `done`.
    pub status: String,
    /// Who claimed it (claimed) or completed it (done), hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// The holder's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_name: Option<String>,
    /// 1 when created, one more per claim, release or completion.
    pub version: u64,
    /// When it last changed (UTC, RFC 3339, its signer's clock).
    pub updated_at: String,
    /// The same, unix ms.
    pub updated_at_ms: u64,
    /// What its completer reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// This member created it and its grants refuse the holder `task`.
    pub holder_refused: bool,
    /// Its claimant left the mesh: anyone may claim, give back or
    /// complete it.
    pub holder_departed: bool,
    /// This member created it.
    pub mine: bool,
    /// This member holds it (claimed, or completed it).
    pub held_by_me: bool,
    /// This member may take it from its claimant or delete it: its
    /// creator, an owner or an admin.
    pub can_force: bool,
}

impl TaskView {
    /// `t` as this member sees it.
    fn of(t: Task, (me, admin): (MemberKey, bool)) -> Self {
        let mine = t.creator == me;
        TaskView {
            id: t.id.to_hex(),
            short_id: t.id.to_hex()[..8].to_owned(),
            topic: t.topic,
            title: t.title,
            body: t.body,
            tags: t.tags,
            priority: t.priority.as_str().to_owned(),
            due: t.due_ms.map(utc_time),
            due_ms: t.due_ms,
            assignee: t.assignee.map(|a| a.to_hex()),
            assignee_name: t.assignee_name,
            creator: t.creator.to_hex(),
            creator_name: t.creator_name,
            created_at: utc_time(t.created_at_ms),
            created_at_ms: t.created_at_ms,
            status: t.status.as_str().to_owned(),
            held_by_me: t.holder == Some(me),
            holder: t.holder.map(|h| h.to_hex()),
            holder_name: t.holder_name,
            version: t.version,
            updated_at: utc_time(t.updated_at_ms),
            updated_at_ms: t.updated_at_ms,
            result: t.result,
            holder_refused: t.holder_refused,
            holder_departed: t.holder_departed,
            mine,
            can_force: mine || admin,
        }
    }
}

/// Tasks, most urgent first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tasks {
    /// The tasks.
    pub tasks: Vec<TaskView>,
}

/// Which tasks.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskQuery {
    /// Phases, comma-separated (`open`, `claimed`, `done`), or `all`;
    /// absent: open and claimed.
    #[serde(default)]
    pub status: Option<String>,
    /// Only tasks meant for, or held by, this peer (a name, a key prefix,
    /// or `me`).
    #[serde(default)]
    pub assignee: Option<String>,
    /// Only tasks with every one of these tags (comma-separated).
    #[serde(default)]
    pub tags: Option<String>,
    /// Only the tasks sealed to this topic (`ops`).
    #[serde(default)]
    pub topic: Option<String>,
}

/// A task to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// One line, 1 to 256 bytes.
    pub title: String,
    /// More detail (at most 8192 bytes).
    #[serde(default)]
    pub body: Option<String>,
    /// The peer it is meant for (a name or key prefix).
    #[serde(default)]
    pub assignee: Option<String>,
    /// `low`, `normal` (the default), `high` or `urgent`.
    #[serde(default)]
    pub priority: Option<String>,
    /// Up to 16 tags of letters, digits, `_`, `.` and `-`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When it is due, unix ms.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub due_ms: Option<u64>,
    /// A topic whose members alone see and take on the task (it is sealed
    /// to them); the whole mesh when absent. This member must be in it.
    #[serde(default)]
    pub topic: Option<String>,
}

/// How to release a task.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Take it from another member's claim (its creator, an owner or an
    /// admin; the key needs `admin` unless this member created it).
    #[serde(default)]
    pub force: bool,
}

/// How to complete a task.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Complete {
    /// What was done (at most 8192 bytes).
    #[serde(default)]
    pub result: Option<String>,
    /// Complete it although another member claimed it (as for release).
    #[serde(default)]
    pub force: bool,
}

/// For a key limited to topics, those topics (without `#`): the only ones
/// whose tasks it sees, acts on and creates; `None` for a key of the whole
/// mesh.
fn key_topics(caller: &Caller) -> Option<Vec<String>> {
    caller.scoped_targets().map(|targets| {
        targets
            .iter()
            .map(|t| t.trim_start_matches('#').to_owned())
            .collect()
    })
}

/// Refuses a key limited to topics a task of another topic, or of the
/// whole mesh (`topic` absent).
fn task_in_scope(caller: &Caller, topic: Option<&str>) -> Result<(), Problem> {
    let Some(topics) = key_topics(caller) else {
        return Ok(());
    };
    match topic {
        Some(t) if topics.iter().any(|k| k == t) => Ok(()),
        Some(t) => Err(Problem::out_of_scope(&format!("#{t}"))),
        None => Err(Problem::out_of_scope(
            "the whole mesh (a task without a topic)",
        )),
    }
}

/// A `topic` as sent (`ops`, `#ops`, blank for none), checked.
fn topic_of(topic: Option<String>) -> Result<Option<String>, Problem> {
    Ok(topic
        .filter(|t| !t.trim().is_empty())
        .map(|t| claudemesh_client::topics::topic_name(&t))
        .transpose()?)
}

/// The task `id` after a sync, when the key is limited to topics: refused
/// unless it is sealed to one of them. Nothing to check otherwise.
async fn check_scope_of(caller: &Caller, client: &MeshClient, id: &str) -> Result<(), Problem> {
    if key_topics(caller).is_some() {
        let task = client.task_show(id).await?;
        task_in_scope(caller, task.topic.as_deref())?;
    }
    Ok(())
}

/// `status=`: phases, or `all`.
fn phases(status: Option<&str>) -> Result<Vec<TaskPhase>, Problem> {
    let mut out = Vec::new();
    for word in comma_list(status) {
        match word.to_ascii_lowercase().as_str() {
            "all" => return Ok(vec![TaskPhase::Open, TaskPhase::Claimed, TaskPhase::Done]),
            "open" => out.push(TaskPhase::Open),
            "claimed" => out.push(TaskPhase::Claimed),
            "done" => out.push(TaskPhase::Done),
            _ => {
                return Err(Problem::bad_request(format!(
                    "status {word:?} is none of open, claimed, done, all"
                )));
            }
        }
    }
    Ok(out)
}

/// Lists the mesh's tasks.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    tag = "tasks",
    params(TaskQuery),
    responses(
        (status = 200, description = "Tasks, most urgent first", body = Tasks),
        (status = 400, description = "A bad status, tag or topic name", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `read`, or is limited to other topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No peer by the `assignee` given", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list(caller: Caller, Params(q): Params<TaskQuery>) -> Result<Json<Tasks>, Problem> {
    caller.require(Cap::Read)?;
    let topic = topic_of(q.topic)?;
    if topic.is_some() {
        task_in_scope(&caller, topic.as_deref())?;
    }
    let status = phases(q.status.as_deref())?;
    let tags = normalize_tags(&comma_list(q.tags.as_deref()))?;
    let client = caller.client()?;
    let me = standing(&client);
    let assignee = match q.assignee.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("me") => Some(me.0),
        Some(peer) => Some(claudemesh_client::grants::resolve_member(&client, peer).await?),
    };
    let mut tasks = client
        .task_list(&TaskFilter {
            status,
            assignee,
            tags,
            topic,
        })
        .await?;
    if let Some(topics) = key_topics(&caller) {
        tasks.retain(|t| t.topic.as_ref().is_some_and(|x| topics.contains(x)));
    }
    Ok(Json(Tasks {
        tasks: tasks.into_iter().map(|t| TaskView::of(t, me)).collect(),
    }))
}

/// Creates a task: sealed on this device, stored by the broker.
#[utoipa::path(
    post,
    path = "/api/v1/tasks",
    tag = "tasks",
    request_body = NewTask,
    responses(
        (status = 201, description = "Created", body = TaskView),
        (status = 400, description = "An empty or too long title, a bad priority, tag or topic name, or an assignee outside the `topic`", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send`, or is limited to other topics, or this member is not in the `topic`", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No peer by the `assignee` given, or no such `topic`", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Object(body): Object<NewTask>,
) -> Result<(StatusCode, Json<TaskView>), Problem> {
    caller.require(Cap::Send)?;
    let topic = topic_of(body.topic)?;
    task_in_scope(&caller, topic.as_deref())?;
    let priority = body
        .priority
        .as_deref()
        .map(str::parse::<TaskPriority>)
        .transpose()?;
    let client = caller.client()?;
    let task = client
        .task_create(TaskDraft {
            title: body.title,
            body: body.body,
            assignee: body.assignee.filter(|a| !a.trim().is_empty()),
            priority,
            tags: body.tags,
            due_ms: body.due_ms,
            topic,
        })
        .await?;
    coordination_written(&state, &caller, CoordKind::Task).await;
    Ok((
        StatusCode::CREATED,
        Json(TaskView::of(task, standing(&client))),
    ))
}

/// One task.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}",
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id, or a unique prefix of at least 4 hex digits")),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 400, description = "Not a task id or prefix, or a prefix of several tasks", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `read`, or is limited to other topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn one(caller: Caller, Path(id): Path<String>) -> Result<Json<TaskView>, Problem> {
    caller.require(Cap::Read)?;
    let client = caller.client()?;
    let task = client.task_show(&id).await?;
    task_in_scope(&caller, task.topic.as_deref())?;
    Ok(Json(TaskView::of(task, standing(&client))))
}

/// Claims an open task: of two members claiming it at once exactly one
/// wins; the other is answered 409, naming who holds it.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/claim",
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id, or a unique prefix of at least 4 hex digits")),
    responses(
        (status = 200, description = "Claimed by this member (or it already was)", body = TaskView),
        (status = 400, description = "Not a task id or prefix, or a prefix of several tasks", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send`, is limited to other topics, or the task's creator's grants refuse this member tasks", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Another member holds it, or it is done", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn claim(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, Problem> {
    caller.require(Cap::Send)?;
    let client = caller.client()?;
    check_scope_of(&caller, &client, &id).await?;
    let task = client.task_claim(&id).await?;
    coordination_written(&state, &caller, CoordKind::Task).await;
    Ok(Json(TaskView::of(task, standing(&client))))
}

/// The task `id`, once the key may moderate it: forcing or deleting this
/// member's own task is a `send` key's to do; another member's needs a key
/// made for moderation.
async fn moderated(caller: &Caller, client: &MeshClient, id: &str) -> Result<Task, Problem> {
    let task = client.task_show(id).await?;
    if task.creator != standing(client).0 {
        caller.require(Cap::Admin)?;
    }
    Ok(task)
}

/// Gives a claimed task back (open again).
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/release",
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id, or a unique prefix of at least 4 hex digits")),
    request_body = Release,
    responses(
        (status = 200, description = "Open again", body = TaskView),
        (status = 400, description = "Not a task id or prefix, or a prefix of several tasks", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send` (or `admin` to force another member's task), is limited to other topics, or this member may not force it", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "It is open or done, or another member holds it (without `force`)", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn release(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Object(body): Object<Release>,
) -> Result<Json<TaskView>, Problem> {
    caller.require(Cap::Send)?;
    let client = caller.client()?;
    check_scope_of(&caller, &client, &id).await?;
    if body.force {
        moderated(&caller, &client, &id).await?;
    }
    let task = client.task_release(&id, body.force).await?;
    coordination_written(&state, &caller, CoordKind::Task).await;
    Ok(Json(TaskView::of(task, standing(&client))))
}

/// Completes a task (open, or claimed by this member), with a result.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/complete",
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id, or a unique prefix of at least 4 hex digits")),
    request_body = Complete,
    responses(
        (status = 200, description = "Done", body = TaskView),
        (status = 400, description = "Not a task id or prefix, a prefix of several tasks, or a result too long", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send` (or `admin` to force another member's task), is limited to other topics, the task's creator's grants refuse this member tasks, or this member may not force it", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "It is done already, or another member holds it (without `force`)", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn complete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Object(body): Object<Complete>,
) -> Result<Json<TaskView>, Problem> {
    caller.require(Cap::Send)?;
    let client = caller.client()?;
    check_scope_of(&caller, &client, &id).await?;
    if body.force {
        moderated(&caller, &client, &id).await?;
    }
    let task = client
        .task_complete(&id, body.result.as_deref(), body.force)
        .await?;
    coordination_written(&state, &caller, CoordKind::Task).await;
    Ok(Json(TaskView::of(task, standing(&client))))
}

/// Deletes a task for everyone (its creator, an owner or an admin).
#[utoipa::path(
    delete,
    path = "/api/v1/tasks/{id}",
    tag = "tasks",
    params(("id" = String, Path, description = "The task's id, or a unique prefix of at least 4 hex digits")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a task id or prefix, or a prefix of several tasks", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send` (or `admin` for another member's task), is limited to other topics, or this member is neither its creator nor an owner or admin", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such task", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Cap::Send)?;
    let client = caller.client()?;
    let task = moderated(&caller, &client, &id).await?;
    task_in_scope(&caller, task.topic.as_deref())?;
    client.task_delete(&task.id.to_hex()).await?;
    coordination_written(&state, &caller, CoordKind::Task).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_as_the_cli_reads_them() {
        assert_eq!(phases(None).unwrap(), vec![]);
        assert_eq!(
            phases(Some("Open, claimed")).unwrap(),
            vec![TaskPhase::Open, TaskPhase::Claimed]
        );
        assert_eq!(phases(Some("all")).unwrap().len(), 3);
        assert!(phases(Some("finished")).is_err());
    }
}

//! `/api/v1/topics`: the mesh's topics with this device's unread counts,
//! creating one (`admin`), joining and leaving, its members, its stored
//! history (verified and opened here, newest first, paged by message id),
//! posting to it, and marking it read. A key limited to topics sees only
//! its topics.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use claudemesh_client::topics::{self, TopicHistory, TopicMemberView, TopicView, topic_name};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::api::messages::{Marked, PriorityName, SendRequest, deliver};
use crate::api::{Body, Params, message_id};
use crate::apikeys::Cap;
use crate::app::{AppState, Caller};
use crate::problem::Problem;

/// The topic named in the path, checked against the key's scope.
fn scoped(caller: &Caller, topic: &str) -> Result<String, Problem> {
    let name = topic_name(topic)?;
    caller.require_target(&format!("#{name}"))?;
    Ok(name)
}

/// Every topic (those of its scope, for a key limited to topics).
#[utoipa::path(
    get,
    path = "/api/v1/topics",
    tag = "topics",
    responses((status = 200, description = "Topics with unread counts", body = Vec<TopicView>))
)]
pub async fn list(caller: Caller) -> Result<Json<Vec<TopicView>>, Problem> {
    caller.require(Cap::Read)?;
    let client = caller.client()?;
    let all = topics::topics(&client).await?;
    Ok(Json(
        all.into_iter()
            .filter(|t| caller.require_target(&format!("#{}", t.name)).is_ok())
            .collect(),
    ))
}

/// A topic to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTopic {
    /// Its name (`deploys` or `#deploys`).
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Private: its own key, and members add members.
    #[serde(default)]
    pub private: bool,
}

/// Creates a topic; this member is its first member.
#[utoipa::path(
    post,
    path = "/api/v1/topics",
    tag = "topics",
    request_body = NewTopic,
    responses(
        (status = 201, description = "Created", body = TopicView),
        (status = 403, description = "The key lacks `admin`", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "It exists", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    caller: Caller,
    Body(req): Body<NewTopic>,
) -> Result<(StatusCode, Json<TopicView>), Problem> {
    caller.require(Cap::Admin)?;
    let name = scoped(&caller, &req.name)?;
    let client = caller.client()?;
    let view = topics::topic_create(&client, &name, req.private, &req.description).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

fn find(all: Vec<TopicView>, name: &str) -> Result<TopicView, Problem> {
    all.into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Problem::not_found(format!("no topic #{name} in this mesh")))
}

/// One topic.
#[utoipa::path(
    get,
    path = "/api/v1/topics/{topic}",
    tag = "topics",
    params(("topic" = String, Path, description = "The topic's name")),
    responses(
        (status = 200, description = "The topic", body = TopicView),
        (status = 404, description = "No such topic", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn one(caller: Caller, Path(topic): Path<String>) -> Result<Json<TopicView>, Problem> {
    caller.require(Cap::Read)?;
    let name = scoped(&caller, &topic)?;
    let client = caller.client()?;
    let all = topics::topics(&client).await?;
    Ok(Json(find(all, &name)?))
}

/// Joins a public topic.
#[utoipa::path(
    post,
    path = "/api/v1/topics/{topic}/join",
    tag = "topics",
    params(("topic" = String, Path, description = "The topic's name")),
    responses(
        (status = 200, description = "Joined", body = TopicView),
        (status = 403, description = "Private (a member must add you)", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such topic", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Already in it", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn join(caller: Caller, Path(topic): Path<String>) -> Result<Json<TopicView>, Problem> {
    caller.require(Cap::Send)?;
    let name = scoped(&caller, &topic)?;
    Ok(Json(topics::topic_join(&*caller.client()?, &name).await?))
}

/// Leaves a topic.
#[utoipa::path(
    post,
    path = "/api/v1/topics/{topic}/leave",
    tag = "topics",
    params(("topic" = String, Path, description = "The topic's name")),
    responses(
        (status = 204, description = "Left"),
        (status = 400, description = "Not in it (exit code 3, as `claudemesh topic leave`), or a bad name", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such topic", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn leave(caller: Caller, Path(topic): Path<String>) -> Result<StatusCode, Problem> {
    caller.require(Cap::Send)?;
    let name = scoped(&caller, &topic)?;
    topics::topic_leave(&*caller.client()?, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A topic's members.
#[utoipa::path(
    get,
    path = "/api/v1/topics/{topic}/members",
    tag = "topics",
    params(("topic" = String, Path, description = "The topic's name")),
    responses(
        (status = 200, description = "Its members", body = Vec<TopicMemberView>),
        (status = 404, description = "No such topic", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn members(
    caller: Caller,
    Path(topic): Path<String>,
) -> Result<Json<Vec<TopicMemberView>>, Problem> {
    caller.require(Cap::Read)?;
    let name = scoped(&caller, &topic)?;
    Ok(Json(topics::topic_members(&*caller.client()?, &name)?))
}

/// Which page of history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// At most this many (default 50; more than 200 counts as 200, 0 as 1).
    #[serde(default = "fifty")]
    #[param(minimum = 0, maximum = 4294967295_u64, format = Int64)]
    pub limit: u32,
    /// Messages older than this message id (the last one of the page
    /// before).
    #[serde(default)]
    pub before: Option<String>,
}

fn fifty() -> u32 {
    50
}

/// A topic's stored messages, newest first, each verified and opened on
/// this device.
#[utoipa::path(
    get,
    path = "/api/v1/topics/{topic}/messages",
    tag = "topics",
    params(("topic" = String, Path, description = "The topic's name"), HistoryQuery),
    responses(
        (status = 200, description = "A page of history", body = TopicHistory),
        (status = 403, description = "Private and this member is not in it", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such topic", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn history(
    caller: Caller,
    Path(topic): Path<String>,
    Params(q): Params<HistoryQuery>,
) -> Result<Json<TopicHistory>, Problem> {
    caller.require(Cap::Read)?;
    let name = scoped(&caller, &topic)?;
    let before = q
        .before
        .as_deref()
        .map(|b| message_id("before", b))
        .transpose()?;
    let client = caller.client()?;
    let limit = q.limit.clamp(1, topics::MAX_HISTORY_PAGE);
    Ok(Json(
        topics::topic_history(&client, &name, limit, before).await?,
    ))
}

/// A post to a topic.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Post {
    /// The text (UTF-8, at most 64 KiB).
    pub body: String,
    /// Delivery priority.
    #[serde(default)]
    pub priority: PriorityName,
    /// The message id this one answers.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Time to live in seconds (at least 1; at most the broker's
    /// retention): a member that has not been shown the post by then
    /// never is, and its delivery says `expired`.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub ttl: Option<u64>,
    /// Post at this time (RFC 3339) instead of now, as
    /// `POST /api/v1/messages` does. Not with `in`.
    #[serde(default)]
    pub at: Option<String>,
    /// Post this many seconds from now instead of now. Not with `at`.
    #[serde(default, rename = "in")]
    #[schema(minimum = 1)]
    pub in_seconds: Option<u64>,
}

/// Posts to a topic (as `POST /api/v1/messages` with `to` = `#topic`).
#[utoipa::path(
    post,
    path = "/api/v1/topics/{topic}/messages",
    tag = "topics",
    request_body = Post,
    params(
        ("topic" = String, Path, description = "The topic's name"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key and body is the same message"),
    ),
    responses(
        (status = 201, description = "The broker stored it", body = claudemesh_client::naming::Sent, headers(("Location" = String, description = "The message's URL"))),
        (status = 403, description = "Not allowed to post there", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such topic", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The Idempotency-Key was used for another request", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB (or the request over 256 KiB)", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn post(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(topic): Path<String>,
    headers: HeaderMap,
    Body(req): Body<Post>,
) -> Result<Response, Problem> {
    let name = scoped(&caller, &topic)?;
    let send = SendRequest {
        to: format!("#{name}"),
        body: req.body,
        priority: req.priority,
        reply_to: req.reply_to,
        ttl: req.ttl,
        at: req.at,
        in_seconds: req.in_seconds,
    };
    deliver(&state, &caller, &headers, send).await
}

/// Marks every unread message of a topic read.
#[utoipa::path(
    post,
    path = "/api/v1/topics/{topic}/read",
    tag = "topics",
    params(("topic" = String, Path, description = "The topic's name")),
    responses(
        (status = 200, description = "Marked", body = Marked),
        (status = 404, description = "No such topic", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn read(caller: Caller, Path(topic): Path<String>) -> Result<Json<Marked>, Problem> {
    caller.require(Cap::Send)?;
    let name = scoped(&caller, &topic)?;
    let marked = topics::topic_read(&*caller.client()?, &name, caller.via()).await?;
    Ok(Json(Marked { marked }))
}

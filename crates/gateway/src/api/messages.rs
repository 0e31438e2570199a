//! `/api/v1/messages`: this member's inbox (unread, or everything after a
//! cursor), sending a message to a peer, `#topic`, `@group` or `*` (an
//! `Idempotency-Key` makes a retried POST the same message; a direct one is
//! also kept, in plaintext as the inbox keeps what comes in, for its
//! conversation: [`crate::conversations`]), one message
//! with its per-recipient delivery (what each recipient's signed receipts
//! prove, and what the broker says), and marking messages read (which
//! sends the signed `shown` receipts, `via: gateway`). Senders are named by the one rule for names
//! (`claudemesh_client::naming`), as `claudemesh message inbox` names them.
//! A message sent with `ttl` (seconds) expires unless shown by then; an
//! unread message whose deadline passed is no longer listed as unread.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use claudemesh_client::client::StatusReport;
use claudemesh_client::local::InboxMessage;
use claudemesh_client::mesh::pins::Pins;
use claudemesh_client::messages;
use claudemesh_client::naming::{
    Sent, label_hex, label_recipients, reached, sent, status_json, utc_time,
};
use claudemesh_client::{MeshClient, SendOptions};
use claudemesh_crypto::envelope::{MAX_BODY_BYTES, MessageId, Priority, Target};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::{Body, Params, message_id};
use crate::apikeys::Cap;
use crate::app::{AppState, Caller};
use crate::conversations::{Conversations, SentDirect};
use crate::idempotency::{IdempotencyError, Reserved};
use crate::problem::Problem;

/// Most messages one page lists.
pub const MAX_PAGE: u32 = 500;

/// A stored message as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiMessage {
    #[serde(flatten)]
    message: InboxMessage,
    /// Its place in this device's inbox: pass it as `after` to list what
    /// came later.
    cursor: i64,
    /// Another member's name looks the same: the key tells them apart.
    name_ambiguous: bool,
    /// The sender's name is that of a verified peer with another key.
    pin_mismatch: bool,
}

/// Names each message's sender (`from_name`) by the one rule for names.
pub fn labeled(client: &MeshClient, pins: &Pins, list: Vec<InboxMessage>) -> Vec<ApiMessage> {
    client.with_state(|s| {
        let labels = s.sender_labels(pins);
        list.into_iter()
            .map(|mut m| {
                let label = label_hex(s, &labels, &m.from);
                m.from_name = Some(label.text);
                ApiMessage {
                    cursor: m.local_id,
                    message: m,
                    name_ambiguous: label.ambiguous,
                    pin_mismatch: label.pin_mismatch,
                }
            })
            .collect()
    })
}

/// Which messages to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Unread only (the default), or read ones too.
    #[serde(default = "yes")]
    pub unread: bool,
    /// Only messages stored after this cursor (0: from the oldest).
    #[serde(default)]
    pub after: i64,
    /// At most this many (default 100; more than 500 counts as 500, 0 as 1).
    #[serde(default = "hundred")]
    #[param(minimum = 0, maximum = 4294967295_u64, format = Int64)]
    pub limit: u32,
    /// Only this topic's messages (`deploys` or `#deploys`).
    #[serde(default)]
    pub topic: Option<String>,
}

fn yes() -> bool {
    true
}

fn hundred() -> u32 {
    100
}

/// A page of messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    /// Oldest first.
    pub messages: Vec<ApiMessage>,
    /// The cursor to ask with next (`after`): the last message's, or the
    /// one asked with when there was none.
    pub next_cursor: i64,
}

/// The inbox, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/messages",
    tag = "messages",
    params(ListQuery),
    responses(
        (status = 200, description = "Messages stored on this device", body = MessagePage),
        (status = 403, description = "The key lacks `read`, or the topic is outside its scope", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<MessagePage>, Problem> {
    caller.require(Cap::Read)?;
    let targets = match &q.topic {
        Some(t) => {
            let name = claudemesh_client::topics::topic_name(t)?;
            caller.require_target(&format!("#{name}"))?;
            Some(vec![format!("#{name}")])
        }
        None => caller.scoped_targets(),
    };
    let client = caller.client()?;
    let list = state
        .local
        .inbox_after(
            &caller.link.mesh.id,
            q.after.max(0),
            q.unread,
            targets.as_deref(),
            q.limit.clamp(1, MAX_PAGE),
        )
        .await?;
    let next_cursor = list.last().map_or(q.after.max(0), |m| m.local_id);
    let pins = caller.link.pins(&state.home);
    Ok(Json(MessagePage {
        messages: labeled(&client, &pins, list),
        next_cursor,
    }))
}

/// `now`, `next` or `low`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriorityName {
    /// Interrupts (pushed into a Claude Code conversation at once).
    Now,
    /// At the recipient's next turn (the default).
    #[default]
    Next,
    /// Whenever it reads its inbox.
    Low,
}

impl From<PriorityName> for Priority {
    fn from(p: PriorityName) -> Priority {
        match p {
            PriorityName::Now => Priority::Now,
            PriorityName::Next => Priority::Next,
            PriorityName::Low => Priority::Low,
        }
    }
}

/// A message to send.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// A display name, a key prefix (8+ hex digits), a session name
    /// (`alice@api`), `#topic`, `@group`, or `*` (everyone).
    pub to: String,
    /// The text (UTF-8, at most 64 KiB).
    pub body: String,
    /// Delivery priority.
    #[serde(default)]
    pub priority: PriorityName,
    /// The message id this one answers.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Time to live in seconds (at least 1; at most the broker's
    /// retention): a recipient that has not been shown the message by then
    /// never is, and its delivery says `expired`. Absent: the broker's
    /// retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub ttl: Option<u64>,
    /// Deliver at this time (RFC 3339, such as `2026-12-03T15:00:00Z` or
    /// `2026-12-03T16:00:00+01:00`) instead of now: the broker holds the
    /// sealed message and delivers it then, to online and offline
    /// recipients alike (`GET /api/v1/scheduled` lists it until then).
    /// At most the broker's retention ahead; a `ttl` counts from delivery.
    /// Not with `in`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "2026-12-03T15:00:00Z")]
    pub at: Option<String>,
    /// Deliver this many seconds from now instead of now, as `at` does.
    /// Not with `at`.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub in_seconds: Option<u64>,
}

/// When a message is to be delivered (unix ms, the broker's clock), from
/// `at` (RFC 3339) or `in` (seconds from now); `None`: now.
fn deliver_at_ms(client: &MeshClient, req: &SendRequest) -> Result<Option<u64>, Problem> {
    match (req.at.as_deref(), req.in_seconds) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(Problem::bad_request("give `at` or `in`, not both")),
        (None, Some(0)) => Err(Problem::bad_request("in must be at least 1 (seconds)")),
        (None, Some(secs)) => Ok(Some(
            client
                .broker_now_ms()
                .saturating_add(secs.saturating_mul(1000)),
        )),
        (Some(at), None) => {
            let ms = chrono::DateTime::parse_from_rfc3339(at.trim())
                .ok()
                .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
                .ok_or_else(|| {
                    Problem::bad_request(format!(
                        "at {at:?} is not an RFC 3339 time (such as 2026-12-03T15:00:00Z)"
                    ))
                })?;
            // `at` is on this device's clock, as the user reads it; the
            // broker holds it by its own, off by the skew its welcome
            // measured (as `claudemesh send --at` does).
            let here = claudemesh_proto::clock::now_ms();
            if ms.saturating_add(1000) < here {
                return Err(Problem::bad_request(format!(
                    "at {at:?} is in the past (it is {} here)",
                    utc_time(here)
                )));
            }
            Ok(Some(claudemesh_client::schedule::broker_clock(
                ms,
                client.broker_skew_ms(),
            )))
        }
    }
}

/// Sends a message, sealed and signed on this device.
#[utoipa::path(
    post,
    path = "/api/v1/messages",
    tag = "messages",
    request_body = SendRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key and body is the same message, never a second one")),
    responses(
        (status = 201, description = "The broker stored it, or holds it until `deliver_at_ms` (sent with `at` or `in`)", body = Sent, headers(("Location" = String, description = "The message's URL"))),
        (status = 400, description = "A bad recipient, body, reply id, ttl, `at` or `in`", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `send`, or the recipient is outside its scope", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such peer, topic or group", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The Idempotency-Key was used for another request", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB (or the request over 256 KiB)", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn send(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Body(req): Body<SendRequest>,
) -> Result<Response, Problem> {
    deliver(&state, &caller, &headers, req).await
}

/// Sends `req` for `caller` (`POST /messages` and `POST /topics/{t}/messages`).
pub async fn deliver(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    req: SendRequest,
) -> Result<Response, Problem> {
    caller.require(Cap::Send)?;
    caller.require_target(req.to.trim())?;
    if req.body.is_empty() {
        return Err(Problem::bad_request("the message is empty"));
    }
    if req.body.len() > MAX_BODY_BYTES {
        let mut p = Problem::bad_request(format!(
            "the message is {} bytes; at most {MAX_BODY_BYTES} are sent",
            req.body.len()
        ));
        p.status = StatusCode::PAYLOAD_TOO_LARGE.as_u16();
        return Err(p);
    }
    let reply_to = req
        .reply_to
        .as_deref()
        .map(|r| message_id("reply_to", r))
        .transpose()?;
    let ttl = req
        .ttl
        .map(|s| claudemesh_client::ttl::check_ttl(std::time::Duration::from_secs(s)))
        .transpose()
        .map_err(|_| Problem::bad_request("ttl must be at least 1 (seconds)"))?;
    let id = match idempotency_key(headers)? {
        None => MessageId::random(),
        Some(key) => {
            let canonical = serde_json::to_vec(&req).unwrap_or_default();
            match state
                .idempotency
                .reserve(
                    &caller.key.prefix,
                    key,
                    &canonical,
                    claudemesh_proto::clock::now_ms(),
                )
                .await
            {
                Ok(Reserved::New(id) | Reserved::Retry(id)) => id,
                Err(IdempotencyError::BadKey) => {
                    return Err(Problem::bad_request(IdempotencyError::BadKey.to_string()));
                }
                Err(IdempotencyError::Conflict) => {
                    return Err(Problem::new(
                        StatusCode::CONFLICT,
                        claudemesh_client::error_kind::ErrorKind::Exists,
                        IdempotencyError::Conflict.to_string(),
                    )
                    .hint("use a new Idempotency-Key for a new message"));
                }
                Err(e) => return Err(Problem::storage("keep the idempotency key", &e)),
            }
        }
    };
    let client = caller.client()?;
    let target = client.resolve(req.to.trim()).await?;
    let pins = caller.link.pins(&state.home);
    let whom = reached(&client, &pins, &target).await;
    let deliver_at = deliver_at_ms(&client, &req)?;
    let opts = SendOptions::new(req.priority.into(), reply_to)
        .ttl(ttl)
        .deliver_at_ms(deliver_at);
    let posted = messages::send_with(&client, id, target.clone(), &req.body, opts).await?;
    remember_direct(state, caller, &client, &target, id, &req, reply_to.as_ref()).await;
    let topic = match &target {
        Target::Topic(t) => Some(t.clone()),
        _ => None,
    };
    // One held for later is followed from its time (there is nothing to
    // report before), on this device's clock.
    let after = posted
        .deliver_at_ms
        .map(|at| claudemesh_client::schedule::local_clock(at, client.broker_skew_ms()))
        .map_or(0, |at| at.saturating_sub(claudemesh_proto::clock::now_ms()));
    caller
        .link
        .delivery
        .watch_after(id, topic, std::time::Duration::from_millis(after));
    let out: Sent = sent(posted, whom);
    let mut resp = (StatusCode::CREATED, Json(&out)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/v1/messages/{}", out.posted.id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

/// Keeps the plaintext of a direct message just sent, for the
/// conversation with its recipient (`GET /api/v1/conversations/{peer}/
/// messages`); a fan-out target is not kept. The message is sent by now:
/// a failure to keep it is logged, not answered.
async fn remember_direct(
    state: &AppState,
    caller: &Caller,
    client: &MeshClient,
    target: &Target,
    id: MessageId,
    req: &SendRequest,
    reply_to: Option<&MessageId>,
) {
    let Some(recipient) = client.with_state(|s| s.member_of_target(target)) else {
        return;
    };
    let mesh = &caller.link.mesh.id;
    // The envelope's time, which the recipient sees as `sent_at`; one
    // held for later takes its place in the conversation at its delivery
    // (and shows only from then: `crate::conversations`).
    let env_at = match state.local.outbox_envelope(mesh, &id).await {
        Ok(Some(env)) => env.sent_at,
        Ok(None) | Err(_) => claudemesh_proto::clock::now_ms(),
    };
    let deliver_at = match state.local.outbox_get(mesh, &id).await {
        Ok(Some(entry)) => entry.deliver_at_ms,
        Ok(None) | Err(_) => None,
    };
    let sent_at = env_at.max(deliver_at.unwrap_or(0));
    let sent = SentDirect {
        mesh,
        id: &id,
        recipient: &recipient,
        target: &target.to_string(),
        body: &req.body,
        priority: req.priority.into(),
        reply_to,
        sent_at,
    };
    if let Err(e) = Conversations::new(state.local.pool().clone())
        .remember(&sent)
        .await
    {
        tracing::warn!(error = %e, "the direct message {id} was sent but not kept for its conversation");
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| Problem::bad_request(IdempotencyError::BadKey.to_string())),
    }
}

/// One message: as received (if it came to this member) and its delivery
/// (if this member sent it).
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDetail {
    /// The message id.
    pub id: String,
    /// The copies of it in this device's inbox.
    pub received: Vec<ApiMessage>,
    /// Its per-recipient delivery, when this member sent it: each
    /// recipient's `state` (the highest state its signed receipts prove:
    /// `delivered`, `shown`, `answered`; else the broker's word), the
    /// broker's `observed` state (`queued`, `delivered`, `shown`,
    /// `answered`, `expired`), `proven`, every `proofs` entry checked
    /// (`ok`, `error`), and `proof`, all of that in words.
    #[schema(value_type = Option<StatusReport>)]
    pub delivery: Option<serde_json::Value>,
}

/// One message and its delivery.
#[utoipa::path(
    get,
    path = "/api/v1/messages/{id}",
    tag = "messages",
    params(("id" = String, Path, description = "The message id (32 hex digits)")),
    responses(
        (status = 200, description = "The message", body = MessageDetail),
        (status = 404, description = "Neither received nor sent by this member", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn one(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MessageDetail>, Problem> {
    caller.require(Cap::Read)?;
    let id = message_id("", &id)?;
    let client = caller.client()?;
    let scope = caller.scoped_targets();
    let in_scope = |target: &str| scope.as_ref().is_none_or(|s| s.iter().any(|t| t == target));
    let received: Vec<InboxMessage> = state
        .local
        .inbox_by_id(&caller.link.mesh.id, &id.to_hex())
        .await?
        .into_iter()
        .filter(|m| in_scope(&m.target))
        .collect();
    let pins = caller.link.pins(&state.home);
    let delivery = match client.message_status(&id).await {
        Ok(mut report) if report.target.as_deref().is_none_or(in_scope) => {
            let marks = client.with_state(|s| label_recipients(s, &pins, &mut report.recipients));
            Some(
                status_json(&report, &marks, &utc_time)
                    .map_err(|e| Problem::storage("encode JSON", &e))?,
            )
        }
        Ok(_) | Err(claudemesh_client::ClientError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if received.is_empty() && delivery.is_none() {
        return Err(Problem::not_found(format!(
            "no message {id} was received or sent by this member"
        )));
    }
    Ok(Json(MessageDetail {
        id: id.to_hex(),
        received: labeled(&client, &pins, received),
        delivery,
    }))
}

/// Which messages to mark read.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    /// These message ids.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Every unread message up to this cursor.
    #[serde(default)]
    pub up_to: Option<i64>,
}

/// How many were marked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Marked {
    /// Messages newly marked read.
    pub marked: usize,
}

/// Marks messages read (their senders get signed `shown` receipts, or a
/// topic's shown watermark, `via: gateway`).
#[utoipa::path(
    post,
    path = "/api/v1/messages/read",
    tag = "messages",
    request_body = MarkRead,
    responses(
        (status = 200, description = "Marked", body = Marked),
        (status = 400, description = "Neither ids nor up_to given", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn mark_read(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Body(req): Body<MarkRead>,
) -> Result<Json<Marked>, Problem> {
    caller.require(Cap::Send)?;
    if req.ids.is_empty() && req.up_to.is_none() {
        return Err(Problem::bad_request("give `ids`, `up_to`, or both"));
    }
    for id in &req.ids {
        message_id("", id)?;
    }
    let client = caller.client()?;
    let unread = state
        .local
        .inbox_after(
            &caller.link.mesh.id,
            0,
            true,
            caller.scoped_targets().as_deref(),
            u32::MAX,
        )
        .await?;
    let chosen: Vec<InboxMessage> = unread
        .into_iter()
        .filter(|m| {
            req.ids
                .iter()
                .any(|id| id.trim().eq_ignore_ascii_case(&m.id))
                || req.up_to.is_some_and(|c| m.local_id <= c)
        })
        .collect();
    client.mark_shown(&chosen, caller.via()).await?;
    Ok(Json(Marked {
        marked: chosen.len(),
    }))
}

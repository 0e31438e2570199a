//! `GET /api/v1/conversations/{peer}/messages`: the direct messages
//! between this member and one peer, both ways, newest first, by pages
//! (`limit`, `before`). What the peer sent comes from this device's inbox;
//! what this member sent, from the gateway's own record of the direct
//! messages it sent ([`crate::conversations`]): a direct message sent
//! with the CLI, or before this gateway kept them, is not there. Names
//! follow the one rule for names, as the inbox's `from_name`. Listing
//! does not mark anything read. A key limited to topics may not read it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use claudemesh_client::grants::resolve_member;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::peers::no_topic_scope;
use crate::api::{Params, message_id};
use crate::apikeys::Cap;
use crate::app::{AppState, Caller};
use crate::conversations::Conversations;
use crate::problem::Problem;

/// Most messages one page lists.
pub const MAX_PAGE: u32 = 200;

/// Which page.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    /// At most this many (default 50; more than 200 counts as 200, 0 as 1).
    #[serde(default = "fifty")]
    #[param(minimum = 0, maximum = 4294967295_u64, format = Int64)]
    pub limit: u32,
    /// A message id of the conversation: the page of the messages before
    /// it (older). Absent: the newest.
    #[serde(default)]
    pub before: Option<String>,
}

fn fifty() -> u32 {
    50
}

/// One direct message of a conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationMessage {
    /// The message id (hex).
    pub id: String,
    /// The sender's member key (hex).
    pub from: String,
    /// The sender's name.
    pub from_name: String,
    /// The recipient's name.
    pub to_name: String,
    /// The text.
    pub body: String,
    /// `now`, `next` or `low`.
    pub priority: String,
    /// The sender's clock, unix ms.
    pub sent_at: u64,
    /// This member sent it.
    pub you: bool,
    /// The message it answers.
    pub reply_to: Option<String>,
    /// Shown on this device (`POST /api/v1/messages/read` marks a received
    /// one); a message this member sent always is.
    pub read: bool,
}

/// A page of a conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Conversation {
    /// The peer's name.
    pub peer: String,
    /// The peer's member key (hex).
    pub key: String,
    /// Newest first.
    pub messages: Vec<ConversationMessage>,
    /// Older messages remain: ask with `before` = the last one's id.
    pub more: bool,
}

/// The direct messages between this member and a peer.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{peer}/messages",
    tag = "messages",
    params(
        ("peer" = String, Path, description = "The peer, as `claudemesh send` names a recipient: a display name, a key prefix (8+ hex digits), a session name (`bob@api`)"),
        ConversationQuery,
    ),
    responses(
        (status = 200, description = "A page of the conversation, newest first", body = Conversation),
        (status = 400, description = "A bad parameter; a name that matches several members, names a topic, group or everyone, or is this member", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks `read`, or is limited to topics", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No peer matches, or `before` is not a message of this conversation", body = crate::api::ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "The home's local storage failed", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn conversation(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(peer): Path<String>,
    Params(q): Params<ConversationQuery>,
) -> Result<Json<Conversation>, Problem> {
    caller.require(Cap::Read)?;
    no_topic_scope(&caller, "direct messages")?;
    let before = q
        .before
        .as_deref()
        .map(|b| message_id("before", b))
        .transpose()?;
    let client = caller.client()?;
    let member = resolve_member(&client, &peer).await?;
    let me = client.with_state(|s| s.my_key());
    if member == me {
        return Err(Problem::bad_request(format!(
            "{peer:?} is you: a conversation is with another member"
        )));
    }
    let pins = caller.link.pins(&state.home);
    let (peer_name, my_name) = client.with_state(|s| {
        let labels = s.sender_labels(&pins);
        (labels.label(s, &member).text, labels.label(s, &me).text)
    });
    let page = Conversations::new(state.local.pool().clone())
        .page(
            &caller.link.mesh.id,
            &me,
            &member,
            before.as_ref(),
            q.limit.clamp(1, MAX_PAGE),
        )
        .await
        .map_err(|e| Problem::storage("read the conversation", &e))?
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no message {} in the conversation with {peer_name}",
                q.before.as_deref().unwrap_or_default().trim()
            ))
        })?;
    let messages = page
        .rows
        .into_iter()
        .map(|r| {
            let (from_name, to_name) = if r.you {
                (my_name.clone(), peer_name.clone())
            } else {
                (peer_name.clone(), my_name.clone())
            };
            ConversationMessage {
                id: r.id,
                from: r.from,
                from_name,
                to_name,
                body: r.body,
                priority: r.priority,
                sent_at: r.sent_at,
                you: r.you,
                reply_to: r.reply_to,
                read: r.read,
            }
        })
        .collect();
    Ok(Json(Conversation {
        peer: peer_name,
        key: member.to_hex(),
        messages,
        more: page.more,
    }))
}

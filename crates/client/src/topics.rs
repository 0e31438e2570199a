//! Topics from a member's side: names, create, join, add a member (a
//! private topic's key sealed to it), leave, list, members, mark read, and
//! a topic's verified history (`topic_history`, a page at a time). Every change is a signed entry of the
//! membership log (`docs/security.md` §7.6), checked against a copy of the
//! verified roster before it is sent.

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::{EnvelopeError, MessageId, Target, validate_target_name};
use claudemesh_crypto::log::{
    EntryBody, MAX_TOPIC_DESCRIPTION_BYTES, topic_create_body, topic_join_body, topic_rekey_body,
};
use claudemesh_crypto::receipt::Via;
use claudemesh_proto::frames::{TopicHistoryQuery, TopicHistoryResult};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};
use serde::Serialize;

use crate::client::MeshClient;
use crate::error::{BadInput, ClientError, Existing, MissingKey};
use crate::local::{InboxMessage, Rejection};
use crate::mesh::MeshState;
use crate::mesh::chain::{Chain, box_err, forbidden, not_allowed};
use crate::mesh::mentions::{flags_me, my_name};
use crate::session::unexpected;
use claudemesh_proto::clock::now_ms;

/// Largest page of topic history the broker serves.
pub const MAX_HISTORY_PAGE: u32 = 200;
/// How many history pages `--before <id>` searches for the id.
const MAX_ID_SEARCH_PAGES: usize = 50;

impl MeshClient {
    /// One page of a topic's stored messages, as the broker returns them
    /// (newest first, not yet verified: open each with
    /// [`MeshClient::open_envelope`]).
    pub async fn topic_history_page(
        &self,
        topic: &str,
        limit: Option<u32>,
        before_seq: Option<u64>,
    ) -> Result<TopicHistoryResult, ClientError> {
        let topic = topic.to_owned();
        let frame = self
            .session()
            .request(
                |req| {
                    ClientFrame::TopicHistory(TopicHistoryQuery {
                        req: Some(req),
                        topic,
                        limit,
                        before_seq,
                    })
                },
                "send the topic's history",
            )
            .await?;
        match frame {
            BrokerFrame::TopicHistoryResult(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }
}

/// A topic name as typed (`deploys` or `#deploys`), checked.
pub fn topic_name(input: &str) -> Result<String, ClientError> {
    let name = input.trim();
    let name = name.strip_prefix('#').unwrap_or(name);
    validate_target_name(name).map_err(|_| {
        ClientError::BadInput(BadInput::TopicName {
            input: input.to_owned(),
        })
    })?;
    Ok(name.to_owned())
}

/// A topic as `topic list` shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct TopicView {
    /// Its name, without `#`.
    pub name: String,
    /// Private (own key, members add members) or public.
    pub private: bool,
    /// What its creator said it is for.
    pub description: String,
    /// How many members it has now.
    pub members: usize,
    /// Whether this member is in it.
    pub joined: bool,
    /// Unread messages of it in this device's inbox.
    pub unread: u64,
    /// Private: a member left and its key must rotate before the next post
    /// (the next member to post does it).
    pub needs_rekey: bool,
}

fn topic_view(state: &MeshState, name: &str, unread: u64) -> Option<TopicView> {
    let info = state.roster().topic(name)?;
    Some(TopicView {
        name: name.to_owned(),
        private: info.private,
        description: info.description.clone(),
        members: info.members.len(),
        joined: info.members.contains_key(&state.my_key()),
        unread,
        needs_rekey: info.private && info.needs_rekey,
    })
}

/// Every topic of the mesh with this device's unread counts. Call
/// [`MeshClient::settle`] first to count what the broker had queued.
pub async fn topics(client: &MeshClient) -> Result<Vec<TopicView>, ClientError> {
    let unread = client.local().unread_by_target(&client.mesh().id).await?;
    Ok(client.with_state(|s| {
        s.roster()
            .topics()
            .keys()
            .filter_map(|name| {
                let n = unread.get(&format!("#{name}")).copied().unwrap_or(0);
                topic_view(s, name, n)
            })
            .collect()
    }))
}

/// Creates a topic; this member is its first member. A private topic gets
/// a random key, sealed to this member in the entry.
pub async fn topic_create(
    client: &MeshClient,
    name: &str,
    private: bool,
    description: &str,
) -> Result<TopicView, ClientError> {
    let name = topic_name(name)?;
    if description.len() > MAX_TOPIC_DESCRIPTION_BYTES || description.chars().any(char::is_control)
    {
        return Err(ClientError::BadInput(BadInput::TopicDescription {
            max: MAX_TOPIC_DESCRIPTION_BYTES,
        }));
    }
    client
        .append_with(|s| {
            if s.roster().topic(&name).is_some() {
                return Err(ClientError::Exists(Existing::Topic {
                    topic: name.clone(),
                }));
            }
            let (body, _key) =
                topic_create_body(&name, private, description, &s.my_key(), &s.mesh_id())
                    .map_err(box_err)?;
            let mut chain = Chain::new(s);
            chain.push(body)?;
            chain.done()
        })
        .await?;
    client
        .with_state(|s| topic_view(s, &name, 0))
        .ok_or_else(|| ClientError::Protocol("the new topic is not in the log".into()))
}

/// Joins a public topic. A private topic cannot be joined: one of its
/// members adds you ([`topic_add`]), sealing its key to you.
pub async fn topic_join(client: &MeshClient, name: &str) -> Result<TopicView, ClientError> {
    let name = topic_name(name)?;
    client
        .append_with(|s| {
            let info = s.roster().topic(&name).ok_or_else(|| s.no_such_topic(&name))?;
            if info.members.contains_key(&s.my_key()) {
                return Err(ClientError::Exists(Existing::InTopic { topic: name.clone() }));
            }
            if info.private {
                return Err(not_allowed(format!(
                    "#{name} is a private topic: ask one of its members to add you (`claudemesh topic add {name} <your name>`)"
                )));
            }
            let mut chain = Chain::new(s);
            chain.push(topic_join_body(&name, &s.my_key(), None).map_err(box_err)?)?;
            chain.done()
        })
        .await?;
    let unread = client.local().unread_by_target(&client.mesh().id).await?;
    let n = unread.get(&format!("#{name}")).copied().unwrap_or(0);
    client
        .with_state(|s| topic_view(s, &name, n))
        .ok_or_else(|| ClientError::Protocol("the topic is not in the log".into()))
}

/// Adds a member to a topic. Private: this member must be in it, and seals
/// the topic's current key to the new member (rotating it first if a
/// member left). Public: owners and admins may add anyone (others join by
/// themselves). Returns the added member's name and key.
pub async fn topic_add(
    client: &MeshClient,
    name: &str,
    peer: &str,
) -> Result<(String, PublicKey), ClientError> {
    let name = topic_name(name)?;
    let member = match client.resolve(peer).await? {
        Target::Member(k) => k,
        _ => {
            return Err(ClientError::NotAMember {
                peer: peer.to_owned(),
            });
        }
    };
    client
        .append_with(|s| {
            let info = s.roster().topic(&name).ok_or_else(|| s.no_such_topic(&name))?;
            if info.members.contains_key(&member) {
                return Err(ClientError::Exists(Existing::MemberInTopic {
                    member: s.name_of(&member),
                    topic: name.clone(),
                }));
            }
            let mut chain = Chain::new(s);
            if info.private {
                if !info.members.contains_key(&s.my_key()) {
                    return Err(not_allowed(format!(
                        "you are not in the private topic #{name}; only its members can add someone"
                    )));
                }
                let key = if info.needs_rekey || s.lacks_topic_key(&name) {
                    let (body, key) =
                        topic_rekey_body(&name, info, &s.mesh_id()).map_err(box_err)?;
                    chain.push(body)?;
                    key
                } else {
                    s.private_topic_key(&name, info.key_epoch)
                        .cloned()
                        .ok_or_else(|| {
                            ClientError::MissingKey(MissingKey::Topic {
                                topic: name.clone(),
                            })
                        })?
                };
                chain.push(topic_join_body(&name, &member, Some(&key)).map_err(box_err)?)?;
            } else {
                if member != s.my_key() && !s.is_admin() {
                    return Err(forbidden(format!(
                        "only owners and admins can add someone else to a public topic; they can join it themselves (`claudemesh topic join {name}`)"
                    )));
                }
                chain.push(topic_join_body(&name, &member, None).map_err(box_err)?)?;
            }
            chain.done()
        })
        .await?;
    Ok((client.with_state(|s| s.name_of(&member)), member.0))
}

/// Leaves a topic. A private topic then needs a new key, which its next
/// poster writes.
pub async fn topic_leave(client: &MeshClient, name: &str) -> Result<(), ClientError> {
    let name = topic_name(name)?;
    client
        .append_with(|s| {
            let info = s
                .roster()
                .topic(&name)
                .ok_or_else(|| s.no_such_topic(&name))?;
            if !info.members.contains_key(&s.my_key()) {
                return Err(ClientError::NotInTopic {
                    topic: name.clone(),
                });
            }
            let mut chain = Chain::new(s);
            chain.push(EntryBody::TopicLeave {
                topic: name.clone(),
                member: s.my_key(),
            })?;
            chain.done()
        })
        .await
}

/// A member of a topic.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct TopicMemberView {
    /// Display name (or short key).
    pub name: String,
    /// Member key (hex).
    pub key: String,
    /// The log entry that added it.
    pub since_seq: u64,
    /// It created the topic.
    pub creator: bool,
    /// This member.
    pub you: bool,
}

/// The members of a topic, by name.
pub fn topic_members(client: &MeshClient, name: &str) -> Result<Vec<TopicMemberView>, ClientError> {
    let name = topic_name(name)?;
    client.with_state(|s| {
        let info = s
            .roster()
            .topic(&name)
            .ok_or_else(|| s.no_such_topic(&name))?;
        let mut out: Vec<TopicMemberView> = info
            .members
            .iter()
            .map(|(k, since)| TopicMemberView {
                name: s.name_of(k),
                key: k.to_hex(),
                since_seq: *since,
                creator: *k == info.creator,
                you: *k == s.my_key(),
            })
            .collect();
        out.sort_by_key(|m| m.name.to_lowercase());
        Ok(out)
    })
}

/// Marks every unread message of a topic in this device's inbox read (the
/// user said so: shown, `via` where: [`Via::Inbox`] for `topic read`) and
/// sends the topic's shown watermark. Returns how many.
pub async fn topic_read(client: &MeshClient, name: &str, via: Via) -> Result<usize, ClientError> {
    let name = topic_name(name)?;
    client.with_state(|s| {
        s.roster()
            .topic(&name)
            .map(|_| ())
            .ok_or_else(|| s.no_such_topic(&name))
    })?;
    let target = format!("#{name}");
    let list = client
        .local()
        .inbox_of(&client.mesh().id, Some(&target), true, u32::MAX)
        .await?;
    client.mark_shown(&list, via).await?;
    Ok(list.len())
}

/// A page of a topic's history, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct TopicHistory {
    /// The topic, without `#`.
    pub topic: String,
    /// Verified messages, newest first.
    pub messages: Vec<InboxMessage>,
    /// Older messages exist (ask with `before` = the last id).
    pub more: bool,
    /// Messages sealed under a key this device never held (posted before
    /// this member could read the topic); not shown.
    pub unreadable: usize,
    /// Messages that failed verification; never shown.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejection>,
}

fn history_error(state: &MeshState, topic: &str, e: ClientError) -> ClientError {
    match e {
        ClientError::Refused {
            code: ErrorCode::UnknownRecipient,
            ..
        } => state.no_such_topic(topic),
        e => e,
    }
}

/// A topic's stored messages (this member's own posts included), newest
/// first, each verified and opened exactly like a delivery; `before` (a
/// message id) pages to older ones.
pub async fn topic_history(
    client: &MeshClient,
    name: &str,
    limit: u32,
    before: Option<MessageId>,
) -> Result<TopicHistory, ClientError> {
    let name = topic_name(name)?;
    client.with_state(|s| {
        let info = s.roster().topic(&name).ok_or_else(|| s.no_such_topic(&name))?;
        if info.private && !info.members.contains_key(&s.my_key()) {
            return Err(not_allowed(format!(
                "#{name} is a private topic and you are not in it; only its members can read it (ask one of them to add you: `claudemesh topic add {name} <your name>`)"
            )));
        }
        Ok(())
    })?;
    let before_seq = match before {
        None => None,
        Some(id) => Some(find_seq(client, &name, &id).await?),
    };
    let page = client
        .topic_history_page(&name, Some(limit.clamp(1, MAX_HISTORY_PAGE)), before_seq)
        .await
        .map_err(|e| client.with_state(|s| history_error(s, &name, e)))?;
    let my_name = client.with_state(my_name);
    let mine = client.with_state(MeshState::my_key);
    let want = Target::Topic(name.clone());
    let mut out = TopicHistory {
        topic: name.clone(),
        messages: Vec::with_capacity(page.messages.len()),
        more: page.more,
        unreadable: 0,
        rejected: Vec::new(),
    };
    // Senders and keys newer than this device's log: catch up once, not
    // once per message (old posts under keys never held stay unreadable).
    if let Err(e) = client.sync_log().await {
        tracing::warn!(error = %e, "membership log sync failed");
    }
    for d in page.messages {
        let opened = if d.envelope.target == want {
            client.with_state(|s| d.envelope.verify_and_open(s.roster(), s))
        } else {
            Err(EnvelopeError::NotForMe)
        };
        match opened {
            Ok(msg) => {
                let from = msg.sender_member();
                out.messages.push(InboxMessage {
                    local_id: 0,
                    id: msg.id().to_hex(),
                    from: from.to_hex(),
                    from_name: Some(client.with_state(|s| s.name_of(&from))),
                    from_session: msg.sender_session().to_hex(),
                    target: msg.target().to_string(),
                    body: String::from_utf8_lossy(msg.body()).into_owned(),
                    priority: msg.priority().as_str().to_owned(),
                    reply_to: msg.reply_to().map(|r| r.to_hex()),
                    sent_at: msg.sent_at(),
                    received_at: None,
                    seq: d.seq,
                    read: None,
                    mentions_me: from != mine && flags_me(&msg, &my_name),
                    you: Some(from == mine),
                    deadline_ms: None,
                    expired: false,
                });
            }
            Err(EnvelopeError::NoKey { .. }) => out.unreadable += 1,
            Err(e) => {
                let reason = if d.envelope.target == want {
                    e.to_string()
                } else {
                    format!(
                        "the broker served a message for {} as part of #{name}",
                        d.envelope.target
                    )
                };
                tracing::warn!(seq = d.seq, error = %reason, "refused a stored topic message");
                out.rejected.push(Rejection {
                    seq: d.seq,
                    sender: Some(d.envelope.sender.member.to_hex()),
                    reason,
                    at: now_ms(),
                });
            }
        }
    }
    Ok(out)
}

/// The broker seq of a message of `topic` with this id: from this device's
/// inbox or outbox, else by searching the topic's history.
async fn find_seq(client: &MeshClient, topic: &str, id: &MessageId) -> Result<u64, ClientError> {
    let target = format!("#{topic}");
    if let Some(seq) = client
        .local()
        .seq_of_message(&client.mesh().id, id, Some(&target))
        .await?
    {
        return Ok(seq);
    }
    let mut before = None;
    for _ in 0..MAX_ID_SEARCH_PAGES {
        let page = client
            .topic_history_page(topic, Some(MAX_HISTORY_PAGE), before)
            .await
            .map_err(|e| client.with_state(|s| history_error(s, topic, e)))?;
        if let Some(d) = page.messages.iter().find(|d| d.envelope.id == *id) {
            return Ok(d.seq);
        }
        match page.messages.last() {
            Some(last) if page.more => before = Some(last.seq),
            _ => break,
        }
    }
    Err(ClientError::NotFound(format!(
        "no message {id} in #{topic} (give an id that `claudemesh topic history {topic}` printed)"
    )))
}

//! Topics, groups and broadcast from a member's side, and the membership
//! changes that go with them. Every change here is a signed entry of the
//! membership log (`docs/security.md` §7.6), checked against a copy of the
//! verified roster before it is sent: create, join, add to, leave and list
//! topics; join, leave and list groups; kick and ban (a `remove` and the
//! `rekey` that must follow it in one atomic append, then a `topic_rekey`
//! of every private topic the removed member was in, in appends that each
//! fit well inside a frame), unban, list bans, and
//! leave the mesh, and write a new mesh key on demand ([`mesh_rekey`]).
//! Also: which keys must rotate before a fan-out message is sealed
//! ([`rotation_needed`]), which this member should rotate on its own
//! ([`repairs_needed`]: a kick or ban some admin left without its rekey, a
//! key this member is owed, a key sealed to it that does not open), a
//! topic's verified history, posting with `@name` mentions, and whether a
//! received message mentions this member.

use claudemesh_crypto::envelope::{
    EnvelopeError, MessageId, Priority, Target, VerifiedMessage, validate_target_name,
};
use claudemesh_crypto::log::{
    EntryBody, LogEntry, LogError, LogFault, MAX_GROUP_ROLE_BYTES, MAX_TOPIC_DESCRIPTION_BYTES,
    RemoveKind, Role, Roster, SealScope, rekey_body, topic_create_body, topic_join_body,
    topic_rekey_body,
};
use claudemesh_crypto::{EpochRootKey, PublicKey};
use claudemesh_proto::limits::MAX_LOG_ENTRIES_PER_FRAME;
use claudemesh_proto::{ErrorCode, close};
use serde::Serialize;

use crate::client::{ConnectOptions, MeshClient, SendOutcome, now_ms};
use crate::error::ClientError;
use crate::home::{Home, MeshConfig};
use crate::local::Rejection;
use crate::mesh::MeshState;

/// At most this many `@` in one post are looked at for mentions.
pub const MAX_MENTIONS: usize = 16;
/// Largest page of topic history the broker serves.
pub const MAX_HISTORY_PAGE: u32 = 200;
/// How many history pages `--before <id>` searches for the id.
const MAX_ID_SEARCH_PAGES: usize = 50;

// ---------------------------------------------------------------------------
// Names

/// A topic name as typed (`deploys` or `#deploys`), checked.
pub fn topic_name(input: &str) -> Result<String, ClientError> {
    let name = input.trim();
    let name = name.strip_prefix('#').unwrap_or(name);
    validate_target_name(name).map_err(|_| {
        ClientError::Invalid(format!(
            "{input:?} is not a topic name (1-64 of A-Z a-z 0-9 . _ - /, optionally after #)"
        ))
    })?;
    Ok(name.to_owned())
}

/// A group name as typed (`eng/backend` or `@eng/backend`), checked.
pub fn group_name(input: &str) -> Result<String, ClientError> {
    let name = input.trim();
    let name = name.strip_prefix('@').unwrap_or(name);
    validate_target_name(name).map_err(|_| {
        ClientError::Invalid(format!(
            "{input:?} is not a group name (1-64 of A-Z a-z 0-9 . _ - /, optionally after @)"
        ))
    })?;
    Ok(name.to_owned())
}

fn forbidden(message: impl Into<String>) -> ClientError {
    ClientError::Refused {
        code: ErrorCode::Forbidden,
        message: message.into(),
    }
}

fn not_allowed(message: impl Into<String>) -> ClientError {
    ClientError::NotAllowed(message.into())
}

fn box_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Invalid(format!("cannot seal a key: {e}"))
}

/// A log entry this member built that the verifier refuses: not a sign
/// that the broker lies (it is our own entry), so never a security error.
fn refused_entry(e: LogError) -> ClientError {
    match e.fault {
        LogFault::Unauthorized { action, .. } => {
            forbidden(format!("you are not allowed to {action}"))
        }
        LogFault::MissingRekey(seq) => ClientError::Refused {
            code: ErrorCode::RekeyRequired,
            message: format!(
                "the kick or ban at log entry {seq} still waits for its new mesh key, and nothing else may be appended first; an owner or admin must write it (`claudemesh mesh rekey`)"
            ),
        },
        fault => ClientError::Invalid(format!("this change is not allowed: {fault}")),
    }
}

fn me(state: &MeshState) -> PublicKey {
    state.member_key().public()
}

fn is_admin(state: &MeshState) -> bool {
    matches!(
        state.roster().role_of(&me(state)),
        Some(Role::Owner | Role::Admin)
    )
}

// ---------------------------------------------------------------------------
// Key rotation before a fan-out send

/// A key that must rotate before a fan-out message is sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// A mesh `rekey` (a member left or was removed, and no rekey followed).
    Mesh,
    /// A `topic_rekey` of this private topic (a member left it).
    Topic(String),
}

/// A kick or ban whose rekey has not been written yet (the log requires it
/// as the very next entry, by the owner or any admin): (remover, removed).
pub fn pending_removal(state: &MeshState) -> Option<(PublicKey, PublicKey)> {
    let seq = state.roster().pending_removal()?;
    let e = state.entries().get(usize::try_from(seq).ok()?)?;
    match &e.body {
        EntryBody::Remove { member, .. } => Some((e.author, *member)),
        _ => None,
    }
}

/// Whether the log lets this member write a mesh `rekey` now.
pub fn may_rekey(state: &MeshState) -> bool {
    state.roster().may_rekey(&me(state))
}

/// Why this member cannot write the mesh key it needs, as a
/// `rekey_required` refusal that says who can.
fn rekey_refusal(state: &MeshState) -> ClientError {
    let message = if let Some((admin, removed)) = pending_removal(state) {
        format!(
            "{} removed {} and has not written the new mesh key yet; an owner or admin must write it (`claudemesh mesh rekey`)",
            state.name_of(&admin),
            state.name_of(&removed)
        )
    } else if let Some(b) = state.bad_seals().iter().find(|b| {
        b.seal.scope
            == SealScope::Mesh {
                epoch: state.roster().epoch(),
            }
    }) {
        format!(
            "the mesh key of epoch {} that {} ({}) sealed to you does not open or does not match its confirmation, and only an owner or admin may write a new one now: ask one to run `claudemesh mesh rekey`",
            state.roster().epoch(),
            state.name_of(&b.seal.author),
            crate::mesh::short(&b.seal.author)
        )
    } else {
        format!(
            "this device does not hold the mesh key of the current epoch ({}), and only an owner or admin may write a new one now: ask one to run `claudemesh mesh rekey`",
            state.roster().epoch()
        )
    };
    ClientError::Refused {
        code: ErrorCode::RekeyRequired,
        message,
    }
}

/// Whether the mesh key must rotate before this member seals to the whole
/// mesh: `Some(Mesh)` when it must and this member may write it; an error
/// (`rekey_required`, saying who can) when it must and this member may not.
fn mesh_rotation(state: &MeshState) -> Result<Option<Rotation>, ClientError> {
    if !state.roster().needs_rekey() && !state.lacks_current_root() {
        return Ok(None);
    }
    if may_rekey(state) {
        Ok(Some(Rotation::Mesh))
    } else {
        Err(rekey_refusal(state))
    }
}

/// Which key, if any, must rotate before this member seals a message to
/// `target`: the mesh's (for `*`, `@group` and public topics) when the
/// roster needs a rekey or this device lacks the current root key (its
/// seal was bad), or a private topic's when it needs a `topic_rekey` or
/// this member's seal of its current key was bad. An error when the
/// rotation is not this member's to write (a kick or ban some admin left
/// pending, seen by a plain member). Direct targets never need one.
pub fn rotation_needed(
    state: &MeshState,
    target: &Target,
) -> Result<Option<Rotation>, ClientError> {
    let roster = state.roster();
    match target {
        Target::Member(_) | Target::Session(_) => Ok(None),
        Target::Broadcast | Target::Group(_) => mesh_rotation(state),
        Target::Topic(t) => {
            let info = roster.topic(t).ok_or_else(|| state.no_such_topic(t))?;
            if !info.private {
                return mesh_rotation(state);
            }
            // A non-member cannot rotate it (sealing then says why).
            let mine = info.members.contains_key(&me(state));
            let due = info.needs_rekey || state.lacks_topic_key(t);
            Ok((mine && due).then(|| Rotation::Topic(t.clone())))
        }
    }
}

/// The keys this member should rotate on its own, now, without waiting
/// for a message to send: the mesh key when an admin's kick or ban waits
/// for its rekey and this member is the owner or an admin, or when this
/// device lacks the current root key (a joiner owed it, or a seal that was
/// bad) and the log lets it write one; and each private topic it is in
/// whose current key it could not open. A leave is left to the next
/// member who sends to the whole mesh.
pub fn repairs_needed(state: &MeshState) -> Vec<Rotation> {
    let roster = state.roster();
    let mut out = Vec::new();
    let removal = roster.pending_removal().is_some();
    if (removal || state.lacks_current_root()) && may_rekey(state) {
        out.push(Rotation::Mesh);
    }
    if removal {
        // Nothing else may be appended before that rekey.
        return out;
    }
    for (name, info) in roster.topics() {
        if info.private && state.lacks_topic_key(name) {
            out.push(Rotation::Topic(name.clone()));
        }
    }
    out
}

/// The signed entry that performs a rotation, as the next entry of the log.
pub fn rotation_entry(state: &MeshState, r: &Rotation, at: u64) -> Result<LogEntry, ClientError> {
    let roster = state.roster();
    let body = match r {
        Rotation::Mesh => mesh_rekey_body(roster)?,
        Rotation::Topic(t) => {
            let info = roster.topic(t).ok_or_else(|| state.no_such_topic(t))?;
            topic_rekey_body(t, info, &roster.mesh_id())
                .map_err(box_err)?
                .0
        }
    };
    Ok(LogEntry::sign(
        state.member_key(),
        roster.len(),
        roster.head(),
        at,
        body,
    ))
}

/// A `rekey` to the next epoch: a fresh root key sealed to exactly the
/// current members (never to an invite key: a joiner whose invite is older
/// than the epoch is owed the key by the next rekey, which it writes
/// itself), with its key confirmation.
pub fn mesh_rekey_body(roster: &Roster) -> Result<EntryBody, ClientError> {
    let root = EpochRootKey::generate(roster.epoch() + 1);
    let recipients: Vec<PublicKey> = roster.members().keys().copied().collect();
    rekey_body(&root, &roster.mesh_id(), &recipients).map_err(box_err)
}

/// A new mesh key written on demand.
#[derive(Debug, Clone, Serialize)]
pub struct Rekeyed {
    /// The new epoch.
    pub epoch: u64,
    /// How many members it was sealed to.
    pub members: usize,
}

/// Writes a new mesh key now (`claudemesh mesh rekey`): a `rekey` sealed to
/// every current member. Owners and admins always may; another member only
/// when a member left, a joiner is owed the key, or the current key was
/// made by a member (`docs/security.md` §7.3).
pub async fn mesh_rekey(client: &MeshClient) -> Result<Rekeyed, ClientError> {
    let before = client.with_state(|s| s.roster().epoch());
    client
        .append_with(|s| {
            if s.roster().epoch() > before {
                // Someone else wrote one meanwhile: that is the new key.
                return Ok((Vec::new(), None));
            }
            if !may_rekey(s) {
                return Err(forbidden(
                    "only the mesh's owner and admins can write a new mesh key now (a member may only when someone left, a joiner is owed the key, or the current key was made by a member): ask an owner or admin to run `claudemesh mesh rekey`",
                ));
            }
            let mut chain = Chain::new(s);
            chain.push(mesh_rekey_body(s.roster())?)?;
            chain.done()
        })
        .await?;
    Ok(client.with_state(|s| Rekeyed {
        epoch: s.roster().epoch(),
        members: s.roster().members().len(),
    }))
}

/// Entries signed by this member one after another, each checked against
/// a copy of the verified roster (so a change the log would refuse fails
/// here, with the verifier's reason, before anything is sent).
struct Chain<'a> {
    state: &'a MeshState,
    roster: Roster,
    entries: Vec<LogEntry>,
    at: u64,
}

impl<'a> Chain<'a> {
    fn new(state: &'a MeshState) -> Self {
        Chain {
            state,
            roster: state.roster().clone(),
            entries: Vec::new(),
            at: now_ms() / 1000,
        }
    }

    fn push(&mut self, body: EntryBody) -> Result<(), ClientError> {
        let e = self.sign(body);
        self.roster.apply(&e).map_err(refused_entry)?;
        self.entries.push(e);
        Ok(())
    }

    fn sign(&self, body: EntryBody) -> LogEntry {
        LogEntry::sign(
            self.state.member_key(),
            self.roster.len(),
            self.roster.head(),
            self.at,
            body,
        )
    }

    /// [`Chain::push`] unless the chain already holds an entry and this one
    /// would take its JSON past `max_bytes` (`used` so far) or its length
    /// past [`MAX_LOG_ENTRIES_PER_FRAME`]: then nothing changes and it
    /// returns false.
    fn push_within(
        &mut self,
        body: EntryBody,
        used: &mut usize,
        max_bytes: usize,
    ) -> Result<bool, ClientError> {
        let e = self.sign(body);
        let size = serde_json::to_string(&e)
            .map_err(|err| ClientError::Local(format!("cannot encode a log entry: {err}")))?
            .len()
            + 1;
        let full = self.entries.len() >= MAX_LOG_ENTRIES_PER_FRAME
            || used.saturating_add(size) > max_bytes;
        if !self.entries.is_empty() && full {
            return Ok(false);
        }
        self.roster.apply(&e).map_err(refused_entry)?;
        self.entries.push(e);
        *used = used.saturating_add(size);
        Ok(true)
    }

    fn done(self) -> Result<(Vec<LogEntry>, Option<Vec<u8>>), ClientError> {
        Ok((self.entries, None))
    }
}

// ---------------------------------------------------------------------------
// Topics

/// A topic as `topic list` shows it.
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
        joined: info.members.contains_key(&me(state)),
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
        return Err(ClientError::Invalid(format!(
            "a topic description is at most {MAX_TOPIC_DESCRIPTION_BYTES} bytes, without control characters"
        )));
    }
    client
        .append_with(|s| {
            if s.roster().topic(&name).is_some() {
                return Err(ClientError::Invalid(format!(
                    "a topic #{name} already exists in this mesh"
                )));
            }
            let (body, _key) = topic_create_body(&name, private, description, &me(s), &s.mesh_id())
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
            if info.members.contains_key(&me(s)) {
                return Err(ClientError::Invalid(format!("you are already in #{name}")));
            }
            if info.private {
                return Err(not_allowed(format!(
                    "#{name} is a private topic: ask one of its members to add you (`claudemesh topic add {name} <your name>`)"
                )));
            }
            let mut chain = Chain::new(s);
            chain.push(topic_join_body(&name, &me(s), None).map_err(box_err)?)?;
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
            return Err(ClientError::Invalid(format!(
                "{peer:?} is not a member of the mesh (give a name or a key prefix)"
            )));
        }
    };
    client
        .append_with(|s| {
            let info = s.roster().topic(&name).ok_or_else(|| s.no_such_topic(&name))?;
            if info.members.contains_key(&member) {
                return Err(ClientError::Invalid(format!(
                    "{} is already in #{name}",
                    s.name_of(&member)
                )));
            }
            let mut chain = Chain::new(s);
            if info.private {
                if !info.members.contains_key(&me(s)) {
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
                            ClientError::Invalid(format!(
                                "this device could not open the key of #{name}"
                            ))
                        })?
                };
                chain.push(topic_join_body(&name, &member, Some(&key)).map_err(box_err)?)?;
            } else {
                if member != me(s) && !is_admin(s) {
                    return Err(forbidden(format!(
                        "only owners and admins can add someone else to a public topic; they can join it themselves (`claudemesh topic join {name}`)"
                    )));
                }
                chain.push(topic_join_body(&name, &member, None).map_err(box_err)?)?;
            }
            chain.done()
        })
        .await?;
    Ok((client.with_state(|s| s.name_of(&member)), member))
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
            if !info.members.contains_key(&me(s)) {
                return Err(ClientError::Invalid(format!("you are not in #{name}")));
            }
            let mut chain = Chain::new(s);
            chain.push(EntryBody::TopicLeave {
                topic: name.clone(),
                member: me(s),
            })?;
            chain.done()
        })
        .await
}

/// A member of a topic.
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
                you: *k == me(s),
            })
            .collect();
        out.sort_by_key(|m| m.name.to_lowercase());
        Ok(out)
    })
}

/// Marks every unread message of a topic in this device's inbox read (and
/// sends the read receipts). Returns how many.
pub async fn topic_read(client: &MeshClient, name: &str) -> Result<usize, ClientError> {
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
    client.mark_read(&list).await?;
    Ok(list.len())
}

/// A verified message of a topic's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryMessage {
    /// The sender's message id (hex).
    pub id: String,
    /// Sender's member key (hex).
    pub from: String,
    /// Sender's display name.
    pub from_name: String,
    /// Sender's session key (hex).
    pub from_session: String,
    /// `#topic`.
    pub target: String,
    /// The text.
    pub body: String,
    /// Priority.
    pub priority: String,
    /// The message it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Sender's clock, unix ms.
    pub sent_at: u64,
    /// Broker seq.
    pub seq: u64,
    /// It mentions this member.
    pub mentions_me: bool,
    /// This member posted it.
    pub you: bool,
}

/// A page of a topic's history, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct TopicHistory {
    /// The topic, without `#`.
    pub topic: String,
    /// Verified messages, newest first.
    pub messages: Vec<HistoryMessage>,
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
        if info.private && !info.members.contains_key(&me(s)) {
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
    let mine = client.with_state(me);
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
                out.messages.push(HistoryMessage {
                    id: msg.id().to_hex(),
                    from: from.to_hex(),
                    from_name: client.with_state(|s| s.name_of(&from)),
                    from_session: msg.sender_session().to_hex(),
                    target: msg.target().to_string(),
                    body: String::from_utf8_lossy(msg.body()).into_owned(),
                    priority: msg.priority().as_str().to_owned(),
                    reply_to: msg.reply_to().map(|r| r.to_hex()),
                    sent_at: msg.sent_at(),
                    seq: d.seq,
                    mentions_me: from != mine && flags_me(&msg, &my_name),
                    you: from == mine,
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

// ---------------------------------------------------------------------------
// Posting and mentions

/// A message sent, with the mentions it notified.
#[derive(Debug, Clone, Serialize)]
pub struct Posted {
    /// The message id (hex).
    pub id: String,
    /// Broker seq.
    pub seq: u64,
    /// It had been accepted before.
    pub duplicate: bool,
    /// The target (`#deploys`, `@eng`, `*`, or the recipient's name).
    pub to: String,
    /// Members mentioned (`@name`) outside the public topic who got a
    /// direct message quoting the post.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mentioned: Vec<String>,
    /// Mentions that could not be delivered, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mention_failures: Vec<String>,
    /// The raw outcome.
    #[serde(skip)]
    pub outcome: Option<SendOutcome>,
}

/// Sends `text` to `target` (as [`MeshClient::send`]). For a public topic,
/// each `@name` (at most [`MAX_MENTIONS`]) naming a member who is not in
/// the topic also gets a direct message `[mention in #topic] <me>: <text>`
/// answering the post. Private topics never quote their posts outside.
pub async fn post(
    client: &MeshClient,
    target: Target,
    text: &str,
    priority: Priority,
    reply_to: Option<MessageId>,
) -> Result<Posted, ClientError> {
    client.with_state(|s| s.check_fanout_target(&target))?;
    let outcome = client
        .send(target.clone(), text.as_bytes(), priority, reply_to)
        .await?;
    let to = match &target {
        Target::Member(k) => client.with_state(|s| s.display_name(k)),
        other => other.to_string(),
    };
    let mut posted = Posted {
        id: outcome.id.to_hex(),
        seq: outcome.seq,
        duplicate: outcome.duplicate,
        to,
        mentioned: Vec::new(),
        mention_failures: Vec::new(),
        outcome: Some(outcome),
    };
    let Target::Topic(topic) = &target else {
        return Ok(posted);
    };
    let (outside, sender) = client.with_state(|s| {
        let Some(info) = s.roster().topic(topic).filter(|i| !i.private) else {
            return (Vec::new(), String::new());
        };
        let outside: Vec<(PublicKey, String)> = mentioned_members(s, text)
            .into_iter()
            .filter(|k| *k != me(s) && !info.members.contains_key(k))
            .map(|k| (k, s.display_name(&k)))
            .collect();
        (outside, my_name(s))
    });
    for (member, name) in outside {
        let quote = format!("[mention in #{topic}] {sender}: {text}");
        match client
            .send(
                Target::Member(member),
                quote.as_bytes(),
                priority,
                Some(outcome.id),
            )
            .await
        {
            Ok(_) => posted.mentioned.push(name),
            Err(e) => posted.mention_failures.push(format!("{name}: {e}")),
        }
    }
    Ok(posted)
}

/// Byte offsets just after each `@` that starts a mention (not inside a
/// word, so `bob@example.com` mentions no one), at most [`MAX_MENTIONS`].
fn mention_starts(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.match_indices('@')
        .filter(|(i, _)| {
            text[..*i]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric())
        })
        .map(|(i, _)| i + 1)
        .take(MAX_MENTIONS)
}

/// Whether `rest` starts with `name` (any ASCII case), followed by the end
/// or a character that cannot continue a name.
fn name_at(rest: &str, name: &str) -> bool {
    !name.is_empty()
        && rest
            .get(..name.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(name))
        && rest[name.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'))
}

/// Whether `text` mentions `name` (`@name`, any ASCII case).
pub fn mentions_name(text: &str, name: &str) -> bool {
    mention_starts(text).any(|at| name_at(&text[at..], name))
}

/// The members `text` mentions by display name (`@alice`, `@Bob Smith`),
/// in order, each once. At each `@` the longest matching name wins; a name
/// two members share mentions neither.
pub fn mentioned_members(state: &MeshState, text: &str) -> Vec<PublicKey> {
    let names: Vec<(PublicKey, String)> = state
        .roster()
        .members()
        .keys()
        .filter_map(|m| state.profile(m).map(|p| (*m, p.name)))
        .filter(|(_, n)| !n.is_empty())
        .collect();
    let mut out: Vec<PublicKey> = Vec::new();
    for at in mention_starts(text) {
        let rest = &text[at..];
        let mut hits: Vec<&(PublicKey, String)> =
            names.iter().filter(|(_, n)| name_at(rest, n)).collect();
        let Some(longest) = hits.iter().map(|(_, n)| n.len()).max() else {
            continue;
        };
        hits.retain(|(_, n)| n.len() == longest);
        if let [(k, _)] = hits.as_slice()
            && !out.contains(k)
        {
            out.push(*k);
        }
    }
    out
}

/// This member's display name: from its profile, else the local settings.
pub fn my_name(state: &MeshState) -> String {
    state
        .profile(&me(state))
        .map(|p| p.name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| state.config.display_name.clone())
}

/// Whether a received message is flagged for this member: a topic, group
/// or broadcast message whose body mentions `my_name`.
pub fn flags_me(msg: &VerifiedMessage, my_name: &str) -> bool {
    !msg.target().is_direct() && mentions_name(&String::from_utf8_lossy(msg.body()), my_name)
}

// ---------------------------------------------------------------------------
// Groups

/// A member of a group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupMemberView {
    /// Display name.
    pub name: String,
    /// Member key (hex).
    pub key: String,
    /// Its role in the group (`lead`, …), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// This member.
    pub you: bool,
}

/// A group with members.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    /// Its name, without `@`.
    pub name: String,
    /// Its members now (`@name` also reaches the groups below it).
    pub members: Vec<GroupMemberView>,
    /// Whether this member is in it.
    pub joined: bool,
}

/// Every group that has members now.
pub fn groups(client: &MeshClient) -> Vec<GroupView> {
    client.with_state(|s| {
        let mine = me(s);
        s.roster()
            .groups()
            .iter()
            .filter(|(_, g)| !g.members.is_empty())
            .map(|(name, g)| {
                let mut members: Vec<GroupMemberView> = g
                    .members
                    .iter()
                    .map(|(k, (_, role))| GroupMemberView {
                        name: s.name_of(k),
                        key: k.to_hex(),
                        role: role.clone(),
                        you: *k == mine,
                    })
                    .collect();
                members.sort_by_key(|m| m.name.to_lowercase());
                GroupView {
                    name: name.clone(),
                    joined: g.members.contains_key(&mine),
                    members,
                }
            })
            .collect()
    })
}

/// Joins a group (again, to change the role), with an optional role in it.
pub async fn group_join(
    client: &MeshClient,
    name: &str,
    role: Option<&str>,
) -> Result<String, ClientError> {
    let name = group_name(name)?;
    if let Some(r) = role
        && (r.is_empty() || r.len() > MAX_GROUP_ROLE_BYTES || r.chars().any(char::is_control))
    {
        return Err(ClientError::Invalid(format!(
            "a group role is 1-{MAX_GROUP_ROLE_BYTES} bytes without control characters"
        )));
    }
    client
        .append_with(|s| {
            let current = s
                .roster()
                .groups()
                .get(&name)
                .and_then(|g| g.members.get(&me(s)));
            if let Some((_, r)) = current
                && r.as_deref() == role
            {
                return Err(ClientError::Invalid(format!("you are already in @{name}")));
            }
            let mut chain = Chain::new(s);
            chain.push(EntryBody::GroupJoin {
                group: name.clone(),
                member: me(s),
                role: role.map(str::to_owned),
            })?;
            chain.done()
        })
        .await?;
    Ok(name)
}

/// Leaves a group.
pub async fn group_leave(client: &MeshClient, name: &str) -> Result<String, ClientError> {
    let name = group_name(name)?;
    client
        .append_with(|s| {
            let in_it = s
                .roster()
                .groups()
                .get(&name)
                .is_some_and(|g| g.members.contains_key(&me(s)));
            if !in_it {
                return Err(ClientError::Invalid(format!("you are not in @{name}")));
            }
            let mut chain = Chain::new(s);
            chain.push(EntryBody::GroupLeave {
                group: name.clone(),
                member: me(s),
            })?;
            chain.done()
        })
        .await?;
    Ok(name)
}

// ---------------------------------------------------------------------------
// Removals, bans, leaving

/// A member removed.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    /// Its name.
    pub name: String,
    /// Its key (hex).
    pub key: String,
    /// `kick` or `ban`.
    pub how: RemoveKind,
    /// The mesh's new epoch (its key is sealed to the remaining members
    /// only).
    pub epoch: u64,
    /// Invites the removal revoked: the one it joined with, if it still
    /// admitted anyone, and every open one it created.
    pub invites_revoked: usize,
    /// Private topics whose key was rotated after it.
    pub topics_rekeyed: Vec<String>,
    /// Private topics it was in, and this member is in, whose key this
    /// client could not rotate (the connection dropped, say): each is
    /// rotated by the next of its members who posts to it, before the post
    /// (the broker takes no post to it until then).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub topics_pending: Vec<String>,
}

/// Most bytes of entry JSON this client puts in one append of a kick's or
/// ban's `topic_rekey`s: well under half of a frame
/// ([`claudemesh_proto::limits::MAX_FRAME_BYTES`], 128 KiB), so a member who
/// was put in many large private topics cannot make its removal too large
/// to send.
pub const MAX_TOPIC_REKEY_APPEND_BYTES: usize = 48 * 1024;

/// Kicks or bans a member (owners and admins; an admin only members): a
/// `remove` and the `rekey` the log requires right after it, appended
/// atomically; then a `topic_rekey` of each private topic it was in that
/// this member is in, in further appends each well inside one frame
/// ([`MAX_TOPIC_REKEY_APPEND_BYTES`]), each signed at the log's head of
/// the moment. The removal is done once the first append is: a topic this
/// client could not rotate afterwards is named in
/// [`Removed::topics_pending`] and rotated by its next poster.
pub async fn remove(
    client: &MeshClient,
    peer: &str,
    how: RemoveKind,
) -> Result<Removed, ClientError> {
    if how == RemoveKind::Leave {
        return Err(ClientError::Invalid(
            "to leave the mesh use `claudemesh mesh leave`".into(),
        ));
    }
    if !client.with_state(is_admin) {
        return Err(forbidden("only owners and admins can remove members"));
    }
    let member = match client.resolve(peer).await? {
        Target::Member(k) => k,
        _ => {
            return Err(ClientError::Invalid(format!(
                "{peer:?} names a session, not a member (give a name or a key prefix)"
            )));
        }
    };
    let name = client.with_state(|s| s.name_of(&member));
    let due = std::sync::Mutex::new(Vec::new());
    client
        .append_with(|s| {
            let (entries, topics) = removal_entries(s, &member, how)?;
            if let Ok(mut d) = due.lock() {
                *d = topics;
            }
            Ok((entries, None))
        })
        .await?;
    let due = due.into_inner().unwrap_or_default();
    let (topics_rekeyed, topics_pending) = rekey_topics(client, &due).await;
    let (epoch, invites_revoked) = client.with_state(|s| {
        let r = s.roster();
        let removal = r.departed().get(&member).map(|d| d.seq);
        let revoked = r
            .invites()
            .values()
            .filter(|i| i.revoked_at.is_some() && i.revoked_at == removal)
            .count();
        (r.epoch(), revoked)
    });
    Ok(Removed {
        name,
        key: member.to_hex(),
        how,
        epoch,
        invites_revoked,
        topics_rekeyed,
        topics_pending,
    })
}

/// Writes the `topic_rekey`s of `topics` that are still due, in appends of
/// at most [`MAX_TOPIC_REKEY_APPEND_BYTES`]; returns the topics it rotated
/// and those still due when it stopped (on an error, which it logs: the
/// removal itself is done, and each topic left is rotated by its next
/// poster).
async fn rekey_topics(client: &MeshClient, topics: &[String]) -> (Vec<String>, Vec<String>) {
    let mut done = Vec::new();
    // Each append rotates at least one topic, or there is nothing left.
    for _ in 0..=topics.len() {
        let batch = std::sync::Mutex::new(Vec::new());
        let appended = client
            .append_with(|s| {
                let (entries, names) = topic_rekey_batch(s, topics, MAX_TOPIC_REKEY_APPEND_BYTES)?;
                if let Ok(mut b) = batch.lock() {
                    *b = names;
                }
                Ok((entries, None))
            })
            .await;
        if let Err(e) = appended {
            tracing::warn!(error = %e, "could not rotate the keys of the removed member's private topics; their next posters will");
            break;
        }
        let names = batch.into_inner().unwrap_or_default();
        if names.is_empty() {
            break;
        }
        done.extend(names);
    }
    let pending = client.with_state(|s| {
        topics
            .iter()
            .filter(|t| topic_rekey_due(s.roster(), t, &me(s)))
            .cloned()
            .collect()
    });
    (done, pending)
}

/// Whether `topic` is a private topic `member` is in that needs a
/// `topic_rekey`.
fn topic_rekey_due(roster: &Roster, topic: &str, member: &PublicKey) -> bool {
    roster
        .topic(topic)
        .is_some_and(|t| t.private && t.needs_rekey && t.members.contains_key(member))
}

/// The next append of a removal's topic rotations: a `topic_rekey` of each
/// of `topics`, in order, that still needs one and that this member is in,
/// as many as fit in `max_bytes` of entry JSON and
/// [`MAX_LOG_ENTRIES_PER_FRAME`] entries (always at least one), signed at
/// the current head and checked. Also returns their names; nothing when
/// none is due.
pub fn topic_rekey_batch(
    s: &MeshState,
    topics: &[String],
    max_bytes: usize,
) -> Result<(Vec<LogEntry>, Vec<String>), ClientError> {
    let mine = me(s);
    let mut chain = Chain::new(s);
    let mut used = 0;
    let mut names = Vec::new();
    for t in topics {
        if !topic_rekey_due(&chain.roster, t, &mine) {
            continue;
        }
        let body = match chain.roster.topic(t) {
            Some(info) => topic_rekey_body(t, info, &s.mesh_id()).map_err(box_err)?.0,
            None => continue,
        };
        if !chain.push_within(body, &mut used, max_bytes)? {
            break;
        }
        names.push(t.clone());
    }
    Ok((chain.entries, names))
}

/// The entries of a kick or ban by this member, checked: the `remove` and
/// the mesh `rekey` sealed to everyone left, which the log requires right
/// after it. Also returns the private topics the removed member was in
/// that this member is in: each now needs a `topic_rekey`
/// ([`topic_rekey_batch`]), appended after these.
pub fn removal_entries(
    s: &MeshState,
    member: &PublicKey,
    how: RemoveKind,
) -> Result<(Vec<LogEntry>, Vec<String>), ClientError> {
    let mine = me(s);
    if *member == mine {
        return Err(ClientError::Invalid(
            "you cannot remove yourself; to leave the mesh use `claudemesh mesh leave`".into(),
        ));
    }
    match (s.roster().role_of(&mine), s.roster().role_of(member)) {
        (_, None) => {
            return Err(ClientError::NotFound(format!(
                "{} is not a member of the mesh (any more)",
                s.name_of(member)
            )));
        }
        (_, Some(Role::Owner)) => return Err(forbidden("nobody can remove the mesh's owner")),
        (Some(Role::Admin), Some(Role::Admin)) => {
            return Err(forbidden("only the owner can remove an admin"));
        }
        (Some(Role::Owner | Role::Admin), _) => {}
        _ => return Err(forbidden("only owners and admins can remove members")),
    }
    let mut chain = Chain::new(s);
    chain.push(EntryBody::Remove {
        member: *member,
        how,
    })?;
    let rekey = mesh_rekey_body(&chain.roster)?;
    chain.push(rekey)?;
    let topics: Vec<String> = chain
        .roster
        .topics()
        .iter()
        .filter(|(_, t)| t.private && t.needs_rekey && t.members.contains_key(&mine))
        .map(|(n, _)| n.clone())
        .collect();
    Ok((chain.entries, topics))
}

/// A banned key.
#[derive(Debug, Clone, Serialize)]
pub struct BanView {
    /// The name it had (or its short key).
    pub name: String,
    /// The key (hex).
    pub key: String,
    /// The log entry that banned it, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banned_at_seq: Option<u64>,
}

/// Every banned key, by name.
pub fn bans(client: &MeshClient) -> Vec<BanView> {
    client.with_state(|s| {
        let mut out: Vec<BanView> = s
            .roster()
            .banned()
            .iter()
            .map(|k| BanView {
                name: s.name_of(k),
                key: k.to_hex(),
                banned_at_seq: s
                    .roster()
                    .departed()
                    .get(k)
                    .filter(|d| d.how == RemoveKind::Ban)
                    .map(|d| d.seq),
            })
            .collect();
        out.sort_by_key(|b| b.name.to_lowercase());
        out
    })
}

/// Lifts a ban (owners and admins), by the name the member had or a key
/// prefix of at least 8 hex digits. It does not re-admit: the key may join
/// again with a new invite.
pub async fn unban(client: &MeshClient, who: &str) -> Result<BanView, ClientError> {
    if !client.with_state(is_admin) {
        return Err(forbidden("only owners and admins can unban"));
    }
    let who = who.trim();
    let lower = who.to_ascii_lowercase();
    let lower = lower.strip_prefix("member:").unwrap_or(&lower).to_owned();
    let bans = bans(client);
    let is_hex = lower.len() >= 8 && lower.bytes().all(|b| b.is_ascii_hexdigit());
    let mut found: Vec<&BanView> = if is_hex {
        bans.iter().filter(|b| b.key.starts_with(&lower)).collect()
    } else {
        Vec::new()
    };
    if found.is_empty() {
        found = bans
            .iter()
            .filter(|b| b.name.eq_ignore_ascii_case(who))
            .collect();
    }
    let ban = match found.as_slice() {
        [b] => (*b).clone(),
        [] => {
            return Err(ClientError::NotFound(format!(
                "no banned member matches {who:?} (see claudemesh peer bans)"
            )));
        }
        many => {
            return Err(ClientError::Invalid(format!(
                "{who:?} matches several banned keys: {}; give more hex digits",
                many.iter()
                    .map(|b| short_hex(&b.key))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let key = PublicKey::from_hex(&ban.key)
        .map_err(|_| ClientError::Protocol("a banned key in the log is not a key".into()))?;
    client
        .append_with(|s| {
            if !s.roster().banned().contains(&key) {
                return Ok((Vec::new(), None));
            }
            let mut chain = Chain::new(s);
            chain.push(EntryBody::Unban { member: key })?;
            chain.done()
        })
        .await?;
    Ok(ban)
}

fn short_hex(hex: &str) -> &str {
    &hex[..hex.len().min(8)]
}

/// Leaves the mesh: appends this member's `remove {how: leave}`, closes the
/// connection, then forgets the mesh on this device (its settings, keys and
/// local data). The owner cannot leave. Returns the mesh it left.
pub async fn mesh_leave(home: &mut Home, client: MeshClient) -> Result<MeshConfig, ClientError> {
    let mesh = client.mesh().clone();
    let appended = async {
        if client.with_state(|s| s.roster().role_of(&me(s))) == Some(Role::Owner) {
            return Err(not_allowed(
                "the owner cannot leave the mesh (the owner key is the mesh's root of trust)",
            ));
        }
        client
            .append_final(|s| {
                let mut chain = Chain::new(s);
                chain.push(EntryBody::Remove {
                    member: me(s),
                    how: RemoveKind::Leave,
                })?;
                chain.done()
            })
            .await
    }
    .await;
    let local = client.local().clone();
    let me = client.with_state(me);
    client.close().await;
    match appended {
        Ok(()) => {}
        // The broker ends a leaving member's connections as soon as the
        // entry is in, and may do so before its answer reaches us: the
        // door tells whether it landed.
        Err(e @ (ClientError::Disconnected | ClientError::Closed { .. })) => {
            let opts = ConnectOptions::for_member(&mesh);
            match MeshClient::connect(home, &mesh, opts).await {
                Ok(c) => {
                    let still = c.with_state(|s| s.roster().is_member(&me));
                    c.close().await;
                    if still {
                        return Err(e);
                    }
                }
                Err(gone) if is_gone(&gone) => {}
                Err(other) => return Err(other),
            }
        }
        Err(e) => return Err(e),
    }
    local.forget_mesh(&mesh.id).await?;
    home.forget_mesh(&mesh.id)?;
    Ok(mesh)
}

/// Whether a connection failure means this member is out of the mesh for
/// good (it left, was kicked or banned, or was never admitted).
pub fn is_gone(e: &ClientError) -> bool {
    match e {
        ClientError::Refused { code, .. } => matches!(
            code,
            ErrorCode::Removed | ErrorCode::Banned | ErrorCode::NotAMember
        ),
        ClientError::Closed { code, .. } => *code == close::KICKED || *code == close::BANNED,
        _ => false,
    }
}

/// Forgets a mesh on this device without telling the broker (for a member
/// the broker already refuses): its settings, keys and local data.
pub async fn forget_mesh(home: &mut Home, mesh: &MeshConfig) -> Result<(), ClientError> {
    let local = crate::local::LocalStore::open(&home.state_db_path()).await?;
    local.forget_mesh(&mesh.id).await?;
    home.forget_mesh(&mesh.id)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use claudemesh_crypto::SigningKey;
    use claudemesh_crypto::envelope::{Envelope, OpeningKeys as _};
    use claudemesh_crypto::log::{LogBuilder, PeerType, Profile};
    use claudemesh_proto::frames::Status;

    use super::*;
    use crate::home::MeshKeys;
    use crate::mesh::ephemeral_session;

    const T: u64 = 1_800_000_000;

    /// A mesh owned by alice with members bob, carol and dave, each with a
    /// profile (names), and the epoch-0 root every member holds.
    struct World {
        log: LogBuilder,
        root0: EpochRootKey,
        alice: SigningKey,
        bob: SigningKey,
        carol: SigningKey,
        dave: SigningKey,
    }

    impl World {
        fn new() -> World {
            let alice = SigningKey::generate();
            let mut log = LogBuilder::new(&alice, T);
            let root0 = EpochRootKey::generate(0);
            let bob = log.add_member(&alice, Role::Member, T).unwrap();
            let carol = log.add_member(&alice, Role::Member, T).unwrap();
            let dave = log.add_member(&alice, Role::Member, T).unwrap();
            let mesh_id = log.roster().mesh_id();
            for (who, name) in [
                (&alice, "alice"),
                (&bob, "bob"),
                (&carol, "carol"),
                (&dave, "Bob Smith"),
            ] {
                let p = Profile {
                    name: name.into(),
                    summary: None,
                    peer_type: PeerType::Human,
                };
                log.push(who, T, p.seal(&root0, &mesh_id)).unwrap();
            }
            World {
                log,
                root0,
                alice,
                bob,
                carol,
                dave,
            }
        }

        /// What `who`'s device knows: the whole log, its member key, root 0.
        fn state(&self, who: &SigningKey) -> MeshState {
            let mesh_id = self.log.roster().mesh_id();
            let config = MeshConfig {
                id: mesh_id,
                name: "team".into(),
                broker_url: "ws://127.0.0.1:1".into(),
                display_name: "me".into(),
                peer_type: PeerType::Human,
                joined_at: T,
                status: Status::Idle,
                summary: None,
                ca: None,
            };
            let keys = MeshKeys {
                member: who.clone(),
                invite: None,
                sessions: BTreeMap::new(),
                roots: BTreeMap::from([(0, self.root0.clone())]),
            };
            let session = ephemeral_session(who, mesh_id, now_ms() / 1000).unwrap();
            MeshState::new(config, keys, self.log.entries().to_vec(), session).unwrap()
        }

        fn mid(&self) -> claudemesh_crypto::Hash32 {
            self.log.roster().mesh_id()
        }

        fn push(&mut self, who: &SigningKey, body: EntryBody) {
            self.log.push(who, T, body).unwrap();
        }

        fn push_all(&mut self, entries: Vec<LogEntry>) {
            for e in entries {
                self.log.push_entry(e).unwrap();
            }
        }
    }

    fn seal(s: &MeshState, target: &str, body: &str) -> Result<Envelope, ClientError> {
        s.seal(
            target.parse().unwrap(),
            body.as_bytes(),
            Priority::Next,
            None,
            now_ms(),
        )
    }

    fn open(s: &MeshState, env: &Envelope) -> Result<String, EnvelopeError> {
        env.verify_and_open(s.roster(), s)
            .map(|m| String::from_utf8_lossy(m.body()).into_owned())
    }

    #[test]
    fn private_topic_posts_open_for_its_members_only_and_its_key_rotates_after_a_leave() {
        let mut w = World::new();
        let alice_pk = w.alice.public();
        let (body, k0) = topic_create_body("secret", true, "", &alice_pk, &w.mid()).unwrap();
        let alice = w.alice.clone();
        w.push(&alice, body);
        let bob_pk = w.bob.public();
        w.push(
            &alice,
            topic_join_body("secret", &bob_pk, k0.as_ref()).unwrap(),
        );

        let (sa, sb, sc) = (w.state(&w.alice), w.state(&w.bob), w.state(&w.carol));
        // Both members hold the topic's key (opened from its seals).
        assert_eq!(sa.private_topic_key("secret", 0), k0.as_ref());
        assert_eq!(sb.private_topic_key("secret", 0), k0.as_ref());
        assert!(sc.private_topic_key("secret", 0).is_none());

        let env = seal(&sa, "#secret", "for members").unwrap();
        assert_eq!(env.epoch, 0, "the topic's key epoch, not the mesh's");
        assert_eq!(open(&sb, &env).unwrap(), "for members");
        // Carol is in the mesh but not the topic: no key, nothing shown.
        assert!(matches!(open(&sc, &env), Err(EnvelopeError::NoKey { .. })));
        // Nor may she post to it.
        assert!(matches!(
            seal(&sc, "#secret", "let me in"),
            Err(ClientError::NotAllowed(_))
        ));
        // The mesh key does not open a private topic's post.
        assert!(
            w.root0
                .mesh_key(&sa.mesh_id())
                .decrypt(&env.ciphertext, &env.nonce)
                .is_err()
        );

        // Bob leaves: nobody may post until the key rotates, and it falls
        // to the next member who posts.
        let bob = w.bob.clone();
        w.push(
            &bob,
            EntryBody::TopicLeave {
                topic: "secret".into(),
                member: bob_pk,
            },
        );
        let sa = w.state(&w.alice);
        let topic = Target::Topic("secret".into());
        assert!(matches!(
            sa.sealing_key(&topic),
            Err(ClientError::Refused {
                code: ErrorCode::RekeyRequired,
                ..
            })
        ));
        let rotation = rotation_needed(&sa, &topic).unwrap();
        assert_eq!(rotation, Some(Rotation::Topic("secret".into())));
        // Bob, out of the topic, has nothing to rotate.
        assert_eq!(rotation_needed(&w.state(&w.bob), &topic).unwrap(), None);
        let entry = rotation_entry(&sa, &Rotation::Topic("secret".into()), T).unwrap();
        w.push_all(vec![entry]);

        let sa = w.state(&w.alice);
        assert_eq!(rotation_needed(&sa, &topic).unwrap(), None);
        let after = seal(&sa, "#secret", "after bob left").unwrap();
        assert_eq!(after.epoch, 1);
        assert_eq!(open(&sa, &after).unwrap(), "after bob left");
        let sb = w.state(&w.bob);
        assert!(matches!(
            open(&sb, &after),
            Err(EnvelopeError::NoKey { .. })
        ));
        // What he could read before, he still can.
        assert_eq!(open(&sb, &env).unwrap(), "for members");
    }

    #[test]
    fn public_topics_groups_and_broadcast_use_the_current_mesh_epoch() {
        let mut w = World::new();
        let alice = w.alice.clone();
        let alice_pk = alice.public();
        w.push(
            &alice,
            topic_create_body("deploys", false, "", &alice_pk, &w.mid())
                .unwrap()
                .0,
        );
        let bob = w.bob.clone();
        w.push(
            &bob,
            EntryBody::GroupJoin {
                group: "eng/backend".into(),
                member: bob.public(),
                role: Some("lead".into()),
            },
        );
        let sa = w.state(&w.alice);
        let sb = w.state(&w.bob);
        for (target, text) in [("#deploys", "topic"), ("@eng", "group"), ("*", "everyone")] {
            let env = seal(&sa, target, text).unwrap();
            assert_eq!(env.epoch, 0);
            assert_eq!(open(&sb, &env).unwrap(), text);
        }
        let env = seal(&sa, "#deploys", "x").unwrap();
        let key = w.root0.topic_key(&sa.mesh_id(), b"deploys");
        assert!(key.decrypt(&env.ciphertext, &env.nonce).is_ok());

        // Alice bans carol: remove + rekey; everything after is epoch 1,
        // which bob holds and carol does not.
        let carol_pk = w.carol.public();
        let (entries, topics) = removal_entries(&sa, &carol_pk, RemoveKind::Ban).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(topics.is_empty());
        w.push_all(entries);
        let sa = w.state(&w.alice);
        let sb = w.state(&w.bob);
        let sc = w.state(&w.carol);
        assert!(sa.root(1).is_some() && sb.root(1).is_some() && sc.root(1).is_none());
        for (target, text) in [("#deploys", "topic"), ("@eng", "group"), ("*", "everyone")] {
            let env = seal(&sa, target, text).unwrap();
            assert_eq!(env.epoch, 1);
            assert_eq!(open(&sb, &env).unwrap(), text);
            assert!(sc.symmetric_key(&env.target, env.epoch).is_none());
        }
    }

    #[test]
    fn after_a_leave_anyone_rekeys_and_a_pending_kick_is_any_admins() {
        let mut w = World::new();
        // An open invite gets nothing: rekeys seal to members only.
        let invite = SigningKey::generate();
        let alice = w.alice.clone();
        w.log
            .invite(&alice, &invite.public(), Role::Member, 1, T, T + 3600)
            .unwrap();
        let carol = w.carol.clone();
        w.push(
            &carol,
            EntryBody::Remove {
                member: carol.public(),
                how: RemoveKind::Leave,
            },
        );
        let sb = w.state(&w.bob);
        assert_eq!(
            rotation_needed(&sb, &Target::Broadcast).unwrap(),
            Some(Rotation::Mesh)
        );
        assert_eq!(
            rotation_needed(&sb, &Target::Group("eng".into())).unwrap(),
            Some(Rotation::Mesh)
        );
        assert_eq!(
            rotation_needed(&sb, &Target::Member(w.alice.public())).unwrap(),
            None,
            "direct messages need no rotation"
        );
        // A leave is left to the next sender, not repaired on connect.
        assert!(repairs_needed(&sb).is_empty());
        // Bob is a plain member, and may write it.
        let entry = rotation_entry(&sb, &Rotation::Mesh, T).unwrap();
        let EntryBody::Rekey { sealed, .. } = &entry.body else {
            panic!("not a rekey: {entry:?}");
        };
        assert!(!sealed.iter().any(|s| s.recipient == invite.public()));
        assert!(!sealed.iter().any(|s| s.recipient == carol.public()));
        assert_eq!(sealed.len(), 3);
        w.push_all(vec![entry]);
        assert_eq!(w.log.roster().epoch(), 1);
        assert!(!w.log.roster().needs_rekey());
        assert_eq!(
            rotation_needed(&w.state(&w.bob), &Target::Broadcast).unwrap(),
            None
        );

        // Dave, made an admin, kicks bob and never writes the rekey: the
        // owner (not the remover) writes it, a plain member is told who can.
        let dave = w.dave.clone();
        w.push(
            &alice,
            EntryBody::Role {
                member: dave.public(),
                role: Role::Admin,
            },
        );
        w.push(
            &dave,
            EntryBody::Remove {
                member: w.bob.public(),
                how: RemoveKind::Kick,
            },
        );
        let sa = w.state(&w.alice);
        assert_eq!(pending_removal(&sa), Some((dave.public(), w.bob.public())));
        assert_eq!(
            rotation_needed(&sa, &Target::Broadcast).unwrap(),
            Some(Rotation::Mesh)
        );
        assert_eq!(repairs_needed(&sa), vec![Rotation::Mesh]);
        w.push_all(vec![rotation_entry(&sa, &Rotation::Mesh, T).unwrap()]);
        assert_eq!(w.log.roster().epoch(), 2);
        assert_eq!(w.log.roster().pending_removal(), None);
    }

    #[test]
    fn a_plain_member_is_told_an_admin_must_write_a_pending_removals_key() {
        let mut w = World::new();
        let alice = w.alice.clone();
        w.push(
            &alice,
            EntryBody::Remove {
                member: w.carol.public(),
                how: RemoveKind::Ban,
            },
        );
        let sb = w.state(&w.bob);
        let err = rotation_needed(&sb, &Target::Broadcast).unwrap_err();
        assert!(
            matches!(&err, ClientError::Refused { code: ErrorCode::RekeyRequired, message }
                if message.contains("alice removed carol") && message.contains("claudemesh mesh rekey")),
            "{err}"
        );
        assert!(repairs_needed(&sb).is_empty());
    }

    /// Signs a `rekey` by `author` whose seal for `victim` is garbage.
    fn bad_rekey(w: &World, author: &SigningKey, victim: &PublicKey) -> LogEntry {
        let r = w.log.roster();
        let mut body = mesh_rekey_body(r).unwrap();
        let EntryBody::Rekey { sealed, .. } = &mut body else {
            unreachable!()
        };
        for s in sealed.iter_mut().filter(|s| s.recipient == *victim) {
            s.ciphertext = vec![7; s.ciphertext.len()];
        }
        LogEntry::sign(author, r.len(), r.head(), T, body)
    }

    #[test]
    fn a_bad_seal_is_reported_and_a_member_made_epoch_is_re_rolled_by_its_victim() {
        let mut w = World::new();
        let carol = w.carol.clone();
        w.push(
            &carol,
            EntryBody::Remove {
                member: carol.public(),
                how: RemoveKind::Leave,
            },
        );
        // Dave ("Bob Smith"), a plain member, repairs the leave with garbage
        // for bob.
        let bad_seq = w.log.roster().len();
        let entry = bad_rekey(&w, &w.dave, &w.bob.public());
        w.push_all(vec![entry]);
        let sb = w.state(&w.bob);
        assert!(sb.lacks_current_root());
        let reports = sb.bad_seal_reports();
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!((r.kind, r.epoch, r.seq), ("mesh", 1, bad_seq));
        assert_eq!(r.author_name, "Bob Smith");
        assert_eq!(r.author, w.dave.public().to_hex());
        assert!(r.current && !r.fresh);
        let warning = r.warning();
        assert!(
            warning.contains("Bob Smith") && warning.contains(&r.author[..8]),
            "{warning}"
        );
        // The epoch is member-made: bob may re-roll it, on his own.
        assert_eq!(repairs_needed(&sb), vec![Rotation::Mesh]);
        assert_eq!(
            rotation_needed(&sb, &Target::Broadcast).unwrap(),
            Some(Rotation::Mesh)
        );
        w.push_all(vec![rotation_entry(&sb, &Rotation::Mesh, T).unwrap()]);
        let sb = w.state(&w.bob);
        assert!(!sb.lacks_current_root());
        assert!(!sb.bad_seal_reports()[0].current);
        let sa = w.state(&w.alice);
        let env = seal(&sa, "*", "after the re-roll").unwrap();
        assert_eq!(env.epoch, 2);
        assert_eq!(open(&sb, &env).unwrap(), "after the re-roll");

        // An epoch the owner made with a bad seal: bob may not rekey, and is
        // told to ask an admin.
        let entry = bad_rekey(&w, &w.alice, &w.bob.public());
        w.push_all(vec![entry]);
        let sb = w.state(&w.bob);
        assert!(repairs_needed(&sb).is_empty());
        let err = rotation_needed(&sb, &Target::Broadcast).unwrap_err();
        assert!(
            matches!(&err, ClientError::Refused { code: ErrorCode::RekeyRequired, message }
                if message.contains("alice") && message.contains("claudemesh mesh rekey")),
            "{err}"
        );
        assert!(sb.bad_seal_reports()[1].warning().contains("mesh rekey"));
    }

    #[test]
    fn a_bad_private_topic_seal_is_reported_and_re_rolled() {
        let mut w = World::new();
        let alice = w.alice.clone();
        let (body, _k0) = topic_create_body("secret", true, "", &alice.public(), &w.mid()).unwrap();
        w.push(&alice, body);
        // Alice adds bob with the seal of some other key.
        let wrong = claudemesh_crypto::SymmetricKey::generate();
        w.push(
            &alice,
            topic_join_body("secret", &w.bob.public(), Some(&wrong)).unwrap(),
        );
        let sb = w.state(&w.bob);
        assert!(sb.lacks_topic_key("secret"));
        let reports = sb.bad_seal_reports();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].topic.as_deref(), Some("secret"));
        assert_eq!(reports[0].author_name, "alice");
        let topic = Target::Topic("secret".into());
        assert_eq!(
            rotation_needed(&sb, &topic).unwrap(),
            Some(Rotation::Topic("secret".into()))
        );
        assert_eq!(repairs_needed(&sb), vec![Rotation::Topic("secret".into())]);
        w.push_all(vec![
            rotation_entry(&sb, &Rotation::Topic("secret".into()), T).unwrap(),
        ]);
        let (sa, sb) = (w.state(&w.alice), w.state(&w.bob));
        let env = seal(&sa, "#secret", "readable again").unwrap();
        assert_eq!(env.epoch, 1);
        assert_eq!(open(&sb, &env).unwrap(), "readable again");
    }

    #[test]
    fn a_ban_rotates_every_private_topic_the_member_was_in_and_only_admins_remove() {
        let mut w = World::new();
        let alice = w.alice.clone();
        let alice_pk = alice.public();
        let carol_pk = w.carol.public();
        let (body, k0) = topic_create_body("secret", true, "", &alice_pk, &w.mid()).unwrap();
        w.push(&alice, body);
        w.push(
            &alice,
            topic_join_body("secret", &carol_pk, k0.as_ref()).unwrap(),
        );
        let sa = w.state(&w.alice);

        let sb = w.state(&w.bob);
        assert!(matches!(
            removal_entries(&sb, &carol_pk, RemoveKind::Kick),
            Err(ClientError::Refused {
                code: ErrorCode::Forbidden,
                ..
            })
        ));
        assert!(matches!(
            removal_entries(&sa, &alice_pk, RemoveKind::Kick),
            Err(ClientError::Invalid(_))
        ));

        let (entries, topics) = removal_entries(&sa, &carol_pk, RemoveKind::Ban).unwrap();
        let kinds: Vec<&str> = entries.iter().map(|e| e.body.kind()).collect();
        assert_eq!(kinds, ["remove", "rekey"]);
        assert_eq!(topics, ["secret"]);
        w.push_all(entries);
        let sa = w.state(&w.alice);
        let (entries, names) = topic_rekey_batch(&sa, &topics, 1 << 20).unwrap();
        let kinds: Vec<&str> = entries.iter().map(|e| e.body.kind()).collect();
        assert_eq!((kinds, names), (vec!["topic_rekey"], topics.clone()));
        w.push_all(entries);
        let roster = w.log.roster();
        assert!(roster.banned().contains(&carol_pk));
        assert_eq!(roster.topic("secret").unwrap().key_epoch, 1);
        assert!(!roster.topic("secret").unwrap().needs_rekey);
        let sa = w.state(&w.alice);
        let env = seal(&sa, "#secret", "after the ban").unwrap();
        let sc = w.state(&w.carol);
        assert!(matches!(open(&sc, &env), Err(EnvelopeError::NoKey { .. })));
    }

    #[test]
    fn a_removals_topic_rekeys_come_in_bounded_appends_and_a_cut_one_heals_on_the_next_post() {
        let mut w = World::new();
        let (alice, carol) = (w.alice.clone(), w.carol.clone());
        let carol_pk = carol.public();
        // Carol makes 40 private topics and puts alice, bob and dave in each.
        let names: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
        for name in &names {
            let (body, k0) = topic_create_body(name, true, "", &carol_pk, &w.mid()).unwrap();
            w.push(&carol, body);
            for who in [w.alice.public(), w.bob.public(), w.dave.public()] {
                w.push(&carol, topic_join_body(name, &who, k0.as_ref()).unwrap());
            }
        }
        let sa = w.state(&alice);
        let (entries, due) = removal_entries(&sa, &carol_pk, RemoveKind::Kick).unwrap();
        assert_eq!(entries.len(), 2, "the remove and its rekey, nothing more");
        assert_eq!(due, names);
        w.push_all(entries);

        // Cut here: every topic still needs its rekey, so a member posting
        // to it writes one first, and the broker takes no post until then.
        let sb = w.state(&w.bob);
        for name in &names {
            let target = Target::Topic(name.clone());
            assert_eq!(
                rotation_needed(&sb, &target).unwrap(),
                Some(Rotation::Topic(name.clone()))
            );
        }

        // The owner's appends: each within the budget (or a single entry),
        // each at the head left by the one before, all topics covered.
        let budget = 4 * 1024;
        let mut appends = 0;
        let mut rotated = Vec::new();
        loop {
            let sa = w.state(&alice);
            let (entries, batch) = topic_rekey_batch(&sa, &due, budget).unwrap();
            if entries.is_empty() {
                break;
            }
            let bytes: usize = entries
                .iter()
                .map(|e| serde_json::to_string(e).unwrap().len() + 1)
                .sum();
            assert!(bytes <= budget || entries.len() == 1, "{bytes} bytes");
            assert_eq!(entries[0].seq, w.log.roster().len());
            appends += 1;
            rotated.extend(batch);
            w.push_all(entries);
        }
        assert_eq!(rotated, names);
        assert!(appends > 1, "{appends} appends");
        let roster = w.log.roster();
        for name in &names {
            let t = roster.topic(name).unwrap();
            assert!(!t.needs_rekey && t.key_epoch == 1);
            assert!(!t.key_epochs[&1].seals.contains_key(&carol_pk));
        }
    }

    #[test]
    fn fanout_targets_resolve_only_to_topics_and_groups_that_exist() {
        let mut w = World::new();
        let sa = w.state(&w.alice);
        assert_eq!(sa.resolve("*", &[]).unwrap(), Target::Broadcast);
        // What users of the TypeScript claudemesh type for a broadcast.
        assert_eq!(sa.resolve("@all", &[]).unwrap(), Target::Broadcast);
        let err = sa.resolve("#nope", &[]).unwrap_err();
        assert!(matches!(err, ClientError::NotFound(_)), "{err}");
        assert!(err.to_string().contains("no topics yet"), "{err}");
        let err = sa.resolve("@eng", &[]).unwrap_err();
        assert!(err.to_string().contains("no groups yet"), "{err}");

        let alice = w.alice.clone();
        w.push(
            &alice,
            topic_create_body("deploys", false, "", &alice.public(), &w.mid())
                .unwrap()
                .0,
        );
        let bob = w.bob.clone();
        w.push(
            &bob,
            EntryBody::GroupJoin {
                group: "eng/backend".into(),
                member: bob.public(),
                role: None,
            },
        );
        let sa = w.state(&w.alice);
        assert_eq!(
            sa.resolve("#deploys", &[]).unwrap(),
            Target::Topic("deploys".into())
        );
        let err = sa.resolve("#nope", &[]).unwrap_err();
        assert!(err.to_string().contains("#deploys"), "{err}");
        // Hierarchical: @eng reaches @eng/backend.
        assert_eq!(
            sa.resolve("@eng", &[]).unwrap(),
            Target::Group("eng".into())
        );
        let err = sa.resolve("@ops", &[]).unwrap_err();
        assert!(err.to_string().contains("@eng/backend"), "{err}");
        // A group really named `all` wins over the alias.
        w.push(
            &bob,
            EntryBody::GroupJoin {
                group: "all".into(),
                member: bob.public(),
                role: None,
            },
        );
        let sa = w.state(&w.alice);
        assert_eq!(
            sa.resolve("@all", &[]).unwrap(),
            Target::Group("all".into())
        );
    }

    #[test]
    fn mentions_are_at_names_outside_words() {
        assert!(mentions_name("hi @Bob!", "bob"));
        assert!(mentions_name("@bob.", "bob"));
        assert!(mentions_name("@bob", "bob"));
        assert!(!mentions_name("hi @bobby", "bob"));
        assert!(!mentions_name("@bob-smith", "bob"));
        assert!(!mentions_name("mail bob@example.com", "example"));
        assert!(!mentions_name("no at sign", "bob"));
        // Only the first MAX_MENTIONS `@` count.
        let many = format!("{}@bob", "@x ".repeat(MAX_MENTIONS));
        assert!(!mentions_name(&many, "bob"));

        let w = World::new();
        let sa = w.state(&w.alice);
        let got = mentioned_members(&sa, "ping @Bob Smith and @bob, also @nobody and @bob again");
        assert_eq!(got, vec![w.dave.public(), w.bob.public()]);
        assert!(mentioned_members(&sa, "bob@example.com").is_empty());
        assert_eq!(my_name(&sa), "alice");
    }

    #[test]
    fn received_fanout_messages_that_mention_me_are_flagged() {
        let mut w = World::new();
        let alice = w.alice.clone();
        w.push(
            &alice,
            topic_create_body("deploys", false, "", &alice.public(), &w.mid())
                .unwrap()
                .0,
        );
        let sa = w.state(&w.alice);
        let sb = w.state(&w.bob);
        let post = seal(&sa, "#deploys", "@bob please look").unwrap();
        let msg = post.verify_and_open(sb.roster(), &sb).unwrap();
        assert!(flags_me(&msg, &my_name(&sb)));
        let other = seal(&sa, "#deploys", "@carol please look").unwrap();
        let msg = other.verify_and_open(sb.roster(), &sb).unwrap();
        assert!(!flags_me(&msg, &my_name(&sb)));
        // A direct message is for me anyway: never flagged.
        let dm = seal(&sa, &format!("member:{}", w.bob.public()), "@bob hi").unwrap();
        let msg = dm.verify_and_open(sb.roster(), &sb).unwrap();
        assert!(!flags_me(&msg, &my_name(&sb)));
    }

    #[test]
    fn names_of_departed_members_come_from_their_last_profile() {
        let mut w = World::new();
        let sa = w.state(&w.alice);
        let carol_pk = w.carol.public();
        let (entries, _) = removal_entries(&sa, &carol_pk, RemoveKind::Ban).unwrap();
        w.push_all(entries);
        let sa = w.state(&w.alice);
        assert!(!sa.roster().is_member(&carol_pk));
        assert_eq!(sa.name_of(&carol_pk), "carol");
        assert_eq!(sa.name_of(&w.bob.public()), "bob");
    }

    #[tokio::test]
    async fn the_local_store_counts_unread_per_target_and_forgets_a_mesh() {
        let mut w = World::new();
        let alice = w.alice.clone();
        w.push(
            &alice,
            topic_create_body("deploys", false, "", &alice.public(), &w.mid())
                .unwrap()
                .0,
        );
        let sa = w.state(&w.alice);
        let sb = w.state(&w.bob);
        let dir = tempfile::tempdir().unwrap();
        let local = crate::local::LocalStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let mesh = sb.mesh_id();
        let envs = [
            seal(&sa, "#deploys", "one @bob").unwrap(),
            seal(&sa, "#deploys", "two").unwrap(),
            seal(&sa, "*", "three").unwrap(),
        ];
        let msgs: Vec<VerifiedMessage> = envs
            .iter()
            .map(|e| e.verify_and_open(sb.roster(), &sb).unwrap())
            .collect();
        let name = my_name(&sb);
        let batch: Vec<_> = msgs
            .iter()
            .zip(10u64..)
            .map(|(m, seq)| (m, seq, flags_me(m, &name)))
            .collect();
        local.store_inbound_flagged(&mesh, &batch, T).await.unwrap();

        let unread = local.unread_by_target(&mesh).await.unwrap();
        assert_eq!(unread.get("#deploys"), Some(&2));
        assert_eq!(unread.get("*"), Some(&1));
        let topic = local
            .inbox_of(&mesh, Some("#deploys"), true, u32::MAX)
            .await
            .unwrap();
        assert_eq!(topic.len(), 2);
        assert!(topic[0].mentions_me && !topic[1].mentions_me);
        assert_eq!(
            local
                .seq_of_message(&mesh, &envs[1].id, Some("#deploys"))
                .await
                .unwrap(),
            Some(11)
        );
        assert_eq!(
            local
                .seq_of_message(&mesh, &envs[2].id, Some("#deploys"))
                .await
                .unwrap(),
            None,
            "a broadcast is not in the topic"
        );
        let ids: Vec<i64> = topic.iter().map(|m| m.local_id).collect();
        local.mark_read(&mesh, &ids, T).await.unwrap();
        let unread = local.unread_by_target(&mesh).await.unwrap();
        assert_eq!(unread.get("#deploys"), None);
        assert_eq!(unread.get("*"), Some(&1));

        // A resealed message replaces its pending outbox row (same id).
        let first = seal(&sa, "*", "v1").unwrap();
        local.outbox_upsert(&first, T).await.unwrap();
        let again = sa
            .seal_as(
                first.id,
                Target::Broadcast,
                b"v1",
                Priority::Next,
                None,
                now_ms(),
            )
            .unwrap();
        local.outbox_upsert(&again, T).await.unwrap();
        let pending = local.outbox_pending(&mesh).await.unwrap();
        assert_eq!(pending, vec![again]);

        local.forget_mesh(&mesh).await.unwrap();
        assert!(local.inbox(&mesh, false, 100).await.unwrap().is_empty());
        assert!(local.outbox_pending(&mesh).await.unwrap().is_empty());
    }
}

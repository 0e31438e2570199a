//! Moderation and the mesh key: kick and ban (a `remove` and the `rekey`
//! that must follow it in one atomic append, then a `topic_rekey` of every
//! private topic the removed member was in, in appends that each fit well
//! inside a frame), unban, list bans, leave the mesh, and write a new mesh
//! key on demand ([`mesh_rekey`]).

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::log::{EntryBody, RemoveKind, Role};
use claudemesh_proto::{ErrorCode, close};
use serde::Serialize;

use crate::client::{ConnectOptions, MeshClient};
use crate::error::ClientError;
use crate::home::{Home, MeshConfig};
use crate::mesh::MeshState;
use crate::mesh::chain::{Chain, forbidden, not_allowed};
use crate::mesh::removal::{removal_entries, topic_rekey_batch, topic_rekey_due};
use crate::mesh::rotation::{may_rekey, mesh_rekey_body};

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
    // Later joiners read the team memory of earlier epochs through this.
    client.memory_link_keys().await;
    Ok(client.with_state(|s| Rekeyed {
        epoch: s.roster().epoch(),
        members: s.roster().members().len(),
    }))
}

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
        return Err(ClientError::LeaveInstead);
    }
    if !client.with_state(MeshState::is_admin) {
        return Err(forbidden("only owners and admins can remove members"));
    }
    let member = match client.resolve(peer).await? {
        Target::Member(k) => k,
        _ => {
            return Err(ClientError::SessionNotMember {
                peer: peer.to_owned(),
            });
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
    // Later joiners read the team memory of earlier epochs through this.
    client.memory_link_keys().await;
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
            .filter(|t| topic_rekey_due(s.roster(), t, &s.my_key()))
            .cloned()
            .collect()
    });
    (done, pending)
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
    if !client.with_state(MeshState::is_admin) {
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
            return Err(ClientError::AmbiguousBan {
                query: who.to_owned(),
                candidates: many
                    .iter()
                    .map(|b| short_hex(&b.key))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
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
        if client.with_state(|s| s.roster().role_of(&s.my_key())) == Some(Role::Owner) {
            return Err(not_allowed(
                "the owner cannot leave the mesh (the owner key is the mesh's root of trust)",
            ));
        }
        client
            .append_final(|s| {
                let mut chain = Chain::new(s);
                chain.push(EntryBody::Remove {
                    member: s.my_key(),
                    how: RemoveKind::Leave,
                })?;
                chain.done()
            })
            .await
    }
    .await;
    let local = client.local().clone();
    let me = client.with_state(MeshState::my_key);
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

//! Groups from a member's side: names, join (with an optional role),
//! leave, and list. Each change is a signed entry of the membership log.

use claudemesh_crypto::envelope::validate_target_name;
use claudemesh_crypto::log::{EntryBody, MAX_GROUP_ROLE_BYTES};
use serde::Serialize;

use crate::client::MeshClient;
use crate::error::{BadInput, ClientError, Existing};
use crate::mesh::chain::Chain;

/// A group name as typed (`eng/backend` or `@eng/backend`), checked.
pub fn group_name(input: &str) -> Result<String, ClientError> {
    let name = input.trim();
    let name = name.strip_prefix('@').unwrap_or(name);
    validate_target_name(name).map_err(|_| {
        ClientError::BadInput(BadInput::GroupName {
            input: input.to_owned(),
        })
    })?;
    Ok(name.to_owned())
}

/// A member of a group.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
        let mine = s.my_key();
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
        return Err(ClientError::BadInput(BadInput::GroupRole {
            max: MAX_GROUP_ROLE_BYTES,
        }));
    }
    client
        .append_with(|s| {
            let current = s
                .roster()
                .groups()
                .get(&name)
                .and_then(|g| g.members.get(&s.my_key()));
            if let Some((_, r)) = current
                && r.as_deref() == role
            {
                return Err(ClientError::Exists(Existing::InGroup {
                    group: name.clone(),
                }));
            }
            let mut chain = Chain::new(s);
            chain.push(EntryBody::GroupJoin {
                group: name.clone(),
                member: s.my_key(),
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
                .is_some_and(|g| g.members.contains_key(&s.my_key()));
            if !in_it {
                return Err(ClientError::NotInGroup {
                    group: name.clone(),
                });
            }
            let mut chain = Chain::new(s);
            chain.push(EntryBody::GroupLeave {
                group: name.clone(),
                member: s.my_key(),
            })?;
            chain.done()
        })
        .await?;
    Ok(name)
}

//! The roster's view of topics and groups: who is in which (and was, as of
//! a log length), who receives a message sent to one, and the rules of the
//! topic and group entries (`docs/security.md` §7.6), checked before
//! anything changes.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use crate::keys::PublicKey;
use crate::log::entry::{EntryBody, LogEntry, Role, SealedRootKey};
use crate::log::epochs::KeyEpoch;
use crate::log::fault::{LogFault, short};
use crate::log::sign::SEALED_ROOT_KEY_BYTES;
use crate::log::spaces::{
    GroupInfo, MAX_GROUP_ROLE_BYTES, MAX_TOPIC_DESCRIPTION_BYTES, Span, TopicInfo, group_is_under,
    was_in,
};
use crate::target::{Target, validate_target_name};

use super::Roster;

fn check_name(name: &str) -> Result<(), LogFault> {
    validate_target_name(name)
        .map_err(|_| LogFault::Invalid("topic or group name (1-64 of A-Z a-z 0-9 . _ - /)"))
}

/// Checks sealed keys: exactly `expected` recipients, each once, 80 bytes.
fn check_seals(sealed: &[SealedRootKey], expected: &BTreeSet<PublicKey>) -> Result<(), LogFault> {
    let mut seen = BTreeSet::new();
    for s in sealed {
        if s.ciphertext.len() != SEALED_ROOT_KEY_BYTES {
            return Err(LogFault::Invalid("a sealed key must be 80 bytes"));
        }
        if !expected.contains(&s.recipient) {
            return Err(LogFault::RekeyRecipients(format!(
                "{} should not get this key",
                short(&s.recipient)
            )));
        }
        if !seen.insert(s.recipient) {
            return Err(LogFault::RekeyRecipients(format!(
                "{} appears twice",
                short(&s.recipient)
            )));
        }
    }
    if let Some(missing) = expected.iter().find(|m| !seen.contains(m)) {
        return Err(LogFault::RekeyRecipients(format!(
            "{} is left out",
            short(missing)
        )));
    }
    Ok(())
}

impl Roster {
    /// Every topic, by name.
    pub fn topics(&self) -> &BTreeMap<String, TopicInfo> {
        &self.topics
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    /// Every group with at least one member now or before, by name.
    pub fn groups(&self) -> &BTreeMap<String, GroupInfo> {
        &self.groups
    }

    /// The groups `member` is in now, with its role in each.
    pub fn groups_of(&self, member: &PublicKey) -> Vec<(&str, Option<&str>)> {
        self.groups
            .iter()
            .filter_map(|(name, g)| {
                g.members
                    .get(member)
                    .map(|(_, role)| (name.as_str(), role.as_deref()))
            })
            .collect()
    }

    /// Whether `member` was a member of the mesh when the log had `at_len` entries.
    pub fn was_member_at_len(&self, member: &PublicKey, at_len: u64) -> bool {
        was_in(
            self.members.get(member).map(|m| m.admitted_seq),
            &self.member_spans,
            member,
            at_len,
        )
    }

    /// Whether `member` is a recipient of a group, topic or broadcast message
    /// the broker accepted when the log had `at_len` entries ("as of send
    /// time"). Direct targets answer false: they name their recipient.
    pub fn is_recipient_at(&self, member: &PublicKey, target: &Target, at_len: u64) -> bool {
        if !self.was_member_at_len(member, at_len) {
            return false;
        }
        match target {
            Target::Broadcast => true,
            Target::Topic(t) => self
                .topics
                .get(t)
                .is_some_and(|t| t.had_member(member, at_len)),
            Target::Group(g) => self
                .groups
                .range::<str, _>((Bound::Included(g.as_str()), Bound::Unbounded))
                .take_while(|(name, _)| name.starts_with(g.as_str()))
                .any(|(name, info)| group_is_under(name, g) && info.had_member(member, at_len)),
            Target::Member(_) | Target::Session(_) => false,
        }
    }

    /// Every member who receives a group, topic or broadcast message sent now.
    pub fn recipients_now(&self, target: &Target) -> BTreeSet<PublicKey> {
        match target {
            Target::Broadcast => self.members.keys().copied().collect(),
            Target::Topic(t) => self
                .topics
                .get(t)
                .map(|t| t.members.keys().copied().collect())
                .unwrap_or_default(),
            Target::Group(g) => self
                .groups
                .range::<str, _>((Bound::Included(g.as_str()), Bound::Unbounded))
                .take_while(|(name, _)| name.starts_with(g.as_str()))
                .filter(|(name, _)| group_is_under(name, g))
                .flat_map(|(_, info)| info.members.keys().copied())
                .collect(),
            Target::Member(_) | Target::Session(_) => BTreeSet::new(),
        }
    }

    /// Checks and applies a topic or group entry (the same all-checks-first
    /// invariant as the rest of `apply`).
    pub(super) fn apply_space(
        &mut self,
        e: &LogEntry,
        author_role: Option<Role>,
    ) -> Result<(), LogFault> {
        let is_admin = matches!(author_role, Some(Role::Owner | Role::Admin));
        let deny = |action| LogFault::Unauthorized {
            author: short(&e.author),
            action,
        };
        if author_role.is_none() {
            return Err(LogFault::NotAMember(short(&e.author)));
        }
        match &e.body {
            EntryBody::TopicCreate {
                topic,
                private,
                description,
                sealed,
                confirm,
            } => {
                check_name(topic)?;
                if description.len() > MAX_TOPIC_DESCRIPTION_BYTES {
                    return Err(LogFault::Invalid(
                        "topic description is longer than 256 bytes",
                    ));
                }
                if self.topics.contains_key(topic) {
                    return Err(LogFault::Invalid("a topic with this name exists"));
                }
                let key_epochs = match (private, confirm) {
                    (true, Some(confirm)) => {
                        check_seals(sealed, &BTreeSet::from([e.author]))?;
                        let role = author_role.unwrap_or(Role::Member);
                        BTreeMap::from([(
                            0,
                            KeyEpoch::new(e.seq, e.author, role, *confirm, sealed),
                        )])
                    }
                    (true, None) => {
                        return Err(LogFault::Invalid(
                            "a private topic's first key needs its confirmation",
                        ));
                    }
                    (false, None) if sealed.is_empty() => BTreeMap::new(),
                    (false, _) => {
                        return Err(LogFault::Invalid(
                            "a public topic has no sealed key and no confirmation",
                        ));
                    }
                };
                self.topics.insert(
                    topic.clone(),
                    TopicInfo {
                        private: *private,
                        description: description.clone(),
                        creator: e.author,
                        created_seq: e.seq,
                        members: BTreeMap::from([(e.author, e.seq)]),
                        spans: Vec::new(),
                        key_epoch: 0,
                        key_epochs,
                        needs_rekey: false,
                    },
                );
            }
            EntryBody::TopicJoin {
                topic,
                member,
                sealed,
            } => {
                let info = self
                    .topics
                    .get(topic)
                    .ok_or(LogFault::Invalid("no such topic"))?;
                if !self.members.contains_key(member) {
                    return Err(LogFault::NotAMember(short(member)));
                }
                if info.members.contains_key(member) {
                    return Err(LogFault::Invalid("already a member of this topic"));
                }
                if info.private {
                    if !info.members.contains_key(&e.author) {
                        return Err(deny("add members to a private topic it is not in"));
                    }
                    if info.needs_rekey {
                        return Err(LogFault::Invalid(
                            "the private topic must be rekeyed before anyone joins",
                        ));
                    }
                    check_seals(sealed, &BTreeSet::from([*member]))?;
                } else {
                    if e.author != *member && !is_admin {
                        return Err(deny("add someone else to a topic (admins only)"));
                    }
                    if !sealed.is_empty() {
                        return Err(LogFault::Invalid("a public topic has no sealed key"));
                    }
                }
                if let Some(info) = self.topics.get_mut(topic) {
                    info.members.insert(*member, e.seq);
                    let epoch = info.key_epoch;
                    if info.private
                        && let Some(ke) = info.key_epochs.get_mut(&epoch)
                    {
                        ke.add_seals(sealed, e.author, e.seq);
                    }
                }
            }
            EntryBody::TopicLeave { topic, member } => {
                let info = self
                    .topics
                    .get(topic)
                    .ok_or(LogFault::Invalid("no such topic"))?;
                if !info.members.contains_key(member) {
                    return Err(LogFault::Invalid("not a member of this topic"));
                }
                if e.author != *member && !is_admin && e.author != info.creator {
                    return Err(deny("take someone else out of a topic"));
                }
                if let Some(info) = self.topics.get_mut(topic) {
                    close_topic_membership(info, member, e.seq);
                }
            }
            EntryBody::TopicRekey {
                topic,
                epoch,
                sealed,
                confirm,
            } => {
                let info = self
                    .topics
                    .get(topic)
                    .ok_or(LogFault::Invalid("no such topic"))?;
                if !info.private {
                    return Err(LogFault::Invalid(
                        "only a private topic has a key to rotate",
                    ));
                }
                if !info.members.contains_key(&e.author) {
                    return Err(deny("rekey a private topic it is not in"));
                }
                if *epoch != info.key_epoch + 1 {
                    return Err(LogFault::Invalid(
                        "topic rekey epoch must be the current topic epoch + 1",
                    ));
                }
                let expected: BTreeSet<PublicKey> = info.members.keys().copied().collect();
                check_seals(sealed, &expected)?;
                let role = author_role.unwrap_or(Role::Member);
                if let Some(info) = self.topics.get_mut(topic) {
                    info.key_epoch = *epoch;
                    info.key_epochs.insert(
                        *epoch,
                        KeyEpoch::new(e.seq, e.author, role, *confirm, sealed),
                    );
                    info.needs_rekey = false;
                }
            }
            EntryBody::GroupJoin {
                group,
                member,
                role,
            } => {
                check_name(group)?;
                if e.author != *member && !is_admin {
                    return Err(deny("put someone else in a group (admins only)"));
                }
                if !self.members.contains_key(member) {
                    return Err(LogFault::NotAMember(short(member)));
                }
                if let Some(r) = role
                    && (r.is_empty()
                        || r.len() > MAX_GROUP_ROLE_BYTES
                        || r.chars().any(char::is_control))
                {
                    return Err(LogFault::Invalid(
                        "group role (1-32 bytes, no control characters)",
                    ));
                }
                let info = self.groups.entry(group.clone()).or_default();
                let since = info.members.get(member).map_or(e.seq, |(since, _)| *since);
                info.members.insert(*member, (since, role.clone()));
            }
            EntryBody::GroupLeave { group, member } => {
                let in_group = self
                    .groups
                    .get(group)
                    .is_some_and(|g| g.members.contains_key(member));
                if !in_group {
                    return Err(LogFault::Invalid("not a member of this group"));
                }
                if e.author != *member && !is_admin {
                    return Err(deny("take someone else out of a group (admins only)"));
                }
                if let Some(g) = self.groups.get_mut(group) {
                    close_group_membership(g, member, e.seq);
                }
            }
            _ => return Err(LogFault::Invalid("not a topic or group entry")),
        }
        Ok(())
    }

    /// A member left the mesh at entry `seq`: its topic and group memberships
    /// end there, and every private topic it was in needs a new key.
    pub(super) fn close_spaces(&mut self, member: &PublicKey, seq: u64) {
        for info in self.topics.values_mut() {
            close_topic_membership(info, member, seq);
        }
        for g in self.groups.values_mut() {
            close_group_membership(g, member, seq);
        }
    }
}

fn close_topic_membership(info: &mut TopicInfo, member: &PublicKey, seq: u64) {
    if let Some(from) = info.members.remove(member) {
        info.spans.push(Span {
            member: *member,
            from,
            to: seq,
        });
        if info.private {
            info.needs_rekey = true;
        }
    }
}

fn close_group_membership(g: &mut GroupInfo, member: &PublicKey, seq: u64) {
    if let Some((from, _)) = g.members.remove(member) {
        g.spans.push(Span {
            member: *member,
            from,
            to: seq,
        });
    }
}

//! The rules of the mesh's own entries (`docs/security.md` §7.3): who may
//! change roles, authorize and revoke invites, join, remove, unban, rekey
//! and publish a profile, each checked before anything changes.

use std::collections::BTreeSet;

use crate::keys::PublicKey;
use crate::log::entry::{EntryBody, LogEntry, RemoveKind, Role};
use crate::log::epochs::KeyEpoch;
use crate::log::fault::{LogFault, short};
use crate::log::records::{
    Departure, InviteState, MAX_PROFILE_CIPHERTEXT_BYTES, MemberInfo, SealedProfile,
};
use crate::log::sign::SEALED_ROOT_KEY_BYTES;
use crate::log::spaces::Span;

use super::Roster;

impl Roster {
    /// Revokes, at entry `seq`, every open invite `member` authored and
    /// the invite `joined_with` (the one it was admitted with), if open.
    fn revoke_invites_of(&mut self, member: &PublicKey, joined_with: Option<PublicKey>, seq: u64) {
        for (key, inv) in self.invites.iter_mut() {
            let its = Some(*key) == joined_with || inv.author == *member;
            if its && inv.revoked_at.is_none() {
                inv.revoked_at = Some(seq);
            }
        }
    }

    /// Invariant: in every branch all checks come before the first mutation,
    /// so a refused entry leaves the roster exactly as it was (no clone needed,
    /// which keeps verifying an n-entry log linear).
    /// The invite `key` names, while it is not revoked.
    fn unrevoked_invite(&mut self, key: &PublicKey) -> Result<&mut InviteState, LogFault> {
        let inv = self
            .invites
            .get_mut(key)
            .ok_or_else(|| LogFault::UnknownInvite(short(key)))?;
        match inv.revoked_at {
            Some(at) => Err(LogFault::InviteRevoked {
                invite: short(key),
                at,
            }),
            None => Ok(inv),
        }
    }

    pub(super) fn check_and_apply(&mut self, e: &LogEntry) -> Result<(), LogFault> {
        if e.seq != self.len {
            return Err(LogFault::OutOfOrder { expected: self.len });
        }
        if e.prev != self.head {
            return Err(LogFault::BrokenChain);
        }
        let is_admit = matches!(e.body, EntryBody::Admit { .. });
        if is_admit != e.invite_sig.is_some() {
            return Err(LogFault::InviteSignature);
        }
        let bytes = e.signed_bytes();
        e.author
            .verify(&bytes, &e.sig)
            .map_err(|_| LogFault::BadSignature(short(&e.author)))?;
        let author_role = self.role_of(&e.author);
        let is_admin = matches!(author_role, Some(Role::Owner | Role::Admin));
        // Rule 4: a kick or ban is repaired by a rekey from the owner or any
        // admin (not only the remover, who could otherwise freeze the log).
        if let Some(removal_seq) = self.pending_removal {
            let admin_rekey = is_admin && matches!(e.body, EntryBody::Rekey { .. });
            if !admin_rekey {
                return Err(LogFault::MissingRekey(removal_seq));
            }
        }
        let deny = |action| LogFault::Unauthorized {
            author: short(&e.author),
            action,
        };

        match &e.body {
            EntryBody::Genesis { .. } => return Err(LogFault::Genesis),
            EntryBody::Role { member, role } => {
                if !is_admin {
                    return Err(deny("change roles"));
                }
                let current = self
                    .role_of(member)
                    .ok_or_else(|| LogFault::NotAMember(short(member)))?;
                if current == Role::Owner || *role == Role::Owner {
                    return Err(deny("change the owner's role or make an owner"));
                }
                if (current == Role::Admin || *role == Role::Admin)
                    && author_role != Some(Role::Owner)
                {
                    return Err(deny("grant or take away admin (owner only)"));
                }
                if current == Role::Admin && *role != Role::Admin {
                    // Demoted: the invites it made as an admin stop
                    // admitting anyone, as if it had been removed.
                    self.revoke_invites_of(member, None, e.seq);
                }
                if let Some(m) = self.members.get_mut(member) {
                    m.role = *role;
                }
            }
            EntryBody::Invite {
                invite_key,
                role,
                max_uses,
                expires_at,
            } => {
                if !is_admin {
                    return Err(deny("create invites"));
                }
                match role {
                    Role::Owner => return Err(LogFault::Invalid("an invite cannot grant owner")),
                    Role::Admin if author_role != Some(Role::Owner) => {
                        return Err(deny("create admin invites (owner only)"));
                    }
                    _ => {}
                }
                if *max_uses == 0 {
                    return Err(LogFault::Invalid("max_uses must be at least 1"));
                }
                if *expires_at <= e.at {
                    return Err(LogFault::Invalid("invite expires before it is created"));
                }
                if self.invites.contains_key(invite_key) || self.is_member(invite_key) {
                    return Err(LogFault::DuplicateInvite(short(invite_key)));
                }
                self.invites.insert(
                    *invite_key,
                    InviteState {
                        role: *role,
                        max_uses: *max_uses,
                        uses: 0,
                        expires_at: *expires_at,
                        revoked_at: None,
                        created_seq: e.seq,
                        epoch: self.epoch,
                        author: e.author,
                    },
                );
            }
            EntryBody::RevokeInvite { invite_key } => {
                if !is_admin {
                    return Err(deny("revoke invites"));
                }
                let inv = self.unrevoked_invite(invite_key)?;
                inv.revoked_at = Some(e.seq);
            }
            EntryBody::Admit { member, invite_key } => {
                if e.author != *member {
                    return Err(deny(
                        "admit someone else (an admit is signed by the joiner)",
                    ));
                }
                if self.is_member(member) {
                    return Err(LogFault::AlreadyMember(short(member)));
                }
                if self.banned.contains(member) {
                    return Err(LogFault::Banned(short(member)));
                }
                let inv = self.unrevoked_invite(invite_key)?;
                if e.at > inv.expires_at {
                    return Err(LogFault::InviteExpired(short(invite_key)));
                }
                if inv.uses >= inv.max_uses {
                    return Err(LogFault::InviteExhausted {
                        invite: short(invite_key),
                        max_uses: inv.max_uses,
                    });
                }
                let invite_sig = e.invite_sig.as_ref().ok_or(LogFault::InviteSignature)?;
                invite_key
                    .verify(&bytes, invite_sig)
                    .map_err(|_| LogFault::BadSignature(short(invite_key)))?;
                inv.uses += 1;
                let role = inv.role;
                // Its bundle holds the root key of the invite's epoch: a
                // later epoch's key is owed to it by the next rekey.
                if inv.epoch < self.epoch {
                    self.owed.insert(*member);
                    self.needs_rekey = true;
                }
                self.departed.remove(member);
                self.members.insert(
                    *member,
                    MemberInfo {
                        role,
                        admitted_seq: e.seq,
                        invite: Some(*invite_key),
                        profile: None,
                    },
                );
            }
            EntryBody::Remove { member, how } => {
                let target_role = self
                    .role_of(member)
                    .ok_or_else(|| LogFault::NotAMember(short(member)))?;
                match how {
                    RemoveKind::Leave => {
                        if e.author != *member {
                            return Err(deny("make someone else leave (use kick)"));
                        }
                        if target_role == Role::Owner {
                            return Err(deny("leave as the owner"));
                        }
                    }
                    RemoveKind::Kick | RemoveKind::Ban => {
                        let allowed = match author_role {
                            Some(Role::Owner) => target_role != Role::Owner,
                            Some(Role::Admin) => target_role == Role::Member,
                            _ => false,
                        };
                        if !allowed {
                            return Err(deny("remove this member"));
                        }
                        self.pending_removal = Some(e.seq);
                        if *how == RemoveKind::Ban {
                            self.banned.insert(*member);
                        }
                    }
                }
                // Any removal, a leave too: the invite it joined with and
                // every invite it authored stop admitting anyone (and the
                // broker stops serving them), without an entry of their
                // own. So leaving just before a kick keeps no door open.
                let joined_with = self.members.get(member).and_then(|m| m.invite);
                self.revoke_invites_of(member, joined_with, e.seq);
                if let Some(info) = self.members.remove(member) {
                    self.departed.insert(
                        *member,
                        Departure {
                            how: *how,
                            seq: e.seq,
                            admitted_seq: info.admitted_seq,
                        },
                    );
                    self.member_spans.push(Span {
                        member: *member,
                        from: info.admitted_seq,
                        to: e.seq,
                    });
                }
                self.close_spaces(member, e.seq);
                self.owed.remove(member);
                self.needs_rekey = true;
            }
            EntryBody::Unban { member } => {
                if !is_admin {
                    return Err(deny("unban"));
                }
                if !self.banned.remove(member) {
                    return Err(LogFault::Invalid("unban of a key that is not banned"));
                }
            }
            EntryBody::Rekey {
                epoch,
                sealed,
                confirm,
            } => {
                // The owner and admins always; any other member only to
                // repair a leave or an owed key, or to re-roll an epoch a
                // member made (rule 4 above already kept everyone but the
                // owner and admins out while a kick or ban is pending).
                let author_role =
                    author_role.ok_or_else(|| LogFault::NotAMember(short(&e.author)))?;
                if !self.may_rekey(&e.author) {
                    return Err(deny(
                        "rekey (a member may only when a member left, a joiner is owed the key, or the current key was made by a member)",
                    ));
                }
                if *epoch != self.epoch + 1 {
                    return Err(LogFault::Invalid(
                        "rekey epoch must be the current epoch + 1",
                    ));
                }
                let mut recipients = BTreeSet::new();
                for s in sealed {
                    if s.ciphertext.len() != SEALED_ROOT_KEY_BYTES {
                        return Err(LogFault::Invalid("sealed root key must be 80 bytes"));
                    }
                    if !self.is_member(&s.recipient) {
                        return Err(LogFault::RekeyRecipients(format!(
                            "{} is not a current member",
                            short(&s.recipient)
                        )));
                    }
                    if !recipients.insert(s.recipient) {
                        return Err(LogFault::RekeyRecipients(format!(
                            "{} appears twice",
                            short(&s.recipient)
                        )));
                    }
                }
                if let Some(missing) = self.members.keys().find(|m| !recipients.contains(m)) {
                    return Err(LogFault::RekeyRecipients(format!(
                        "member {} is left out",
                        short(missing)
                    )));
                }
                self.epoch = *epoch;
                self.epochs.insert(
                    *epoch,
                    KeyEpoch::new(e.seq, e.author, author_role, *confirm, sealed),
                );
                self.needs_rekey = false;
                self.pending_removal = None;
                self.owed.clear();
            }
            EntryBody::TopicCreate { .. }
            | EntryBody::TopicJoin { .. }
            | EntryBody::TopicLeave { .. }
            | EntryBody::TopicRekey { .. }
            | EntryBody::GroupJoin { .. }
            | EntryBody::GroupLeave { .. } => self.apply_space(e, author_role)?,
            EntryBody::Profile {
                epoch,
                nonce,
                ciphertext,
            } => {
                if *epoch > self.epoch {
                    return Err(LogFault::Invalid("profile epoch is in the future"));
                }
                if ciphertext.len() > MAX_PROFILE_CIPHERTEXT_BYTES {
                    return Err(LogFault::Invalid("profile is larger than 4096 bytes"));
                }
                let m = self
                    .members
                    .get_mut(&e.author)
                    .ok_or_else(|| LogFault::NotAMember(short(&e.author)))?;
                m.profile = Some(SealedProfile {
                    seq: e.seq,
                    epoch: *epoch,
                    nonce: *nonce,
                    ciphertext: ciphertext.clone(),
                });
            }
        }
        let hash = e.hash();
        self.seq_of.insert(hash, e.seq);
        self.head = hash;
        self.len += 1;
        Ok(())
    }
}

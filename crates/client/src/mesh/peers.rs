//! Peers and who a recipient means: presence blobs (sealed and opened
//! under the profile key), the sessions verified, the peer list as this
//! device sees it, and resolving what a user typed (a name, a key prefix,
//! `<member>@<session>`) to one target.

use std::collections::BTreeMap;

use claudemesh_crypto::cert::SessionCert;
use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::{Nonce, PublicKey};
use claudemesh_proto::frames::{EncryptedBlob, PeerPresence, Status};

use crate::error::{ClientError, SessionNameProblem};
use crate::lookalike;

use super::names::{
    ambiguous_peer, look_alike, names_a_session, session_name_is_members, shown_name,
};
use super::state::{MeshState, PeerView, SessionProfile, SessionView, short};
use claudemesh_crypto::MemberKey;
use claudemesh_crypto::SessionKey;

impl MeshState {
    /// Seals a presence blob under the newest profile key.
    pub fn seal_presence(&self, info: &SessionProfile) -> Option<EncryptedBlob> {
        let root = self.newest_root()?;
        let json = serde_json::to_vec(info).ok()?;
        let nonce = Nonce::random();
        Some(EncryptedBlob {
            epoch: root.epoch,
            ciphertext: root.profile_key(&self.config.id).encrypt(&json, &nonce),
            nonce,
        })
    }

    /// Opens a presence blob.
    pub fn open_presence(&self, blob: &EncryptedBlob) -> Option<SessionProfile> {
        let root = self.root(blob.epoch)?;
        let pt = root
            .profile_key(&self.config.id)
            .decrypt(&blob.ciphertext, &blob.nonce)
            .ok()?;
        serde_json::from_slice(&pt).ok()
    }

    /// Records a session certificate if it verifies and chains to a current
    /// member; returns whether it did.
    pub fn learn_session(&mut self, cert: &SessionCert, now_secs: u64) -> bool {
        if cert.verify(&self.config.id, now_secs).is_err() || !self.roster.is_member(&cert.member) {
            return false;
        }
        self.verified_sessions.insert(cert.session.0, cert.clone());
        true
    }

    /// Builds the peer list: every verified member with what the broker
    /// reports of its sessions. Entries for keys the log does not admit are
    /// dropped (the broker cannot invent peers), and sessions are shown only
    /// with a certificate that verifies.
    pub fn peer_views(&mut self, presences: &[PeerPresence], now_secs: u64) -> Vec<PeerView> {
        let mut by_member: BTreeMap<PublicKey, Vec<&PeerPresence>> = BTreeMap::new();
        for p in presences {
            if self.roster.is_member(&p.member) {
                by_member.entry(p.member.0).or_default().push(p);
            }
        }
        for p in presences {
            if let Some(cert) = &p.cert {
                self.learn_session(cert, now_secs);
            }
        }
        let me = self.keys.member.public();
        let mut out = Vec::new();
        for (member, info) in self.roster.members() {
            let reports = by_member.get(member).cloned().unwrap_or_default();
            let profile = self.profile(member);
            let member_name = profile.as_ref().map(|p| p.name.as_str()).unwrap_or("");
            let mut sessions = Vec::new();
            let mut offline: Option<&PeerPresence> = None;
            for p in &reports {
                match (&p.session, p.online) {
                    (Some(s), true)
                        if self
                            .verified_sessions
                            .get(s)
                            .is_some_and(|c| &c.member == member) =>
                    {
                        let prof = p.summary.as_ref().and_then(|b| self.open_presence(b));
                        let prof = prof.unwrap_or_default();
                        sessions.push(SessionView {
                            key: s.to_hex(),
                            foreign_name: prof
                                .name
                                .as_deref()
                                .is_some_and(|n| !session_name_is_members(member_name, n)),
                            name: prof.name,
                            status: p.status,
                            summary: prof.summary,
                            cwd: prof.cwd,
                            branch: prof.branch,
                            repo: prof.repo,
                            host: prof.host,
                            connected_at_ms: p.connected_at_ms,
                            live_push: p.live_push,
                            this_session: *s == self.session.public(),
                        });
                    }
                    (_, false) => offline = Some(p),
                    _ => {}
                }
            }
            let best = sessions
                .iter()
                .find(|s| s.status == Status::Idle)
                .or_else(|| sessions.first());
            let status = best
                .map(|s| s.status)
                .or(offline.map(|p| p.status))
                .unwrap_or_default();
            let summary = best.and_then(|s| s.summary.clone()).or_else(|| {
                offline
                    .and_then(|p| p.summary.as_ref())
                    .and_then(|b| self.open_presence(b))
                    .and_then(|p| p.summary)
            });
            out.push(PeerView {
                name: profile
                    .as_ref()
                    .map(|p| p.name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| short(member)),
                key: member.to_hex(),
                role: info.role,
                peer_type: profile.map(|p| p.peer_type),
                online: !sessions.is_empty(),
                status,
                summary,
                last_seen_ms: if sessions.is_empty() {
                    offline.and_then(|p| p.last_seen_ms)
                } else {
                    None
                },
                sessions,
                you: *member == me,
            });
        }
        out.sort_by(|a, b| {
            (!a.online, a.name.to_lowercase()).cmp(&(!b.online, b.name.to_lowercase()))
        });
        out
    }

    /// The member a direct target reaches (a session's member from its
    /// verified certificate); `None` for fan-out targets.
    pub fn member_of_target(&self, target: &Target) -> Option<MemberKey> {
        match target {
            Target::Member(k) => Some(*k),
            Target::Session(s) => self.verified_sessions.get(s).map(|c| c.member),
            Target::Group(_) | Target::Topic(_) | Target::Broadcast => None,
        }
    }

    /// Resolves what a user typed as a recipient: `member:<hex>`,
    /// `session:<hex>`, a key prefix of at least 8 hex digits, a display
    /// name, or a session name `<member>@<name>` (from `peers`), which is
    /// looked for only among the sessions of the one member whose display
    /// name is the part before the first `@` (a session names itself, so
    /// its name alone proves nothing). Only verified members and sessions
    /// with verified certificates can be named.
    ///
    /// Display names are compared as a reader sees them (TM8, see
    /// [`crate::lookalike`]): every member whose name looks like what was
    /// typed (same skeleton: `alice`, `аlice` with a Cyrillic `а`,
    /// `alice\u{200B}`) is a candidate, so two of them are ambiguous and
    /// need a key prefix; one alone is reached only when its name is what
    /// was typed (any case), else [`ClientError::LookAlikePeer`].
    pub fn resolve(&self, to: &str, peers: &[PeerView]) -> Result<Target, ClientError> {
        let to = to.trim();
        // `@all` is what users of the TypeScript claudemesh type for a
        // broadcast; it means `*` unless a group is really named `all`.
        if to.eq_ignore_ascii_case("@all") && !self.roster.groups().contains_key(&to[1..]) {
            return Ok(Target::Broadcast);
        }
        if to == "*" || to.starts_with('@') || to.starts_with('#') {
            let target: Target =
                to.parse()
                    .map_err(|e: claudemesh_crypto::DecodeError| ClientError::BadTarget {
                        input: to.to_owned(),
                        reason: e.to_string(),
                    })?;
            self.check_fanout_target(&target)?;
            return Ok(target);
        }
        if let Some(hex) = to
            .strip_prefix("member:")
            .or_else(|| to.strip_prefix("session:"))
        {
            let key = PublicKey::from_hex(hex).map_err(|_| ClientError::BadKey {
                input: to.to_owned(),
            })?;
            return if to.starts_with("member:") {
                if self.roster.is_member(&key) {
                    Ok(Target::Member(MemberKey(key)))
                } else {
                    Err(ClientError::NoSuchPeer(to.to_owned()))
                }
            } else if self.verified_sessions.contains_key(&key) {
                Ok(Target::Session(SessionKey(key)))
            } else {
                Err(ClientError::NoSuchPeer(to.to_owned()))
            };
        }
        let lower = to.to_ascii_lowercase();
        let is_hex = lower.len() >= 8 && lower.bytes().all(|b| b.is_ascii_hexdigit());
        let mut found: Vec<(String, Target)> = Vec::new();
        if is_hex {
            for m in self.roster.members().keys() {
                if m.to_hex().starts_with(&lower) {
                    found.push((self.display_name(m), Target::Member(MemberKey(*m))));
                }
            }
            for s in self.verified_sessions.keys() {
                if s.to_hex().starts_with(&lower) {
                    found.push((
                        format!("session {}", short(s)),
                        Target::Session(SessionKey(*s)),
                    ));
                }
            }
        }
        if found.is_empty() && names_a_session(to) {
            return self.resolve_session_name(to, peers);
        }
        if found.is_empty() {
            let named = self.members_named_as_candidates(to);
            if let [(candidate, _, false)] = named.as_slice() {
                return Err(look_alike(to, to, candidate));
            }
            found = named.into_iter().map(|(label, t, _)| (label, t)).collect();
        }
        match found.len() {
            0 => Err(ClientError::NoSuchPeer(to.to_owned())),
            1 => Ok(found.remove(0).1),
            _ => Err(ambiguous_peer(to, found)),
        }
    }

    /// Members whose display name looks like `name` to a reader (the same
    /// [`lookalike::skeleton`]), as resolution candidates `alice
    /// (1bbf6ba3)`, each with whether its name is exactly `name` (the same
    /// [`lookalike::exact`] form: any case, compatibility forms alike).
    pub(super) fn members_named_as_candidates(&self, name: &str) -> Vec<(String, Target, bool)> {
        let skeleton = lookalike::skeleton(name);
        if skeleton.is_empty() {
            return Vec::new();
        }
        let exact = lookalike::exact(name);
        self.roster
            .members()
            .keys()
            .filter_map(|m| {
                let p = self.profile(m)?;
                (lookalike::skeleton(&p.name) == skeleton).then(|| {
                    (
                        format!("{} ({})", shown_name(&p.name).0, short(m)),
                        Target::Member(MemberKey(*m)),
                        lookalike::exact(&p.name) == exact,
                    )
                })
            })
            .collect()
    }

    /// Resolves a session name `X@Y`: among the connected sessions (in
    /// `peers`) of the one member whose display name is `X` only. When `X`
    /// names no member the whole text may still be a display name; when it
    /// names a member and another member's display name is the whole text,
    /// that is ambiguous, never a silent choice. Names are compared as in
    /// [`MeshState::resolve`]: a member whose name only looks like `X` is
    /// a candidate that makes `X` ambiguous, never the owner.
    fn resolve_session_name(&self, to: &str, peers: &[PeerView]) -> Result<Target, ClientError> {
        let who = to.split_once('@').map_or(to, |(who, _)| who);
        let drop_exact = |found: Vec<(String, Target, bool)>| -> Vec<(String, Target)> {
            found.into_iter().map(|(label, t, _)| (label, t)).collect()
        };
        let owners = self.members_named_as_candidates(who);
        let named_so = self.members_named_as_candidates(to);
        match (owners.as_slice(), named_so.as_slice()) {
            ([(candidate, _, false)], []) => return Err(look_alike(to, who, candidate)),
            ([], [(candidate, _, false)]) => return Err(look_alike(to, to, candidate)),
            _ => {}
        }
        let (owners, named_so) = (drop_exact(owners), drop_exact(named_so));
        let ambiguous = |found: Vec<(String, Target)>| ambiguous_peer(to, found);
        let owner = match (owners.as_slice(), named_so.len()) {
            ([], 0) => {
                return Err(ClientError::SessionName {
                    query: to.to_owned(),
                    problem: SessionNameProblem::NoMember {
                        member: who.to_owned(),
                    },
                });
            }
            ([], 1) => return Ok(named_so[0].1.clone()),
            ([], _) => return Err(ambiguous(named_so)),
            (_, 1..) => {
                let mut found: Vec<(String, Target)> = named_so
                    .into_iter()
                    .map(|(label, t)| (format!("the member {label}"), t))
                    .collect();
                found.extend(
                    owners
                        .into_iter()
                        .map(|(label, t)| (format!("a session of {label}"), t)),
                );
                return Err(ambiguous(found));
            }
            ([(label, Target::Member(k))], 0) => (label.clone(), *k),
            (_, 0) => {
                return Err(ClientError::SessionName {
                    query: to.to_owned(),
                    problem: SessionNameProblem::AmbiguousMember {
                        member: who.to_owned(),
                        candidates: owners
                            .into_iter()
                            .map(|f| f.0)
                            .collect::<Vec<_>>()
                            .join(", "),
                    },
                });
            }
        };
        let (owner_label, owner_key) = owner;
        let owner_hex = owner_key.to_hex();
        let mut found: Vec<(String, Target)> = Vec::new();
        for p in peers.iter().filter(|p| p.key == owner_hex) {
            for s in &p.sessions {
                if s.name
                    .as_deref()
                    .is_some_and(|n| lookalike::exact(n) == lookalike::exact(to))
                    && let Ok(k) = PublicKey::from_hex(&s.key)
                    && self
                        .verified_sessions
                        .get(&k)
                        .is_some_and(|c| c.member == owner_key)
                {
                    found.push((
                        format!("session {} of {owner_label}", short(&k)),
                        Target::Session(SessionKey(k)),
                    ));
                }
            }
        }
        match found.len() {
            0 => Err(ClientError::SessionName {
                query: to.to_owned(),
                problem: SessionNameProblem::NotOnline {
                    member: owner_label,
                },
            }),
            1 => Ok(found.remove(0).1),
            _ => Err(ambiguous(found)),
        }
    }

    /// Checks that a fan-out target names something in the verified log:
    /// `#topic` a topic that exists, `@group` a group with members now
    /// (itself or below it); `*` always does.
    pub fn check_fanout_target(&self, target: &Target) -> Result<(), ClientError> {
        match target {
            Target::Topic(t) if self.roster.topic(t).is_none() => Err(self.no_such_topic(t)),
            Target::Group(g) if self.roster.recipients_now(target).is_empty() => {
                let groups: Vec<String> = self
                    .roster
                    .groups()
                    .iter()
                    .filter(|(_, info)| !info.members.is_empty())
                    .map(|(name, _)| format!("@{name}"))
                    .collect();
                let known = if groups.is_empty() {
                    "this mesh has no groups yet (`claudemesh group join @<name>`)".to_owned()
                } else {
                    format!("groups: {}", groups.join(", "))
                };
                Err(ClientError::NotFound(format!(
                    "no group @{g} with members in this mesh; {known}. To message one person, give their name without @"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The error for a topic name the log does not know.
    pub fn no_such_topic(&self, topic: &str) -> ClientError {
        let topics: Vec<String> = self
            .roster
            .topics()
            .keys()
            .map(|t| format!("#{t}"))
            .collect();
        let known = if topics.is_empty() {
            "this mesh has no topics yet (`claudemesh topic create <name>`)".to_owned()
        } else {
            format!("topics: {}", topics.join(", "))
        };
        ClientError::NotFound(format!("no topic #{topic} in this mesh; {known}"))
    }
}

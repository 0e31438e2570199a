//! The verbs of the policy, one [`Verb`] each: the one place that names
//! them (as rules, the audit log and refusals spell them), says what each
//! does ([`Kind`]), and lists them.

use std::fmt;
use std::str::FromStr;

/// What a verb does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads (inbox and `topic read` included: they acknowledge and mark
    /// read only what they show).
    Read,
    /// Changes something that can be undone or repeated.
    Write,
    /// Removes someone or something, or replaces this device's keys.
    Destructive,
}

/// Declares [`Verb`] with its spelling and kind, so the three cannot drift.
macro_rules! verbs {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $kind:ident;)*) => {
        /// Something a command (or an MCP tool call) does, as the policy
        /// decides about it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Verb {
            $($(#[$doc])* $variant,)*
        }

        impl Verb {
            /// Every verb.
            pub const ALL: &'static [Verb] = &[$(Verb::$variant,)*];

            /// How rules and the audit log spell it (`peer.ban`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Verb::$variant => $name,)*
                }
            }

            /// What it does.
            pub fn kind(self) -> Kind {
                match self {
                    $(Verb::$variant => Kind::$kind,)*
                }
            }
        }
    };
}

verbs! {
    MeshCreate = "mesh.create", Write;
    MeshList = "mesh.list", Read;
    MeshShare = "mesh.share", Write;
    MeshRevokeInvite = "mesh.revoke-invite", Destructive;
    /// A new key for everyone: it locks no one out and can be repeated.
    MeshRekey = "mesh.rekey", Write;
    MeshJoin = "mesh.join", Write;
    MeshUse = "mesh.use", Write;
    MeshLeave = "mesh.leave", Destructive;
    PeerList = "peer.list", Read;
    PeerKick = "peer.kick", Destructive;
    PeerBan = "peer.ban", Destructive;
    PeerUnban = "peer.unban", Destructive;
    PeerBans = "peer.bans", Read;
    PeerVerify = "peer.verify", Read;
    /// Pinning a key decides whom this device trusts.
    PeerVerifyMark = "peer.verify-mark", Write;
    MessageSend = "message.send", Write;
    MessageInbox = "message.inbox", Read;
    MessageStatus = "message.status", Read;
    ScheduleList = "schedule.list", Read;
    /// Cancelling a scheduled message only stops it; it can be sent again.
    ScheduleCancel = "schedule.cancel", Write;
    MemoryRemember = "memory.remember", Write;
    MemoryRecall = "memory.recall", Read;
    MemoryList = "memory.list", Read;
    /// Forgetting a note takes it from every member's device, and only its
    /// author has its text to write again.
    MemoryForget = "memory.forget", Destructive;
    TaskCreate = "task.create", Write;
    TaskList = "task.list", Read;
    TaskShow = "task.show", Read;
    TaskClaim = "task.claim", Write;
    TaskRelease = "task.release", Write;
    TaskComplete = "task.complete", Write;
    /// Releasing or completing a task another member claimed takes it
    /// from their hands.
    TaskForce = "task.force", Destructive;
    /// Deleting a task takes it from every member's list.
    TaskDelete = "task.delete", Destructive;
    LeaseTake = "lease.take", Write;
    LeaseList = "lease.list", Read;
    LeaseCheck = "lease.check", Read;
    LeaseRenew = "lease.renew", Write;
    LeaseRelease = "lease.release", Write;
    StateSet = "state.set", Write;
    StateGet = "state.get", Read;
    StateList = "state.list", Read;
    StateWatch = "state.watch", Read;
    /// Deleting a key takes its value from every member.
    StateDelete = "state.delete", Destructive;
    TopicCreate = "topic.create", Write;
    TopicList = "topic.list", Read;
    TopicJoin = "topic.join", Write;
    TopicLeave = "topic.leave", Write;
    TopicAdd = "topic.add", Write;
    TopicMembers = "topic.members", Read;
    TopicPost = "topic.post", Write;
    TopicHistory = "topic.history", Read;
    TopicRead = "topic.read", Read;
    GroupJoin = "group.join", Write;
    GroupLeave = "group.leave", Write;
    GroupList = "group.list", Read;
    ProfileStatus = "profile.status", Write;
    ProfileSummary = "profile.summary", Write;
    Status = "status", Read;
    Backup = "backup", Write;
    Restore = "restore", Destructive;
    AuditVerify = "audit.verify", Read;
    AuditList = "audit.list", Read;
    /// A new key opens the local gateway to a script, within its scope.
    ApikeyCreate = "apikey.create", Write;
    ApikeyList = "apikey.list", Read;
    ApikeyRevoke = "apikey.revoke", Destructive;
    /// The gateway answers key holders on this device's behalf, within
    /// each key's scope.
    Serve = "serve", Write;
    ServeService = "serve.service", Write;
    /// A sign-in link gives a browser the web app, as this member.
    ServeOpen = "serve.open", Write;
    ServeSessions = "serve.sessions", Read;
    ServeSessionsEnd = "serve.sessions.end", Write;
    Grant = "grant", Write;
    Revoke = "revoke", Write;
    Block = "block", Write;
    Unblock = "unblock", Write;
    Grants = "grants", Read;
    // Claude Code integration. install and uninstall edit Claude Code's
    // files (each can be undone by the other). launch changes nothing
    // itself: it starts `claude`, whose MCP server asks the policy before
    // each write it makes, so read-only mode still lets a session read.
    Install = "install", Write;
    Uninstall = "uninstall", Write;
    Launch = "launch", Read;
    Mcp = "mcp", Read;
}

impl Verb {
    /// The noun of a two-word verb (`peer` of `peer.ban`); `None` for a
    /// one-word verb (`restore`).
    pub fn noun(self) -> Option<&'static str> {
        self.as_str().split_once('.').map(|(noun, _)| noun)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a verb.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown verb {0:?}")]
pub struct UnknownVerb(pub String);

impl FromStr for Verb {
    type Err = UnknownVerb;

    fn from_str(s: &str) -> Result<Verb, UnknownVerb> {
        Verb::ALL
            .iter()
            .copied()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownVerb(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_reads_back_from_its_name() {
        for v in Verb::ALL {
            assert_eq!(v.as_str().parse::<Verb>(), Ok(*v));
        }
        assert!("peer.bann".parse::<Verb>().is_err());
        assert_eq!(Verb::PeerBan.noun(), Some("peer"));
        assert_eq!(Verb::Restore.noun(), None);
    }
}

//! A command as the policy sees it ([`Request`]: its verb, its target,
//! whether it acts on one mesh), and in words for a question or a plan
//! ("ban carol from team").

use crate::args::{
    AuditCmd, Command, GroupCmd, MeshCmd, MessageCmd, PeerCmd, ProfileCmd, TopicCmd, VerifyArgs,
};
use crate::policy::verb::Verb;

/// A command as the policy sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The verb (`peer.ban`).
    pub verb: Verb,
    /// What it acts on (a peer, topic, file); never a secret.
    pub target: Option<String>,
    /// Whether it acts on one mesh (`--mesh` or the default).
    pub mesh_scoped: bool,
}

impl Request {
    pub fn new(verb: Verb, target: Option<&str>, mesh_scoped: bool) -> Request {
        Request {
            verb,
            target: target.map(|t| t.chars().take(200).collect()),
            mesh_scoped,
        }
    }
}

fn verify_request(a: &VerifyArgs) -> Request {
    let verb = if a.mark {
        Verb::PeerVerifyMark
    } else {
        Verb::PeerVerify
    };
    Request::new(verb, Some(&a.peer), true)
}

/// The request a command makes of the policy; `None` for commands that
/// touch neither the home nor a mesh (`demo`, `completions`).
pub fn request_for(cmd: &Command) -> Option<Request> {
    use Request as R;
    let r = match cmd {
        Command::Mesh(m) => match m {
            MeshCmd::Create { name, .. } => R::new(Verb::MeshCreate, Some(name), false),
            MeshCmd::List => R::new(Verb::MeshList, None, false),
            MeshCmd::Share { .. } => R::new(Verb::MeshShare, None, true),
            MeshCmd::RevokeInvite { id } => R::new(Verb::MeshRevokeInvite, Some(id), true),
            MeshCmd::Rekey => R::new(Verb::MeshRekey, None, true),
            // The invite is a secret: it is never a target.
            MeshCmd::Join(_) => R::new(Verb::MeshJoin, None, false),
            MeshCmd::Use { mesh } => R::new(Verb::MeshUse, Some(mesh), false),
            MeshCmd::Leave => R::new(Verb::MeshLeave, None, true),
        },
        Command::Join(_) => R::new(Verb::MeshJoin, None, false),
        Command::Peer(p) => match p {
            PeerCmd::List => R::new(Verb::PeerList, None, true),
            PeerCmd::Kick { peer } => R::new(Verb::PeerKick, Some(peer), true),
            PeerCmd::Ban { peer } => R::new(Verb::PeerBan, Some(peer), true),
            PeerCmd::Unban { peer } => R::new(Verb::PeerUnban, Some(peer), true),
            PeerCmd::Bans => R::new(Verb::PeerBans, None, true),
            PeerCmd::Verify(a) => verify_request(a),
        },
        Command::Peers => R::new(Verb::PeerList, None, true),
        Command::Verify(a) => verify_request(a),
        Command::Topic(t) => match t {
            TopicCmd::Create { name, .. } => R::new(Verb::TopicCreate, Some(name), true),
            TopicCmd::List => R::new(Verb::TopicList, None, true),
            TopicCmd::Join { topic } => R::new(Verb::TopicJoin, Some(topic), true),
            TopicCmd::Leave { topic } => R::new(Verb::TopicLeave, Some(topic), true),
            TopicCmd::Add { topic, peer } => {
                R::new(Verb::TopicAdd, Some(&format!("{peer} to {topic}")), true)
            }
            TopicCmd::Members { topic } => R::new(Verb::TopicMembers, Some(topic), true),
            TopicCmd::Post { topic, .. } => R::new(Verb::TopicPost, Some(topic), true),
            TopicCmd::History { topic, .. } => R::new(Verb::TopicHistory, Some(topic), true),
            TopicCmd::Read { topic } => R::new(Verb::TopicRead, Some(topic), true),
        },
        Command::Group(gr) => match gr {
            GroupCmd::Join { group, .. } => R::new(Verb::GroupJoin, Some(group), true),
            GroupCmd::Leave { group } => R::new(Verb::GroupLeave, Some(group), true),
            GroupCmd::List => R::new(Verb::GroupList, None, true),
        },
        Command::Message(MessageCmd::Send(a)) | Command::Send(a) => {
            R::new(Verb::MessageSend, Some(&a.to), true)
        }
        Command::Message(MessageCmd::Inbox(_)) | Command::Inbox(_) => {
            R::new(Verb::MessageInbox, None, true)
        }
        Command::Message(MessageCmd::Status { id }) => R::new(Verb::MessageStatus, Some(id), true),
        Command::Profile(ProfileCmd::Summary { .. }) => R::new(Verb::ProfileSummary, None, true),
        Command::Profile(ProfileCmd::Status { status }) => {
            let s = format!("{status:?}").to_ascii_lowercase();
            R::new(Verb::ProfileStatus, Some(&s), true)
        }
        Command::Status => R::new(Verb::Status, None, false),
        Command::Backup(a) => R::new(
            Verb::Backup,
            a.file.as_ref().map(|f| f.display().to_string()).as_deref(),
            false,
        ),
        Command::Restore(a) => R::new(Verb::Restore, Some(&a.file.display().to_string()), false),
        Command::Audit(AuditCmd::Verify) => R::new(Verb::AuditVerify, None, false),
        Command::Audit(AuditCmd::List { .. }) => R::new(Verb::AuditList, None, false),
        Command::Grant { peer, .. } => R::new(Verb::Grant, Some(peer), true),
        Command::Revoke { peer, .. } => R::new(Verb::Revoke, Some(peer), true),
        Command::Block { peer, .. } => R::new(Verb::Block, Some(peer), true),
        Command::Unblock { peer } => R::new(Verb::Unblock, Some(peer), true),
        Command::Grants => R::new(Verb::Grants, None, true),
        // A dry run changes nothing and touches no home: not asked about.
        Command::Install(a) if a.dry_run => return None,
        Command::Uninstall(a) if a.dry_run => return None,
        Command::Install(_) => R::new(Verb::Install, None, false),
        Command::Uninstall(_) => R::new(Verb::Uninstall, None, false),
        Command::Launch(a) => R::new(Verb::Launch, a.name.as_deref(), false),
        // Each MCP tool call is checked as the verb it matches (mcp/tools.rs).
        Command::Mcp(_) => R::new(Verb::Mcp, None, true),
        // A hook only reports the session's state to its own MCP server and
        // the status line only reads local files: neither is an action the
        // policy governs (and a refused hook would break every prompt).
        Command::Demo(_)
        | Command::Completions { .. }
        | Command::External(_)
        | Command::Hook { .. }
        | Command::StatusLine => return None,
    };
    Some(r)
}

/// What a command would do, in words ("ban carol from team").
pub fn describe(req: &Request, mesh: Option<&str>) -> String {
    let t = req.target.as_deref().unwrap_or("");
    let m = mesh.unwrap_or("the mesh");
    match req.verb {
        Verb::PeerKick => format!("kick {t} from {m}"),
        Verb::PeerBan => format!("ban {t} from {m}"),
        Verb::PeerUnban => format!("unban {t} in {m}"),
        Verb::MeshLeave => {
            format!("leave {m} and remove its keys and messages from this device")
        }
        Verb::MeshRevokeInvite => format!("revoke invite {t} of {m}"),
        Verb::MeshRekey => format!("write a new mesh key for {m}"),
        Verb::MessageSend => format!("send a message to {t} in {m}"),
        Verb::TopicPost => format!("post to #{} in {m}", t.trim_start_matches('#')),
        verb => {
            let words = verb.as_str().replace('.', " ");
            let mut s = format!("run `claudemesh {words}");
            if !t.is_empty() {
                s.push(' ');
                s.push_str(t);
            }
            s.push('`');
            if req.mesh_scoped {
                s.push_str(" in ");
                s.push_str(m);
            }
            s
        }
    }
}

/// `s` with its first letter in capitals (a question starts so).
pub fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_read_as_questions() {
        let req = Request::new(Verb::PeerBan, Some("carol"), true);
        assert_eq!(
            capitalized(&describe(&req, Some("team"))),
            "Ban carol from team"
        );
        let req = Request::new(Verb::TopicLeave, Some("deploys"), true);
        assert_eq!(
            describe(&req, Some("team")),
            "run `claudemesh topic leave deploys` in team"
        );
    }
}

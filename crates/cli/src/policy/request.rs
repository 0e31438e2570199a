//! A command as the policy sees it ([`Request`]: its verb, its target,
//! whether it acts on one mesh), and in words for a question or a plan
//! ("ban carol from team"). Each command's clap type builds its own
//! request (`MeshCmd::request`, …); `main`'s `request_for` picks it.

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
        Verb::MemoryRemember => format!("remember a note in {m}"),
        Verb::MemoryForget => format!("forget note {t} for everyone in {m}"),
        Verb::TaskCreate if t.is_empty() => format!("create a task in {m}"),
        Verb::TaskCreate => format!("create a task for #{} in {m}", t.trim_start_matches('#')),
        Verb::TaskForce => format!("take task {t} from the member who claimed it in {m}"),
        Verb::TaskDelete => format!("delete task {t} for everyone in {m}"),
        Verb::StateSet => format!("set state key {t} in {m}"),
        Verb::StateDelete => format!("delete state key {t} for everyone in {m}"),
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
        let req = Request::new(Verb::MemoryForget, Some("3fa2c1d0"), true);
        assert_eq!(
            capitalized(&describe(&req, Some("team"))),
            "Forget note 3fa2c1d0 for everyone in team"
        );
        let req = Request::new(Verb::TopicLeave, Some("deploys"), true);
        assert_eq!(
            describe(&req, Some("team")),
            "run `claudemesh topic leave deploys` in team"
        );
    }
}

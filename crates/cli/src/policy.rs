//! The local approval policy: `policy.yaml` in the home (or `--policy`),
//! the approval mode (`--approval-mode`, else the file's `approval_mode`,
//! else `write`), `-y/--yes`, and per-verb `allow:` and `deny:` rules.
//! Before a command does anything it asks the policy, which lets it run,
//! asks on the terminal (destructive verbs), or refuses it (exit 7, with
//! one line saying how to allow it); every decision about a write, and any
//! refusal, is appended to the audit log (`crate::audit`).
//! `docs/cli.md` ("Policy and approval") is the contract.

use std::fmt;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use claudemesh_client::home::{Home, ensure_private_dir, resolve_home};
use serde::Deserialize;

use crate::args::{
    AuditCmd, Command, Global, GroupCmd, MeshCmd, MessageCmd, PeerCmd, ProfileCmd, TopicCmd,
};
use crate::audit;
use crate::exit::{self, Failure};

/// The policy file's name in the home.
pub const FILE: &str = "policy.yaml";

/// How much claudemesh may do on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalMode {
    /// Nothing that writes runs; the refusal says what would have happened.
    Plan,
    /// Nothing that writes runs.
    ReadOnly,
    /// Writes run; destructive verbs ask (or need -y or an allow rule).
    Write,
    /// Everything runs without asking (deny rules still hold).
    Yolo,
}

impl ApprovalMode {
    /// The name used on the command line, in the file and in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Plan => "plan",
            ApprovalMode::ReadOnly => "read-only",
            ApprovalMode::Write => "write",
            ApprovalMode::Yolo => "yolo",
        }
    }
}

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

/// Every verb the policy knows, as rules name them.
pub const VERBS: &[(&str, Kind)] = &[
    ("mesh.create", Kind::Write),
    ("mesh.list", Kind::Read),
    ("mesh.share", Kind::Write),
    ("mesh.revoke-invite", Kind::Destructive),
    // A new key for everyone: it locks no one out and can be repeated.
    ("mesh.rekey", Kind::Write),
    ("mesh.join", Kind::Write),
    ("mesh.use", Kind::Write),
    ("mesh.leave", Kind::Destructive),
    ("peer.list", Kind::Read),
    ("peer.kick", Kind::Destructive),
    ("peer.ban", Kind::Destructive),
    ("peer.unban", Kind::Destructive),
    ("peer.bans", Kind::Read),
    ("peer.verify", Kind::Read),
    // Pinning a key decides whom this device trusts.
    ("peer.verify-mark", Kind::Write),
    ("message.send", Kind::Write),
    ("message.inbox", Kind::Read),
    ("message.status", Kind::Read),
    ("topic.create", Kind::Write),
    ("topic.list", Kind::Read),
    ("topic.join", Kind::Write),
    ("topic.leave", Kind::Write),
    ("topic.add", Kind::Write),
    ("topic.members", Kind::Read),
    ("topic.post", Kind::Write),
    ("topic.history", Kind::Read),
    ("topic.read", Kind::Read),
    ("group.join", Kind::Write),
    ("group.leave", Kind::Write),
    ("group.list", Kind::Read),
    ("profile.status", Kind::Write),
    ("profile.summary", Kind::Write),
    ("status", Kind::Read),
    ("backup", Kind::Write),
    ("restore", Kind::Destructive),
    ("audit.verify", Kind::Read),
    ("audit.list", Kind::Read),
    ("grant", Kind::Write),
    ("revoke", Kind::Write),
    ("block", Kind::Write),
    ("unblock", Kind::Write),
    ("grants", Kind::Read),
    // Claude Code integration. install and uninstall edit Claude Code's
    // files (each can be undone by the other). launch changes nothing
    // itself: it starts `claude`, whose MCP server asks the policy before
    // each write it makes, so read-only mode still lets a session read.
    ("install", Kind::Write),
    ("uninstall", Kind::Write),
    ("launch", Kind::Read),
    ("mcp", Kind::Read),
];

/// What a verb does (unknown verbs count as destructive).
pub fn kind_of(verb: &str) -> Kind {
    VERBS
        .iter()
        .find(|(v, _)| *v == verb)
        .map_or(Kind::Destructive, |(_, k)| *k)
}

/// The file written the first time a command consults the policy.
pub const DEFAULT_POLICY: &str = "\
# claudemesh policy: what claudemesh may do without asking.
# claudemesh wrote this file with the defaults; edit it to change them.
# The full reference is docs/cli.md, \"Policy and approval\".
#
# approval_mode: how much claudemesh may do on its own.
#   plan       refuse everything that writes, saying what it would have done (exit 7)
#   read-only  refuse everything that writes (exit 7)
#   write      writes run; destructive verbs ask on a terminal, and without one
#              are refused (exit 7) unless allowed below or run with -y/--yes
#   yolo       everything runs without asking (deny rules still hold)
# --approval-mode (or CLAUDEMESH_APPROVAL_MODE) on the command line wins.
approval_mode: write

# Verbs that run without asking, as if -y were given for them, e.g.
#   allow: [peer.kick, mesh.revoke-invite]
# Verbs that are always refused, whatever the mode and -y, e.g.
#   deny: [peer.ban, restore]
# A rule is a verb, a group of verbs (peer.*) or every verb (*).
# Destructive verbs: peer.kick, peer.ban, peer.unban, mesh.leave,
#   mesh.revoke-invite, restore.
# Other writes: mesh.create, mesh.share, mesh.rekey, mesh.join, mesh.use, message.send,
#   topic.create, topic.join, topic.leave, topic.add, topic.post,
#   group.join, group.leave, profile.status, profile.summary, backup,
#   grant, revoke, block, unblock, install, uninstall.
# Reads (never asked; refused only by a deny rule): mesh.list, peer.list,
#   peer.bans, message.inbox, message.status, topic.list, topic.members,
#   topic.history, topic.read, group.list, status, audit.verify, audit.list,
#   grants, launch, mcp (each tool call of `claudemesh mcp` is checked as its
#   verb).
allow: []
deny: []
";

/// A rule of `allow:` or `deny:`: a verb, `noun.*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule(String);

impl Rule {
    fn parse(s: &str) -> Result<Rule, String> {
        let known = s == "*"
            || VERBS.iter().any(|(v, _)| *v == s)
            || s.strip_suffix(".*").is_some_and(|noun| {
                VERBS
                    .iter()
                    .any(|(v, _)| v.split('.').next() == Some(noun) && v.contains('.'))
            });
        if known {
            Ok(Rule(s.to_owned()))
        } else {
            Err(format!(
                "unknown verb {s:?}: a rule is a verb such as peer.ban, a group such as peer.*, or *"
            ))
        }
    }

    /// Whether the rule covers `verb`.
    pub fn matches(&self, verb: &str) -> bool {
        self.0 == "*"
            || self.0 == verb
            || self
                .0
                .strip_suffix(".*")
                .is_some_and(|noun| verb.split_once('.').is_some_and(|(n, _)| n == noun))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Rule::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `policy.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    approval_mode: Option<ApprovalMode>,
    #[serde(default)]
    allow: Option<Vec<Rule>>,
    #[serde(default)]
    deny: Option<Vec<Rule>>,
}

/// Why the policy could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Bad YAML, or a value the policy does not know, with its place.
    #[error("{path}, line {line} column {column}: {message}", path = path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Not valid without a known place.
    #[error("{path}: {message}", path = path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `--policy` names a file that does not exist.
    #[error("there is no policy file at {}", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read or created.
    #[error("cannot {what} {path}: {source}", path = path.display())]
    Io {
        /// read or create.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl From<PolicyError> for Failure {
    fn from(e: PolicyError) -> Self {
        let (code, hint) = match &e {
            PolicyError::Syntax { path, .. } | PolicyError::Invalid { path, .. } => (
                exit::USAGE,
                format!(
                    "fix {} (docs/cli.md, \"Policy and approval\"); moved away, it is made again with the defaults",
                    path.display()
                ),
            ),
            PolicyError::Missing { .. } => (
                exit::USAGE,
                "check the path, or leave out --policy to use the home's policy.yaml".to_owned(),
            ),
            PolicyError::Io { .. } => (exit::IO, "check the file's permissions".to_owned()),
        };
        Failure::new(code, e.to_string()).hint(hint)
    }
}

/// Strips yaml's own " at line L column C" from a message that is shown
/// with its place anyway.
fn yaml_message(e: &serde_yaml::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn parse_text(text: &str, path: &Path) -> Result<PolicyFile, PolicyError> {
    let only_comments = text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    });
    if only_comments {
        return Ok(PolicyFile::default());
    }
    serde_yaml::from_str::<PolicyFile>(text).map_err(|e| match e.location() {
        Some(loc) => PolicyError::Syntax {
            path: path.to_owned(),
            line: loc.line(),
            column: loc.column(),
            message: yaml_message(&e),
        },
        None => PolicyError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        },
    })
}

/// Checks a policy file's text (a restored backup's), naming the place of
/// the first problem.
pub fn check_text(text: &str, shown_as: &Path) -> Result<(), PolicyError> {
    parse_text(text, shown_as).map(|_| ())
}

/// A command as the policy sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The verb (`peer.ban`).
    pub verb: &'static str,
    /// What it acts on (a peer, topic, file); never a secret.
    pub target: Option<String>,
    /// Whether it acts on one mesh (`--mesh` or the default).
    pub mesh_scoped: bool,
}

impl Request {
    pub(crate) fn new(verb: &'static str, target: Option<&str>, mesh_scoped: bool) -> Request {
        Request {
            verb,
            target: target.map(|t| t.chars().take(200).collect()),
            mesh_scoped,
        }
    }
}

fn verify_request(a: &crate::args::VerifyArgs) -> Request {
    let verb = if a.mark {
        "peer.verify-mark"
    } else {
        "peer.verify"
    };
    Request::new(verb, Some(&a.peer), true)
}

/// The request a command makes of the policy; `None` for commands that
/// touch neither the home nor a mesh (`demo`, `completions`).
pub fn request_for(cmd: &Command) -> Option<Request> {
    use Request as R;
    let r = match cmd {
        Command::Mesh(m) => match m {
            MeshCmd::Create { name, .. } => R::new("mesh.create", Some(name), false),
            MeshCmd::List => R::new("mesh.list", None, false),
            MeshCmd::Share { .. } => R::new("mesh.share", None, true),
            MeshCmd::RevokeInvite { id } => R::new("mesh.revoke-invite", Some(id), true),
            MeshCmd::Rekey => R::new("mesh.rekey", None, true),
            // The invite is a secret: it is never a target.
            MeshCmd::Join(_) => R::new("mesh.join", None, false),
            MeshCmd::Use { mesh } => R::new("mesh.use", Some(mesh), false),
            MeshCmd::Leave => R::new("mesh.leave", None, true),
        },
        Command::Join(_) => R::new("mesh.join", None, false),
        Command::Peer(p) => match p {
            PeerCmd::List => R::new("peer.list", None, true),
            PeerCmd::Kick { peer } => R::new("peer.kick", Some(peer), true),
            PeerCmd::Ban { peer } => R::new("peer.ban", Some(peer), true),
            PeerCmd::Unban { peer } => R::new("peer.unban", Some(peer), true),
            PeerCmd::Bans => R::new("peer.bans", None, true),
            PeerCmd::Verify(a) => verify_request(a),
        },
        Command::Peers => R::new("peer.list", None, true),
        Command::Verify(a) => verify_request(a),
        Command::Topic(t) => match t {
            TopicCmd::Create { name, .. } => R::new("topic.create", Some(name), true),
            TopicCmd::List => R::new("topic.list", None, true),
            TopicCmd::Join { topic } => R::new("topic.join", Some(topic), true),
            TopicCmd::Leave { topic } => R::new("topic.leave", Some(topic), true),
            TopicCmd::Add { topic, peer } => {
                R::new("topic.add", Some(&format!("{peer} to {topic}")), true)
            }
            TopicCmd::Members { topic } => R::new("topic.members", Some(topic), true),
            TopicCmd::Post { topic, .. } => R::new("topic.post", Some(topic), true),
            TopicCmd::History { topic, .. } => R::new("topic.history", Some(topic), true),
            TopicCmd::Read { topic } => R::new("topic.read", Some(topic), true),
        },
        Command::Group(gr) => match gr {
            GroupCmd::Join { group, .. } => R::new("group.join", Some(group), true),
            GroupCmd::Leave { group } => R::new("group.leave", Some(group), true),
            GroupCmd::List => R::new("group.list", None, true),
        },
        Command::Message(MessageCmd::Send(a)) | Command::Send(a) => {
            R::new("message.send", Some(&a.to), true)
        }
        Command::Message(MessageCmd::Inbox(_)) | Command::Inbox(_) => {
            R::new("message.inbox", None, true)
        }
        Command::Message(MessageCmd::Status { id }) => R::new("message.status", Some(id), true),
        Command::Profile(ProfileCmd::Summary { .. }) => R::new("profile.summary", None, true),
        Command::Profile(ProfileCmd::Status { status }) => {
            let s = format!("{status:?}").to_ascii_lowercase();
            R::new("profile.status", Some(&s), true)
        }
        Command::Status => R::new("status", None, false),
        Command::Backup(a) => R::new(
            "backup",
            a.file.as_ref().map(|f| f.display().to_string()).as_deref(),
            false,
        ),
        Command::Restore(a) => R::new("restore", Some(&a.file.display().to_string()), false),
        Command::Audit(AuditCmd::Verify) => R::new("audit.verify", None, false),
        Command::Audit(AuditCmd::List { .. }) => R::new("audit.list", None, false),
        Command::Grant { peer, .. } => R::new("grant", Some(peer), true),
        Command::Revoke { peer, .. } => R::new("revoke", Some(peer), true),
        Command::Block { peer, .. } => R::new("block", Some(peer), true),
        Command::Unblock { peer } => R::new("unblock", Some(peer), true),
        Command::Grants => R::new("grants", None, true),
        // A dry run changes nothing and touches no home: not asked about.
        Command::Install(a) if a.dry_run => return None,
        Command::Uninstall(a) if a.dry_run => return None,
        Command::Install(_) => R::new("install", None, false),
        Command::Uninstall(_) => R::new("uninstall", None, false),
        Command::Launch(a) => R::new("launch", a.name.as_deref(), false),
        // Each MCP tool call is checked as the verb it matches (mcp/tools.rs).
        Command::Mcp(_) => R::new("mcp", None, true),
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

/// What the policy says before anyone is asked.
#[derive(Debug, Clone)]
pub enum Evaluation {
    /// It may run.
    Allowed {
        /// Why (for the audit log).
        reason: String,
    },
    /// It may not; `message` and `hint` say why and how to allow it.
    Denied {
        /// Why (for the audit log).
        reason: String,
        /// The error line.
        message: String,
        /// How to allow it.
        hint: String,
    },
    /// Plan mode: say what would happen, do nothing.
    Planned,
    /// A destructive verb in write mode: ask on the terminal.
    Ask,
}

impl Evaluation {
    /// Whether it will be a refusal whatever comes next: denied, planned,
    /// or a question with no terminal to ask it on.
    pub fn refuses(&self) -> bool {
        match self {
            Evaluation::Denied { .. } | Evaluation::Planned => true,
            Evaluation::Ask => !can_ask(),
            Evaluation::Allowed { .. } => false,
        }
    }
}

/// The policy in force for this run.
#[derive(Debug)]
pub struct Policy {
    path: PathBuf,
    home: PathBuf,
    mode: ApprovalMode,
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    yes: bool,
}

impl Policy {
    /// Reads the policy (`--policy`, else `<home>/policy.yaml`, which is
    /// created with the commented defaults if it does not exist).
    pub fn load(g: &Global) -> Result<Policy, Failure> {
        let home = resolve_home(g.home.as_deref())?;
        let (path, explicit) = match &g.policy {
            Some(p) => (p.clone(), true),
            None => (home.join(FILE), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                ensure_private_dir(&home)?;
                create_default(&path)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PolicyError::Missing { path }.into());
            }
            Err(e) => {
                return Err(PolicyError::Io {
                    what: "read",
                    path,
                    source: e,
                }
                .into());
            }
        };
        let file = parse_text(&text, &path)?;
        Ok(Policy {
            mode: g
                .approval_mode
                .or(file.approval_mode)
                .unwrap_or(ApprovalMode::Write),
            allow: file.allow.unwrap_or_default(),
            deny: file.deny.unwrap_or_default(),
            yes: g.yes,
            path,
            home,
        })
    }

    /// The home the audit log is in.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The decision before anyone is asked.
    pub fn evaluate(&self, req: &Request) -> Evaluation {
        let verb = req.verb;
        let path = self.path.display();
        if let Some(rule) = self.deny.iter().find(|r| r.matches(verb)) {
            return Evaluation::Denied {
                reason: format!("deny rule {rule}"),
                message: format!("the policy denies {verb} (rule {rule:?} under deny: in {path})"),
                hint: format!("remove {rule:?} from deny: in {path} to allow {verb}"),
            };
        }
        let kind = kind_of(verb);
        if kind == Kind::Read {
            return Evaluation::Allowed {
                reason: "a read".into(),
            };
        }
        match self.mode {
            ApprovalMode::Plan => Evaluation::Planned,
            ApprovalMode::ReadOnly => Evaluation::Denied {
                reason: "approval mode read-only".into(),
                message: format!(
                    "approval mode read-only refuses {verb}: it changes something; nothing was done"
                ),
                hint: format!(
                    "run it with --approval-mode write, or set approval_mode: write in {path}"
                ),
            },
            ApprovalMode::Yolo => Evaluation::Allowed {
                reason: "approval mode yolo".into(),
            },
            ApprovalMode::Write => {
                if kind == Kind::Write {
                    Evaluation::Allowed {
                        reason: "approval mode write".into(),
                    }
                } else if let Some(rule) = self.allow.iter().find(|r| r.matches(verb)) {
                    Evaluation::Allowed {
                        reason: format!("allow rule {rule}"),
                    }
                } else if self.yes {
                    Evaluation::Allowed {
                        reason: "--yes".into(),
                    }
                } else {
                    Evaluation::Ask
                }
            }
        }
    }

    /// Decides `req` (asking on the terminal if needed) and logs the
    /// decision; an error is the refusal to print.
    pub fn enforce(&self, g: &Global, req: &Request) -> Result<(), Failure> {
        let eval = self.evaluate(req);
        if matches!(eval, Evaluation::Allowed { .. }) && kind_of(req.verb) == Kind::Read {
            return Ok(());
        }
        let mesh = if req.mesh_scoped {
            mesh_name(g, &self.home)
        } else {
            None
        };
        let what = describe(req, mesh.as_deref());
        self.settle(req, eval, mesh.as_deref(), &what)
    }

    /// Carries out an evaluation: asks if it must, logs, and returns the
    /// refusal as an error. `what` says what the command would do
    /// ("ban carol from team").
    pub fn settle(
        &self,
        req: &Request,
        eval: Evaluation,
        mesh: Option<&str>,
        what: &str,
    ) -> Result<(), Failure> {
        let log = |decision: &str, reason: &str| {
            audit::append(
                &self.home,
                &audit::Record {
                    decision,
                    verb: req.verb,
                    target: req.target.as_deref(),
                    mesh,
                    mode: self.mode.as_str(),
                    reason,
                },
            )
        };
        // A refusal stands even if the log cannot be written; an approval
        // does not.
        let refuse = |reason: &str, failure: Failure| {
            if let Err(e) = log("denied", reason) {
                eprintln!("warning: {e}");
            }
            Err(failure)
        };
        let path = self.path.display();
        match eval {
            Evaluation::Allowed { reason } => log("allowed", &reason).map_err(Failure::from),
            Evaluation::Denied {
                reason,
                message,
                hint,
            } => refuse(&reason, Failure::new(exit::DENIED, message).hint(hint)),
            Evaluation::Planned => refuse(
                "approval mode plan",
                Failure::new(
                    exit::DENIED,
                    format!("plan mode: would {what}; nothing was done"),
                )
                .hint(format!(
                    "to do it, run it with --approval-mode write (or set approval_mode: write in {path})"
                )),
            ),
            Evaluation::Ask => {
                if !can_ask() {
                    return refuse(
                        "no terminal to ask",
                        Failure::new(
                            exit::DENIED,
                            format!(
                                "{} is destructive and there is no terminal to confirm it: refused (it would {what})",
                                req.verb
                            ),
                        )
                        .hint(format!(
                            "pass -y/--yes, add `allow: [{}]` to {path}, or use --approval-mode yolo",
                            req.verb
                        )),
                    );
                }
                if ask(&format!("{}? [y/N] ", capitalized(what))) {
                    log("prompted-yes", "answered yes").map_err(Failure::from)
                } else {
                    if let Err(e) = log("prompted-no", "answered no") {
                        eprintln!("warning: {e}");
                    }
                    Err(
                        Failure::new(exit::DENIED, "not confirmed: nothing was done")
                            .hint("answer y to go ahead, or pass -y/--yes"),
                    )
                }
            }
        }
    }
}

/// Writes the default policy unless a file appeared meanwhile; returns
/// the text in force.
fn create_default(path: &Path) -> Result<String, PolicyError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let io = |what, e| PolicyError::Io {
        what,
        path: path.to_owned(),
        source: e,
    };
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(DEFAULT_POLICY.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| io("create", e))?;
            Ok(DEFAULT_POLICY.to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).map_err(|e| io("read", e))
        }
        Err(e) => Err(io("create", e)),
    }
}

/// The name of the mesh a command would act on, if there is one.
fn mesh_name(g: &Global, home: &Path) -> Option<String> {
    let home = Home::open(home).ok()?;
    home.select_mesh(g.mesh.as_deref())
        .ok()
        .map(|m| m.name.clone())
}

/// What a command would do, in words ("ban carol from team").
pub fn describe(req: &Request, mesh: Option<&str>) -> String {
    let t = req.target.as_deref().unwrap_or("");
    let m = mesh.unwrap_or("the mesh");
    match req.verb {
        "peer.kick" => format!("kick {t} from {m}"),
        "peer.ban" => format!("ban {t} from {m}"),
        "peer.unban" => format!("unban {t} in {m}"),
        "mesh.leave" => {
            format!("leave {m} and remove its keys and messages from this device")
        }
        "mesh.revoke-invite" => format!("revoke invite {t} of {m}"),
        "mesh.rekey" => format!("write a new mesh key for {m}"),
        "message.send" => format!("send a message to {t} in {m}"),
        "topic.post" => format!("post to #{} in {m}", t.trim_start_matches('#')),
        verb => {
            let words = verb.replace('.', " ");
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

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Whether there is someone to ask: stdin and stderr are a terminal.
fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks a yes/no question on stderr; yes only for `y` or `yes`.
fn ask(question: &str) -> bool {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PolicyFile, PolicyError> {
        parse_text(text, Path::new("policy.yaml"))
    }

    #[test]
    fn the_default_file_parses_to_the_defaults() {
        let p = parse(DEFAULT_POLICY).unwrap();
        assert_eq!(p.approval_mode, Some(ApprovalMode::Write));
        assert_eq!(p.allow, Some(vec![]));
        assert!(
            parse("# only a comment\n\n")
                .unwrap()
                .approval_mode
                .is_none()
        );
        assert!(parse("").unwrap().deny.is_none());
        let p = parse("allow:\ndeny: [peer.*, restore]\napproval_mode: read-only\n").unwrap();
        assert_eq!(p.allow, None);
        assert_eq!(p.approval_mode, Some(ApprovalMode::ReadOnly));
        assert_eq!(p.deny.unwrap().len(), 2);
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = parse("approval_mode: write\nallow: [peer.ban\n").unwrap_err();
        assert!(matches!(e, PolicyError::Syntax { line: 3, .. }), "{e}");
        let e = parse("approval_mode: write\ndeny:\n  - peer.bann\n").unwrap_err();
        let PolicyError::Syntax {
            line,
            column,
            message,
            ..
        } = &e
        else {
            panic!("{e}")
        };
        assert_eq!((*line, *column), (3, 3), "{e}");
        assert!(message.contains("peer.bann"), "{e}");
        let e = parse("approval_mode: sometimes\n").unwrap_err();
        assert!(matches!(e, PolicyError::Syntax { line: 1, .. }), "{e}");
        let e = parse("aproval_mode: write\n").unwrap_err();
        assert!(matches!(e, PolicyError::Syntax { line: 1, .. }), "{e}");
        assert!(
            e.to_string().starts_with("policy.yaml, line 1 column 1: "),
            "{e}"
        );
    }

    #[test]
    fn rules_match_verbs_groups_and_everything() {
        let r = |s: &str| Rule::parse(s).unwrap();
        assert!(r("peer.ban").matches("peer.ban"));
        assert!(!r("peer.ban").matches("peer.kick"));
        assert!(r("peer.*").matches("peer.kick"));
        assert!(!r("peer.*").matches("mesh.leave"));
        assert!(r("*").matches("restore"));
        assert!(Rule::parse("peer").is_err());
        assert!(Rule::parse("nothing.*").is_err());
        assert!(Rule::parse("restore.*").is_err());
        for (v, _) in VERBS {
            assert!(Rule::parse(v).is_ok(), "{v}");
        }
    }

    fn policy(mode: ApprovalMode, allow: &[&str], deny: &[&str], yes: bool) -> Policy {
        Policy {
            path: "policy.yaml".into(),
            home: "home".into(),
            mode,
            allow: allow.iter().map(|a| Rule::parse(a).unwrap()).collect(),
            deny: deny.iter().map(|a| Rule::parse(a).unwrap()).collect(),
            yes,
        }
    }

    #[test]
    fn decisions_follow_mode_rules_and_yes() {
        use ApprovalMode::*;
        let req = |verb| Request::new(verb, Some("carol"), true);
        let allowed = |e: Evaluation| matches!(e, Evaluation::Allowed { .. });
        let denied = |e: Evaluation| matches!(e, Evaluation::Denied { .. });
        // Reads run in every mode.
        for mode in [Plan, ReadOnly, Write, Yolo] {
            assert!(allowed(
                policy(mode, &[], &[], false).evaluate(&req("peer.list"))
            ));
        }
        // Writes.
        assert!(allowed(
            policy(Write, &[], &[], false).evaluate(&req("message.send"))
        ));
        assert!(denied(
            policy(ReadOnly, &["*"], &[], true).evaluate(&req("message.send"))
        ));
        assert!(matches!(
            policy(Plan, &[], &[], true).evaluate(&req("message.send")),
            Evaluation::Planned
        ));
        // Destructive verbs.
        assert!(matches!(
            policy(Write, &[], &[], false).evaluate(&req("peer.ban")),
            Evaluation::Ask
        ));
        assert!(allowed(
            policy(Write, &[], &[], true).evaluate(&req("peer.ban"))
        ));
        assert!(allowed(
            policy(Write, &["peer.*"], &[], false).evaluate(&req("peer.ban"))
        ));
        assert!(allowed(
            policy(Yolo, &[], &[], false).evaluate(&req("restore"))
        ));
        // Deny wins over everything, reads included.
        assert!(denied(
            policy(Yolo, &["*"], &["peer.ban"], true).evaluate(&req("peer.ban"))
        ));
        assert!(denied(
            policy(Write, &[], &["peer.*"], false).evaluate(&req("peer.list"))
        ));
    }

    #[test]
    fn descriptions_read_as_questions() {
        let req = Request::new("peer.ban", Some("carol"), true);
        assert_eq!(
            capitalized(&describe(&req, Some("team"))),
            "Ban carol from team"
        );
        let req = Request::new("topic.leave", Some("deploys"), true);
        assert_eq!(
            describe(&req, Some("team")),
            "run `claudemesh topic leave deploys` in team"
        );
    }
}

//! The policy file, `policy.yaml` in the home (or `--policy`): its
//! commented defaults, written the first time a command consults the
//! policy, and reading it with the place of the first problem.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::approval_mode::ApprovalMode;
use crate::exit::{self, Failure};
use crate::policy::rule::Rule;

/// The policy file's name in the home.
pub const FILE: &str = "policy.yaml";

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
#   mesh.revoke-invite, restore, memory.forget.
# Other writes: mesh.create, mesh.share, mesh.rekey, mesh.join, mesh.use, message.send,
#   topic.create, topic.join, topic.leave, topic.add, topic.post,
#   group.join, group.leave, profile.status, profile.summary, backup,
#   grant, revoke, block, unblock, install, uninstall, memory.remember.
# Reads (never asked; refused only by a deny rule): mesh.list, peer.list,
#   peer.bans, message.inbox, message.status, topic.list, topic.members,
#   topic.history, topic.read, group.list, memory.recall, memory.list, status,
#   audit.verify, audit.list, grants, launch, mcp (each tool call of
#   `claudemesh mcp` is checked as its verb).
allow: []
deny: []
";

/// `policy.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub approval_mode: Option<ApprovalMode>,
    #[serde(default)]
    pub allow: Option<Vec<Rule>>,
    #[serde(default)]
    pub deny: Option<Vec<Rule>>,
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

/// Reads a policy file's text; a file of comments alone is the defaults.
pub fn parse_text(text: &str, path: &Path) -> Result<PolicyFile, PolicyError> {
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

/// Writes the default policy unless a file appeared meanwhile; returns
/// the text in force.
pub fn create_default(path: &Path) -> Result<String, PolicyError> {
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
}

//! The decision: the policy in force for this run ([`Policy`]) evaluates a
//! request, asks on the terminal when it must, logs the decision in the
//! audit log, and turns a refusal into exit 7 with one line saying how to
//! allow it.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use claudemesh_client::home::{Home, ensure_private_dir, resolve_home};

use crate::approval_mode::ApprovalMode;
use crate::exit::{self, Failure};
use crate::global::Global;
use crate::policy::audit_log;
use crate::policy::file::{FILE, PolicyError, create_default, parse_text};
use crate::policy::request::{Request, capitalized, describe};
use crate::policy::rule::Rule;
use crate::policy::verb::Kind;

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
        let kind = verb.kind();
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
        if matches!(eval, Evaluation::Allowed { .. }) && req.verb.kind() == Kind::Read {
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
            audit_log::append(
                &self.home,
                &audit_log::Record {
                    decision,
                    verb: req.verb.as_str(),
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

/// The name of the mesh a command would act on, if there is one.
fn mesh_name(g: &Global, home: &Path) -> Option<String> {
    let home = Home::open(home).ok()?;
    home.select_mesh(g.mesh.as_deref())
        .ok()
        .map(|m| m.name.clone())
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
        let req = |verb: &str| Request::new(verb.parse().unwrap(), Some("carol"), true);
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
}

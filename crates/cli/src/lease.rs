//! `claudemesh lease …` (`take`, `list`, `renew`, `release`, `check`): file
//! leases, so sessions (people and Claude Code) do not edit the same files
//! at once. What a lease is, how it is sealed and arbitrated over keyed
//! path tags is the client's ([`claudemesh_client::leases`]); this file
//! turns the paths typed (relative to the current directory) into the
//! repository and normalized paths leases name
//! ([`claudemesh_client::lease_path`]), and shows leases for people and
//! (`--json`) for scripts, the MCP tools (`lease_*`) and the pre-edit hook.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use claudemesh_client::lease_path::normalize;
use claudemesh_client::leases::{Lease, LeaseRequest, describe};

use crate::exit::{self, Failure, Outcome};
use crate::global::Global;
use crate::mesh::connect;
use crate::output;
use crate::policy::{Request, Verb};
use crate::schedule::{local_time, parse_in};
use crate::workdir;

/// A lease's length unless told.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Subcommand)]
pub enum LeaseCmd {
    /// Lease files or directories so other sessions leave them alone while you edit
    Take(TakeArgs),
    /// The mesh's live leases
    #[command(visible_alias = "ls")]
    List {
        /// Only this session's
        #[arg(long)]
        mine: bool,
    },
    /// Extend leases (by default every lease of this session)
    Renew {
        /// Lease ids (at least their first 4 hex digits)
        ids: Vec<String>,
        /// The new length, from now (1m to 24h)
        #[arg(long, default_value = "30m", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Release leases (by default every lease of this session)
    Release {
        /// Lease ids (at least their first 4 hex digits)
        ids: Vec<String>,
    },
    /// Whether another session holds a lease on these paths (exit 12 if one is exclusive)
    Check {
        /// Files or directories
        #[arg(required = true)]
        paths: Vec<String>,
        /// The repository id, when not the current directory's
        #[arg(long)]
        repo: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct TakeArgs {
    /// Files or directories, relative to the current directory (no globs: lease the directory)
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Shared: conflicts only with exclusive leases (default: exclusive)
    #[arg(long)]
    pub shared: bool,
    /// How long (1m to 24h; default 30m); renew with `lease renew`
    #[arg(long, default_value = "30m", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Why, for whoever it stands in the way of
    #[arg(long)]
    pub reason: Option<String>,
    /// The repository id, when not the current directory's (its normalized origin URL)
    #[arg(long)]
    pub repo: Option<String>,
}

/// `--ttl`: a duration from 1 minute to 24 hours.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let d = parse_in(text)?;
    if d < Duration::from_secs(60) || d > Duration::from_secs(24 * 3600) {
        return Err(format!("{text:?}: a lease lasts 1m to 24h"));
    }
    Ok(d)
}

/// Where paths are leased from: the repository id and the top they are
/// relative to. Inside a git checkout, its top and origin (else
/// `dir:<top name>`); outside one, the file system root of this host
/// (`host:<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The repository id.
    pub repo: String,
    /// The directory paths are relative to.
    pub top: PathBuf,
}

impl Place {
    /// The place of `dir`, `repo` overriding the id.
    pub fn of(dir: &Path, repo: Option<&str>) -> Place {
        let (id, top) = match workdir::checkout(dir) {
            Some(c) => (c.lease_repo(), c.top),
            None => (
                format!(
                    "host:{}",
                    workdir::host_name().unwrap_or_else(|| "localhost".into())
                ),
                PathBuf::from("/"),
            ),
        };
        Place {
            repo: repo.map(str::to_owned).unwrap_or(id),
            top,
        }
    }

    /// `input` typed by a person or a model: refused when it is a pattern,
    /// else [`Place::path`].
    pub fn typed_path(&self, cwd: &Path, input: &str) -> Result<String, Failure> {
        claudemesh_client::lease_path::refuse_glob(input)
            .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
        self.path(cwd, input)
    }

    /// `input` (absolute, or relative to `cwd`) as a lease path of this
    /// place; a directory when it is one on disk or ends in `/`.
    pub fn path(&self, cwd: &Path, input: &str) -> Result<String, Failure> {
        let abs = if Path::new(input).is_absolute() {
            PathBuf::from(input)
        } else {
            cwd.join(input)
        };
        let usage = |why: String| Failure::new(exit::USAGE, why);
        let rel = abs.strip_prefix(&self.top).map_err(|_| {
            usage(format!(
                "{input:?} is outside the repository at {} (give --repo, or lease from inside it)",
                self.top.display()
            ))
        })?;
        let rel = rel
            .to_str()
            .ok_or_else(|| usage(format!("{input:?} is not UTF-8")))?;
        let is_dir = abs.is_dir() || input.ends_with('/');
        normalize(rel, is_dir).map_err(|e| usage(e.to_string()))
    }
}

/// The current directory.
fn cwd() -> Result<PathBuf, Failure> {
    std::env::current_dir()
        .map_err(|e| Failure::new(exit::IO, format!("cannot read the current directory: {e}")))
}

/// The place and lease paths of `inputs` typed in the current directory.
pub fn resolve(inputs: &[String], repo: Option<&str>) -> Result<(String, Vec<String>), Failure> {
    let cwd = cwd()?;
    let place = Place::of(&cwd, repo);
    let mut paths = Vec::with_capacity(inputs.len());
    for i in inputs {
        let p = place.typed_path(&cwd, i)?;
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    Ok((place.repo, paths))
}

impl LeaseCmd {
    /// What it asks the policy: the paths are targets.
    pub fn request(&self) -> Option<Request> {
        let t = |v: &[String]| {
            output::printable(&v.join(" "))
                .chars()
                .take(120)
                .collect::<String>()
        };
        Some(match self {
            LeaseCmd::Take(a) => Request::new(Verb::LeaseTake, Some(&t(&a.paths)), true),
            LeaseCmd::List { .. } => Request::new(Verb::LeaseList, None, true),
            LeaseCmd::Renew { ids, .. } => Request::new(Verb::LeaseRenew, Some(&t(ids)), true),
            LeaseCmd::Release { ids } => Request::new(Verb::LeaseRelease, Some(&t(ids)), true),
            LeaseCmd::Check { paths, .. } => Request::new(Verb::LeaseCheck, Some(&t(paths)), true),
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            LeaseCmd::Take(a) => take(g, a).await,
            LeaseCmd::List { mine } => list(g, mine).await,
            LeaseCmd::Renew { ids, ttl } => {
                let (_home, _mesh, client) = connect(g).await?;
                let done = client.lease_renew(&ids, ttl).await;
                client.close().await;
                let leases = done?;
                if g.json {
                    output::json(&leases);
                } else if !g.quiet {
                    if leases.is_empty() {
                        println!("No lease renewed (this session holds none live).");
                    }
                    for l in &leases {
                        println!("renewed {}", line(l));
                    }
                }
                Ok(())
            }
            LeaseCmd::Release { ids } => {
                let (_home, _mesh, client) = connect(g).await?;
                let done = client.lease_release(&ids).await;
                client.close().await;
                let released = done?;
                if g.json {
                    let ids: Vec<String> = released.iter().map(|i| i.to_hex()).collect();
                    output::json(&serde_json::json!({ "released": ids }));
                } else if !g.quiet {
                    println!(
                        "released {} lease{}",
                        released.len(),
                        if released.len() == 1 { "" } else { "s" }
                    );
                }
                Ok(())
            }
            LeaseCmd::Check { paths, repo } => check(g, &paths, repo.as_deref()).await,
        }
    }
}

async fn take(g: &Global, a: TakeArgs) -> Outcome {
    let (repo, paths) = resolve(&a.paths, a.repo.as_deref())?;
    let (_home, _mesh, client) = connect(g).await?;
    let done = client
        .lease_take(&LeaseRequest {
            repo,
            paths,
            exclusive: !a.shared,
            ttl: a.ttl,
            reason: a.reason,
        })
        .await;
    client.close().await;
    let lease = done?;
    if g.json {
        output::json(&lease);
    } else if !g.quiet {
        println!("leased {}", line(&lease));
    }
    Ok(())
}

/// One lease on one line: `3fa2c1d0  src/net/  exclusive, bob, until
/// 2026-12-03 14:32  (refactoring net)`.
pub fn line(l: &Lease) -> String {
    let reason = l
        .reason
        .as_deref()
        .map(|r| format!("  ({})", output::printable(r)))
        .unwrap_or_default();
    format!(
        "{}  {}  {}, {}{}, until {}  [{}]{reason}",
        output::short(&l.id.to_hex()),
        output::printable(&l.paths.join(" ")),
        if l.exclusive { "exclusive" } else { "shared" },
        output::printable(&l.holder_name),
        if l.mine { " (this session)" } else { "" },
        local_time(l.expires_at_ms),
        output::printable(&l.repo)
    )
}

async fn list(g: &Global, mine: bool) -> Outcome {
    let (_home, _mesh, client) = connect(g).await?;
    let done = client.lease_list().await;
    client.close().await;
    let leases: Vec<Lease> = done?.into_iter().filter(|l| !mine || l.mine).collect();
    if g.json {
        output::json(&leases);
    } else if leases.is_empty() {
        if !g.quiet {
            println!("No live leases (take one with `claudemesh lease take <path>`).");
        }
    } else {
        for l in &leases {
            println!("{}", line(l));
        }
    }
    Ok(())
}

async fn check(g: &Global, inputs: &[String], repo: Option<&str>) -> Outcome {
    let (repo, paths) = resolve(inputs, repo)?;
    let (_home, _mesh, client) = connect(g).await?;
    let done = client.lease_conflicts(&repo, &paths, &[]).await;
    client.close().await;
    let hits = done?;
    if g.json {
        let out: Vec<serde_json::Value> = hits
            .iter()
            .map(|(p, l)| serde_json::json!({ "path": p, "lease": l }))
            .collect();
        output::json(&out);
    } else if hits.is_empty() {
        if !g.quiet {
            println!(
                "No other session holds a lease on {}.",
                output::printable(&paths.join(" "))
            );
        }
    } else {
        for (p, l) in &hits {
            println!(
                "{}: {}",
                output::printable(p),
                output::printable(&describe(l))
            );
        }
    }
    if hits.iter().any(|(_, l)| l.exclusive) {
        return Err(Failure::new(
            exit::CONFLICT,
            "another session holds an exclusive lease on a path given",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_taken_relative_to_the_checkout_top() {
        let top = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(top.path().join(".git")).unwrap();
        std::fs::write(top.path().join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::create_dir_all(top.path().join("src/net")).unwrap();
        let top_name = top.path().file_name().unwrap().to_str().unwrap().to_owned();
        let cwd = top.path().join("src");
        let place = Place::of(&cwd, None);
        assert_eq!(
            place.repo,
            claudemesh_client::lease_path::repo_of_dir(&top_name)
        );
        assert_eq!(place.path(&cwd, "net").unwrap(), "src/net/");
        assert_eq!(place.path(&cwd, "net/a.rs").unwrap(), "src/net/a.rs");
        assert_eq!(place.path(&cwd, "../README.md").unwrap(), "README.md");
        assert_eq!(place.path(&cwd, "..").unwrap(), "/");
        let abs = top.path().join("src/net/b.rs");
        assert_eq!(
            place.path(&cwd, abs.to_str().unwrap()).unwrap(),
            "src/net/b.rs"
        );
        assert_eq!(place.path(&cwd, "../../x").unwrap_err().code, exit::USAGE);
        assert_eq!(
            place.typed_path(&cwd, "src/**").unwrap_err().code,
            exit::USAGE
        );
        assert_eq!(
            Place::of(&cwd, Some("github.com/a/b")).repo,
            "github.com/a/b"
        );
        assert!(parse_ttl("30m").is_ok());
        assert!(parse_ttl("10s").is_err());
        assert!(parse_ttl("2d").is_err());
    }
}

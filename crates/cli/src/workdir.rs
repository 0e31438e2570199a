//! Where a session runs, as it tells its peers (encrypted, in its presence):
//! the host name, and for a directory inside a git repository the branch
//! checked out and the repository (its `origin` remote, else the name of
//! its top directory). Read from files only — no `git` process — because
//! `claudemesh mcp` starts with every Claude Code session.

use std::path::{Path, PathBuf};

/// This machine's name: `$HOSTNAME`, else the kernel's, else `hostname`.
pub fn host_name() -> Option<String> {
    let clean = |s: String| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    if let Some(h) = std::env::var("HOSTNAME").ok().and_then(clean) {
        return Some(h);
    }
    if let Some(h) = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(clean)
    {
        return Some(h);
    }
    std::process::Command::new("hostname")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| clean(String::from_utf8_lossy(&o.stdout).into_owned()))
}

/// A git checkout that contains a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The top directory of the working tree.
    pub top: PathBuf,
    /// The branch checked out (`None` on a detached head).
    pub branch: Option<String>,
    /// The `origin` remote's URL (credentials removed), else the top
    /// directory's name.
    pub repo: String,
    /// Whether `repo` is the `origin` remote's URL (not the top's name).
    pub has_origin: bool,
}

impl Checkout {
    /// The repository as file leases name it
    /// ([`claudemesh_client::lease_path`]): the normalized origin, else
    /// `dir:<top name>`.
    pub fn lease_repo(&self) -> String {
        if self.has_origin {
            claudemesh_client::lease_path::repo_of_origin(&self.repo)
        } else {
            claudemesh_client::lease_path::repo_of_dir(&self.repo)
        }
    }
}

/// The checkout `dir` is in, if any.
pub fn checkout(dir: &Path) -> Option<Checkout> {
    let (top, git_dir) = find_git_dir(dir)?;
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let branch = head
        .trim()
        .strip_prefix("ref: refs/heads/")
        .map(str::to_owned);
    // A linked worktree's config lives in the main repository's git dir.
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.clone());
    let origin = std::fs::read_to_string(common.join("config"))
        .ok()
        .and_then(|c| origin_url(&c));
    let has_origin = origin.is_some();
    let repo = origin.unwrap_or_else(|| {
        top.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    Some(Checkout {
        top,
        branch,
        repo,
        has_origin,
    })
}

/// The working tree's top and its git directory: `.git` as a directory, or
/// as a file saying `gitdir: <path>` (worktrees, submodules).
fn find_git_dir(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    for d in dir.ancestors() {
        let dot = d.join(".git");
        if dot.is_dir() {
            return Some((d.to_path_buf(), dot));
        }
        if dot.is_file() {
            let text = std::fs::read_to_string(&dot).ok()?;
            let target = text.trim().strip_prefix("gitdir:")?.trim();
            let target = Path::new(target);
            let git_dir = if target.is_absolute() {
                target.to_path_buf()
            } else {
                d.join(target)
            };
            return Some((d.to_path_buf(), git_dir));
        }
    }
    None
}

/// `[remote "origin"] url = …` from a git config, without any user:password.
fn origin_url(config: &str) -> Option<String> {
    let mut in_origin = false;
    for line in config.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_origin = line.replace(char::is_whitespace, "") == "[remote\"origin\"]";
            continue;
        }
        if in_origin
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "url"
        {
            return Some(strip_credentials(value.trim()));
        }
    }
    None
}

/// `https://user:token@host/x` → `https://host/x`: a token in a remote URL
/// must not travel to peers.
fn strip_credentials(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.split_once('@')
        && !auth.contains('/')
    {
        return format!("{scheme}://{host}");
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn finds_branch_and_origin_and_strips_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().join(".git");
        std::fs::create_dir_all(&git).unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/feature/x\n").unwrap();
        std::fs::write(
            git.join("config"),
            "[core]\n\tbare = false\n[remote \"upstream\"]\n\turl = git@a:b.git\n[remote \"origin\"]\n\turl = https://bob:s3cret@example.com/team/api.git\n",
        )
        .unwrap();
        let sub = dir.path().join("src/deep");
        std::fs::create_dir_all(&sub).unwrap();
        let c = checkout(&sub).unwrap();
        assert_eq!(c.top, dir.path());
        assert_eq!(c.branch.as_deref(), Some("feature/x"));
        assert_eq!(c.repo, "https://example.com/team/api.git");
    }

    #[test]
    fn a_worktree_file_and_no_remote_fall_back_to_the_directory_name() {
        let dir = tempfile::tempdir().unwrap();
        let main_git = dir.path().join("main/.git");
        let wt_git = main_git.join("worktrees/wt");
        std::fs::create_dir_all(&wt_git).unwrap();
        std::fs::write(wt_git.join("HEAD"), "0123abcd\n").unwrap();
        std::fs::write(wt_git.join("commondir"), "../..\n").unwrap();
        std::fs::write(main_git.join("config"), "[core]\n").unwrap();
        let wt = dir.path().join("wt");
        std::fs::create_dir_all(&wt).unwrap();
        std::fs::write(wt.join(".git"), format!("gitdir: {}\n", wt_git.display())).unwrap();
        let c = checkout(&wt).unwrap();
        assert_eq!(c.branch, None);
        assert_eq!(c.repo, "wt");
        assert!(checkout(Path::new("/")).is_none() || Path::new("/.git").exists());
    }
}

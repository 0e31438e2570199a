//! How a file lease names what it holds (`docs/security.md` §16.3), the
//! same on every device so that two peers' tags for one file meet: a
//! repository id and paths relative to the repository's top.
//!
//! - **Repository:** the `origin` URL normalized (scheme and `user@`
//!   dropped, the host lowercased, scp-style `host:org/r` read as
//!   `host/org/r`, a trailing `.git` and `/` dropped), so
//!   `git@github.com:Org/r.git` and `https://github.com/Org/r` are one
//!   repository; without an origin, `dir:<top directory name>`.
//! - **Paths:** `\` read as `/`, Unicode NFC, empty and `.` components
//!   dropped, `..` resolved lexically (escaping the top is refused); a
//!   directory ends in `/`, the top itself is `/`. Globs are refused (a glob
//!   is no prefix: lease the directory). A path deeper than
//!   [`MAX_LEASE_DEPTH`] components is leased as its ancestor that deep,
//!   which only conflicts more.
//!
//! Two normalized paths overlap when they are equal or one is a directory
//! above the other ([`overlaps`]); the keyed tags the broker compares
//! ([`claudemesh_crypto::coord::lease_tags`]) meet exactly then.

use claudemesh_crypto::coord::MAX_LEASE_DEPTH;
use unicode_normalization::UnicodeNormalization as _;

/// Why a path cannot be leased.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeasePathError {
    /// It has glob characters.
    #[error("{0:?} is a pattern, not a path: lease the directory instead (src/** → src/)")]
    Glob(String),
    /// It leaves the repository (`..` above its top).
    #[error("{0:?} is outside the repository")]
    Outside(String),
    /// It has control characters.
    #[error("{0:?} has control characters")]
    Control(String),
}

/// The repository id of an `origin` URL (see the module's rules).
pub fn repo_of_origin(origin: &str) -> String {
    let mut s = origin.trim();
    let had_scheme = match s.find("://") {
        Some(i) => {
            s = &s[i + 3..];
            true
        }
        None => false,
    };
    // `user@` (and `user:password@`) before the host.
    if let Some(at) = s.find('@')
        && s[..at].find('/').is_none()
    {
        s = &s[at + 1..];
    }
    let (host, rest) = match s.find(['/', ':']) {
        // scp-style `host:org/r` (no scheme) is `host/org/r`; with a
        // scheme, `host:port/…` keeps its port.
        Some(i) if s.as_bytes()[i] == b':' && !had_scheme => (&s[..i], &s[i + 1..]),
        Some(i) if s.as_bytes()[i] == b':' => match s[i..].find('/') {
            Some(j) => (&s[..i + j], &s[i + j + 1..]),
            None => (s, ""),
        },
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let mut path = rest.trim_end_matches('/');
    path = path.strip_suffix(".git").unwrap_or(path);
    let path = path.trim_end_matches('/');
    // Hosts and (on the forges people use) owners and names compare
    // without case; lowercasing can only make two ids meet, never part.
    let host = host.to_lowercase();
    if path.is_empty() {
        host
    } else {
        format!("{host}/{}", path.to_lowercase())
    }
}

/// The repository id of a checkout without an origin.
pub fn repo_of_dir(top_name: &str) -> String {
    format!("dir:{top_name}")
}

/// `rel` (relative to the repository's top) as a lease path; `is_dir`
/// says a directory (a trailing `/` says so too).
pub fn normalize(rel: &str, is_dir: bool) -> Result<String, LeasePathError> {
    if rel.chars().any(|c| c.is_control()) {
        return Err(LeasePathError::Control(rel.to_owned()));
    }
    let text: String = rel.replace('\\', "/").nfc().collect();
    let is_dir = is_dir || text.ends_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(LeasePathError::Outside(rel.to_owned()));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Ok("/".to_owned());
    }
    let coarsened = parts.len() > MAX_LEASE_DEPTH;
    parts.truncate(MAX_LEASE_DEPTH);
    let mut out = parts.join("/");
    if is_dir || coarsened {
        out.push('/');
    }
    Ok(out)
}

/// Refuses a path typed by a person or a model that is a pattern (`*`,
/// `?`): a glob is no prefix, so no tag can match it. Paths a tool reports
/// (the pre-edit hook's) are taken as they are: brackets and braces are
/// ordinary in file names (`app/[id]/page.tsx`).
pub fn refuse_glob(typed: &str) -> Result<(), LeasePathError> {
    if typed.contains(['*', '?']) {
        return Err(LeasePathError::Glob(typed.to_owned()));
    }
    Ok(())
}

/// Whether two normalized lease paths overlap: the same, or one a
/// directory above the other.
pub fn overlaps(a: &str, b: &str) -> bool {
    let above = |dir: &str, p: &str| dir.ends_with('/') && (dir == "/" || p.starts_with(dir));
    a == b || above(a, b) || above(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_one_repository_agree() {
        for origin in [
            "git@github.com:Org/r.git",
            "https://github.com/Org/r",
            "https://user:token@GitHub.com/Org/r.git/",
            "ssh://git@github.com/Org/r.git",
            "github.com:Org/r",
        ] {
            assert_eq!(repo_of_origin(origin), "github.com/org/r", "{origin}");
        }
        assert_eq!(
            repo_of_origin("ssh://git@host.example:2222/team/api.git"),
            "host.example:2222/team/api"
        );
        assert_ne!(
            repo_of_origin("git@github.com:Org/r.git"),
            repo_of_origin("git@github.com:Org/s.git")
        );
        assert_eq!(repo_of_dir("api"), "dir:api");
    }

    #[test]
    fn paths_are_normalized_alike_everywhere() {
        assert_eq!(normalize("src/net/a.rs", false).unwrap(), "src/net/a.rs");
        assert_eq!(normalize("./src//net/", false).unwrap(), "src/net/");
        assert_eq!(normalize("src\\net", true).unwrap(), "src/net/");
        assert_eq!(
            normalize("src/ui/../net/a.rs", false).unwrap(),
            "src/net/a.rs"
        );
        assert_eq!(normalize("", true).unwrap(), "/");
        assert_eq!(normalize(".", false).unwrap(), "/");
        // Composed and decomposed é are one path.
        assert_eq!(
            normalize("caf\u{65}\u{301}.md", false).unwrap(),
            normalize("caf\u{e9}.md", false).unwrap()
        );
        assert!(matches!(
            normalize("../x", false),
            Err(LeasePathError::Outside(_))
        ));
        assert!(matches!(
            refuse_glob("src/**"),
            Err(LeasePathError::Glob(_))
        ));
        refuse_glob("app/[id]/page.tsx").unwrap();
        assert_eq!(
            normalize("app/[id]/page.tsx", false).unwrap(),
            "app/[id]/page.tsx"
        );
        assert!(matches!(
            normalize("a\u{7}b", false),
            Err(LeasePathError::Control(_))
        ));
        let deep = (0..20)
            .map(|i| format!("d{i}"))
            .collect::<Vec<_>>()
            .join("/");
        let leased = normalize(&deep, false).unwrap();
        assert_eq!(leased.matches('/').count(), MAX_LEASE_DEPTH);
        assert!(leased.ends_with("d14/"), "{leased}");
    }

    #[test]
    fn overlap_is_equality_or_a_directory_above() {
        assert!(overlaps("src/net/", "src/net/a.rs"));
        assert!(overlaps("src/net/a.rs", "src/net/"));
        assert!(overlaps("/", "docs/a.md"));
        assert!(overlaps("a.rs", "a.rs"));
        assert!(!overlaps("src/net/", "src/networking/a.rs"));
        assert!(!overlaps("src/net", "src/net/a.rs"));
        assert!(!overlaps("src/a.rs", "src/b.rs"));
    }
}

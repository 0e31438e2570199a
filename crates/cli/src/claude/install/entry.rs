//! One entry install wants in Claude Code's JSON files ([`Want`]), and how
//! our commands are spelled there ([`Spelling`]: this binary's absolute
//! path, and `--home` when the home is not the default one), quoted for
//! the shell Claude Code runs hooks and the status line with.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::claude::install::files::absolute;
use crate::claude::install::manifest::Kind;
use crate::exit::{self, Failure};
use crate::global::Global;

/// One entry install wants, with the value it has today.
#[derive(Debug, Clone)]
pub struct Want {
    pub id: String,
    pub file: PathBuf,
    pub kind: Kind,
    pub path: Vec<String>,
    pub value: Value,
}

impl Want {
    /// The value of the object member at `path` in `file`.
    pub fn member(id: &str, file: &Path, path: &[&str], value: Value) -> Want {
        Want {
            id: id.to_owned(),
            file: file.to_owned(),
            kind: Kind::Member,
            path: path.iter().map(|s| (*s).to_owned()).collect(),
            value,
        }
    }

    /// An element of the array at `path` in `file`.
    pub fn element(id: &str, file: &Path, path: &[&str], value: Value) -> Want {
        Want {
            kind: Kind::Element,
            ..Want::member(id, file, path, value)
        }
    }
}

/// How our commands are spelled in Claude Code's files.
#[derive(Debug, Clone)]
pub struct Spelling {
    /// The running binary, absolute.
    pub binary: String,
    /// The claudemesh home, when it is not the default one.
    pub home: Option<String>,
}

impl Spelling {
    pub fn new(g: &Global) -> Result<Spelling, Failure> {
        let exe = std::env::current_exe().map_err(|e| {
            Failure::new(
                exit::IO,
                format!("cannot find the path of this claudemesh binary: {e}"),
            )
        })?;
        let binary = utf8(&absolute(&exe)?)?;
        let home = match &g.home {
            Some(h) => {
                let h = absolute(h)?;
                let default = std::env::var_os("HOME")
                    .filter(|d| !d.is_empty())
                    .map(|d| absolute(&PathBuf::from(d).join(".claudemesh")))
                    .transpose()?;
                (default.as_deref() != Some(h.as_path()))
                    .then(|| utf8(&h))
                    .transpose()?
            }
            None => None,
        };
        Ok(Spelling { binary, home })
    }

    /// The MCP server's arguments: `[--home DIR] mcp`.
    pub fn server_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(h) = &self.home {
            args.extend(["--home".to_owned(), h.clone()]);
        }
        args.push("mcp".to_owned());
        args
    }

    /// A shell command line running `claudemesh [--home DIR] <words>`.
    pub fn command(&self, words: &str) -> String {
        let mut s = sh_quote(&self.binary);
        if let Some(h) = &self.home {
            s.push_str(" --home ");
            s.push_str(&sh_quote(h));
        }
        s.push(' ');
        s.push_str(words);
        s
    }
}

pub fn utf8(p: &Path) -> Result<String, Failure> {
    p.to_str().map(str::to_owned).ok_or_else(|| {
        Failure::new(
            exit::USAGE,
            format!(
                "{} is not valid UTF-8: Claude Code's JSON files cannot name it",
                p.display()
            ),
        )
        .hint("move claudemesh (or the home) to a path that is UTF-8")
    })
}

/// Quotes a word for a POSIX shell (Claude Code runs hooks and the status
/// line with one), leaving plain paths as they are.
pub fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_leaves_plain_paths_and_quotes_the_rest() {
        assert_eq!(sh_quote("/usr/bin/claudemesh"), "/usr/bin/claudemesh");
        assert_eq!(sh_quote("/a b/claudemesh"), "'/a b/claudemesh'");
        assert_eq!(sh_quote("/it's/x"), r"'/it'\''s/x'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("/x/$HOME"), "'/x/$HOME'");
    }
}

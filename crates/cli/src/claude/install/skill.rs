//! The skill file, `~/.claude/skills/claudemesh/SKILL.md`, which teaches
//! Claude Code the mesh's tools: install writes it (keeping one it replaces
//! with `--force`), uninstall takes it out while it is still as written (or
//! puts back the one it replaced).

use std::fs;
use std::path::Path;

use crate::claude::install::files::{
    Mode, io_failure, make_dirs, read_opt, replace_file, sha256_hex, write_backup,
};
use crate::claude::install::manifest::{Manifest, SkillRecord, save_manifest};
use crate::claude::install::report::{Change, FileReport};
use crate::exit::{self, Failure};

/// The skill file install writes.
pub const SKILL: &str = include_str!("../../../assets/SKILL.md");

/// What install does with the skill file.
#[derive(Debug)]
pub enum SkillPlan {
    Keep,
    Write {
        /// The file there now, replaced (`--force`), to keep.
        replaced: Option<Vec<u8>>,
    },
}

/// Plans the skill file: written if missing or still ours, kept if it
/// already is ours, and someone else's only replaced with `force` (the
/// inner error is that refusal, reported with the other conflicts).
pub fn plan_skill(
    path: &Path,
    old: Option<&SkillRecord>,
    force: bool,
    report: &mut FileReport,
) -> Result<Result<SkillPlan, Failure>, Failure> {
    let current = read_opt(path).map_err(|e| io_failure("read", path, &e))?;
    let ours = SKILL.as_bytes();
    Ok(Ok(match current {
        None => {
            report.action = "created";
            report.changes.push(Change {
                op: "add",
                path: String::new(),
                value: None,
            });
            SkillPlan::Write { replaced: None }
        }
        Some(b) if b == ours => {
            report.action = "unchanged";
            if old.is_none() {
                report
                    .notes
                    .push("the same skill file is already there; left as it is".into());
            }
            SkillPlan::Keep
        }
        Some(b) if old.is_some_and(|r| r.sha256 == sha256_hex(&b)) => {
            report.action = "modified";
            report.changes.push(Change {
                op: "replace",
                path: String::new(),
                value: None,
            });
            SkillPlan::Write { replaced: None }
        }
        Some(b) if force => {
            report.action = "modified";
            report.changes.push(Change {
                op: "replace",
                path: String::new(),
                value: None,
            });
            SkillPlan::Write { replaced: Some(b) }
        }
        Some(_) => {
            let edited = old.is_some();
            return Ok(Err(Failure::new(
                exit::EXISTS,
                format!(
                    "{} {}: nothing was changed",
                    path.display(),
                    if edited {
                        "was edited since claudemesh wrote it"
                    } else {
                        "exists and claudemesh did not write it"
                    }
                ),
            )
            .hint(
                "pass --force to replace it (it is kept beside it and `claudemesh uninstall` puts it back), or --no-skill",
            )));
        }
    }))
}

/// Writes the skill file at `path` (a file it replaces is kept beside it
/// first; `claude_dir` is Claude Code's directory), recording it in the
/// manifest, which is saved before the write.
pub fn write(
    path: &Path,
    claude_dir: &Path,
    replaced: Option<Vec<u8>>,
    manifest: &mut Manifest,
    home: &Path,
    stamp: &str,
    report: &mut FileReport,
) -> Result<(), Failure> {
    let dir = path.parent().unwrap_or(claude_dir);
    make_dirs(dir, &mut manifest.dirs)?;
    let mut record = SkillRecord {
        path: path.to_owned(),
        sha256: sha256_hex(SKILL.as_bytes()),
        replaced: manifest.skill.as_ref().and_then(|s| s.replaced.clone()),
    };
    if let Some(b) = replaced {
        let kept = write_backup(path, &b, None, stamp)?;
        report.backup = Some(kept.display().to_string());
        record.replaced = Some(kept);
    }
    manifest.skill = Some(record);
    save_manifest(home, manifest)?;
    replace_file(path, SKILL.as_bytes(), Mode::Public, None).map_err(|e| e.failure(path))
}

/// Taking the skill file out: what to put back (`None`: delete it).
#[derive(Debug)]
pub struct Removal {
    record: SkillRecord,
    back: Option<Vec<u8>>,
    /// What uninstall does with it.
    pub report: FileReport,
}

/// Plans taking out the skill file `s` install wrote: only while it is
/// still exactly as written (else a warning, and it stays).
pub fn plan_removal(
    s: &SkillRecord,
    warnings: &mut Vec<String>,
) -> Result<Option<Removal>, Failure> {
    let mut report = FileReport::new(&s.path, "unchanged");
    match read_opt(&s.path).map_err(|e| io_failure("read", &s.path, &e))? {
        Some(b) if sha256_hex(&b) == s.sha256 => {
            let back = match &s.replaced {
                Some(kept) => Some(fs::read(kept).map_err(|e| io_failure("read", kept, &e))?),
                None => None,
            };
            report.action = if back.is_some() {
                "restored"
            } else {
                "deleted"
            };
            report.changes.push(Change {
                op: if back.is_some() { "restore" } else { "remove" },
                path: String::new(),
                value: None,
            });
            Ok(Some(Removal {
                record: s.clone(),
                back,
                report,
            }))
        }
        Some(_) => {
            warnings.push(format!(
                "kept {}: it was changed since claudemesh wrote it",
                s.path.display()
            ));
            Ok(None)
        }
        None => Ok(None),
    }
}

impl Removal {
    /// Puts back the file install replaced, or deletes ours.
    pub fn apply(self) -> Result<FileReport, Failure> {
        let s = &self.record;
        match self.back {
            Some(bytes) => {
                replace_file(&s.path, &bytes, Mode::Public, None)
                    .map_err(|e| e.failure(&s.path))?;
                if let Some(kept) = &s.replaced {
                    let _ = fs::remove_file(kept);
                }
            }
            None => fs::remove_file(&s.path).map_err(|e| io_failure("remove", &s.path, &e))?,
        }
        Ok(self.report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claude::install::mcp_server::TOOLS;

    #[test]
    fn the_skill_has_front_matter_claude_code_reads() {
        let mut lines = SKILL.lines();
        assert_eq!(lines.next(), Some("---"));
        let front: Vec<&str> = lines.by_ref().take_while(|l| *l != "---").collect();
        let yaml: std::collections::BTreeMap<String, String> =
            serde_yaml::from_str(&front.join("\n")).unwrap();
        assert_eq!(yaml["name"], "claudemesh");
        let desc = &yaml["description"];
        assert!(!desc.is_empty() && desc.len() <= 1024, "{desc}");
        assert!(!desc.contains('<') && !desc.contains('>'), "{desc}");
        // Every tool the server has is taught.
        for t in TOOLS {
            assert!(SKILL.contains(&format!("`{t}`")), "{t}");
        }
    }
}

//! `claudemesh uninstall`: takes out of Claude Code's files exactly what
//! install added and is still as install wrote it (a member `--force`
//! replaced gets its previous value back); when what is left is the file
//! as it was before install, its original bytes are written back.

use std::fs;
use std::path::{Path, PathBuf};

use claudemesh_client::home::resolve_home;
use serde_json::{Map, Value};

use crate::claude::install::files::{
    ATTEMPTS, Mode, Retry, WriteError, absolute, io_failure, read_opt, replace_file, sha256_hex,
    stamp, write_backup,
};
use crate::claude::install::json::{
    Doc, array_mut, dotted, get, is_empty_container, parse_object, read_doc, remove_member, render,
    set_member,
};
use crate::claude::install::manifest::{
    FileRecord, Kind, Manifest, delete_manifest, load_manifest, manifest_path,
};
use crate::claude::install::report::{Change, FileReport, Report, print_files};
use crate::claude::install::skill;
use crate::exit::Failure;
use crate::exit::Outcome;
use crate::global::Global;
use crate::output;
use crate::policy::{Request, Verb};

/// `uninstall`.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Print what would change; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

impl UninstallArgs {
    /// What it asks the policy: a dry run changes nothing and touches no
    /// home, so it is not asked about.
    pub fn request(&self) -> Option<Request> {
        (!self.dry_run).then(|| Request::new(Verb::Uninstall, None, false))
    }
}

/// A planned undo of one JSON file.
#[derive(Debug)]
struct UndoPlan {
    doc: Doc,
    record: FileRecord,
    /// The bytes to write; `None` to delete the file.
    bytes: Option<Vec<u8>>,
    /// The backups holding exactly those bytes (redundant afterwards).
    redundant: Vec<PathBuf>,
    report: FileReport,
}

fn plan_undo(record: &FileRecord, warnings: &mut Vec<String>) -> Result<Option<UndoPlan>, Failure> {
    let path = &record.path;
    let doc = read_doc(path)?;
    let Some(before) = doc.bytes.as_deref() else {
        return Ok(None);
    };
    let mut report = FileReport::new(path, "unchanged");
    let mut value = doc.value.clone();
    strip_ours(&mut value, record, Some((&mut report, warnings)));
    if value == doc.value {
        return Ok(Some(UndoPlan {
            doc,
            record: record.clone(),
            bytes: None,
            redundant: Vec::new(),
            report,
        }));
    }
    // What to write: nothing (a file install made, back to empty), the
    // original bytes (what is left is the original), or what is left.
    let original = original_bytes(record);
    let original_value = original.as_ref().and_then(|o| parse_object(o, path).ok());
    let (bytes, action) = if record.created && value.is_empty() {
        (None, "deleted")
    } else if let (Some(o), Some(v)) = (&original, &original_value)
        && *v == value
    {
        (Some(o.clone()), "restored")
    } else {
        (Some(render(&value, Some(before))?), "modified")
    };
    report.action = action;
    // Backups that hold nothing but the original (and claudemesh's
    // entries) are not needed once the original is back.
    let redundant = match &original_value {
        Some(orig) if action == "restored" => record
            .backups
            .iter()
            .filter(|p| {
                fs::read(p).ok().is_some_and(|b| {
                    parse_object(&b, p).is_ok_and(|mut v| {
                        strip_ours(&mut v, record, None);
                        v == *orig
                    })
                })
            })
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    Ok(Some(UndoPlan {
        doc,
        record: record.clone(),
        bytes,
        redundant,
        report,
    }))
}

/// Takes install's entries out of `value` (those still exactly as it
/// wrote them; a replaced member gets its previous value back), then the
/// containers it made that are empty again. With `log`, each change is
/// reported and each entry kept is a warning.
fn strip_ours(
    value: &mut Map<String, Value>,
    record: &FileRecord,
    mut log: Option<(&mut FileReport, &mut Vec<String>)>,
) {
    let mut changes = Vec::new();
    for e in record.entries.iter().rev() {
        let shown = dotted(&e.path, e.kind);
        let change = match e.kind {
            Kind::Member => match get(value, &e.path) {
                Some(c) if *c == e.value => match &e.previous {
                    Some(p) => {
                        set_member(value, &e.path, p.clone());
                        Some(("restore", p.clone()))
                    }
                    None => {
                        remove_member(value, &e.path);
                        Some(("remove", e.value.clone()))
                    }
                },
                Some(_) => {
                    if let Some((_, warnings)) = log.as_mut() {
                        warnings.push(format!(
                            "{}: kept {shown}: it was changed since claudemesh wrote it",
                            record.path.display()
                        ));
                    }
                    None
                }
                None => None,
            },
            Kind::Element => match array_mut(value, &e.path) {
                Some(arr) => arr.iter().rposition(|v| *v == e.value).map(|i| {
                    arr.remove(i);
                    ("remove", e.value.clone())
                }),
                None => None,
            },
        };
        if let Some((op, v)) = change {
            changes.push(Change {
                op,
                path: shown,
                value: Some(v),
            });
        }
    }
    if let Some((report, _)) = log {
        // In the order install added them.
        report.changes.extend(changes.into_iter().rev());
    }
    let mut containers = record.containers.clone();
    containers.sort_by_key(|c| std::cmp::Reverse(c.len()));
    for c in &containers {
        if is_empty_container(get(value, c)) {
            remove_member(value, c);
        }
    }
}

/// The file's bytes before claudemesh changed it, if a backup holds them.
fn original_bytes(record: &FileRecord) -> Option<Vec<u8>> {
    let sha = record.original_sha256.as_ref()?;
    record
        .backups
        .iter()
        .filter_map(|p| fs::read(p).ok())
        .find(|b| sha256_hex(b) == *sha)
}

/// `claudemesh uninstall`.
pub fn uninstall(g: &Global, a: &UninstallArgs) -> Outcome {
    let home = absolute(&resolve_home(g.home.as_deref())?)?;
    let manifest_shown = manifest_path(&home).display().to_string();
    let Some(manifest) = load_manifest(&home)? else {
        if g.json {
            output::json(&Report {
                command: "uninstall",
                dry_run: a.dry_run,
                changed: false,
                files: Vec::new(),
                manifest: manifest_shown,
                warnings: Vec::new(),
                next: None,
            });
        } else if !g.quiet {
            println!(
                "claudemesh is not installed for Claude Code (there is no {manifest_shown}): nothing to do."
            );
        }
        return Ok(());
    };
    let mut attempt = 0;
    let (reports, warnings, changed) = loop {
        attempt += 1;
        match uninstall_once(a, &home, &manifest) {
            Err(Retry::Changed(f)) if attempt < ATTEMPTS => {
                tracing::info!(file = %f.display(), "the file changed while it was edited; again");
            }
            Err(Retry::Changed(f)) => return Err(WriteError::Changed.failure(&f)),
            Err(Retry::Fail(f)) => return Err(f),
            Ok(r) => break r,
        }
    };
    const NEXT_OUT: &str = "restart Claude Code (or its sessions) to drop the claudemesh server";
    if g.json {
        output::json(&Report {
            command: "uninstall",
            dry_run: a.dry_run,
            changed,
            files: reports,
            manifest: manifest_shown,
            warnings,
            next: Some(NEXT_OUT),
        });
        return Ok(());
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if g.quiet {
        return Ok(());
    }
    if a.dry_run {
        println!("Would uninstall claudemesh from Claude Code (dry run: nothing was changed):");
        print_files(&reports, true);
        println!("Run it without --dry-run to make these changes.");
    } else {
        if changed {
            println!("Uninstalled claudemesh from Claude Code:");
            print_files(&reports, false);
        } else {
            println!("Nothing of claudemesh was left in Claude Code's files.");
        }
        println!("Removed the record {manifest_shown}.");
        println!("Next: {NEXT_OUT}.");
    }
    Ok(())
}

fn uninstall_once(
    a: &UninstallArgs,
    home: &Path,
    manifest: &Manifest,
) -> Result<(Vec<FileReport>, Vec<String>, bool), Retry> {
    let mut warnings = Vec::new();
    let mut plans = Vec::new();
    for r in &manifest.files {
        if let Some(p) = plan_undo(r, &mut warnings)? {
            plans.push(p);
        }
    }
    // The skill file.
    let skill = match &manifest.skill {
        Some(s) => skill::plan_removal(s, &mut warnings)?,
        None => None,
    };
    let mut reports: Vec<FileReport> = plans.iter().map(|p| p.report.clone()).collect();
    if let Some(removal) = &skill {
        reports.push(removal.report.clone());
    }
    let changed = reports.iter().any(|r| r.action != "unchanged");
    if a.dry_run {
        return Ok((reports, warnings, changed));
    }

    let stamp = stamp();
    let mut out = Vec::new();
    for mut p in plans {
        let file = p.record.path.clone();
        if p.report.action == "unchanged" {
            out.push(p.report);
            continue;
        }
        let before = p.doc.bytes.as_deref();
        // The state being undone is kept, unless the original comes back.
        if p.report.action == "modified"
            && let Some(b) = before
        {
            let kept = write_backup(&p.doc.real, b, p.doc.perms.as_ref(), &stamp)?;
            p.report.backup = Some(kept.display().to_string());
        }
        match &p.bytes {
            Some(bytes) => {
                let expect = (before, p.doc.perms.as_ref());
                match replace_file(&p.doc.real, bytes, Mode::Private, Some(expect)) {
                    Ok(()) => {}
                    Err(WriteError::Changed) => return Err(Retry::Changed(file)),
                    Err(e) => return Err(Retry::Fail(e.failure(&file))),
                }
            }
            None => {
                if read_opt(&p.doc.real)
                    .map_err(|e| io_failure("read", &p.doc.real, &e))?
                    .as_deref()
                    != before
                {
                    return Err(Retry::Changed(file));
                }
                fs::remove_file(&p.doc.real).map_err(|e| io_failure("remove", &p.doc.real, &e))?;
            }
        }
        for r in &p.redundant {
            let _ = fs::remove_file(r);
        }
        let kept: Vec<String> = p
            .record
            .backups
            .iter()
            .filter(|b| !p.redundant.contains(b) && b.exists())
            .map(|b| b.display().to_string())
            .collect();
        if !kept.is_empty() {
            p.report
                .notes
                .push(format!("its backups are kept: {}", kept.join(", ")));
        }
        out.push(p.report);
    }
    if let Some(removal) = skill {
        out.push(removal.apply()?);
    }
    for d in manifest.dirs.iter().rev() {
        // Only if empty: anything else in it is someone else's.
        let _ = fs::remove_dir(d);
    }
    delete_manifest(home)?;
    Ok((out, warnings, changed))
}

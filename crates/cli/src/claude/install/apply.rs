//! `claudemesh install`: what claudemesh adds to Claude Code's files.
//!
//! Everything is planned first (refusing, before any change, an entry that
//! is not ours without `--force`), then written file by file, the manifest
//! saved before each write. Install only adds; running it again changes
//! nothing; a file Claude Code rewrote meanwhile is planned again.

use std::path::Path;

use claudemesh_client::home::resolve_home;
use serde_json::{Map, Value};

use crate::claude::install::entry::{Spelling, Want};
use crate::claude::install::files::{
    ATTEMPTS, Mode, Retry, WriteError, absolute, make_dirs, replace_file, sha256_hex, stamp,
    write_backup,
};
use crate::claude::install::json::{
    Doc, array_at, check_shape, dotted, get, object_at, read_doc, render, set_member, unusable,
};
use crate::claude::install::manifest::{
    Entry, FileRecord, Kind, MANIFEST_VERSION, Manifest, load_manifest, manifest_path,
    save_manifest,
};
use crate::claude::install::paths::ClaudePaths;
use crate::claude::install::report::{Change, FileReport, Report, print_files};
use crate::claude::install::skill::{self, SkillPlan, plan_skill};
use crate::claude::install::{hooks, mcp_server, status_line};
use crate::exit::Outcome;
use crate::exit::{self, Failure};
use crate::global::Global;
use crate::output;
use crate::policy::{Request, Verb};

/// `install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Print what would change; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not add the hooks (status working/idle, and messages into sessions without channels)
    #[arg(long)]
    pub no_hooks: bool,
    /// Do not install the skill file that teaches Claude the CLI
    #[arg(long)]
    pub no_skill: bool,
    /// Also set Claude Code's status line (mesh, peers online, unread)
    #[arg(long)]
    pub status_line: bool,
    /// Pre-approve claudemesh's MCP tools (Claude then uses them without asking)
    #[arg(long)]
    pub allow_tools: bool,
    /// Refuse Claude's edits of files another session leased exclusively (by default it is only warned)
    #[arg(long, conflicts_with = "no_hooks")]
    pub enforce_leases: bool,
    /// Replace a status line, an MCP server named claudemesh or a skill file
    /// that is not ours (uninstall puts it back)
    #[arg(long)]
    pub force: bool,
}

impl InstallArgs {
    /// What it asks the policy: a dry run changes nothing and touches no
    /// home, so it is not asked about.
    pub fn request(&self) -> Option<Request> {
        (!self.dry_run).then(|| Request::new(Verb::Install, None, false))
    }
}

/// What to do after install.
pub const NEXT: &str = "restart Claude Code, or run `claudemesh launch`";

/// The entry `id` stands for, with today's binary and home; `None` for an
/// id this version does not know.
fn want_for(id: &str, paths: &ClaudePaths, sp: &Spelling) -> Option<Want> {
    match id {
        mcp_server::ID => Some(mcp_server::entry(&paths.config, sp)),
        hooks::WORKING
        | hooks::IDLE
        | hooks::SESSION_START
        | hooks::PRE_EDIT
        | hooks::PRE_EDIT_ENFORCE => hooks::entry(id, &paths.settings, sp),
        status_line::ID => Some(status_line::entry(&paths.settings, sp)),
        _ => mcp_server::allow_entry(id, &paths.settings),
    }
}

/// Whether the pre-edit hook refuses rather than warns: asked for now,
/// or by an earlier install (a later plain `install` keeps it; only
/// `uninstall` takes it out).
fn enforcing(a: &InstallArgs, m: &Manifest) -> bool {
    a.enforce_leases
        || m.files
            .iter()
            .any(|f| f.entries.iter().any(|e| e.id == hooks::PRE_EDIT_ENFORCE))
}

/// What an earlier install added that this one takes out again: the
/// warning pre-edit hook once the refusing one replaces it (running both
/// would only say the same thing twice).
fn retired(a: &InstallArgs, m: &Manifest) -> Vec<&'static str> {
    if enforcing(a, m) {
        vec![hooks::PRE_EDIT]
    } else {
        Vec::new()
    }
}

/// What install wants: what the flags ask for, and everything an earlier
/// install added (refreshed with today's binary path) but what it
/// [`retired`]. Install otherwise only adds; `uninstall` takes out.
fn wants(a: &InstallArgs, m: &Manifest, paths: &ClaudePaths, sp: &Spelling) -> Vec<Want> {
    let enforce = enforcing(a, m);
    let gone = retired(a, m);
    let mut ids: Vec<String> = vec![mcp_server::ID.into()];
    if !a.no_hooks {
        ids.extend(
            hooks::ALL
                .iter()
                .filter(|id| !(enforce && **id == hooks::PRE_EDIT))
                .map(|id| String::from(*id)),
        );
        if enforce {
            ids.push(hooks::PRE_EDIT_ENFORCE.into());
        }
    }
    if a.status_line {
        ids.push(status_line::ID.into());
    }
    if a.allow_tools {
        ids.extend(mcp_server::allow_ids());
    }
    for f in &m.files {
        for e in &f.entries {
            if !ids.contains(&e.id) && !gone.contains(&e.id.as_str()) {
                ids.push(e.id.clone());
            }
        }
    }
    ids.iter()
        .filter_map(|id| want_for(id, paths, sp))
        .collect()
}

/// A planned change to one JSON file.
#[derive(Debug)]
struct FilePlan {
    doc: Doc,
    /// The record after the change.
    record: FileRecord,
    new_value: Map<String, Value>,
    report: FileReport,
}

impl FilePlan {
    fn changed(&self) -> bool {
        !self.report.changes.is_empty()
    }
}

/// Plans install's wants for one file. Members that are not ours and
/// differ from what install wants are conflicts (replaced with `force`).
fn plan_file(
    path: &Path,
    wants: &[&Want],
    retire: &[&str],
    old: Option<&FileRecord>,
    force: bool,
    conflicts: &mut Vec<Failure>,
) -> Result<Option<FilePlan>, Failure> {
    let doc = read_doc(path)?;
    let mut record = old.cloned().unwrap_or_else(|| FileRecord::new(path));
    let mut value = doc.value.clone();
    let mut report = FileReport::new(path, "modified");
    // Entries of ours this install takes out: an element goes from its
    // array (if it is still there as we wrote it), and from the record.
    for id in retire {
        let Some(i) = record.entries.iter().position(|e| e.id == *id) else {
            continue;
        };
        let e = record.entries.remove(i);
        if e.kind != Kind::Element {
            continue;
        }
        if let Some(Value::Array(_)) = get(&value, &e.path) {
            let arr = array_at(&mut value, &e.path, &mut record.containers)
                .map_err(|why| unusable(path, why))?;
            if let Some(j) = arr.iter().rposition(|v| *v == e.value) {
                arr.remove(j);
                report.changes.push(Change {
                    op: "remove",
                    path: dotted(&e.path, e.kind),
                    value: Some(e.value),
                });
            }
        }
    }
    for w in wants {
        check_shape(&value, &w.path, w.kind).map_err(|e| unusable(path, e))?;
        let mine = record.entries.iter().position(|e| e.id == w.id);
        match w.kind {
            Kind::Member => {
                let current = get(&value, &w.path).cloned();
                let recorded = mine.map(|i| record.entries[i].clone());
                match current {
                    Some(c) if c == w.value => {
                        if recorded.is_none() {
                            report.notes.push(format!(
                                "{} is already there as claudemesh would write it; left as it is",
                                dotted(&w.path, w.kind)
                            ));
                        }
                    }
                    Some(c) => {
                        let ours = recorded.as_ref().is_some_and(|r| r.value == c);
                        if !ours && !force {
                            conflicts.push(member_conflict(path, w, &c));
                            continue;
                        }
                        let previous = match &recorded {
                            Some(r) => r.previous.clone(),
                            None => Some(c.clone()),
                        };
                        set_member(&mut value, &w.path, w.value.clone());
                        upsert(&mut record, mine, w, previous);
                        report.changes.push(Change {
                            op: "replace",
                            path: dotted(&w.path, w.kind),
                            value: Some(w.value.clone()),
                        });
                    }
                    None => {
                        let (last, parents) = match w.path.split_last() {
                            Some(x) => x,
                            None => continue,
                        };
                        let obj = object_at(&mut value, parents, &mut record.containers)
                            .map_err(|e| unusable(path, e))?;
                        obj.insert(last.clone(), w.value.clone());
                        let previous = recorded.and_then(|r| r.previous);
                        upsert(&mut record, mine, w, previous);
                        report.changes.push(Change {
                            op: "add",
                            path: dotted(&w.path, w.kind),
                            value: Some(w.value.clone()),
                        });
                    }
                }
            }
            Kind::Element => {
                let recorded = mine.map(|i| record.entries[i].value.clone());
                let arr = array_at(&mut value, &w.path, &mut record.containers)
                    .map_err(|e| unusable(path, e))?;
                let has_new = arr.contains(&w.value);
                let old_at = recorded
                    .as_ref()
                    .and_then(|r| arr.iter().rposition(|v| v == r));
                match (&recorded, has_new, old_at) {
                    // Ours, and as install would write it today.
                    (Some(r), true, _) if *r == w.value => {}
                    // An earlier install's, spelled differently (the
                    // binary moved): replaced where it is.
                    (Some(_), false, Some(i)) => {
                        arr[i] = w.value.clone();
                        upsert(&mut record, mine, w, None);
                        report.changes.push(Change {
                            op: "replace",
                            path: dotted(&w.path, w.kind),
                            value: Some(w.value.clone()),
                        });
                    }
                    // Someone else's identical entry: not ours to add or
                    // remove.
                    (None, true, _) => {
                        report.notes.push(format!(
                            "{} already holds {}; not added again",
                            dotted(&w.path, Kind::Member),
                            w.value
                        ));
                    }
                    // Ours but it is there twice now, or the user took it
                    // out (added back), or new.
                    _ => {
                        if !has_new {
                            arr.push(w.value.clone());
                            report.changes.push(Change {
                                op: "add",
                                path: dotted(&w.path, w.kind),
                                value: Some(w.value.clone()),
                            });
                        }
                        upsert(&mut record, mine, w, None);
                    }
                }
            }
        }
    }
    // Each container once; one the user took out is no longer ours.
    let mut seen = Vec::new();
    record.containers.retain(|c| {
        get(&value, c).is_some() && !seen.contains(c) && {
            seen.push(c.clone());
            true
        }
    });
    if report.changes.is_empty() {
        if doc.bytes.is_none() {
            // Nothing to add to a file that does not exist.
            return Ok(None);
        }
        report.action = "unchanged";
    } else if doc.bytes.is_none() {
        report.action = "created";
    }
    Ok(Some(FilePlan {
        doc,
        record,
        new_value: value,
        report,
    }))
}

fn upsert(record: &mut FileRecord, at: Option<usize>, w: &Want, previous: Option<Value>) {
    let e = Entry {
        id: w.id.clone(),
        kind: w.kind,
        path: w.path.clone(),
        value: w.value.clone(),
        previous,
    };
    match at {
        Some(i) => record.entries[i] = e,
        None => record.entries.push(e),
    }
}

fn member_conflict(path: &Path, w: &Want, current: &Value) -> Failure {
    let what = dotted(&w.path, w.kind);
    let mut shown = current.to_string();
    if shown.chars().count() > 120 {
        shown = shown.chars().take(117).collect::<String>() + "...";
    }
    Failure::new(
        exit::EXISTS,
        format!(
            "{} already has {what} = {shown}, which claudemesh did not write: nothing was changed",
            path.display()
        ),
    )
    .hint(format!(
        "pass --force to replace it (`claudemesh uninstall` puts it back){}",
        if w.id == status_line::ID {
            ", or install without --status-line"
        } else {
            ""
        }
    ))
}

/// `claudemesh install`.
pub fn install(g: &Global, a: &InstallArgs) -> Outcome {
    let paths = ClaudePaths::find()?;
    let home = absolute(&resolve_home(g.home.as_deref())?)?;
    let spelling = Spelling::new(g)?;
    let mut manifest = load_manifest(&home)?.unwrap_or(Manifest {
        version: MANIFEST_VERSION,
        ..Manifest::default()
    });
    manifest.version = MANIFEST_VERSION;
    let wants = wants(a, &manifest, &paths, &spelling);
    let retire = retired(a, &manifest);

    let mut attempt = 0;
    let (reports, changed) = loop {
        attempt += 1;
        match install_once(a, &paths, &home, &wants, &retire, &mut manifest) {
            Err(Retry::Changed(f)) if attempt < ATTEMPTS => {
                tracing::info!(file = %f.display(), "the file changed while it was edited; again");
            }
            Err(Retry::Changed(f)) => return Err(WriteError::Changed.failure(&f)),
            Err(Retry::Fail(f)) => return Err(f),
            Ok(r) => break r,
        }
    };

    let manifest_shown = manifest_path(&home).display().to_string();
    if g.json {
        output::json(&Report {
            command: "install",
            dry_run: a.dry_run,
            changed,
            files: reports,
            manifest: manifest_shown,
            warnings: Vec::new(),
            next: Some(NEXT),
        });
        return Ok(());
    }
    // Notes on files that are not listed below.
    for f in reports
        .iter()
        .filter(|f| f.action == "unchanged" || g.quiet)
    {
        for n in &f.notes {
            eprintln!("note: {}: {n}", f.path);
        }
    }
    if g.quiet {
        return Ok(());
    }
    if !changed {
        println!("claudemesh is already installed for Claude Code: nothing changed.");
        if !a.dry_run {
            println!("Next: {NEXT}.");
        }
        return Ok(());
    }
    if a.dry_run {
        println!("Would install claudemesh for Claude Code (dry run: nothing was changed):");
        print_files(&reports, true);
        println!("Run it without --dry-run to make these changes.");
    } else {
        println!("Installed claudemesh for Claude Code:");
        print_files(&reports, false);
        println!("Recorded in {manifest_shown}: `claudemesh uninstall` takes out exactly these.");
        println!("Next: {NEXT}.");
    }
    Ok(())
}

/// Plans everything (refusing before any change), then writes file by
/// file, saving the manifest before each write.
fn install_once(
    a: &InstallArgs,
    paths: &ClaudePaths,
    home: &Path,
    wants: &[Want],
    retire: &[&str],
    manifest: &mut Manifest,
) -> Result<(Vec<FileReport>, bool), Retry> {
    // Plan.
    let mut conflicts = Vec::new();
    let mut plans = Vec::new();
    let mut files: Vec<&Path> = Vec::new();
    for w in wants {
        if !files.contains(&w.file.as_path()) {
            files.push(&w.file);
        }
    }
    for file in &files {
        let mine: Vec<&Want> = wants.iter().filter(|w| w.file == *file).collect();
        let old = manifest.files.iter().find(|r| r.path == *file);
        if let Some(p) = plan_file(file, &mine, retire, old, a.force, &mut conflicts)? {
            plans.push(p);
        }
    }
    let want_skill = !a.no_skill || manifest.skill.is_some();
    let mut skill_report = FileReport::new(&paths.skill, "unchanged");
    let skill_plan = if want_skill {
        match plan_skill(
            &paths.skill,
            manifest.skill.as_ref(),
            a.force,
            &mut skill_report,
        )? {
            Ok(p) => Some(p),
            Err(f) => {
                conflicts.push(f);
                None
            }
        }
    } else {
        None
    };
    if let Some(first) = conflicts.into_iter().next() {
        return Err(Retry::Fail(first));
    }
    let changed =
        plans.iter().any(FilePlan::changed) || matches!(skill_plan, Some(SkillPlan::Write { .. }));
    let mut reports: Vec<FileReport> = plans.iter().map(|p| p.report.clone()).collect();
    if want_skill {
        reports.push(skill_report.clone());
    }
    if a.dry_run {
        for (r, p) in reports.iter_mut().zip(&plans) {
            if p.changed() && p.doc.bytes.is_some() {
                r.backup = Some(format!(
                    "{}.claudemesh-backup-{}",
                    p.doc.real.display(),
                    stamp()
                ));
            }
        }
        return Ok((reports, changed));
    }

    // Write.
    let stamp = stamp();
    let mut out = Vec::new();
    for mut p in plans {
        let file = p.record.path.clone();
        if !p.changed() {
            // Nothing to write; the record may still gain entries found in
            // place (an earlier install's, now refreshed).
            store_record(manifest, p.record);
            out.push(p.report);
            continue;
        }
        if let Some(parent) = p.doc.real.parent() {
            make_dirs(parent, &mut manifest.dirs)?;
        }
        match &p.doc.bytes {
            Some(bytes) => {
                let backup = write_backup(&p.doc.real, bytes, p.doc.perms.as_ref(), &stamp)?;
                // The first change claudemesh makes: these are the
                // original bytes.
                if p.record.backups.is_empty() && !p.record.created {
                    p.record.original_sha256 = Some(sha256_hex(bytes));
                }
                p.record.backups.push(backup.clone());
                p.report.backup = Some(backup.display().to_string());
            }
            None => {
                // A file made now: nothing to restore but its absence.
                p.record.created = true;
                p.record.original_sha256 = None;
            }
        }
        store_record(manifest, p.record);
        save_manifest(home, manifest)?;
        let bytes = render(&p.new_value, p.doc.bytes.as_deref())?;
        let expect = (p.doc.bytes.as_deref(), p.doc.perms.as_ref());
        match replace_file(&p.doc.real, &bytes, Mode::Private, Some(expect)) {
            Ok(()) => {}
            Err(WriteError::Changed) => return Err(Retry::Changed(file)),
            Err(e) => return Err(Retry::Fail(e.failure(&file))),
        }
        out.push(p.report);
    }
    if let Some(plan) = skill_plan {
        if let SkillPlan::Write { replaced } = plan {
            skill::write(
                &paths.skill,
                &paths.dir,
                replaced,
                manifest,
                home,
                &stamp,
                &mut skill_report,
            )?;
        }
        out.push(skill_report);
    }
    save_manifest(home, manifest)?;
    Ok((out, changed))
}

/// Keeps `r` in the manifest (a record of nothing is not kept).
pub fn store_record(m: &mut Manifest, r: FileRecord) {
    if r.entries.is_empty() && r.backups.is_empty() && !r.created {
        return;
    }
    match m.files.iter_mut().find(|f| f.path == r.path) {
        Some(f) => *f = r,
        None => m.files.push(r),
    }
}

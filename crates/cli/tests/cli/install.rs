//! `claudemesh install`, `uninstall` and `launch`, against a fake home:
//! `HOME` is a temporary directory holding a `~/.claude.json` and a
//! `~/.claude/settings.json` written the way a user might have them, and
//! `claude` is a shell script that writes down how it was started. Claude
//! Code itself does not run here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{Run, bare_command, code, run, snapshot};

/// `~/.claude.json` as a user's might be: odd spacing, other servers,
/// projects, numbers, unicode, no newline at the end.
const CLAUDE_JSON: &str = "{\"numStartups\": 42,   \"installMethod\":\"native\",\n\
  \"projects\": {\"/home/u/app\": {\"allowedTools\": [], \"hasTrustDialogAccepted\": true}},\n\
\t\"mcpServers\": {\"github\": {\"type\": \"stdio\", \"command\": \"gh-mcp\", \"args\": []}},\n\
  \"tipsHistory\": {\"new-user-warmup\": 7}, \"ratio\": 0.1, \"big\": 1.5e300,\n\
  \"owner\": \"Zoë 😀 \\u00e9\"   }";

/// `~/.claude/settings.json` with the user's own hooks and status line.
const SETTINGS_JSON: &str = r#"{
    "model": "opus",
    "hooks": {
        "Stop": [
            { "hooks": [ { "type": "command", "command": "notify-send done" } ] }
        ],
        "PreToolUse": [
            { "matcher": "Bash", "hooks": [ { "type": "command", "command": "audit.sh" } ] }
        ]
    },
    "statusLine": { "type": "command", "command": "~/bin/my-status" },
    "permissions": { "allow": [ "Bash(git status)" ] }
}
"#;

/// A fake home for one test.
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    /// An empty home.
    fn empty() -> Fake {
        Fake {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A home with the user's `.claude.json` and `settings.json`.
    fn with_user_files() -> Fake {
        let f = Fake::empty();
        std::fs::write(f.config(), CLAUDE_JSON).unwrap();
        std::fs::create_dir(f.home().join(".claude")).unwrap();
        std::fs::write(f.settings(), SETTINGS_JSON).unwrap();
        f
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }
    fn config(&self) -> PathBuf {
        self.home().join(".claude.json")
    }
    fn settings(&self) -> PathBuf {
        self.home().join(".claude").join("settings.json")
    }
    fn skill(&self) -> PathBuf {
        self.home().join(".claude/skills/claudemesh/SKILL.md")
    }
    fn manifest(&self) -> PathBuf {
        self.home().join(".claudemesh/claude-install.json")
    }

    /// `claudemesh <args>` with `HOME` here and nothing of Claude Code's
    /// own environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = bare_command(args);
        c.env("HOME", self.home())
            .env_remove("CLAUDE_CONFIG_DIR")
            .env_remove("CLAUDEMESH_CLAUDE_BIN")
            .env_remove("CLAUDEMESH_SESSION_NAME")
            .current_dir(self.home());
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        run(self.command(args))
    }

    /// Every file of Claude Code's here (not the claudemesh home, which
    /// the policy writes to).
    fn claude_files(&self) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
        let claudemesh = self.home().join(".claudemesh");
        snapshot(self.home())
            .into_iter()
            .filter(|(p, _)| !p.starts_with(&claudemesh))
            .collect()
    }

    /// The backups beside `file`.
    fn backups_of(&self, file: &Path) -> Vec<PathBuf> {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        let mut v: Vec<PathBuf> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{name}.claudemesh-backup-"))
            })
            .collect();
        v.sort();
        v
    }
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap();
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", p.display()))
}

/// The path `claudemesh install` writes: the running binary's.
fn binary() -> String {
    std::fs::canonicalize(crate::support::BIN)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

fn hook(command: &str) -> Value {
    json!({"hooks": [{"type": "command", "command": command}]})
}

/// Every member of `original` is in `now` with the same value, except
/// the paths listed (which install may extend).
fn keeps_everything_but(original: &Value, now: &Value, extended: &[&str]) {
    for (k, v) in original.as_object().unwrap() {
        if extended.contains(&k.as_str()) {
            continue;
        }
        assert_eq!(&now[k], v, "{k} changed");
    }
}

#[test]
fn install_adds_our_entries_keeps_the_users_and_uninstall_restores_the_bytes() {
    let f = Fake::with_user_files();
    let before = f.claude_files();
    let bin = binary();

    let r = f.run(&["install"]).ok();
    assert!(
        r.stdout.contains("Installed claudemesh for Claude Code"),
        "{r:?}"
    );
    assert!(
        r.stdout
            .trim_end()
            .ends_with("Next: restart Claude Code, or run `claudemesh launch`."),
        "{r:?}"
    );

    // ~/.claude.json: our server beside the user's, everything else kept,
    // in the user's key order.
    let original: Value = serde_json::from_str(CLAUDE_JSON).unwrap();
    let config = read_json(&f.config());
    keeps_everything_but(&original, &config, &["mcpServers"]);
    assert_eq!(
        config["mcpServers"]["github"],
        original["mcpServers"]["github"]
    );
    assert_eq!(
        config["mcpServers"]["claudemesh"],
        json!({"type": "stdio", "command": bin, "args": ["mcp"]})
    );
    let keys: Vec<&String> = config.as_object().unwrap().keys().collect();
    let original_keys: Vec<&String> = original.as_object().unwrap().keys().collect();
    assert_eq!(keys, original_keys, "key order kept");
    assert_eq!(config["owner"], "Zoë 😀 é");
    assert_eq!(config["big"], json!(1.5e300));
    assert_eq!(config["ratio"], json!(0.1));

    // settings.json: our hooks after the user's, their status line and
    // permissions untouched, no tool pre-approved.
    let user: Value = serde_json::from_str(SETTINGS_JSON).unwrap();
    let settings = read_json(&f.settings());
    keeps_everything_but(&user, &settings, &["hooks"]);
    assert_eq!(
        settings["hooks"]["Stop"],
        json!([user["hooks"]["Stop"][0], hook(&format!("{bin} hook stop"))])
    );
    assert_eq!(
        settings["hooks"]["UserPromptSubmit"],
        json!([hook(&format!("{bin} hook prompt"))])
    );
    // The pre-edit hook (file leases) after the user's own.
    let mut pre_edit = hook(&format!("{bin} hook pre-edit"));
    pre_edit["matcher"] = json!("Edit|Write|MultiEdit|NotebookEdit");
    assert_eq!(
        settings["hooks"]["PreToolUse"],
        json!([user["hooks"]["PreToolUse"][0], pre_edit])
    );
    assert_eq!(settings["statusLine"], user["statusLine"]);
    assert_eq!(settings["permissions"], user["permissions"]);

    // A backup of each, with the original bytes; the skill; the record.
    for (file, text) in [(f.config(), CLAUDE_JSON), (f.settings(), SETTINGS_JSON)] {
        let b = f.backups_of(&file);
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(std::fs::read_to_string(&b[0]).unwrap(), text);
    }
    let skill = std::fs::read_to_string(f.skill()).unwrap();
    assert!(
        skill.starts_with("---\nname: claudemesh\ndescription: "),
        "{skill}"
    );
    assert!(f.manifest().exists());

    // Again: nothing changes.
    let installed = f.claude_files();
    let r = f.run(&["install"]).ok();
    assert!(r.stdout.contains("already installed"), "{r:?}");
    assert_eq!(
        f.claude_files(),
        installed,
        "a second install changed files"
    );
    let r = f.run(&["--json", "install"]).ok();
    assert_eq!(r.json()["changed"], false, "{r:?}");

    // Uninstall: the original bytes, byte for byte; backups, skill and
    // record gone.
    let r = f.run(&["uninstall"]).ok();
    assert!(r.stdout.contains("Uninstalled claudemesh"), "{r:?}");
    assert_eq!(std::fs::read_to_string(f.config()).unwrap(), CLAUDE_JSON);
    assert_eq!(
        std::fs::read_to_string(f.settings()).unwrap(),
        SETTINGS_JSON
    );
    assert_eq!(f.claude_files(), before);
    assert!(!f.manifest().exists());

    // And again: nothing to do.
    let r = f.run(&["uninstall"]).ok();
    assert!(r.stdout.contains("not installed"), "{r:?}");
    assert_eq!(f.claude_files(), before);
}

#[test]
fn uninstall_keeps_what_the_user_or_claude_changed_since() {
    let f = Fake::with_user_files();
    let bin = binary();
    f.run(&["install", "--allow-tools"]).ok();

    // Claude Code and the user go on: other keys change, a server and a
    // hook are added after ours, a permission is granted.
    let mut config = read_json(&f.config());
    config["numStartups"] = json!(43);
    config["mcpServers"]["later"] = json!({"command": "later-mcp"});
    std::fs::write(f.config(), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let mut settings = read_json(&f.settings());
    settings["hooks"]["Stop"]
        .as_array_mut()
        .unwrap()
        .push(hook("echo mine too"));
    settings["permissions"]["allow"]
        .as_array_mut()
        .unwrap()
        .push(json!("WebFetch"));
    settings["model"] = json!("sonnet");
    std::fs::write(
        f.settings(),
        serde_json::to_string_pretty(&settings).unwrap(),
    )
    .unwrap();

    let r = f.run(&["uninstall"]).ok();
    assert!(r.stdout.contains("backups are kept"), "{r:?}");

    let config = read_json(&f.config());
    assert_eq!(config["numStartups"], 43);
    assert_eq!(
        config["mcpServers"]["later"],
        json!({"command": "later-mcp"})
    );
    assert_eq!(config["mcpServers"]["github"]["command"], "gh-mcp");
    assert!(config["mcpServers"].get("claudemesh").is_none(), "{config}");

    let settings = read_json(&f.settings());
    let user: Value = serde_json::from_str(SETTINGS_JSON).unwrap();
    assert_eq!(
        settings["hooks"]["Stop"],
        json!([user["hooks"]["Stop"][0], hook("echo mine too")])
    );
    assert!(
        settings["hooks"].get("UserPromptSubmit").is_none(),
        "the array install made is gone with its entry: {settings}"
    );
    assert_eq!(
        settings["permissions"]["allow"],
        json!(["Bash(git status)", "WebFetch"])
    );
    assert_eq!(settings["model"], "sonnet");
    assert!(!settings.to_string().contains(&bin), "{settings}");
    assert!(!f.skill().exists());
    // The backups made by install stay (they hold states nobody else has).
    assert_eq!(f.backups_of(&f.config()).len(), 2);
}

#[test]
fn an_entry_the_user_edited_is_left_alone() {
    let f = Fake::with_user_files();
    f.run(&["install"]).ok();
    let mut config = read_json(&f.config());
    config["mcpServers"]["claudemesh"]["env"] = json!({"X": "1"});
    std::fs::write(f.config(), serde_json::to_string(&config).unwrap()).unwrap();
    let r = f.run(&["uninstall"]).ok();
    assert!(
        r.stderr
            .contains("kept mcpServers.claudemesh: it was changed since claudemesh wrote it"),
        "{r:?}"
    );
    assert_eq!(
        read_json(&f.config())["mcpServers"]["claudemesh"]["env"]["X"],
        "1"
    );
    assert_eq!(
        std::fs::read_to_string(f.settings()).unwrap(),
        SETTINGS_JSON
    );
}

#[test]
fn dry_runs_print_the_change_and_touch_nothing() {
    let f = Fake::with_user_files();
    let before = snapshot(f.home());
    let r = f
        .run(&["install", "--dry-run", "--status-line", "--force"])
        .ok();
    assert!(r.stdout.contains("dry run: nothing was changed"), "{r:?}");
    assert!(r.stdout.contains("+ mcpServers.claudemesh"), "{r:?}");
    assert!(r.stdout.contains("+ hooks.UserPromptSubmit[]"), "{r:?}");
    assert!(r.stdout.contains("~ statusLine"), "{r:?}");
    assert!(r.stdout.contains("SKILL.md  (would be created)"), "{r:?}");
    let v = f.run(&["--json", "install", "--dry-run"]).ok().json();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["changed"], true);
    assert_eq!(v["files"][0]["path"], f.config().display().to_string());
    assert_eq!(v["files"][0]["changes"][0]["op"], "add");
    assert_eq!(v["files"][0]["changes"][0]["path"], "mcpServers.claudemesh");
    // Not even the claudemesh home (policy, audit log) was written.
    assert_eq!(snapshot(f.home()), before);

    f.run(&["install"]).ok();
    let installed = snapshot(f.home());
    let r = f.run(&["uninstall", "--dry-run"]).ok();
    assert!(r.stdout.contains("- hooks.Stop[]"), "{r:?}");
    assert!(r.stdout.contains("original bytes back"), "{r:?}");
    assert_eq!(snapshot(f.home()), installed);
}

#[test]
fn a_file_that_is_not_json_is_refused_with_its_place() {
    let f = Fake::with_user_files();
    std::fs::write(f.settings(), "{\n  \"model\": \"opus\",\n  hooks: {}\n}\n").unwrap();
    let before = f.claude_files();
    let r = f.run(&["install"]).fails(10).with_hint();
    assert!(
        r.stderr.contains(&f.settings().display().to_string()),
        "{r:?}"
    );
    assert!(r.stderr.contains("line 3 column 3"), "{r:?}");
    assert_eq!(
        f.claude_files(),
        before,
        "nothing changed, .claude.json neither"
    );
    assert!(!f.manifest().exists());

    // A member install needs that has another type.
    std::fs::write(f.settings(), r#"{"hooks": []}"#).unwrap();
    let r = f.run(&["install"]).fails(10);
    assert!(r.stderr.contains("hooks is an array"), "{r:?}");
    let v = f.run(&["--json", "install"]).fails_json(10, "io");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("settings.json"),
        "{v}"
    );
}

#[test]
fn a_status_line_or_server_of_someone_else_needs_force_and_comes_back() {
    let f = Fake::with_user_files();
    let before = f.claude_files();
    let r = f
        .run(&["install", "--status-line"])
        .fails(code::EXISTS)
        .with_hint();
    assert!(r.stderr.contains("statusLine"), "{r:?}");
    assert!(r.stderr.contains("--force"), "{r:?}");
    assert_eq!(f.claude_files(), before);

    let bin = binary();
    f.run(&["install", "--status-line", "--force"]).ok();
    assert_eq!(
        read_json(&f.settings())["statusLine"],
        json!({"type": "command", "command": format!("{bin} status-line")})
    );
    f.run(&["uninstall"]).ok();
    assert_eq!(f.claude_files(), before, "their status line is back");

    // An MCP server named claudemesh that is not ours (an older install).
    let mut config: Value = serde_json::from_str(CLAUDE_JSON).unwrap();
    config["mcpServers"]["claudemesh"] = json!({"command": "claudemesh", "args": ["mcp"]});
    std::fs::write(f.config(), config.to_string()).unwrap();
    let r = f.run(&["install"]).fails(code::EXISTS);
    assert!(r.stderr.contains("mcpServers.claudemesh"), "{r:?}");
    f.run(&["install", "--force"]).ok();
    f.run(&["uninstall"]).ok();
    assert_eq!(
        read_json(&f.config())["mcpServers"]["claudemesh"],
        json!({"command": "claudemesh", "args": ["mcp"]})
    );
}

#[test]
fn missing_files_are_created_and_taken_away_again() {
    let f = Fake::empty();
    f.run(&["install", "--status-line", "--allow-tools"]).ok();
    let config = read_json(&f.config());
    assert_eq!(config["mcpServers"]["claudemesh"]["args"], json!(["mcp"]));
    let settings = read_json(&f.settings());
    assert_eq!(settings["statusLine"]["type"], "command");
    let allow = settings["permissions"]["allow"].as_array().unwrap();
    assert_eq!(allow.len(), 31);
    assert!(allow.contains(&json!("mcp__claudemesh__send_message")));
    assert!(allow.contains(&json!("mcp__claudemesh__cancel_scheduled")));
    assert!(allow.contains(&json!("mcp__claudemesh__memory_recall")));
    assert!(f.skill().exists());
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(f.config()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(f.backups_of(&f.config()).is_empty(), "nothing to back up");

    f.run(&["uninstall"]).ok();
    assert!(!f.config().exists());
    assert!(
        !f.home().join(".claude").exists(),
        "the directory install made is gone"
    );
    let left: Vec<_> = std::fs::read_dir(f.home())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from(".claudemesh")]);
}

/// The pre-edit hooks (`PreToolUse`) in settings: each one's command.
fn pre_edit_commands(f: &Fake) -> Vec<String> {
    read_json(&f.settings())["hooks"]["PreToolUse"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["hooks"][0]["command"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn enforcing_leases_replaces_the_warning_hook_and_stays_until_uninstall() {
    let f = Fake::empty();
    f.run(&["install"]).ok();
    let warn = pre_edit_commands(&f);
    assert_eq!(warn.len(), 1, "{warn:?}");
    assert!(warn[0].ends_with(" hook pre-edit"), "{warn:?}");
    // Enforcing takes the warning hook out: one hook, which refuses.
    f.run(&["install", "--enforce-leases"]).ok();
    let enforce = pre_edit_commands(&f);
    assert_eq!(enforce.len(), 1, "{enforce:?}");
    assert!(
        enforce[0].ends_with(" hook pre-edit --enforce"),
        "{enforce:?}"
    );
    // A plain install later keeps enforcing, and changes nothing.
    let again = f.run(&["install"]).ok();
    assert!(again.stdout.contains("nothing changed"), "{again:?}");
    assert_eq!(pre_edit_commands(&f), enforce);
    f.run(&["uninstall"]).ok();
    assert!(!f.settings().exists() || pre_edit_commands(&f).is_empty());
}

#[test]
fn claude_config_dir_moves_every_file() {
    let f = Fake::with_user_files();
    let before = f.claude_files();
    let cc = f.home().join("elsewhere");
    let mut c = f.command(&["install"]);
    c.env("CLAUDE_CONFIG_DIR", &cc);
    run(c).ok();
    assert!(cc.join(".claude.json").exists());
    assert!(cc.join("settings.json").exists());
    assert!(cc.join("skills/claudemesh/SKILL.md").exists());
    let moved: BTreeMap<_, _> = f
        .claude_files()
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&cc))
        .collect();
    assert_eq!(
        moved, before,
        "~/.claude.json and ~/.claude are not touched"
    );
    let mut c = f.command(&["uninstall"]);
    c.env("CLAUDE_CONFIG_DIR", &cc);
    run(c).ok();
    assert!(!cc.exists());
}

#[test]
fn a_path_with_spaces_and_another_home_are_spelled_for_the_shell() {
    let f = Fake::empty();
    // The binary under a directory with a space and a quote in its name.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bin_dir = dir.path().join("my bin's");
    std::fs::create_dir(&bin_dir).unwrap();
    let bin = bin_dir.join("claudemesh");
    if std::fs::hard_link(crate::support::BIN, &bin).is_err() {
        std::fs::copy(crate::support::BIN, &bin).unwrap();
    }
    let home = f.home().join("mesh home");
    // The fake home's command line and environment, run from that copy.
    let like = f.command(&[]);
    let mut c = Command::new(&bin);
    c.args(["--home", home.to_str().unwrap(), "install"]);
    for (k, v) in like.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    run(c).ok();

    let server = &read_json(&f.config())["mcpServers"]["claudemesh"];
    assert_eq!(server["command"], bin.to_str().unwrap());
    assert_eq!(
        server["args"],
        json!(["--home", home.to_str().unwrap(), "mcp"])
    );
    let settings = read_json(&f.settings());
    let working = settings["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"]
        .as_str()
        .unwrap();
    assert!(working.ends_with(" hook prompt"), "{working}");
    // The shell sees the same binary and home: ask it for the version.
    let line = working.replace(" hook prompt", " --version");
    let out = Command::new("sh").args(["-c", &line]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("claudemesh {}", env!("CARGO_PKG_VERSION")),
        "{line}"
    );
    assert!(home.join("claude-install.json").exists());
}

/// A `claude` that writes down its arguments and environment, then exits 42.
fn fake_claude(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let out = dir.join("claude-ran");
    let script = dir.join("fake-claude");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             for a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{out}.args'\n\
             printf '%s\\n' \"${{CLAUDEMESH_SESSION_NAME-unset}}\" \"${{CLAUDEMESH_MESH-unset}}\" \"${{CLAUDEMESH_HOME-unset}}\" > '{out}.env'\n\
             exit 42\n",
            out = out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, out)
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn launch_starts_claude_with_our_channel_name_and_mesh() {
    let f = Fake::empty();
    let (claude, out) = fake_claude(f.home());
    let args = |o: &Path| lines(&o.with_extension("args"));
    let env = |o: &Path| lines(&o.with_extension("env"));

    let mut c = f.command(&[
        "launch", "--name", "api", "--mesh", "team", "--", "--model", "opus", "-p", "hi there",
    ]);
    c.env("CLAUDEMESH_CLAUDE_BIN", &claude);
    let r = run(c);
    assert_eq!(r.code, 42, "claude's exit code: {r:?}");
    assert_eq!(r.stdout, "");
    assert_eq!(
        args(&out),
        [
            "--dangerously-load-development-channels",
            "server:claudemesh",
            "--model",
            "opus",
            "-p",
            "hi there"
        ]
    );
    assert_eq!(env(&out), ["api", "team", "unset"]);
    // Not installed yet: said, not refused.
    assert!(r.stderr.contains("claudemesh install"), "{r:?}");

    // Installed, with another home and no name.
    let home = f.home().join("other home");
    f.run(&[
        "--home",
        home.to_str().unwrap(),
        "install",
        "--no-skill",
        "--no-hooks",
    ])
    .ok();
    let mut c = f.command(&["--home", home.to_str().unwrap(), "launch"]);
    c.env("CLAUDEMESH_CLAUDE_BIN", &claude);
    let r = run(c);
    assert_eq!(r.code, 42, "{r:?}");
    assert!(!r.stderr.contains("claudemesh install"), "{r:?}");
    assert_eq!(
        args(&out),
        [
            "--dangerously-load-development-channels",
            "server:claudemesh"
        ]
    );
    assert_eq!(env(&out), ["unset", "unset", home.to_str().unwrap()]);
}

#[test]
fn launch_without_claude_says_how_to_get_it() {
    let f = Fake::empty();
    let mut c = f.command(&["launch"]);
    c.env("PATH", f.home());
    let r = run(c).fails(code::NOT_FOUND).with_hint();
    assert!(r.stderr.contains("Claude Code"), "{r:?}");
    let mut c = f.command(&["launch"]);
    c.env("CLAUDEMESH_CLAUDE_BIN", f.home().join("no-such-claude"));
    run(c).fails(code::NOT_FOUND);
    f.run(&["launch", "--name", ""]).fails(code::USAGE);
}

//! `claudemesh serve --install-service` and `--uninstall-service`: the
//! service definition that runs this home's gateway at login. It owns
//! one file per home — a systemd user unit
//! `claudemesh-serve[-<hash>].service` in `$XDG_CONFIG_HOME/systemd/user/`,
//! or on macOS a launchd agent `dev.claudemesh.serve[.<hash>].plist` in
//! `~/Library/LaunchAgents/` (written, not tested on a Mac here) — how it
//! is named (the hash is of the home's path, for a home other than
//! `~/.claudemesh`), what it holds (this binary, `--home`, `serve` and the
//! options given, quoted for systemd's `ExecStart` or escaped for XML),
//! writing it (0644) and starting it through `systemctl --user` or
//! `launchctl` when they answer, and removing it: only a file that starts
//! with the header written here, so nothing else is ever replaced or
//! deleted. The rendering and the file handling are pure functions of
//! their inputs, tested on every platform; only talking to the service
//! manager depends on it.

#![cfg_attr(not(unix), allow(dead_code))]

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::exit::{self, Failure, Outcome};
use crate::global::{Global, open_home};
use crate::serve::{DEFAULT_LISTEN, ServeArgs};

/// What the running binary, its home and its options are, absolute.
#[derive(Debug, Clone)]
struct Context {
    /// This binary.
    exe: PathBuf,
    /// The claudemesh home.
    home: PathBuf,
    /// Whether it is `~/.claudemesh` (the unit then has the plain name).
    default_home: bool,
    /// `$HOME`.
    user_home: PathBuf,
    /// The working directory relative paths were taken from.
    cwd: PathBuf,
}

impl Context {
    fn current(g: &Global) -> Result<Context, Failure> {
        let cwd = std::env::current_dir().map_err(|e| {
            Failure::new(exit::IO, format!("cannot read the working directory: {e}"))
                .hint("run it from a directory that exists")
        })?;
        let exe = std::env::current_exe().map_err(|e| {
            Failure::new(
                exit::IO,
                format!("cannot find the path of this claudemesh binary: {e}"),
            )
            .hint("run claudemesh by its full path")
        })?;
        let user_home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| {
                Failure::new(
                    exit::IO,
                    "HOME is not set: cannot tell where service files go",
                )
                .hint("set HOME to your home directory")
            })?;
        let home = absolute(
            &claudemesh_client::home::resolve_home(g.home.as_deref())?,
            &cwd,
        );
        let default_home = absolute(&user_home.join(".claudemesh"), &cwd) == home;
        Ok(Context {
            exe: absolute(&exe, &cwd),
            home,
            default_home,
            user_home: absolute(&user_home, &cwd),
            cwd,
        })
    }
}

/// `p` made absolute against `cwd`, without `.` components or a trailing
/// slash (symbolic links and `..` are left as they are).
pub fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    joined
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// The first 8 hex digits of the SHA-256 of the home's path: what tells
/// the services of two homes apart.
pub fn home_hash(home: &Path) -> String {
    let digest = Sha256::digest(home.as_os_str().as_encoded_bytes());
    hex::encode(digest)[..8].to_owned()
}

/// A word of the command line as UTF-8 without control characters (unit
/// files and plists are text; a newline would end the line).
fn word(what: &str, s: &str) -> Result<String, Failure> {
    if s.chars().any(char::is_control) {
        return Err(Failure::new(
            exit::USAGE,
            format!("{what} {s:?} holds a control character: a service file cannot carry it"),
        )
        .hint("use a value without newlines or other control characters"));
    }
    Ok(s.to_owned())
}

fn path_word(what: &str, p: &Path) -> Result<String, Failure> {
    match p.to_str() {
        Some(s) => word(what, s),
        None => Err(Failure::new(
            exit::USAGE,
            format!(
                "{what} {} is not valid UTF-8: a service file cannot name it",
                p.display()
            ),
        )
        .hint("use a path that is UTF-8")),
    }
}

/// The whole command the service runs: `<exe> --home <home> [--policy
/// FILE] [--approval-mode MODE] [--ca FILE] serve [options]`. Paths are
/// made absolute against `cwd` (`exe` and `home` must be already); options
/// left at their defaults are left out.
pub fn command_line(
    exe: &Path,
    home: &Path,
    g: &Global,
    a: &ServeArgs,
    cwd: &Path,
) -> Result<Vec<String>, Failure> {
    let mut argv = vec![
        path_word("the binary's path", exe)?,
        "--home".to_owned(),
        path_word("the home", home)?,
    ];
    if let Some(p) = &g.policy {
        argv.push("--policy".to_owned());
        argv.push(path_word("--policy", &absolute(p, cwd))?);
    }
    if let Some(m) = g.approval_mode {
        argv.push("--approval-mode".to_owned());
        argv.push(m.as_str().to_owned());
    }
    if let Some(p) = &g.ca {
        argv.push("--ca".to_owned());
        argv.push(path_word("--ca", &absolute(p, cwd))?);
    }
    argv.push("serve".to_owned());
    match &a.unix {
        Some(p) => {
            argv.push("--unix".to_owned());
            argv.push(path_word("--unix", &absolute(p, cwd))?);
        }
        None if a.listen.to_string() != DEFAULT_LISTEN => {
            argv.push("--listen".to_owned());
            argv.push(a.listen.to_string());
        }
        None => {}
    }
    if let Some(p) = &a.tls_cert {
        argv.push("--tls-cert".to_owned());
        argv.push(path_word("--tls-cert", &absolute(p, cwd))?);
    }
    if let Some(p) = &a.tls_key {
        argv.push("--tls-key".to_owned());
        argv.push(path_word("--tls-key", &absolute(p, cwd))?);
    }
    if a.insecure_listen {
        argv.push("--insecure-listen".to_owned());
    }
    if a.name != "serve" {
        argv.push("--name".to_owned());
        argv.push(word("--name", &a.name)?);
    }
    for h in &a.allow_hosts {
        argv.push("--allow-host".to_owned());
        argv.push(word("--allow-host", h)?);
    }
    for o in &a.cors_origins {
        argv.push("--cors-origin".to_owned());
        argv.push(word("--cors-origin", o)?);
    }
    if a.rate != 50 {
        argv.push("--rate".to_owned());
        argv.push(a.rate.to_string());
    }
    Ok(argv)
}

/// What became of the service file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Replaced,
    Unchanged,
}

/// Reads `path` if it is a regular file: `None` when there is nothing
/// there, an error for something else (a directory, a symbolic link: not
/// ours to touch).
fn read_existing(path: &Path) -> Result<Option<String>, Failure> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_failure("read", path, &e)),
    };
    if !meta.file_type().is_file() {
        return Err(not_ours(path));
    }
    match fs::read(path) {
        // A file that is not text is not one of ours.
        Ok(bytes) => Ok(Some(String::from_utf8(bytes).unwrap_or_default())),
        Err(e) => Err(io_failure("read", path, &e)),
    }
}

fn io_failure(what: &str, path: &Path, e: &io::Error) -> Failure {
    Failure::new(exit::IO, format!("cannot {what} {}: {e}", path.display()))
        .hint("check the directory's permissions and free space")
}

fn not_ours(path: &Path) -> Failure {
    Failure::new(
        exit::EXISTS,
        format!(
            "{} was not written by claudemesh serve --install-service: left as it is",
            path.display()
        ),
    )
    .hint("move it away yourself if it is no longer needed, then run the command again")
}

/// Writes `content` to `dir/name` (mode 0644; `dir` is created if
/// missing) unless a file that `is_ours` does not recognise is there.
pub fn write_service_file(
    dir: &Path,
    name: &str,
    content: &str,
    is_ours: fn(&str) -> bool,
) -> Result<(PathBuf, Action), Failure> {
    let path = dir.join(name);
    let action = match read_existing(&path)? {
        None => Action::Created,
        Some(old) if !is_ours(&old) => return Err(not_ours(&path)),
        Some(old) if old == content => Action::Unchanged,
        Some(_) => Action::Replaced,
    };
    fs::create_dir_all(dir).map_err(|e| io_failure("create", dir, &e))?;
    // Written again even when unchanged: the mode is then 0644 for sure.
    claudemesh_client::home::write_atomic(&path, content.as_bytes(), 0o644)
        .map_err(|e| io_failure("write", &path, &e))?;
    Ok((path, action))
}

/// Removes `path` if it is a file `is_ours` recognises: exit 5 when there
/// is none, 6 when it is someone else's.
pub fn remove_service_file(path: &Path, is_ours: fn(&str) -> bool) -> Result<(), Failure> {
    match read_existing(path)? {
        None => Err(Failure::new(
            exit::NOT_FOUND,
            format!(
                "no claudemesh serve service for this home: there is no {}",
                path.display()
            ),
        )
        .hint(
            "install one with `claudemesh serve --install-service` (with --home for another home)",
        )),
        Some(text) if !is_ours(&text) => Err(not_ours(path)),
        Some(_) => fs::remove_file(path).map_err(|e| io_failure("remove", path, &e)),
    }
}

/// What `--install-service` did, for people and for `--json`.
#[derive(Debug, Serialize)]
struct Installed {
    /// `systemd` or `launchd`.
    manager: &'static str,
    /// The unit name (systemd) or the agent's label (launchd).
    unit: String,
    path: PathBuf,
    action: Action,
    /// Whether the service manager enabled and (re)started it.
    started: bool,
    /// The command the service runs.
    command: Vec<String>,
    /// What is left to run by hand (when the manager did not answer).
    next: Vec<String>,
    /// Whether the home is in a mesh (the gateway refuses to start if not).
    in_mesh: bool,
}

/// What `--uninstall-service` did.
#[derive(Debug, Serialize)]
struct Uninstalled {
    manager: &'static str,
    unit: String,
    path: PathBuf,
    /// Whether the service manager stopped and disabled it.
    stopped: bool,
    next: Vec<String>,
}

/// How the service manager is called in messages.
fn manager_name(manager: &str) -> &'static str {
    if manager == "systemd" {
        "the systemd user manager"
    } else {
        "launchd"
    }
}

fn report_installed(g: &Global, r: &Installed, home: &Path) {
    if g.json {
        crate::output::json(r);
    } else {
        if !g.quiet {
            let verb = match r.action {
                Action::Created => "Wrote",
                Action::Replaced => "Rewrote",
                Action::Unchanged => "Kept (unchanged)",
            };
            let manager = manager_name(r.manager);
            if r.started {
                eprintln!(
                    "{verb} {}; {manager} enabled and started it: `claudemesh serve` for {} runs now and at each login.",
                    r.path.display(),
                    home.display()
                );
            } else {
                eprintln!(
                    "{verb} {}; {manager} does not answer here, so start it yourself: {}",
                    r.path.display(),
                    r.next.join(" && ")
                );
            }
        }
        println!("{}", r.unit);
    }
    if !r.in_mesh {
        let restart = if r.manager == "systemd" {
            format!("systemctl --user restart {}", r.unit)
        } else {
            format!("launchctl kickstart -k gui/$(id -u)/{}", r.unit)
        };
        eprintln!(
            "warning: {} is in no mesh yet: `claudemesh serve` refuses to start (exit 5) until it is; create or join one, then run `{restart}`",
            home.display()
        );
    }
}

fn report_uninstalled(g: &Global, r: &Uninstalled) {
    if g.json {
        crate::output::json(r);
        return;
    }
    if !g.quiet {
        let manager = manager_name(r.manager);
        if r.stopped {
            eprintln!(
                "Stopped and disabled {} with {manager}, and removed {}.",
                r.unit,
                r.path.display()
            );
        } else if r.next.is_empty() {
            eprintln!("Removed {}.", r.path.display());
        } else {
            eprintln!(
                "Removed {}; {manager} does not answer here: if it still runs the service, run {}",
                r.path.display(),
                r.next.join(" && ")
            );
        }
    }
    println!("{}", r.unit);
}

/// Runs a service manager's command, quietly: `None` when the program is
/// not there, else whether it succeeded and what it said on stderr.
#[cfg(unix)]
fn run_tool(program: &str, args: &[&str]) -> Option<(bool, String)> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    ))
}

fn manager_failed(tool: &str, what: &str, stderr: &str) -> Failure {
    Failure::new(
        exit::FAILURE,
        format!("{tool} could not {what}: {}", stderr.trim()),
    )
}

pub fn install(g: &Global, a: &ServeArgs) -> Outcome {
    // What `serve` would refuse at every start is refused now.
    if a.unix.is_none()
        && !a.listen.ip().is_loopback()
        && a.tls_cert.is_none()
        && !a.insecure_listen
    {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "{} is not a loopback address: API keys would cross the network in clear, and serve would refuse to start",
                a.listen
            ),
        )
        .hint("give --tls-cert and --tls-key, or --insecure-listen if the network is yours alone"));
    }
    let ctx = Context::current(g)?;
    let argv = command_line(&ctx.exe, &ctx.home, g, a, &ctx.cwd)?;
    // The service runs without a mesh too, but the gateway will not.
    let in_mesh = !open_home(g)?.meshes().is_empty();
    platform_install(g, &ctx, argv, in_mesh)
}

pub fn uninstall(g: &Global) -> Outcome {
    let ctx = Context::current(g)?;
    platform_uninstall(g, &ctx)
}

#[cfg(not(unix))]
fn platform_install(_g: &Global, _ctx: &Context, _argv: Vec<String>, _in_mesh: bool) -> Outcome {
    Err(unsupported())
}

#[cfg(not(unix))]
fn platform_uninstall(_g: &Global, _ctx: &Context) -> Outcome {
    Err(unsupported())
}

#[cfg(not(unix))]
fn unsupported() -> Failure {
    Failure::new(
        exit::USAGE,
        "--install-service writes a systemd user unit (Linux) or a launchd agent (macOS); this system has neither",
    )
    .hint("start `claudemesh serve` with the system's own scheduler instead")
}

// ---------------------------------------------------------------- systemd

/// The systemd user unit.
#[cfg_attr(not(all(unix, not(target_os = "macos"))), allow(dead_code))]
pub mod systemd {
    use std::ffi::OsStr;
    use std::path::{Path, PathBuf};

    use super::home_hash;

    /// The first line of every unit written here: what `uninstall` looks for.
    pub const HEADER: &str = "# Written by claudemesh serve --install-service";

    /// The unit's name: `claudemesh-serve.service` for the default home,
    /// else `claudemesh-serve-<8 hex of sha256(home)>.service`.
    pub fn unit_name(home: &Path, default_home: bool) -> String {
        if default_home {
            "claudemesh-serve.service".to_owned()
        } else {
            format!("claudemesh-serve-{}.service", home_hash(home))
        }
    }

    /// Where user units go: `$XDG_CONFIG_HOME/systemd/user` (an absolute
    /// `XDG_CONFIG_HOME` only, as the XDG specification says), else
    /// `~/.config/systemd/user`.
    pub fn unit_dir(xdg_config_home: Option<&OsStr>, user_home: &Path) -> PathBuf {
        let config = xdg_config_home
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| user_home.join(".config"));
        config.join("systemd").join("user")
    }

    /// One word of `ExecStart=` as systemd splits it: plain words stay as
    /// they are; others are double-quoted with `\` and `"` escaped. `%`
    /// (specifiers) and `$` (variables) are doubled, quoted or not.
    pub fn quote(arg: &str) -> String {
        let plain = !arg.is_empty()
            && arg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@,=%$".contains(&b));
        let mut out = String::with_capacity(arg.len() + 2);
        if !plain {
            out.push('"');
        }
        for c in arg.chars() {
            match c {
                '%' => out.push_str("%%"),
                '$' => out.push_str("$$"),
                '\\' => out.push_str(r"\\"),
                '"' => out.push_str("\\\""),
                c if c.is_control() => {
                    out.push_str(&format!("\\u{:04x}", u32::from(c)));
                }
                c => out.push(c),
            }
        }
        if !plain {
            out.push('"');
        }
        out
    }

    /// `%` doubled, for a setting where specifiers are expanded.
    fn specifiers(s: &str) -> String {
        s.replace('%', "%%")
    }

    /// The unit file: `argv` is the whole command (binary first).
    pub fn render(home: &Path, argv: &[String]) -> String {
        let home = home.display().to_string();
        let exec: Vec<String> = argv.iter().map(|a| quote(a)).collect();
        format!(
            "{HEADER}; `claudemesh serve --uninstall-service` (with the same --home) removes it.\n\
             # Home: {home}\n\
             [Unit]\n\
             Description=claudemesh gateway (claudemesh serve) for {desc}\n\
             \n\
             [Service]\n\
             Type=simple\n\
             ExecStart={exec}\n\
             Restart=on-failure\n\
             RestartSec=5\n\
             # Usage errors, no mesh, another gateway holding the home's lock, a policy refusal: restarting cannot help.\n\
             RestartPreventExitStatus=3 5 6 7\n\
             KillSignal=SIGTERM\n\
             TimeoutStopSec=30\n\
             \n\
             [Install]\n\
             WantedBy=default.target\n",
            desc = specifiers(&home),
            exec = exec.join(" "),
        )
    }

    /// Whether `text` is a unit written here.
    pub fn is_ours(text: &str) -> bool {
        text.starts_with(HEADER)
    }

    /// What to run by hand when `systemctl --user` does not answer.
    pub fn manual_start(unit: &str) -> Vec<String> {
        vec![
            "systemctl --user daemon-reload".to_owned(),
            format!("systemctl --user enable --now {unit}"),
        ]
    }

    /// The symbolic link `enable` makes, if it points at our unit file.
    pub fn wants_link(dir: &Path, unit: &str) -> Option<PathBuf> {
        let link = dir.join("default.target.wants").join(unit);
        let target = std::fs::read_link(&link).ok()?;
        let target = if target.is_absolute() {
            target
        } else {
            link.parent()?.join(target)
        };
        (target == dir.join(unit)).then_some(link)
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
mod systemd_side {
    use super::*;

    /// `systemctl --user <args>`: `None` without systemctl.
    fn systemctl(args: &[&str]) -> Option<(bool, String)> {
        let mut all = vec!["--user"];
        all.extend_from_slice(args);
        run_tool("systemctl", &all)
    }

    /// Whether a systemd user manager answers on this session's bus.
    fn user_manager() -> bool {
        matches!(systemctl(&["show-environment"]), Some((true, _)))
    }

    fn must(args: &[&str], what: &str) -> Result<(), Failure> {
        match systemctl(args) {
            Some((true, _)) => Ok(()),
            Some((false, err)) => Err(manager_failed("systemctl --user", what, &err)
                .hint("see `systemctl --user status` and `journalctl --user -xe`")),
            None => Err(manager_failed("systemctl", what, "not found")),
        }
    }

    pub fn install(g: &Global, ctx: &Context, argv: Vec<String>, in_mesh: bool) -> Outcome {
        let unit = systemd::unit_name(&ctx.home, ctx.default_home);
        let dir = systemd::unit_dir(
            std::env::var_os("XDG_CONFIG_HOME").as_deref(),
            &ctx.user_home,
        );
        let text = systemd::render(&ctx.home, &argv);
        let (path, action) = write_service_file(&dir, &unit, &text, systemd::is_ours)?;
        let started = if user_manager() {
            must(&["daemon-reload"], "reload its units")?;
            if action == Action::Replaced {
                must(&["enable", &unit], &format!("enable {unit}"))?;
                must(&["restart", &unit], &format!("restart {unit}"))?;
            } else {
                must(
                    &["enable", "--now", &unit],
                    &format!("enable and start {unit}"),
                )?;
            }
            true
        } else {
            false
        };
        let r = Installed {
            manager: "systemd",
            next: if started {
                Vec::new()
            } else {
                systemd::manual_start(&unit)
            },
            unit,
            path,
            action,
            started,
            command: argv,
            in_mesh,
        };
        report_installed(g, &r, &ctx.home);
        Ok(())
    }

    pub fn uninstall(g: &Global, ctx: &Context) -> Outcome {
        let unit = systemd::unit_name(&ctx.home, ctx.default_home);
        let dir = systemd::unit_dir(
            std::env::var_os("XDG_CONFIG_HOME").as_deref(),
            &ctx.user_home,
        );
        let path = dir.join(&unit);
        // Refuse before stopping anything if the file is not ours.
        match read_existing(&path)? {
            Some(text) if !systemd::is_ours(&text) => return Err(not_ours(&path)),
            None => return remove_service_file(&path, systemd::is_ours),
            Some(_) => {}
        }
        let manager = user_manager();
        let mut stopped = false;
        if manager {
            match systemctl(&["disable", "--now", &unit]) {
                Some((true, _)) => stopped = true,
                Some((false, err)) => eprintln!(
                    "warning: systemctl --user disable --now {unit} failed ({err}); removing the unit file anyway"
                ),
                None => {}
            }
        }
        remove_service_file(&path, systemd::is_ours)?;
        let mut next = Vec::new();
        if manager {
            must(&["daemon-reload"], "reload its units")?;
        } else {
            // The link an earlier `enable` made would now point nowhere.
            if let Some(link) = systemd::wants_link(&dir, &unit) {
                let _ = fs::remove_file(link);
            }
            next = vec![
                format!("systemctl --user stop {unit}"),
                "systemctl --user daemon-reload".to_owned(),
            ];
        }
        report_uninstalled(
            g,
            &Uninstalled {
                manager: "systemd",
                unit,
                path,
                stopped,
                next,
            },
        );
        Ok(())
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
fn platform_install(g: &Global, ctx: &Context, argv: Vec<String>, in_mesh: bool) -> Outcome {
    systemd_side::install(g, ctx, argv, in_mesh)
}

#[cfg(all(unix, not(target_os = "macos")))]
fn platform_uninstall(g: &Global, ctx: &Context) -> Outcome {
    systemd_side::uninstall(g, ctx)
}

// ---------------------------------------------------------------- launchd

/// The launchd agent (macOS). Rendered and tested everywhere; installed
/// only on macOS, where it was written but not tested.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub mod launchd {
    use std::path::{Path, PathBuf};

    use super::home_hash;

    /// The line after the XML declaration of every plist written here.
    /// (An XML comment cannot hold `--`, hence the spelling.)
    pub const PLIST_MARK: &str = "<!-- Written by claudemesh serve (its install-service option); its uninstall-service option removes it. -->";

    const XML_DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

    /// The agent's label: `dev.claudemesh.serve` for the default home,
    /// else `dev.claudemesh.serve.<8 hex of sha256(home)>`.
    pub fn label(home: &Path, default_home: bool) -> String {
        if default_home {
            "dev.claudemesh.serve".to_owned()
        } else {
            format!("dev.claudemesh.serve.{}", home_hash(home))
        }
    }

    /// `~/Library/LaunchAgents`.
    pub fn agents_dir(user_home: &Path) -> PathBuf {
        user_home.join("Library").join("LaunchAgents")
    }

    /// Where the agent's output goes: `<home>/serve.log`.
    pub fn log_path(home: &Path) -> PathBuf {
        home.join("serve.log")
    }

    /// Text escaped for XML character data.
    pub fn xml_escape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&apos;"),
                c => out.push(c),
            }
        }
        out
    }

    /// The plist: `argv` is the whole command (binary first).
    pub fn render(label: &str, argv: &[String], log: &Path) -> String {
        let args: String = argv
            .iter()
            .map(|a| format!("\t\t<string>{}</string>\n", xml_escape(a)))
            .collect();
        let log = xml_escape(&log.display().to_string());
        format!(
            "{XML_DECL}\n\
             {PLIST_MARK}\n\
             <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
             <plist version=\"1.0\">\n\
             <dict>\n\
             \t<key>Label</key>\n\
             \t<string>{label}</string>\n\
             \t<key>ProgramArguments</key>\n\
             \t<array>\n\
             {args}\
             \t</array>\n\
             \t<key>RunAtLoad</key>\n\
             \t<true/>\n\
             \t<key>KeepAlive</key>\n\
             \t<dict>\n\
             \t\t<key>SuccessfulExit</key>\n\
             \t\t<false/>\n\
             \t</dict>\n\
             \t<key>ExitTimeOut</key>\n\
             \t<integer>30</integer>\n\
             \t<key>ProcessType</key>\n\
             \t<string>Background</string>\n\
             \t<key>StandardOutPath</key>\n\
             \t<string>{log}</string>\n\
             \t<key>StandardErrorPath</key>\n\
             \t<string>{log}</string>\n\
             </dict>\n\
             </plist>\n",
            label = xml_escape(label),
        )
    }

    /// Whether `text` is a plist written here.
    pub fn is_ours(text: &str) -> bool {
        text.strip_prefix(XML_DECL)
            .and_then(|rest| rest.strip_prefix('\n'))
            .is_some_and(|rest| rest.starts_with(PLIST_MARK))
    }
}

#[cfg(target_os = "macos")]
mod launchd_side {
    use super::*;

    /// `gui/<uid>`, the domain of the logged-in user's agents.
    fn domain() -> Option<String> {
        let out = std::process::Command::new("id")
            .arg("-u")
            .stdin(std::process::Stdio::null())
            .output()
            .ok()?;
        let uid = String::from_utf8(out.stdout).ok()?;
        let uid = uid.trim();
        (out.status.success() && !uid.is_empty()).then(|| format!("gui/{uid}"))
    }

    pub fn install(g: &Global, ctx: &Context, argv: Vec<String>, in_mesh: bool) -> Outcome {
        let label = launchd::label(&ctx.home, ctx.default_home);
        let dir = launchd::agents_dir(&ctx.user_home);
        let text = launchd::render(&label, &argv, &launchd::log_path(&ctx.home));
        let (path, action) =
            write_service_file(&dir, &format!("{label}.plist"), &text, launchd::is_ours)?;
        let plist = path.display().to_string();
        let mut started = false;
        if let Some(domain) = domain() {
            // A loaded older version is unloaded first (an error here only
            // means it was not loaded).
            let _ = run_tool("launchctl", &["bootout", &format!("{domain}/{label}")]);
            match run_tool("launchctl", &["bootstrap", &domain, &plist]) {
                Some((true, _)) => started = true,
                Some((false, err)) => {
                    return Err(manager_failed("launchctl", &format!("load {plist}"), &err)
                        .hint(format!("see `launchctl print {domain}/{label}`")));
                }
                None => {}
            }
        }
        let r = Installed {
            manager: "launchd",
            next: if started {
                Vec::new()
            } else {
                vec![format!("launchctl bootstrap gui/$(id -u) {plist}")]
            },
            unit: label,
            path,
            action,
            started,
            command: argv,
            in_mesh,
        };
        report_installed(g, &r, &ctx.home);
        Ok(())
    }

    pub fn uninstall(g: &Global, ctx: &Context) -> Outcome {
        let label = launchd::label(&ctx.home, ctx.default_home);
        let path = launchd::agents_dir(&ctx.user_home).join(format!("{label}.plist"));
        match read_existing(&path)? {
            Some(text) if !launchd::is_ours(&text) => return Err(not_ours(&path)),
            None => return remove_service_file(&path, launchd::is_ours),
            Some(_) => {}
        }
        let mut stopped = false;
        let mut next = Vec::new();
        match domain() {
            Some(domain) => {
                if let Some((ok, _)) =
                    run_tool("launchctl", &["bootout", &format!("{domain}/{label}")])
                {
                    // Failing means it was not loaded: nothing to stop.
                    stopped = ok;
                }
            }
            None => next.push(format!("launchctl bootout gui/$(id -u)/{label}")),
        }
        remove_service_file(&path, launchd::is_ours)?;
        report_uninstalled(
            g,
            &Uninstalled {
                manager: "launchd",
                unit: label,
                path,
                stopped,
                next,
            },
        );
        Ok(())
    }
}

#[cfg(target_os = "macos")]
fn platform_install(g: &Global, ctx: &Context, argv: Vec<String>, in_mesh: bool) -> Outcome {
    launchd_side::install(g, ctx, argv, in_mesh)
}

#[cfg(target_os = "macos")]
fn platform_uninstall(g: &Global, ctx: &Context) -> Outcome {
    launchd_side::uninstall(g, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval_mode::ApprovalMode;

    fn global() -> Global {
        Global {
            home: None,
            mesh: None,
            json: false,
            quiet: false,
            verbose: 0,
            policy: None,
            approval_mode: None,
            yes: false,
            ca: None,
        }
    }

    fn args() -> ServeArgs {
        ServeArgs {
            cmd: None,
            listen: DEFAULT_LISTEN.parse().unwrap(),
            unix: None,
            tls_cert: None,
            tls_key: None,
            insecure_listen: false,
            name: "serve".to_owned(),
            allow_hosts: Vec::new(),
            cors_origins: Vec::new(),
            rate: 50,
            install_service: true,
            uninstall_service: false,
        }
    }

    #[test]
    fn service_command_line_carries_options_with_absolute_paths() {
        let cwd = Path::new("/work/dir");
        let exe = Path::new("/opt/claude mesh/claudemesh");
        let home = Path::new("/home/a/100% home");
        // Defaults are left out.
        let argv = command_line(exe, home, &global(), &args(), cwd).unwrap();
        assert_eq!(
            argv,
            [
                "/opt/claude mesh/claudemesh",
                "--home",
                "/home/a/100% home",
                "serve"
            ]
        );
        let mut g = global();
        g.policy = Some("./pol.yaml".into());
        g.approval_mode = Some(ApprovalMode::ReadOnly);
        g.ca = Some("certs/ca.pem".into());
        let mut a = args();
        a.listen = "0.0.0.0:8443".parse().unwrap();
        a.tls_cert = Some("tls/cert.pem".into());
        a.tls_key = Some("/etc/key.pem".into());
        a.insecure_listen = true;
        a.name = "ci bot".to_owned();
        a.allow_hosts = vec!["mesh.example".to_owned(), "other.example".to_owned()];
        a.cors_origins = vec!["https://app.example".to_owned()];
        a.rate = 7;
        let argv = command_line(exe, home, &g, &a, cwd).unwrap();
        assert_eq!(
            argv,
            [
                "/opt/claude mesh/claudemesh",
                "--home",
                "/home/a/100% home",
                "--policy",
                "/work/dir/pol.yaml",
                "--approval-mode",
                "read-only",
                "--ca",
                "/work/dir/certs/ca.pem",
                "serve",
                "--listen",
                "0.0.0.0:8443",
                "--tls-cert",
                "/work/dir/tls/cert.pem",
                "--tls-key",
                "/etc/key.pem",
                "--insecure-listen",
                "--name",
                "ci bot",
                "--allow-host",
                "mesh.example",
                "--allow-host",
                "other.example",
                "--cors-origin",
                "https://app.example",
                "--rate",
                "7",
            ]
        );
        // --unix replaces --listen, made absolute.
        let mut a = args();
        a.unix = Some("run/gw.sock".into());
        let argv = command_line(exe, home, &global(), &a, cwd).unwrap();
        assert_eq!(argv[4..], ["--unix", "/work/dir/run/gw.sock"]);
        // A newline cannot go into a unit file.
        let mut a = args();
        a.name = "a\nb".to_owned();
        let e = command_line(exe, home, &global(), &a, cwd).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
    }

    #[test]
    fn service_paths_are_made_absolute_without_dots() {
        let cwd = Path::new("/w");
        assert_eq!(absolute(Path::new("./h/"), cwd), PathBuf::from("/w/h"));
        assert_eq!(absolute(Path::new("/a/./b/"), cwd), PathBuf::from("/a/b"));
        assert_eq!(absolute(Path::new("../x"), cwd), PathBuf::from("/w/../x"));
    }

    #[test]
    fn service_exec_start_quoting() {
        use systemd::quote;
        assert_eq!(quote("/usr/bin/claudemesh"), "/usr/bin/claudemesh");
        assert_eq!(quote("127.0.0.1:7901"), "127.0.0.1:7901");
        assert_eq!(quote("/a b/c"), "\"/a b/c\"");
        assert_eq!(quote("/x/100%"), "/x/100%%");
        assert_eq!(quote("/a b%c"), "\"/a b%%c\"");
        assert_eq!(quote("$HOME"), "$$HOME");
        assert_eq!(quote(r#"say "hi"\now"#), r#""say \"hi\"\\now""#);
        assert_eq!(quote("it's"), "\"it's\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote(";"), "\";\"");
        assert_eq!(quote("a\tb"), "\"a\\u0009b\"");
    }

    #[test]
    fn service_unit_content() {
        let home = Path::new("/home/a/my home%");
        let argv = command_line(
            Path::new("/opt/claude mesh/100%/claudemesh"),
            home,
            &global(),
            &ServeArgs {
                rate: 9,
                name: "gw".to_owned(),
                ..args()
            },
            Path::new("/"),
        )
        .unwrap();
        let unit = systemd::render(home, &argv);
        assert!(systemd::is_ours(&unit));
        assert!(unit.starts_with(systemd::HEADER));
        let lines: Vec<&str> = unit.lines().collect();
        for want in [
            "ExecStart=\"/opt/claude mesh/100%%/claudemesh\" --home \"/home/a/my home%%\" serve --name gw --rate 9",
            "Description=claudemesh gateway (claudemesh serve) for /home/a/my home%%",
            "Restart=on-failure",
            "KillSignal=SIGTERM",
            "TimeoutStopSec=30",
            "WantedBy=default.target",
            "[Unit]",
            "[Service]",
            "[Install]",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{unit}");
        }
        assert!(!systemd::is_ours("[Unit]\nDescription=someone else's\n"));
    }

    #[test]
    fn service_names_per_home() {
        let a = Path::new("/home/a/.claudemesh");
        let b = Path::new("/home/a/work");
        assert_eq!(systemd::unit_name(a, true), "claudemesh-serve.service");
        let nb = systemd::unit_name(b, false);
        let hash = &hex::encode(Sha256::digest(b"/home/a/work"))[..8];
        assert_eq!(nb, format!("claudemesh-serve-{hash}.service"));
        assert_ne!(nb, systemd::unit_name(Path::new("/home/a/play"), false));
        assert_eq!(launchd::label(a, true), "dev.claudemesh.serve");
        assert_eq!(
            launchd::label(b, false),
            format!("dev.claudemesh.serve.{hash}")
        );
        // Where units go.
        let user = Path::new("/home/a");
        assert_eq!(
            systemd::unit_dir(None, user),
            PathBuf::from("/home/a/.config/systemd/user")
        );
        assert_eq!(
            systemd::unit_dir(Some("/x/cfg".as_ref()), user),
            PathBuf::from("/x/cfg/systemd/user")
        );
        // A relative XDG_CONFIG_HOME is ignored, as the specification says.
        assert_eq!(
            systemd::unit_dir(Some("cfg".as_ref()), user),
            PathBuf::from("/home/a/.config/systemd/user")
        );
        assert_eq!(
            launchd::agents_dir(user),
            PathBuf::from("/home/a/Library/LaunchAgents")
        );
    }

    #[test]
    fn service_plist_rendering_escapes_xml() {
        let argv = vec![
            "/Applications/Claude & Mesh/claudemesh".to_owned(),
            "--home".to_owned(),
            "/Users/a/<home>".to_owned(),
            "serve".to_owned(),
            "--name".to_owned(),
            "it's \"ours\"".to_owned(),
        ];
        let plist = launchd::render(
            "dev.claudemesh.serve.0123abcd",
            &argv,
            Path::new("/Users/a/<home>/serve.log"),
        );
        assert!(launchd::is_ours(&plist));
        assert!(plist.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- "));
        // XML comments cannot hold "--".
        let mark = launchd::PLIST_MARK;
        assert!(!mark[4..mark.len() - 3].contains("--"));
        for want in [
            "<string>dev.claudemesh.serve.0123abcd</string>",
            "<string>/Applications/Claude &amp; Mesh/claudemesh</string>",
            "<string>/Users/a/&lt;home&gt;</string>",
            "<string>it&apos;s &quot;ours&quot;</string>",
            "<key>RunAtLoad</key>",
            "<key>KeepAlive</key>",
            "<key>StandardErrorPath</key>",
            "<string>/Users/a/&lt;home&gt;/serve.log</string>",
        ] {
            assert!(plist.contains(want), "missing {want:?} in\n{plist}");
        }
        assert!(!plist.contains("Claude & Mesh"));
        // The arguments are in order, one string each.
        let inside = plist
            .split("<key>ProgramArguments</key>")
            .nth(1)
            .and_then(|s| s.split("</array>").next())
            .unwrap();
        assert_eq!(inside.matches("<string>").count(), argv.len());
        assert!(!launchd::is_ours("<?xml version=\"1.0\"?>\n<plist/>"));
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn service_file_install_and_uninstall_touch_only_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("config/systemd/user");
        let name = "claudemesh-serve-0123abcd.service";
        let argv = vec!["/bin/claudemesh".to_owned(), "serve".to_owned()];
        let text = systemd::render(Path::new("/h"), &argv);
        let (path, action) = write_service_file(&dir, name, &text, systemd::is_ours).unwrap();
        assert_eq!(action, Action::Created);
        assert_eq!(path, dir.join(name));
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o644);
        let again = write_service_file(&dir, name, &text, systemd::is_ours).unwrap();
        assert_eq!(again.1, Action::Unchanged);
        let other = systemd::render(Path::new("/h"), &["/bin/x".to_owned()]);
        let replaced = write_service_file(&dir, name, &other, systemd::is_ours).unwrap();
        assert_eq!(replaced.1, Action::Replaced);
        remove_service_file(&path, systemd::is_ours).unwrap();
        assert!(!path.exists());
        // Twice: nothing to remove, exit 5.
        let e = remove_service_file(&path, systemd::is_ours).unwrap_err();
        assert_eq!(e.code, exit::NOT_FOUND);

        // A file someone else wrote is neither replaced nor removed.
        let foreign = "[Unit]\nDescription=mine\n";
        fs::write(&path, foreign).unwrap();
        let e = write_service_file(&dir, name, &text, systemd::is_ours).unwrap_err();
        assert_eq!(e.code, exit::EXISTS);
        let e = remove_service_file(&path, systemd::is_ours).unwrap_err();
        assert_eq!(e.code, exit::EXISTS);
        assert_eq!(fs::read_to_string(&path).unwrap(), foreign);
        // Nor is a symbolic link, even to one of ours.
        #[cfg(unix)]
        {
            let ours = tmp.path().join("ours.service");
            fs::write(&ours, &text).unwrap();
            let link = dir.join("linked.service");
            std::os::unix::fs::symlink(&ours, &link).unwrap();
            let e = remove_service_file(&link, systemd::is_ours).unwrap_err();
            assert_eq!(e.code, exit::EXISTS);
            assert!(ours.exists());
        }
    }

    #[cfg(unix)]
    #[test]
    fn service_wants_link_only_when_it_points_at_our_unit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let unit = "claudemesh-serve.service";
        fs::create_dir_all(dir.join("default.target.wants")).unwrap();
        assert_eq!(systemd::wants_link(dir, unit), None);
        let link = dir.join("default.target.wants").join(unit);
        std::os::unix::fs::symlink(dir.join(unit), &link).unwrap();
        assert_eq!(systemd::wants_link(dir, unit), Some(link.clone()));
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("/elsewhere/other.service", &link).unwrap();
        assert_eq!(systemd::wants_link(dir, unit), None);
    }

    /// `systemd-analyze verify` (when this machine has it) accepts the unit
    /// and finds the binary through the quoting of a path with a space and
    /// a `%`.
    #[cfg(unix)]
    #[test]
    fn service_unit_passes_systemd_analyze_verify() {
        let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
        else {
            eprintln!("no systemd-analyze here: skipped");
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let bin_dir = tmp.path().join("my %n bin");
        fs::create_dir_all(&bin_dir).unwrap();
        let exe = bin_dir.join("claudemesh");
        let real = ["/usr/bin/true", "/bin/true"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .unwrap();
        std::os::unix::fs::symlink(real, &exe).unwrap();
        let home = tmp.path().join("a home $x");
        let a = ServeArgs {
            name: "say \"hi\"; 50%".to_owned(),
            cors_origins: vec!["https://x.example".to_owned()],
            ..args()
        };
        let argv = command_line(&exe, &home, &global(), &a, tmp.path()).unwrap();
        let unit = systemd::render(&home, &argv);
        let path = tmp.path().join(systemd::unit_name(&home, false));
        fs::write(&path, &unit).unwrap();
        let out = std::process::Command::new(analyze)
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "systemd-analyze verify failed:\n{}\n{unit}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A path whose `%` was not doubled is caught by it.
        let broken = unit.replace("my %%n bin", "my %n bin");
        fs::write(&path, broken).unwrap();
        let out = std::process::Command::new(analyze)
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
}

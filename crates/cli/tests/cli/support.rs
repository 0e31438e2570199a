//! What every scenario test shares: a broker in this process, a person
//! with their own home running the binary, what one run did (with the
//! assertions about exit codes and error lines), and small readers of
//! homes and JSON output.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use claudemesh_broker::config::BrokerConfig;
use claudemesh_broker::server::{BrokerState, RunningBroker};
use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_claudemesh");

/// Exit codes from `docs/cli.md`.
pub(crate) mod code {
    pub const OK: i32 = 0;
    pub const REFUSED: i32 = 2;
    pub const USAGE: i32 = 3;
    pub const NETWORK: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const EXISTS: i32 = 6;
    pub const DENIED: i32 = 7;
    pub const SECURITY: i32 = 11;
    pub const CONFLICT: i32 = 12;
}

/// A broker in this process (one tokio runtime), on SQLite in a temporary
/// directory that also holds every home of the test.
pub(crate) struct Broker {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) running: Option<RunningBroker>,
    pub(crate) url: String,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) quiet: Quiet,
}

/// How to tell that the broker has finished with the commands that ran:
/// its open connections are down to `background` (long-running commands
/// such as `inbox --watch`).
///
/// Each command waits for this before the next starts, as a person typing
/// one command after another would. Without it the broker may still be
/// announcing the last command's departure while the next one shakes
/// hands, and it can queue that `presence` frame ahead of `welcome`, which
/// the client refuses (exit 8, "unexpected presence frame"). That is a
/// broker bug (`hello` in crates/broker/src/conn.rs adds the session to the
/// mesh before it queues `welcome`), hit by about one connection in a few
/// hundred when several connect at once.
#[derive(Clone)]
pub(crate) struct Quiet {
    pub(crate) state: Arc<BrokerState>,
    pub(crate) background: Arc<AtomicUsize>,
}

impl Quiet {
    pub(crate) fn wait(&self) {
        for _ in 0..5000 {
            if self.state.connections.count() <= self.background.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Broker {
    pub(crate) fn start() -> Broker {
        let dir = tempfile::tempdir().expect("temporary directory");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let config = BrokerConfig::with_sqlite_file(&dir.path().join("broker.db"));
        Broker::start_with(rt, dir, config)
    }

    /// The same broker on a fresh Postgres database (`DATABASE_URL`, or
    /// the local server tests use); the homes stay in a temporary
    /// directory. The database is dropped after the broker stops.
    pub(crate) fn start_postgres() -> PgBroker {
        let dir = tempfile::tempdir().expect("temporary directory");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let db = rt
            .block_on(claudemesh_broker::testing::fresh_postgres_url())
            .expect("Postgres for tests");
        let config = BrokerConfig {
            database_url: db.url().to_owned(),
            ..BrokerConfig::with_sqlite_file(&dir.path().join("unused.db"))
        };
        PgBroker {
            broker: Broker::start_with(rt, dir, config),
            _db: db,
        }
    }

    fn start_with(
        rt: tokio::runtime::Runtime,
        dir: tempfile::TempDir,
        config: BrokerConfig,
    ) -> Broker {
        let running = rt
            .block_on(claudemesh_broker::server::start(config))
            .expect("broker starts");
        let url = running.ws_url();
        let quiet = Quiet {
            state: running.state.clone(),
            background: Arc::new(AtomicUsize::new(0)),
        };
        Broker {
            rt,
            running: Some(running),
            url,
            dir,
            quiet,
        }
    }

    /// A person with their own (not yet created) home.
    pub(crate) fn user(&self, name: &str) -> User {
        User {
            home: self.dir.path().join(name),
            quiet: Some(self.quiet.clone()),
        }
    }

    /// Shuts the broker down (its port then refuses connections).
    pub(crate) fn stop(&mut self) {
        if let Some(b) = self.running.take() {
            self.rt.block_on(b.shutdown());
        }
    }

    /// Starts the broker again after [`Broker::stop`]: on the same port
    /// and the same SQLite file, so clients that were connected reconnect
    /// to the same store. (The commands' [`Quiet`] still counts the first
    /// broker's connections, none by now: they no longer wait for this
    /// one.)
    pub(crate) fn restart(&mut self) {
        assert!(self.running.is_none(), "the broker still runs");
        let addr: std::net::SocketAddr = self
            .url
            .strip_prefix("ws://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("not a ws:// URL with an address: {}", self.url));
        let mut config = BrokerConfig::with_sqlite_file(&self.dir.path().join("broker.db"));
        config.listen = addr;
        // The port was just closed; a moment may pass before it binds.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let running = loop {
            match self
                .rt
                .block_on(claudemesh_broker::server::start(config.clone()))
            {
                Ok(r) => break r,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("the broker does not start again yet: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("the broker does not start again on {addr}: {e}"),
            }
        };
        assert_eq!(running.ws_url(), self.url);
        self.running = Some(running);
    }

    /// Tells the commands how many connections stay open between them.
    pub(crate) fn background_connections(&self, n: usize) {
        self.quiet.background.store(n, Ordering::SeqCst);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(b) = self.running.take() {
            self.rt.block_on(b.shutdown());
        }
    }
}

/// A [`Broker`] on its own Postgres database: the broker stops first (its
/// field comes first), then the database is dropped.
pub(crate) struct PgBroker {
    pub(crate) broker: Broker,
    _db: claudemesh_broker::testing::TestDatabase,
}

impl std::ops::Deref for PgBroker {
    type Target = Broker;
    fn deref(&self) -> &Broker {
        &self.broker
    }
}

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Asserts success and returns itself.
    #[track_caller]
    pub(crate) fn ok(self) -> Run {
        assert_eq!(
            self.code,
            code::OK,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts a failure with `code`: nothing on stdout, and on stderr one
    /// `error:` line, optionally followed by one `hint:` line.
    #[track_caller]
    pub(crate) fn fails(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit code {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stdout, "", "errors must not go to stdout: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(
            lines.len() == 1 || lines.len() == 2,
            "one error line plus at most one hint: {self:?}"
        );
        assert!(lines[0].starts_with("error: "), "{self:?}");
        if let Some(hint) = lines.get(1) {
            assert!(hint.starts_with("hint: "), "{self:?}");
        }
        self
    }

    /// Asserts the failure has a hint line.
    #[track_caller]
    pub(crate) fn with_hint(self) -> Run {
        assert!(
            self.stderr
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("hint: ")),
            "expected a hint: {self:?}"
        );
        self
    }

    /// Asserts a `--json` failure: nothing on stdout, and exactly one JSON
    /// object on stderr with `error.kind` and `error.code`; returns it.
    #[track_caller]
    pub(crate) fn fails_json(self, code: i32, kind: &str) -> Value {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(self.stdout, "", "errors must not go to stdout: {self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:?}");
        let v: Value = serde_json::from_str(&self.stderr).expect("stderr is JSON");
        assert_eq!(v["error"]["kind"], kind, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        v
    }

    /// stdout as JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The last line of stdout.
    pub(crate) fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or_default()
    }
}

/// One person's home on this machine.
#[derive(Clone)]
pub(crate) struct User {
    pub(crate) home: PathBuf,
    pub(crate) quiet: Option<Quiet>,
}

impl User {
    /// A home with no broker around.
    pub(crate) fn at(home: PathBuf) -> User {
        User { home, quiet: None }
    }

    /// Runs a command built elsewhere and waits for it and the broker.
    pub(crate) fn run_cmd(&self, c: Command) -> Run {
        let r = run(c);
        if let Some(q) = &self.quiet {
            q.wait();
        }
        r
    }

    /// A command for the binary with this home in `CLAUDEMESH_HOME` and
    /// nothing else from the caller's environment that claudemesh reads.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = bare_command(args);
        c.env("CLAUDEMESH_HOME", &self.home);
        c
    }

    /// Runs `claudemesh <args>` and waits for it.
    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.run_cmd(self.command(args))
    }

    /// Runs it with `input` on stdin.
    pub(crate) fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut c = self.command(args);
        c.stdin(Stdio::piped());
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn claudemesh");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait for claudemesh");
        if let Some(q) = &self.quiet {
            q.wait();
        }
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `mesh create <mesh> --broker <url> --name <name>`.
    pub(crate) fn create(&self, broker: &Broker, mesh: &str, name: &str) {
        self.run(&[
            "mesh",
            "create",
            mesh,
            "--broker",
            &broker.url,
            "--name",
            name,
        ])
        .ok();
    }

    /// `mesh share` (of the default mesh, or `--mesh`): the invite URL
    /// from the last line of stdout.
    pub(crate) fn share(&self, extra: &[&str]) -> String {
        let mut args = extra.to_vec();
        args.extend(["mesh", "share"]);
        let r = self.run(&args).ok();
        assert_eq!(r.stdout.lines().count(), 1, "only the URL on stdout: {r:?}");
        r.last_line().to_owned()
    }

    /// `join <url> --name <name>`.
    pub(crate) fn join(&self, url: &str, name: &str) {
        self.run(&["join", url, "--name", name]).ok();
    }

    /// `send <to> <text>`: the message id it printed.
    pub(crate) fn send(&self, to: &str, text: &str) -> String {
        let r = self.run(&["send", to, text]).ok();
        assert_eq!(r.stdout.lines().count(), 1, "only the id on stdout: {r:?}");
        let id = r.stdout.trim().to_owned();
        assert!(is_message_id(&id), "{r:?}");
        id
    }

    /// `inbox --json` (with `extra` flags in front).
    pub(crate) fn inbox_json(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = extra.to_vec();
        args.extend(["--json", "inbox"]);
        let r = self.run(&args).ok();
        r.json()
            .as_array()
            .expect("inbox --json is an array")
            .clone()
    }

    /// This person's member key, from `peer list --json`.
    pub(crate) fn key_of(&self, name: &str) -> String {
        let peers = self.run(&["peer", "list", "--json"]).ok().json();
        peers
            .as_array()
            .expect("array")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["key"].as_str())
            .unwrap_or_else(|| panic!("no peer {name} in {peers}"))
            .to_owned()
    }
}

/// A command for the binary with claudemesh's own variables removed.
pub(crate) fn bare_command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("CLAUDEMESH_HOME")
        .env_remove("CLAUDEMESH_MESH")
        .env_remove("CLAUDEMESH_BROKER_URL")
        .env_remove("CLAUDEMESH_LOG")
        .env_remove("CLAUDEMESH_POLICY")
        .env_remove("CLAUDEMESH_APPROVAL_MODE")
        .env_remove("CLAUDEMESH_PASSPHRASE")
        .env_remove("CLAUDEMESH_CHANNELS")
        .env_remove("CLAUDEMESH_SESSION_NAME")
        .env_remove("CLAUDEMESH_CA")
        .env("USER", "tester")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

pub(crate) fn run(mut c: Command) -> Run {
    let out = c.output().expect("run claudemesh");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) fn is_message_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A websocket URL where nothing listens.
pub(crate) fn dead_broker_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("ws://127.0.0.1:{port}")
}

/// Bodies of an `inbox --json` array.
pub(crate) fn bodies(msgs: &[Value]) -> Vec<&str> {
    msgs.iter().filter_map(|m| m["body"].as_str()).collect()
}

/// `message status <id> --json` until `name`'s state is `want`. The shown
/// receipt travels after `inbox` has printed, so the broker may record it a
/// moment after the recipient's process exits; this asks again rather than
/// waiting a fixed time.
#[track_caller]
pub(crate) fn status_becomes(sender: &User, id: &str, name: &str, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = sender.run(&["message", "status", id, "--json"]).ok().json();
        let state = last["recipients"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == name))
            .and_then(|r| r["state"].as_str())
            .map(str::to_owned);
        if state.as_deref() == Some(want) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{name} never became {want}: {last}");
}

/// A passphrase long enough for a backup.
pub(crate) const PASS: &str = "correct horse battery staple";

impl User {
    /// `claudemesh <args>` with `CLAUDEMESH_PASSPHRASE` set.
    pub(crate) fn run_with_pass(&self, pass: &str, args: &[&str]) -> Run {
        let mut c = self.command(args);
        c.env("CLAUDEMESH_PASSPHRASE", pass);
        self.run_cmd(c)
    }

    /// Runs `claudemesh <args>` on a terminal (script(1) gives it a pty),
    /// typing `input`; `None` when script(1) is not installed.
    pub(crate) fn run_on_tty(&self, args: &[&str], input: &str) -> Option<Run> {
        let probe = Command::new("script").arg("--version").output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!("skipping the terminal part: script(1) is not installed");
            return None;
        }
        let mut line = shell_quote(BIN);
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        let c = bare_command(&[]);
        let mut c2 = Command::new("script");
        c2.args(["-qec", &line, "/dev/null"]);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => c2.env(k, v),
                None => c2.env_remove(k),
            };
        }
        c2.env("CLAUDEMESH_HOME", &self.home).env("TERM", "dumb");
        c2.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c2.spawn().expect("spawn script");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("type on the terminal");
        let out = child.wait_with_output().expect("wait for script");
        if let Some(q) = &self.quiet {
            q.wait();
        }
        Some(Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `audit list --json`: the decisions, oldest first.
    pub(crate) fn audit(&self) -> Vec<Value> {
        self.run(&["--json", "audit", "list", "--limit", "1000"])
            .ok()
            .json()
            .as_array()
            .expect("audit list --json is an array")
            .clone()
    }
}

pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Every file under `dir`: its mode and bytes (to show nothing changed).
pub(crate) fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, (u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode();
        out.insert(d.clone(), (mode, Vec::new()));
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode();
                out.insert(p.clone(), (mode, std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// The directories beside `home` that a restore made (dated copies, and
/// fresh directories it should have removed).
pub(crate) fn beside(home: &Path) -> Vec<String> {
    let name = home.file_name().unwrap().to_str().unwrap().to_owned();
    let mut v: Vec<String> = std::fs::read_dir(home.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with(&format!("{name}.before-restore-"))
                || n.starts_with(&format!(".{name}.restoring"))
        })
        .collect();
    v.sort();
    v
}

pub(crate) fn decisions(audit: &[Value]) -> Vec<(String, String)> {
    audit
        .iter()
        .map(|e| {
            (
                e["decision"].as_str().unwrap_or_default().to_owned(),
                e["verb"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `claudemesh --json serve` (on `127.0.0.1:0` unless told otherwise)
/// running beside the test, for one home: where it listens (from the line
/// it prints once it serves), and its pid. Its broker connections (one
/// per mesh) count as background connections (see [`Quiet`]) while it
/// runs. Dropping it stops it as a service manager would (SIGTERM;
/// SIGKILL only if it does not exit).
pub(crate) struct Gateway {
    child: Option<std::process::Child>,
    /// Where it listens, as it printed it: `http://127.0.0.1:<port>`
    /// (`https://…` with TLS, `unix:<path>` on a Unix socket).
    pub(crate) url: String,
    /// Its process id.
    pub(crate) pid: u32,
    /// The meshes it serves.
    pub(crate) meshes: Vec<String>,
    /// Where its stderr goes.
    pub(crate) stderr: PathBuf,
    quiet: Option<Quiet>,
}

/// How long a gateway may take to print where it listens, or to exit
/// once told to.
const GATEWAY_PATIENCE: Duration = Duration::from_secs(20);

impl User {
    /// Starts `claudemesh --json serve --listen 127.0.0.1:0 <extra>` and
    /// waits for the line that says it serves.
    pub(crate) fn serve(&self, extra: &[&str]) -> Gateway {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let gw = self.serve_with(&args);
        assert!(gw.url.starts_with("http://127.0.0.1:"), "{}", gw.url);
        gw
    }

    /// Starts `claudemesh --json serve <args>` (where it listens is up to
    /// `args`: `--listen`, `--unix`, TLS) and waits for the line that says
    /// it serves.
    pub(crate) fn serve_with(&self, args: &[&str]) -> Gateway {
        use std::io::BufRead as _;
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::SeqCst);
        let name = self
            .home
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stderr = self.home.with_file_name(format!("{name}.serve-{n}.stderr"));
        let mut all = vec!["--json", "serve"];
        all.extend_from_slice(args);
        let mut c = self.command(&all);
        c.stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let mut child = c.spawn().expect("spawn claudemesh serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Anything more (there should be nothing) is read, not kept.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(GATEWAY_PATIENCE) {
            Ok(line) if !line.trim().is_empty() => line,
            other => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "serve printed no line ({other:?}); it exited with {status:?}; stderr:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
        };
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("serve's first line is not a JSON object ({e}): {line:?}"));
        let url = v["listening"].as_str().expect("listening").to_owned();
        let pid = u32::try_from(v["pid"].as_u64().expect("pid")).expect("pid");
        assert_eq!(pid, child.id(), "{v}");
        let meshes: Vec<String> = v["meshes"]
            .as_array()
            .expect("meshes")
            .iter()
            .map(|m| m.as_str().expect("mesh name").to_owned())
            .collect();
        if let Some(q) = &self.quiet {
            q.background.fetch_add(meshes.len(), Ordering::SeqCst);
        }
        Gateway {
            child: Some(child),
            url,
            pid,
            meshes,
            stderr,
            quiet: self.quiet.clone(),
        }
    }
}

impl Gateway {
    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the URL")
    }

    /// The Unix socket it listens on (`--unix`).
    pub(crate) fn unix_socket(&self) -> Option<&Path> {
        self.url.strip_prefix("unix:").map(Path::new)
    }

    /// SIGKILL, as a crash would end it (no draining, nothing removed):
    /// its exit status.
    #[track_caller]
    pub(crate) fn kill(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("it runs");
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("wait for the gateway");
        if let Some(q) = &self.quiet {
            q.background.fetch_sub(self.meshes.len(), Ordering::SeqCst);
        }
        status
    }

    /// What it wrote on stderr so far.
    pub(crate) fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then waits for it to exit: its exit status and how long
    /// that took. Panics if it is still running after [`GATEWAY_PATIENCE`].
    #[track_caller]
    pub(crate) fn stop(mut self) -> (std::process::ExitStatus, Duration) {
        let started = std::time::Instant::now();
        match self.terminate() {
            Some(status) => (status, started.elapsed()),
            None => panic!(
                "the gateway did not exit within {GATEWAY_PATIENCE:?} of SIGTERM; stderr:\n{}",
                self.stderr_text()
            ),
        }
    }

    /// Sends SIGTERM and waits; kills it if it does not exit in time
    /// (`None` then).
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + GATEWAY_PATIENCE;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        if let Some(q) = &self.quiet {
            q.background.fetch_sub(self.meshes.len(), Ordering::SeqCst);
        }
        status
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.terminate();
    }
}

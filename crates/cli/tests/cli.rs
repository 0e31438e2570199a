//! Scenario tests for the `claudemesh` command line: each test drives the
//! real binary the way a user (or a script) types it, with separate homes
//! for each person on one machine, against a broker running in this test
//! process on a temporary SQLite database. `docs/cli.md` is the contract
//! these tests hold the binary to.

// Helpers outside `#[test]` functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use claudemesh_broker::config::BrokerConfig;
use claudemesh_broker::server::{BrokerState, RunningBroker};
use serde_json::Value;

#[path = "cli/tls.rs"]
mod tls;

const BIN: &str = env!("CARGO_BIN_EXE_claudemesh");

/// `install`, `uninstall` and `launch` (against a fake home).
#[path = "cli/install.rs"]
mod install;
#[path = "cli/mcp.rs"]
mod mcp;
/// Names a malicious member chooses: squatted session names, a second
/// "alice", and what `send`, `inbox`, `topic history` and the MCP server
/// show for them.
#[path = "cli/names.rs"]
mod names;

/// Exit codes from `docs/cli.md`.
mod code {
    pub const OK: i32 = 0;
    pub const REFUSED: i32 = 2;
    pub const USAGE: i32 = 3;
    pub const NETWORK: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const EXISTS: i32 = 6;
    pub const DENIED: i32 = 7;
    pub const SECURITY: i32 = 11;
}

/// A broker in this process (one tokio runtime), on SQLite in a temporary
/// directory that also holds every home of the test.
struct Broker {
    rt: tokio::runtime::Runtime,
    running: Option<RunningBroker>,
    url: String,
    dir: tempfile::TempDir,
    quiet: Quiet,
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
struct Quiet {
    state: Arc<BrokerState>,
    background: Arc<AtomicUsize>,
}

impl Quiet {
    fn wait(&self) {
        for _ in 0..5000 {
            if self.state.connections.count() <= self.background.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().expect("temporary directory");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let config = BrokerConfig::with_sqlite_file(&dir.path().join("broker.db"));
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
    fn user(&self, name: &str) -> User {
        User {
            home: self.dir.path().join(name),
            quiet: Some(self.quiet.clone()),
        }
    }

    /// Shuts the broker down (its port then refuses connections).
    fn stop(&mut self) {
        if let Some(b) = self.running.take() {
            self.rt.block_on(b.shutdown());
        }
    }

    /// Tells the commands how many connections stay open between them.
    fn background_connections(&self, n: usize) {
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

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and returns itself.
    #[track_caller]
    fn ok(self) -> Run {
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
    fn fails(self, code: i32) -> Run {
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
    fn with_hint(self) -> Run {
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
    fn fails_json(self, code: i32, kind: &str) -> Value {
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
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The last line of stdout.
    fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or_default()
    }
}

/// One person's home on this machine.
#[derive(Clone)]
struct User {
    home: PathBuf,
    quiet: Option<Quiet>,
}

impl User {
    /// A home with no broker around.
    fn at(home: PathBuf) -> User {
        User { home, quiet: None }
    }

    /// Runs a command built elsewhere and waits for it and the broker.
    fn run_cmd(&self, c: Command) -> Run {
        let r = run(c);
        if let Some(q) = &self.quiet {
            q.wait();
        }
        r
    }

    /// A command for the binary with this home in `CLAUDEMESH_HOME` and
    /// nothing else from the caller's environment that claudemesh reads.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = bare_command(args);
        c.env("CLAUDEMESH_HOME", &self.home);
        c
    }

    /// Runs `claudemesh <args>` and waits for it.
    fn run(&self, args: &[&str]) -> Run {
        self.run_cmd(self.command(args))
    }

    /// Runs it with `input` on stdin.
    fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
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
    fn create(&self, broker: &Broker, mesh: &str, name: &str) {
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
    fn share(&self, extra: &[&str]) -> String {
        let mut args = extra.to_vec();
        args.extend(["mesh", "share"]);
        let r = self.run(&args).ok();
        assert_eq!(r.stdout.lines().count(), 1, "only the URL on stdout: {r:?}");
        r.last_line().to_owned()
    }

    /// `join <url> --name <name>`.
    fn join(&self, url: &str, name: &str) {
        self.run(&["join", url, "--name", name]).ok();
    }

    /// `send <to> <text>`: the message id it printed.
    fn send(&self, to: &str, text: &str) -> String {
        let r = self.run(&["send", to, text]).ok();
        assert_eq!(r.stdout.lines().count(), 1, "only the id on stdout: {r:?}");
        let id = r.stdout.trim().to_owned();
        assert!(is_message_id(&id), "{r:?}");
        id
    }

    /// `inbox --json` (with `extra` flags in front).
    fn inbox_json(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = extra.to_vec();
        args.extend(["--json", "inbox"]);
        let r = self.run(&args).ok();
        r.json()
            .as_array()
            .expect("inbox --json is an array")
            .clone()
    }

    /// This person's member key, from `peer list --json`.
    fn key_of(&self, name: &str) -> String {
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
fn bare_command(args: &[&str]) -> Command {
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

fn run(mut c: Command) -> Run {
    let out = c.output().expect("run claudemesh");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn is_message_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A websocket URL where nothing listens.
fn dead_broker_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("ws://127.0.0.1:{port}")
}

/// Bodies of an `inbox --json` array.
fn bodies(msgs: &[Value]) -> Vec<&str> {
    msgs.iter().filter_map(|m| m["body"].as_str()).collect()
}

/// `message status <id> --json` until `name`'s state is `want`. The read
/// receipt travels after `inbox` has printed, so the broker may record it a
/// moment after the recipient's process exits; this asks again rather than
/// waiting a fixed time.
#[track_caller]
fn status_becomes(sender: &User, id: &str, name: &str, want: &str) -> Value {
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

#[test]
fn readme_flow_create_share_join_send_while_offline_read_once() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");

    let created = alice
        .run(&[
            "mesh",
            "create",
            "team",
            "--broker",
            &broker.url,
            "--name",
            "alice",
        ])
        .ok();
    assert!(created.stdout.contains("team"), "{created:?}");

    // The invite URL is the last line of stdout; what it means goes to stderr.
    let shared = alice.run(&["mesh", "share"]).ok();
    let url = shared.last_line().to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/join#"),
        "{shared:?}"
    );
    assert!(shared.stderr.contains("revoke-invite"), "{shared:?}");

    let joined = bob.run(&["join", &url, "--name", "bob"]).ok();
    assert!(joined.stdout.contains("team"), "{joined:?}");

    // bob is offline (no process of his runs): the broker queues it.
    let id = alice.send("bob", "hello bob, from alice");
    let queued = alice.run(&["message", "status", &id]).ok();
    assert!(queued.stdout.contains(&id), "{queued:?}");
    assert!(queued.stdout.contains("bob"), "{queued:?}");

    let first = bob.run(&["inbox"]).ok();
    assert_eq!(
        first.stdout.matches("hello bob, from alice").count(),
        1,
        "{first:?}"
    );
    assert!(first.stdout.contains("alice"), "{first:?}");
    assert!(first.stdout.contains(&id), "{first:?}");

    let second = bob.run(&["inbox"]).ok();
    assert!(
        second.stdout.to_lowercase().contains("no unread"),
        "{second:?}"
    );
    assert!(!second.stdout.contains("hello bob"), "{second:?}");

    // And alice sees that bob read it.
    let status = status_becomes(&alice, &id, "bob", "read");
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["state"], "accepted");

    // bob answers; alice reads it.
    bob.send("alice", "hi alice");
    let got = alice.run(&["message", "inbox"]).ok();
    assert!(
        got.stdout.contains("bob") && got.stdout.contains("hi alice"),
        "{got:?}"
    );
}

#[test]
fn json_output_has_the_documented_shapes() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");

    let created = alice
        .run(&[
            "--json",
            "mesh",
            "create",
            "team",
            "--broker",
            &broker.url,
            "--name",
            "alice",
        ])
        .ok()
        .json();
    assert_eq!(created["name"], "team");
    assert_eq!(created["broker"], broker.url.as_str());
    assert_eq!(created["display_name"], "alice");
    assert_eq!(created["default"], true);
    let mesh_id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(mesh_id.len(), 64);

    let shared = alice.run(&["mesh", "share", "--json"]).ok().json();
    let url = shared["url"].as_str().expect("url").to_owned();
    assert!(url.contains("/join#"), "{shared}");
    assert!(
        shared["app_url"]
            .as_str()
            .expect("app_url")
            .starts_with("claudemesh://join/")
    );
    assert_eq!(shared["id"].as_str().expect("id").len(), 64);
    assert_eq!(shared["max_uses"], 1);
    assert_eq!(shared["role"], "member");
    assert!(shared["expires_at"].as_u64().is_some());

    let joined = bob
        .run(&["join", &url, "--name", "bob", "--json"])
        .ok()
        .json();
    assert_eq!(joined["id"], mesh_id.as_str());
    assert_eq!(joined["display_name"], "bob");

    let meshes = bob.run(&["mesh", "list", "--json"]).ok().json();
    assert_eq!(meshes.as_array().map(Vec::len), Some(1), "{meshes}");
    assert_eq!(meshes[0]["id"], mesh_id.as_str());

    let sent = alice
        .run(&["--json", "send", "bob", "json hello", "--priority", "now"])
        .ok()
        .json();
    let id = sent["id"].as_str().expect("id").to_owned();
    assert!(is_message_id(&id), "{sent}");
    assert_eq!(sent["to"], "bob");
    assert!(sent["seq"].as_u64().is_some());

    let peers = alice.run(&["peer", "list", "--json"]).ok().json();
    let peers = peers.as_array().expect("array");
    assert_eq!(peers.len(), 2);
    let me = peers.iter().find(|p| p["you"] == true).expect("you");
    assert_eq!(me["name"], "alice");
    assert_eq!(me["role"], "owner");
    let b = peers.iter().find(|p| p["name"] == "bob").expect("bob");
    assert_eq!(b["role"], "member");
    assert_eq!(b["online"], false);
    assert_eq!(b["key"].as_str().map(str::len), Some(64));
    assert!(b["sessions"].as_array().is_some());
    assert!(b["status"].is_string());
    // `peers` is the same command.
    assert_eq!(
        alice
            .run(&["--json", "peers"])
            .ok()
            .json()
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let msgs = bob.inbox_json(&[]);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let m = &msgs[0];
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["from"], me["key"]);
    assert_eq!(m["from_name"], "alice");
    assert_eq!(
        m["target"],
        format!("member:{}", b["key"].as_str().unwrap_or_default())
    );
    assert_eq!(m["body"], "json hello");
    assert_eq!(m["priority"], "now");
    assert!(m["sent_at"].as_u64().is_some_and(|t| t > 1_600_000_000_000));
    assert!(bob.inbox_json(&[]).is_empty(), "read once");

    // --all shows read ones too.
    let all = bob
        .run(&["message", "inbox", "--all", "--json"])
        .ok()
        .json();
    assert_eq!(all[0]["read"], true, "{all}");

    let status = status_becomes(&alice, &id, "bob", "read");
    assert_eq!(status["recipients"][0]["key"], b["key"]);
    assert!(status["seq"].as_u64().is_some());

    let st = bob.run(&["status", "--json"]).ok().json();
    assert_eq!(st[0]["reachable"], true, "{st}");
    assert_eq!(st[0]["role"], "member");
    assert!(st[0]["clock_skew_ms"].as_i64().is_some());
    assert!(st[0]["protocol"].as_u64().is_some());
}

#[test]
fn every_way_of_joining_works() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");

    // A bare `claudemesh <url>`, with join's flags after it.
    let url = alice.share(&[]);
    let bob = broker.user("bob");
    bob.run(&[&url, "--name", "bob"]).ok();

    // `mesh join` and its alias `mesh add`.
    let carol = broker.user("carol");
    carol
        .run(&["mesh", "join", &alice.share(&[]), "--name", "carol"])
        .ok();
    let dan = broker.user("dan");
    dan.run(&["mesh", "add", &alice.share(&[]), "--name", "dan"])
        .ok();

    // The claudemesh:// form, and the bare token; --home instead of the env.
    let shared = alice.run(&["mesh", "share", "--json"]).ok().json();
    let app = shared["app_url"].as_str().expect("app_url");
    let erin = broker.user("erin");
    erin.run_cmd(bare_command(&[
        "--home",
        erin.home.to_str().expect("utf-8 path"),
        "join",
        app,
        "--name",
        "erin",
    ]))
    .ok();
    let shared = alice.run(&["mesh", "share", "--json"]).ok().json();
    let token = shared["app_url"]
        .as_str()
        .and_then(|u| u.strip_prefix("claudemesh://join/"))
        .expect("token");
    broker.user("fay").join(token, "fay");

    // Global flags may come before the bare URL too.
    let url = alice.share(&[]);
    let gus = broker.user("gus");
    let r = gus.run(&["--json", &url, "--name", "gus"]).ok().json();
    assert_eq!(r["display_name"], "gus");

    let peers = alice.run(&["peer", "list", "--json"]).ok().json();
    let mut names: Vec<&str> = peers
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["alice", "bob", "carol", "dan", "erin", "fay", "gus"]
    );

    // The same invite twice: this device is already in the mesh.
    let url = alice.share(&[]);
    bob.run(&["join", &url, "--name", "bob"])
        .fails(code::EXISTS);
    // An invite for one use cannot be used twice.
    broker.user("hal").join(&url, "hal");
    broker
        .user("ivy")
        .run(&["join", &url, "--name", "ivy"])
        .fails(code::REFUSED)
        .with_hint();
}

#[test]
fn send_by_display_name_key_prefix_and_stdin() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");

    let key = alice.key_of("bob");
    let by_name = alice.send("bob", "by name");
    let by_case = alice.send("BOB", "by name, any case");
    let by_prefix = alice.send(&key[..8], "by 8 hex digits");
    let by_upper = alice.send(&key[..12].to_uppercase(), "by 12 upper-case hex digits");
    let by_member = alice.send(&format!("member:{key}"), "by member:<key>");
    let by_stdin = {
        let r = alice
            .run_with_stdin(&["message", "send", "bob", "-"], "from stdin")
            .ok();
        r.stdout.trim().to_owned()
    };
    let urgent = alice
        .run(&[
            "send",
            "bob",
            "urgent",
            "--priority",
            "now",
            "--reply-to",
            &by_name,
        ])
        .ok()
        .stdout
        .trim()
        .to_owned();

    // Seven hex digits are not a key prefix (nor a name).
    alice
        .run(&["send", &key[..7], "too short"])
        .fails(code::NOT_FOUND);

    let msgs = bob.inbox_json(&[]);
    let ids: Vec<&str> = msgs.iter().filter_map(|m| m["id"].as_str()).collect();
    let want = [
        &by_name, &by_case, &by_prefix, &by_upper, &by_member, &by_stdin, &urgent,
    ];
    assert_eq!(ids, want.map(String::as_str));
    assert_eq!(
        bodies(&msgs),
        [
            "by name",
            "by name, any case",
            "by 8 hex digits",
            "by 12 upper-case hex digits",
            "by member:<key>",
            "from stdin",
            "urgent"
        ]
    );
    assert_eq!(msgs[6]["priority"], "now");
    assert_eq!(msgs[6]["reply_to"], by_name.as_str());
    assert!(msgs.iter().all(|m| m["from_name"] == "alice"));
}

#[test]
fn busy_recipient_still_gets_everything_with_inbox() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");

    bob.run(&["profile", "status", "dnd"]).ok();
    bob.run(&["profile", "summary", "fixing the build"]).ok();
    let peers = alice.run(&["peer", "list", "--json"]).ok().json();
    let b = peers
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "bob"))
        .expect("bob");
    assert_eq!(b["status"], "dnd", "{peers}");
    assert_eq!(b["summary"], "fixing the build", "{peers}");

    alice
        .run(&["send", "bob", "low one", "--priority", "low"])
        .ok();
    alice.run(&["send", "bob", "next one"]).ok();
    alice
        .run(&["send", "bob", "now one", "--priority", "now"])
        .ok();
    let r = bob.run(&["inbox"]).ok();
    for text in ["low one", "next one", "now one", "[low]", "[now]"] {
        assert!(r.stdout.contains(text), "{text}: {r:?}");
    }
}

#[test]
fn mesh_flag_picks_between_two_meshes() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    let side = alice
        .run(&["--json", "mesh", "create", "side", "--broker", &broker.url])
        .ok()
        .json();
    assert_eq!(side["default"], false, "{side}");
    bob.join(&alice.share(&[]), "bob");
    bob.join(&alice.share(&["--mesh", "side"]), "bob-side");

    // The first mesh stays the default; the second is named.
    let meshes = alice.run(&["mesh", "list", "--json"]).ok().json();
    let default: Vec<&str> = meshes
        .as_array()
        .expect("array")
        .iter()
        .filter(|m| m["default"] == true)
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(default, ["team"]);
    let listed = alice.run(&["mesh", "list"]).ok();
    assert!(listed.stdout.contains("team") && listed.stdout.contains("side"));

    alice.send("bob", "in team");
    alice
        .run(&["--mesh", "side", "send", "bob-side", "in side"])
        .ok();
    // bob is called bob-side only in "side".
    alice
        .run(&["send", "bob-side", "wrong mesh"])
        .fails(code::NOT_FOUND);

    assert_eq!(bodies(&bob.inbox_json(&[])), ["in team"]);
    let side_id = bob
        .run(&["mesh", "list", "--json"])
        .ok()
        .json()
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == "side").cloned())
        .and_then(|m| m["id"].as_str().map(str::to_owned))
        .expect("side id");
    // By id prefix, after the command, and through CLAUDEMESH_MESH.
    alice
        .run(&["send", "bob-side", "by id", "--mesh", &side_id[..8]])
        .ok();
    let mut c = alice.command(&["send", "bob-side", "by env"]);
    c.env("CLAUDEMESH_MESH", "side");
    alice.run_cmd(c).ok();
    assert_eq!(
        bodies(&bob.inbox_json(&["--mesh", "side"])),
        ["in side", "by id", "by env"]
    );

    // `mesh use` changes the default.
    bob.run(&["mesh", "use", "side"]).ok();
    alice
        .run(&["--mesh", "side", "send", "bob-side", "after use"])
        .ok();
    assert_eq!(bodies(&bob.inbox_json(&[])), ["after use"]);

    bob.run(&["--mesh", "nosuch", "inbox"])
        .fails(code::NOT_FOUND);
    // Two meshes with one name on one device are refused.
    alice
        .run(&["mesh", "create", "side", "--broker", &broker.url])
        .fails(code::EXISTS);
}

#[test]
fn a_revoked_invite_cannot_be_used() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    let shared = alice.run(&["mesh", "share", "--json"]).ok().json();
    let url = shared["url"].as_str().expect("url");
    let id = shared["id"].as_str().expect("id");

    let revoked = alice.run(&["-y", "mesh", "revoke-invite", &id[..8]]).ok();
    assert!(revoked.stdout.contains(&id[..8]), "{revoked:?}");

    let bob = broker.user("bob");
    let r = bob
        .run(&["join", url, "--name", "bob"])
        .fails(code::REFUSED)
        .with_hint();
    assert!(r.stderr.contains("revoked"), "{r:?}");
    // Nothing was joined.
    assert_eq!(
        bob.run(&["mesh", "list", "--json"]).ok().json(),
        Value::Array(vec![])
    );
    let v = bob
        .run(&["--json", "join", url, "--name", "bob"])
        .fails_json(code::REFUSED, "refused");
    assert!(v["error"]["hint"].is_string(), "{v}");

    alice
        .run(&["-y", "mesh", "revoke-invite", &id[..8]])
        .fails(code::EXISTS);
    alice
        .run(&["-y", "mesh", "revoke-invite", "00000000"])
        .fails(code::NOT_FOUND);
    alice
        .run(&["-y", "mesh", "revoke-invite", "abc"])
        .fails(code::USAGE);

    // A member cannot invite.
    let carol = broker.user("carol");
    carol.join(&alice.share(&[]), "carol");
    carol
        .run(&["mesh", "share"])
        .fails(code::REFUSED)
        .with_hint();
    let other = alice.run(&["mesh", "share", "--json"]).ok().json();
    let other = other["id"].as_str().expect("id");
    carol
        .run(&["-y", "mesh", "revoke-invite", other])
        .fails(code::REFUSED)
        .with_hint();
}

#[test]
fn exit_codes_for_common_mistakes() {
    let broker = Broker::start();
    let nobody = broker.user("nobody");

    // No mesh yet.
    let r = nobody.run(&["peer", "list"]).fails(code::NOT_FOUND);
    assert!(r.stderr.contains("mesh create"), "{r:?}");
    nobody.run(&["send", "bob", "hi"]).fails(code::NOT_FOUND);
    nobody.run(&["inbox"]).fails(code::NOT_FOUND);
    nobody.run(&["mesh", "share"]).fails(code::NOT_FOUND);
    let none = nobody.run(&["mesh", "list"]).ok();
    assert!(none.stdout.contains("No meshes yet"), "{none:?}");
    assert_eq!(
        nobody.run(&["--json", "mesh", "list"]).ok().json(),
        Value::Array(vec![])
    );

    // Bad invite text.
    nobody
        .run(&["join", "not-an-invite"])
        .fails(code::USAGE)
        .with_hint();
    nobody
        .run(&["join", "https://example.com/join#damaged"])
        .fails(code::USAGE)
        .with_hint();
    // A short code needs --broker.
    nobody
        .run(&["join", "ABCD-EFGH-JKMN-P"])
        .fails(code::USAGE)
        .with_hint();

    // Unreachable broker, with a hint about what to check.
    let dead = dead_broker_url();
    let r = nobody
        .run(&["mesh", "create", "team", "--broker", &dead])
        .fails(code::NETWORK)
        .with_hint();
    assert!(r.stderr.contains(&dead), "{r:?}");
    assert!(r.stderr.contains("claudemesh-broker"), "{r:?}");

    // Unknown peer, unknown message.
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    alice.run(&["send", "carol", "hi"]).fails(code::NOT_FOUND);
    alice
        .run(&["message", "status", "00000000000000000000000000000000"])
        .fails(code::NOT_FOUND);
    alice
        .run(&["message", "status", "not-an-id"])
        .fails(code::USAGE);
    alice.run(&["send", "alice", ""]).fails(code::USAGE);
    alice
        .run_with_stdin(&["send", "alice", "-"], &"x".repeat(64 * 1024 + 1))
        .fails(code::USAGE)
        .with_hint();
    alice
        .run(&["mesh", "share", "--uses", "0"])
        .fails(code::USAGE);
}

#[test]
fn usage_errors_exit_3_and_help_exits_0() {
    let home = tempfile::tempdir().expect("tempdir");
    let user = User::at(home.path().join("h"));

    for args in [
        &["--help"][..],
        &["--version"],
        &["help"],
        &["mesh", "--help"],
        &["message", "send", "--help"],
        &["help", "inbox"],
    ] {
        let r = user.run(args).ok();
        assert!(r.stdout.contains("claudemesh"), "{args:?}: {r:?}");
    }
    let help = user.run(&["--help"]).ok();
    for cmd in [
        "mesh",
        "peer",
        "message",
        "profile",
        "join",
        "send",
        "peers",
        "inbox",
        "status",
        "demo",
        "completions",
    ] {
        assert!(help.stdout.contains(cmd), "{cmd} missing from --help");
    }

    // clap's own usage errors: code 3, nothing on stdout.
    for args in [
        &[][..],
        &["mesh"],
        &["message", "send"],
        &["send", "bob"],
        &["mesh", "share", "--role", "king"],
        &["mesh", "share", "--expires", "soon"],
        &["send", "bob", "hi", "--priority", "urgent"],
        &["--no-such-flag", "status"],
    ] {
        let r = user.run(args);
        assert_eq!(r.code, code::USAGE, "{args:?}: {r:?}");
        assert_eq!(r.stdout, "", "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("error: "), "{args:?}: {r:?}");
    }
    // An unknown word is not an invite: one error and a hint.
    let r = user.run(&["frobnicate"]).fails(code::USAGE).with_hint();
    assert!(r.stderr.contains("frobnicate"), "{r:?}");
    // No home was needed for any of it.
    assert!(!user.home.exists());
}

#[test]
fn json_errors_are_one_object_on_stderr() {
    let home = tempfile::tempdir().expect("tempdir");
    let user = User::at(home.path().join("h"));

    let v = user
        .run(&["--json", "peer", "list"])
        .fails_json(code::NOT_FOUND, "not_found");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no mesh"))
    );
    // --json anywhere on the line.
    user.run(&["inbox", "--json"])
        .fails_json(code::NOT_FOUND, "not_found");
    user.run(&["--json", "join", "garbage"])
        .fails_json(code::USAGE, "usage");
    let v = user
        .run(&[
            "--json",
            "mesh",
            "create",
            "t",
            "--broker",
            &dead_broker_url(),
        ])
        .fails_json(code::NETWORK, "network");
    assert!(v["error"]["hint"].is_string(), "{v}");
    // Usage errors found by the parser too.
    user.run(&["--json", "message", "send"])
        .fails_json(code::USAGE, "usage");
    user.run(&["--json", "frobnicate"])
        .fails_json(code::USAGE, "usage");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let r = run(bare_command(&["completions", shell])).ok();
        assert!(r.stdout.len() > 100, "{shell}: {r:?}");
        assert!(r.stdout.contains("claudemesh"), "{shell}");
        assert!(r.stdout.contains("revoke-invite"), "{shell}");
    }
    assert_eq!(
        run(bare_command(&["completions", "tcsh"])).code,
        code::USAGE
    );
}

#[test]
fn demo_shows_ciphertext_beside_what_each_peer_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut c = bare_command(&["demo"]);
    c.env("TMPDIR", tmp.path());
    let r = run(c).ok();
    assert!(r.stdout.contains("ciphertext"), "{r:?}");
    assert!(
        r.stdout.contains(
            "Hi bob! This message is sealed with crypto_box and signed by my session key."
        ),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("Hi alice. The broker stored it, but could not read it."),
        "{r:?}"
    );

    let mut c = bare_command(&["demo", "--json"]);
    c.env("TMPDIR", tmp.path());
    let v = run(c).ok().json();
    assert_eq!(v["plaintext_in_broker_database"], Value::Array(vec![]));
    assert_eq!(v["broker_stored"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["bob_read"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["alice_read"].as_array().map(Vec::len), Some(1), "{v}");
    // It cleans up after itself.
    assert_eq!(
        std::fs::read_dir(tmp.path()).map(Iterator::count).ok(),
        Some(0)
    );
}

#[cfg(unix)]
#[test]
fn the_home_keeps_keys_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    alice.send("bob", "hi");
    bob.run(&["inbox"]).ok();

    for user in [&alice, &bob] {
        let home = &user.home;
        assert_eq!(mode(home), 0o700, "{}", home.display());
        assert_eq!(mode(&home.join("config.json")), 0o600);
        assert_eq!(mode(&home.join("state.db")), 0o600);
        let meshes = home.join("meshes");
        assert_eq!(mode(&meshes), 0o700);
        let dirs: Vec<PathBuf> = std::fs::read_dir(&meshes)
            .expect("meshes/")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        assert_eq!(mode(&dirs[0]), 0o700);
        let keys = dirs[0].join("keys.json");
        assert_eq!(mode(&keys), 0o600);
        let keys: Value =
            serde_json::from_slice(&std::fs::read(&keys).expect("keys.json")).expect("JSON");
        assert!(keys["member"].is_string());

        // The secret member key appears in no output.
        let secret = keys["member"].as_str().unwrap_or_default();
        for args in [
            &["mesh", "list", "--json"][..],
            &["status", "--json"],
            &["peer", "list"],
        ] {
            let r = user.run(args).ok();
            assert!(!r.stdout.contains(&secret[..64]) && !r.stderr.contains(&secret[..64]));
        }
    }
}

#[test]
fn inbox_watch_prints_messages_as_they_arrive() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");

    // The first message waits at the broker; the watcher's first fetch
    // prints it. (Starting the watcher only after it is sent also keeps its
    // handshake apart from alice's: see `Quiet`.)
    let id = alice.send("bob", "watched");
    let stderr_path = broker.dir.path().join("watch.stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut child = bob
        .command(&["inbox", "--watch", "--json"])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn inbox --watch");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut next_line = |what: &str| match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(e) => {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "inbox --watch did not print {what} ({e}); it exited with {status:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
    };

    // One JSON object per line, as each message is stored.
    let line = next_line("the queued message");
    broker.background_connections(1);
    let v: Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["body"], "watched");
    assert_eq!(v["from_name"], "alice");

    // The watcher is connected now: the second one arrives live.
    let second = alice.send("bob", "watched again");
    let line = next_line("the live message");
    let v: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["id"], second.as_str());

    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    broker.background_connections(0);
    broker.quiet.wait();
    // The watcher marks each message read after printing it, before it
    // takes the next one: the first is read; the second may be (it was
    // killed right after printing it), and then `inbox` shows it again.
    let left = bob.inbox_json(&[]);
    assert!(
        bodies(&left).iter().all(|b| *b == "watched again"),
        "{left:?}"
    );
}

#[test]
fn status_reports_the_broker() {
    let mut broker = Broker::start();
    let alice = broker.user("alice");
    let none = alice.run(&["status"]).ok();
    assert!(none.stdout.contains("no mesh"), "{none:?}");
    assert_eq!(
        alice.run(&["status", "--json"]).ok().json(),
        Value::Array(vec![])
    );

    alice.create(&broker, "team", "alice");
    let r = alice.run(&["status"]).ok();
    for word in ["reachable", "protocol", "clock", "owner", "unread"] {
        assert!(r.stdout.contains(word), "{word}: {r:?}");
    }

    // With the broker gone (after retrying for a few seconds): the report
    // on stdout, the error on stderr, exit code 4.
    broker.stop();
    let r = alice.run(&["status", "--json"]);
    assert_eq!(r.code, code::NETWORK, "{r:?}");
    let report = r.json();
    assert_eq!(report[0]["reachable"], false, "{report}");
    assert!(report[0]["error"].is_string(), "{report}");
    let err: Value = serde_json::from_str(&r.stderr).expect("one JSON error");
    assert_eq!(err["error"]["kind"], "network");
    assert!(err["error"]["hint"].is_string(), "{err}");
}

/// The messages of a `topic history --json` page, newest first.
fn history_bodies(h: &Value) -> Vec<&str> {
    h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect()
}

/// One topic of `topic list --json`.
fn topic_of(user: &User, name: &str) -> Value {
    let topics = user.run(&["topic", "list", "--json"]).ok().json();
    topics
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no topic {name} in {topics}"))
}

#[test]
fn topics_groups_and_broadcast_reach_everyone_once_then_not_the_banned() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");

    alice
        .run(&[
            "topic",
            "create",
            "deploys",
            "--description",
            "release notes",
        ])
        .ok();
    // With or without the #.
    bob.run(&["topic", "join", "#deploys"]).ok();
    carol.run(&["topic", "join", "deploys"]).ok();
    bob.run(&["group", "join", "@eng/backend", "--role", "lead"])
        .ok();
    carol.run(&["group", "join", "eng/backend"]).ok();

    let t = topic_of(&alice, "deploys");
    assert_eq!(t["members"], 3, "{t}");
    assert_eq!(t["private"], false, "{t}");
    assert_eq!(t["joined"], true, "{t}");
    assert_eq!(t["description"], "release notes", "{t}");
    let groups = alice.run(&["group", "list", "--json"]).ok().json();
    assert_eq!(groups[0]["name"], "eng/backend", "{groups}");
    let members: Vec<(&str, Option<&str>)> = groups[0]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["role"].as_str()))
        .collect();
    assert_eq!(members, [("bob", Some("lead")), ("carol", None)]);

    // Carol is offline from here on (nothing of hers runs).
    let post = alice
        .run(&["topic", "post", "deploys", "deploy 1"])
        .ok()
        .stdout
        .trim()
        .to_owned();
    assert!(is_message_id(&post));
    alice.send("@eng", "eng 1");
    let all = alice
        .run(&["message", "send", "*", "all 1"])
        .ok()
        .stdout
        .trim()
        .to_owned();

    let got = bob.inbox_json(&[]);
    assert_eq!(bodies(&got), ["deploy 1", "eng 1", "all 1"], "{got:?}");
    let targets: Vec<&str> = got.iter().filter_map(|m| m["target"].as_str()).collect();
    assert_eq!(targets, ["#deploys", "@eng", "*"]);
    assert!(got.iter().all(|m| m["from_name"] == "alice"));
    assert!(got.iter().all(|m| m["mentions_me"] == false));
    assert!(bob.inbox_json(&[]).is_empty(), "each exactly once");

    let got = carol.inbox_json(&[]);
    assert_eq!(bodies(&got), ["deploy 1", "eng 1", "all 1"], "{got:?}");
    assert!(carol.inbox_json(&[]).is_empty(), "each exactly once");

    // Per recipient, by name.
    status_becomes(&alice, &all, "bob", "read");
    let st = status_becomes(&alice, &all, "carol", "read");
    assert_eq!(st["target"], "*", "{st}");
    assert_eq!(st["recipients"].as_array().map(Vec::len), Some(2), "{st}");
    let st = alice.run(&["message", "status", &post]).ok();
    assert!(st.stdout.contains("to #deploys"), "{st:?}");

    // Alice bans carol: the removal and the new mesh key in one append.
    let banned = alice
        .run(&["--json", "-y", "peer", "ban", "carol"])
        .ok()
        .json();
    assert_eq!(banned["name"], "carol", "{banned}");
    assert_eq!(banned["how"], "ban", "{banned}");
    assert_eq!(banned["epoch"], 1, "{banned}");
    let bans = alice.run(&["peer", "bans", "--json"]).ok().json();
    assert_eq!(bans[0]["name"], "carol", "{bans}");

    alice.send("#deploys", "deploy 2");
    alice.send("@eng", "eng 2");
    let all2 = alice.send("*", "all 2");
    assert_eq!(bodies(&bob.inbox_json(&[])), ["deploy 2", "eng 2", "all 2"]);
    // Carol's CLI is refused at the door and shows none of it.
    let r = carol.run(&["inbox"]).fails(code::REFUSED);
    assert!(!r.stderr.contains("all 2"), "{r:?}");
    carol
        .run(&["--json", "inbox"])
        .fails_json(code::REFUSED, "refused");
    // Only bob was a recipient of what was sent after the ban.
    let st = status_becomes(&alice, &all2, "bob", "read");
    assert_eq!(st["recipients"].as_array().map(Vec::len), Some(1), "{st}");

    // The topic's history has every post, for any member.
    let h = bob
        .run(&["topic", "history", "deploys", "--json"])
        .ok()
        .json();
    assert_eq!(history_bodies(&h), ["deploy 2", "deploy 1"], "{h}");

    // Unban: the ban list is empty again.
    alice.run(&["-y", "peer", "unban", "carol"]).ok();
    assert_eq!(
        alice.run(&["peer", "bans", "--json"]).ok().json(),
        Value::Array(vec![])
    );
}

#[test]
fn private_topics_are_for_their_members_only() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");

    let t = alice
        .run(&["--json", "topic", "create", "#secret", "--private"])
        .ok()
        .json();
    assert_eq!(t["private"], true, "{t}");
    assert_eq!(t["members"], 1, "{t}");

    // Not a member: cannot join by itself, read, post, or add others.
    bob.run(&["topic", "join", "secret"]).fails(code::REFUSED);
    bob.run(&["topic", "history", "secret"])
        .fails(code::REFUSED);
    bob.run(&["topic", "post", "secret", "let me in"])
        .fails(code::REFUSED);
    bob.run(&["send", "#secret", "let me in"])
        .fails(code::REFUSED);
    carol
        .run(&["topic", "add", "secret", "bob"])
        .fails(code::REFUSED);

    // A member adds bob (sealing the topic's key to him).
    alice.run(&["topic", "add", "secret", "bob"]).ok();
    let members = alice
        .run(&["topic", "members", "secret", "--json"])
        .ok()
        .json();
    let names: Vec<&str> = members
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    bob.run(&["topic", "post", "secret", "hello from bob"]).ok();
    alice.send("#secret", "hello from alice");
    let h = bob
        .run(&["topic", "history", "secret", "--json"])
        .ok()
        .json();
    assert_eq!(
        history_bodies(&h),
        ["hello from alice", "hello from bob"],
        "{h}"
    );
    assert_eq!(h["messages"][1]["you"], true, "own posts are included: {h}");
    assert_eq!(bodies(&bob.inbox_json(&[])), ["hello from alice"]);
    carol
        .run(&["topic", "history", "secret"])
        .fails(code::REFUSED);
    assert!(carol.inbox_json(&[]).is_empty());

    // Bob leaves; alice's next post rotates the topic key first.
    bob.run(&["topic", "leave", "secret"]).ok();
    alice.send("#secret", "after bob left");
    bob.run(&["topic", "history", "secret"])
        .fails(code::REFUSED);
    assert!(bob.inbox_json(&[]).is_empty());
    let h = alice
        .run(&["topic", "history", "secret", "--json"])
        .ok()
        .json();
    assert_eq!(
        history_bodies(&h),
        ["after bob left", "hello from alice", "hello from bob"],
        "{h}"
    );

    // Paging: --limit, then --before the oldest id shown.
    let page = alice
        .run(&["topic", "history", "secret", "--limit", "2", "--json"])
        .ok()
        .json();
    assert_eq!(
        history_bodies(&page),
        ["after bob left", "hello from alice"]
    );
    assert_eq!(page["more"], true, "{page}");
    let oldest = page["messages"][1]["id"].as_str().expect("id").to_owned();
    let page = alice
        .run(&[
            "topic", "history", "secret", "--limit", "2", "--before", &oldest, "--json",
        ])
        .ok()
        .json();
    assert_eq!(history_bodies(&page), ["hello from bob"]);
    assert_eq!(page["more"], false, "{page}");
    // People read it oldest first.
    let text = alice.run(&["topic", "history", "secret"]).ok();
    let first = text.stdout.find("hello from bob").expect("bob's post");
    let last = text.stdout.find("after bob left").expect("the last post");
    assert!(first < last, "{text:?}");

    // Names that do not exist.
    alice
        .run(&["topic", "history", "nope"])
        .fails(code::NOT_FOUND);
    let r = alice.run(&["send", "#nope", "x"]).fails(code::NOT_FOUND);
    assert!(r.stderr.contains("#secret"), "lists the topics: {r:?}");
    alice.run(&["send", "@nobody", "x"]).fails(code::NOT_FOUND);
    alice
        .run(&["topic", "create", "bad name"])
        .fails(code::USAGE);
    alice
        .run(&["topic", "create", "secret"])
        .fails(code::EXISTS);
}

#[test]
fn topic_unread_counts_mentions_and_read() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");
    alice.run(&["topic", "create", "deploys"]).ok();
    bob.run(&["topic", "join", "deploys"]).ok();

    alice.send("#deploys", "first");
    alice.send("#deploys", "second, @bob please look");
    // Carol is not in the topic: she gets a direct message quoting it.
    let r = alice
        .run(&[
            "--json",
            "topic",
            "post",
            "deploys",
            "third, @carol see this",
        ])
        .ok()
        .json();
    assert_eq!(r["mentioned"], serde_json::json!(["carol"]), "{r}");
    let third = r["id"].as_str().expect("id").to_owned();

    let t = topic_of(&bob, "deploys");
    assert_eq!(t["unread"], 3, "{t}");
    let r = bob.run(&["--json", "topic", "read", "deploys"]).ok().json();
    assert_eq!(r["marked_read"], 3, "{r}");
    assert_eq!(topic_of(&bob, "deploys")["unread"], 0);
    assert!(bob.inbox_json(&[]).is_empty(), "read by `topic read`");
    let h = bob
        .run(&["topic", "history", "deploys", "--json"])
        .ok()
        .json();
    let flagged: Vec<bool> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["mentions_me"] == true)
        .collect();
    assert_eq!(flagged, [false, true, false], "{h}");

    let dm = carol.inbox_json(&[]);
    assert_eq!(dm.len(), 1, "{dm:?}");
    assert_eq!(
        dm[0]["body"],
        "[mention in #deploys] alice: third, @carol see this"
    );
    assert_eq!(dm[0]["reply_to"], third.as_str());
    assert_eq!(dm[0]["from_name"], "alice");
    assert!(
        dm[0]["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("member:"))
    );

    // The inbox shows the target, and flags a mention of me.
    alice.send("#deploys", "fourth, @Bob");
    let r = bob.run(&["inbox"]).ok();
    assert!(
        r.stdout
            .contains("alice (#deploys) [mentions you]: fourth, @Bob"),
        "{r:?}"
    );
    let all = bob.run(&["inbox", "--all", "--json"]).ok().json();
    let flagged: Vec<&str> = all
        .as_array()
        .expect("array")
        .iter()
        .filter(|m| m["mentions_me"] == true)
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(
        flagged,
        ["second, @bob please look", "fourth, @Bob"],
        "{all}"
    );
}

#[test]
fn only_owners_and_admins_remove_and_anyone_may_leave() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");

    let r = bob
        .run(&["-y", "peer", "kick", "carol"])
        .fails(code::REFUSED)
        .with_hint();
    assert!(r.stderr.contains("only owners and admins"), "{r:?}");
    bob.run(&["-y", "peer", "ban", "carol"])
        .fails(code::REFUSED);
    bob.run(&["-y", "peer", "unban", "carol"])
        .fails(code::REFUSED);
    alice
        .run(&["-y", "peer", "kick", "alice"])
        .fails(code::USAGE);
    alice
        .run(&["-y", "peer", "kick", "nobody"])
        .fails(code::NOT_FOUND);
    alice
        .run(&["-y", "peer", "unban", "carol"])
        .fails(code::NOT_FOUND);

    alice.run(&["-y", "peer", "kick", "carol"]).ok();
    carol.run(&["inbox"]).fails(code::REFUSED);
    assert_eq!(
        alice.run(&["peer", "bans", "--json"]).ok().json(),
        Value::Array(vec![]),
        "a kick is not a ban"
    );
    alice.send("*", "without carol");
    assert_eq!(bodies(&bob.inbox_json(&[])), ["without carol"]);

    // Carol forgets the mesh, and may come back with a new invite.
    let left = carol.run(&["--json", "-y", "mesh", "leave"]).ok().json();
    assert_eq!(left["already_removed"], true, "{left}");
    assert_eq!(
        carol.run(&["mesh", "list", "--json"]).ok().json(),
        Value::Array(vec![])
    );
    carol.join(&alice.share(&[]), "carol");
    alice.send("*", "welcome back");
    assert_eq!(bodies(&carol.inbox_json(&[])), ["welcome back"]);

    // Bob leaves by himself; the next broadcast writes the new key first.
    let r = bob.run(&["-y", "mesh", "leave"]).ok();
    assert!(r.stdout.contains("Left mesh"), "{r:?}");
    assert_eq!(
        bob.run(&["mesh", "list", "--json"]).ok().json(),
        Value::Array(vec![])
    );
    let before = carol.run(&["status", "--json"]).ok().json()[0]["log_entries"]
        .as_u64()
        .expect("log_entries");
    carol.send("*", "after bob left");
    let after = carol.run(&["status", "--json"]).ok().json()[0]["log_entries"]
        .as_u64()
        .expect("log_entries");
    assert!(after > before, "carol wrote the rekey: {before} → {after}");
    assert!(
        bodies(&alice.inbox_json(&[])).contains(&"after bob left"),
        "alice reads the new epoch"
    );

    // The owner cannot leave.
    alice.run(&["-y", "mesh", "leave"]).fails(code::REFUSED);
}

#[test]
fn a_message_sealed_before_a_leave_is_resealed_with_its_id_under_the_new_key() {
    use claudemesh_client::client::{ConnectOptions, SessionChoice, now_ms};
    use claudemesh_crypto::envelope::{Priority, Target};

    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");

    let home = claudemesh_client::Home::open(&alice.home).unwrap();
    let mesh = home.select_mesh(None).unwrap().clone();
    let opts = ConnectOptions {
        session: SessionChoice::Named("sdk".into()),
        ..ConnectOptions::default()
    };
    // Sealed under epoch 0 and left in the outbox (as if the connection
    // dropped before the broker answered).
    let id = broker.rt.block_on(async {
        let c = claudemesh_client::MeshClient::connect(&home, &mesh, opts.clone())
            .await
            .unwrap();
        let env = c
            .with_state(|s| {
                s.seal(
                    Target::Broadcast,
                    b"sealed before bob left",
                    Priority::Next,
                    None,
                    now_ms(),
                )
            })
            .unwrap();
        assert_eq!(env.epoch, 0);
        c.local().outbox_put(&env, now_ms()).await.unwrap();
        c.close().await;
        env.id
    });
    broker.quiet.wait();

    // Bob leaves: the mesh key must rotate before anything goes to `*`.
    bob.run(&["-y", "mesh", "leave"]).ok();

    // On reconnect the outbox is resent; the broker answers rekey_required;
    // the client writes the rekey (any member may after a leave), reseals
    // under epoch 1 with the same id, and sends it again.
    broker.rt.block_on(async {
        let c = claudemesh_client::MeshClient::connect(&home, &mesh, opts)
            .await
            .unwrap();
        let mut state = String::new();
        for _ in 0..500 {
            let entry = c.local().outbox_get(&mesh.id, &id).await.unwrap().unwrap();
            state = entry.state;
            if state != "pending" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(state, "accepted");
        let pending = c.local().outbox_pending(&mesh.id).await.unwrap();
        assert!(pending.is_empty(), "{pending:?}");
        assert_eq!(c.with_state(|s| s.roster().epoch()), 1);
        c.close().await;
    });
    broker.quiet.wait();

    let got = carol.inbox_json(&[]);
    assert_eq!(bodies(&got), ["sealed before bob left"]);
    assert_eq!(got[0]["id"], id.to_hex().as_str());
}

#[test]
fn mesh_rekey_bad_seal_warnings_and_a_join_after_a_kick() {
    use claudemesh_client::client::{ConnectOptions, SessionChoice, now_ms};
    use claudemesh_crypto::log::{EntryBody, LogEntry, rekey_body};

    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    let mallory = broker.user("mallory");
    let eve = broker.user("eve");
    let dave = broker.user("dave");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");
    mallory.join(&alice.share(&[]), "mallory");
    eve.join(&alice.share(&[]), "eve");
    // An invite made before the kick, used after it.
    let early = alice.share(&[]);

    // The kick says what is true: a new key for those who remain, and the
    // invite carol joined with revoked.
    let r = alice.run(&["-y", "peer", "kick", "carol"]).ok();
    assert!(
        r.stdout.contains("sealed to the remaining members only"),
        "{r:?}"
    );
    assert!(r.stdout.contains("Revoked 1 invite(s)"), "{r:?}");
    // `claudemesh join` with the older invite works end to end: the joiner,
    // owed the current key, writes the next one itself.
    let joined = dave
        .run(&["--json", "join", &early, "--name", "dave"])
        .ok()
        .json();
    assert_eq!(joined["name"], "team", "{joined}");
    let st = dave.run(&["status", "--json"]).ok().json();
    assert_eq!(st[0]["epoch"], 2, "{st}");
    assert_eq!(st[0]["bad_seals"], Value::Array(vec![]), "{st}");
    alice.send("*", "hello dave");
    assert_eq!(bodies(&dave.inbox_json(&[])), ["hello dave"]);

    // `mesh rekey`: the owner may, a plain member may not (now).
    let r = alice.run(&["--json", "mesh", "rekey"]).ok().json();
    assert_eq!(r["epoch"], 3, "{r}");
    assert_eq!(r["members"], 5, "{r}");
    let r = bob.run(&["mesh", "rekey"]).fails(code::REFUSED).with_hint();
    assert!(r.stderr.contains("owner"), "{r:?}");

    // Eve leaves; mallory repairs it with garbage sealed to bob (through
    // the SDK: the CLI would never write such an entry).
    eve.run(&["-y", "mesh", "leave"]).ok();
    let home = claudemesh_client::Home::open(&mallory.home).unwrap();
    let mesh = home.select_mesh(None).unwrap().clone();
    let bob_key = claudemesh_crypto::PublicKey::from_hex(&alice.key_of("bob")).unwrap();
    broker.rt.block_on(async {
        let opts = ConnectOptions {
            session: SessionChoice::Named("sdk".into()),
            ..ConnectOptions::default()
        };
        let c = claudemesh_client::MeshClient::connect(&home, &mesh, opts)
            .await
            .unwrap();
        c.append_entries(|s| {
            let r = s.roster();
            let root = claudemesh_crypto::EpochRootKey::generate(r.epoch() + 1);
            let members: Vec<_> = r.members().keys().copied().collect();
            let mut body = rekey_body(&root, &r.mesh_id(), &members).unwrap();
            if let EntryBody::Rekey { sealed, .. } = &mut body {
                for s in sealed.iter_mut().filter(|s| s.recipient == bob_key) {
                    s.ciphertext = vec![9; s.ciphertext.len()];
                }
            }
            Ok(vec![LogEntry::sign(
                s.member_key(),
                r.len(),
                r.head(),
                now_ms() / 1000,
                body,
            )])
        })
        .await
        .unwrap();
        c.close().await;
    });
    broker.quiet.wait();

    // Bob's next command warns, naming mallory, and re-rolls the key (the
    // epoch was made by a member); `status --json` lists the bad seal.
    let st = bob.run(&["status", "--json"]).ok();
    assert!(
        st.stderr.contains("WARNING") && st.stderr.contains("mallory"),
        "{st:?}"
    );
    let seals = st.json()[0]["bad_seals"].clone();
    assert_eq!(seals[0]["author_name"], "mallory", "{seals}");
    assert_eq!(seals[0]["epoch"], 4, "{seals}");
    assert_eq!(seals[0]["kind"], "mesh", "{seals}");
    assert_eq!(seals[0]["current"], false, "re-rolled already: {seals}");
    assert_eq!(st.json()[0]["epoch"], 5);
    // Plain status lists it too; a later command no longer warns.
    let st = bob.run(&["status"]).ok();
    assert!(st.stdout.contains("mallory"), "{st:?}");
    let r = bob.run(&["peers"]).ok();
    assert!(!r.stderr.contains("WARNING"), "{r:?}");
    alice.send("*", "after the re-roll");
    assert_eq!(
        bodies(&bob.inbox_json(&[])),
        ["hello dave", "after the re-roll"]
    );
}

// ---------------------------------------------------------------------------
// Backup and restore (TM9), the policy file, approval modes, the audit log.

/// A passphrase long enough for a backup.
const PASS: &str = "correct horse battery staple";

impl User {
    /// `claudemesh <args>` with `CLAUDEMESH_PASSPHRASE` set.
    fn run_with_pass(&self, pass: &str, args: &[&str]) -> Run {
        let mut c = self.command(args);
        c.env("CLAUDEMESH_PASSPHRASE", pass);
        self.run_cmd(c)
    }

    /// Runs `claudemesh <args>` on a terminal (script(1) gives it a pty),
    /// typing `input`; `None` when script(1) is not installed.
    fn run_on_tty(&self, args: &[&str], input: &str) -> Option<Run> {
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
    fn audit(&self) -> Vec<Value> {
        self.run(&["--json", "audit", "list", "--limit", "1000"])
            .ok()
            .json()
            .as_array()
            .expect("audit list --json is an array")
            .clone()
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Every file under `dir`: its mode and bytes (to show nothing changed).
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, (u32, Vec<u8>)> {
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
fn beside(home: &Path) -> Vec<String> {
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

fn decisions(audit: &[Value]) -> Vec<(String, String)> {
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

#[test]
fn backup_wipe_restore_then_send_and_receive() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    alice.send("bob", "before the backup");
    assert_eq!(bodies(&bob.inbox_json(&[])), ["before the backup"]);
    bob.run(&["profile", "summary", "on call"]).ok();

    let file = broker.dir.path().join("bob.cmb");
    let f = file.to_str().unwrap();
    let made = bob
        .run_with_pass(PASS, &["--json", "backup", f])
        .ok()
        .json();
    assert_eq!(made["meshes"][0]["name"], "team", "{made}");
    assert!(
        made["kdf"]["m_cost_kib"].as_u64().unwrap() >= 64 * 1024,
        "{made}"
    );
    assert!(made["kdf"]["t_cost"].as_u64().unwrap() >= 3, "{made}");
    let files: Vec<&str> = made["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        files.contains(&"config.json") && files.contains(&"policy.yaml"),
        "{made}"
    );
    assert!(files.iter().any(|f| f.ends_with("/keys.json")), "{made}");
    assert!(
        !files
            .iter()
            .any(|f| f.contains("state.db") || f.ends_with(".lock")),
        "{made}"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    // No secret (nor the summary) is in the file in the clear.
    let keys_dir = std::fs::read_dir(bob.home.join("meshes"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let keys: Value =
        serde_json::from_slice(&std::fs::read(keys_dir.join("keys.json")).unwrap()).unwrap();
    let secret = keys["member"].as_str().unwrap()[..64].to_owned();
    let sealed = std::fs::read(&file).unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains(&secret));
    assert!(!String::from_utf8_lossy(&sealed).contains("on call"));
    assert!(!made.to_string().contains(&secret));

    // An existing file is kept unless --force.
    let r = bob
        .run_with_pass(PASS, &["backup", f])
        .fails(code::EXISTS)
        .with_hint();
    assert!(r.stderr.contains("--force"), "{r:?}");
    assert_eq!(std::fs::read(&file).unwrap(), sealed);
    let r = bob
        .run_with_pass(PASS, &["-q", "backup", f, "--force"])
        .ok();
    assert_eq!(r.stdout.trim(), f);
    assert_ne!(
        std::fs::read(&file).unwrap(),
        sealed,
        "a new salt and nonce"
    );

    // Bob's laptop is gone; alice writes to him meanwhile.
    std::fs::remove_dir_all(&bob.home).unwrap();
    alice.send("bob", "while bob was away");

    // Restore is destructive: without a terminal it needs -y.
    let r = bob
        .run_with_pass(PASS, &["restore", f])
        .fails(code::DENIED)
        .with_hint();
    assert!(r.stderr.contains("-y/--yes"), "{r:?}");
    let restored = bob
        .run_with_pass(PASS, &["--json", "-y", "restore", f])
        .ok()
        .json();
    assert_eq!(restored["meshes"][0]["name"], "team", "{restored}");
    assert_eq!(
        restored["restored"],
        bob.home.to_str().unwrap(),
        "{restored}"
    );
    assert!(
        !bob.home.join("state.db").exists(),
        "state.db is not restored"
    );
    let config = std::fs::read_to_string(bob.home.join("config.json")).unwrap();
    assert!(config.contains("on call"), "settings came back: {config}");

    // The membership log is fetched again from the broker and verified;
    // sending and receiving work as before.
    bob.send("alice", "back from the backup");
    assert_eq!(bodies(&alice.inbox_json(&[])), ["back from the backup"]);
    assert_eq!(bodies(&bob.inbox_json(&[])), ["while bob was away"]);
    let status = bob.run(&["--json", "status"]).ok().json();
    assert_eq!(status[0]["role"], "member", "{status}");

    // The decisions are in the audit log (carried over to the new home).
    let audit = bob.audit();
    let d = decisions(&audit);
    assert!(d.contains(&("denied".into(), "restore".into())), "{d:?}");
    assert!(d.contains(&("allowed".into(), "restore".into())), "{d:?}");
    bob.run(&["audit", "verify"]).ok();
}

#[test]
fn a_wrong_passphrase_or_a_damaged_backup_leaves_the_home_as_it_was() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    let dir = broker.dir.path();
    let file = dir.join("alice.cmb");
    alice
        .run_with_pass(PASS, &["backup", file.to_str().unwrap()])
        .ok();
    alice
        .run(&["profile", "summary", "changed after the backup"])
        .ok();
    let before = snapshot(&alice.home);
    let bytes = std::fs::read(&file).unwrap();

    let write = |name: &str, b: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, b).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let mut flipped_body = bytes.clone();
    let mid = flipped_body.len() / 2 + 30;
    flipped_body[mid] ^= 0x01;
    let mut flipped_salt = bytes.clone();
    flipped_salt[20] ^= 0x80;
    let mut newer = bytes.clone();
    newer[4] = 2;
    let f = file.to_str().unwrap();
    let cases: Vec<(String, &str, i32, &str)> = vec![
        (
            f.to_owned(),
            "not the passphrase",
            code::SECURITY,
            "wrong passphrase",
        ),
        (
            write("cut.cmb", &bytes[..bytes.len() - 7]),
            PASS,
            code::SECURITY,
            "does not open",
        ),
        (
            write("stub.cmb", &bytes[..40]),
            PASS,
            code::SECURITY,
            "truncated",
        ),
        (
            write("flip.cmb", &flipped_body),
            PASS,
            code::SECURITY,
            "does not open",
        ),
        (
            write("salt.cmb", &flipped_salt),
            PASS,
            code::SECURITY,
            "does not open",
        ),
        (write("v2.cmb", &newer), PASS, code::USAGE, "version 2"),
        (
            write("notes.txt", b"just some notes"),
            PASS,
            code::USAGE,
            "not a claudemesh backup",
        ),
        (f.to_owned(), "short", code::USAGE, "at least 12 characters"),
    ];
    for (path, pass, want, says) in &cases {
        let r = alice
            .run_with_pass(pass, &["-y", "restore", path])
            .fails(*want)
            .with_hint();
        assert!(r.stderr.contains(says), "{path}: {r:?}");
        assert!(!r.stderr.contains(PASS), "the passphrase is never printed");
        assert_eq!(snapshot(&alice.home), before, "{path} changed the home");
    }
    // No passphrase and no terminal to ask for one.
    let r = alice
        .run(&["-y", "restore", f])
        .fails(code::USAGE)
        .with_hint();
    assert!(r.stderr.contains("CLAUDEMESH_PASSPHRASE"), "{r:?}");
    // A missing file.
    alice
        .run_with_pass(PASS, &["-y", "restore", "/nonexistent/x.cmb"])
        .fails(10);
    assert_eq!(snapshot(&alice.home), before);
    assert_eq!(
        beside(&alice.home),
        Vec::<String>::new(),
        "nothing left beside it"
    );

    // The passphrase file works too (first line only); the right one restores.
    let pf = write("pass.txt", format!("{PASS}\nignored\n").as_bytes());
    alice
        .run(&["-y", "restore", f, "--passphrase-file", &pf])
        .ok();
    assert_ne!(snapshot(&alice.home), before);
}

#[test]
fn restore_keeps_the_previous_home_as_a_dated_copy() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    // Without FILE: claudemesh-backup-<date>.cmb in the current directory.
    let mut c = alice.command(&["backup"]);
    c.env("CLAUDEMESH_PASSPHRASE", PASS)
        .current_dir(broker.dir.path());
    let r = alice.run_cmd(c).ok();
    let name = r
        .stdout
        .split(" to ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(
        name.starts_with("claudemesh-backup-20") && name.ends_with(".cmb") && name.len() == 32,
        "{r:?}"
    );
    let file = broker.dir.path().join(name);
    assert!(file.exists(), "{r:?}");
    alice
        .run(&[
            "mesh",
            "create",
            "side",
            "--broker",
            &broker.url,
            "--name",
            "al",
        ])
        .ok();
    alice.run(&["inbox"]).ok();

    let r = alice
        .run_with_pass(PASS, &["-y", "restore", file.to_str().unwrap()])
        .ok();
    assert!(r.stdout.contains("Restored 1 mesh (team)"), "{r:?}");
    let copies = beside(&alice.home);
    assert_eq!(copies.len(), 1, "{copies:?}");
    let stamp = copies[0].strip_prefix("alice.before-restore-").unwrap();
    assert!(
        stamp.len() == 15
            && stamp.as_bytes()[8] == b'-'
            && stamp.bytes().filter(u8::is_ascii_digit).count() == 14,
        "{stamp}"
    );
    assert!(r.stdout.contains(&copies[0]), "{r:?}");
    let previous = alice.home.parent().unwrap().join(&copies[0]);
    let old_config = std::fs::read_to_string(previous.join("config.json")).unwrap();
    assert!(old_config.contains("\"side\""), "{old_config}");
    assert!(previous.join("state.db").exists());

    let meshes = alice.run(&["--json", "mesh", "list"]).ok().json();
    let names: Vec<&str> = meshes
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["team"]);
    for (p, (mode, _)) in snapshot(&alice.home) {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode & 0o777, want, "{}", p.display());
    }
    // The log is fetched again from the broker: the mesh works as before.
    let peers = alice.run(&["--json", "peer", "list"]).ok().json();
    assert_eq!(peers[0]["name"], "alice", "{peers}");
    alice.run(&["audit", "verify"]).ok();
}

#[test]
fn backup_and_restore_ask_for_the_passphrase_on_a_terminal() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    let file = broker.dir.path().join("tty.cmb");
    let f = file.to_str().unwrap();
    let typed = format!("{PASS}\n{PASS}\n");
    let Some(r) = alice.run_on_tty(&["backup", f], &typed) else {
        return;
    };
    assert_eq!(r.code, 0, "{r:?}");
    let screen = format!("{}{}", r.stdout, r.stderr);
    assert!(screen.contains("Passphrase for the backup"), "{r:?}");
    assert!(screen.contains("The same passphrase again"), "{r:?}");
    assert!(screen.contains("Argon2id"), "the progress line: {r:?}");
    assert!(file.exists());
    // Two different passphrases: nothing is written.
    let other = broker.dir.path().join("other.cmb");
    let r = alice
        .run_on_tty(
            &["backup", other.to_str().unwrap()],
            &format!("{PASS}\nsomething else entirely\n"),
        )
        .unwrap();
    assert_eq!(r.code, code::USAGE, "{r:?}");
    assert!(!other.exists());
    // Restore asks once for the passphrase, then to confirm.
    let r = alice
        .run_on_tty(&["restore", f], &format!("{PASS}\nn\n"))
        .unwrap();
    assert_eq!(r.code, code::DENIED, "{r:?}");
    let screen = format!("{}{}", r.stdout, r.stderr);
    assert!(screen.contains("Passphrase of the backup"), "{r:?}");
    assert!(screen.contains("[y/N]"), "{r:?}");
    assert_eq!(beside(&alice.home), Vec::<String>::new());
    let r = alice
        .run_on_tty(&["restore", f], &format!("{PASS}\ny\n"))
        .unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(beside(&alice.home).len(), 1);
}

#[test]
fn destructive_verbs_ask_on_a_terminal_and_are_refused_without_one() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    let dave = broker.user("dave");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");
    dave.join(&alice.share(&[]), "dave");

    // Created with commented defaults at the first command, 0600.
    let policy = alice.home.join("policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    assert!(text.starts_with("# claudemesh policy"), "{text}");
    assert!(text.contains("\napproval_mode: write\n"), "{text}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&policy).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // No terminal: refused, with how to allow it; nothing happened.
    for args in [
        &["peer", "kick", "carol"][..],
        &["peer", "ban", "carol"],
        &["mesh", "revoke-invite", "00000000"],
        &["mesh", "leave"],
    ] {
        let r = alice.run(args).fails(code::DENIED).with_hint();
        assert!(r.stderr.contains("no terminal"), "{args:?}: {r:?}");
        assert!(
            r.stderr.contains("-y/--yes") && r.stderr.contains("allow: ["),
            "{args:?}: {r:?}"
        );
    }
    let r = alice
        .run(&["--json", "peer", "ban", "carol"])
        .fails_json(code::DENIED, "denied");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ban carol from team"),
        "{r}"
    );
    alice.key_of("carol");

    // On a terminal it asks: no, then yes.
    if let Some(r) = alice.run_on_tty(&["peer", "kick", "carol"], "n\n") {
        assert_eq!(r.code, code::DENIED, "{r:?}");
        assert!(
            format!("{}{}", r.stdout, r.stderr).contains("Kick carol from team? [y/N]"),
            "{r:?}"
        );
        alice.key_of("carol");
        let r = alice.run_on_tty(&["peer", "kick", "carol"], "y\n").unwrap();
        assert_eq!(r.code, 0, "{r:?}");
        let d = decisions(&alice.audit());
        assert!(
            d.contains(&("prompted-no".into(), "peer.kick".into())),
            "{d:?}"
        );
        assert!(
            d.contains(&("prompted-yes".into(), "peer.kick".into())),
            "{d:?}"
        );
    } else {
        alice.run(&["-y", "peer", "kick", "carol"]).ok();
    }

    // A rule allows a verb without asking.
    std::fs::write(&policy, "approval_mode: write\nallow: [peer.kick]\n").unwrap();
    alice.run(&["peer", "kick", "dave"]).ok();
    alice.run(&["peer", "ban", "bob"]).fails(code::DENIED);
    // A deny rule beats -y and yolo, and may refuse reads too.
    std::fs::write(&policy, "deny: [peer.*]\n").unwrap();
    let r = alice
        .run(&["-y", "peer", "ban", "bob"])
        .fails(code::DENIED)
        .with_hint();
    assert!(r.stderr.contains("deny"), "{r:?}");
    alice
        .run(&["--approval-mode", "yolo", "peer", "ban", "bob"])
        .fails(code::DENIED);
    alice.run(&["peer", "list"]).fails(code::DENIED);
    // --policy reads another file instead; yolo there needs no -y.
    let other = broker.dir.path().join("yolo.yaml");
    std::fs::write(&other, "approval_mode: yolo\n").unwrap();
    let banned = alice
        .run(&[
            "--json",
            "--policy",
            other.to_str().unwrap(),
            "peer",
            "ban",
            "bob",
        ])
        .ok()
        .json();
    assert_eq!(banned["name"], "bob", "{banned}");
    alice
        .run(&["--policy", "/nonexistent/policy.yaml", "mesh", "list"])
        .fails(code::USAGE);

    let audit = alice.audit();
    let d = decisions(&audit);
    for want in [
        ("denied", "peer.kick"),
        ("denied", "mesh.leave"),
        ("denied", "mesh.revoke-invite"),
        ("allowed", "peer.kick"),
        ("denied", "peer.list"),
        ("allowed", "peer.ban"),
    ] {
        assert!(
            d.contains(&(want.0.into(), want.1.into())),
            "{want:?} in {d:?}"
        );
    }
    let kick = audit
        .iter()
        .find(|e| e["reason"] == "allow rule peer.kick")
        .unwrap_or_else(|| panic!("{audit:?}"));
    assert_eq!(kick["target"], "dave");
    assert_eq!(kick["mesh"], "team");
    assert_eq!(kick["mode"], "write");
    assert!(kick["time"].as_str().unwrap().ends_with('Z'), "{kick}");
    let yolo = audit.last().unwrap();
    assert_eq!(yolo["mode"], "yolo", "{yolo}");
    let v = alice.run(&["--json", "audit", "verify"]).ok().json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["entries"].as_u64().unwrap() as usize, audit.len());
}

#[test]
fn read_only_and_plan_refuse_writes_but_not_reads() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");

    let r = alice
        .run(&["--approval-mode", "read-only", "send", "bob", "hi"])
        .fails(code::DENIED)
        .with_hint();
    assert!(r.stderr.contains("read-only"), "{r:?}");
    let mut c = alice.command(&["send", "bob", "hi"]);
    c.env("CLAUDEMESH_APPROVAL_MODE", "read-only");
    alice.run_cmd(c).fails(code::DENIED);
    alice
        .run(&["--approval-mode", "read-only", "peer", "list"])
        .ok();
    // The file's mode, and the flag over the file.
    std::fs::write(alice.home.join("policy.yaml"), "approval_mode: plan\n").unwrap();
    let r = alice
        .run(&["send", "bob", "hi"])
        .fails(code::DENIED)
        .with_hint();
    assert!(
        r.stderr
            .contains("plan mode: would send a message to bob in team"),
        "{r:?}"
    );
    alice
        .run(&["-y", "peer", "kick", "bob"])
        .fails(code::DENIED);
    alice.run(&["--json", "inbox"]).ok();
    alice
        .run(&["--approval-mode", "write", "send", "bob", "for real"])
        .ok();
    assert_eq!(
        bodies(&bob.inbox_json(&[])),
        ["for real"],
        "only the allowed send went out"
    );
    let audit = alice.audit();
    let modes: Vec<&str> = audit.iter().map(|e| e["mode"].as_str().unwrap()).collect();
    assert!(
        modes.contains(&"read-only") && modes.contains(&"plan"),
        "{modes:?}"
    );
}

#[test]
fn bad_policy_yaml_gets_its_line_and_column() {
    let home = tempfile::tempdir().expect("tempdir");
    let user = User::at(home.path().join("h"));
    user.run(&["mesh", "list"]).ok();
    let policy = user.home.join("policy.yaml");
    for (text, place, says) in [
        (
            "approval_mode: write\nallow: [peer.kick\n",
            "line 3 column 1",
            "expected",
        ),
        (
            "approval_mode: write\ndeny:\n  - peer.bann\n",
            "line 3 column 3",
            "peer.bann",
        ),
        ("approval_mode: sometimes\n", "line 1 column", "sometimes"),
        ("aproval_mode: write\n", "line 1 column 1", "aproval_mode"),
        ("allow: peer.kick: now\n", "line 1 column", ""),
    ] {
        std::fs::write(&policy, text).unwrap();
        let r = user.run(&["mesh", "list"]).fails(code::USAGE).with_hint();
        assert!(r.stderr.contains(place), "{text:?}: {r:?}");
        assert!(r.stderr.contains(says), "{text:?}: {r:?}");
        assert!(r.stderr.contains("policy.yaml"), "{text:?}: {r:?}");
        let v = user
            .run(&["--json", "peer", "ban", "x"])
            .fails_json(code::USAGE, "usage");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(place),
            "{v}"
        );
    }
    // Moved away, it is made again with the defaults.
    std::fs::remove_file(&policy).unwrap();
    user.run(&["mesh", "list"]).ok();
    assert!(
        std::fs::read_to_string(&policy)
            .unwrap()
            .contains("approval_mode: write")
    );
}

#[test]
fn audit_verify_names_the_edited_line() {
    let home = tempfile::tempdir().expect("tempdir");
    let user = User::at(home.path().join("h"));
    assert!(
        user.run(&["audit", "verify"])
            .ok()
            .stdout
            .contains("no entries")
    );
    user.run(&["peer", "kick", "carol"]).fails(code::DENIED);
    user.run(&["--approval-mode", "read-only", "send", "bob", "hi"])
        .fails(code::DENIED);
    user.run(&["-y", "peer", "ban", "carol"])
        .fails(code::NOT_FOUND);
    user.run(&["--approval-mode", "plan", "mesh", "use", "team"])
        .fails(code::DENIED);
    let r = user.run(&["audit", "verify"]).ok();
    assert!(
        r.stdout.contains("4 entries; the hash chain verifies"),
        "{r:?}"
    );
    let v = user.run(&["--json", "audit", "verify"]).ok().json();
    assert_eq!(
        (v["ok"].clone(), v["entries"].clone()),
        (Value::Bool(true), 4.into())
    );

    let log = user.home.join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["prev"], "0".repeat(64));
    assert_eq!(first["decision"], "denied");
    assert_eq!(first["reason"], "no terminal to ask");
    let list = user.run(&["audit", "list", "--limit", "2"]).ok();
    assert_eq!(list.stdout.lines().count(), 3, "{list:?}");
    assert!(
        list.stdout.contains("peer.ban") && list.stdout.contains("mesh.use"),
        "{list:?}"
    );

    // Someone turns the allowed ban into something else.
    let edited = text.replacen("\"peer.ban\"", "\"peer.list\"", 1);
    std::fs::write(&log, edited).unwrap();
    let r = user
        .run(&["audit", "verify"])
        .fails(code::SECURITY)
        .with_hint();
    assert!(r.stderr.contains("line 3"), "{r:?}");
    let r = user.run(&["--json", "audit", "verify"]);
    assert_eq!(r.code, code::SECURITY, "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["broken_line"], 3, "{v}");
    let err: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(err["error"]["kind"], "security");

    // Removing a line breaks the next one's link.
    std::fs::write(&log, format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3])).unwrap();
    let r = user.run(&["audit", "verify"]).fails(code::SECURITY);
    assert!(
        r.stderr.contains("line 2") && r.stderr.contains("does not follow line 1"),
        "{r:?}"
    );
}

#[test]
fn safety_numbers_match_on_both_sides_and_a_changed_key_is_caught() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");

    // Both sides compute the same 60 digits, in 12 groups of 5.
    let a = alice.run(&["--json", "peer", "verify", "bob"]).ok().json();
    let b = bob.run(&["--json", "verify", "alice"]).ok().json();
    assert_eq!(a["safety_number"], b["safety_number"], "{a} {b}");
    let groups: Vec<&str> = a["safety_number"].as_str().unwrap().split(' ').collect();
    assert_eq!(groups.len(), 12);
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit()))
    );
    assert_eq!(a["peer"], "bob");
    assert_eq!(a["verified"], false);
    let text = alice.run(&["peer", "verify", "bob"]).ok();
    assert!(
        text.stdout.contains(groups[0]) && text.stdout.contains("--mark"),
        "{text:?}"
    );

    alice.run(&["peer", "verify", "bob", "--mark"]).ok();
    let a = alice.run(&["--json", "peer", "verify", "bob"]).ok().json();
    assert_eq!(a["verified"], true, "{a}");
    assert!(
        alice
            .run(&["peer", "list"])
            .ok()
            .stdout
            .contains("bob (verified)")
    );
    alice.send("bob", "hello, verified bob");

    // Someone else joins under the name bob: a new key for a pinned name.
    let mallory = broker.user("mallory");
    mallory.join(&alice.share(&[]), "bob");
    let peers = alice.run(&["--json", "peers"]).ok().json();
    let bob_key = a["key"].as_str().unwrap().to_owned();
    let new_key = peers
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "bob")
        .filter_map(|p| p["key"].as_str())
        .find(|k| *k != bob_key)
        .expect("the second bob")
        .to_owned();
    let r = alice
        .run(&["send", &new_key[..16], "the launch code"])
        .fails(code::SECURITY);
    assert!(r.stderr.contains("changed since you verified"), "{r:?}");
    let list = alice.run(&["peer", "list"]).ok();
    assert!(list.stdout.contains("bob (KEY CHANGED)"), "{list:?}");
    assert!(list.stderr.contains("WARNING"), "{list:?}");
    let v = alice
        .run(&["--json", "peer", "verify", &new_key[..16]])
        .ok();
    assert_eq!(v.json()["key_changed"], true);
    assert!(v.stderr.contains("WARNING"), "{v:?}");
    // The verified bob is still reachable.
    alice.send(&bob_key[..16], "still you?");
    // Once the numbers have been compared again, the new key is pinned.
    alice
        .run(&["peer", "verify", &new_key[..16], "--mark"])
        .ok();
    alice.send(&new_key[..16], "welcome");
}

#[test]
fn grants_block_silence_unblock_and_revoke_broadcast() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");

    // Nothing set: an empty list.
    let none = bob.run(&["grants", "--json"]).ok().json();
    assert_eq!(none["mesh"], "team", "{none}");
    assert_eq!(none["grants"], serde_json::json!([]), "{none}");

    // A block is refused at the broker, and the sender is told.
    bob.run(&["block", "alice"]).ok();
    let r = alice.run(&["send", "bob", "hi"]).fails(2);
    assert!(r.stderr.contains("blocked by recipient"), "{r:?}");
    let g = bob.run(&["grants", "--json"]).ok().json();
    let entry = &g["grants"][0];
    assert_eq!(entry["name"], "alice", "{g}");
    assert_eq!(entry["peer"], bob.key_of("alice").as_str(), "{g}");
    assert_eq!(entry["caps"], serde_json::json!([]), "{g}");
    assert_eq!(entry["blocked"], true, "{g}");
    assert_eq!(entry["silent"], false, "{g}");
    assert!(bob.run(&["grants"]).ok().stdout.contains("alice"));

    // A silent block: accepted, never delivered.
    bob.run(&["block", "alice", "--silent"]).ok();
    alice.send("bob", "into the void");
    assert!(bob.inbox_json(&[]).is_empty());
    let g = bob.run(&["grants", "--json"]).ok().json();
    assert_eq!(g["grants"][0]["silent"], true, "{g}");

    // Unblock restores.
    bob.run(&["unblock", "alice"]).ok();
    assert_eq!(
        bob.run(&["grants", "--json"]).ok().json()["grants"],
        serde_json::json!([])
    );
    alice.send("bob", "hello again");
    assert_eq!(bodies(&bob.inbox_json(&[])), ["hello again"]);

    // Revoke broadcast: bob no longer gets alice's `*`, carol does; a DM
    // still reaches bob.
    bob.run(&["revoke", "alice", "broadcast"]).ok();
    let g = bob.run(&["grants", "--json"]).ok().json();
    assert_eq!(
        g["grants"][0]["caps"],
        serde_json::json!(["dm", "group", "presence", "topic"]),
        "{g}"
    );
    assert_eq!(g["grants"][0]["blocked"], false, "{g}");
    alice.send("*", "to everyone");
    alice.send("bob", "just you");
    assert_eq!(bodies(&carol.inbox_json(&[])), ["to everyone"]);
    assert_eq!(bodies(&bob.inbox_json(&[])), ["just you"]);

    // Grant it back: the entry goes away (every capability is the default).
    bob.run(&["grant", "alice", "broadcast"]).ok();
    assert_eq!(
        bob.run(&["grants", "--json"]).ok().json()["grants"],
        serde_json::json!([])
    );
    // `revoke all` refuses, not silently; a bad capability is a usage error.
    bob.run(&["revoke", "alice", "all"]).ok();
    alice.run(&["send", "bob", "hi"]).fails(2);
    bob.run(&["revoke", "alice", "root"]).fails(3);
}

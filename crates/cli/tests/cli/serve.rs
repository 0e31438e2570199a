//! `claudemesh serve`, end to end: real `serve` processes (one per home)
//! against the broker of the test, talked to over HTTP with curl as a
//! script would: REST between two gateways (on SQLite and on Postgres),
//! what a key may not do (each refusal an `application/problem+json` with
//! the CLI's exit code), the event stream resumed by `Last-Event-ID`
//! across a reconnect and a restart, the gateway's lifecycle (one per
//! home, loopback only without TLS, SIGTERM drains), the audit of each
//! key's use, the broker seeing only ciphertext, and the API's own docs;
//! where it listens (a Unix socket, TLS by the names it is told, beyond
//! loopback), each key's rate, a broker that stops and comes back on the
//! same port and store, and one gateway serving two meshes.

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Broker, Gateway, User, code, is_message_id};

/// How long anything that travels through the broker may take.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// HTTP at curl level.

/// One HTTP answer.
#[derive(Debug)]
pub(crate) struct Http {
    pub(crate) status: u16,
    /// Header names in lower case, in the order received.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {self:?} {}", self.text()))
    }

    /// Asserts the status; the body as JSON (`null` when empty).
    #[track_caller]
    pub(crate) fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status}, got {}: {}",
            self.status,
            self.text()
        );
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts a problem answer: the status, `application/problem+json`,
    /// the CLI's exit `code` with its `kind`, and a detail; returns it.
    #[track_caller]
    pub(crate) fn problem(&self, status: u16, code: i32) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status}, got {}: {}",
            self.status,
            self.text()
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let p = self.json();
        assert_eq!(p["status"], status, "{p}");
        assert_eq!(p["code"], code, "{p}");
        let kind = p["kind"].as_str().expect("kind");
        assert_eq!(p["type"], format!("urn:claudemesh:problem:{kind}"), "{p}");
        assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
        p
    }
}

/// `curl <args> -X <method> <url>` with these headers and body (JSON
/// unless a `Content-Type` is given; sent on stdin, so any size goes).
/// `args` say how to reach the gateway (`--unix-socket`, `--cacert`).
fn curl(
    args: &[String],
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Http {
    let mut c = Command::new("curl");
    c.args(args);
    c.args(["-sS", "-i", "--max-time", "30", "-X", method, url]);
    // No `Expect: 100-continue` dance for large bodies.
    c.args(["-H", "Expect:"]);
    for (k, v) in headers {
        c.args(["-H", &format!("{k}: {v}")]);
    }
    let has_body = body.is_some();
    if has_body {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            c.args(["-H", "Content-Type: application/json"]);
        }
        c.args(["--data-binary", "@-"]);
    }
    c.stdin(if has_body {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().expect("curl is installed");
    let writer = body.map(|b| {
        let mut stdin = child.stdin.take().expect("stdin");
        // A refusal may come before curl has read it all: a broken pipe
        // is fine.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&b);
        })
    });
    let out = child.wait_with_output().expect("curl runs");
    if let Some(w) = writer {
        let _ = w.join();
    }
    assert!(
        out.status.success(),
        "curl {method} {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_response(&out.stdout)
}

/// A response as `curl -i` prints it.
fn parse_response(raw: &[u8]) -> Http {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Http {
        status,
        headers,
        body,
    }
}

/// A gateway as one key sees it.
#[derive(Clone)]
pub(crate) struct Api {
    base: String,
    key: Option<String>,
    /// curl's arguments to reach it (`--unix-socket <path>`, `--cacert`).
    args: Vec<String>,
}

impl Api {
    pub(crate) fn new(gw: &Gateway, key: &str) -> Api {
        Api {
            key: Some(key.to_owned()),
            ..Api::anon(gw)
        }
    }

    /// Without a key (on a Unix socket, through it, as `localhost`).
    fn anon(gw: &Gateway) -> Api {
        match gw.unix_socket() {
            Some(path) => Api {
                base: "http://localhost".into(),
                key: None,
                args: vec!["--unix-socket".into(), path.display().to_string()],
            },
            None => Api {
                base: gw.url.clone(),
                key: None,
                args: Vec::new(),
            },
        }
    }

    /// At `base`, trusting the CA in `ca` (a TLS gateway by a name its
    /// certificate holds), with `key`.
    fn tls(base: &str, ca: &Path, key: Option<&str>) -> Api {
        Api {
            base: base.to_owned(),
            key: key.map(str::to_owned),
            args: vec!["--cacert".into(), ca.display().to_string()],
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Http {
        let auth = self.key.as_ref().map(|k| format!("Bearer {k}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            all.push(("Authorization", a));
        }
        curl(
            &self.args,
            method,
            &format!("{}{path}", self.base),
            &all,
            body,
        )
    }

    pub(crate) fn get(&self, path: &str) -> Http {
        self.call("GET", path, &[], None)
    }

    pub(crate) fn post(&self, path: &str, body: Value) -> Http {
        self.call("POST", path, &[], Some(body.to_string().into_bytes()))
    }

    fn post_with(&self, path: &str, headers: &[(&str, &str)], body: Value) -> Http {
        self.call("POST", path, headers, Some(body.to_string().into_bytes()))
    }

    pub(crate) fn delete(&self, path: &str) -> Http {
        self.call("DELETE", path, &[], None)
    }

    pub(crate) fn put(&self, path: &str, body: Value) -> Http {
        self.call("PUT", path, &[], Some(body.to_string().into_bytes()))
    }

    fn patch(&self, path: &str, body: Value) -> Http {
        self.call("PATCH", path, &[], Some(body.to_string().into_bytes()))
    }

    /// `GET /api/v1/events<query>` as a stream.
    pub(crate) fn events(&self, query: &str, headers: &[(&str, &str)]) -> Sse {
        let auth = self.key.as_ref().map(|k| format!("Bearer {k}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            all.push(("Authorization", a));
        }
        Sse::open(
            &self.args,
            &format!("{}/api/v1/events{query}", self.base),
            &all,
        )
    }

    /// Waits until every mesh link of the gateway is `up`.
    #[track_caller]
    pub(crate) fn wait_up(&self) -> Value {
        eventually("the gateway's link to the broker is up", || {
            let r = self.get("/api/v1/meshes");
            if r.status != 200 {
                return Err(format!("{} {}", r.status, r.text()));
            }
            let v = r.json();
            if v.as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(|m| m["link"] == "up"))
            {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        })
    }
}

/// Asks `f` until it says yes, at most [`PATIENCE`]; panics with the last
/// answer.
#[track_caller]
pub(crate) fn eventually<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {PATIENCE:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

// ---------------------------------------------------------------------------
// Server-sent events at curl level.

#[derive(Debug, Clone)]
pub(crate) struct SseEvent {
    id: Option<i64>,
    event: String,
    data: String,
}

impl SseEvent {
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {self:?}"))
    }

    #[track_caller]
    fn id(&self) -> i64 {
        self.id
            .unwrap_or_else(|| panic!("an event without id: {self:?}"))
    }
}

#[derive(Debug)]
enum SseItem {
    Head(Http),
    Event(SseEvent),
    End,
}

/// `curl -sN -i` reading an event stream; killed when dropped.
pub(crate) struct Sse {
    child: Child,
    rx: Receiver<SseItem>,
    pub(crate) head: Http,
}

impl Sse {
    /// Opens the stream and waits for the answer's head (once it is in,
    /// the gateway has subscribed to its journal).
    fn open(args: &[String], url: &str, headers: &[(&str, &str)]) -> Sse {
        let mut c = Command::new("curl");
        c.args(args);
        c.args(["-sS", "-N", "-i", "--max-time", "120", url]);
        for (k, v) in headers {
            c.args(["-H", &format!("{k}: {v}")]);
        }
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl is installed");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || read_stream(stdout, &tx));
        // The head comes at once, not with the first event or keep-alive.
        let head = match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(SseItem::Head(h)) => h,
            other => panic!("no answer from {url} within 5 s: {other:?}"),
        };
        Sse { child, rx, head }
    }

    /// The next event or the end (`None`: nothing within `timeout`).
    fn next(&self, timeout: Duration) -> Option<SseItem> {
        match self.rx.recv_timeout(timeout) {
            Ok(item) => Some(item),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(SseItem::End),
        }
    }

    /// The next event of one of `kinds` (others are skipped).
    #[track_caller]
    pub(crate) fn next_of(&self, kinds: &[&str]) -> SseEvent {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(SseItem::Event(e)) if kinds.contains(&e.event.as_str()) => return e,
                Some(SseItem::Event(_)) => {}
                other => panic!("expected an event of {kinds:?}, got {other:?}"),
            }
        }
    }

    /// Message events until (and with) the one whose body is `last`.
    #[track_caller]
    fn messages_until(&self, last: &str) -> Vec<SseEvent> {
        let mut out = Vec::new();
        loop {
            let e = self.next_of(&["message"]);
            let done = e.json()["body"] == last;
            out.push(e);
            if done {
                return out;
            }
        }
    }

    /// Waits for the stream to end (events before the end are skipped).
    fn ends_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(SseItem::End) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    }
}

impl Drop for Sse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `curl -i` output: the head, then each event, then the end.
fn read_stream(stdout: impl std::io::Read, tx: &std::sync::mpsc::Sender<SseItem>) {
    let mut r = std::io::BufReader::new(stdout);
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => {
                let _ = tx.send(SseItem::End);
                return;
            }
            Ok(_) => {}
        }
        let blank = line == b"\r\n" || line == b"\n";
        head.extend_from_slice(&line);
        if blank {
            break;
        }
    }
    let _ = tx.send(SseItem::Head(parse_response(&head)));
    let (mut id, mut event, mut data): (Option<i64>, String, Vec<String>) =
        (None, String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            if !data.is_empty() || !event.is_empty() {
                let e = SseEvent {
                    id: id.take(),
                    event: std::mem::take(&mut event),
                    data: std::mem::take(&mut data).join("\n"),
                };
                if tx.send(SseItem::Event(e)).is_err() {
                    return;
                }
            }
            continue;
        }
        if l.starts_with(':') {
            continue;
        }
        let (field, value) = l.split_once(':').unwrap_or((l, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = value.parse().ok(),
            "event" => event = value.to_owned(),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    let _ = tx.send(SseItem::End);
}

// ---------------------------------------------------------------------------
// Homes and keys.

/// `apikey create <label> --cap <caps> [--topic <topic>]`: the key.
pub(crate) fn api_key(user: &User, label: &str, caps: &str, topic: Option<&str>) -> String {
    let mut args = vec!["apikey", "create", label, "--cap", caps];
    if let Some(t) = topic {
        args.extend(["--topic", t]);
    }
    let r = user.run(&args).ok();
    let key = r.last_line().to_owned();
    assert!(key.starts_with("cmk_") && key.len() == 60, "{r:?}");
    key
}

/// A key's secret: what follows `cmk_<12 hex>_`.
fn secret_of(key: &str) -> &str {
    &key[17..]
}

/// A key's prefix, as the audit log and `apikey list` name it.
fn prefix_of(key: &str) -> &str {
    &key[..16]
}

/// `cmk_<12 hex>`.
fn is_prefix(t: &str) -> bool {
    t.len() == 16 && t.starts_with("cmk_") && t[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// alice owns mesh "team", bob joined it.
pub(crate) fn team(broker: &Broker) -> (User, User) {
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    (alice, bob)
}

/// The messages of a `GET /api/v1/messages` page.
pub(crate) fn page(v: &Value) -> Vec<Value> {
    v["messages"].as_array().expect("messages").clone()
}

fn bodies_of(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// 1 and 6: two homes, two gateways, everything through REST; then the
// broker's store holds none of it in clear.

/// Distinctive plaintexts that must never reach the broker in clear.
const DM_TEXT: &str = "TM1 direct words: the marmalade otter sings at 0417";
const REPLY_TEXT: &str = "TM1 reply words: a saffron heron counts to 5521";
const TOPIC_TEXT: &str = "TM1 topic words: cobalt walrus deployed build 8812";
const SUMMARY_TEXT: &str = "TM1 summary words: tuning the quince turbine 3390";

#[test]
fn serve_rest_between_two_gateways_on_sqlite() {
    let broker = Broker::start();
    let ids = two_gateways_talk(&broker);
    let file = broker.dir.path().join("broker.db");
    assert!(file.exists());
    no_plaintext_at_the_broker(&broker, &ids, Some(&file));
}

#[test]
fn serve_rest_between_two_gateways_on_postgres() {
    let broker = Broker::start_postgres();
    let ids = two_gateways_talk(&broker);
    no_plaintext_at_the_broker(&broker, &ids, None);
}

/// Everything through REST; returns the ids of the messages whose bodies
/// are the TM1 plaintexts.
fn two_gateways_talk(broker: &Broker) -> Vec<String> {
    let (alice, bob) = team(broker);
    let key_a = api_key(&alice, "alice-script", "read,send,admin", None);
    let key_b = api_key(&bob, "bob-script", "read,send,admin", None);
    // One at a time: the first is up before the second connects.
    let gw_a = alice.serve(&[]);
    let a = Api::new(&gw_a, &key_a);
    let meshes = a.wait_up();
    let gw_b = bob.serve(&[]);
    let b = Api::new(&gw_b, &key_b);
    b.wait_up();
    assert_eq!(gw_a.meshes, ["team"]);
    let m = &meshes[0];
    assert_eq!(m["name"], "team", "{meshes}");
    assert_eq!(m["display_name"], "alice");
    assert_eq!(m["role"], "owner");
    assert_eq!(m["session"], "alice@serve");
    assert_eq!(m["link"], "up");
    assert!(m["link_error"].is_null(), "{m}");
    assert_eq!(m["broker"], broker.url.as_str());
    assert_eq!(m["member"], alice.key_of("alice").as_str());

    // alice → bob, with an Idempotency-Key.
    let send = json!({"to": "bob", "body": DM_TEXT});
    let first = a.post_with(
        "/api/v1/messages",
        &[("Idempotency-Key", "dm-1")],
        send.clone(),
    );
    let sent = first.ok(201);
    let id = sent["id"].as_str().expect("id").to_owned();
    assert!(is_message_id(&id), "{sent}");
    assert_eq!(sent["duplicate"], false);
    assert_eq!(sent["to"], "bob");
    assert_eq!(
        first.header("location"),
        Some(format!("/api/v1/messages/{id}").as_str())
    );
    // A retry is the same message, not a second one.
    let again = a
        .post_with("/api/v1/messages", &[("Idempotency-Key", "dm-1")], send)
        .ok(201);
    assert_eq!(again["id"], id.as_str(), "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    // The same key for another request is a conflict.
    a.post_with(
        "/api/v1/messages",
        &[("Idempotency-Key", "dm-1")],
        json!({"to": "bob", "body": "something else"}),
    )
    .problem(409, code::EXISTS);

    // bob lists it: once, named, with a cursor.
    let inbox = eventually("bob's gateway stores alice's message", || {
        let v = b.get("/api/v1/messages").ok(200);
        if page(&v).iter().any(|m| m["id"] == id.as_str()) {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    let msgs = page(&inbox);
    assert_eq!(msgs.len(), 1, "one message, not two: {inbox}");
    let got = &msgs[0];
    assert_eq!(got["body"], DM_TEXT);
    assert_eq!(got["from_name"], "alice");
    assert_eq!(got["from"], alice.key_of("alice").as_str());
    assert_eq!(got["read"], false);
    let cursor = got["cursor"].as_i64().expect("cursor");
    assert_eq!(inbox["next_cursor"], cursor);

    // bob → alice.
    let reply = b
        .post(
            "/api/v1/messages",
            json!({"to": "alice", "body": REPLY_TEXT, "reply_to": id, "priority": "now"}),
        )
        .ok(201);
    assert_eq!(reply["duplicate"], false);
    let alice_inbox = eventually("alice's gateway stores bob's reply", || {
        let v = a.get("/api/v1/messages").ok(200);
        if page(&v).iter().any(|m| m["id"] == reply["id"]) {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    let r = &page(&alice_inbox)[0];
    assert_eq!(
        (&r["body"], &r["from_name"], &r["priority"]),
        (&json!(REPLY_TEXT), &json!("bob"), &json!("now")),
        "{r}"
    );

    // Cursors: after the first, only what came later.
    let second = a
        .post("/api/v1/messages", json!({"to": "bob", "body": "second"}))
        .ok(201);
    let later = eventually("bob's gateway stores the second message", || {
        let v = b.get(&format!("/api/v1/messages?after={cursor}")).ok(200);
        if page(&v).is_empty() {
            Err(v.to_string())
        } else {
            Ok(v)
        }
    });
    assert_eq!(bodies_of(&page(&later)), ["second"], "{later}");
    assert_eq!(page(&later)[0]["id"], second["id"]);
    let next = later["next_cursor"].as_i64().expect("next_cursor");
    assert!(next > cursor);
    let none = b.get(&format!("/api/v1/messages?after={next}")).ok(200);
    assert!(page(&none).is_empty(), "{none}");
    assert_eq!(none["next_cursor"], next, "the cursor asked with");
    let one = b.get("/api/v1/messages?limit=1").ok(200);
    assert_eq!(bodies_of(&page(&one)), [DM_TEXT], "{one}");
    assert_eq!(one["next_cursor"], cursor, "{one}");
    b.get("/api/v1/messages?after=oops")
        .problem(400, code::USAGE);

    // bob marks the first read; alice sees her message reach `read`.
    let marked = b
        .post("/api/v1/messages/read", json!({"ids": [id]}))
        .ok(200);
    assert_eq!(marked["marked"], 1, "{marked}");
    let unread = b.get("/api/v1/messages").ok(200);
    assert_eq!(bodies_of(&page(&unread)), ["second"], "{unread}");
    // Everything bob has (the retry went before "second", which is in):
    // the idempotent message once.
    let all = b.get("/api/v1/messages?unread=false").ok(200);
    let copies: Vec<Value> = page(&all)
        .into_iter()
        .filter(|m| m["id"] == id.as_str())
        .collect();
    assert_eq!(copies.len(), 1, "{all}");
    assert_eq!(copies[0]["read"], true);
    assert_eq!(bodies_of(&page(&all)), [DM_TEXT, "second"], "{all}");
    b.post("/api/v1/messages/read", json!({}))
        .problem(400, code::USAGE);
    let detail = eventually("alice sees bob read her message", || {
        let v = a.get(&format!("/api/v1/messages/{id}")).ok(200);
        // Shown, or answered already (bob replied before this): both are
        // proven by bob's signature.
        let r = &v["delivery"]["recipients"][0];
        if (r["state"] == "shown" || r["state"] == "answered") && r["proven"].is_string() {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(detail["id"], id.as_str());
    assert_eq!(
        detail["delivery"]["recipients"][0]["name"], "bob",
        "{detail}"
    );
    assert_eq!(
        detail["delivery"]["recipients"].as_array().map(Vec::len),
        Some(1)
    );
    // bob's side of the same message: received, no delivery of his.
    let his = b.get(&format!("/api/v1/messages/{id}")).ok(200);
    assert_eq!(his["received"][0]["body"], DM_TEXT, "{his}");
    assert!(his["delivery"].is_null(), "{his}");
    a.get("/api/v1/messages/0123456789abcdef0123456789abcdef")
        .problem(404, code::NOT_FOUND);
    a.get("/api/v1/messages/not-an-id")
        .problem(400, code::USAGE);

    // A topic: created (admin), joined, posted to, read back, marked read.
    let topic = a
        .post(
            "/api/v1/topics",
            json!({"name": "deploys", "description": "what shipped"}),
        )
        .ok(201);
    assert_eq!(
        (&topic["name"], &topic["members"], &topic["joined"]),
        (&json!("deploys"), &json!(1), &json!(true)),
        "{topic}"
    );
    a.post("/api/v1/topics", json!({"name": "deploys"}))
        .problem(409, code::EXISTS);
    let joined = eventually("bob's gateway learns of the topic", || {
        let r = b.post("/api/v1/topics/deploys/join", json!({}));
        if r.status == 200 {
            Ok(r.json())
        } else {
            Err(r.text())
        }
    });
    assert_eq!(joined["joined"], true, "{joined}");
    assert_eq!(joined["members"], 2, "{joined}");
    let post = a
        .post(
            "/api/v1/topics/deploys/messages",
            json!({"body": TOPIC_TEXT}),
        )
        .ok(201);
    assert_eq!(post["to"], "#deploys");
    let history = eventually("bob reads the topic's history", || {
        let v = b.get("/api/v1/topics/deploys/messages").ok(200);
        if v["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["body"] == TOPIC_TEXT))
        {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(history["topic"], "deploys");
    let h = &history["messages"][0];
    assert_eq!(
        (&h["from_name"], &h["target"], &h["id"]),
        (&json!("alice"), &json!("#deploys"), &post["id"]),
        "{history}"
    );
    let members = b.get("/api/v1/topics/deploys/members").ok(200);
    let mut names: Vec<&str> = members
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["alice", "bob"], "{members}");
    let in_inbox = eventually("the topic post reaches bob's inbox", || {
        let v = b.get("/api/v1/messages?topic=deploys").ok(200);
        if page(&v).is_empty() {
            Err(v.to_string())
        } else {
            Ok(v)
        }
    });
    assert_eq!(bodies_of(&page(&in_inbox)), [TOPIC_TEXT], "{in_inbox}");
    let listed = b.get("/api/v1/topics").ok(200);
    assert_eq!(listed[0]["name"], "deploys", "{listed}");
    assert_eq!(listed[0]["unread"], 1, "{listed}");
    let read = b.post("/api/v1/topics/deploys/read", json!({})).ok(200);
    assert_eq!(read["marked"], 1, "{read}");
    assert_eq!(b.get("/api/v1/topics/deploys").ok(200)["unread"], 0);
    b.get("/api/v1/topics/nope").problem(404, code::NOT_FOUND);

    // A group: joined with a role, listed, left.
    let g = b
        .post("/api/v1/groups/eng/join", json!({"role": "lead"}))
        .ok(200);
    assert_eq!(g["group"], "eng");
    let groups = b.get("/api/v1/groups").ok(200);
    let eng = groups
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "eng")
        .unwrap_or_else(|| panic!("no eng in {groups}"));
    assert_eq!(eng["members"][0]["name"], "bob", "{groups}");
    assert_eq!(eng["members"][0]["role"], "lead", "{groups}");
    eventually("alice's gateway sees bob in @eng", || {
        let v = a.get("/api/v1/groups").ok(200);
        if v.as_array().is_some_and(|gs| {
            gs.iter()
                .any(|g| g["name"] == "eng" && g["members"][0]["name"] == "bob")
        }) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    b.call("POST", "/api/v1/groups/eng/leave", &[], None)
        .ok(204);
    let after = b.get("/api/v1/groups").ok(200);
    assert!(
        !after.as_array().expect("groups").iter().any(|g| {
            g["name"] == "eng"
                && g["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["name"] == "bob"))
        }),
        "{after}"
    );
    // Not in it any more: a usage error, as `claudemesh group leave` says.
    b.call("POST", "/api/v1/groups/eng/leave", &[], None)
        .problem(400, code::USAGE);

    // The profile: set on alice's side, seen on bob's.
    let profile = a
        .patch(
            "/api/v1/profile",
            json!({"status": "working", "summary": SUMMARY_TEXT}),
        )
        .ok(200);
    assert_eq!(profile["status"], "working", "{profile}");
    assert_eq!(profile["summary"], SUMMARY_TEXT);
    assert_eq!(profile["session"], "alice@serve");
    assert_eq!(a.get("/api/v1/profile").ok(200)["summary"], SUMMARY_TEXT);
    a.patch("/api/v1/profile", json!({}))
        .problem(400, code::USAGE);
    a.patch("/api/v1/profile", json!({"status": "asleep"}))
        .problem(400, code::USAGE);
    let peers = eventually("bob sees alice's new status and summary", || {
        let v = b.get("/api/v1/peers").ok(200);
        let alice = v
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "alice"));
        match alice {
            Some(p) if p["status"] == "working" && p["summary"] == SUMMARY_TEXT => Ok(v.clone()),
            _ => Err(v.to_string()),
        }
    });
    let me = peers
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["name"] == "bob")
        .expect("bob is listed");
    assert_eq!(me["you"], true, "{peers}");
    assert_eq!(me["sessions"][0]["name"], "bob@serve", "{peers}");

    let (a_status, _) = gw_a.stop();
    let (b_status, _) = gw_b.stop();
    assert!(a_status.success() && b_status.success());
    [&json!(id), &reply["id"], &post["id"]]
        .iter()
        .map(|v| v.as_str().expect("an id").to_owned())
        .collect()
}

/// TM1: every table of the broker's store, every row as text (and, on
/// SQLite, the raw bytes of the database and its WAL) holds none of the
/// plaintexts that went through the gateways, though it holds their
/// messages (their `ids`, metadata the broker routes by, are found: the
/// search looks where the messages are).
fn no_plaintext_at_the_broker(broker: &Broker, ids: &[String], sqlite: Option<&Path>) {
    let running = broker.running.as_ref().expect("the broker runs");
    let dump = broker
        .rt
        .block_on(running.store().dump())
        .expect("the store dumps");
    let tables: Vec<&str> = dump.iter().map(|t| t.table.as_str()).collect();
    assert!(tables.contains(&"messages"), "{tables:?}");
    let rows: usize = dump.iter().map(|t| t.rows.len()).sum();
    assert!(rows > 10, "the broker stored the traffic: {rows} rows");
    let text: String = dump
        .iter()
        .flat_map(|t| t.rows.iter().flatten())
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    let lower = text.to_ascii_lowercase();
    for id in ids {
        assert!(
            lower.contains(id.as_str()),
            "message {id} is not in the dump"
        );
    }
    let plaintexts = [DM_TEXT, REPLY_TEXT, TOPIC_TEXT, SUMMARY_TEXT];
    for p in plaintexts {
        for form in [
            p.to_owned(),
            hex::encode(p.as_bytes()),
            hex::encode_upper(p.as_bytes()),
        ] {
            assert!(!text.contains(&form), "the broker's store holds {p:?}");
        }
    }
    if let Some(file) = sqlite {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let mut name = file.as_os_str().to_owned();
            name.push(suffix);
            if let Ok(mut f) = std::fs::File::open(&name) {
                f.read_to_end(&mut bytes).expect("read the database");
            }
        }
        for id in ids {
            let raw = hex::decode(id).expect("hex");
            assert!(
                bytes.windows(raw.len()).any(|w| w == raw.as_slice()),
                "message {id} is not in the database file"
            );
        }
        for p in plaintexts {
            assert!(
                !bytes.windows(p.len()).any(|w| w == p.as_bytes()),
                "the broker's database file holds {p:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 2 and 5: what a key may not do, and the audit of each key's use.

#[test]
fn serve_refuses_what_a_key_may_not_do_and_audits_each_use() {
    let broker = Broker::start();
    let (alice, bob) = team(&broker);
    let admin = api_key(&alice, "admin", "read,send,admin", None);
    let reader = api_key(&alice, "reader", "read", None);
    let scoped = api_key(&alice, "deploy-bot", "read,send", Some("deploys"));
    let doomed = api_key(&alice, "doomed", "read", None);
    let gw = alice.serve(&["--cors-origin", "https://ok.example"]);
    let a = Api::new(&gw, &admin);
    a.wait_up();

    // alice's inbox gets a direct message and a topic post from bob.
    a.post("/api/v1/topics", json!({"name": "deploys"})).ok(201);
    bob.run(&["topic", "join", "deploys"]).ok();
    bob.send("alice", "a direct word for alice");
    bob.send("#deploys", "a word on deploys");
    eventually("alice's gateway stores both", || {
        let v = a.get("/api/v1/messages").ok(200);
        if page(&v).len() == 2 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });

    // No key, a made-up key, a revoked key: 401, code 2 (refused).
    let p = Api::anon(&gw)
        .get("/api/v1/meshes")
        .problem(401, code::REFUSED);
    assert!(
        p["hint"].as_str().is_some_and(|h| h.contains("Bearer")),
        "{p}"
    );
    let made_up = format!("{}_{}", prefix_of(&admin), "A".repeat(43));
    Api::new(&gw, &made_up)
        .get("/api/v1/meshes")
        .problem(401, code::REFUSED);
    Api::anon(&gw)
        .call(
            "GET",
            "/api/v1/meshes",
            &[("Authorization", &format!("Basic {admin}"))],
            None,
        )
        .problem(401, code::REFUSED);
    let d = Api::new(&gw, &doomed);
    d.get("/api/v1/meshes").ok(200);
    alice
        .run(&["-y", "apikey", "revoke", prefix_of(&doomed)])
        .ok();
    let p = d.get("/api/v1/meshes").problem(401, code::REFUSED);
    assert!(
        p["detail"].as_str().is_some_and(|t| t.contains("revoked")),
        "{p}"
    );

    // A read-only key reads, and may not send (403, code 7).
    let r = Api::new(&gw, &reader);
    assert_eq!(page(&r.get("/api/v1/messages").ok(200)).len(), 2);
    let p = r
        .post("/api/v1/messages", json!({"to": "bob", "body": "no"}))
        .problem(403, code::DENIED);
    assert_eq!(p["kind"], "denied");
    r.post("/api/v1/topics", json!({"name": "other"}))
        .problem(403, code::DENIED);
    r.post("/api/v1/messages/read", json!({"up_to": 100}))
        .problem(403, code::DENIED);

    // A key limited to #deploys: that topic and nothing else.
    let s = Api::new(&gw, &scoped);
    s.post("/api/v1/messages", json!({"to": "bob", "body": "no"}))
        .problem(403, code::DENIED);
    s.post("/api/v1/messages", json!({"to": "#other", "body": "no"}))
        .problem(403, code::DENIED);
    s.post("/api/v1/messages", json!({"to": "*", "body": "no"}))
        .problem(403, code::DENIED);
    s.post("/api/v1/topics/other/messages", json!({"body": "no"}))
        .problem(403, code::DENIED);
    let posted = s
        .post(
            "/api/v1/messages",
            json!({"to": "#deploys", "body": "deployed v2"}),
        )
        .ok(201);
    assert_eq!(posted["to"], "#deploys");
    s.get("/api/v1/peers").problem(403, code::DENIED);
    s.get("/api/v1/groups").problem(403, code::DENIED);
    s.get("/api/v1/profile").problem(403, code::DENIED);
    s.get("/api/v1/messages?topic=other")
        .problem(403, code::DENIED);
    let mine = s.get("/api/v1/messages?unread=false").ok(200);
    assert_eq!(bodies_of(&page(&mine)), ["a word on deploys"], "{mine}");
    let topics = s.get("/api/v1/topics").ok(200);
    assert_eq!(topics.as_array().map(Vec::len), Some(1), "{topics}");
    assert_eq!(s.get("/api/v1/meshes").ok(200)[0]["unread"], 1);
    let everything = a.get("/api/v1/messages?unread=false").ok(200);
    assert_eq!(page(&everything).len(), 2, "{everything}");
    let dm_id = page(&everything)
        .iter()
        .find(|m| m["target"] != "#deploys")
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .expect("the direct message");
    s.get(&format!("/api/v1/messages/{dm_id}"))
        .problem(404, code::NOT_FOUND);

    // Another Host (DNS rebinding): 421, before the key is even looked at.
    let port = gw.port();
    let evil = format!("evil.example:{port}");
    a.call("GET", "/api/v1/meshes", &[("Host", &evil)], None)
        .problem(421, code::REFUSED);
    Api::anon(&gw)
        .call("GET", "/healthz", &[("Host", &evil)], None)
        .problem(421, code::REFUSED);
    let local = format!("localhost:{port}");
    a.call("GET", "/api/v1/meshes", &[("Host", &local)], None)
        .ok(200);

    // Sizes and shapes.
    let huge = json!({"to": "bob", "body": "x".repeat(300 * 1024)});
    a.post("/api/v1/messages", huge).problem(413, code::USAGE);
    let big = json!({"to": "bob", "body": "x".repeat(64 * 1024 + 1)});
    a.post("/api/v1/messages", big).problem(413, code::USAGE);
    a.call(
        "POST",
        "/api/v1/messages",
        &[],
        Some(b"{\"to\": \"bob\", \"body\": ".to_vec()),
    )
    .problem(400, code::USAGE);
    a.post(
        "/api/v1/messages",
        json!({"to": "bob", "body": "hi", "cc": "carol"}),
    )
    .problem(400, code::USAGE);
    a.post("/api/v1/messages", json!({"to": "bob", "body": ""}))
        .problem(400, code::USAGE);
    a.post("/api/v1/messages", json!({"to": "nobody", "body": "hi"}))
        .problem(404, code::NOT_FOUND);
    a.call(
        "POST",
        "/api/v1/messages",
        &[("Content-Type", "text/plain")],
        Some(b"hello".to_vec()),
    )
    .problem(415, code::USAGE);

    // CORS: only the configured origin gets the header.
    let evil_origin = a.call(
        "GET",
        "/api/v1/meshes",
        &[("Origin", "https://evil.example")],
        None,
    );
    assert_eq!(evil_origin.status, 200);
    assert_eq!(
        evil_origin.header("access-control-allow-origin"),
        None,
        "{evil_origin:?}"
    );
    let ok_origin = a.call(
        "GET",
        "/api/v1/meshes",
        &[("Origin", "https://ok.example")],
        None,
    );
    assert_eq!(
        ok_origin.header("access-control-allow-origin"),
        Some("https://ok.example"),
        "{ok_origin:?}"
    );
    let preflight = |origin: &str| {
        Api::anon(&gw).call(
            "OPTIONS",
            "/api/v1/messages",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type",
                ),
            ],
            None,
        )
    };
    let refused = preflight("https://evil.example");
    refused.problem(403, code::DENIED);
    assert_eq!(refused.header("access-control-allow-origin"), None);
    let allowed = preflight("https://ok.example");
    assert_eq!(allowed.status, 204, "{allowed:?}");
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://ok.example")
    );
    assert!(
        allowed
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST")),
        "{allowed:?}"
    );

    // A bearer token that is not a claudemesh key at all.
    let foreign = "eyJhbGciOiJIUzI1NiJ9foreignsecret0123456789";
    Api::new(&gw, foreign)
        .get("/api/v1/groups")
        .problem(401, code::REFUSED);

    // The audit log: each use of a key, by its prefix, never its secret.
    let log = alice.home.join("audit.log");
    let expect = [
        ("allowed", "api.POST /api/v1/messages", prefix_of(&scoped)),
        ("denied", "api.POST /api/v1/messages", prefix_of(&reader)),
        ("denied", "api.GET /api/v1/peers", prefix_of(&scoped)),
        ("denied", "api.GET /api/v1/meshes", prefix_of(&doomed)),
        ("allowed", "api.GET /api/v1/meshes", prefix_of(&doomed)),
        ("failed", "api.POST /api/v1/messages", prefix_of(&admin)),
        ("allowed", "api.POST /api/v1/topics", prefix_of(&admin)),
        ("denied", "api.GET /api/v1/groups", "(not a key)"),
    ];
    let entries: Vec<Value> = eventually("every key use is in the audit log", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let entries: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .filter(|e: &Value| e["mode"] == "apikey")
            .collect();
        let missing: Vec<_> = expect
            .iter()
            .filter(|(decision, verb, target)| {
                !entries.iter().any(|e| {
                    e["decision"] == *decision
                        && e["verb"] == *verb
                        && e["target"].as_str().is_some_and(|t| t.starts_with(target))
                })
            })
            .collect();
        if missing.is_empty() {
            Ok(entries)
        } else {
            Err(format!("missing {missing:?}"))
        }
    });
    for e in &entries {
        assert!(
            e["verb"].as_str().is_some_and(|v| v.starts_with("api.")),
            "{e}"
        );
        assert!(
            e["target"]
                .as_str()
                .is_some_and(|t| t == "(not a key)" || is_prefix(t)),
            "the target is a key prefix: {e}"
        );
    }
    let admin_use = entries
        .iter()
        .find(|e| e["target"] == prefix_of(&admin))
        .expect("the admin key's use");
    assert_eq!(admin_use["mesh"], "team", "{admin_use}");
    assert!(
        admin_use["reason"]
            .as_str()
            .is_some_and(|r| r.contains("(admin)") && r.contains("HTTP ")),
        "{admin_use}"
    );
    let text = std::fs::read_to_string(&log).expect("audit.log");
    for key in [&admin, &reader, &scoped, &doomed] {
        assert!(
            !text.contains(secret_of(key)),
            "a key's secret is in the audit log"
        );
    }
    assert!(
        !text.contains("foreignsecret"),
        "a bearer token is in the audit log"
    );
    let v = alice.run(&["--json", "audit", "verify"]).ok().json();
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["entries"]
            .as_u64()
            .is_some_and(|n| n as usize > entries.len()),
        "{v}"
    );
}

// ---------------------------------------------------------------------------
// 3: the event stream.

#[test]
fn serve_event_stream_resumes_after_a_reconnect_and_a_restart() {
    let broker = Broker::start();
    let (alice, bob) = team(&broker);
    let key_a = api_key(&alice, "alice-events", "read,send,admin", None);
    let key_b = api_key(&bob, "bob-events", "read,send", None);
    let key_t = api_key(&bob, "bob-deploys", "read", Some("deploys"));
    let gw_a = alice.serve(&[]);
    let a = Api::new(&gw_a, &key_a);
    a.wait_up();
    let gw_b = bob.serve(&[]);
    let b = Api::new(&gw_b, &key_b);
    b.wait_up();
    a.post("/api/v1/topics", json!({"name": "deploys"})).ok(201);
    eventually("bob joins #deploys", || {
        let r = b.post("/api/v1/topics/deploys/join", json!({}));
        if r.status == 200 {
            Ok(())
        } else {
            Err(r.text())
        }
    });

    // Streams that start now (no Last-Event-ID: from the newest).
    let alice_events = a.events("", &[]);
    assert_eq!(alice_events.head.status, 200);
    assert!(
        alice_events
            .head
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{:?}",
        alice_events.head
    );
    let stream = b.events("", &[]);
    assert_eq!(stream.head.status, 200);
    let m0 = a
        .post("/api/v1/messages", json!({"to": "bob", "body": "m0"}))
        .ok(201);
    let e0 = stream.next_of(&["message"]);
    let d0 = e0.json();
    assert_eq!(d0["body"], "m0", "{e0:?}");
    assert_eq!(d0["id"], m0["id"]);
    assert_eq!(d0["from_name"], "alice");
    assert!(d0["cursor"].is_i64(), "shaped as in GET /messages: {d0}");
    let last = e0.id();

    // bob reads it: alice's stream gets the status change.
    b.post("/api/v1/messages/read", json!({"ids": [m0["id"]]}))
        .ok(200);
    let status = loop {
        let e = alice_events.next_of(&["status"]);
        let v = e.json();
        if v["id"] == m0["id"] && v["recipients"][0]["state"] == "shown" {
            break v;
        }
    };
    assert_eq!(status["recipients"][0]["name"], "bob", "{status}");
    drop(alice_events);

    // Closed; three more; resumed after the last one seen: those three,
    // in order, once (the marker after them comes next).
    drop(stream);
    let mut sent = Vec::new();
    for body in ["m1", "m2", "m3"] {
        sent.push(
            a.post("/api/v1/messages", json!({"to": "bob", "body": body}))
                .ok(201)["id"]
                .clone(),
        );
    }
    let last_id = last.to_string();
    let resumed = b.events("", &[("Last-Event-ID", &last_id)]);
    assert_eq!(resumed.head.status, 200);
    let first_three: Vec<SseEvent> = (0..3).map(|_| resumed.next_of(&["message"])).collect();
    a.post("/api/v1/messages", json!({"to": "bob", "body": "marker-1"}))
        .ok(201);
    let mut got = first_three;
    got.extend(resumed.messages_until("marker-1"));
    let bodies: Vec<String> = got
        .iter()
        .map(|e| e.json()["body"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(bodies, ["m1", "m2", "m3", "marker-1"], "{got:?}");
    let ids: Vec<i64> = got.iter().map(SseEvent::id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > last,
        "{ids:?}"
    );
    let msg_ids: Vec<Value> = got[..3].iter().map(|e| e.json()["id"].clone()).collect();
    assert_eq!(msg_ids, sent);
    // `?after=` is the same resume point as the header.
    let by_query = b.events(&format!("?after={}&kinds=message", ids[0]), &[]);
    let again: Vec<String> = (0..3)
        .map(|_| {
            by_query.next_of(&["message"]).json()["body"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(again, ["m2", "m3", "marker-1"]);
    drop(by_query);
    b.call(
        "GET",
        "/api/v1/events",
        &[("Last-Event-ID", "yesterday")],
        None,
    )
    .problem(400, code::USAGE);
    b.get("/api/v1/events?kinds=gossip")
        .problem(400, code::USAGE);

    // A key limited to #deploys: only that topic's messages (from the
    // start of the journal: the direct messages above are left out).
    let topical = Api::new(&gw_b, &key_t).events("?after=0", &[]);
    a.post("/api/v1/topics/deploys/messages", json!({"body": "t1"}))
        .ok(201);
    let e = topical.next_of(&["message", "status", "presence", "membership", "rejected"]);
    assert_eq!(e.event, "message", "{e:?}");
    let t = e.json();
    assert_eq!(
        (&t["body"], &t["target"]),
        (&json!("t1"), &json!("#deploys")),
        "{t}"
    );
    drop(topical);
    // bob's own stream, still open, has it next (and nothing between).
    let t1 = resumed.messages_until("t1");
    assert_eq!(t1.len(), 1, "{t1:?}");
    assert_eq!(t1[0].id(), e.id(), "one journal, one id");
    let last = e.id();

    // bob's gateway stops (its open stream ends), two are sent meanwhile,
    // it starts again: resumed from the journal in state.db.
    let (st, _) = gw_b.stop();
    assert!(st.success(), "{st:?}");
    assert!(
        resumed.ends_within(Duration::from_secs(5)),
        "the stream ends"
    );
    drop(resumed);
    for body in ["m4", "m5"] {
        a.post("/api/v1/messages", json!({"to": "bob", "body": body}))
            .ok(201);
    }
    let gw_b = bob.serve(&[]);
    let b = Api::new(&gw_b, &key_b);
    b.wait_up();
    let last_id = last.to_string();
    let after_restart = b.events("", &[("Last-Event-ID", &last_id)]);
    let two: Vec<SseEvent> = (0..2)
        .map(|_| after_restart.next_of(&["message"]))
        .collect();
    a.post("/api/v1/messages", json!({"to": "bob", "body": "marker-2"}))
        .ok(201);
    let mut got = two;
    got.extend(after_restart.messages_until("marker-2"));
    let bodies: Vec<String> = got
        .iter()
        .map(|e| e.json()["body"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(bodies, ["m4", "m5", "marker-2"], "{got:?}");
    let ids: Vec<i64> = got.iter().map(SseEvent::id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > last,
        "{ids:?}"
    );
}

// ---------------------------------------------------------------------------
// 4: the gateway's lifecycle.

#[test]
fn serve_one_gateway_per_home_loopback_only_and_drains_on_sigterm() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    let key = api_key(&alice, "life", "read", None);

    // No mesh: nothing to serve (5).
    let nobody = broker.user("nobody");
    let r = nobody
        .run(&["serve", "--listen", "127.0.0.1:0"])
        .fails(code::NOT_FOUND)
        .with_hint();
    assert!(r.stderr.contains("mesh"), "{r:?}");
    // A non-loopback address in clear: refused (3) before anything starts.
    let r = alice
        .run(&["serve", "--listen", "0.0.0.0:0"])
        .fails(code::USAGE)
        .with_hint();
    assert!(r.stderr.contains("--insecure-listen"), "{r:?}");
    assert!(!alice.home.join("serve.lock").exists());

    let gw = alice.serve(&[]);
    let api = Api::new(&gw, &key);
    api.wait_up();
    // A second gateway on the same home: 6, naming the one that runs.
    let r = alice
        .run(&["serve", "--listen", "127.0.0.1:0"])
        .fails(code::EXISTS)
        .with_hint();
    assert!(
        r.stderr
            .contains(&format!("pid {} listening on {}", gw.pid, gw.url)),
        "names the running one and where it listens: {r:?}"
    );
    let v = alice
        .run(&["--json", "serve", "--listen", "127.0.0.1:0"])
        .fails_json(code::EXISTS, "exists");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&gw.pid.to_string())),
        "{v}"
    );
    // The first one still serves.
    api.get("/api/v1/meshes").ok(200);

    // SIGTERM with a client on the event stream: the stream ends, the
    // gateway exits 0 promptly, and the home is free again.
    let stream = api.events("", &[]);
    assert_eq!(stream.head.status, 200);
    let (status, took) = gw.stop();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        stream.ends_within(Duration::from_secs(5)),
        "the stream ends"
    );
    let again = alice.serve(&[]);
    let api = Api::new(&again, &key);
    assert_eq!(api.wait_up()[0]["link"], "up");
    let (status, _) = again.stop();
    assert!(status.success());
}

// ---------------------------------------------------------------------------
// 7: the API's own description.

#[test]
fn serve_docs_and_health_need_no_key() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    let gw = alice.serve(&[]);
    let anon = Api::anon(&gw);

    let health = anon.get("/healthz");
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.text().trim(), "ok");

    let doc = anon.get("/api-docs/openapi.json");
    assert_eq!(doc.status, 200, "{doc:?}");
    assert!(
        doc.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{doc:?}"
    );
    let v = doc.json();
    assert!(
        v["openapi"].as_str().is_some_and(|o| o.starts_with("3.")),
        "{}",
        v["openapi"]
    );
    for path in [
        "/api/v1/messages",
        "/api/v1/messages/{id}",
        "/api/v1/events",
        "/api/v1/topics/{topic}/messages",
        "/api/v1/peers",
        "/api/v1/profile",
    ] {
        assert!(v["paths"].get(path).is_some(), "no {path} in the document");
    }
    let bearer = &v["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http", "{bearer}");
    assert_eq!(
        bearer["scheme"].as_str().map(str::to_ascii_lowercase),
        Some("bearer".into()),
        "{bearer}"
    );

    let page = anon.get("/api-docs");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{page:?}"
    );
    let csp = page
        .header("content-security-policy")
        .expect("a Content-Security-Policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text();
    assert!(!html.to_ascii_lowercase().contains("<script"), "no script");
    assert!(
        html.contains("/api/v1/messages"),
        "the page lists the routes"
    );
    assert!(
        anon.get("/api-docs/style.css")
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/css"))
    );

    // Without a key, these are no key uses: nothing in the audit log.
    let audit = std::fs::read_to_string(alice.home.join("audit.log")).unwrap_or_default();
    assert!(!audit.contains("api."), "{audit}");
    let (status, _) = gw.stop();
    assert!(status.success());
}

// ---------------------------------------------------------------------------
// 8: where it listens — a Unix socket, TLS, beyond loopback.

#[test]
fn serve_on_a_unix_socket_private_any_host_and_removed_on_stop() {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let broker = Broker::start();
    let (alice, bob) = team(&broker);
    let key = api_key(&alice, "socket", "read,send", None);
    let dir = broker.dir.path().join("run");
    std::fs::create_dir(&dir).expect("a directory for the socket");
    let sock = dir.join("gw.sock");
    let sock_s = sock.to_str().expect("a UTF-8 path");
    let is_socket =
        |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket());

    // Not with --listen, not with TLS: usage errors, nothing bound.
    for extra in [
        &["--listen", "127.0.0.1:0"][..],
        &["--tls-cert", "cert.pem", "--tls-key", "key.pem"][..],
    ] {
        let mut args = vec!["serve", "--unix", sock_s];
        args.extend_from_slice(extra);
        let r = alice.run(&args);
        assert_eq!(r.code, code::USAGE, "{r:?}");
        assert!(r.stderr.contains("cannot be used with"), "{r:?}");
        assert!(!sock.exists(), "{extra:?}");
    }
    // A file that is not a socket is not replaced: exit 10, left as it was.
    let file = dir.join("not-a-socket");
    std::fs::write(&file, "keep me").expect("write");
    let r = alice
        .run(&["serve", "--unix", file.to_str().expect("UTF-8")])
        .fails(10);
    assert!(r.stderr.contains("not-a-socket"), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(&file).ok().as_deref(),
        Some("keep me")
    );

    let gw = alice.serve_with(&["--unix", sock_s]);
    assert_eq!(gw.url, format!("unix:{sock_s}"), "the --json line");
    assert_eq!(gw.meshes, ["team"]);
    let meta = std::fs::symlink_metadata(&sock).expect("the socket is there");
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "mode {:o}",
        meta.permissions().mode()
    );
    // The lock names it, and a second gateway says so.
    let r = alice
        .run(&[
            "serve",
            "--unix",
            dir.join("other.sock").to_str().expect("UTF-8"),
        ])
        .fails(code::EXISTS);
    assert!(r.stderr.contains(&format!("unix:{sock_s}")), "{r:?}");
    assert!(!dir.join("other.sock").exists());

    let api = Api::new(&gw, &key);
    let meshes = api.wait_up();
    assert_eq!(meshes[0]["name"], "team", "{meshes}");
    assert_eq!(meshes[0]["session"], "alice@serve", "{meshes}");
    // Any Host is answered on a socket (no web page can open one); the
    // key is still needed.
    for host in ["evil.example", "evil.example:8080", "localhost:1"] {
        let m = api
            .call("GET", "/api/v1/meshes", &[("Host", host)], None)
            .ok(200);
        assert_eq!(m[0]["name"], "team", "{host}: {m}");
    }
    Api::anon(&gw)
        .call("GET", "/api/v1/meshes", &[("Host", "evil.example")], None)
        .problem(401, code::REFUSED);
    assert_eq!(Api::anon(&gw).get("/healthz").status, 200);

    // Both ways through the socket: bob's message on the event stream,
    // alice's reply in bob's inbox.
    let stream = api.events("?kinds=message", &[]);
    assert_eq!(stream.head.status, 200, "{:?}", stream.head);
    let id = bob.send("alice", "through the socket");
    let e = stream.next_of(&["message"]).json();
    assert_eq!(
        (&e["id"], &e["body"], &e["from_name"]),
        (&json!(id), &json!("through the socket"), &json!("bob")),
        "{e}"
    );
    let sent = api
        .post(
            "/api/v1/messages",
            json!({"to": "bob", "body": "back through the socket"}),
        )
        .ok(201);
    let got = bob.inbox_json(&[]);
    assert!(
        got.iter()
            .any(|m| m["id"] == sent["id"] && m["body"] == "back through the socket"),
        "{got:?}"
    );

    // SIGTERM: the stream ends, it exits 0, and the socket is gone.
    let (status, _) = gw.stop();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        stream.ends_within(Duration::from_secs(5)),
        "the stream ends"
    );
    assert!(
        std::fs::symlink_metadata(&sock).is_err(),
        "the socket is removed on stop"
    );

    // A gateway that dies leaves its socket; the next one replaces it.
    let gw = alice.serve_with(&["--unix", sock_s]);
    let status = gw.kill();
    assert!(!status.success(), "{status:?}");
    assert!(
        is_socket(&sock),
        "a killed gateway cannot remove its socket"
    );
    let gw = alice.serve_with(&["--unix", sock_s]);
    assert_eq!(Api::new(&gw, &key).wait_up()[0]["link"], "up");
    let mode = std::fs::symlink_metadata(&sock)
        .expect("the socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let (status, _) = gw.stop();
    assert!(status.success(), "{status:?}");
    assert!(!is_socket(&sock) && !sock.exists());
}

/// A certificate for `names` signed by a fresh private CA, as tls.rs makes
/// the broker's: the PEM files of the CA, the certificate and its key, in
/// `dir`.
fn private_ca_cert(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).expect("a directory for the certificate");
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    // Names of their own: OpenSSL (curl) takes a certificate whose
    // subject is its issuer's for a self-signed one.
    ca.distinguished_name
        .push(DnType::CommonName, "claudemesh test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("the CA signs itself");
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().expect("a key");
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut leaf = CertificateParams::new(names).expect("certificate parameters");
    leaf.distinguished_name
        .push(DnType::CommonName, "claudemesh gateway");
    let leaf = leaf.signed_by(&leaf_key, &issuer).expect("the CA signs it");
    let (ca_file, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_file, ca_cert.pem()).expect("write the CA");
    std::fs::write(&cert, leaf.pem()).expect("write the certificate");
    std::fs::write(&key, leaf_key.serialize_pem()).expect("write the key");
    (ca_file, cert, key)
}

/// curl with these arguments, as is: its exit status and output.
fn curl_raw(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl is installed")
}

#[test]
fn serve_over_tls_by_its_names_and_beyond_loopback() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    let key = api_key(&alice, "tls", "read", None);
    let dir = broker.dir.path().join("tls");
    let (ca, cert, tls_key) = private_ca_cert(&dir, &["localhost", "127.0.0.1", "mesh.test"]);
    let (_, _, stranger_key) = private_ca_cert(&dir.join("other"), &["localhost"]);
    let cert_s = cert.to_str().expect("UTF-8");
    let key_s = tls_key.to_str().expect("UTF-8");
    let ca_s = ca.to_str().expect("UTF-8");

    // TLS files that do not load, or half a pair: exit 3, nothing served.
    let missing = dir.join("missing.pem");
    for (c, k) in [
        (missing.to_str().expect("UTF-8"), key_s),
        (cert_s, missing.to_str().expect("UTF-8")),
        (ca_s, key_s),
        (key_s, key_s),
        (cert_s, stranger_key.to_str().expect("UTF-8")),
    ] {
        let r = alice
            .run(&[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
                c,
                "--tls-key",
                k,
            ])
            .fails(code::USAGE);
        assert!(r.stderr.contains(".pem"), "names the file: {r:?}");
    }
    let r = alice.run(&["serve", "--listen", "127.0.0.1:0", "--tls-cert", cert_s]);
    assert_eq!(r.code, code::USAGE, "{r:?}");
    assert!(r.stderr.contains("--tls-key"), "{r:?}");

    let tls = [
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert_s,
        "--tls-key",
        key_s,
    ];
    let gw = alice.serve_with(&tls);
    assert!(gw.url.starts_with("https://127.0.0.1:"), "{}", gw.url);
    let port = gw.port();
    let by_address = Api::tls(&gw.url, &ca, Some(&key));
    assert_eq!(by_address.wait_up()[0]["name"], "team");
    let by_name = Api::tls(&format!("https://localhost:{port}"), &ca, Some(&key));
    assert_eq!(by_name.get("/api/v1/meshes").ok(200)[0]["link"], "up");
    by_name
        .call(
            "GET",
            "/api/v1/meshes",
            &[("Host", &format!("evil.example:{port}"))],
            None,
        )
        .problem(421, code::REFUSED);
    // Not a name it was told to answer to, though the certificate has it.
    let resolve = format!("mesh.test:{port}:127.0.0.1");
    let as_mesh_test = Api {
        base: format!("https://mesh.test:{port}"),
        key: Some(key.clone()),
        args: vec![
            "--cacert".into(),
            ca_s.into(),
            "--resolve".into(),
            resolve.clone(),
        ],
    };
    as_mesh_test
        .get("/api/v1/meshes")
        .problem(421, code::REFUSED);
    // Its certificate is what it serves: not trusted without the CA.
    let untrusted = curl_raw(&[
        "-sS",
        "--max-time",
        "10",
        &format!("https://localhost:{port}/healthz"),
    ]);
    assert_eq!(untrusted.status.code(), Some(60), "{untrusted:?}");
    // Plain HTTP to the TLS port: a 400 that says to use https, and
    // nothing of the API.
    let plain = curl(
        &[],
        "GET",
        &format!("http://127.0.0.1:{port}/api/v1/meshes"),
        &[("Authorization", &format!("Bearer {key}"))],
        None,
    );
    assert_eq!(plain.status, 400, "{plain:?}");
    assert!(plain.text().contains("https://"), "{}", plain.text());
    assert!(!plain.text().contains("team"), "{}", plain.text());
    let (status, _) = gw.stop();
    assert!(status.success(), "{status:?}");

    // Every address, with TLS (no --insecure-listen needed), and a name
    // of the certificate allowed.
    let gw = alice.serve_with(&[
        "--listen",
        "0.0.0.0:0",
        "--tls-cert",
        cert_s,
        "--tls-key",
        key_s,
        "--allow-host",
        "mesh.test",
    ]);
    assert!(gw.url.starts_with("https://0.0.0.0:"), "{}", gw.url);
    let port = gw.port();
    let as_mesh_test = Api {
        base: format!("https://mesh.test:{port}"),
        key: Some(key.clone()),
        args: vec![
            "--cacert".into(),
            ca_s.into(),
            "--resolve".into(),
            format!("mesh.test:{port}:127.0.0.1"),
        ],
    };
    assert_eq!(as_mesh_test.wait_up()[0]["name"], "team");
    let local = Api::tls(&format!("https://localhost:{port}"), &ca, Some(&key));
    local.get("/api/v1/meshes").ok(200);
    for host in [
        format!("other.test:{port}"),
        // Without the port it would be 443's.
        "mesh.test".to_owned(),
        format!("0.0.0.0:{port}"),
    ] {
        local
            .call("GET", "/api/v1/meshes", &[("Host", &host)], None)
            .problem(421, code::REFUSED);
    }
    let (status, _) = gw.stop();
    assert!(status.success(), "{status:?}");

    // Plain HTTP beyond loopback, when asked for in so many words.
    let gw = alice.serve_with(&["--listen", "0.0.0.0:0", "--insecure-listen"]);
    assert!(gw.url.starts_with("http://0.0.0.0:"), "{}", gw.url);
    let plain = Api {
        base: format!("http://127.0.0.1:{}", gw.port()),
        key: Some(key.clone()),
        args: Vec::new(),
    };
    assert_eq!(plain.wait_up()[0]["name"], "team");
    let (status, _) = gw.stop();
    assert!(status.success(), "{status:?}");
}

// ---------------------------------------------------------------------------
// 9: each key's rate.

#[test]
fn serve_rate_limits_each_key_on_its_own() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    let busy = api_key(&alice, "busy", "read", None);
    let calm = api_key(&alice, "calm", "read", None);
    let waiter = api_key(&alice, "waiter", "read", None);
    let gw = alice.serve(&["--rate", "2"]);
    Api::new(&gw, &waiter).wait_up();
    let b = Api::new(&gw, &busy);
    let c = Api::new(&gw, &calm);

    // 2 a second in bursts of 4: one key asks as fast as curl goes until
    // it has been refused three times.
    let started = Instant::now();
    let mut answers = Vec::new();
    while answers.iter().filter(|h: &&Http| h.status == 429).count() < 3 && answers.len() < 40 {
        answers.push(b.get("/api/v1/meshes"));
    }
    let took = started.elapsed();
    // At that moment another key is answered.
    assert_eq!(c.get("/api/v1/meshes").ok(200)[0]["name"], "team");
    // And a request without a key is refused for that, not for the rate.
    Api::anon(&gw)
        .get("/api/v1/meshes")
        .problem(401, code::REFUSED);

    let statuses: Vec<u16> = answers.iter().map(|h| h.status).collect();
    assert_eq!(statuses[..4], [200; 4], "the burst: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    let refused: Vec<&Http> = answers.iter().filter(|h| h.status == 429).collect();
    assert_eq!(refused.len(), 3, "refused within 40 requests: {statuses:?}");
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    let most = 4.0 + 2.0 * took.as_secs_f64() + 1.0;
    assert!(
        (allowed as f64) <= most,
        "{allowed} answered in {took:?}, at most {most}: {statuses:?}"
    );
    let mut wait = 0;
    for h in refused {
        let p = h.problem(429, code::NETWORK);
        assert_eq!(p["kind"], "network", "{p}");
        assert!(
            p["detail"]
                .as_str()
                .is_some_and(|d| d.contains("too many requests")),
            "{p}"
        );
        let retry: u64 = h
            .header("retry-after")
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("a Retry-After in seconds: {h:?}"));
        // Half a second to the next token, in whole seconds.
        assert_eq!(retry, 1, "{h:?}");
        assert_eq!(p["retry_after"], retry, "{p}");
        wait = wait.max(retry);
    }
    // Waiting as told is enough.
    std::thread::sleep(Duration::from_secs(wait));
    b.get("/api/v1/meshes").ok(200);

    // Each refusal is a denied use of that key in the audit log.
    let log = alice.home.join("audit.log");
    let denied = eventually("the refusals are in the audit log", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let denied: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| {
                e["mode"] == "apikey"
                    && e["decision"] == "denied"
                    && e["target"] == prefix_of(&busy)
            })
            .collect();
        if denied.len() == 3 {
            Ok(denied)
        } else {
            Err(format!("{} of 3: {text}", denied.len()))
        }
    });
    for e in &denied {
        assert_eq!(e["verb"], "api.GET /api/v1/meshes", "{e}");
        assert!(
            e["reason"].as_str().is_some_and(|r| r.contains("HTTP 429")),
            "{e}"
        );
    }
    let (status, _) = gw.stop();
    assert!(status.success(), "{status:?}");
}

// ---------------------------------------------------------------------------
// 10: the broker goes away and comes back.

#[test]
fn serve_rides_out_a_broker_restart() {
    let mut broker = Broker::start();
    let (alice, bob) = team(&broker);
    let key_a = api_key(&alice, "alice-link", "read,send", None);
    let key_b = api_key(&bob, "bob-link", "read,send", None);
    let gw_a = alice.serve(&[]);
    let a = Api::new(&gw_a, &key_a);
    let before = a.wait_up();
    let me = before[0]["member"].clone();
    assert!(me.is_string(), "{before}");
    let stream_a = a.events("?kinds=connection,message", &[]);
    assert_eq!(stream_a.head.status, 200);

    // The broker stops: the link is down, and the stream says so.
    broker.stop();
    let down = eventually("alice's gateway sees its link down", || {
        let v = a.get("/api/v1/meshes").ok(200);
        if v[0]["link"] == "down" {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    let m = &down[0];
    assert!(
        m["link_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{m}"
    );
    assert_eq!(m["member"], me, "the session is kept while it reconnects");
    let e = stream_a.next_of(&["connection"]).json();
    assert_eq!(e["state"], "down", "{e}");
    assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");

    // While it is down a send waits in the client's outbox, and a read
    // waits for the reconnection (neither is refused at once).
    let a_send = a.clone();
    let sending = std::thread::spawn(move || {
        a_send.post(
            "/api/v1/messages",
            json!({"to": "bob", "body": "sent while the broker was down"}),
        )
    });
    let a_read = a.clone();
    let reading = std::thread::spawn(move || a_read.get("/api/v1/peers"));

    // bob's gateway starts while nothing answers: it serves, its link is
    // `connecting`, and what needs the broker is a 503 to retry.
    let gw_b = bob.serve(&[]);
    let b = Api::new(&gw_b, &key_b);
    let m = b.get("/api/v1/meshes").ok(200);
    assert_eq!(m[0]["link"], "connecting", "{m}");
    assert!(m[0]["member"].is_null() && m[0]["role"].is_null(), "{m}");
    for r in [
        b.get("/api/v1/peers"),
        b.post(
            "/api/v1/messages",
            json!({"to": "alice", "body": "too soon"}),
        ),
    ] {
        let p = r.problem(503, code::NETWORK);
        let retry: u64 = r
            .header("retry-after")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a Retry-After: {r:?}"));
        assert!(retry >= 1, "{r:?}");
        assert_eq!(p["retry_after"], retry, "{p}");
        assert!(
            p["detail"]
                .as_str()
                .is_some_and(|d| d.contains("connecting")),
            "{p}"
        );
    }
    let stream_b = b.events("?kinds=connection,message", &[]);
    assert_eq!(stream_b.head.status, 200);
    assert!(
        !sending.is_finished() && !reading.is_finished(),
        "alice's requests wait for the broker"
    );

    // The broker is back on the same port and store.
    broker.restart();
    let sent = sending.join().expect("the send").ok(201);
    assert_eq!(sent["duplicate"], false, "{sent}");
    let peers = reading.join().expect("the read").ok(200);
    assert!(
        peers
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "alice" && p["you"] == true)),
        "{peers}"
    );
    let up = a.wait_up();
    assert_eq!(up[0]["member"], me);
    assert!(up[0]["link_error"].is_null(), "{up}");
    let e = stream_a.next_of(&["connection"]).json();
    assert_eq!(e["state"], "up", "{e}");

    // bob's gateway connects by itself, and streams what alice sent while
    // the broker was down.
    let up = b.wait_up();
    assert_eq!(up[0]["member"], bob.key_of("bob").as_str(), "{up}");
    let e = stream_b.next_of(&["connection"]).json();
    assert_eq!(e["state"], "up", "{e}");
    let got = stream_b.next_of(&["message"]).json();
    assert_eq!(
        (&got["id"], &got["body"], &got["from_name"]),
        (
            &sent["id"],
            &json!("sent while the broker was down"),
            &json!("alice")
        ),
        "{got}"
    );
    // And the other way, now.
    let reply = b
        .post(
            "/api/v1/messages",
            json!({"to": "alice", "body": "and back, after it"}),
        )
        .ok(201);
    let e = stream_a.next_of(&["message"]).json();
    assert_eq!(
        (&e["id"], &e["body"], &e["from_name"]),
        (&reply["id"], &json!("and back, after it"), &json!("bob")),
        "{e}"
    );
    let (sa, _) = gw_a.stop();
    let (sb, _) = gw_b.stop();
    assert!(sa.success() && sb.success(), "{sa:?} {sb:?}");
}

// ---------------------------------------------------------------------------
// 11: one gateway, two meshes; presence and membership events.

#[test]
fn serve_two_meshes_each_key_sees_its_own() {
    let broker = Broker::start();
    let (alice, bob) = team(&broker);
    alice.create(&broker, "ops", "alice");
    let team_key = api_key(&alice, "team-bot", "read,send,admin", None);
    let r = alice
        .run(&[
            "--mesh",
            "ops",
            "apikey",
            "create",
            "ops-bot",
            "--cap",
            "read,send,admin",
        ])
        .ok();
    let ops_key = r.last_line().to_owned();
    assert!(ops_key.starts_with("cmk_"), "{r:?}");
    let bob_key = api_key(&bob, "bob-bot", "read,send", None);
    let bob_member = bob.key_of("bob");

    let gw = alice.serve(&[]);
    let mut meshes = gw.meshes.clone();
    meshes.sort();
    assert_eq!(meshes, ["ops", "team"], "the --json line lists both");
    let t = Api::new(&gw, &team_key);
    let o = Api::new(&gw, &ops_key);
    let team_view = t.wait_up();
    let ops_view = o.wait_up();
    assert_eq!(team_view.as_array().map(Vec::len), Some(1), "{team_view}");
    assert_eq!(ops_view.as_array().map(Vec::len), Some(1), "{ops_view}");
    assert_eq!(team_view[0]["name"], "team");
    assert_eq!(ops_view[0]["name"], "ops");
    assert_ne!(team_view[0]["id"], ops_view[0]["id"]);
    assert_eq!(ops_view[0]["role"], "owner", "{ops_view}");
    assert_eq!(ops_view[0]["broker"], broker.url.as_str());

    // Topics: each mesh's own.
    t.post("/api/v1/topics", json!({"name": "deploys"})).ok(201);
    o.post("/api/v1/topics", json!({"name": "pager"})).ok(201);
    let names = |api: &Api| -> Vec<String> {
        api.get("/api/v1/topics")
            .ok(200)
            .as_array()
            .expect("topics")
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(names(&t), ["deploys"]);
    assert_eq!(names(&o), ["pager"]);
    o.get("/api/v1/topics/deploys")
        .problem(404, code::NOT_FOUND);
    t.get("/api/v1/topics/pager").problem(404, code::NOT_FOUND);
    // Peers: bob is in team only.
    let ops_peers = o.get("/api/v1/peers").ok(200);
    let ops_names: Vec<&str> = ops_peers
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(ops_names, ["alice"], "{ops_peers}");
    o.post(
        "/api/v1/messages",
        json!({"to": "bob", "body": "wrong mesh"}),
    )
    .problem(404, code::NOT_FOUND);

    // Streams of each key, open before bob's gateway starts.
    let team_events = t.events("", &[]);
    let ops_events = o.events("", &[]);
    let gw_b = bob.serve(&[]);
    let b = Api::new(&gw_b, &bob_key);
    b.wait_up();
    let presence = loop {
        let e = team_events.next_of(&["presence"]).json();
        if e["name"] == "bob" && e["online"] == true {
            break e;
        }
    };
    assert_eq!(presence["member"], bob_member.as_str(), "{presence}");
    assert!(presence["session"].is_string(), "{presence}");
    assert_eq!(presence["peer_type"], "human", "{presence}");
    let bob_serve = t
        .get("/api/v1/peers")
        .ok(200)
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["name"] == "bob")
        .and_then(|p| {
            p["sessions"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == "bob@serve")
                .cloned()
        })
        .expect("bob@serve is listed");
    assert_eq!(presence["session"], bob_serve["key"], "{bob_serve}");

    // The membership log grows in team (bob joins #deploys): team's
    // stream says how long it is now.
    let joined = eventually("bob joins #deploys", || {
        let r = b.post("/api/v1/topics/deploys/join", json!({}));
        if r.status == 200 {
            Ok(r.json())
        } else {
            Err(r.text())
        }
    });
    assert_eq!(joined["members"], 2, "{joined}");
    let m1 = team_events.next_of(&["membership"]).json();
    let len1 = m1["log_len"].as_u64().unwrap_or_else(|| panic!("{m1}"));
    assert!(len1 > 1, "{m1}");
    // The log of ops grows too (another topic): ops's stream hears of that,
    // and of nothing from team before it (no bob, no team log).
    o.post("/api/v1/topics", json!({"name": "oncall"})).ok(201);
    let ops_seen: Vec<SseEvent> = {
        let mut seen = Vec::new();
        loop {
            let e = ops_events.next_of(&["presence", "membership", "message", "connection"]);
            let done = e.event == "membership";
            seen.push(e);
            if done {
                break seen;
            }
        }
    };
    for e in &ops_seen {
        assert!(
            !e.data.contains("bob"),
            "team's news in ops's stream: {e:?}"
        );
        assert!(
            !e.data.contains(&bob_member),
            "team's news in ops's stream: {e:?}"
        );
    }
    let last = ops_seen.last().expect("one").json();
    assert!(last["log_len"].as_u64().is_some_and(|n| n > 1), "{last}");

    // Messages: bob's to alice reaches team's key, not ops's.
    let sent = b
        .post(
            "/api/v1/messages",
            json!({"to": "alice", "body": "team only"}),
        )
        .ok(201);
    let id = sent["id"].as_str().expect("id").to_owned();
    let e = team_events.next_of(&["message"]).json();
    assert_eq!(
        (&e["id"], &e["body"]),
        (&json!(id), &json!("team only")),
        "{e}"
    );
    assert!(page(&o.get("/api/v1/messages?unread=false").ok(200)).is_empty());
    o.get(&format!("/api/v1/messages/{id}"))
        .problem(404, code::NOT_FOUND);
    assert_eq!(o.get("/api/v1/meshes").ok(200)[0]["unread"], 0);
    assert_eq!(t.get("/api/v1/meshes").ok(200)[0]["unread"], 1);
    assert_eq!(
        bodies_of(&page(&t.get("/api/v1/messages").ok(200))),
        ["team only"]
    );
    let (s1, _) = gw_b.stop();
    let (s2, _) = gw.stop();
    assert!(s1.success() && s2.success());
}

// ---------------------------------------------------------------------------
// 10: the web app's sessions: a one-time link, the cookie, CSRF, the mesh.

/// The `cm_web=…` pair of a `Set-Cookie` answer.
fn web_cookie(r: &Http) -> String {
    let set = r.header("set-cookie").expect("a Set-Cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    set.split(';').next().expect("a pair").trim().to_owned()
}

#[test]
fn serve_web_signs_in_once_and_checks_csrf_origin_and_mesh() {
    let broker = Broker::start();
    let (alice, bob) = team(&broker);
    let gw = alice.serve(&[]);
    let anon = Api::anon(&gw);

    // No gateway: `serve open` says how to start one.
    bob.run(&["serve", "open", "--no-browser"])
        .fails(code::NOT_FOUND)
        .with_hint();

    // The page and its assets, with the headers that keep it to itself.
    let index = anon.get("/");
    assert_eq!(index.status, 200, "{index:?}");
    let csp = index.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(index.header("x-frame-options"), Some("DENY"));
    assert!(index.text().contains("/assets/app.js"));
    let js = anon.get("/assets/app.js");
    assert!(
        js.header("content-type")
            .is_some_and(|c| c.starts_with("text/javascript")),
        "{js:?}"
    );
    // The page builds the DOM from text nodes only.
    for sink in [
        ".innerHTML",
        ".outerHTML",
        "insertAdjacentHTML(",
        "document.write(",
        "eval(",
    ] {
        assert!(!js.text().contains(sink), "app.js uses {sink}");
    }
    // Only through the gateway's own Host.
    let rebound = anon.call("GET", "/", &[("Host", "evil.test")], None);
    assert_eq!(rebound.status, 421, "{rebound:?}");

    // Without a session: 401, which the page shows as its sign-in screen.
    anon.get("/web/session").problem(401, code::REFUSED);

    let link = alice.run(&["--json", "serve", "open"]).ok().json();
    let url = link["url"].as_str().expect("a url").to_owned();
    let (base, query) = url.split_once("/web/signin").expect("a sign-in url");
    assert_eq!(base, gw.url);
    let first = anon.get(&format!("/web/signin{query}"));
    assert_eq!(first.status, 303, "{first:?}");
    assert_eq!(first.header("location"), Some("/"));
    let cookie = web_cookie(&first);
    // The link works once.
    let again = anon.get(&format!("/web/signin{query}"));
    assert_eq!(again.status, 303);
    assert_eq!(again.header("location"), Some("/#/signin-failed"));
    assert!(again.header("set-cookie").is_none(), "{again:?}");

    let with = |extra: &[(&'static str, String)]| {
        let mut h: Vec<(&str, String)> = vec![("Cookie", cookie.clone())];
        h.extend(extra.iter().cloned());
        h
    };
    let call = |method: &str, path: &str, h: &[(&str, String)], body: Option<Value>| {
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        anon.call(method, path, &h, body.map(|b| b.to_string().into_bytes()))
    };
    let session = call("GET", "/web/session", &with(&[]), None).ok(200);
    let csrf = session["csrf"].as_str().expect("csrf").to_owned();
    let id = session["id"].as_str().expect("id").to_owned();
    assert_eq!(session["meshes"][0]["name"], "team", "{session}");
    assert_eq!(session["meshes"][0]["default"], true, "{session}");

    // Reads need only the cookie; the mesh by header, by ?mesh= (the event
    // stream's way), or the default.
    let peers = call("GET", "/api/v1/peers", &with(&[]), None).ok(200);
    assert!(peers.as_array().is_some_and(|p| p.len() == 2), "{peers}");
    call(
        "GET",
        "/api/v1/peers",
        &with(&[("X-Claudemesh-Mesh", "team".into())]),
        None,
    )
    .ok(200);
    call(
        "GET",
        "/api/v1/messages?mesh=team&limit=5",
        &with(&[]),
        None,
    )
    .ok(200);
    call(
        "GET",
        "/api/v1/peers",
        &with(&[("X-Claudemesh-Mesh", "other".into())]),
        None,
    )
    .problem(404, code::NOT_FOUND);

    // A write needs the session's CSRF token, and no other origin.
    let send = json!({"to": "bob", "body": "from the web"});
    let refused: [Vec<(&'static str, String)>; 4] = [
        vec![],
        vec![("X-CSRF-Token", "not-it".into())],
        vec![
            ("X-CSRF-Token", csrf.clone()),
            ("Origin", "http://evil.test".into()),
        ],
        vec![
            ("X-CSRF-Token", csrf.clone()),
            ("Sec-Fetch-Site", "cross-site".into()),
        ],
    ];
    for extra in &refused {
        call("POST", "/api/v1/messages", &with(extra), Some(send.clone()))
            .problem(403, code::DENIED);
    }
    let sent = call(
        "POST",
        "/api/v1/messages",
        &with(&[("X-CSRF-Token", csrf.clone()), ("Origin", gw.url.clone())]),
        Some(send),
    )
    .ok(201);
    let sent_id = sent["id"].as_str().expect("id").to_owned();

    // Bob reads it; the web page marks its own messages shown `via web`.
    let got = eventually("bob receives the page's message", || {
        let list = bob.inbox_json(&[]);
        list.iter()
            .find(|m| m["id"] == sent_id.as_str())
            .cloned()
            .ok_or_else(|| format!("{list:?}"))
    });
    assert_eq!(got["body"], "from the web");
    bob.send("alice", "to the web");
    let unread = eventually("the page sees bob's answer", || {
        let v = call("GET", "/api/v1/messages", &with(&[]), None).ok(200);
        let msgs = page(&v);
        msgs.iter()
            .find(|m| m["body"] == "to the web")
            .cloned()
            .ok_or_else(|| v.to_string())
    });
    call(
        "POST",
        "/api/v1/messages/read",
        &with(&[("X-CSRF-Token", csrf.clone())]),
        Some(json!({"ids": [unread["id"]]})),
    )
    .ok(200);
    eventually("bob's status shows the web's signed receipt", || {
        let s = bob
            .run(&[
                "--json",
                "message",
                "status",
                unread["id"].as_str().expect("id"),
            ])
            .ok()
            .json();
        let t = s.to_string();
        if t.contains("\"via\":\"web\"") {
            Ok(())
        } else {
            Err(t)
        }
    });

    // The sessions, listed and ended from the terminal.
    let list = alice.run(&["--json", "serve", "sessions"]).ok().json();
    assert!(
        list.as_array()
            .is_some_and(|a| a.iter().any(|s| s["id"] == id.as_str())),
        "{list}"
    );
    assert!(
        !list.to_string().contains(&csrf),
        "no CSRF token in the list"
    );
    alice.run(&["serve", "sessions", "end", &id]).ok();
    call("GET", "/api/v1/peers", &with(&[]), None).problem(401, code::REFUSED);
    alice
        .run(&["serve", "sessions", "end", &id])
        .fails(code::NOT_FOUND);

    // Signing out ends the session too.
    let link = alice.run(&["--json", "serve", "open"]).ok().json();
    let query = link["url"]
        .as_str()
        .and_then(|u| u.split_once("/web/signin"))
        .map(|(_, q)| q.to_owned())
        .expect("a sign-in url");
    let cookie2 = web_cookie(&anon.get(&format!("/web/signin{query}")));
    let h2 = vec![("Cookie", cookie2.clone())];
    let s2 = call("GET", "/web/session", &h2, None).ok(200);
    let csrf2 = s2["csrf"].as_str().expect("csrf").to_owned();
    call("POST", "/web/signout", &h2, None).problem(403, code::DENIED);
    let out = call(
        "POST",
        "/web/signout",
        &[("Cookie", cookie2.clone()), ("X-CSRF-Token", csrf2)],
        None,
    );
    assert_eq!(out.status, 204, "{out:?}");
    call("GET", "/web/session", &h2, None).problem(401, code::REFUSED);

    // Page uses are in the audit log under the session's id, never its secret.
    let audit = std::fs::read_to_string(alice.home.join("audit.log")).unwrap_or_default();
    assert!(audit.contains(&id), "{audit}");
    let secret = cookie.split('_').next_back().expect("a secret");
    assert!(!audit.contains(secret), "no cookie secret in the audit log");
    let (status, _) = gw.stop();
    assert!(status.success());
}

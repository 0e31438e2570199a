//! Scheduled messages (`send --in` / `--at`, `schedule list`, `schedule
//! cancel`): the broker holds the message until its time, then stores and
//! delivers it to a recipient online then (live) and to one offline (when
//! it connects); nothing arrives before that time; `schedule list` shows
//! it until it is sent; a cancelled one never arrives; a TTL given with it
//! counts from the delivery. On SQLite and on Postgres. The times that do
//! not read, or are past, are usage errors before anything is sent; a
//! broker that does not hold messages (an older one, shown through a proxy
//! that hides `limits.scheduled`) is never sent one for later; the MCP
//! tool's `in` and `at`.
//!
//! Only "not before its time" is asserted about time: what must arrive is
//! waited for (a while), never expected within a bound.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{Broker, User, bodies, code};

/// How far ahead the messages of the scenario are scheduled: room for the
/// commands that must run before it (on a busy machine).
const AHEAD: &str = "15s";

#[test]
fn a_scheduled_message_waits_then_reaches_online_and_offline_recipients_on_sqlite() {
    scheduled(&Broker::start());
}

#[test]
fn a_scheduled_message_waits_then_reaches_online_and_offline_recipients_on_postgres() {
    scheduled(&Broker::start_postgres());
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `--json send <to> <text> <extra…>`: the message id and when it will be
/// delivered.
fn send_later(sender: &User, to: &str, text: &str, extra: &[&str]) -> (String, u64) {
    let mut args = vec!["--json", "send", to, text];
    args.extend(extra);
    let v = sender.run(&args).ok().json();
    let id = v["id"].as_str().expect("an id").to_owned();
    let at = v["deliver_at_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("a scheduled send says when: {v}"));
    (id, at)
}

/// `schedule list --json`.
fn held(user: &User) -> Vec<Value> {
    user.run(&["--json", "schedule", "list"])
        .ok()
        .json()
        .as_array()
        .expect("schedule list --json is an array")
        .clone()
}

/// `inbox --json` of `user` once it has something, or empty after `wait`.
fn inbox_within(user: &User, wait: Duration) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    loop {
        let got = user.inbox_json(&[]);
        if !got.is_empty() || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `message status <id> --json`'s `state`.
fn state_of(user: &User, id: &str) -> String {
    user.run(&["--json", "message", "status", id]).ok().json()["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Sleeps until `at` (unix ms) has passed by `margin`.
fn sleep_until(at: u64, margin: u64) {
    let until = at + margin;
    let now = now_ms();
    if until > now {
        std::thread::sleep(Duration::from_millis(until - now));
    }
}

/// Bob's `inbox --watch --json`: one line per message as it is stored.
struct Watcher {
    child: std::process::Child,
    lines: mpsc::Receiver<(u64, Value)>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(user: &User) -> Watcher {
        let mut child = user
            .command(&["inbox", "--watch", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn inbox --watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).expect("one JSON object per line");
                if tx.send((now_ms(), v)).is_err() {
                    break;
                }
            }
        });
        Watcher {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// The next message it printed, with when this test read it, within
    /// `wait`.
    fn next(&mut self, wait: Duration) -> Option<(u64, Value)> {
        self.lines.recv_timeout(wait).ok()
    }

    /// What it printed so far.
    fn printed(&mut self) -> Vec<Value> {
        self.lines.try_iter().map(|(_, v)| v).collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn scheduled(broker: &Broker) {
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    alice.create(broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");

    // Bob is online: his watcher prints a first message once connected.
    alice.send("bob", "hello");
    let mut watcher = Watcher::start(&bob);
    let first = watcher.next(Duration::from_secs(60));
    assert_eq!(
        first.map(|(_, v)| v["body"].clone()),
        Some(Value::from("hello")),
        "the watcher is up"
    );
    broker.background_connections(1);

    // Three messages for later; carol's with a TTL (counted from its
    // delivery), and one that will be cancelled.
    let sent_at = now_ms();
    let (for_bob, at) = send_later(&alice, "bob", "later for bob", &["--in", AHEAD]);
    assert!(
        at >= sent_at + 14_000 && at < sent_at + 60_000,
        "{at} is about {AHEAD} after {sent_at}"
    );
    let (for_carol, at_carol) = send_later(
        &alice,
        "carol",
        "later for carol",
        &["--in", AHEAD, "--ttl", "1h"],
    );
    let (dropped, _) = send_later(&alice, "carol", "never sent", &["--in", AHEAD]);
    let due = at.max(at_carol);

    // Carol, offline, has nothing before then (checked only when her
    // command ended before it: it connects her while it runs).
    let carol_early = carol.inbox_json(&[]);
    if now_ms() < at_carol {
        assert!(carol_early.is_empty(), "before its time: {carol_early:?}");
    }

    // Listed, with the names the user knows, until sent.
    let list = held(&alice);
    let ids: Vec<&str> = list.iter().filter_map(|m| m["id"].as_str()).collect();
    for id in [&for_bob, &for_carol, &dropped] {
        assert!(ids.contains(&id.as_str()), "{id} in {list:?}");
    }
    let bob_row = list.iter().find(|m| m["id"] == for_bob.as_str()).unwrap();
    assert_eq!(bob_row["to"], "bob", "{bob_row}");
    assert_eq!(bob_row["state"], "held", "{bob_row}");
    assert_eq!(bob_row["deliver_at_ms"], at, "{bob_row}");
    let carol_row = list.iter().find(|m| m["id"] == for_carol.as_str()).unwrap();
    assert_eq!(carol_row["ttl_ms"], 3_600_000, "{carol_row}");
    let human = alice.run(&["schedule", "list"]).ok();
    assert!(human.stdout.contains(&for_bob[..8]), "{human:?}");
    assert!(human.stdout.contains("carol"), "{human:?}");
    assert_eq!(state_of(&alice, &for_bob), "scheduled");

    // Cancelled by a prefix of its id: gone for good, and a second cancel
    // finds nothing.
    let r = alice.run(&["schedule", "cancel", &dropped[..8]]).ok();
    assert!(r.stdout.contains("cancelled"), "{r:?}");
    alice
        .run(&["schedule", "cancel", &dropped])
        .fails(code::NOT_FOUND);
    assert_eq!(state_of(&alice, &dropped), "cancelled");
    assert!(held(&alice).iter().all(|m| m["id"] != dropped.as_str()));

    // Nothing reached bob's watcher before its time.
    if now_ms() < at {
        let early = watcher.printed();
        assert!(early.is_empty(), "before its time: {early:?}");
    }

    // Then it arrives live, not before its time.
    let (seen_at, v) = watcher
        .next(Duration::from_millis(at.saturating_sub(now_ms())) + Duration::from_secs(20))
        .expect("the scheduled message reaches the online recipient");
    assert_eq!(v["id"], for_bob.as_str(), "{v}");
    assert_eq!(v["body"], "later for bob");
    assert!(seen_at >= at, "delivered at {seen_at}, before {at}");
    drop(watcher);
    broker.background_connections(0);
    broker.quiet.wait();

    // Carol gets hers when she connects after its time (the cancelled one
    // never: past its time by two seconds), with her TTL from delivery.
    sleep_until(due, 2000);
    let got = inbox_within(&carol, Duration::from_secs(10));
    assert_eq!(bodies(&got), ["later for carol"], "{got:?}");
    let carol_deadline = got[0]["deadline_ms"].as_u64().expect("a deadline");
    assert!(
        carol_deadline >= at_carol + 3_600_000,
        "the TTL counts from delivery: {got:?}"
    );

    // No longer listed, and reported sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !held(&alice).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(held(&alice), Vec::<Value>::new());
    assert_eq!(state_of(&alice, &for_bob), "accepted");
    assert_eq!(state_of(&alice, &dropped), "cancelled");
    for user in [&bob, &carol] {
        let all = user.run(&["--json", "inbox", "--all"]).ok().json();
        let all = all.as_array().cloned().unwrap_or_default();
        assert!(all.iter().all(|m| m["body"] != "never sent"), "{all:?}");
    }
}

#[test]
fn times_that_do_not_read_or_are_past_are_usage_errors() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    for bad in [
        &["--at", "2001-01-01T00:00:00Z"][..],
        &["--at", "teatime"],
        &["--at", "25:00"],
        &["--in", "0s"],
        &["--in", "soon"],
        &["--at", "15:00", "--in", "2h"],
    ] {
        let mut args = vec!["send", "bob", "never sent"];
        args.extend(bad);
        let r = alice.run(&args);
        assert_eq!(r.code, code::USAGE, "{bad:?}: {r:?}");
        assert_eq!(r.stdout, "", "{bad:?}: {r:?}");
        assert!(r.stderr.starts_with("error: "), "{bad:?}: {r:?}");
    }
    let args = ["--json", "send", "bob", "never sent", "--at", "yesterday"];
    let v = alice.run(&args).fails_json(code::USAGE, "usage");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--at")),
        "{v}"
    );
    // Ids that name no held message are usage errors too.
    for bad in ["abc", "zzzz", "not-an-id"] {
        alice.run(&["schedule", "cancel", bad]).fails(code::USAGE);
    }
    // `topic post` reads them alike.
    for bad in [&["--in", "0s"][..], &["--at", "teatime"]] {
        let mut args = vec!["topic", "post", "ops", "never sent"];
        args.extend(bad);
        let r = alice.run(&args);
        assert_eq!(r.code, code::USAGE, "{bad:?}: {r:?}");
        assert!(r.stderr.starts_with("error: "), "{bad:?}: {r:?}");
    }
    // Nothing was sent.
    assert!(bob.inbox_json(&[]).is_empty());
    // Within a second (an --at of "now" rounded to the minute is always
    // ahead, so use --in 1s): sent, scheduled or at once, it arrives.
    let r = alice
        .run(&["--json", "send", "bob", "soon", "--in", "1s"])
        .ok();
    let v = r.json();
    assert!(v["id"].as_str().is_some(), "{v}");
    let got = inbox_within(&bob, Duration::from_secs(15));
    assert_eq!(bodies(&got), ["soon"]);
    // A topic post for later: held, then delivered to the topic's members.
    alice.run(&["topic", "create", "ops"]).ok();
    bob.run(&["topic", "join", "ops"]).ok();
    let v = alice
        .run(&["--json", "topic", "post", "ops", "ops, later", "--in", "2s"])
        .ok()
        .json();
    assert!(v["deliver_at_ms"].as_u64().is_some(), "held: {v}");
    let got = inbox_within(&bob, Duration::from_secs(15));
    assert_eq!(bodies(&got), ["ops, later"]);
}

#[test]
fn the_mcp_tool_schedules_with_in_or_at_and_says_when() {
    use crate::mcp::{Session, json_of, text};
    use serde_json::json;

    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    let work = tempfile::tempdir().expect("work dir");
    broker.background_connections(1);
    let id = broker.rt.block_on(async {
        let s = Session::start(&alice, "alice@api", work.path(), false).await;
        // Both, a bad duration, a past time: tool errors, nothing sent.
        for bad in [
            json!({"to": "bob", "message": "x", "in": "1h", "at": "15:00"}),
            json!({"to": "bob", "message": "x", "in": "0s"}),
            json!({"to": "bob", "message": "x", "in": 0}),
            json!({"to": "bob", "message": "x", "at": "2001-01-01T00:00:00Z"}),
        ] {
            let r = s.call("send_message", bad.clone()).await;
            assert_eq!(r.is_error, Some(true), "{bad}: {}", text(&r));
        }
        let t = s
            .ok(
                "send_message",
                json!({"to": "bob", "message": "in an hour", "in": "1h"}),
            )
            .await;
        assert!(t.starts_with("Scheduled for "), "{t}");
        assert!(t.contains("(in 1h)") || t.contains("(in 59m)"), "{t}");
        let v = json_of(&t);
        let at = v["deliver_at_ms"].as_u64().expect("deliver_at_ms");
        assert!(at > now_ms() + 3_500_000, "{v}");
        // An RFC 3339 time; further ahead than the broker holds messages
        // (its retention) is refused.
        let in_two_hours =
            humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(7200))
                .to_string();
        let t = s
            .ok(
                "send_message",
                json!({"to": "bob", "message": "at a time", "at": in_two_hours}),
            )
            .await;
        assert!(t.starts_with("Scheduled for "), "{t}");
        let r = s
            .call(
                "send_message",
                json!({"to": "bob", "message": "too far", "at": "2099-01-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(r.is_error, Some(true), "{}", text(&r));
        assert!(text(&r).contains("retention"), "{}", text(&r));
        let id = v["id"].as_str().expect("an id").to_owned();
        // Listed as the CLI lists them; cancelled by a prefix, once.
        let listed = json_of(&s.ok("list_scheduled", json!({})).await);
        let rows = listed.as_array().expect("a list").clone();
        assert_eq!(rows.len(), 2, "{listed}");
        assert!(
            rows.iter()
                .all(|m| m["to"] == "bob" && m["state"] == "held"),
            "{listed}"
        );
        let t = s.ok("cancel_scheduled", json!({"id": &id[..8]})).await;
        assert!(t.starts_with("Cancelled "), "{t}");
        let r = s.call("cancel_scheduled", json!({"id": id})).await;
        assert_eq!(r.is_error, Some(true), "{}", text(&r));
        s.stop().await;
        id
    });
    broker.background_connections(0);
    broker.quiet.wait();
    let list = held(&alice);
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(list.iter().all(|m| m["id"] != id.as_str()), "{list:?}");
    let other = list[0]["id"].as_str().expect("id").to_owned();
    alice.run(&["schedule", "cancel", &other]).ok();
    assert!(held(&alice).is_empty());
    assert!(bob.inbox_json(&[]).is_empty());
}

/// A TCP proxy to the broker at `broker_url` whose `welcome` does not say
/// the broker holds messages (`limits.scheduled` renamed to a field no one
/// reads, so it reads false): the broker as an older one shows itself.
/// Everything else passes as is. Returns its `ws://` URL.
fn as_an_older_broker(broker_url: &str) -> String {
    use std::io::{Read as _, Write as _};
    use std::net::{Shutdown, TcpListener, TcpStream};

    fn pipe(mut from: TcpStream, mut to: TcpStream, rewrite: bool) {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &mut buf[..n];
            if rewrite {
                // The same length, so the websocket frame stays whole.
                let (from, to) = (b"\"scheduled\":true", b"\"scheduleX\":true");
                let mut i = 0;
                while i + from.len() <= chunk.len() {
                    if &chunk[i..i + from.len()] == from {
                        chunk[i..i + from.len()].copy_from_slice(to);
                    }
                    i += 1;
                }
            }
            if to.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    }

    let upstream = broker_url
        .strip_prefix("ws://")
        .expect("a ws:// broker")
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (c, s) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            std::thread::spawn(move || pipe(c, s, false));
            std::thread::spawn(move || pipe(server, client, true));
        }
    });
    url
}

#[test]
fn a_broker_that_cannot_hold_messages_is_not_sent_one_for_later() {
    let broker = Broker::start();
    let older = as_an_older_broker(&broker.url);
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice
        .run(&[
            "mesh", "create", "team", "--broker", &older, "--name", "alice",
        ])
        .ok();
    bob.join(&alice.share(&[]), "bob");
    // It would deliver at once: refused before anything is sent.
    for when in [&["--in", "1h"][..], &["--at", "tomorrow 09:00"]] {
        let mut args = vec!["send", "bob", "for later"];
        args.extend(when);
        let r = alice.run(&args).fails(code::REFUSED).with_hint();
        assert!(r.stderr.contains("upgrade"), "{r:?}");
    }
    alice
        .run(&["schedule", "list"])
        .fails(code::REFUSED)
        .with_hint();
    alice
        .run(&["schedule", "cancel", "abcd"])
        .fails(code::REFUSED);
    // Now (and within a second, the same) still goes.
    alice.send("bob", "now");
    alice
        .run(&["send", "bob", "in a second", "--in", "1s"])
        .ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        let got = bob.inbox_json(&[]);
        if got.len() >= 2 || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(bodies(&got), ["now", "in a second"]);
}

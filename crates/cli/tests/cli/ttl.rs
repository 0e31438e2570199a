//! Message expiry (`send --ttl`, `topic post --ttl`): a message not shown
//! by its deadline is reported `expired` to its sender and is never shown
//! to its recipient afterwards, whether it was still at the broker (the
//! recipient offline) or already stored unshown on the recipient's device;
//! one shown in time is `shown`, not expired. On SQLite and on Postgres;
//! and the gateway's `ttl` (seconds).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::{Broker, Gateway, User, bodies, code, status_becomes};

#[test]
fn a_message_not_shown_in_time_expires_on_sqlite() {
    expiry(&Broker::start());
}

#[test]
fn a_message_not_shown_in_time_expires_on_postgres() {
    expiry(&Broker::start_postgres());
}

#[test]
fn a_ttl_under_a_second_or_unreadable_is_a_usage_error() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    // clap's usage errors: code 3, nothing on stdout, the reason on stderr
    // (and one JSON object of kind `usage` with --json).
    for bad in ["0s", "500ms", "0", "soon", "1 fortnight"] {
        let r = alice.run(&["send", "bob", "never sent", "--ttl", bad]);
        assert_eq!(r.code, code::USAGE, "{bad}: {r:?}");
        assert_eq!(r.stdout, "", "{bad}: {r:?}");
        assert!(r.stderr.starts_with("error: "), "{bad}: {r:?}");
        assert!(r.stderr.contains("--ttl"), "{bad}: {r:?}");
    }
    alice
        .run(&["--json", "send", "bob", "never sent", "--ttl", "0s"])
        .fails_json(code::USAGE, "usage");
    alice.run(&["topic", "create", "deploys"]).ok();
    let r = alice.run(&["topic", "post", "deploys", "never posted", "--ttl", "0.5s"]);
    assert_eq!(r.code, code::USAGE, "{r:?}");
    // Plain seconds and units both read.
    alice.run(&["send", "bob", "ninety", "--ttl", "90"]).ok();
    alice
        .run(&["topic", "post", "deploys", "an hour", "--ttl", "1h"])
        .ok();
    assert_eq!(bodies(&bob.inbox_json(&[])), ["ninety"]);
}

/// One recipient of a `message status --json` report.
fn recipient(report: &Value, name: &str) -> Value {
    report["recipients"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .cloned()
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `send --ttl … --json`: the message id and its deadline.
fn send_with_ttl(sender: &User, to: &str, text: &str, ttl: &str) -> (String, u64) {
    let r = sender.run(&["--json", "send", to, text, "--ttl", ttl]).ok();
    let v: Value = r.json();
    let id = v["id"].as_str().expect("an id").to_owned();
    let deadline = v["deadline_ms"].as_u64().expect("a deadline");
    (id, deadline)
}

/// Sleeps until the broker's deadline sweep (once a second) has surely
/// passed `deadline` (this machine's clock; the broker's deadline is a
/// moment later).
fn sleep_past(deadline: u64) {
    let until = deadline + 2500;
    let now = now_ms();
    if until > now {
        std::thread::sleep(Duration::from_millis(until - now));
    }
}

fn expiry(broker: &Broker) {
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");

    // 1. Bob is offline (no command of his runs): the broker holds it
    //    past its one-second TTL, then drops it and says so.
    let sent_at = now_ms();
    let (lost, deadline) = send_with_ttl(&alice, "bob", "gone in a second", "1s");
    assert!(
        (sent_at + 1000..sent_at + 10_000).contains(&deadline),
        "deadline {deadline} is about a second after {sent_at}"
    );
    sleep_past(deadline);
    let report = status_becomes(&alice, &lost, "bob", "expired");
    assert!(report["deadline_ms"].as_u64().is_some(), "{report}");
    let human = alice.run(&["message", "status", &lost]).ok();
    assert!(human.stdout.contains("expired"), "{human:?}");

    // 2. Stored on bob's device unshown (`topic list` settles the queue
    //    without showing anything), then its deadline passes: `inbox` does
    //    not show it, `inbox --all` lists it as expired, and it is never
    //    marked shown.
    let (stale, deadline) = send_with_ttl(&alice, "bob", "stored, never shown", "5s");
    bob.run(&["topic", "list"]).ok();
    sleep_past(deadline);

    // 3. Read in time: shown, not expired, however long the TTL had left.
    let (fresh, _) = send_with_ttl(&alice, "bob", "read in time", "30s");
    let unread = bob.inbox_json(&[]);
    assert_eq!(bodies(&unread), ["read in time"]);
    assert_eq!(unread[0]["id"], fresh.as_str());
    assert!(unread[0]["deadline_ms"].as_u64().is_some());
    assert!(unread[0].get("expired").is_none(), "{}", unread[0]);
    let report = status_becomes(&alice, &fresh, "bob", "shown");
    assert_eq!(recipient(&report, "bob")["observed"], "shown", "{report}");

    // Nothing unread; the expired one is listed with the read ones only,
    // marked, and `inbox --all` did not mark it shown.
    assert!(bob.inbox_json(&[]).is_empty());
    let all = bob.run(&["--json", "inbox", "--all"]).ok().json();
    let all = all.as_array().cloned().unwrap_or_default();
    let expired: Vec<&Value> = all.iter().filter(|m| m["id"] == stale.as_str()).collect();
    assert_eq!(expired.len(), 1, "{all:?}");
    assert_eq!(expired[0]["expired"], true);
    assert_eq!(expired[0]["read"], false);
    assert!(
        all.iter().all(|m| m["id"] != lost.as_str()),
        "the broker dropped the first before bob connected"
    );
    let human = bob.run(&["inbox", "--all"]).ok();
    assert!(
        human.stdout.contains("[expired]: stored, never shown"),
        "{human:?}"
    );
    // Never shown: it expired on both sides, though bob's device proves
    // it had stored it (its `delivered` receipt is all it signed).
    let report = status_becomes(&alice, &stale, "bob", "expired");
    let bob_row = recipient(&report, "bob");
    assert_eq!(bob_row["proven"], "delivered", "{report}");
    assert_eq!(bob_row["observed"], "expired", "{report}");

    // A topic post with a TTL carries its deadline too.
    alice.run(&["topic", "create", "deploys"]).ok();
    let r = alice
        .run(&[
            "--json",
            "topic",
            "post",
            "deploys",
            "short-lived",
            "--ttl",
            "10m",
        ])
        .ok();
    let deadline = r.json()["deadline_ms"].as_u64().expect("a deadline");
    assert!(deadline > now_ms() + 9 * 60_000);
}

/// `curl` to the gateway with `key`: the status and the JSON body.
fn http(gw: &Gateway, key: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut c = std::process::Command::new("curl");
    c.args(["-s", "-w", "\n%{http_code}", "-X", method])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .arg(format!("{}{path}", gw.url));
    if let Some(b) = body {
        c.args([
            "-H",
            "Content-Type: application/json",
            "--data",
            &b.to_string(),
        ]);
    }
    let out = c.output().expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (json, status) = text.rsplit_once('\n').expect("a status line");
    (
        status.trim().parse().expect("an HTTP status"),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

#[test]
fn the_gateway_takes_a_ttl_in_seconds() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    alice.run(&["topic", "create", "deploys"]).ok();
    let key = alice
        .run(&["apikey", "create", "script", "--cap", "read,send"])
        .ok()
        .last_line()
        .to_owned();
    let gw = alice.serve(&[]);
    broker.background_connections(1);
    let mut up = false;
    for _ in 0..200 {
        let (status, v) = http(&gw, &key, "GET", "/api/v1/meshes", None);
        if status == 200
            && v.as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(|m| m["link"] == "up"))
        {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up, "the gateway's link never came up");

    for bad in [json!(0), json!(-5), json!("10m")] {
        let (status, v) = http(
            &gw,
            &key,
            "POST",
            "/api/v1/messages",
            Some(&json!({"to": "bob", "body": "never sent", "ttl": bad})),
        );
        assert_eq!(status, 400, "ttl {bad}: {v}");
    }
    let before = now_ms();
    let (status, v) = http(
        &gw,
        &key,
        "POST",
        "/api/v1/messages",
        Some(&json!({"to": "bob", "body": "for a minute", "ttl": 60})),
    );
    assert_eq!(status, 201, "{v}");
    let deadline = v["deadline_ms"].as_u64().expect("a deadline");
    assert!(
        (before + 60_000..before + 70_000).contains(&deadline),
        "{v}"
    );
    let (status, v) = http(
        &gw,
        &key,
        "POST",
        "/api/v1/topics/deploys/messages",
        Some(&json!({"body": "for an hour", "ttl": 3600})),
    );
    assert_eq!(status, 201, "{v}");
    assert!(v["deadline_ms"].as_u64().is_some(), "{v}");
    // Without one: no deadline.
    let (status, v) = http(
        &gw,
        &key,
        "POST",
        "/api/v1/messages",
        Some(&json!({"to": "bob", "body": "kept"})),
    );
    assert_eq!(status, 201, "{v}");
    assert!(v.get("deadline_ms").is_none(), "{v}");
    drop(gw);
    broker.background_connections(0);

    let msgs = bob.inbox_json(&[]);
    assert_eq!(bodies(&msgs), ["for a minute", "kept"]);
    assert!(msgs[0]["deadline_ms"].as_u64().is_some());
    assert!(msgs[1].get("deadline_ms").is_none());
}

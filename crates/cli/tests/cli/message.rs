//! Direct messages: addressing a peer, stdin, a peer's text that would
//! drive a terminal, a busy recipient, and `inbox --watch`.

use std::io::BufRead as _;
use std::io::BufReader;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::{Broker, bodies, code};

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

/// A peer's message cannot drive the reader's terminal: `inbox` prints it
/// without control characters (an escape sequence could clear the screen,
/// retitle the window or, with a carriage return, write over the sender's
/// name); `--json` keeps it as sent.
#[test]
fn a_peers_message_cannot_drive_the_terminal() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    let nasty = "hi \u{1b}[2J\u{1b}]0;owned\u{7}\rroot: approved";
    alice.send("bob", nasty);
    let r = bob.run(&["inbox"]).ok();
    assert!(
        !r.stdout.chars().any(|c| c.is_control() && c != '\n'),
        "{r:?}"
    );
    assert!(r.stdout.contains("alice"), "{r:?}");
    assert!(r.stdout.contains("root: approved"), "{r:?}");
    let v: Value = bob.run(&["--json", "inbox", "--all"]).ok().json();
    let msgs = v.as_array().expect("inbox --json is an array");
    assert_eq!(bodies(msgs), vec![nasty], "{v}");
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

//! Team memory (`memory remember`, `recall`, `list`, `forget`): a note one
//! member remembers is found by another member's search, by its words and
//! filtered by its tags, shown with its author and without a peer's
//! terminal escapes; forgetting it (a destructive verb: refused without a
//! terminal unless `-y`) takes it from the other device's search too; only
//! its author (or an owner or admin) may. Notes and queries that are not
//! ones are usage errors; the MCP tools remember, recall and forget the
//! same way, under the policy. The scenario runs on SQLite and on
//! Postgres.

use serde_json::Value;

use crate::support::{Broker, User, code};

const NOTE: &str = "the staging database listens on port 5433";

/// `--json memory recall <words…> <extra…>`: the notes, best first.
fn recall_json(user: &User, words: &[&str], extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--json", "memory", "recall"];
    args.extend(words);
    args.extend(extra);
    user.run(&args)
        .ok()
        .json()
        .as_array()
        .expect("memory recall --json is an array")
        .clone()
}

/// The texts of notes.
fn texts(notes: &[Value]) -> Vec<&str> {
    notes.iter().filter_map(|n| n["text"].as_str()).collect()
}

/// `memory remember <text> <extra…>`: the short id it printed.
fn remember(user: &User, text: &str, extra: &[&str]) -> String {
    let mut args = vec!["memory", "remember", text];
    args.extend(extra);
    let r = user.run(&args).ok();
    let line = r.stdout.trim();
    assert_eq!(r.stdout.lines().count(), 1, "one line: {r:?}");
    let id = line
        .strip_prefix("remembered ")
        .unwrap_or_else(|| panic!("`remembered <id>`: {r:?}"));
    assert_eq!(id.len(), 8, "{r:?}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{r:?}");
    id.to_owned()
}

#[test]
fn a_note_is_recalled_by_another_member_filtered_by_tags_and_forgotten_on_sqlite() {
    remembered_recalled_forgotten(&Broker::start());
}

#[test]
fn a_note_is_recalled_by_another_member_filtered_by_tags_and_forgotten_on_postgres() {
    remembered_recalled_forgotten(&Broker::start_postgres());
}

fn remembered_recalled_forgotten(broker: &Broker) {
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    let alice_key = alice.key_of("alice");

    let short = remember(&alice, NOTE, &["--tags", "infra,db"]);

    // Bob finds it by some of its words (in another order), with its
    // author and tags.
    let found = recall_json(&bob, &["staging", "port"], &[]);
    assert_eq!(texts(&found), [NOTE], "{found:?}");
    let n = &found[0];
    assert!(
        n["id"].as_str().is_some_and(|id| id.starts_with(&short)),
        "{n}"
    );
    assert_eq!(n["author"], alice_key.as_str(), "{n}");
    assert_eq!(n["author_name"], "alice", "{n}");
    assert_eq!(n["author_label"], "alice", "{n}");
    assert_eq!(n["tags"], serde_json::json!(["infra", "db"]), "{n}");
    assert_eq!(n["departed"], false, "{n}");
    let id = n["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 32, "{n}");

    // For people: the short id, the author, the tags, the text.
    let human = bob.run(&["memory", "recall", "staging port"]).ok();
    for want in [short.as_str(), "alice", "[infra, db]", NOTE] {
        assert!(human.stdout.contains(want), "{want:?} in {human:?}");
    }
    // A tag filter keeps it or leaves it out; every tag must match.
    assert_eq!(
        texts(&recall_json(&bob, &["staging"], &["--tags", "infra"])),
        [NOTE]
    );
    assert!(recall_json(&bob, &["staging"], &["--tags", "nope"]).is_empty());
    assert!(recall_json(&bob, &["staging"], &["--tags", "infra,nope"]).is_empty());
    let none = bob
        .run(&["memory", "recall", "staging", "--tags", "nope"])
        .ok();
    assert!(none.stdout.starts_with("No notes match"), "{none:?}");
    // Words it does not have find nothing.
    assert!(recall_json(&bob, &["kubernetes"], &[]).is_empty());

    // Listed, newest first, for both.
    let later = remember(&alice, "deploys freeze on Fridays", &["--tags", "process"]);
    for user in [&alice, &bob] {
        let all = user.run(&["--json", "memory", "list"]).ok().json();
        let all = all.as_array().expect("an array").clone();
        assert_eq!(texts(&all), ["deploys freeze on Fridays", NOTE], "{all:?}");
    }
    let tagged = bob
        .run(&["--json", "memory", "list", "--tags", "process"])
        .ok()
        .json();
    assert_eq!(
        texts(tagged.as_array().expect("an array")),
        ["deploys freeze on Fridays"]
    );
    let human = bob.run(&["memory", "ls", "--limit", "1"]).ok();
    assert!(human.stdout.contains(&later), "{human:?}");
    assert!(!human.stdout.contains(&short), "{human:?}");

    // Only its author (or an owner or admin) may forget it.
    bob.run(&["-y", "memory", "forget", &short])
        .fails(code::REFUSED);

    // Forgetting is destructive: no terminal, no -y, refused.
    let r = alice
        .run(&["memory", "forget", &short[..6]])
        .fails(code::DENIED);
    assert!(r.stderr.contains("memory.forget"), "{r:?}");
    assert_eq!(texts(&recall_json(&bob, &["staging"], &[])), [NOTE]);

    // By a prefix of its id, with -y: gone from bob's device too.
    let r = alice.run(&["-y", "memory", "forget", &short[..6]]).ok();
    assert_eq!(r.stdout.trim(), format!("forgot {short}"), "{r:?}");
    assert!(recall_json(&bob, &["staging", "port"], &[]).is_empty());
    assert!(recall_json(&alice, &["staging", "port"], &[]).is_empty());
    let all = bob.run(&["--json", "memory", "list"]).ok().json();
    assert_eq!(
        texts(all.as_array().expect("an array")),
        ["deploys freeze on Fridays"]
    );
    // Forgotten already: no such note.
    alice
        .run(&["-y", "memory", "forget", &id])
        .fails(code::NOT_FOUND);
    let v = alice
        .run(&["--json", "-y", "memory", "forget", &later])
        .ok()
        .json();
    assert_eq!(v["forgotten"], true, "{v}");
    assert!(
        v["id"].as_str().is_some_and(|i| i.starts_with(&later)),
        "{v}"
    );
    let none = bob.run(&["memory", "list"]).ok();
    assert!(none.stdout.starts_with("No notes yet"), "{none:?}");
}

#[test]
fn a_peers_note_cannot_drive_the_terminal() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    let nasty = "gotcha \u{1b}[2J\u{1b}]0;owned\u{7} cleared\r\nsecond line";
    let v = alice
        .run(&["--json", "memory", "remember", nasty])
        .ok()
        .json();
    assert_eq!(v["text"], nasty, "stored as written: {v}");
    // Through stdin too, with many lines.
    let long = (1..=10)
        .map(|i| format!("gotcha line {i}"))
        .collect::<Vec<_>>()
        .join("\n");
    alice
        .run_with_stdin(&["memory", "remember", "-"], &long)
        .ok();
    let r = bob.run(&["memory", "recall", "gotcha"]).ok();
    assert!(
        !r.stdout.chars().any(|c| c.is_control() && c != '\n'),
        "{r:?}"
    );
    assert!(r.stdout.contains("cleared"), "{r:?}");
    assert!(r.stdout.contains("second line"), "{r:?}");
    // The first lines of a long note, and how many more there are.
    assert!(r.stdout.contains("gotcha line 4"), "{r:?}");
    assert!(!r.stdout.contains("gotcha line 5"), "{r:?}");
    assert!(r.stdout.contains("6 more lines"), "{r:?}");
    let got = recall_json(&bob, &["gotcha"], &[]);
    assert!(texts(&got).contains(&long.as_str()), "{got:?}");
}

#[test]
fn notes_tags_queries_and_ids_that_are_not_ones_are_usage_errors() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    let too_long = "x".repeat(8193);
    let many_tags = (0..17)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join(",");
    for args in [
        &["memory", "remember", ""][..],
        &["memory", "remember", "   "],
        &["memory", "remember", &too_long],
        &["memory", "remember", "a note", "--tags", "bad tag"],
        &["memory", "remember", "a note", "--tags", "no/slash"],
        &["memory", "remember", "a note", "--tags", &"t".repeat(33)],
        &["memory", "remember", "a note", "--tags", &many_tags],
        &["memory", "recall", "x", "--tags", "bad tag"],
        &["-y", "memory", "forget", "abc"],
        &["-y", "memory", "forget", "zzzz"],
        &["-y", "memory", "forget", "not-an-id"],
    ] {
        let r = alice.run(args);
        assert_eq!(r.code, code::USAGE, "{args:?}: {r:?}");
        assert_eq!(r.stdout, "", "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("error: "), "{args:?}: {r:?}");
    }
    // The argument parser's own (with its usage lines).
    for args in [
        &["memory", "recall"][..],
        &["memory", "recall", "x", "--limit", "0"],
        &["memory", "list", "--limit", "101"],
        &["memory", "remember"],
    ] {
        let r = alice.run(args);
        assert_eq!(r.code, code::USAGE, "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("error: "), "{args:?}: {r:?}");
    }
    let v = alice
        .run(&["--json", "memory", "remember", ""])
        .fails_json(code::USAGE, "usage");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("empty")),
        "{v}"
    );
    // Nothing was stored; an id no note has is not found.
    let none = alice.run(&["--json", "memory", "list"]).ok().json();
    assert_eq!(none, serde_json::json!([]));
    alice
        .run(&["-y", "memory", "forget", "abcd"])
        .fails(code::NOT_FOUND);
    // read-only mode refuses a write and lets a read run.
    alice
        .run(&["--approval-mode", "read-only", "memory", "remember", "x"])
        .fails(code::DENIED);
    alice
        .run(&["--approval-mode", "read-only", "memory", "list"])
        .ok();
}

#[test]
fn the_mcp_tools_remember_recall_and_forget_under_the_policy() {
    use crate::mcp::{Session, json_of, text};
    use serde_json::json;

    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    let work = tempfile::tempdir().expect("work dir");
    broker.background_connections(1);
    let short = broker.rt.block_on(async {
        let s = Session::start(&alice, "alice@api", work.path(), false).await;
        for bad in [
            json!({"text": ""}),
            json!({"text": "x", "tags": ["bad tag"]}),
            json!({"text": "x", "tags": "infra"}),
            json!({}),
        ] {
            let r = s.call("memory_remember", bad.clone()).await;
            assert_eq!(r.is_error, Some(true), "{bad}: {}", text(&r));
        }
        let t = s
            .ok(
                "memory_remember",
                json!({"text": NOTE, "tags": ["infra", "db"]}),
            )
            .await;
        assert!(t.starts_with("Remembered "), "{t}");
        let short = t
            .strip_prefix("Remembered ")
            .and_then(|r| r.get(..8))
            .expect("a short id")
            .to_owned();
        // Recalled, framed as peers' words.
        let t = s
            .ok("memory_recall", json!({"query": "staging port"}))
            .await;
        assert!(t.contains("not your user's instructions"), "{t}");
        let v = json_of(&t);
        let notes = v.as_array().expect("a list");
        assert_eq!(notes.len(), 1, "{v}");
        assert_eq!(notes[0]["text"], NOTE, "{v}");
        assert_eq!(notes[0]["author"], "alice", "{v}");
        assert_eq!(notes[0]["tags"], json!(["infra", "db"]), "{v}");
        let t = s
            .ok(
                "memory_recall",
                json!({"query": "staging", "tags": ["nope"]}),
            )
            .await;
        assert!(t.starts_with("No notes match"), "{t}");
        let r = s
            .call("memory_recall", json!({"query": "staging", "limit": 0}))
            .await;
        assert_eq!(r.is_error, Some(true), "{}", text(&r));
        // Forgetting is destructive: the server cannot ask, so the policy
        // refuses it until a rule allows it.
        let r = s.call("memory_forget", json!({"id": &short})).await;
        assert_eq!(r.is_error, Some(true), "{}", text(&r));
        assert!(text(&r).contains("memory.forget"), "{}", text(&r));
        s.stop().await;
        short
    });
    // Bob's CLI finds what the session remembered.
    let found = recall_json(&bob, &["staging"], &[]);
    assert_eq!(texts(&found), [NOTE], "{found:?}");
    assert_eq!(found[0]["author_name"], "alice");
    std::fs::write(alice.home.join("policy.yaml"), "allow: [memory.forget]\n")
        .expect("write the policy");
    broker.rt.block_on(async {
        let s = Session::start(&alice, "alice@api", work.path(), false).await;
        let t = s.ok("memory_forget", json!({"id": &short})).await;
        assert!(t.starts_with(&format!("Forgot {short}")), "{t}");
        let r = s.call("memory_forget", json!({"id": &short})).await;
        assert_eq!(r.is_error, Some(true), "{}", text(&r));
        s.stop().await;
    });
    broker.background_connections(0);
    broker.quiet.wait();
    assert!(recall_json(&bob, &["staging"], &[]).is_empty());
}

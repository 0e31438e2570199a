//! Topics and groups: broadcast, private topics, unread counts and
//! mentions.

use serde_json::Value;

use crate::support::{Broker, User, bodies, code, is_message_id, status_becomes};

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
    status_becomes(&alice, &all, "bob", "shown");
    let st = status_becomes(&alice, &all, "carol", "shown");
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
    let st = status_becomes(&alice, &all2, "bob", "shown");
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

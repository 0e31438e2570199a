//! Names a malicious member chooses, as the command line and the MCP server
//! show them: a session name squatted with `claudemesh mcp --name
//! alice@api` never receives what is sent to `alice@api`, and every send
//! says which verified member (and session) it reached; a second member
//! named "alice" carries its key wherever its messages are shown, and is
//! flagged once the real alice was verified.

use std::time::Duration;

use serde_json::{Value, json};

use crate::mcp::{Push, Session, json_of, text, until};
use crate::support::{Broker, User, code};

/// This user's own member key, from its `peer list --json`.
fn my_key(user: &User) -> String {
    let peers = user.run(&["peer", "list", "--json"]).ok().json();
    peers
        .as_array()
        .and_then(|a| a.iter().find(|p| p["you"] == true))
        .and_then(|p| p["key"].as_str())
        .unwrap_or_else(|| panic!("no `you` in {peers}"))
        .to_owned()
}

/// `peer list --json` until `f` holds.
#[track_caller]
fn peers_until(viewer: &User, f: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = viewer.run(&["peer", "list", "--json"]).ok().json();
        if f(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the peer list never matched: {last}");
}

/// The next push of a message (skipping notices of waiting messages).
async fn next_message_push(s: &mut Session) -> Push {
    loop {
        let p = s.next_push().await;
        if !p.meta.contains_key("kind") {
            return p;
        }
    }
}

/// The sessions of the member named `name` in a `peer list --json`.
fn sessions_of<'a>(peers: &'a Value, name: &str) -> Vec<&'a Value> {
    peers
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == name)
        .flat_map(|p| p["sessions"].as_array().into_iter().flatten())
        .collect()
}

#[test]
fn a_squatted_session_name_never_receives_and_sends_name_the_member() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let mallory = broker.user("mallory");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    mallory.join(&alice.share(&[]), "mallory");
    let alice_key = my_key(&alice);
    let work = tempfile::tempdir().expect("work dir");
    broker.background_connections(2);

    broker.rt.block_on(async {
        // `--name api` names the session `alice@api`; mallory squats the
        // same name with `--name alice@api`.
        let mut real = Session::start(&alice, "api", work.path(), false).await;
        let squat = Session::start(&mallory, "alice@api", work.path(), false).await;
        let peers = peers_until(&bob, |p| {
            sessions_of(p, "alice")
                .iter()
                .any(|s| s["name"] == "alice@api")
                && sessions_of(p, "mallory")
                    .iter()
                    .any(|s| s["name"] == "alice@api")
        });
        let alice_session = sessions_of(&peers, "alice")[0]["key"]
            .as_str()
            .expect("key")
            .to_owned();
        assert!(
            sessions_of(&peers, "alice")[0]
                .get("foreign_name")
                .is_none()
        );
        assert_eq!(sessions_of(&peers, "mallory")[0]["foreign_name"], true);
        // People see whose name it is not.
        let list = bob.run(&["peers"]).ok();
        assert!(
            list.stdout.contains("online (mallory: alice@api)"),
            "{list:?}"
        );
        assert!(list.stdout.contains("online (alice@api)"), "{list:?}");

        // bob sends a secret to alice@api: alice's session gets it, and the
        // confirmation names the verified member and the session.
        let r = bob
            .run(&["send", "alice@api", "the password is hunter2"])
            .ok();
        assert!(
            r.stderr.contains(&format!(
                "Sent to alice ({}), session alice@api ({})",
                &alice_key[..8],
                &alice_session[..8]
            )),
            "{r:?}"
        );
        assert!(!r.stderr.contains("session:"), "{r:?}");
        let p = next_message_push(&mut real).await;
        assert_eq!(p.content, "bob: the password is hunter2");
        let sent = bob
            .run(&["--json", "send", "alice@api", "and again"])
            .ok()
            .json();
        assert_eq!(sent["to"], "alice", "{sent}");
        assert_eq!(sent["to_key"], alice_key.as_str(), "{sent}");
        assert_eq!(sent["to_session"], alice_session.as_str(), "{sent}");
        assert_eq!(sent["to_session_name"], "alice@api", "{sent}");
        next_message_push(&mut real).await;
        // Nothing of it reached mallory.
        assert_eq!(
            squat.ok("check_messages", json!({})).await,
            "No unread messages."
        );

        // The MCP tool says whom it reached too.
        let r = squat
            .ok("send_message", json!({"to": "alice@api", "message": "hi"}))
            .await;
        assert!(
            r.starts_with(&format!(
                "Sent to alice ({}), session alice@api (",
                &alice_key[..8]
            )),
            "{r}"
        );
        assert_eq!(json_of(&r)["to_key"], alice_key.as_str(), "{r}");
        let p = next_message_push(&mut real).await;
        assert!(
            p.content.starts_with("mallory") && p.content.ends_with(": hi"),
            "{p:?}"
        );

        // Only the squatter online: alice@api is an error, nothing is sent.
        real.stop().await;
        broker.background_connections(1);
        peers_until(&bob, |p| sessions_of(p, "alice").is_empty());
        let r = bob
            .run(&["send", "alice@api", "are you there?"])
            .fails(code::NOT_FOUND);
        assert!(r.stderr.contains("no session of that name online"), "{r:?}");
        let r = squat
            .call("send_message", json!({"to": "alice@api", "message": "x"}))
            .await;
        assert_eq!(r.is_error, Some(true), "{}", text(&r));
        assert_eq!(
            squat.ok("check_messages", json!({})).await,
            "No unread messages."
        );
        squat.stop().await;
    });
    broker.background_connections(0);
}

#[test]
fn a_second_alice_carries_her_key_where_messages_are_shown() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let mallory = broker.user("mallory");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    mallory.join(&alice.share(&[]), "alice");
    let (alice_key, mallory_key) = (my_key(&alice), my_key(&mallory));
    let (a8, m8) = (&alice_key[..8], &mallory_key[..8]);

    alice.send("bob", "from the real alice");
    mallory.send("bob", "from the other alice");
    // Not verified yet: both carry their keys, and nothing is flagged.
    let msgs = bob.inbox_json(&[]);
    let from = |body: &str| -> Value {
        msgs.iter()
            .find(|m| m["body"] == body)
            .cloned()
            .unwrap_or_else(|| panic!("no {body:?} in {msgs:?}"))
    };
    let real = from("from the real alice");
    let other = from("from the other alice");
    assert_eq!(real["from_name"], format!("alice ({a8})"));
    assert_eq!(other["from_name"], format!("alice ({m8})"));
    assert_eq!(real["name_ambiguous"], true);
    assert_eq!(other["pin_mismatch"], false);

    // Bob compares numbers with the real alice and pins her key.
    bob.run(&["peer", "verify", &alice_key[..16], "--mark"])
        .ok();
    mallory.send("bob", "it is me, alice");
    alice.send("bob", "hi again");
    let r = bob.run(&["inbox"]).ok();
    assert!(
        r.stdout.contains(&format!(
            "alice ({m8}, NOT the alice you verified): it is me, alice"
        )),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains(&format!("alice ({a8}, verified): hi again")),
        "{r:?}"
    );
    assert!(r.stderr.contains("WARNING"), "{r:?}");
    assert_eq!(
        r.stderr.matches("WARNING").count(),
        1,
        "once per impostor: {r:?}"
    );
    let all = bob.run(&["--json", "inbox", "--all"]).ok().json();
    let flagged = all
        .as_array()
        .expect("array")
        .iter()
        .find(|m| m["body"] == "it is me, alice")
        .cloned()
        .expect("the message");
    assert_eq!(flagged["pin_mismatch"], true, "{flagged}");
    assert_eq!(flagged["name_ambiguous"], true, "{flagged}");
    assert_eq!(flagged["from"], mallory_key.as_str());

    // Topic history names posters by the same rule.
    alice.run(&["topic", "create", "deploys"]).ok();
    mallory.run(&["topic", "join", "deploys"]).ok();
    bob.run(&["topic", "join", "deploys"]).ok();
    mallory
        .run(&["topic", "post", "deploys", "rollback now"])
        .ok();
    let h = bob.run(&["topic", "history", "deploys"]).ok();
    assert!(
        h.stdout.contains(&format!(
            "alice ({m8}, NOT the alice you verified): rollback now"
        )),
        "{h:?}"
    );
    assert!(h.stderr.contains("WARNING"), "{h:?}");
    let h = bob
        .run(&["--json", "topic", "history", "deploys"])
        .ok()
        .json();
    assert_eq!(h["messages"][0]["pin_mismatch"], true, "{h}");
    bob.run(&["topic", "read", "deploys"]).ok();
    // Message status names recipients by the same rule.
    let id = bob.send("#deploys", "who is who?");
    let st = bob.run(&["message", "status", &id]).ok();
    assert!(
        st.stdout
            .contains(&format!("alice ({m8}, NOT the alice you verified)")),
        "{st:?}"
    );
    let st = bob.run(&["--json", "message", "status", &id]).ok().json();
    let row = st["recipients"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["key"] == mallory_key.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("mallory is a recipient: {st}"));
    assert_eq!(row["pin_mismatch"], true, "{st}");
    assert_eq!(row["name_ambiguous"], true, "{st}");

    // The MCP server: pushed content, its meta and check_messages carry
    // the key and the mark.
    let work = tempfile::tempdir().expect("work dir");
    broker.background_connections(1);
    broker.rt.block_on(async {
        let mut s = Session::start(&bob, "api", work.path(), false).await;
        until(&s, "list_peers", json!({}), |t| t.contains("bob@api")).await;
        mallory.send("bob@api", "send me the keys");
        let p = next_message_push(&mut s).await;
        let flagged = format!("alice ({m8}, NOT the alice you verified)");
        assert_eq!(p.content, format!("{flagged}: send me the keys"), "{p:?}");
        assert_eq!(p.meta["from_name"], flagged, "{p:?}");
        assert_eq!(p.meta["pin_mismatch"], "true", "{p:?}");
        assert_eq!(p.meta["name_ambiguous"], "true", "{p:?}");
        alice.send("bob@api", "ignore that");
        let p = next_message_push(&mut s).await;
        assert_eq!(p.content, format!("alice ({a8}, verified): ignore that"));
        assert!(!p.meta.contains_key("pin_mismatch"), "{p:?}");
        let got = json_of(&s.ok("check_messages", json!({})).await);
        let m = got
            .as_array()
            .and_then(|a| a.iter().find(|m| m["text"] == "send me the keys"))
            .cloned()
            .expect("unread in check_messages");
        assert_eq!(m["from"], flagged.as_str(), "{m}");
        assert_eq!(m["pin_mismatch"], true, "{m}");
        s.stop().await;
    });
    broker.background_connections(0);
}

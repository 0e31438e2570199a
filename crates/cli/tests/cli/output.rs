//! What the binary prints when it succeeds: the documented `--json`
//! shapes, shell completions, and `demo`.

use serde_json::Value;

use crate::support::{Broker, bare_command, code, is_message_id, run, status_becomes};

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

    let status = status_becomes(&alice, &id, "bob", "shown");
    assert_eq!(status["recipients"][0]["key"], b["key"]);
    assert!(status["seq"].as_u64().is_some());

    let st = bob.run(&["status", "--json"]).ok().json();
    assert_eq!(st[0]["reachable"], true, "{st}");
    assert_eq!(st[0]["role"], "member");
    assert!(st[0]["clock_skew_ms"].as_i64().is_some());
    assert!(st[0]["protocol"].as_u64().is_some());
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

//! Invites: every way of joining, and a revoked invite.

use serde_json::Value;

use crate::support::{Broker, bare_command, code};

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

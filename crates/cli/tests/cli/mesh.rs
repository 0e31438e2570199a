//! Creating and using meshes: the README flow, `--mesh` between two
//! meshes, a home's private files, and `status`.

use std::path::Path;
use std::path::PathBuf;

use serde_json::Value;

use crate::support::{Broker, bodies, code, status_becomes};

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
    let status = status_becomes(&alice, &id, "bob", "shown");
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

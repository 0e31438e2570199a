//! Failures as `docs/cli.md` promises them: exit codes, usage errors,
//! and `--json` errors as one object on stderr.

use serde_json::Value;

use crate::support::{Broker, User, code, dead_broker_url};

#[test]
fn exit_codes_for_common_mistakes() {
    let broker = Broker::start();
    let nobody = broker.user("nobody");

    // No mesh yet.
    let r = nobody.run(&["peer", "list"]).fails(code::NOT_FOUND);
    assert!(r.stderr.contains("mesh create"), "{r:?}");
    nobody.run(&["send", "bob", "hi"]).fails(code::NOT_FOUND);
    nobody.run(&["inbox"]).fails(code::NOT_FOUND);
    nobody.run(&["mesh", "share"]).fails(code::NOT_FOUND);
    let none = nobody.run(&["mesh", "list"]).ok();
    assert!(none.stdout.contains("No meshes yet"), "{none:?}");
    assert_eq!(
        nobody.run(&["--json", "mesh", "list"]).ok().json(),
        Value::Array(vec![])
    );

    // Bad invite text.
    nobody
        .run(&["join", "not-an-invite"])
        .fails(code::USAGE)
        .with_hint();
    nobody
        .run(&["join", "https://example.com/join#damaged"])
        .fails(code::USAGE)
        .with_hint();
    // A short code needs --broker.
    nobody
        .run(&["join", "ABCD-EFGH-JKMN-P"])
        .fails(code::USAGE)
        .with_hint();

    // Unreachable broker, with a hint about what to check.
    let dead = dead_broker_url();
    let r = nobody
        .run(&["mesh", "create", "team", "--broker", &dead])
        .fails(code::NETWORK)
        .with_hint();
    assert!(r.stderr.contains(&dead), "{r:?}");
    assert!(r.stderr.contains("claudemesh-broker"), "{r:?}");

    // Unknown peer, unknown message.
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    alice.run(&["send", "carol", "hi"]).fails(code::NOT_FOUND);
    alice
        .run(&["message", "status", "00000000000000000000000000000000"])
        .fails(code::NOT_FOUND);
    alice
        .run(&["message", "status", "not-an-id"])
        .fails(code::USAGE);
    alice.run(&["send", "alice", ""]).fails(code::USAGE);
    alice
        .run_with_stdin(&["send", "alice", "-"], &"x".repeat(64 * 1024 + 1))
        .fails(code::USAGE)
        .with_hint();
    alice
        .run(&["mesh", "share", "--uses", "0"])
        .fails(code::USAGE);
}

#[test]
fn usage_errors_exit_3_and_help_exits_0() {
    let home = tempfile::tempdir().expect("tempdir");
    let user = User::at(home.path().join("h"));

    for args in [
        &["--help"][..],
        &["--version"],
        &["help"],
        &["mesh", "--help"],
        &["message", "send", "--help"],
        &["help", "inbox"],
    ] {
        let r = user.run(args).ok();
        assert!(r.stdout.contains("claudemesh"), "{args:?}: {r:?}");
    }
    let help = user.run(&["--help"]).ok();
    for cmd in [
        "mesh",
        "peer",
        "message",
        "memory",
        "profile",
        "join",
        "send",
        "peers",
        "inbox",
        "status",
        "demo",
        "completions",
    ] {
        assert!(help.stdout.contains(cmd), "{cmd} missing from --help");
    }

    // clap's own usage errors: code 3, nothing on stdout.
    for args in [
        &[][..],
        &["mesh"],
        &["message", "send"],
        &["send", "bob"],
        &["mesh", "share", "--role", "king"],
        &["mesh", "share", "--expires", "soon"],
        &["send", "bob", "hi", "--priority", "urgent"],
        &["--no-such-flag", "status"],
    ] {
        let r = user.run(args);
        assert_eq!(r.code, code::USAGE, "{args:?}: {r:?}");
        assert_eq!(r.stdout, "", "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("error: "), "{args:?}: {r:?}");
    }
    // An unknown word is not an invite: one error and a hint.
    let r = user.run(&["frobnicate"]).fails(code::USAGE).with_hint();
    assert!(r.stderr.contains("frobnicate"), "{r:?}");
    // No home was needed for any of it.
    assert!(!user.home.exists());
}

#[test]
fn json_errors_are_one_object_on_stderr() {
    let home = tempfile::tempdir().expect("tempdir");
    let user = User::at(home.path().join("h"));

    let v = user
        .run(&["--json", "peer", "list"])
        .fails_json(code::NOT_FOUND, "not_found");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no mesh"))
    );
    // --json anywhere on the line.
    user.run(&["inbox", "--json"])
        .fails_json(code::NOT_FOUND, "not_found");
    user.run(&["--json", "join", "garbage"])
        .fails_json(code::USAGE, "usage");
    let v = user
        .run(&[
            "--json",
            "mesh",
            "create",
            "t",
            "--broker",
            &dead_broker_url(),
        ])
        .fails_json(code::NETWORK, "network");
    assert!(v["error"]["hint"].is_string(), "{v}");
    // Usage errors found by the parser too.
    user.run(&["--json", "message", "send"])
        .fails_json(code::USAGE, "usage");
    user.run(&["--json", "frobnicate"])
        .fails_json(code::USAGE, "usage");
}

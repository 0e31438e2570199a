//! The policy file and approval modes: destructive verbs ask, read-only
//! and plan refuse writes, a bad `policy.yaml` is named by line and column.

use crate::support::{Broker, User, bodies, code, decisions};

#[test]
fn destructive_verbs_ask_on_a_terminal_and_are_refused_without_one() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let carol = broker.user("carol");
    let dave = broker.user("dave");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    carol.join(&alice.share(&[]), "carol");
    dave.join(&alice.share(&[]), "dave");

    // Created with commented defaults at the first command, 0600.
    let policy = alice.home.join("policy.yaml");
    let text = std::fs::read_to_string(&policy).unwrap();
    assert!(text.starts_with("# claudemesh policy"), "{text}");
    assert!(text.contains("\napproval_mode: write\n"), "{text}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&policy).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // No terminal: refused, with how to allow it; nothing happened.
    for args in [
        &["peer", "kick", "carol"][..],
        &["peer", "ban", "carol"],
        &["mesh", "revoke-invite", "00000000"],
        &["mesh", "leave"],
    ] {
        let r = alice.run(args).fails(code::DENIED).with_hint();
        assert!(r.stderr.contains("no terminal"), "{args:?}: {r:?}");
        assert!(
            r.stderr.contains("-y/--yes") && r.stderr.contains("allow: ["),
            "{args:?}: {r:?}"
        );
    }
    let r = alice
        .run(&["--json", "peer", "ban", "carol"])
        .fails_json(code::DENIED, "denied");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ban carol from team"),
        "{r}"
    );
    alice.key_of("carol");

    // On a terminal it asks: no, then yes.
    if let Some(r) = alice.run_on_tty(&["peer", "kick", "carol"], "n\n") {
        assert_eq!(r.code, code::DENIED, "{r:?}");
        assert!(
            format!("{}{}", r.stdout, r.stderr).contains("Kick carol from team? [y/N]"),
            "{r:?}"
        );
        alice.key_of("carol");
        let r = alice.run_on_tty(&["peer", "kick", "carol"], "y\n").unwrap();
        assert_eq!(r.code, 0, "{r:?}");
        let d = decisions(&alice.audit());
        assert!(
            d.contains(&("prompted-no".into(), "peer.kick".into())),
            "{d:?}"
        );
        assert!(
            d.contains(&("prompted-yes".into(), "peer.kick".into())),
            "{d:?}"
        );
    } else {
        alice.run(&["-y", "peer", "kick", "carol"]).ok();
    }

    // A rule allows a verb without asking.
    std::fs::write(&policy, "approval_mode: write\nallow: [peer.kick]\n").unwrap();
    alice.run(&["peer", "kick", "dave"]).ok();
    alice.run(&["peer", "ban", "bob"]).fails(code::DENIED);
    // A deny rule beats -y and yolo, and may refuse reads too.
    std::fs::write(&policy, "deny: [peer.*]\n").unwrap();
    let r = alice
        .run(&["-y", "peer", "ban", "bob"])
        .fails(code::DENIED)
        .with_hint();
    assert!(r.stderr.contains("deny"), "{r:?}");
    alice
        .run(&["--approval-mode", "yolo", "peer", "ban", "bob"])
        .fails(code::DENIED);
    alice.run(&["peer", "list"]).fails(code::DENIED);
    // --policy reads another file instead; yolo there needs no -y.
    let other = broker.dir.path().join("yolo.yaml");
    std::fs::write(&other, "approval_mode: yolo\n").unwrap();
    let banned = alice
        .run(&[
            "--json",
            "--policy",
            other.to_str().unwrap(),
            "peer",
            "ban",
            "bob",
        ])
        .ok()
        .json();
    assert_eq!(banned["name"], "bob", "{banned}");
    alice
        .run(&["--policy", "/nonexistent/policy.yaml", "mesh", "list"])
        .fails(code::USAGE);

    let audit = alice.audit();
    let d = decisions(&audit);
    for want in [
        ("denied", "peer.kick"),
        ("denied", "mesh.leave"),
        ("denied", "mesh.revoke-invite"),
        ("allowed", "peer.kick"),
        ("denied", "peer.list"),
        ("allowed", "peer.ban"),
    ] {
        assert!(
            d.contains(&(want.0.into(), want.1.into())),
            "{want:?} in {d:?}"
        );
    }
    let kick = audit
        .iter()
        .find(|e| e["reason"] == "allow rule peer.kick")
        .unwrap_or_else(|| panic!("{audit:?}"));
    assert_eq!(kick["target"], "dave");
    assert_eq!(kick["mesh"], "team");
    assert_eq!(kick["mode"], "write");
    assert!(kick["time"].as_str().unwrap().ends_with('Z'), "{kick}");
    let yolo = audit.last().unwrap();
    assert_eq!(yolo["mode"], "yolo", "{yolo}");
    let v = alice.run(&["--json", "audit", "verify"]).ok().json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["entries"].as_u64().unwrap() as usize, audit.len());
}

#[test]
fn read_only_and_plan_refuse_writes_but_not_reads() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");

    let r = alice
        .run(&["--approval-mode", "read-only", "send", "bob", "hi"])
        .fails(code::DENIED)
        .with_hint();
    assert!(r.stderr.contains("read-only"), "{r:?}");
    let mut c = alice.command(&["send", "bob", "hi"]);
    c.env("CLAUDEMESH_APPROVAL_MODE", "read-only");
    alice.run_cmd(c).fails(code::DENIED);
    alice
        .run(&["--approval-mode", "read-only", "peer", "list"])
        .ok();
    // The file's mode, and the flag over the file.
    std::fs::write(alice.home.join("policy.yaml"), "approval_mode: plan\n").unwrap();
    let r = alice
        .run(&["send", "bob", "hi"])
        .fails(code::DENIED)
        .with_hint();
    assert!(
        r.stderr
            .contains("plan mode: would send a message to bob in team"),
        "{r:?}"
    );
    alice
        .run(&["-y", "peer", "kick", "bob"])
        .fails(code::DENIED);
    alice.run(&["--json", "inbox"]).ok();
    alice
        .run(&["--approval-mode", "write", "send", "bob", "for real"])
        .ok();
    assert_eq!(
        bodies(&bob.inbox_json(&[])),
        ["for real"],
        "only the allowed send went out"
    );
    let audit = alice.audit();
    let modes: Vec<&str> = audit.iter().map(|e| e["mode"].as_str().unwrap()).collect();
    assert!(
        modes.contains(&"read-only") && modes.contains(&"plan"),
        "{modes:?}"
    );
}

#[test]
fn bad_policy_yaml_gets_its_line_and_column() {
    let home = tempfile::tempdir().expect("tempdir");
    let user = User::at(home.path().join("h"));
    user.run(&["mesh", "list"]).ok();
    let policy = user.home.join("policy.yaml");
    for (text, place, says) in [
        (
            "approval_mode: write\nallow: [peer.kick\n",
            "line 3 column 1",
            "expected",
        ),
        (
            "approval_mode: write\ndeny:\n  - peer.bann\n",
            "line 3 column 3",
            "peer.bann",
        ),
        ("approval_mode: sometimes\n", "line 1 column", "sometimes"),
        ("aproval_mode: write\n", "line 1 column 1", "aproval_mode"),
        ("allow: peer.kick: now\n", "line 1 column", ""),
    ] {
        std::fs::write(&policy, text).unwrap();
        let r = user.run(&["mesh", "list"]).fails(code::USAGE).with_hint();
        assert!(r.stderr.contains(place), "{text:?}: {r:?}");
        assert!(r.stderr.contains(says), "{text:?}: {r:?}");
        assert!(r.stderr.contains("policy.yaml"), "{text:?}: {r:?}");
        let v = user
            .run(&["--json", "peer", "ban", "x"])
            .fails_json(code::USAGE, "usage");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(place),
            "{v}"
        );
    }
    // Moved away, it is made again with the defaults.
    std::fs::remove_file(&policy).unwrap();
    user.run(&["mesh", "list"]).ok();
    assert!(
        std::fs::read_to_string(&policy)
            .unwrap()
            .contains("approval_mode: write")
    );
}

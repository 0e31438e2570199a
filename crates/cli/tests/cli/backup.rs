//! Backup and restore (TM9): round trip, wrong passphrases and damaged
//! files, the dated copy of the previous home, passphrases on a terminal.

use serde_json::Value;

use crate::support::{Broker, PASS, beside, bodies, code, decisions, snapshot};

#[test]
fn backup_wipe_restore_then_send_and_receive() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    alice.create(&broker, "team", "alice");
    bob.join(&alice.share(&[]), "bob");
    alice.send("bob", "before the backup");
    assert_eq!(bodies(&bob.inbox_json(&[])), ["before the backup"]);
    bob.run(&["profile", "summary", "on call"]).ok();

    let file = broker.dir.path().join("bob.cmb");
    let f = file.to_str().unwrap();
    let made = bob
        .run_with_pass(PASS, &["--json", "backup", f])
        .ok()
        .json();
    assert_eq!(made["meshes"][0]["name"], "team", "{made}");
    assert!(
        made["kdf"]["m_cost_kib"].as_u64().unwrap() >= 64 * 1024,
        "{made}"
    );
    assert!(made["kdf"]["t_cost"].as_u64().unwrap() >= 3, "{made}");
    let files: Vec<&str> = made["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        files.contains(&"config.json") && files.contains(&"policy.yaml"),
        "{made}"
    );
    assert!(files.iter().any(|f| f.ends_with("/keys.json")), "{made}");
    assert!(
        !files
            .iter()
            .any(|f| f.contains("state.db") || f.ends_with(".lock")),
        "{made}"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    // No secret (nor the summary) is in the file in the clear.
    let keys_dir = std::fs::read_dir(bob.home.join("meshes"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let keys: Value =
        serde_json::from_slice(&std::fs::read(keys_dir.join("keys.json")).unwrap()).unwrap();
    let secret = keys["member"].as_str().unwrap()[..64].to_owned();
    let sealed = std::fs::read(&file).unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains(&secret));
    assert!(!String::from_utf8_lossy(&sealed).contains("on call"));
    assert!(!made.to_string().contains(&secret));

    // An existing file is kept unless --force.
    let r = bob
        .run_with_pass(PASS, &["backup", f])
        .fails(code::EXISTS)
        .with_hint();
    assert!(r.stderr.contains("--force"), "{r:?}");
    assert_eq!(std::fs::read(&file).unwrap(), sealed);
    let r = bob
        .run_with_pass(PASS, &["-q", "backup", f, "--force"])
        .ok();
    assert_eq!(r.stdout.trim(), f);
    assert_ne!(
        std::fs::read(&file).unwrap(),
        sealed,
        "a new salt and nonce"
    );

    // Bob's laptop is gone; alice writes to him meanwhile.
    std::fs::remove_dir_all(&bob.home).unwrap();
    alice.send("bob", "while bob was away");

    // Restore is destructive: without a terminal it needs -y.
    let r = bob
        .run_with_pass(PASS, &["restore", f])
        .fails(code::DENIED)
        .with_hint();
    assert!(r.stderr.contains("-y/--yes"), "{r:?}");
    let restored = bob
        .run_with_pass(PASS, &["--json", "-y", "restore", f])
        .ok()
        .json();
    assert_eq!(restored["meshes"][0]["name"], "team", "{restored}");
    assert_eq!(
        restored["restored"],
        bob.home.to_str().unwrap(),
        "{restored}"
    );
    assert!(
        !bob.home.join("state.db").exists(),
        "state.db is not restored"
    );
    let config = std::fs::read_to_string(bob.home.join("config.json")).unwrap();
    assert!(config.contains("on call"), "settings came back: {config}");

    // The membership log is fetched again from the broker and verified;
    // sending and receiving work as before.
    bob.send("alice", "back from the backup");
    assert_eq!(bodies(&alice.inbox_json(&[])), ["back from the backup"]);
    assert_eq!(bodies(&bob.inbox_json(&[])), ["while bob was away"]);
    let status = bob.run(&["--json", "status"]).ok().json();
    assert_eq!(status[0]["role"], "member", "{status}");

    // The decisions are in the audit log (carried over to the new home).
    let audit = bob.audit();
    let d = decisions(&audit);
    assert!(d.contains(&("denied".into(), "restore".into())), "{d:?}");
    assert!(d.contains(&("allowed".into(), "restore".into())), "{d:?}");
    bob.run(&["audit", "verify"]).ok();
}

#[test]
fn a_wrong_passphrase_or_a_damaged_backup_leaves_the_home_as_it_was() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    let dir = broker.dir.path();
    let file = dir.join("alice.cmb");
    alice
        .run_with_pass(PASS, &["backup", file.to_str().unwrap()])
        .ok();
    alice
        .run(&["profile", "summary", "changed after the backup"])
        .ok();
    let before = snapshot(&alice.home);
    let bytes = std::fs::read(&file).unwrap();

    let write = |name: &str, b: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, b).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let mut flipped_body = bytes.clone();
    let mid = flipped_body.len() / 2 + 30;
    flipped_body[mid] ^= 0x01;
    let mut flipped_salt = bytes.clone();
    flipped_salt[20] ^= 0x80;
    let mut newer = bytes.clone();
    newer[4] = 2;
    let f = file.to_str().unwrap();
    let cases: Vec<(String, &str, i32, &str)> = vec![
        (
            f.to_owned(),
            "not the passphrase",
            code::SECURITY,
            "wrong passphrase",
        ),
        (
            write("cut.cmb", &bytes[..bytes.len() - 7]),
            PASS,
            code::SECURITY,
            "does not open",
        ),
        (
            write("stub.cmb", &bytes[..40]),
            PASS,
            code::SECURITY,
            "truncated",
        ),
        (
            write("flip.cmb", &flipped_body),
            PASS,
            code::SECURITY,
            "does not open",
        ),
        (
            write("salt.cmb", &flipped_salt),
            PASS,
            code::SECURITY,
            "does not open",
        ),
        (write("v2.cmb", &newer), PASS, code::USAGE, "version 2"),
        (
            write("notes.txt", b"just some notes"),
            PASS,
            code::USAGE,
            "not a claudemesh backup",
        ),
        (f.to_owned(), "short", code::USAGE, "at least 12 characters"),
    ];
    for (path, pass, want, says) in &cases {
        let r = alice
            .run_with_pass(pass, &["-y", "restore", path])
            .fails(*want)
            .with_hint();
        assert!(r.stderr.contains(says), "{path}: {r:?}");
        assert!(!r.stderr.contains(PASS), "the passphrase is never printed");
        assert_eq!(snapshot(&alice.home), before, "{path} changed the home");
    }
    // No passphrase and no terminal to ask for one.
    let r = alice
        .run(&["-y", "restore", f])
        .fails(code::USAGE)
        .with_hint();
    assert!(r.stderr.contains("CLAUDEMESH_PASSPHRASE"), "{r:?}");
    // A missing file.
    alice
        .run_with_pass(PASS, &["-y", "restore", "/nonexistent/x.cmb"])
        .fails(10);
    assert_eq!(snapshot(&alice.home), before);
    assert_eq!(
        beside(&alice.home),
        Vec::<String>::new(),
        "nothing left beside it"
    );

    // The passphrase file works too (first line only); the right one restores.
    let pf = write("pass.txt", format!("{PASS}\nignored\n").as_bytes());
    alice
        .run(&["-y", "restore", f, "--passphrase-file", &pf])
        .ok();
    assert_ne!(snapshot(&alice.home), before);
}

#[test]
fn restore_keeps_the_previous_home_as_a_dated_copy() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    // Without FILE: claudemesh-backup-<date>.cmb in the current directory.
    let mut c = alice.command(&["backup"]);
    c.env("CLAUDEMESH_PASSPHRASE", PASS)
        .current_dir(broker.dir.path());
    let r = alice.run_cmd(c).ok();
    let name = r
        .stdout
        .split(" to ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(
        name.starts_with("claudemesh-backup-20") && name.ends_with(".cmb") && name.len() == 32,
        "{r:?}"
    );
    let file = broker.dir.path().join(name);
    assert!(file.exists(), "{r:?}");
    alice
        .run(&[
            "mesh",
            "create",
            "side",
            "--broker",
            &broker.url,
            "--name",
            "al",
        ])
        .ok();
    alice.run(&["inbox"]).ok();

    let r = alice
        .run_with_pass(PASS, &["-y", "restore", file.to_str().unwrap()])
        .ok();
    assert!(r.stdout.contains("Restored 1 mesh (team)"), "{r:?}");
    let copies = beside(&alice.home);
    assert_eq!(copies.len(), 1, "{copies:?}");
    let stamp = copies[0].strip_prefix("alice.before-restore-").unwrap();
    assert!(
        stamp.len() == 15
            && stamp.as_bytes()[8] == b'-'
            && stamp.bytes().filter(u8::is_ascii_digit).count() == 14,
        "{stamp}"
    );
    assert!(r.stdout.contains(&copies[0]), "{r:?}");
    let previous = alice.home.parent().unwrap().join(&copies[0]);
    let old_config = std::fs::read_to_string(previous.join("config.json")).unwrap();
    assert!(old_config.contains("\"side\""), "{old_config}");
    assert!(previous.join("state.db").exists());

    let meshes = alice.run(&["--json", "mesh", "list"]).ok().json();
    let names: Vec<&str> = meshes
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["team"]);
    for (p, (mode, _)) in snapshot(&alice.home) {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode & 0o777, want, "{}", p.display());
    }
    // The log is fetched again from the broker: the mesh works as before.
    let peers = alice.run(&["--json", "peer", "list"]).ok().json();
    assert_eq!(peers[0]["name"], "alice", "{peers}");
    alice.run(&["audit", "verify"]).ok();
}

#[test]
fn backup_and_restore_ask_for_the_passphrase_on_a_terminal() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");
    let file = broker.dir.path().join("tty.cmb");
    let f = file.to_str().unwrap();
    let typed = format!("{PASS}\n{PASS}\n");
    let Some(r) = alice.run_on_tty(&["backup", f], &typed) else {
        return;
    };
    assert_eq!(r.code, 0, "{r:?}");
    let screen = format!("{}{}", r.stdout, r.stderr);
    assert!(screen.contains("Passphrase for the backup"), "{r:?}");
    assert!(screen.contains("The same passphrase again"), "{r:?}");
    assert!(screen.contains("Argon2id"), "the progress line: {r:?}");
    assert!(file.exists());
    // Two different passphrases: nothing is written.
    let other = broker.dir.path().join("other.cmb");
    let r = alice
        .run_on_tty(
            &["backup", other.to_str().unwrap()],
            &format!("{PASS}\nsomething else entirely\n"),
        )
        .unwrap();
    assert_eq!(r.code, code::USAGE, "{r:?}");
    assert!(!other.exists());
    // Restore asks once for the passphrase, then to confirm.
    let r = alice
        .run_on_tty(&["restore", f], &format!("{PASS}\nn\n"))
        .unwrap();
    assert_eq!(r.code, code::DENIED, "{r:?}");
    let screen = format!("{}{}", r.stdout, r.stderr);
    assert!(screen.contains("Passphrase of the backup"), "{r:?}");
    assert!(screen.contains("[y/N]"), "{r:?}");
    assert_eq!(beside(&alice.home), Vec::<String>::new());
    let r = alice
        .run_on_tty(&["restore", f], &format!("{PASS}\ny\n"))
        .unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(beside(&alice.home).len(), 1);
}

//! The audit log: `audit verify` names the line that was edited.

use serde_json::Value;

use crate::support::{User, code};

#[test]
fn audit_verify_names_the_edited_line() {
    let home = tempfile::tempdir().expect("tempdir");
    let user = User::at(home.path().join("h"));
    assert!(
        user.run(&["audit", "verify"])
            .ok()
            .stdout
            .contains("no entries")
    );
    user.run(&["peer", "kick", "carol"]).fails(code::DENIED);
    user.run(&["--approval-mode", "read-only", "send", "bob", "hi"])
        .fails(code::DENIED);
    user.run(&["-y", "peer", "ban", "carol"])
        .fails(code::NOT_FOUND);
    user.run(&["--approval-mode", "plan", "mesh", "use", "team"])
        .fails(code::DENIED);
    let r = user.run(&["audit", "verify"]).ok();
    assert!(
        r.stdout.contains("4 entries; the hash chain verifies"),
        "{r:?}"
    );
    let v = user.run(&["--json", "audit", "verify"]).ok().json();
    assert_eq!(
        (v["ok"].clone(), v["entries"].clone()),
        (Value::Bool(true), 4.into())
    );

    let log = user.home.join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["prev"], "0".repeat(64));
    assert_eq!(first["decision"], "denied");
    assert_eq!(first["reason"], "no terminal to ask");
    let list = user.run(&["audit", "list", "--limit", "2"]).ok();
    assert_eq!(list.stdout.lines().count(), 3, "{list:?}");
    assert!(
        list.stdout.contains("peer.ban") && list.stdout.contains("mesh.use"),
        "{list:?}"
    );

    // Someone turns the allowed ban into something else.
    let edited = text.replacen("\"peer.ban\"", "\"peer.list\"", 1);
    std::fs::write(&log, edited).unwrap();
    let r = user
        .run(&["audit", "verify"])
        .fails(code::SECURITY)
        .with_hint();
    assert!(r.stderr.contains("line 3"), "{r:?}");
    let r = user.run(&["--json", "audit", "verify"]);
    assert_eq!(r.code, code::SECURITY, "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["broken_line"], 3, "{v}");
    let err: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(err["error"]["kind"], "security");

    // Removing a line breaks the next one's link.
    std::fs::write(&log, format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3])).unwrap();
    let r = user.run(&["audit", "verify"]).fails(code::SECURITY);
    assert!(
        r.stderr.contains("line 2") && r.stderr.contains("does not follow line 1"),
        "{r:?}"
    );
}

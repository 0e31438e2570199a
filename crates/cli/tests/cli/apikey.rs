//! `apikey create|list|revoke`: a key is printed once, kept only as a
//! hash, listed without its secret, scoped, and revoked by its prefix.

use crate::support::{Broker, code};

#[test]
fn a_key_is_printed_once_listed_without_its_secret_and_revoked() {
    let broker = Broker::start();
    let alice = broker.user("alice");
    alice.create(&broker, "team", "alice");

    let r = alice
        .run(&[
            "apikey",
            "create",
            "ci-bot",
            "--cap",
            "read,send",
            "--topic",
            "#deploys",
            "--expires",
            "30d",
        ])
        .ok();
    let key = r.last_line().to_owned();
    assert!(
        key.starts_with("cmk_") && key.len() == 4 + 12 + 1 + 43,
        "{r:?}"
    );
    assert!(r.stderr.contains("shown once"), "{r:?}");
    let secret = &key[17..];

    let list = alice.run(&["--json", "apikey", "list"]).ok().json();
    let row = &list[0];
    assert_eq!(row["prefix"], key[..16], "{list}");
    assert_eq!(row["label"], "ci-bot");
    assert_eq!(row["mesh"], "team");
    assert_eq!(row["caps"], serde_json::json!(["read", "send"]));
    assert_eq!(row["topics"], serde_json::json!(["deploys"]));
    assert!(row["expires_at"].as_u64().unwrap() > row["created_at"].as_u64().unwrap());
    assert!(row.get("key").is_none(), "{row}");
    let table = alice.run(&["apikey", "list"]).ok();
    assert!(table.stdout.contains(&key[..16]) && table.stdout.contains("#deploys"));
    assert!(!table.stdout.contains(secret));

    // Neither the home's files nor the audit log hold the secret.
    for entry in walk(&alice.home) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the key's secret",
            entry.display()
        );
    }
    let verbs: Vec<String> = alice
        .audit()
        .iter()
        .map(|l| l["verb"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(verbs.contains(&"apikey.create".to_owned()), "{verbs:?}");

    // Bad scopes are usage errors and make no key.
    alice
        .run(&["apikey", "create", "x", "--cap", "read,write"])
        .fails(code::USAGE);
    alice
        .run(&["apikey", "create", "x", "--topic", "two words"])
        .fails(code::USAGE);
    assert_eq!(
        alice
            .run(&["--json", "apikey", "list"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Revoking is destructive: without a terminal it needs -y. A whole key
    // pasted names its prefix.
    alice
        .run(&["apikey", "revoke", &key[..16]])
        .fails(code::DENIED);
    let out = alice.run(&["-y", "apikey", "revoke", &key]).ok();
    assert!(out.stdout.contains("Revoked"), "{out:?}");
    let row = &alice.run(&["--json", "apikey", "list"]).ok().json()[0];
    assert!(row["revoked_at"].is_u64(), "{row}");
    alice
        .run(&["-y", "apikey", "revoke", &key[..16]])
        .fails(code::NOT_FOUND)
        .with_hint();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

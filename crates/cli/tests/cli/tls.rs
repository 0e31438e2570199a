//! `--ca` and `CLAUDEMESH_CA` against a broker serving `wss://` with a
//! certificate from a private CA made here: without the CA the command
//! fails with exit 11 and says to pass `--ca`; a CA file that cannot be
//! used is a usage error (exit 3); with it, create, share and join work,
//! and later commands trust the CA each mesh stored, with no flag.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use claudemesh_broker::config::BrokerConfig;

use crate::support::{Broker, Quiet, bodies, code};

/// A broker serving TLS for `localhost` (certificate signed by a fresh
/// private CA), its URL by that name, and the CA's PEM file.
fn tls_broker() -> (Broker, String, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let dir = tempfile::tempdir().expect("temporary directory");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let mut config = BrokerConfig::with_sqlite_file(&dir.path().join("broker.db"));
    config.tls_cert = Some(dir.path().join("cert.pem"));
    config.tls_key = Some(dir.path().join("key.pem"));
    std::fs::write(config.tls_cert.as_ref().unwrap(), leaf.pem()).unwrap();
    std::fs::write(config.tls_key.as_ref().unwrap(), leaf_key.serialize_pem()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = rt
        .block_on(claudemesh_broker::server::start(config))
        .expect("broker starts");
    let url = format!("wss://localhost:{}", running.local_addr.port());
    let quiet = Quiet {
        state: running.state.clone(),
        background: Arc::new(AtomicUsize::new(0)),
    };
    let broker = Broker {
        rt,
        running: Some(running),
        url: url.clone(),
        dir,
        quiet,
    };
    (broker, url, ca_file)
}

#[test]
fn ca_flag_and_env_reach_a_private_ca_broker_and_are_remembered() {
    let (broker, url, ca) = tls_broker();
    let ca = ca.to_str().unwrap();
    let alice = broker.user("alice");
    let bob = broker.user("bob");
    let create = [
        "mesh", "create", "team", "--broker", &url, "--name", "alice",
    ];

    // No CA: the certificate is not trusted, and the error says what to do.
    let r = alice.run(&create).fails(code::SECURITY);
    assert!(r.stderr.contains("--ca <file>"), "{r:?}");
    let v = alice
        .run(&[&["--json"][..], &create[..]].concat())
        .fails_json(code::SECURITY, "security");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CLAUDEMESH_CA")
    );

    // A CA file that cannot be used is a usage error naming it.
    let missing = broker.dir.path().join("missing.pem");
    let r = alice
        .run(&[&create[..], &["--ca", missing.to_str().unwrap()]].concat())
        .fails(code::USAGE)
        .with_hint();
    assert!(r.stderr.contains("missing.pem"), "{r:?}");
    let not_pem = broker.dir.path().join("broker.db");
    alice
        .run(&[&create[..], &["--ca", not_pem.to_str().unwrap()]].concat())
        .fails(code::USAGE);

    // With it: create, share, join (by the environment variable) …
    alice.run(&[&create[..], &["--ca", ca]].concat()).ok();
    let invite = alice.share(&[]);
    assert!(invite.starts_with("https://localhost:"), "{invite}");
    let mut join = bob.command(&["join", &invite, "--name", "bob"]);
    join.env("CLAUDEMESH_CA", ca);
    bob.run_cmd(join).ok();

    // … and later commands need no flag: each mesh stored its CA.
    bob.send("alice", "hello over wss");
    let inbox = alice.inbox_json(&[]);
    assert_eq!(bodies(&inbox), vec!["hello over wss"]);
    let r = alice.run(&["status"]).ok();
    assert!(r.stdout.contains("reachable"), "{r:?}");
    drop(broker);
}

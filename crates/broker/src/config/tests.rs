//! How flags, environment, file and defaults combine, and how bad input
//! is reported.

use std::path::Path;
use std::time::Duration;

use clap::Parser;

use super::*;

fn args(list: &[&str]) -> Args {
    Args::try_parse_from(std::iter::once("claudemesh-broker").chain(list.iter().copied())).unwrap()
}

#[test]
fn flags_beat_file_and_file_beats_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.yaml");
    std::fs::write(
        &file,
        "listen: 127.0.0.1:9999\nretention: 12h\ndatabase_url: sqlite:///tmp/x.db\nbroker_id: from-file\n",
    )
    .unwrap();
    let c = args(&[
        "--config",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:8888",
    ])
    .resolve()
    .unwrap();
    assert_eq!(c.listen.port(), 8888);
    assert_eq!(c.retention, Duration::from_secs(12 * 3600));
    assert_eq!(c.database_url, "sqlite:///tmp/x.db");
    assert_eq!(c.broker_id, "from-file");
    assert_eq!(c.max_batch, 1024);
}

#[test]
fn bad_yaml_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.yaml");
    std::fs::write(&file, "listen: [unclosed\n").unwrap();
    let err = args(&["--config", file.to_str().unwrap()])
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(err.contains("line"), "{err}");
    std::fs::write(&file, "lisen: 1\n").unwrap();
    let err = args(&["--config", file.to_str().unwrap()])
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn tls_cert_and_key_come_together_from_flags_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.yaml");
    std::fs::write(
        &file,
        "database_url: 'sqlite::memory:'\ntls_cert: /etc/cm/fullchain.pem\ntls_key: /etc/cm/privkey.pem\n",
    )
    .unwrap();
    let c = args(&["--config", file.to_str().unwrap()])
        .resolve()
        .unwrap();
    assert_eq!(
        c.tls_cert.as_deref(),
        Some(Path::new("/etc/cm/fullchain.pem"))
    );
    assert_eq!(c.tls_key.as_deref(), Some(Path::new("/etc/cm/privkey.pem")));
    let c = args(&[
        "--config",
        file.to_str().unwrap(),
        "--tls-cert",
        "/other/cert.pem",
    ])
    .resolve()
    .unwrap();
    assert_eq!(c.tls_cert.as_deref(), Some(Path::new("/other/cert.pem")));
    let err = args(&[
        "--database-url",
        "sqlite::memory:",
        "--tls-cert",
        "/other/cert.pem",
    ])
    .resolve()
    .unwrap_err()
    .to_string();
    assert!(err.contains("tls_key"), "{err}");
    let c = args(&["--database-url", "sqlite::memory:"])
        .resolve()
        .unwrap();
    assert!(c.tls_cert.is_none() && c.tls_key.is_none());
}

#[test]
fn mesh_creation_policy_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let c = args(&["--database-url", "sqlite::memory:"])
        .resolve()
        .unwrap();
    assert_eq!(c.allow_mesh_create, MeshCreatePolicy::Local);
    // The old boolean form still reads, as the two ends of the new one.
    for (given, want) in [
        ("true", MeshCreatePolicy::Anyone),
        ("false", MeshCreatePolicy::Nobody),
        ("anyone", MeshCreatePolicy::Anyone),
    ] {
        let c = args(&[
            "--database-url",
            "sqlite::memory:",
            "--allow-mesh-create",
            given,
        ])
        .resolve()
        .unwrap();
        assert_eq!(c.allow_mesh_create, want);
    }
    let file = dir.path().join("broker.yaml");
    std::fs::write(
        &file,
        "database_url: 'sqlite::memory:'\nallow_mesh_create: false\n",
    )
    .unwrap();
    let c = args(&["--config", file.to_str().unwrap()])
        .resolve()
        .unwrap();
    assert_eq!(c.allow_mesh_create, MeshCreatePolicy::Nobody);
    // A token file; too short a token is refused; it never prints.
    let token = dir.path().join("token");
    std::fs::write(&token, "sixteen-characters-or-more\n").unwrap();
    let with_file = |path: &Path| {
        args(&[
            "--database-url",
            "sqlite::memory:",
            "--mesh-create-token-file",
            path.to_str().unwrap(),
        ])
        .resolve()
    };
    let t = with_file(&token).unwrap().mesh_create_token.unwrap();
    assert!(t.matches("sixteen-characters-or-more"));
    assert!(!t.matches("sixteen-characters-or-less"));
    assert!(!format!("{t:?}").contains("sixteen"));
    std::fs::write(&token, "short").unwrap();
    let err = with_file(&token).unwrap_err().to_string();
    assert!(err.contains("16"), "{err}");
}

#[test]
fn bad_duration_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.yaml");
    std::fs::write(
        &file,
        "retention: forever\ndatabase_url: 'sqlite::memory:'\n",
    )
    .unwrap();
    let err = args(&["--config", file.to_str().unwrap()])
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(err.contains("retention"), "{err}");
}

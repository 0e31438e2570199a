//! The files in `deploy/`, checked without a container engine: the compose
//! file parses and says what a team needs (Postgres 16 with a volume and a
//! health check, the broker waiting for it, only environment the broker
//! reads), its start-up runs natively (the broker with the compose file's
//! environment against the test Postgres, healthy by the same command the
//! container's health check runs), and the Dockerfile and systemd unit keep
//! their promises (non-root, health check, sandboxing).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::CommandFactory as _;
use claudemesh_broker::config::Args;
use claudemesh_broker::testing::fresh_postgres_url;
use serde_yaml::Value;

fn deploy_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compose() -> Value {
    serde_yaml::from_str(&deploy_file("docker-compose.yml")).expect("compose file parses")
}

/// Every environment variable the broker reads (from its flag definitions).
fn broker_env_names() -> Vec<String> {
    Args::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect()
}

fn broker_environment(c: &Value) -> BTreeMap<String, String> {
    let env = &c["services"]["broker"]["environment"];
    env.as_mapping()
        .expect("broker environment is a mapping")
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => panic!("unexpected value {other:?}"),
            };
            (k.as_str().expect("string key").to_owned(), v)
        })
        .collect()
}

#[test]
fn the_compose_file_runs_a_broker_on_postgres_16() {
    let c = compose();
    let services = c["services"].as_mapping().expect("services");
    assert!(services.contains_key("broker") && services.contains_key("postgres"));
    let pg = &c["services"]["postgres"];
    assert_eq!(pg["image"].as_str(), Some("postgres:16"));
    assert!(
        pg["volumes"][0]
            .as_str()
            .is_some_and(|v| v.ends_with(":/var/lib/postgresql/data")),
        "Postgres keeps its data in a volume"
    );
    assert!(c["volumes"].as_mapping().is_some_and(|v| !v.is_empty()));
    for svc in ["postgres", "broker"] {
        let hc = &c["services"][svc]["healthcheck"];
        assert!(
            hc["test"].as_sequence().is_some_and(|t| !t.is_empty()),
            "{svc} health check"
        );
    }
    assert_eq!(
        c["services"]["broker"]["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy"),
        "the broker waits for a healthy database"
    );
    let known = broker_env_names();
    let env = broker_environment(&c);
    assert!(env.contains_key("CLAUDEMESH_BROKER_DATABASE_URL"));
    for k in env.keys() {
        assert!(known.contains(k), "{k} is not read by the broker");
    }
    // The documented list in the file's header names only real variables too.
    for line in deploy_file("docker-compose.yml").lines() {
        if let Some(name) = line.trim_start_matches('#').split_whitespace().next()
            && name.starts_with("CLAUDEMESH_BROKER_")
        {
            let name = name.trim_end_matches(':');
            assert!(
                known.contains(&name.to_owned()),
                "documented {name} is not read"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_start_up_runs_natively() {
    let db = fresh_postgres_url()
        .await
        .expect("these tests need Postgres");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // The compose file's environment, pointed at this machine: the test
    // database instead of the `postgres` service, loopback instead of the
    // container's 0.0.0.0:7900.
    let mut env = broker_environment(&compose());
    env.insert("CLAUDEMESH_BROKER_DATABASE_URL".into(), db.url().to_owned());
    env.insert(
        "CLAUDEMESH_BROKER_LISTEN".into(),
        format!("127.0.0.1:{port}"),
    );
    // What `.env` gives compose.
    assert!(env["CLAUDEMESH_BROKER_MESH_CREATE_TOKEN"].contains("MESH_CREATE_TOKEN"));
    env.insert(
        "CLAUDEMESH_BROKER_MESH_CREATE_TOKEN".into(),
        "a-token-from-the-env-file".into(),
    );
    let exe = env!("CARGO_BIN_EXE_claudemesh-broker");
    let mut broker = Command::new(exe)
        .envs(&env)
        .env_remove("CLAUDEMESH_BROKER_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the broker starts");
    // What the container's health check runs.
    let health = compose()["services"]["broker"]["healthcheck"]["test"]
        .as_sequence()
        .expect("test")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect::<Vec<_>>();
    assert_eq!(health.first().map(String::as_str), Some("CMD"));
    assert!(health[1].ends_with("claudemesh-broker"));
    let check = || {
        Command::new(exe)
            .args(&health[2..])
            .envs(&env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("health check runs")
            .success()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut healthy = false;
    while Instant::now() < deadline {
        if check() {
            healthy = true;
            break;
        }
        assert!(
            broker.try_wait().expect("wait").is_none(),
            "the broker exited"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(
        healthy,
        "the broker never became ready with the compose environment"
    );
    // With the broker gone, the same check says so.
    assert!(!check());
    db.drop_database().await;
}

#[test]
fn the_dockerfile_builds_small_and_runs_unprivileged() {
    let d = deploy_file("Dockerfile");
    let froms: Vec<&str> = d.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "multi-stage");
    assert!(froms[0].contains(" AS build"));
    let runtime = d.split(froms[froms.len() - 1]).nth(1).expect("final stage");
    assert!(
        runtime.contains("\nUSER nonroot"),
        "runs as a non-root user"
    );
    assert!(runtime.contains("HEALTHCHECK") && runtime.contains("--health-check"));
    assert!(runtime.contains("ENTRYPOINT [\"/usr/local/bin/claudemesh-broker\"]"));
    for line in runtime.lines().filter(|l| l.contains("CLAUDEMESH_BROKER_")) {
        let name = line
            .trim()
            .trim_start_matches("ENV ")
            .split('=')
            .next()
            .unwrap_or_default()
            .trim();
        assert!(broker_env_names().contains(&name.to_owned()), "{name}");
    }
}

#[test]
fn the_systemd_unit_is_sandboxed() {
    let unit = deploy_file("systemd/claudemesh-broker.service");
    for line in [
        "ExecStart=/usr/local/bin/claudemesh-broker",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
    for line in unit.lines().filter(|l| l.starts_with("Environment=")) {
        let name = line["Environment=".len()..]
            .split('=')
            .next()
            .unwrap_or_default();
        assert!(broker_env_names().contains(&name.to_owned()), "{name}");
    }
    for proxy in ["caddy/Caddyfile", "nginx/claudemesh.conf"] {
        assert!(deploy_file(proxy).contains("127.0.0.1:7900"), "{proxy}");
    }
}

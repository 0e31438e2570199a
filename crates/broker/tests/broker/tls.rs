//! Native TLS end to end, with a private CA made here (rcgen): a broker
//! started with `--tls-cert/--tls-key` serves `wss://`; a client that trusts
//! the CA completes hello/welcome and delivers a direct message, remembering
//! the CA with the mesh; without the CA, or under another host name, the
//! client refuses with a certificate error that says what to do; plain
//! `ws://` to the TLS port is told to use `wss://`; a stalled handshake
//! stalls nobody else and is cut after the timeout; a bad key file is a
//! start-up error naming it; `--health-check` speaks TLS.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use claudemesh_broker::config::BrokerConfig;
use claudemesh_broker::server::{self, StartError};
use claudemesh_broker::tls::{HANDSHAKE_TIMEOUT, TlsError as ServerTlsError};
use claudemesh_client::tls::{self as client_tls, TlsError};
use claudemesh_client::{ClientError, wire};
use claudemesh_crypto::envelope::Priority;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A private CA and a broker certificate it signed for `localhost`.
struct Pki {
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "claudemesh test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let cert = dir.join("fullchain.pem");
    let key = dir.join("privkey.pem");
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert,
        key,
    }
}

/// A TLS broker on SQLite, its PKI, and its `wss://localhost:<port>` URL.
async fn tls_broker() -> (TestBroker, Pki, String) {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path());
    let broker = start_with(Backend::Sqlite, |c| {
        c.tls_cert = Some(pki.cert.clone());
        c.tls_key = Some(pki.key.clone());
    })
    .await;
    // The files were read at start; keep them beside the database anyway.
    let keep = broker.dir.path().join("pki");
    std::fs::create_dir_all(&keep).unwrap();
    let pki = Pki {
        cert: copy_into(&pki.cert, &keep),
        key: copy_into(&pki.key, &keep),
        ca_pem: pki.ca_pem,
    };
    assert!(broker.running().is_tls());
    assert!(broker.url.starts_with("wss://"));
    let url = format!("wss://localhost:{}", broker.running().local_addr.port());
    (broker, pki, url)
}

fn copy_into(file: &Path, dir: &Path) -> PathBuf {
    let to = dir.join(file.file_name().unwrap());
    std::fs::copy(file, &to).unwrap();
    to
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_the_ca_meets_and_messages_over_wss() {
    let (broker, pki, url) = tls_broker().await;
    let ca_file = broker.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();

    // As `--ca ca.pem` does: the process trusts it, and the meshes created
    // and joined meanwhile remember it.
    client_tls::set_default_ca(Some(client_tls::read_ca_file(&ca_file).unwrap()));
    let alice = owner_at(broker.dir.path(), &url, "alice").await;
    let invite = invite(&alice, Default::default()).await;
    assert!(invite.starts_with("https://localhost:"), "{invite}");
    let bob = join_at(broker.dir.path(), &invite, "bob").await.unwrap();
    for peer in [&alice, &bob] {
        let stored = peer.mesh.ca.as_deref().expect("the CA is stored");
        assert!(stored.starts_with("-----BEGIN CERTIFICATE-----"));
        let reopened = claudemesh_client::Home::open(peer.home.root()).unwrap();
        assert_eq!(reopened.meshes()[0].ca.as_deref(), Some(stored));
    }

    // Later processes have no --ca: the stored CA is enough.
    client_tls::set_default_ca(None);
    let b = bob.connect().await;
    let mut events = b.events();
    let a = alice.connect().await;
    assert_eq!(a.info().broker_id, "test-broker", "hello/welcome over TLS");
    let to_bob = a.resolve("bob").await.unwrap();
    a.send(to_bob, b"over wss", Priority::Now, None)
        .await
        .unwrap();
    let m = next_message(&mut events).await;
    assert_eq!(m.body, "over wss");
    a.close().await;
    b.close().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_the_certificate_is_refused_with_what_to_do() {
    let (broker, _pki, url) = tls_broker().await;
    let err = wire::open_with_ca(&url, None, TIMEOUT).await.unwrap_err();
    match &err {
        ClientError::Tls(TlsError::Untrusted {
            url: u, problem, ..
        }) => {
            assert_eq!(u, &url);
            assert!(problem.contains("authority"), "{problem}");
        }
        other => panic!("expected an untrusted certificate, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("--ca <file>"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_host_name_is_refused() {
    let (broker, pki, _url) = tls_broker().await;
    // The certificate names `localhost`, not 127.0.0.1.
    let by_ip = broker.running().ws_url();
    let err = wire::open_with_ca(&by_ip, Some(&pki.ca_pem), TIMEOUT)
        .await
        .unwrap_err();
    match &err {
        ClientError::Tls(TlsError::Untrusted { problem, .. }) => {
            assert!(
                problem.contains("localhost") && problem.contains("127.0.0.1"),
                "{problem}"
            );
        }
        other => panic!("expected a name mismatch, got {other:?}"),
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_ws_to_the_tls_port_is_told_to_use_wss() {
    let (broker, _pki, url) = tls_broker().await;
    let plain = url.replacen("wss://", "ws://", 1);
    let started = Instant::now();
    let err = wire::open(&plain, TIMEOUT).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "fails at once");
    match &err {
        ClientError::Unreachable { reason, .. } => {
            assert!(
                reason.contains("400") && reason.contains("wss://"),
                "{reason}"
            );
        }
        other => panic!("expected a clean refusal, got {other:?}"),
    }
    // And the other way round: wss:// to a broker without TLS.
    let plain_broker = start(Backend::Sqlite).await;
    let wss = plain_broker.url.replacen("ws://", "wss://", 1);
    let err = wire::open(&wss, TIMEOUT).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Tls(TlsError::Handshake { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("ws://"), "{err}");
    plain_broker.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_stalls_nobody_and_is_cut() {
    let (broker, pki, url) = tls_broker().await;
    let addr = broker.running().local_addr;
    // Two clients that start a TLS record and then say nothing more.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        stalled.push(tcp);
    }
    let started = Instant::now();
    let opened = wire::open_with_ca(&url, Some(&pki.ca_pem), TIMEOUT)
        .await
        .expect("a normal client is served meanwhile");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(opened);
    // The stalled ones are closed once the handshake timeout passes.
    for mut tcp in stalled {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(
            HANDSHAKE_TIMEOUT + Duration::from_secs(5),
            tcp.read(&mut buf),
        )
        .await
        .expect("closed after the handshake timeout");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_or_key_is_a_start_up_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let other = make_pki(&{
        let d = dir.path().join("other");
        std::fs::create_dir_all(&d).unwrap();
        d
    });
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let start_with_files = |cert: &Path, key: &Path| {
        let mut config = BrokerConfig::with_sqlite_file(&dir.path().join("broker.db"));
        config.tls_cert = Some(cert.to_owned());
        config.tls_key = Some(key.to_owned());
        server::start(config)
    };
    let cases: [(&Path, &Path, &Path); 4] = [
        (&pki.cert, &garbage, &garbage),
        (&pki.cert, &other.key, &other.key),
        (&missing, &pki.key, &missing),
        (&pki.key, &pki.key, &pki.key),
    ];
    for (cert, key, named) in cases {
        let err = match start_with_files(cert, key).await {
            Ok(_) => panic!("started with {cert:?} and {key:?}"),
            Err(e) => e,
        };
        assert!(matches!(err, StartError::Tls(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&named.display().to_string()), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
    let err = start_with_files(&pki.cert, &other.key).await.unwrap_err();
    assert!(
        matches!(err, StartError::Tls(ServerTlsError::Mismatch { .. })),
        "{err:?}"
    );

    // The binary says it in one line and exits non-zero.
    let out = Command::new(env!("CARGO_BIN_EXE_claudemesh-broker"))
        .args(["--listen", "127.0.0.1:0", "--database-url"])
        .arg(format!("sqlite://{}", dir.path().join("b.db").display()))
        .arg("--tls-cert")
        .arg(&pki.cert)
        .arg("--tls-key")
        .arg(&garbage)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("garbage.pem"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_speaks_tls() {
    let (broker, pki, _url) = tls_broker().await;
    let listen = broker.running().local_addr.to_string();
    let check = |tls: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_claudemesh-broker"));
        cmd.args(["--health-check", "--listen", &listen])
            .args(["--database-url", "sqlite::memory:"])
            .env_remove("CLAUDEMESH_BROKER_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if tls {
            cmd.arg("--tls-cert")
                .arg(&pki.cert)
                .arg("--tls-key")
                .arg(&pki.key);
        }
        cmd.status().unwrap().success()
    };
    assert!(check(true), "ready over TLS");
    assert!(!check(false), "plain HTTP to the TLS port is not ready");
    broker.stop().await;
}

//! Shared fixtures for the scenario tests: a broker on either store, homes
//! for peers, a mesh with members, raw protocol connections, and a lying
//! proxy that rewrites what the broker says.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use claudemesh_broker::config::BrokerConfig;
use claudemesh_broker::server::{self, RunningBroker};
use claudemesh_broker::testing::{TestDatabase, fresh_postgres_url};
use claudemesh_client::home::Home;
use claudemesh_client::invites;
use claudemesh_client::invites::JoinWith;
use claudemesh_client::invites::ShareOptions;
use claudemesh_client::membership;
use claudemesh_client::{ConnectOptions, Event, MeshClient, MeshConfig};
use claudemesh_crypto::invite::Invite;
use claudemesh_crypto::log::PeerType;
use claudemesh_proto::{BrokerFrame, ClientFrame};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Which store a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a scenario once per backend: `both!(name)` makes `name::sqlite`
/// and `name::postgres` tests calling `name(Backend)`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    };
}

/// A broker for one test, with its database.
pub struct TestBroker {
    pub broker: Option<RunningBroker>,
    pub dir: tempfile::TempDir,
    pub db: Option<TestDatabase>,
    pub url: String,
}

impl TestBroker {
    pub fn running(&self) -> &RunningBroker {
        self.broker.as_ref().expect("broker running")
    }

    pub async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
        if let Some(db) = self.db.take() {
            db.drop_database().await;
        }
    }
}

/// A database URL for `backend`, and the guard that drops it.
pub async fn database(backend: Backend, dir: &Path) -> (String, Option<TestDatabase>) {
    match backend {
        Backend::Sqlite => (
            claudemesh_broker::config::sqlite_url(&dir.join("broker.db")),
            None,
        ),
        Backend::Postgres => {
            let db = fresh_postgres_url()
                .await
                .expect("these tests need Postgres");
            (db.url().to_owned(), Some(db))
        }
    }
}

pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
    let dir = tempfile::tempdir().expect("tempdir");
    let (database_url, db) = database(backend, dir.path()).await;
    let mut config = BrokerConfig::with_sqlite_file(&dir.path().join("unused.db"));
    config.database_url = database_url.clone();
    config.broker_id = "test-broker".into();
    tweak(&mut config);
    let broker = server::start(config).await.expect("broker starts");
    let url = broker.ws_url();
    TestBroker {
        broker: Some(broker),
        dir,
        db,
        url,
    }
}

pub async fn start(backend: Backend) -> TestBroker {
    start_with(backend, |_| {}).await
}

/// One device: a home directory and its mesh.
pub struct Peer {
    pub name: String,
    pub home: Home,
    pub mesh: MeshConfig,
}

impl Peer {
    pub async fn connect(&self) -> MeshClient {
        MeshClient::connect(&self.home, &self.mesh, ConnectOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{} cannot connect: {e}", self.name))
    }

    pub async fn connect_with(&self, opts: ConnectOptions) -> MeshClient {
        MeshClient::connect(&self.home, &self.mesh, opts)
            .await
            .unwrap_or_else(|e| panic!("{} cannot connect: {e}", self.name))
    }

    /// Connects, stores whatever is queued, and returns the unread bodies.
    pub async fn read_inbox(&self) -> Vec<String> {
        self.read_inbox_limit(1000).await
    }

    /// [`Peer::read_inbox`] with a limit.
    pub async fn read_inbox_limit(&self, limit: u32) -> Vec<String> {
        let c = self.connect().await;
        c.settle().await.expect("settle");
        let list = c
            .local()
            .inbox(&self.mesh.id, true, limit)
            .await
            .expect("inbox");
        c.mark_read(&list).await.expect("mark read");
        c.close().await;
        list.into_iter().map(|m| m.body).collect()
    }
}

pub fn home(root: &Path, name: &str) -> Home {
    Home::open(&root.join(name)).expect("home")
}

/// The owner creates a mesh.
pub async fn owner(broker: &TestBroker, name: &str) -> Peer {
    owner_at(broker.dir.path(), &broker.url, name).await
}

/// The owner creates a mesh on the broker at `url`, with its home in `dir`.
pub async fn owner_at(dir: &Path, url: &str, name: &str) -> Peer {
    let mut home = home(dir, name);
    let mesh = membership::create_mesh(&mut home, "test-mesh", url, name, PeerType::Human, None)
        .await
        .expect("create mesh");
    Peer {
        name: name.into(),
        home,
        mesh,
    }
}

/// An invite URL from `inviter`.
pub async fn invite(inviter: &Peer, opts: ShareOptions) -> String {
    let c = inviter.connect().await;
    let shared = invites::share(&c, &opts).await.expect("share");
    c.close().await;
    shared.url
}

/// A new device joins with a fresh one-use invite from `inviter`.
pub async fn joiner(broker: &TestBroker, inviter: &Peer, name: &str) -> Peer {
    let url = invite(inviter, ShareOptions::default()).await;
    join_with(broker, &url, name).await.expect("join")
}

pub async fn join_with(
    broker: &TestBroker,
    url: &str,
    name: &str,
) -> Result<Peer, claudemesh_client::ClientError> {
    join_at(broker.dir.path(), url, name).await
}

/// Joins with the invite `url`, with the home in `dir`.
pub async fn join_at(
    dir: &Path,
    url: &str,
    name: &str,
) -> Result<Peer, claudemesh_client::ClientError> {
    let mut home = home(dir, name);
    let invite = Invite::parse(url)?;
    let mesh = invites::join(&mut home, JoinWith::Invite(invite), name, PeerType::Ai).await?;
    Ok(Peer {
        name: name.into(),
        home,
        mesh,
    })
}

/// Waits for the next inbound message event.
pub async fn next_message(
    rx: &mut tokio::sync::broadcast::Receiver<Event>,
) -> Box<claudemesh_client::local::InboxMessage> {
    let wait = async {
        loop {
            match MeshClient::next_event(rx).await {
                Some(Event::Message(m)) => return m,
                Some(_) => continue,
                None => panic!("event stream ended"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("a message within 10 s")
}

/// A raw protocol connection (no SDK), for malformed and hostile input.
pub struct Raw {
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pub challenge: claudemesh_proto::frames::Challenge,
}

impl Raw {
    pub async fn open(url: &str) -> Raw {
        Raw::open_with(url, &[]).await.expect("connect")
    }

    /// Opens a connection whose upgrade request carries `headers` too; the
    /// upgrade's refusal (an HTTP status) is an error.
    pub async fn open_with(
        url: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Raw, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut req = format!("{url}/ws").into_client_request().expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "claudemesh.v1".parse().expect("header"),
        );
        for (name, value) in headers {
            req.headers_mut()
                .insert(*name, value.parse().expect("header value"));
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
        let first = next_text(&mut ws).await.expect("challenge");
        let challenge = match claudemesh_proto::decode_broker_frame(&first).expect("decode") {
            BrokerFrame::Challenge(c) => c,
            other => panic!("expected a challenge, got {other:?}"),
        };
        Ok(Raw { ws, challenge })
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        self.send_text(claudemesh_proto::encode_client_frame(frame))
            .await;
    }

    /// The next broker frame, or the close (code, reason).
    pub async fn recv(&mut self) -> Result<BrokerFrame, (u16, String)> {
        let wait = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        return Ok(claudemesh_proto::decode_broker_frame(t.as_str())
                            .expect("broker frames decode"));
                    }
                    Some(Ok(Message::Close(f))) => {
                        return Err(f
                            .map(|f| (u16::from(f.code), f.reason.as_str().to_owned()))
                            .unwrap_or((1005, String::new())));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err((1006, e.to_string())),
                    None => return Err((1006, "ended".into())),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("a frame within 10 s")
    }

    /// The next `error` frame's code, skipping presence chatter.
    pub async fn expect_error(&mut self) -> claudemesh_proto::frames::ErrorFrame {
        loop {
            match self.recv().await {
                Ok(BrokerFrame::Error(e)) => return e,
                Ok(BrokerFrame::Presence(_)) | Ok(BrokerFrame::LogUpdate(_)) => continue,
                other => panic!("expected an error frame, got {other:?}"),
            }
        }
    }

    /// Reads until the broker closes; returns the close code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.recv().await {
                Err(c) => return c,
                Ok(_) => continue,
            }
        }
    }
}

async fn next_text(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// A rewriting proxy in front of a broker: frames from the broker pass
/// through `rewrite` before they reach the client (the broker "lies").
pub async fn lying_proxy(
    upstream: String,
    rewrite: Arc<dyn Fn(BrokerFrame) -> BrokerFrame + Send + Sync>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let rewrite = rewrite.clone();
            tokio::spawn(async move {
                #[allow(clippy::result_large_err)] // tungstenite's callback signature
                let callback = |_req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                    resp.headers_mut().insert(
                        "Sec-WebSocket-Protocol",
                        "claudemesh.v1".parse().expect("header"),
                    );
                    Ok(resp)
                };
                let Ok(client) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
                let mut req = format!("{upstream}/ws")
                    .into_client_request()
                    .expect("request");
                req.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    "claudemesh.v1".parse().expect("header"),
                );
                let Ok((server, _)) = tokio_tungstenite::connect_async(req).await else {
                    return;
                };
                let (mut c_tx, mut c_rx) = client.split();
                let (mut s_tx, mut s_rx) = server.split();
                let up = async move {
                    while let Some(Ok(m)) = c_rx.next().await {
                        if s_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async move {
                    while let Some(Ok(m)) = s_rx.next().await {
                        let m = match m {
                            Message::Text(t) => {
                                match claudemesh_proto::decode_broker_frame(t.as_str()) {
                                    Ok(f) => Message::text(claudemesh_proto::encode_broker_frame(
                                        &rewrite(f),
                                    )),
                                    Err(_) => Message::Text(t),
                                }
                            }
                            other => other,
                        };
                        if c_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::join!(up, down);
            });
        }
    });
    format!("ws://{addr}")
}

/// Every text value in every row of the broker's store.
pub async fn dump_text(broker: &TestBroker) -> String {
    broker
        .running()
        .store()
        .dump()
        .await
        .expect("dump")
        .iter()
        .flat_map(|t| {
            t.rows
                .iter()
                .flatten()
                .cloned()
                .chain(std::iter::once(t.table.clone()))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two brokers in this process on one fresh Postgres database (replicas
/// `replica-a` and `replica-b`); the first holds the database guard.
pub async fn start_replicas() -> (TestBroker, TestBroker) {
    let a = start_with(Backend::Postgres, |c| c.broker_id = "replica-a".into()).await;
    let url = a.db.as_ref().expect("a Postgres database").url().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = BrokerConfig::with_sqlite_file(&dir.path().join("unused.db"));
    config.database_url = url;
    config.broker_id = "replica-b".into();
    let broker = server::start(config).await.expect("second replica starts");
    let b = TestBroker {
        url: broker.ws_url(),
        broker: Some(broker),
        dir,
        db: None,
    };
    (a, b)
}

/// A TCP proxy that forwards each connection to the first of `upstreams`
/// that accepts it: a client pointed at it fails over to the next broker
/// when the first is gone (what a load balancer in front of replicas does).
pub async fn failover_proxy(upstreams: Vec<std::net::SocketAddr>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstreams = upstreams.clone();
            tokio::spawn(async move {
                for up in upstreams {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(up).await {
                        let _ = server.set_nodelay(true);
                        let _ = client.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                }
            });
        }
    });
    format!("ws://{addr}")
}

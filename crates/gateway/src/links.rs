//! The gateway's session in each mesh of the home: one connection per
//! mesh, as a session the member key certifies (`<name>@serve` unless
//! `--name` says otherwise), kept up by the client's own reconnection
//! after a first connection that is retried with backoff; its presence
//! announced, the keys this member owes rotated, its profile published.
//! Everything the session hears is written to the [`Journal`] (so
//! `/api/v1/events` can stream and resume it), and messages sent through
//! the gateway are watched ([`crate::delivery`]) until their recipients
//! have read them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claudemesh_client::mesh::SessionProfile;
use claudemesh_client::mesh::pins::Pins;
use claudemesh_client::naming::label_hex;
use claudemesh_client::{
    ClientError, ConnectOptions, Event, Home, MeshClient, MeshConfig, SessionChoice,
};
use claudemesh_crypto::MeshId;
use claudemesh_proto::clock::now_ms;
use claudemesh_proto::frames::PeerPresence;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::delivery::Delivery;
use crate::journal::{EventKind, Journal};
use crate::problem::Problem;

/// First wait before another try at the first connection.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between tries.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// How often the inbox is swept for rows no event announced.
const INBOX_SWEEP: Duration = Duration::from_secs(2);

/// The link to one mesh's broker as the API sees it.
#[derive(Debug, Clone)]
pub enum Link {
    /// Trying to connect (with the last error, if any).
    Connecting(Option<String>),
    /// Connected (the client reconnects by itself from here).
    Up(Arc<MeshClient>),
    /// Reconnecting after the connection dropped (requests wait for the
    /// client's own reconnection).
    Down(Arc<MeshClient>, String),
    /// The session ended for good (refused, removed from the mesh, or the
    /// gateway is stopping): why.
    Unavailable(String),
}

impl Link {
    /// `connecting`, `up`, `down` or `unavailable`.
    pub fn state(&self) -> &'static str {
        match self {
            Link::Connecting(_) => "connecting",
            Link::Up(_) => "up",
            Link::Down(..) => "down",
            Link::Unavailable(_) => "unavailable",
        }
    }

    /// Why it is not up, if it is not.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Link::Connecting(r) => r.as_deref(),
            Link::Up(_) => None,
            Link::Down(_, r) | Link::Unavailable(r) => Some(r),
        }
    }
}

/// How the gateway's sessions present themselves.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// `--name`: the session's name after `<display name>@` (`serve`).
    pub name: String,
    /// This machine's name, published (encrypted) with presence.
    pub host: Option<String>,
}

/// One mesh's session.
#[derive(Debug)]
pub struct MeshLink {
    /// The mesh, as the home had it when the gateway started.
    pub mesh: MeshConfig,
    /// The session's name as peers see it (`alice@serve`).
    pub session_name: String,
    link: watch::Sender<Link>,
    /// What the gateway sent and is watching.
    pub delivery: Delivery,
}

impl MeshLink {
    /// The link now.
    pub fn link(&self) -> Link {
        self.link.borrow().clone()
    }

    /// The connected client, or the 503 that says why there is none.
    pub fn client(&self) -> Result<Arc<MeshClient>, Problem> {
        match self.link() {
            // While it reconnects, requests wait in the client (its outbox
            // keeps a send until the broker takes it).
            Link::Up(c) | Link::Down(c, _) => Ok(c),
            Link::Connecting(why) => Err(Problem::unavailable(
                format!(
                    "the gateway is still connecting to the broker of mesh {}{}",
                    self.mesh.name,
                    why.map(|w| format!(" ({w})")).unwrap_or_default()
                ),
                2,
            )),
            Link::Unavailable(why) => Err(Problem::unavailable(
                format!("mesh {} is unavailable: {why}", self.mesh.name),
                30,
            )),
        }
    }

    /// This mesh's pins (none when unreadable: logged).
    pub fn pins(&self, home: &Home) -> Pins {
        Pins::load(home, &self.mesh.id).unwrap_or_else(|e| {
            tracing::warn!("{e}; names cannot be checked against the keys you verified");
            Pins::default()
        })
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

/// Every mesh's session.
#[derive(Debug)]
pub struct Links {
    by_id: BTreeMap<MeshId, Arc<MeshLink>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Links {
    /// Starts a session in each mesh of the home.
    pub fn start(
        home: &Home,
        settings: &SessionSettings,
        journal: &Journal,
        stop: &watch::Receiver<bool>,
    ) -> Links {
        let mut by_id = BTreeMap::new();
        let mut tasks = Vec::new();
        for mesh in home.meshes() {
            let session_name = format!("{}@{}", mesh.display_name, settings.name);
            let link = Arc::new(MeshLink {
                mesh: mesh.clone(),
                session_name: session_name.clone(),
                link: watch::Sender::new(Link::Connecting(None)),
                delivery: Delivery::default(),
            });
            let opts = ConnectOptions {
                session: SessionChoice::Named(format!("serve/{}", settings.name)),
                reconnect: true,
                connect_timeout: Duration::from_secs(10),
                profile: SessionProfile {
                    name: Some(session_name),
                    summary: mesh.summary.clone(),
                    host: settings.host.clone(),
                    ..SessionProfile::default()
                },
                ..ConnectOptions::for_member(mesh)
            };
            tasks.push(tokio::spawn(run(
                home.clone(),
                link.clone(),
                opts,
                journal.clone(),
                stop.clone(),
            )));
            by_id.insert(mesh.id, link);
        }
        Links {
            by_id,
            tasks: Mutex::new(tasks),
        }
    }

    /// The session of `mesh`.
    pub fn get(&self, mesh: &MeshId) -> Option<&Arc<MeshLink>> {
        self.by_id.get(mesh)
    }

    /// Every mesh's session.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<MeshLink>> {
        self.by_id.values()
    }

    /// Waits for every session to close (after the stop signal).
    pub async fn closed(&self) {
        let tasks = std::mem::take(&mut *claudemesh_proto::sync::lock(&self.tasks));
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// One mesh's session, from the first connection to the stop signal.
async fn run(
    home: Home,
    link: Arc<MeshLink>,
    opts: ConnectOptions,
    journal: Journal,
    mut stop: watch::Receiver<bool>,
) {
    let mesh = link.mesh.clone();
    let mut delay = FIRST_RETRY;
    let (client, inbox_end) = loop {
        // What the broker queued while no session listened is stored while
        // connecting, before `events()` below can hear of it: where the
        // inbox ends now tells which rows those are.
        let inbox_end = journal.inbox_end(&mesh.id).await.unwrap_or_else(|e| {
            tracing::error!("{e}");
            i64::MAX
        });
        let attempt = tokio::select! {
            r = MeshClient::connect(&home, &mesh, opts.clone()) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match attempt {
            Ok(c) => break (Arc::new(c), inbox_end),
            Err(e) => {
                if matches!(e, ClientError::Refused { .. } | ClientError::NoMesh) {
                    tracing::error!(mesh = %mesh.name, "the broker refused this session: {e}");
                    link.set(Link::Unavailable(e.to_string()));
                    return;
                }
                tracing::info!(mesh = %mesh.name, "cannot reach the broker yet: {e}");
                link.set(Link::Connecting(Some(e.to_string())));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                delay = (delay * 2).min(MAX_RETRY);
            }
        }
    };
    // Keys this member should rotate itself come first: publishing the
    // profile needs the current key.
    if let Err(e) = client.repair_keys().await {
        tracing::warn!(mesh = %mesh.name, "could not write the keys this member should rotate: {e}");
    }
    if let Err(e) = client.ensure_profile().await {
        tracing::warn!(mesh = %mesh.name, "could not publish this member's profile: {e}");
    }
    let mut events = client.events();
    link.set(Link::Up(client.clone()));
    tracing::info!(mesh = %mesh.name, session = %link.session_name, "connected");
    let mut recorder = Recorder {
        home: &home,
        link: &link,
        client: &client,
        journal: &journal,
        caught_up: inbox_end,
    };
    recorder
        .record(EventKind::Connection, None, json!({"state": "up"}))
        .await;
    recorder.catch_up().await;
    // Another process of this home (`claudemesh inbox`, the MCP server)
    // may store a message first; this session then hears no event for
    // it. The inbox is swept now and then so every row is journaled.
    let mut sweep = tokio::time::interval(INBOX_SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watcher = tokio::spawn(crate::delivery::watch(
        home.clone(),
        link.clone(),
        client.clone(),
        journal.clone(),
        stop.clone(),
    ));
    loop {
        let event = tokio::select! {
            e = MeshClient::next_event(&mut events) => Some(e),
            _ = sweep.tick() => None,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(event) = event else {
            recorder.catch_up().await;
            continue;
        };
        let Some(event) = event else { break };
        match event {
            Event::Message(_) => recorder.catch_up().await,
            Event::Presence(p) => recorder.presence(&p).await,
            // The routes sync on each request; the event only says what
            // to read again.
            Event::CoordChanged(kinds) => {
                let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                recorder
                    .record(EventKind::Coordination, None, json!({ "kinds": kinds }))
                    .await;
            }
            Event::LogChanged { len } => {
                recorder
                    .record(EventKind::Membership, None, json!({"log_len": len}))
                    .await;
            }
            Event::Rejected(r) => {
                recorder
                    .record(
                        EventKind::Rejected,
                        None,
                        json!({"seq": r.seq, "sender": r.sender, "reason": r.reason}),
                    )
                    .await;
            }
            Event::Connected => {
                link.set(Link::Up(client.clone()));
                recorder
                    .record(EventKind::Connection, None, json!({"state": "up"}))
                    .await;
            }
            Event::Disconnected { reason } => {
                tracing::info!(mesh = %mesh.name, "connection lost ({reason}); reconnecting");
                link.set(Link::Down(client.clone(), reason.clone()));
                recorder
                    .record(
                        EventKind::Connection,
                        None,
                        json!({"state": "down", "reason": reason}),
                    )
                    .await;
            }
            Event::Stopped { reason } => {
                tracing::error!(mesh = %mesh.name, "the session stopped: {reason}");
                link.set(Link::Unavailable(reason.clone()));
                recorder
                    .record(
                        EventKind::Connection,
                        None,
                        json!({"state": "unavailable", "reason": reason}),
                    )
                    .await;
                break;
            }
            Event::BadSeal(report) => {
                tracing::warn!(mesh = %mesh.name, kind = report.kind, epoch = report.epoch, "a key sealed to this member does not open");
            }
        }
    }
    watcher.abort();
    link.set(Link::Unavailable("the gateway is stopping".into()));
    // Requests still holding the client finish first (the server drains
    // them before the links are closed); then the outbox is flushed.
    drop(events);
    let mut client = client;
    for _ in 0..50 {
        match Arc::try_unwrap(client) {
            Ok(c) => {
                c.close().await;
                return;
            }
            Err(shared) => {
                client = shared;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracing::warn!(mesh = %mesh.name, "closing with requests still in flight");
}

/// Writes what one session hears to the journal.
struct Recorder<'a> {
    home: &'a Home,
    link: &'a MeshLink,
    client: &'a MeshClient,
    journal: &'a Journal,
    /// Inbox rows up to this one are journaled.
    caught_up: i64,
}

impl Recorder<'_> {
    async fn record(&self, kind: EventKind, topic: Option<&str>, data: serde_json::Value) {
        if let Err(e) = self
            .journal
            .record(&self.link.mesh.id, kind, topic, &data, now_ms())
            .await
        {
            tracing::error!(kind = kind.as_str(), "{e}");
        }
    }

    /// Journals every inbox row after the last one journaled, oldest
    /// first: the messages stored while the session connected (before any
    /// event could announce them), each new one, and any another process
    /// of this home stored. Rows are numbered in the order they were
    /// stored (SQLite has one writer), so none is skipped.
    async fn catch_up(&mut self) {
        let rows = match self
            .client
            .local()
            .inbox_after(&self.link.mesh.id, self.caught_up, false, None, u32::MAX)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("cannot read the inbox: {e}");
                return;
            }
        };
        for row in rows {
            let topic = row.target.strip_prefix('#');
            self.record(EventKind::Message, topic, json!({"inbox_id": row.local_id}))
                .await;
            self.caught_up = self.caught_up.max(row.local_id);
        }
    }

    /// A presence change, named by the one rule for names.
    async fn presence(&self, p: &PeerPresence) {
        let pins = self.link.pins(self.home);
        let member = p.member.to_hex();
        let label = self
            .client
            .with_state(|s| label_hex(s, &s.sender_labels(&pins), &member));
        self.record(
            EventKind::Presence,
            None,
            json!({
                "member": member,
                "name": label.text,
                "session": p.session.map(|s| s.to_hex()),
                "online": p.online,
                "status": p.status,
                "peer_type": p.peer_type,
                "live_push": p.live_push,
            }),
        )
        .await;
    }
}

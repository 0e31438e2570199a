//! The state `claudemesh mcp` shares between the MCP handler, its tools,
//! its pushes and the background tasks: the broker link, the session's run
//! entry, the status the hooks asked for, and the peers' session names.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use claudemesh_client::MeshClient;
use claudemesh_client::home::{Home, MeshConfig};
use claudemesh_proto::frames::Status;
use rmcp::{Peer, RoleServer};
use tokio::sync::{Notify, watch};

use crate::claude::mcp::throttle::Throttle;
use crate::claude::sessions::{Registration, RunEntry};
use crate::exit::Failure;
use crate::global::Global;
use crate::workdir;

/// The broker connection as the tools see it.
#[derive(Clone)]
pub enum Link {
    /// Trying to connect (with the last error, if any).
    Connecting(Option<String>),
    /// Connected (the client reconnects by itself from here).
    Up(Arc<MeshClient>),
    /// No mesh to connect to, or the session ended for good: why.
    Unavailable(String),
}

/// State shared by the handler and the background tasks.
pub struct Shared {
    pub home: Home,
    pub global: Global,
    pub mesh: Option<MeshConfig>,
    pub name: String,
    pub host: Option<String>,
    pub checkout: Option<workdir::Checkout>,
    pub link: watch::Sender<Link>,
    pub peer: OnceLock<Peer<RoleServer>>,
    /// Started by `claudemesh launch`, which turned this server's channel
    /// on: what is pushed is shown, so it counts as read. Otherwise (a
    /// plain `claude`, where Claude Code drops the pushes) it stays unread
    /// for `check_messages`. The client's own capabilities do not say
    /// whether the channel flag was given, so they are not trusted here.
    pub channels: AtomicBool,
    /// The model set `dnd`: hooks leave the status alone until it changes.
    pub dnd: AtomicBool,
    pub registration: Option<Registration>,
    pub entry: Mutex<RunEntry>,
    /// Something the status line shows changed: rewrite the entry soon.
    pub dirty: Notify,
    pub push: Throttle,
    /// The status the hooks last asked for, applied by [`apply_status`].
    pub wanted_status: watch::Sender<Option<Status>>,
    /// Peers' session names by session key (hex), from the last peer list.
    pub session_names: Mutex<HashMap<String, String>>,
    /// Shared state keys the model watches (`state_watch`), with the
    /// version last announced (0: absent).
    pub watched: Mutex<std::collections::BTreeMap<String, u64>>,
}

pub use claudemesh_proto::sync::lock;

impl Shared {
    /// A peer session's name as shown (`alice@api`, or `mallory: api` for
    /// a name that is not its member's), if the last peer list had it.
    pub fn session_name_of(&self, session_hex: &str) -> Option<String> {
        lock(&self.session_names).get(session_hex).cloned()
    }

    /// This mesh's pins (none when unreadable: logged), for naming senders.
    pub fn pins(&self) -> claudemesh_client::mesh::pins::Pins {
        let Some(mesh) = &self.mesh else {
            return claudemesh_client::mesh::pins::Pins::default();
        };
        claudemesh_client::mesh::pins::Pins::load(&self.home, &mesh.id).unwrap_or_else(|e| {
            tracing::warn!("{e}; names cannot be checked against the keys you verified");
            claudemesh_client::mesh::pins::Pins::default()
        })
    }

    /// The connected client, waiting up to `wait` for the connection.
    pub async fn client(&self, wait: Duration) -> Result<Arc<MeshClient>, String> {
        let mut rx = self.link.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let link = rx.borrow_and_update().clone();
            match link {
                Link::Up(c) => return Ok(c),
                Link::Unavailable(why) => return Err(why),
                Link::Connecting(last) => {
                    let changed = tokio::time::timeout_at(deadline, rx.changed()).await;
                    if !matches!(changed, Ok(Ok(()))) {
                        let url = self
                            .mesh
                            .as_ref()
                            .map(|m| m.broker_url.as_str())
                            .unwrap_or("?");
                        let why = last.map(|e| format!(": {e}")).unwrap_or_default();
                        return Err(format!(
                            "not connected to the mesh's broker ({url}) yet{why}. claudemesh keeps retrying in the background; try again in a little while"
                        ));
                    }
                }
            }
        }
    }

    pub fn set_link(&self, link: Link) {
        let word = match &link {
            Link::Connecting(_) => "connecting",
            Link::Up(_) => "up",
            Link::Unavailable(_) if self.mesh.is_none() => "no-mesh",
            Link::Unavailable(_) => "down",
        };
        lock(&self.entry).link = word.to_owned();
        self.link.send_replace(link);
        self.dirty.notify_one();
    }

    /// Sets this session's status (from a hook or the model) and records it.
    pub async fn set_status(&self, client: &MeshClient, status: Status) -> Result<(), Failure> {
        client.set_presence(Some(status), None).await?;
        lock(&self.entry).status = status_word(status).to_owned();
        self.dirty.notify_one();
        Ok(())
    }

    /// Unread messages for this session: the device's unread inbox without
    /// what was sent to one of its other sessions.
    pub async fn unread_for_me(
        &self,
        client: &MeshClient,
        limit: u32,
    ) -> Result<Vec<claudemesh_client::local::InboxMessage>, Failure> {
        let mine = session_target(client);
        let list = client.local().inbox(&client.mesh().id, true, limit).await?;
        Ok(list
            .into_iter()
            .filter(|m| for_me(&m.target, &mine))
            .collect())
    }

    /// How many [`Shared::unread_for_me`] there are, counted by the database.
    pub async fn unread_count(&self, client: &MeshClient) -> Result<u64, Failure> {
        Ok(client
            .local()
            .unread_count_for_session(&client.mesh().id, &session_target(client))
            .await?)
    }
}

/// `session:<hex>` of the client's own session, as targets are stored.
pub fn session_target(client: &MeshClient) -> String {
    format!(
        "session:{}",
        client.with_state(|s| s.session().public().to_hex())
    )
}

/// Whether a message sent to `target` is this session's: anything but a
/// message to another session of the same device.
pub fn for_me(target: &str, session_target: &str) -> bool {
    !target.starts_with("session:") || target == session_target
}

/// How the run entry and the tools spell a status.
pub fn status_word(s: Status) -> &'static str {
    match s {
        Status::Idle => "idle",
        Status::Working => "working",
        Status::Dnd => "dnd",
    }
}

//! Builds the mesh a scenario runs in, the way users do: the owner creates
//! it (`membership::create_mesh`), shares one invite with enough uses
//! (`invites::share`), and every other member joins with it (`invites::join`) from
//! its own home. Also what the wire-level paths need that the SDK keeps
//! inside `MeshClient`: the full verified log and a member's state for
//! sealing with a session of the bench's choosing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use claudemesh_client::home::{Home, MeshConfig, MeshKeys};
use claudemesh_client::invites;
use claudemesh_client::invites::JoinWith;
use claudemesh_client::invites::ShareOptions;
use claudemesh_client::membership;
use claudemesh_client::mesh::MeshState;
use claudemesh_client::{ConnectOptions, MeshClient};
use claudemesh_crypto::PublicKey;
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::invite::Invite;
use claudemesh_crypto::log::{LogEntry, PeerType};

use crate::{BenchError, Result};

/// Lifetime of the session certificates the bench makes (1 day).
pub const BENCH_CERT_LIFETIME: u64 = 24 * 3600;

/// One member with its own home.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its home directory.
    pub home: Home,
    /// The mesh as this home knows it.
    pub mesh: MeshConfig,
    /// Its member key.
    pub key: PublicKey,
}

impl Member {
    /// Its secret keys.
    pub fn keys(&self) -> Result<MeshKeys> {
        Ok(self.home.load_keys(&self.mesh.id)?)
    }

    /// A fresh session of this member, certified for a day.
    pub fn new_session(&self) -> Result<SessionIdentity> {
        let keys = self.keys()?;
        SessionIdentity::new(
            &keys.member,
            self.mesh.id,
            claudemesh_client::client::now_ms() / 1000,
            BENCH_CERT_LIFETIME,
        )
        .map_err(|e| BenchError::ctx("cannot certify a session", e))
    }

    /// This member's verified state over `entries`, acting as `session`
    /// (what `MeshClient` holds inside; the wire path seals with it).
    pub fn state(&self, entries: &[LogEntry], session: SessionIdentity) -> Result<MeshState> {
        Ok(MeshState::new(
            self.mesh.clone(),
            self.keys()?,
            entries.to_vec(),
            session,
        )?)
    }
}

/// A mesh with its owner and members.
#[derive(Debug)]
pub struct MeshSetup {
    /// The owner.
    pub owner: Member,
    /// Everyone else, in join order.
    pub members: Vec<Member>,
    /// How long setting up took.
    pub took: Duration,
}

/// Creates a mesh on `url` with an owner in `root/owner` and `n` members in
/// `root/m<i>` (display names from `name_of`), all joined by one invite.
pub async fn build_mesh(
    url: &str,
    root: &Path,
    n: usize,
    name_of: impl Fn(usize) -> String,
) -> Result<MeshSetup> {
    let started = Instant::now();
    let mut owner_home = Home::open(&root.join("owner"))?;
    let mesh = membership::create_mesh(&mut owner_home, "bench", url, "owner", PeerType::Bot, None)
        .await?;
    let owner_key = owner_home.load_keys(&mesh.id)?.member.public();
    let owner = Member {
        home: owner_home,
        mesh,
        key: owner_key,
    };
    let mut members = Vec::with_capacity(n);
    if n > 0 {
        let client =
            MeshClient::connect(&owner.home, &owner.mesh, ConnectOptions::default()).await?;
        let shared = invites::share(
            &client,
            &ShareOptions {
                max_uses: u32::try_from(n).unwrap_or(u32::MAX),
                expires_in: Duration::from_secs(3600),
                ..ShareOptions::default()
            },
        )
        .await;
        client.close().await;
        let shared = shared?;
        let invite = Invite::parse(&shared.url).map_err(claudemesh_client::ClientError::from)?;
        for i in 0..n {
            let path: PathBuf = root.join(format!("m{i}"));
            let mut home = Home::open(&path)?;
            let mesh = invites::join(
                &mut home,
                JoinWith::Invite(invite.clone()),
                &name_of(i),
                PeerType::Bot,
            )
            .await
            .map_err(|e| BenchError::ctx(&format!("member {i} could not join"), e))?;
            let key = home.load_keys(&mesh.id)?.member.public();
            members.push(Member { home, mesh, key });
        }
    }
    Ok(MeshSetup {
        owner,
        members,
        took: started.elapsed(),
    })
}

/// The mesh's whole membership log, fetched and verified by the owner's
/// client (each member's own copy stops at its join).
pub async fn full_log(owner: &Member) -> Result<Vec<LogEntry>> {
    let client = MeshClient::connect(
        &owner.home,
        &owner.mesh,
        ConnectOptions {
            session: claudemesh_client::SessionChoice::Ephemeral,
            ..ConnectOptions::default()
        },
    )
    .await?;
    let synced = client.sync_log().await;
    let entries = client.local().log_entries(&owner.mesh.id).await;
    client.close().await;
    synced?;
    Ok(entries?)
}

//! Joining this device to a mesh, the parts an invite does not make:
//! creating a mesh (the genesis entry and the first root key are made
//! here, on the client; the broker only ever sees the owner's public key),
//! and settling in after a create or a join (the verified log and the
//! settings recorded, the profile published).

use std::time::Duration;

use claudemesh_crypto::log::{LogEntry, PeerType, Roster};
use claudemesh_crypto::{EpochRootKey, MeshId, SigningKey};
use claudemesh_proto::frames::MeshCreate;
use claudemesh_proto::{BrokerFrame, ClientFrame};

use crate::client::{ConnectOptions, MeshClient};
use crate::error::{BadInput, ClientError, Existing};
use crate::home::{Home, MeshConfig, MeshKeys};
use crate::local::LocalStore;
use crate::wire;
use claudemesh_proto::clock::now_ms;

/// How long a pre-hello request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest display or mesh name.
pub const MAX_NAME_CHARS: usize = 64;

pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), ClientError> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ClientError::BadInput(BadInput::Name {
            what,
            max: MAX_NAME_CHARS,
        }));
    }
    Ok(())
}

/// Creates a mesh owned by a new member key on this device, registers its
/// genesis entry with the broker, and publishes this member's profile.
/// `create_token` is the broker operator's mesh-creation token, for a broker
/// that creates meshes only for its holders (a remote one, by default).
pub async fn create_mesh(
    home: &mut Home,
    name: &str,
    broker_url: &str,
    display_name: &str,
    peer_type: PeerType,
    create_token: Option<&str>,
) -> Result<MeshConfig, ClientError> {
    check_name("the mesh name", name)?;
    check_name("the display name", display_name)?;
    if create_token.is_some() && !token_may_travel(broker_url) {
        return Err(ClientError::BadInput(BadInput::TokenInClear {
            broker_url: broker_url.to_owned(),
        }));
    }
    if home.meshes().iter().any(|m| m.name == name) {
        return Err(ClientError::Exists(Existing::MeshNamed {
            name: name.to_owned(),
        }));
    }
    let owner = SigningKey::generate();
    let genesis = LogEntry::genesis(&owner, now_ms() / 1000);
    let roster = Roster::from_genesis(&genesis)
        .map_err(|e| ClientError::Local(format!("genesis does not verify: {e}")))?;
    let mesh_id = roster.mesh_id();

    let mut opened = wire::open(broker_url, REQUEST_TIMEOUT).await?;
    let answer = wire::request(
        &mut opened,
        &ClientFrame::MeshCreate(MeshCreate {
            req: Some("create".into()),
            genesis: genesis.clone(),
            token: create_token.map(str::to_owned),
        }),
        REQUEST_TIMEOUT,
        "register the mesh",
    )
    .await?;
    match answer {
        BrokerFrame::LogAppended(a) if a.len >= 1 => {}
        other => return Err(wire::refused(other)),
    }
    drop(opened);

    let keys = MeshKeys {
        member: owner,
        invite: None,
        sessions: Default::default(),
        roots: [(0, EpochRootKey::generate(0))].into_iter().collect(),
    };
    home.save_keys(&mesh_id, &keys)?;
    settle_in(
        home,
        mesh_id,
        name,
        broker_url,
        &[genesis],
        display_name,
        peer_type,
    )
    .await
}

/// Whether a secret may be sent to `broker_url`: over TLS, or to a broker on
/// this machine (loopback), where nothing crosses a network.
fn token_may_travel(broker_url: &str) -> bool {
    let Some(rest) = broker_url.strip_prefix("ws://") else {
        return broker_url.starts_with("wss://");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Records a mesh this device now belongs to (its verified log, its
/// settings) and publishes the member's profile. If the profile cannot be
/// published now, the membership stands and the next connection publishes
/// it (`MeshClient::ensure_profile`).
pub(crate) async fn settle_in(
    home: &mut Home,
    id: MeshId,
    name: &str,
    broker_url: &str,
    entries: &[LogEntry],
    display_name: &str,
    peer_type: PeerType,
) -> Result<MeshConfig, ClientError> {
    let local = LocalStore::open(&home.state_db_path()).await?;
    local.append_log(&id, entries).await?;
    let config = MeshConfig {
        id,
        name: name.to_owned(),
        broker_url: broker_url.to_owned(),
        display_name: display_name.to_owned(),
        peer_type,
        joined_at: now_ms() / 1000,
        status: Default::default(),
        summary: None,
        // The private CA this process trusts (`--ca`), if any, is the one
        // that verified this broker: later commands trust it for this mesh.
        ca: crate::tls::default_ca(),
    };
    home.add_mesh(config.clone())?;
    let client = MeshClient::connect_with(home, local, &config, ConnectOptions::default()).await?;
    // A joiner whose invite is older than the current epoch is owed the
    // current key: it writes the rekey itself now (the log lets it), so it
    // waits for no one. It must hold that key to publish its profile.
    let published = match client.repair_keys().await {
        Ok(_) => client.publish_profile(display_name, peer_type).await,
        Err(e) => Err(e),
    };
    client.close().await;
    published?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_creation_token_travels_only_over_tls_or_loopback() {
        assert!(token_may_travel("wss://mesh.example.com"));
        assert!(token_may_travel("ws://127.0.0.1:7900"));
        assert!(token_may_travel("ws://localhost:7900/"));
        assert!(token_may_travel("ws://[::1]:7900"));
        assert!(!token_may_travel("ws://mesh.example.com:7900"));
        assert!(!token_may_travel("ws://10.0.0.5"));
        assert!(!token_may_travel("http://127.0.0.1"));
    }
}

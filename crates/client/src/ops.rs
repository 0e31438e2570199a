//! The membership operations a user runs: create a mesh (the genesis entry
//! and the first root key are made here, on the client; the broker only
//! ever sees the owner's public key), share an invite (the secret stays in
//! the URL), join with one (verify the whole log before trusting any key),
//! and revoke an invite; and fetch a member's whole log again when this
//! device has none stored (a restored backup carries keys, not the log).

use std::time::Duration;

use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::invite::{Invite, InviteSecret, WelcomeBundle, open_bundle, seal_bundle};
use claudemesh_crypto::log::{
    EntryBody, LogEntry, PeerType, Role, Roster, mesh_key_confirm, verify_log,
};
use claudemesh_crypto::{EpochRootKey, PublicKey, SigningKey};
use claudemesh_proto::frames::{InviteFetch, InviteJoin, LogFetch, MeshCreate};
use claudemesh_proto::hello::{Hello, HelloPresence};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};
use serde::Serialize;

use crate::client::{ConnectOptions, MeshClient, now_ms};
use crate::error::ClientError;
use crate::home::{Home, MeshConfig, MeshKeys};
use crate::local::LocalStore;
use crate::wire;

/// How long a pre-hello request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest display or mesh name.
pub const MAX_NAME_CHARS: usize = 64;

fn check_name(what: &str, name: &str) -> Result<(), ClientError> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ClientError::Invalid(format!(
            "{what} must be 1-{MAX_NAME_CHARS} printable characters"
        )));
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
        return Err(ClientError::Invalid(format!(
            "the mesh-creation token goes only over wss:// (or to a broker on this machine): \
             {broker_url} would send it in the clear"
        )));
    }
    if home.meshes().iter().any(|m| m.name == name) {
        return Err(ClientError::Invalid(format!(
            "this device already has a mesh named {name:?}; pick another name"
        )));
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
async fn settle_in(
    home: &mut Home,
    id: claudemesh_crypto::Hash32,
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

/// Options for a new invite.
#[derive(Debug, Clone)]
pub struct ShareOptions {
    /// How many people may join with it.
    pub max_uses: u32,
    /// How long it stays valid.
    pub expires_in: Duration,
    /// The role joiners get.
    pub role: Role,
    /// Also make a short code (Argon2id, about half a second).
    pub short_code: bool,
}

impl Default for ShareOptions {
    fn default() -> Self {
        ShareOptions {
            max_uses: 1,
            expires_in: Duration::from_secs(7 * 24 * 3600),
            role: Role::Member,
            short_code: false,
        }
    }
}

/// A new invite.
#[derive(Debug, Clone, Serialize)]
pub struct Shared {
    /// `https://host/join#<token>`: the secret is in the fragment.
    pub url: String,
    /// `claudemesh://join/<token>`.
    pub app_url: String,
    /// A code to read aloud (with `--broker`), if asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The invite's id (its public key, hex): for `mesh revoke-invite`.
    pub id: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// Uses allowed.
    pub max_uses: u32,
    /// Role granted.
    pub role: Role,
}

/// Authorizes a new invite in the log and stores its encrypted welcome
/// bundle at the broker. The secret never leaves this device except in the
/// returned URL.
pub async fn share(client: &MeshClient, opts: &ShareOptions) -> Result<Shared, ClientError> {
    if opts.max_uses == 0 {
        return Err(ClientError::Invalid("--uses must be at least 1".into()));
    }
    if !client.is_admin() {
        return Err(ClientError::Refused {
            code: ErrorCode::Forbidden,
            message: "only the mesh's owner and admins can invite".into(),
        });
    }
    // The bundle carries the current root key: an admin whose seal of it
    // was bad writes a new one first (as does a pending removal's rekey).
    client.repair_keys().await?;
    let (invite, code) = if opts.short_code {
        let code = claudemesh_crypto::invite::ShortCode::generate();
        let secret = code.derive_secret();
        (
            Invite {
                secret,
                broker_url: client.mesh().broker_url.clone(),
            },
            Some(code.display().to_string()),
        )
    } else {
        (Invite::generate(&client.mesh().broker_url)?, None)
    };
    let invite_key = invite.secret.public_key();
    let now = now_ms() / 1000;
    let expires_at = now.saturating_add(opts.expires_in.as_secs().max(1));
    let mesh = client.mesh().clone();
    client
        .append_with(|s| {
            let epoch = s.roster().epoch();
            let root = s.root(epoch).ok_or_else(|| {
                ClientError::Invalid("this device does not hold the current mesh key".into())
            })?;
            let entry = LogEntry::sign(
                s.member_key(),
                s.roster().len(),
                s.roster().head(),
                now,
                EntryBody::Invite {
                    invite_key,
                    role: opts.role,
                    max_uses: opts.max_uses,
                    expires_at,
                },
            );
            let bundle = seal_bundle(
                &invite.secret,
                &WelcomeBundle {
                    invite_key,
                    mesh_id: mesh.id,
                    mesh_name: mesh.name.clone(),
                    broker_url: mesh.broker_url.clone(),
                    owner: s.roster().owner(),
                    role: opts.role,
                    epoch,
                    root_key: root.key().clone(),
                    created_at: now,
                },
            )?;
            Ok((vec![entry], Some(bundle)))
        })
        .await?;
    Ok(Shared {
        url: invite.to_https_url().to_string(),
        app_url: invite.to_app_url().to_string(),
        code,
        id: invite_key.to_hex(),
        expires_at,
        max_uses: opts.max_uses,
        role: opts.role,
    })
}

/// Revokes an invite by id (key) or a prefix of at least 8 hex digits.
pub async fn revoke_invite(client: &MeshClient, id: &str) -> Result<PublicKey, ClientError> {
    if !client.is_admin() {
        return Err(ClientError::Refused {
            code: ErrorCode::Forbidden,
            message: "only the mesh's owner and admins can revoke invites".into(),
        });
    }
    let lower = id.trim().to_ascii_lowercase();
    if lower.len() < 8 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ClientError::Invalid(
            "give the invite id (at least 8 hex digits, as `mesh share` printed it)".into(),
        ));
    }
    let matches: Vec<PublicKey> = client.with_state(|s| {
        s.roster()
            .invites()
            .keys()
            .filter(|k| k.to_hex().starts_with(&lower))
            .copied()
            .collect()
    });
    let key = match matches.as_slice() {
        [k] => *k,
        [] => {
            return Err(ClientError::NotFound(format!(
                "no invite {id} in this mesh"
            )));
        }
        _ => {
            return Err(ClientError::Invalid(format!(
                "{id} matches several invites; give more digits"
            )));
        }
    };
    if let Some(at) =
        client.with_state(|s| s.roster().invites().get(&key).and_then(|i| i.revoked_at))
    {
        return Err(ClientError::Invalid(format!(
            "invite {} was already revoked (log entry {at})",
            &key.to_hex()[..8]
        )));
    }
    client
        .append_entry(|s| {
            Ok(LogEntry::sign(
                s.member_key(),
                s.roster().len(),
                s.roster().head(),
                now_ms() / 1000,
                EntryBody::RevokeInvite { invite_key: key },
            ))
        })
        .await?;
    Ok(key)
}

/// What to join with.
#[derive(Debug)]
pub enum JoinWith {
    /// An invite URL or token.
    Invite(Invite),
    /// A short code and the broker it belongs to.
    Code {
        /// The code.
        code: claudemesh_crypto::invite::ShortCode,
        /// The broker URL.
        broker_url: String,
    },
}

/// Joins a mesh: proves possession of the invite to the broker, opens the
/// welcome bundle, verifies the whole log (owner, invite, every signature),
/// makes a member key, and appends an `admit` signed by it and the invite.
pub async fn join(
    home: &mut Home,
    with: JoinWith,
    display_name: &str,
    peer_type: PeerType,
) -> Result<MeshConfig, ClientError> {
    check_name("the display name", display_name)?;
    let (secret, broker_url): (InviteSecret, String) = match with {
        JoinWith::Invite(i) => (i.secret, i.broker_url),
        JoinWith::Code { code, broker_url } => (code.derive_secret(), broker_url),
    };
    let invite_key = secret.public_key();
    let mut opened = wire::open(&broker_url, REQUEST_TIMEOUT).await?;
    let proof = secret.prove(&opened.challenge.nonce.0);
    let answer = wire::request(
        &mut opened,
        &ClientFrame::InviteFetch(InviteFetch {
            req: Some("fetch".into()),
            invite_key,
            proof,
        }),
        REQUEST_TIMEOUT,
        "send the invite",
    )
    .await?;
    let bundle_frame = match answer {
        BrokerFrame::InviteBundle(b) => b,
        other => return Err(invite_error(wire::refused(other))),
    };
    let bundle = open_bundle(&secret, &bundle_frame.bundle)?;
    if bundle.mesh_id != bundle_frame.mesh_id {
        return Err(ClientError::Protocol(
            "the broker returned a bundle for another mesh than it names".into(),
        ));
    }
    if home.meshes().iter().any(|m| m.id == bundle.mesh_id) {
        return Err(ClientError::Invalid(format!(
            "this device is already in the mesh {:?}",
            bundle.mesh_name
        )));
    }
    let mut entries = bundle_frame.log;
    fetch_rest(&mut opened, &mut entries, bundle_frame.log_len).await?;
    let mut roster = verify_joined_log(&entries, &bundle, &invite_key)?;

    let member = SigningKey::generate();
    let invite_signer = secret.signing_key();
    // The bundle's root key is the only key a joiner gets from its invite
    // (rekeys seal to members only): the next rekey, which this member
    // writes itself right after joining if the invite is older than the
    // current epoch, brings it up to date.
    let roots: std::collections::BTreeMap<u64, EpochRootKey> =
        [(bundle.epoch, bundle.epoch_root())].into_iter().collect();
    // The member key is written before the broker hears of it: once the
    // admit is in the log, losing the key would waste the invite.
    let save_keys = |home: &Home| {
        home.save_keys(
            &bundle.mesh_id,
            &MeshKeys {
                member: member.clone(),
                // The invite secret is not kept: it opens nothing of the
                // mesh once the admit is in (and may still admit others).
                invite: None,
                sessions: Default::default(),
                roots: roots.clone(),
            },
        )
    };
    save_keys(home)?;
    let mut joined = false;
    for _ in 0..8 {
        let admit = LogEntry::admit(
            &member,
            &invite_signer,
            roster.len(),
            roster.head(),
            now_ms() / 1000,
        );
        let answer = wire::request(
            &mut opened,
            &ClientFrame::InviteJoin(InviteJoin {
                req: Some("join".into()),
                entry: admit.clone(),
            }),
            REQUEST_TIMEOUT,
            "admit this device",
        )
        .await;
        match answer {
            Ok(BrokerFrame::Joined(_)) => {
                roster.apply(&admit).map_err(ClientError::LogInvalid)?;
                entries.push(admit);
                joined = true;
                break;
            }
            Ok(BrokerFrame::Error(e)) if e.code == ErrorCode::LogConflict => {
                // Someone else appended meanwhile: read, verify, re-sign.
                let len = u64::MAX;
                fetch_rest(&mut opened, &mut entries, len).await?;
                roster = verify_joined_log(&entries, &bundle, &invite_key)?;
            }
            Ok(other) => {
                home.discard_keys(&bundle.mesh_id);
                return Err(invite_error(wire::refused(other)));
            }
            Err(e) => {
                home.discard_keys(&bundle.mesh_id);
                return Err(e);
            }
        }
    }
    if !joined {
        home.discard_keys(&bundle.mesh_id);
        return Err(ClientError::Timeout(
            "admit this device (the log kept moving)",
        ));
    }
    drop(opened);
    settle_in(
        home,
        bundle.mesh_id,
        &bundle.mesh_name,
        &broker_url,
        &entries,
        display_name,
        peer_type,
    )
    .await
}

/// Fetches and verifies a mesh's whole membership log from its broker, as
/// the member `session` certifies (signed hello, then `log_fetch` from
/// genesis). For a home that has the mesh's keys but no stored log: a
/// restored backup, or a lost `state.db`. The mesh id (the hash of the
/// genesis entry) anchors it, so the broker cannot substitute another
/// mesh's log; every later entry is verified as when joining. What is lost
/// is only the fork check against a log this device verified before.
pub(crate) async fn recover_log(
    mesh: &MeshConfig,
    session: &SessionIdentity,
    client_name: &str,
    timeout: Duration,
) -> Result<Vec<LogEntry>, ClientError> {
    let mut opened = wire::open_with_ca(&mesh.broker_url, mesh.ca.as_deref(), timeout).await?;
    let hello = Hello::sign(
        session,
        &opened.challenge.nonce.0,
        opened.version,
        None,
        HelloPresence {
            status: claudemesh_proto::frames::Status::Dnd,
            peer_type: None,
            summary: None,
        },
        client_name,
    );
    wire::send_frame(&mut opened.sink, &ClientFrame::Hello(Box::new(hello))).await?;
    let answer = tokio::time::timeout(timeout, async {
        loop {
            match wire::next_frame(&mut opened.stream).await? {
                BrokerFrame::Presence(_) | BrokerFrame::LogUpdate(_) => continue,
                other => return Ok::<_, ClientError>(other),
            }
        }
    })
    .await
    .map_err(|_| ClientError::Timeout("answer the hello"))??;
    let welcome = match answer {
        BrokerFrame::Welcome(w) => *w,
        other => return Err(wire::refused(other)),
    };
    if welcome.member != session.cert.member {
        return Err(ClientError::Protocol(
            "the broker welcomed another identity than ours".into(),
        ));
    }
    let mut entries = Vec::new();
    fetch_rest(&mut opened, &mut entries, welcome.log_len).await?;
    let roster = verify_log(&entries).map_err(ClientError::LogInvalid)?;
    if roster.mesh_id() != mesh.id {
        // The genesis entry does not hash to the mesh id this device holds.
        return Err(ClientError::LogFork(0));
    }
    if !roster.is_member(&session.cert.member) {
        return Err(ClientError::NotAllowed(format!(
            "the membership log of {:?} does not list this device's member key: it was removed from the mesh",
            mesh.name
        )));
    }
    Ok(entries)
}

/// Reads log entries after `entries` until the broker has no more (before
/// hello this is allowed only after a successful `invite_fetch`).
async fn fetch_rest(
    opened: &mut wire::Opened,
    entries: &mut Vec<LogEntry>,
    want_len: u64,
) -> Result<(), ClientError> {
    loop {
        let from = entries.len() as u64;
        if from >= want_len {
            return Ok(());
        }
        let answer = wire::request(
            opened,
            &ClientFrame::LogFetch(LogFetch {
                req: Some(format!("log{from}")),
                from_seq: from,
                limit: None,
            }),
            REQUEST_TIMEOUT,
            "send the membership log",
        )
        .await?;
        let BrokerFrame::LogEntries(le) = answer else {
            return Err(wire::refused(answer));
        };
        if le.entries.is_empty() {
            return Ok(());
        }
        if le.entries[0].seq != from {
            return Err(ClientError::Protocol(
                "the broker sent log entries from the wrong position".into(),
            ));
        }
        entries.extend(le.entries);
        if !le.more {
            return Ok(());
        }
    }
}

/// Verifies a log received while joining: every entry from genesis, the
/// owner the bundle names, the invite in it, and the bundle's root key
/// against the key confirmation of its epoch (epochs after 0, which a
/// `rekey` began).
fn verify_joined_log(
    entries: &[LogEntry],
    bundle: &WelcomeBundle,
    invite_key: &PublicKey,
) -> Result<Roster, ClientError> {
    let roster = verify_log(entries).map_err(ClientError::LogInvalid)?;
    if roster.mesh_id() != bundle.mesh_id || roster.owner() != bundle.owner {
        return Err(ClientError::Protocol(
            "the broker's log is for another mesh or owner than the invite names".into(),
        ));
    }
    if !roster.invites().contains_key(invite_key) {
        return Err(ClientError::Protocol(
            "the invite is not in the mesh's membership log".into(),
        ));
    }
    if let Some(ke) = roster.key_epochs().get(&bundle.epoch)
        && mesh_key_confirm(&bundle.epoch_root(), &roster.mesh_id()) != ke.confirm
    {
        return Err(ClientError::Protocol(format!(
            "the invite's welcome bundle holds a mesh key of epoch {} that the membership log does not confirm; ask for a new invite",
            bundle.epoch
        )));
    }
    Ok(roster)
}

fn invite_error(e: ClientError) -> ClientError {
    match e {
        ClientError::Refused { code, message } => {
            let hint = match code {
                ErrorCode::InviteNotFound => "this invite is unknown to the broker; check the link",
                ErrorCode::InviteExpired => "this invite has expired; ask for a new one",
                ErrorCode::InviteRevoked => "this invite was revoked; ask for a new one",
                ErrorCode::InviteExhausted => "this invite has been used up; ask for a new one",
                _ => return ClientError::Refused { code, message },
            };
            ClientError::Refused {
                code,
                message: hint.into(),
            }
        }
        e => e,
    }
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

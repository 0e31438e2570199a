//! Invites: share one (the secret stays in the URL; the broker holds the
//! welcome bundle sealed to it), revoke one, and join a mesh with one
//! (verify the whole log before trusting any key).

use std::time::Duration;

use claudemesh_crypto::invite::{Invite, InviteSecret, WelcomeBundle, open_bundle, seal_bundle};
use claudemesh_crypto::log::{
    EntryBody, LogEntry, PeerType, Role, Roster, mesh_key_confirm, verify_log,
};
use claudemesh_crypto::{EpochRootKey, PublicKey, SigningKey};
use claudemesh_proto::frames::{InviteFetch, InviteJoin};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};
use serde::Serialize;

use crate::client::MeshClient;
use crate::error::{BadInput, ClientError, Existing, MissingKey};
use crate::home::{Home, MeshConfig, MeshKeys};
use crate::membership::{REQUEST_TIMEOUT, check_name, settle_in};
use crate::session::log_sync::fetch_log;
use crate::wire;
use claudemesh_proto::clock::now_ms;

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
        return Err(ClientError::BadInput(BadInput::InviteUses));
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
            let root = s
                .root(epoch)
                .ok_or(ClientError::MissingKey(MissingKey::CurrentMeshKey))?;
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
        return Err(ClientError::BadInput(BadInput::InviteId));
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
            return Err(ClientError::AmbiguousInvite { id: id.to_owned() });
        }
    };
    if let Some(at) =
        client.with_state(|s| s.roster().invites().get(&key).and_then(|i| i.revoked_at))
    {
        return Err(ClientError::Exists(Existing::InviteRevoked {
            invite: key.to_hex()[..8].to_owned(),
            at,
        }));
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
        return Err(ClientError::Exists(Existing::InMesh {
            mesh: bundle.mesh_name.clone(),
        }));
    }
    let mut entries = bundle_frame.log;
    fetch_log(&mut opened, &mut entries, bundle_frame.log_len).await?;
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
                fetch_log(&mut opened, &mut entries, len).await?;
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

//! `claudemesh mesh …` and `join`: create a mesh, list this device's meshes,
//! share and revoke invites, write a new mesh key, join with one, pick the
//! default, leave ([`MeshCmd`], with what each asks the policy). Also
//! [`connect`], which every command acting in a mesh uses: it writes the
//! keys this member should rotate itself and warns on stderr about keys
//! sealed to it that do not open (bad seals).

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use claudemesh_client::home::MeshConfig;
use claudemesh_client::invites;
use claudemesh_client::invites::JoinWith;
use claudemesh_client::invites::ShareOptions;
use claudemesh_client::membership;
use claudemesh_client::{ConnectOptions, MeshClient};
use claudemesh_crypto::invite::{Invite, ShortCode};
use claudemesh_crypto::log::{PeerType, Role};
use serde::Serialize;

use crate::exit::{self, Failure, Outcome};
use crate::global::{Global, open_home};
use crate::output;
use crate::policy::{Request, Verb};

#[derive(Debug, Subcommand)]
pub enum MeshCmd {
    /// Create a mesh on a broker; you become its owner
    #[command(visible_alias = "new")]
    Create {
        /// The mesh's name (local; shared with people you invite)
        name: String,
        /// The broker's websocket URL, e.g. ws://127.0.0.1:7900 or wss://mesh.example.com (add --ca for a private CA)
        #[arg(long, env = "CLAUDEMESH_BROKER_URL", value_name = "URL")]
        broker: String,
        /// Your display name in the mesh [default: $USER]
        #[arg(long = "name", value_name = "NAME")]
        display_name: Option<String>,
        /// What kind of peer you are
        #[arg(long = "type", value_enum, default_value_t = PeerKind::Human)]
        peer_type: PeerKind,
        /// The broker operator's mesh-creation token (a remote broker creates
        /// meshes only for its holders, unless its operator opened it to anyone)
        #[arg(
            long,
            env = "CLAUDEMESH_CREATE_TOKEN",
            hide_env_values = true,
            value_name = "TOKEN"
        )]
        create_token: Option<String>,
    },
    /// List the meshes this device belongs to
    #[command(visible_alias = "ls")]
    List,
    /// Make an invite: prints its URL (last line of stdout)
    #[command(visible_alias = "invite")]
    Share {
        /// How many people may join with it
        #[arg(long, default_value_t = 1, value_name = "N")]
        uses: u32,
        /// How long it stays valid (e.g. 30m, 12h, 7d)
        #[arg(long, default_value = "7d", value_name = "DURATION")]
        expires: humantime::Duration,
        /// The role joiners get
        #[arg(long, value_enum, default_value_t = RoleArg::Member)]
        role: RoleArg,
        /// Also print a short code to read aloud (join with --broker)
        #[arg(long)]
        code: bool,
        /// Do not draw a QR code
        #[arg(long)]
        no_qr: bool,
    },
    /// Revoke an invite by the id `mesh share` printed
    RevokeInvite {
        /// Invite id (or its first 8+ hex digits)
        id: String,
    },
    /// Write a new mesh key now, sealed to every current member (owners and
    /// admins; a member when someone left, a joiner is owed the key, or the
    /// current key was made by a member)
    Rekey,
    /// Join a mesh with an invite URL or short code
    #[command(visible_alias = "add")]
    Join(JoinArgs),
    /// Make a mesh the default for commands without --mesh
    Use {
        /// Mesh name or id prefix
        mesh: String,
    },
    /// Leave the mesh (--mesh, or the default) and forget it on this device
    Leave,
}

/// `mesh join` / `join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The invite: https://…/join#…, claudemesh://join/…, a token, or a short code
    pub invite: String,
    /// Your display name in the mesh [default: $USER]
    #[arg(long = "name", value_name = "NAME")]
    pub display_name: Option<String>,
    /// The broker, when joining with a short code
    #[arg(long, env = "CLAUDEMESH_BROKER_URL", value_name = "URL")]
    pub broker: Option<String>,
    /// What kind of peer you are
    #[arg(long = "type", value_enum, default_value_t = PeerKind::Human)]
    pub peer_type: PeerKind,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PeerKind {
    Ai,
    Human,
    Bot,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Member,
    Admin,
}

impl JoinArgs {
    /// What it asks the policy. The invite is a secret: it is never a
    /// target.
    pub fn request(&self) -> Request {
        Request::new(Verb::MeshJoin, None, false)
    }
}

impl MeshCmd {
    /// What it asks the policy.
    pub fn request(&self) -> Option<Request> {
        use Request as R;
        Some(match self {
            MeshCmd::Create { name, .. } => R::new(Verb::MeshCreate, Some(name), false),
            MeshCmd::List => R::new(Verb::MeshList, None, false),
            MeshCmd::Share { .. } => R::new(Verb::MeshShare, None, true),
            MeshCmd::RevokeInvite { id } => R::new(Verb::MeshRevokeInvite, Some(id), true),
            MeshCmd::Rekey => R::new(Verb::MeshRekey, None, true),
            MeshCmd::Join(a) => a.request(),
            MeshCmd::Use { mesh } => R::new(Verb::MeshUse, Some(mesh), false),
            MeshCmd::Leave => R::new(Verb::MeshLeave, None, true),
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            MeshCmd::Create {
                name,
                broker,
                display_name,
                peer_type,
                create_token,
            } => {
                create(
                    g,
                    &name,
                    &broker,
                    display_name,
                    peer_type,
                    create_token.as_deref(),
                )
                .await
            }
            MeshCmd::List => list(g),
            MeshCmd::Share {
                uses,
                expires,
                role,
                code,
                no_qr,
            } => share(g, uses, expires.into(), role, code, no_qr).await,
            MeshCmd::RevokeInvite { id } => revoke_invite(g, &id).await,
            MeshCmd::Rekey => rekey(g).await,
            MeshCmd::Join(a) => join(g, a).await,
            MeshCmd::Use { mesh } => use_mesh(g, &mesh),
            MeshCmd::Leave => leave(g).await,
        }
    }
}

pub fn peer_type(k: PeerKind) -> PeerType {
    match k {
        PeerKind::Ai => PeerType::Ai,
        PeerKind::Human => PeerType::Human,
        PeerKind::Bot => PeerType::Bot,
    }
}

/// `$USER`, else `me`.
pub fn default_display_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "me".to_owned())
}

/// Opens the home, picks the mesh, connects as the CLI session.
pub async fn connect(
    g: &Global,
) -> Result<(claudemesh_client::Home, MeshConfig, MeshClient), Failure> {
    connect_as(g, claudemesh_client::SessionChoice::Named("cli".into())).await
}

/// [`connect`] as `session`: a command that stays connected (`state
/// watch`) uses a session of its own, so the next command of the same home
/// does not replace its connection.
pub async fn connect_as(
    g: &Global,
    session: claudemesh_client::SessionChoice,
) -> Result<(claudemesh_client::Home, MeshConfig, MeshClient), Failure> {
    let home = open_home(g)?;
    let mesh = home.select_mesh(g.mesh.as_deref())?.clone();
    let opts = ConnectOptions {
        session,
        ..ConnectOptions::for_member(&mesh)
    };
    let client = MeshClient::connect(&home, &mesh, opts).await?;
    // A key this member is owed (a join cut off before its rekey), a key
    // sealed to it that does not open, an admin's kick left without its
    // rekey: written now when the log lets this member.
    if let Err(e) = client.repair_keys().await {
        tracing::warn!(error = %e, "could not write the keys this member should rotate");
    }
    warn_bad_seals(&client);
    // A create or join cut off right after admission left no profile: the
    // member is nameless to peers until it is published, so do it now.
    if let Err(e) = client.ensure_profile().await {
        tracing::warn!(error = %e, "could not publish this member's profile");
    }
    Ok((home, mesh, client))
}

/// Prints a loud warning on stderr for each key sealed to this member that
/// does not open or does not match its confirmation, when it is new (found
/// in log entries this command fetched) or still keeps this member from a
/// current key. `claudemesh status` lists them all.
pub fn warn_bad_seals(client: &MeshClient) {
    for report in client.with_state(|s| s.bad_seal_reports()) {
        if report.current || report.fresh {
            eprintln!("{}", report.warning());
        }
    }
}

pub async fn create(
    g: &Global,
    name: &str,
    broker: &str,
    display_name: Option<String>,
    kind: PeerKind,
    create_token: Option<&str>,
) -> Outcome {
    let mut home = open_home(g)?;
    let display = display_name.unwrap_or_else(default_display_name);
    let mesh = membership::create_mesh(
        &mut home,
        name,
        broker,
        &display,
        peer_type(kind),
        create_token,
    )
    .await?;
    if g.json {
        let default = home.config().default_mesh == Some(mesh.id);
        output::json(&MeshRow::of(&mesh, default));
    } else if !g.quiet {
        println!(
            "Created mesh {:?} ({}) on {} as {display:?}; you are its owner.",
            mesh.name,
            mesh.short_id(),
            mesh.broker_url
        );
        println!("Next: `claudemesh mesh share` to invite someone.");
    }
    Ok(())
}

#[derive(Serialize)]
struct MeshRow {
    name: String,
    id: String,
    broker: String,
    display_name: String,
    default: bool,
}

impl MeshRow {
    fn of(m: &MeshConfig, default: bool) -> Self {
        MeshRow {
            name: m.name.clone(),
            id: m.id.to_hex(),
            broker: m.broker_url.clone(),
            display_name: m.display_name.clone(),
            default,
        }
    }
}

pub fn list(g: &Global) -> Outcome {
    let home = open_home(g)?;
    let default = home.config().default_mesh;
    let rows: Vec<MeshRow> = home
        .meshes()
        .iter()
        .map(|m| MeshRow::of(m, Some(m.id) == default))
        .collect();
    output::listing(
        g.json,
        &rows,
        "No meshes yet. Create one (`claudemesh mesh create <name> --broker <url>`) or join one (`claudemesh join <url>`).",
        &["", "NAME", "ID", "BROKER", "YOU"],
        |r| {
            vec![
                if r.default { "*".into() } else { String::new() },
                r.name.clone(),
                output::short(&r.id).to_owned(),
                r.broker.clone(),
                r.display_name.clone(),
            ]
        },
    );
    Ok(())
}

pub async fn share(
    g: &Global,
    uses: u32,
    expires: Duration,
    role: RoleArg,
    code: bool,
    no_qr: bool,
) -> Outcome {
    let (_home, mesh, client) = connect(g).await?;
    let opts = ShareOptions {
        max_uses: uses,
        expires_in: expires,
        role: match role {
            RoleArg::Member => Role::Member,
            RoleArg::Admin => Role::Admin,
        },
        short_code: code,
    };
    let shared = invites::share(&client, &opts).await;
    client.close().await;
    let shared = shared?;
    if g.json {
        output::json(&shared);
        return Ok(());
    }
    let expires_ms = shared.expires_at.saturating_mul(1000);
    if !g.quiet {
        eprintln!(
            "Invite to {:?}: {} use(s), role {}, expires {} (id {}).",
            mesh.name,
            shared.max_uses,
            shared.role.as_str(),
            output::timestamp(expires_ms),
            output::short(&shared.id),
        );
        eprintln!(
            "The secret is in the link itself (after #): send it privately. Revoke with `claudemesh mesh revoke-invite {}`.",
            output::short(&shared.id)
        );
        if let Some(c) = &shared.code {
            eprintln!(
                "Short code: {c}  (join with: claudemesh join {c} --broker {})",
                mesh.broker_url
            );
        }
    }
    if !no_qr {
        output::qr(&shared.url);
    }
    println!("{}", shared.url);
    Ok(())
}

pub async fn revoke_invite(g: &Global, id: &str) -> Outcome {
    let (_home, _mesh, client) = connect(g).await?;
    if !client.is_admin() {
        // Otherwise the broker refuses the signed entry as an invalid log
        // append, which would read as an internal fault.
        client.close().await;
        return Err(Failure::new(
            exit::REFUSED,
            "only the mesh's owner and admins can revoke invites",
        )
        .hint("ask an owner or admin of the mesh"));
    }
    let result = invites::revoke_invite(&client, id).await;
    client.close().await;
    let key = result?;
    if g.json {
        output::json(&serde_json::json!({ "revoked": key.to_hex() }));
    } else if !g.quiet {
        println!("Revoked invite {}.", output::short(&key.to_hex()));
    }
    Ok(())
}

pub async fn rekey(g: &Global) -> Outcome {
    let (_home, mesh, client) = connect(g).await?;
    let result = claudemesh_client::moderation::mesh_rekey(&client).await;
    client.close().await;
    let rekeyed = result?;
    if g.json {
        output::json(&rekeyed);
    } else if !g.quiet {
        println!(
            "Wrote a new mesh key for {:?}: epoch {}, sealed to the {} current member(s) only.",
            mesh.name, rekeyed.epoch, rekeyed.members
        );
    }
    Ok(())
}

pub async fn join(g: &Global, a: JoinArgs) -> Outcome {
    let mut home = open_home(g)?;
    let with = match Invite::parse(&a.invite) {
        Ok(invite) => JoinWith::Invite(invite),
        Err(url_err) => match ShortCode::parse(&a.invite) {
            Ok(code) => {
                let broker_url = a.broker.clone().ok_or_else(|| {
                    Failure::new(exit::USAGE, "a short code needs the broker's URL")
                        .hint("add --broker ws://HOST:PORT (the inviter's `mesh list` shows it)")
                })?;
                JoinWith::Code { code, broker_url }
            }
            Err(_) => return Err(claudemesh_client::ClientError::from(url_err).into()),
        },
    };
    let display = a.display_name.unwrap_or_else(default_display_name);
    let mesh = invites::join(&mut home, with, &display, peer_type(a.peer_type)).await?;
    if g.json {
        let default = home.config().default_mesh == Some(mesh.id);
        output::json(&MeshRow::of(&mesh, default));
    } else if !g.quiet {
        println!(
            "Joined mesh {:?} ({}) as {display:?}. Try `claudemesh peers`.",
            mesh.name,
            mesh.short_id()
        );
    }
    Ok(())
}

pub fn use_mesh(g: &Global, sel: &str) -> Outcome {
    let mut home = open_home(g)?;
    let id = home.select_mesh(Some(sel))?.id;
    home.set_default(id)?;
    if !g.quiet && !g.json {
        println!("Default mesh is now {sel:?}.");
    }
    Ok(())
}

pub async fn leave(g: &Global) -> Outcome {
    let mut home = open_home(g)?;
    let mesh = home.select_mesh(g.mesh.as_deref())?.clone();
    let already_out =
        match MeshClient::connect(&home, &mesh, ConnectOptions::for_member(&mesh)).await {
            Ok(client) => {
                claudemesh_client::moderation::mesh_leave(&mut home, client).await?;
                false
            }
            Err(e) if claudemesh_client::moderation::is_gone(&e) => {
                claudemesh_client::moderation::forget_mesh(&mut home, &mesh).await?;
                true
            }
            Err(e) => return Err(e.into()),
        };
    if g.json {
        output::json(&serde_json::json!({
            "left": mesh.id.to_hex(),
            "name": mesh.name,
            "already_removed": already_out,
        }));
    } else if !g.quiet {
        if already_out {
            println!(
                "You were no longer a member of {:?} ({}); forgot it on this device (keys and messages removed).",
                mesh.name,
                mesh.short_id()
            );
        } else {
            println!(
                "Left mesh {:?} ({}); its keys and messages were removed from this device.",
                mesh.name,
                mesh.short_id()
            );
        }
    }
    Ok(())
}

//! `claudemesh apikey create|list|revoke`: the keys scripts present to the
//! local gateway (`claudemesh serve`), each scoped to one mesh, some
//! capabilities and optionally some topics. The key is printed once; the
//! home keeps only its hash (`claudemesh_gateway::apikeys`).

use clap::Subcommand;
use claudemesh_client::local::LocalStore;
use claudemesh_gateway::apikeys::{ApiKeyError, ApiKeyInfo, ApiKeys, Caps, NewKey, prefix_of};
use claudemesh_proto::clock::now_ms;
use serde::Serialize;

use crate::exit::{self, Failure, Outcome};
use crate::global::{Global, open_home};
use crate::output;
use crate::policy::{Request, Verb};

#[derive(Debug, Subcommand)]
pub enum ApikeyCmd {
    /// Make a key for the local gateway; prints it once (the last line of stdout)
    Create {
        /// A name for people (e.g. ci-bot)
        label: String,
        /// What it may do: read, send, admin, comma-separated
        #[arg(long, default_value = "read", value_name = "CAPS")]
        cap: String,
        /// Limit it to this topic (repeat for several); direct messages,
        /// groups and broadcasts are then out of its reach
        #[arg(long = "topic", value_name = "TOPIC")]
        topics: Vec<String>,
        /// When it stops working (e.g. 12h, 30d) [default: never]
        #[arg(long, value_name = "DURATION")]
        expires: Option<humantime::Duration>,
    },
    /// The keys of this home (never their secrets)
    #[command(visible_alias = "ls")]
    List,
    /// Revoke a key by its prefix (cmk_…)
    Revoke {
        /// The prefix `apikey list` shows
        prefix: String,
    },
}

impl ApikeyCmd {
    /// What it asks the policy.
    pub fn request(&self) -> Option<Request> {
        Some(match self {
            ApikeyCmd::Create { label, .. } => Request::new(Verb::ApikeyCreate, Some(label), true),
            ApikeyCmd::List => Request::new(Verb::ApikeyList, None, false),
            ApikeyCmd::Revoke { prefix } => {
                Request::new(Verb::ApikeyRevoke, Some(&prefix_of(prefix)), false)
            }
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            ApikeyCmd::Create {
                label,
                cap,
                topics,
                expires,
            } => create(g, label, &cap, topics, expires).await,
            ApikeyCmd::List => list(g).await,
            ApikeyCmd::Revoke { prefix } => revoke(g, &prefix).await,
        }
    }
}

async fn keys(g: &Global) -> Result<(claudemesh_client::Home, ApiKeys), Failure> {
    let home = open_home(g)?;
    let local = LocalStore::open(&home.state_db_path()).await?;
    Ok((home, ApiKeys::new(local.pool().clone())))
}

fn failure(e: ApiKeyError) -> Failure {
    let code = match &e {
        ApiKeyError::UnknownCap(_)
        | ApiKeyError::NoCaps
        | ApiKeyError::BadLabel
        | ApiKeyError::BadTopic(_) => exit::USAGE,
        ApiKeyError::NotFound { .. } => exit::NOT_FOUND,
        ApiKeyError::Random(_) => exit::INTERNAL,
        ApiKeyError::Damaged(_) | ApiKeyError::Db(_) => exit::IO,
    };
    let hint = match &e {
        ApiKeyError::NotFound { .. } => Some("`claudemesh apikey list` shows the keys"),
        _ => None,
    };
    let f = Failure::new(code, e.to_string());
    match hint {
        Some(h) => f.hint(h),
        None => f,
    }
}

/// A key as `list --json` and `create --json` print it.
#[derive(Debug, Serialize)]
struct KeyRow {
    prefix: String,
    label: String,
    mesh: String,
    mesh_id: String,
    caps: Caps,
    topics: Vec<String>,
    created_at: u64,
    expires_at: Option<u64>,
    last_used_at: Option<u64>,
    revoked_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl KeyRow {
    fn of(info: &ApiKeyInfo, home: &claudemesh_client::Home) -> Self {
        let mesh = home
            .meshes()
            .iter()
            .find(|m| m.id == info.mesh)
            .map_or_else(|| "(left)".to_owned(), |m| m.name.clone());
        KeyRow {
            prefix: info.prefix.clone(),
            label: info.label.clone(),
            mesh,
            mesh_id: info.mesh.to_hex(),
            caps: info.caps.clone(),
            topics: info.topics.clone(),
            created_at: info.created_at,
            expires_at: info.expires_at,
            last_used_at: info.last_used_at,
            revoked_at: info.revoked_at,
            key: None,
        }
    }
}

async fn create(
    g: &Global,
    label: String,
    cap: &str,
    topics: Vec<String>,
    expires: Option<humantime::Duration>,
) -> Outcome {
    let caps: Caps = cap.parse().map_err(failure)?;
    let (home, keys) = keys(g).await?;
    let mesh = home.select_mesh(g.mesh.as_deref())?.clone();
    let now = now_ms();
    let expires_at =
        expires.map(|d| now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
    let issued = keys
        .create(
            NewKey {
                label,
                mesh: mesh.id,
                caps,
                topics,
                expires_at,
            },
            now,
        )
        .await
        .map_err(failure)?;
    if g.json {
        let mut row = KeyRow::of(&issued.info, &home);
        row.key = Some(issued.token.to_string());
        output::json(&row);
        return Ok(());
    }
    if !g.quiet {
        let scope = if issued.info.topics.is_empty() {
            String::new()
        } else {
            format!(
                ", topics {}",
                issued
                    .info
                    .topics
                    .iter()
                    .map(|t| format!("#{t}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        };
        eprintln!(
            "API key {} ({}) for {}: {}{scope}{}. It is shown once, now; the home keeps only its hash.",
            issued.info.prefix,
            issued.info.label,
            mesh.name,
            issued.info.caps,
            issued
                .info
                .expires_at
                .map(|t| format!(", expires {}", output::timestamp(t)))
                .unwrap_or_default(),
        );
    }
    println!("{}", issued.token.as_str());
    Ok(())
}

async fn list(g: &Global) -> Outcome {
    let (home, keys) = keys(g).await?;
    let rows: Vec<KeyRow> = keys
        .list()
        .await
        .map_err(failure)?
        .iter()
        .map(|k| KeyRow::of(k, &home))
        .collect();
    let now = now_ms();
    output::listing(
        g.json,
        &rows,
        "No API keys yet. Make one with `claudemesh apikey create <label> --cap read,send`.",
        &[
            "PREFIX",
            "LABEL",
            "MESH",
            "CAPS",
            "TOPICS",
            "CREATED",
            "LAST USED",
            "STATE",
        ],
        |r| {
            let state = match (r.revoked_at, r.expires_at) {
                (Some(t), _) => format!("revoked {}", output::ago(t)),
                (None, Some(t)) if t <= now => format!("expired {}", output::ago(t)),
                (None, Some(t)) => format!("expires {}", output::timestamp(t)),
                (None, None) => "active".to_owned(),
            };
            let topics = if r.topics.is_empty() {
                "all".to_owned()
            } else {
                r.topics
                    .iter()
                    .map(|t| format!("#{t}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            vec![
                r.prefix.clone(),
                r.label.clone(),
                r.mesh.clone(),
                r.caps.to_string(),
                topics,
                output::ago(r.created_at),
                r.last_used_at
                    .map_or_else(|| "never".to_owned(), output::ago),
                state,
            ]
        },
    );
    Ok(())
}

async fn revoke(g: &Global, prefix: &str) -> Outcome {
    let (home, keys) = keys(g).await?;
    let info = keys.revoke(prefix, now_ms()).await.map_err(failure)?;
    if g.json {
        output::json(&KeyRow::of(&info, &home));
    } else if !g.quiet {
        println!(
            "Revoked {} ({}): it no longer opens the gateway.",
            info.prefix, info.label
        );
    }
    Ok(())
}

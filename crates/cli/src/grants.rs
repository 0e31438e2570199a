//! `claudemesh grant|revoke|block|unblock|grants`: who may reach this member
//! (TM7). Each change is signed with the member key, kept in
//! `meshes/<id>/grants.json`, and handed to the broker, which enforces it;
//! this device checks it again on receipt. `GrantsCmd` holds the
//! five top-level commands and what each asks the policy.

use clap::Subcommand;
use claudemesh_client::grants::{self, GrantChange, GrantView};

use crate::exit::Outcome;
use crate::global::Global;
use crate::mesh::connect;
use crate::output;
use crate::policy::{Request, Verb};

/// Top-level commands (`claudemesh grant …`): `Command` flattens them.
#[derive(Debug, Subcommand)]
pub enum GrantsCmd {
    /// Give a peer capabilities back (dm, broadcast, group, topic, presence, task, state, memory)
    Grant {
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
        /// Capabilities: dm, broadcast, group, topic, presence, task, state, memory
        #[arg(required = true)]
        caps: Vec<String>,
    },
    /// Take capabilities from a peer (`all` takes every one)
    Revoke {
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
        /// Capabilities (dm, broadcast, group, topic, presence, task, state, memory), or `all`
        #[arg(required = true)]
        caps: Vec<String>,
    },
    /// Refuse everything from a peer; the sender is told, unless --silent
    Block {
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
        /// Do not tell the sender: their messages are accepted and dropped
        #[arg(long)]
        silent: bool,
    },
    /// Back to the default for a peer: every capability
    Unblock {
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
    },
    /// List who you limited or blocked (everyone else may do everything)
    Grants,
}

impl GrantsCmd {
    /// What it asks the policy.
    pub fn request(&self) -> Option<Request> {
        use Request as R;
        Some(match self {
            GrantsCmd::Grant { peer, .. } => R::new(Verb::Grant, Some(peer), true),
            GrantsCmd::Revoke { peer, .. } => R::new(Verb::Revoke, Some(peer), true),
            GrantsCmd::Block { peer, .. } => R::new(Verb::Block, Some(peer), true),
            GrantsCmd::Unblock { peer } => R::new(Verb::Unblock, Some(peer), true),
            GrantsCmd::Grants => R::new(Verb::Grants, None, true),
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            GrantsCmd::Grant { peer, caps } => grant(g, &peer, &caps).await,
            GrantsCmd::Revoke { peer, caps } => revoke(g, &peer, &caps).await,
            GrantsCmd::Block { peer, silent } => block(g, &peer, silent).await,
            GrantsCmd::Unblock { peer } => unblock(g, &peer).await,
            GrantsCmd::Grants => list(g).await,
        }
    }
}

async fn change(g: &Global, peer: &str, change: GrantChange, done: &str) -> Outcome {
    let (home, mesh, client) = connect(g).await?;
    let r = grants::change(&client, &home, peer, change).await;
    let me = client.with_state(|s| s.member_key().public());
    let after = grants::load(&home, &mesh.id, &me);
    let view = match (&r, after) {
        (Ok((member, _)), Ok(set)) => client.with_state(|s| {
            grants::list(s, set.as_ref())
                .into_iter()
                .find(|v| v.peer == member.to_hex())
        }),
        _ => None,
    };
    client.close().await;
    let (member, name) = r?;
    if g.json {
        output::json(&serde_json::json!({
            "peer": member.to_hex(),
            "name": name,
            "caps": view.as_ref().map_or_else(all_caps, |v| v.caps.clone()),
            "blocked": view.as_ref().is_some_and(|v| v.blocked),
            "silent": view.as_ref().is_some_and(|v| v.silent),
        }));
    } else if !g.quiet {
        let caps = view.as_ref().map_or_else(all_caps, |v| v.caps.clone());
        println!(
            "{done} {name} ({}). {name} may now: {}.",
            output::short(&member.to_hex()),
            if caps.is_empty() {
                "nothing".to_owned()
            } else {
                caps.join(", ")
            }
        );
    }
    Ok(())
}

fn all_caps() -> Vec<String> {
    claudemesh_crypto::grants::Cap::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect()
}

pub async fn grant(g: &Global, peer: &str, caps: &[String]) -> Outcome {
    let caps = grants::parse_caps(caps)?;
    change(g, peer, GrantChange::Grant(caps), "Granted to").await
}

pub async fn revoke(g: &Global, peer: &str, caps: &[String]) -> Outcome {
    let change_to = if caps.iter().any(|c| c.eq_ignore_ascii_case("all")) {
        GrantChange::RevokeAll
    } else {
        GrantChange::Revoke(grants::parse_caps(caps)?)
    };
    change(g, peer, change_to, "Revoked from").await
}

pub async fn block(g: &Global, peer: &str, silent: bool) -> Outcome {
    let what = if silent {
        "Silently blocked"
    } else {
        "Blocked"
    };
    change(g, peer, GrantChange::Block { silent }, what).await
}

pub async fn unblock(g: &Global, peer: &str) -> Outcome {
    change(g, peer, GrantChange::Unblock, "Unblocked").await
}

/// What `grants --json` prints.
#[derive(serde::Serialize)]
struct GrantsView {
    mesh: String,
    grants: Vec<GrantView>,
}

pub async fn list(g: &Global) -> Outcome {
    let (home, mesh, client) = connect(g).await?;
    let member = client.with_state(|s| s.member_key().public());
    let set = grants::load(&home, &mesh.id, &member);
    let views = set.map(|set| client.with_state(|s| grants::list(s, set.as_ref())));
    client.close().await;
    let views = views?;
    if g.json {
        output::json(&GrantsView {
            mesh: mesh.name.clone(),
            grants: views,
        });
        return Ok(());
    }
    if g.quiet {
        return Ok(());
    }
    if views.is_empty() {
        println!("No grants set: every member may message you and see your presence.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let state = match (v.blocked, v.silent) {
                (true, true) => "blocked (silent)",
                (true, false) => "blocked",
                (false, _) => "limited",
            };
            vec![
                v.name.clone(),
                output::short(&v.peer).to_owned(),
                state.to_owned(),
                if v.caps.is_empty() {
                    "-".to_owned()
                } else {
                    v.caps.join(", ")
                },
            ]
        })
        .collect();
    output::table(&["NAME", "KEY", "STATE", "MAY"], &rows);
    println!("Everyone else may do everything.");
    Ok(())
}

//! `claudemesh grant|revoke|block|unblock|grants`: who may reach this member
//! (TM7). Each change is signed with the member key, kept in
//! `meshes/<id>/grants.json`, and handed to the broker, which enforces it;
//! this device checks it again on receipt.

use claudemesh_client::grants::{self, GrantChange, GrantView};

use crate::args::Global;
use crate::mesh::connect;
use crate::{Outcome, output};

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

//! `claudemesh peer list` (`peers`) and `claudemesh profile …`: who is in
//! the mesh (only members this device verified in the log), whether each
//! can take live messages now, and this member's own status and summary.
//! Also `peer kick|ban|unban|bans`: removals and the ban list, and `peer
//! verify`: safety numbers and pinned keys (TM8). Their clap types
//! (`PeerCmd`, `ProfileCmd`, `VerifyArgs`) say what each asks the policy.

use clap::{Args, Subcommand, ValueEnum};
use claudemesh_client::mesh::pins::{self, PinStatus, Pins};
use claudemesh_client::moderation;
use claudemesh_crypto::log::RemoveKind;
use claudemesh_proto::frames::Status;

use crate::exit::Outcome;
use crate::global::Global;
use crate::mesh::connect;
use crate::output;
use crate::policy::{Request, Verb};

#[derive(Debug, Subcommand)]
pub enum PeerCmd {
    /// List the mesh's members, online first, with their sessions
    #[command(visible_alias = "ls")]
    List,
    /// Remove a member (owners and admins); they may rejoin with a new invite
    Kick {
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
    },
    /// Remove a member and refuse their key until unbanned (owners and admins)
    Ban {
        /// The member: a display name or a key prefix (8+ hex digits)
        peer: String,
    },
    /// Lift a ban (owners and admins); it does not re-admit
    Unban {
        /// The name the member had, or a key prefix (8+ hex digits)
        peer: String,
    },
    /// List banned keys
    Bans,
    /// Show the safety number you share with a peer, to compare out of band;
    /// --mark pins their key once the numbers match
    Verify(VerifyArgs),
}

/// `peer verify` / `verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The member: a display name or a key prefix (8+ hex digits)
    pub peer: String,
    /// The numbers match: pin this key (you are warned, and direct messages
    /// are refused, if the log ever shows another key under this name)
    #[arg(long)]
    pub mark: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// Set your one-line summary (encrypted; peers see it in `peer list`)
    Summary {
        /// The summary ("" clears it)
        text: String,
    },
    /// Set your status: idle takes every message, working and dnd only `now` ones
    Status {
        /// The status
        #[arg(value_enum)]
        status: StatusArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Idle,
    Working,
    Dnd,
}

impl VerifyArgs {
    /// What it asks the policy: pinning a key is a write.
    pub fn request(&self) -> Request {
        let verb = if self.mark {
            Verb::PeerVerifyMark
        } else {
            Verb::PeerVerify
        };
        Request::new(verb, Some(&self.peer), true)
    }
}

impl PeerCmd {
    /// What it asks the policy.
    pub fn request(&self) -> Option<Request> {
        use Request as R;
        Some(match self {
            PeerCmd::List => R::new(Verb::PeerList, None, true),
            PeerCmd::Kick { peer } => R::new(Verb::PeerKick, Some(peer), true),
            PeerCmd::Ban { peer } => R::new(Verb::PeerBan, Some(peer), true),
            PeerCmd::Unban { peer } => R::new(Verb::PeerUnban, Some(peer), true),
            PeerCmd::Bans => R::new(Verb::PeerBans, None, true),
            PeerCmd::Verify(a) => a.request(),
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            PeerCmd::List => list(g).await,
            PeerCmd::Kick { peer } => remove(g, &peer, false).await,
            PeerCmd::Ban { peer } => remove(g, &peer, true).await,
            PeerCmd::Unban { peer } => unban(g, &peer).await,
            PeerCmd::Bans => bans(g).await,
            PeerCmd::Verify(a) => verify(g, a).await,
        }
    }
}

impl ProfileCmd {
    /// What it asks the policy.
    pub fn request(&self) -> Option<Request> {
        Some(match self {
            ProfileCmd::Summary { .. } => Request::new(Verb::ProfileSummary, None, true),
            ProfileCmd::Status { status } => {
                let s = format!("{status:?}").to_ascii_lowercase();
                Request::new(Verb::ProfileStatus, Some(&s), true)
            }
        })
    }

    pub async fn run(self, g: &Global) -> Outcome {
        match self {
            ProfileCmd::Summary { text } => set_summary(g, text).await,
            ProfileCmd::Status { status } => set_status(g, status).await,
        }
    }
}

pub async fn list(g: &Global) -> Outcome {
    let (home, mesh, client) = connect(g).await?;
    let peers = client.peers().await;
    let pins = Pins::load(&home, &mesh.id);
    let marks: std::collections::HashMap<String, PinStatus> = match (&peers, &pins) {
        (Ok(list), Ok(pins)) => client.with_state(|s| {
            list.iter()
                .filter_map(|p| {
                    let key = claudemesh_crypto::PublicKey::from_hex(&p.key).ok()?;
                    Some((p.key.clone(), pins.status(s, &key)))
                })
                .collect()
        }),
        _ => Default::default(),
    };
    client.close().await;
    let peers = peers?;
    pins?;
    for p in &peers {
        if let Some(PinStatus::Changed { name, .. }) = marks.get(&p.key) {
            eprintln!("{}", pins::changed_warning(name));
        }
    }
    if g.json {
        output::json(&peers);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            let others: Vec<_> = p.sessions.iter().filter(|s| !s.this_session).collect();
            let seen = if p.you {
                "you".to_owned()
            } else if !others.is_empty() {
                let named: Vec<String> = others
                    .iter()
                    .map(|s| match &s.name {
                        // A name that is not this member's cannot pose as
                        // another's session: `mallory: alice@api`.
                        Some(n) => claudemesh_client::mesh::session_display_name(&p.name, n),
                        None => output::short(&s.key).to_owned(),
                    })
                    .collect();
                format!("online ({})", named.join(", "))
            } else if p.online {
                "online".to_owned()
            } else {
                match p.last_seen_ms {
                    Some(ms) => format!("offline, seen {}", output::ago(ms)),
                    None => "offline, never connected".to_owned(),
                }
            };
            let live = if others.iter().any(|s| s.live_push) {
                "yes"
            } else {
                "no"
            };
            let name = match marks.get(&p.key) {
                Some(PinStatus::Verified) => format!("{} (verified)", p.name),
                Some(PinStatus::Changed { .. }) => format!("{} (KEY CHANGED)", p.name),
                _ => p.name.clone(),
            };
            vec![
                name,
                output::short(&p.key).to_owned(),
                p.role.as_str().to_owned(),
                status_str(p.status).to_owned(),
                if p.you { "-".into() } else { live.into() },
                seen,
                output::printable(p.summary.as_deref().unwrap_or_default()),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME", "KEY", "ROLE", "STATUS", "LIVE", "PRESENCE", "SUMMARY",
        ],
        &rows,
    );
    Ok(())
}

fn status_str(s: Status) -> &'static str {
    s.as_str()
}

pub async fn set_summary(g: &Global, text: String) -> Outcome {
    let (mut home, mesh, client) = connect(g).await?;
    home.update_mesh(&mesh.id, |m| {
        m.summary = Some(text.clone()).filter(|t| !t.is_empty())
    })?;
    let r = client.set_presence(None, Some(text)).await;
    client.close().await;
    r?;
    if !g.quiet && !g.json {
        println!("Summary updated.");
    }
    Ok(())
}

pub async fn set_status(g: &Global, status: StatusArg) -> Outcome {
    let s = match status {
        StatusArg::Idle => Status::Idle,
        StatusArg::Working => Status::Working,
        StatusArg::Dnd => Status::Dnd,
    };
    let (mut home, mesh, client) = connect(g).await?;
    home.update_mesh(&mesh.id, |m| m.status = s)?;
    let r = client.set_presence(Some(s), None).await;
    client.close().await;
    r?;
    if !g.quiet && !g.json {
        println!("Status is now {}.", s.as_str());
    }
    Ok(())
}

pub async fn remove(g: &Global, peer: &str, ban: bool) -> Outcome {
    let how = if ban {
        RemoveKind::Ban
    } else {
        RemoveKind::Kick
    };
    let (_home, _mesh, client) = connect(g).await?;
    let r = moderation::remove(&client, peer, how).await;
    client.close().await;
    let removed = r?;
    if g.json {
        output::json(&removed);
    } else if !g.quiet {
        let verb = if ban { "Banned" } else { "Kicked" };
        println!(
            "{verb} {} ({}). The mesh key was rotated (epoch {}) and sealed to the remaining members only: they hold none of the keys used from now on.",
            removed.name,
            output::short(&removed.key),
            removed.epoch
        );
        if removed.invites_revoked > 0 {
            println!(
                "Revoked {} invite(s) they joined with or created.",
                removed.invites_revoked
            );
        }
        if !removed.topics_rekeyed.is_empty() {
            println!(
                "Also rotated the keys of {}.",
                removed
                    .topics_rekeyed
                    .iter()
                    .map(|t| format!("#{t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !removed.topics_pending.is_empty() {
            println!(
                "Could not rotate the keys of {} now; each is rotated by the next member who posts to it, before the post.",
                removed
                    .topics_pending
                    .iter()
                    .map(|t| format!("#{t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if ban {
            println!(
                "Their key cannot join again until `claudemesh peer unban {}`.",
                output::short(&removed.key)
            );
        } else {
            println!(
                "A kicked member may join again with any invite that still admits people; revoke those they may hold (`claudemesh mesh revoke-invite`), or ban instead."
            );
        }
    }
    Ok(())
}

pub async fn unban(g: &Global, peer: &str) -> Outcome {
    let (_home, _mesh, client) = connect(g).await?;
    let r = moderation::unban(&client, peer).await;
    client.close().await;
    let ban = r?;
    if g.json {
        output::json(&serde_json::json!({ "unbanned": ban.key, "name": ban.name }));
    } else if !g.quiet {
        println!(
            "Unbanned {} ({}). They can join again with a new invite.",
            ban.name,
            output::short(&ban.key)
        );
    }
    Ok(())
}

pub async fn bans(g: &Global) -> Outcome {
    let (_home, _mesh, client) = connect(g).await?;
    let bans = moderation::bans(&client);
    client.close().await;
    if g.json {
        output::json(&bans);
        return Ok(());
    }
    if bans.is_empty() {
        if !g.quiet {
            println!("No banned members.");
        }
        return Ok(());
    }
    output::table(
        &["NAME", "KEY"],
        &bans
            .iter()
            .map(|b| vec![b.name.clone(), output::short(&b.key).to_owned()])
            .collect::<Vec<_>>(),
    );
    Ok(())
}

/// What `peer verify --json` prints.
#[derive(serde::Serialize)]
struct VerifyView {
    peer: String,
    key: String,
    /// 12 groups of 5 digits.
    safety_number: String,
    /// This key is pinned (now, or from before).
    verified: bool,
    /// A different key was pinned under this name.
    key_changed: bool,
}

pub async fn verify(g: &Global, a: VerifyArgs) -> Outcome {
    let (home, mesh, client) = connect(g).await?;
    let facts = client.safety_of(&a.peer).await;
    let status = Pins::load(&home, &mesh.id).map(|pins| match &facts {
        Ok((member, ..)) => (client.with_state(|s| pins.status(s, member)), pins),
        Err(_) => (PinStatus::Unverified, pins),
    });
    client.close().await;
    let (member, name, number) = facts?;
    let (before, mut pins) = status?;
    if a.mark {
        pins.pin(&member, &name, claudemesh_client::client::now_ms() / 1000);
        pins.save(&home, &mesh.id)?;
    }
    let changed = matches!(before, PinStatus::Changed { .. }) && !a.mark;
    if changed {
        eprintln!("{}", pins::changed_warning(&name));
    }
    let view = VerifyView {
        peer: name.clone(),
        key: member.to_hex(),
        safety_number: number.to_string(),
        verified: a.mark || before == PinStatus::Verified,
        key_changed: changed,
    };
    if g.json {
        output::json(&view);
        return Ok(());
    }
    if g.quiet {
        return Ok(());
    }
    println!(
        "Safety number with {name} ({}):\n",
        output::short(&view.key)
    );
    let groups: Vec<&str> = view.safety_number.split(' ').collect();
    for line in groups.chunks(4) {
        println!("    {}", line.join(" "));
    }
    println!();
    output::qr(&number.qr_payload());
    if a.mark {
        println!(
            "Pinned {name}'s key. You will be warned, and direct messages refused, if the log ever shows another key for {name}."
        );
    } else if view.verified {
        println!("You verified this key before.");
    } else {
        println!(
            "Compare it with the number {name} sees (claudemesh peer verify <you>), in person or on a call. If they match: claudemesh peer verify {} --mark",
            a.peer
        );
    }
    Ok(())
}

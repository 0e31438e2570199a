//! `claudemesh demo`: the whole product in one command, on this machine
//! only. It starts a broker on a temporary SQLite database, makes two peers
//! (alice and bob, each with their own home), creates a mesh, invites and
//! admits bob, sends a direct message each way, and prints what the broker
//! stored (ciphertext) beside what each peer read (plaintext), then checks
//! that neither message appears anywhere in the broker's database.

use std::path::Path;

use claudemesh_broker::config::BrokerConfig;
use claudemesh_client::home::Home;
use claudemesh_client::invites;
use claudemesh_client::invites::JoinWith;
use claudemesh_client::invites::ShareOptions;
use claudemesh_client::membership;
use claudemesh_client::{ConnectOptions, MeshClient};
use claudemesh_crypto::envelope::{Priority, Target};
use claudemesh_crypto::invite::Invite;
use claudemesh_crypto::log::PeerType;

use crate::exit::{self, Failure, Outcome};
use crate::global::Global;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the demo's temporary directory and print where it is
    #[arg(long)]
    pub keep: bool,
}

const TO_BOB: &str = "Hi bob! This message is sealed with crypto_box and signed by my session key.";
const TO_ALICE: &str = "Hi alice. The broker stored it, but could not read it.";

fn step(g: &Global, text: &str) {
    if !g.json && !g.quiet {
        println!("==> {text}");
    }
}

pub async fn run(g: &Global, a: DemoArgs) -> Outcome {
    let dir = tempfile::Builder::new()
        .prefix("claudemesh-demo-")
        .tempdir()
        .map_err(|e| Failure::new(exit::IO, format!("cannot make a temporary directory: {e}")))?;
    let result = demo(g, dir.path()).await;
    if a.keep {
        let kept = dir.keep();
        eprintln!("Kept the demo's files in {}", kept.display());
    }
    result
}

async fn demo(g: &Global, dir: &Path) -> Outcome {
    step(g, "starting a broker on a temporary SQLite database");
    let broker =
        claudemesh_broker::server::start(BrokerConfig::with_sqlite_file(&dir.join("broker.db")))
            .await
            .map_err(|e| {
                Failure::new(exit::INTERNAL, format!("cannot start the demo broker: {e}"))
            })?;
    let url = broker.ws_url();
    step(g, &format!("broker listening on {url}"));
    let result = conversation(g, dir, &url, &broker).await;
    broker.shutdown().await;
    result
}

async fn conversation(
    g: &Global,
    dir: &Path,
    url: &str,
    broker: &claudemesh_broker::server::RunningBroker,
) -> Outcome {
    let mut alice_home = Home::open(&dir.join("alice"))?;
    let mut bob_home = Home::open(&dir.join("bob"))?;

    step(
        g,
        "alice creates the mesh \"demo\" (her client makes the owner key and the genesis entry)",
    );
    let mesh_a =
        membership::create_mesh(&mut alice_home, "demo", url, "alice", PeerType::Human, None)
            .await?;
    let alice = MeshClient::connect(&alice_home, &mesh_a, ConnectOptions::default()).await?;
    step(
        g,
        "alice shares an invite (its secret stays in the URL fragment; the broker gets a public key)",
    );
    let shared = invites::share(&alice, &ShareOptions::default()).await?;
    alice.close().await;

    step(
        g,
        "bob joins with the invite (he verifies the whole membership log first)",
    );
    let invite = Invite::parse(&shared.url).map_err(claudemesh_client::ClientError::from)?;
    let mesh_b = invites::join(
        &mut bob_home,
        JoinWith::Invite(invite),
        "bob",
        PeerType::Human,
    )
    .await?;

    step(g, "alice sends bob a direct message while bob is offline");
    let alice = MeshClient::connect(&alice_home, &mesh_a, ConnectOptions::default()).await?;
    let to_bob = alice.resolve("bob").await?;
    alice
        .send(to_bob, TO_BOB.as_bytes(), Priority::Next, None)
        .await?;
    alice.close().await;

    step(
        g,
        "bob connects, receives it (verify, store, ack) and answers",
    );
    let bob = MeshClient::connect(&bob_home, &mesh_b, ConnectOptions::default()).await?;
    bob.settle().await?;
    let bob_read = bob.local().inbox(&mesh_b.id, true, 10).await?;
    let to_alice = bob.resolve("alice").await?;
    if !matches!(to_alice, Target::Member(_)) {
        return Err(Failure::new(
            exit::INTERNAL,
            "alice resolved to a non-member target",
        ));
    }
    bob.send(to_alice, TO_ALICE.as_bytes(), Priority::Next, None)
        .await?;
    bob.mark_read(&bob_read).await?;
    bob.close().await;

    let alice = MeshClient::connect(&alice_home, &mesh_a, ConnectOptions::default()).await?;
    alice.settle().await?;
    let alice_read = alice.local().inbox(&mesh_a.id, true, 10).await?;
    alice.mark_read(&alice_read).await?;
    alice.close().await;

    let dump = broker.store().dump().await.map_err(|e| {
        Failure::new(
            exit::INTERNAL,
            format!("cannot read the broker's database: {e}"),
        )
    })?;
    let everything: String = dump
        .iter()
        .flat_map(|t| t.rows.iter().flatten())
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    let leaked: Vec<&str> = [TO_BOB, TO_ALICE, "alice", "bob"]
        .into_iter()
        .filter(|p| everything.contains(p))
        .collect();
    let stored: Vec<(String, String)> = dump
        .iter()
        .filter(|t| t.table == "messages")
        .flat_map(|t| {
            let target = t.columns.iter().position(|c| c == "target");
            let env = t.columns.iter().position(|c| c == "envelope");
            t.rows.iter().filter_map(move |r| {
                let target = r.get(target?)?.trim_matches('\'').to_owned();
                let env_text = r.get(env?)?.trim_matches('\'').replace("''", "'");
                let v: serde_json::Value = serde_json::from_str(&env_text).ok()?;
                Some((target, v.get("ciphertext")?.as_str()?.to_owned()))
            })
        })
        .collect();

    if g.json {
        output::json(&serde_json::json!({
            "broker": url,
            "broker_stored": stored.iter().map(|(t, c)| serde_json::json!({"target": t, "ciphertext": c})).collect::<Vec<_>>(),
            "bob_read": bob_read.iter().map(|m| &m.body).collect::<Vec<_>>(),
            "alice_read": alice_read.iter().map(|m| &m.body).collect::<Vec<_>>(),
            "plaintext_in_broker_database": leaked,
        }));
    } else {
        println!();
        println!("What the broker stored (table `messages`, column `envelope`):");
        for (target, ct) in &stored {
            let shown: String = ct.chars().take(60).collect();
            println!(
                "  to {}…  ciphertext {shown}…",
                &target[..target.len().min(17)]
            );
        }
        println!();
        println!("What bob read:");
        for m in &bob_read {
            println!("  alice: {}", m.body);
        }
        println!("What alice read:");
        for m in &alice_read {
            println!("  bob: {}", m.body);
        }
        println!();
        if leaked.is_empty() {
            println!(
                "Checked every row of every table in the broker's database: neither message, nor either display name, appears in it."
            );
        }
    }
    if !leaked.is_empty() {
        return Err(Failure::new(
            exit::SECURITY,
            format!("the broker's database contains plaintext: {leaked:?}"),
        ));
    }
    if bob_read.len() != 1 || alice_read.len() != 1 {
        return Err(Failure::new(
            exit::INTERNAL,
            format!(
                "expected one message each way; bob read {}, alice read {}",
                bob_read.len(),
                alice_read.len()
            ),
        ));
    }
    if !g.json && !g.quiet {
        println!(
            "Next: run your own broker (`claudemesh-broker`) and follow the README's two-terminal walk-through."
        );
    }
    Ok(())
}

//! `claudemesh status`: for each mesh (or the one `--mesh` names), whether
//! its broker answers, which protocol versions it speaks, the clock skew
//! between here and there, this member's standing in the verified log, keys
//! sealed to it that do not open (bad seals, with who sealed them), and
//! what waits locally (outbox, unread).

use claudemesh_client::mesh::BadSealReport;
use claudemesh_client::{ConnectOptions, MeshClient};
use serde::Serialize;

use crate::exit::{Failure, Outcome};
use crate::global::{Global, open_home};
use crate::output;

/// Skew beyond which certificates and invites may be judged wrongly.
const SKEW_WARN_MS: i64 = 60_000;

#[derive(Serialize)]
struct MeshStatus {
    mesh: String,
    id: String,
    broker: String,
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_versions: Option<Vec<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_skew_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    round_trip_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_entries: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u64>,
    /// Keys sealed to this member that do not open or do not match their
    /// confirmation, oldest first.
    bad_seals: Vec<BadSealReport>,
    unread: u64,
    client_version: &'static str,
}

pub async fn run(g: &Global) -> Outcome {
    let home = open_home(g)?;
    let meshes = match &g.mesh {
        Some(sel) => vec![home.select_mesh(Some(sel))?.clone()],
        None => home.meshes().to_vec(),
    };
    if meshes.is_empty() {
        if g.json {
            output::json(&Vec::<MeshStatus>::new());
        } else {
            println!(
                "claudemesh {}: this device is in no mesh yet (claudemesh mesh create / claudemesh join).",
                env!("CARGO_PKG_VERSION")
            );
        }
        return Ok(());
    }
    let mut out = Vec::new();
    let mut first_failure: Option<Failure> = None;
    for mesh in &meshes {
        let mut st = MeshStatus {
            mesh: mesh.name.clone(),
            id: mesh.id.to_hex(),
            broker: mesh.broker_url.clone(),
            reachable: false,
            error: None,
            broker_id: None,
            protocol: None,
            broker_versions: None,
            clock_skew_ms: None,
            round_trip_ms: None,
            role: None,
            log_entries: None,
            epoch: None,
            bad_seals: Vec::new(),
            unread: 0,
            client_version: env!("CARGO_PKG_VERSION"),
        };
        match MeshClient::connect(&home, mesh, ConnectOptions::for_member(mesh)).await {
            Ok(client) => {
                let info = client.info().clone();
                st.reachable = true;
                st.broker_id = Some(info.broker_id.clone());
                st.protocol = Some(info.version);
                st.broker_versions = Some(info.versions.clone());
                st.clock_skew_ms = Some(info.skew_ms);
                st.round_trip_ms = Some(info.rtt_ms);
                // A key this member should rotate itself (a bad seal it
                // may repair) is written before reporting.
                if let Err(e) = client.repair_keys().await {
                    tracing::warn!(error = %e, "could not write the keys this member should rotate");
                }
                let (role, len, epoch, bad) = client.with_state(|s| {
                    (
                        s.roster().role_of(&s.member_key().public()),
                        s.roster().len(),
                        s.roster().epoch(),
                        s.bad_seal_reports(),
                    )
                });
                st.role = role.map(|r| r.as_str().to_owned());
                st.log_entries = Some(len);
                st.epoch = Some(epoch);
                st.bad_seals = bad;
                let _ = client.settle().await;
                st.unread = client.local().unread_count(&mesh.id).await.unwrap_or(0);
                client.close().await;
            }
            Err(e) => {
                st.error = Some(e.to_string());
                if first_failure.is_none() {
                    first_failure = Some(e.into());
                }
            }
        }
        out.push(st);
    }
    if g.json {
        // The JSON lists every bad seal; the ones that matter now are also
        // said out loud, as every command that loads a mesh does.
        for b in out.iter().flat_map(|st| &st.bad_seals) {
            if b.current || b.fresh {
                eprintln!("{}", b.warning());
            }
        }
        output::json(&out);
    } else {
        for st in &out {
            println!(
                "mesh {} ({}) on {}",
                st.mesh,
                output::short(&st.id),
                st.broker
            );
            match &st.error {
                Some(e) => println!("  broker      NOT reachable: {e}"),
                None => {
                    println!(
                        "  broker      reachable: {} speaks protocol {:?}; using v{}",
                        st.broker_id.as_deref().unwrap_or("?"),
                        st.broker_versions.clone().unwrap_or_default(),
                        st.protocol.unwrap_or_default()
                    );
                    let skew = st.clock_skew_ms.unwrap_or_default();
                    let warn = if skew.abs() > SKEW_WARN_MS {
                        "  WARNING: fix this machine's clock (certificates and invites depend on it)"
                    } else {
                        ""
                    };
                    println!(
                        "  clock       {skew:+} ms from the broker (round trip {} ms){warn}",
                        st.round_trip_ms.unwrap_or_default()
                    );
                    println!(
                        "  membership  {} in a log of {} verified entries (mesh key epoch {})",
                        st.role.as_deref().unwrap_or("not a member"),
                        st.log_entries.unwrap_or_default(),
                        st.epoch.unwrap_or_default()
                    );
                    if st.bad_seals.is_empty() {
                        println!("  keys        every key sealed to you opens");
                    }
                    for b in &st.bad_seals {
                        println!("  keys        {}", b.warning());
                    }
                    println!("  inbox       {} unread", st.unread);
                }
            }
        }
        println!("claudemesh {}", env!("CARGO_PKG_VERSION"));
    }
    match first_failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

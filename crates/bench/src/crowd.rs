//! A mesh with many members, made in seconds, for the fan-out scenarios.
//!
//! The owner and the posters are made the way users are
//! ([`build_mesh`]: create, one invite, joins), so they have homes and the
//! epoch root key to seal with. The readers are bare member keys that the
//! owner adds by appending signed `invite` + `admit` pairs straight to the
//! membership log (`LogBuilder`, sent with `MeshClient::append_entries`,
//! as many per append as fit well inside one frame); a topic is then made
//! by the owner (`topic_create`) and every reader joins it with a
//! `topic_join` entry signed by its own key, batched the same way. The
//! broker verifies every entry as it would from the members themselves.
//!
//! Readers have no home and cannot open messages: the wire-level
//! subscribers only need a session certificate, which [`Crowd::session`]
//! makes. (Joining hundreds of members by invite does not work on this
//! broker yet: see docs/benchmarks.md, "Fan-out".)

use std::path::Path;
use std::time::{Duration, Instant};

use claudemesh_client::{ClientError, ConnectOptions, MeshClient, SessionChoice};
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::log::{
    EntryBody, LogBuilder, LogEntry, Role, topic_create_body, topic_join_body,
};
use claudemesh_crypto::{Hash32, MeshId, SigningKey};
use claudemesh_proto::limits::{MAX_FRAME_BYTES, MAX_LOG_ENTRIES_PER_FRAME};

use crate::setup::{BENCH_CERT_LIFETIME, Member, build_mesh};
use crate::{BenchError, Result};

/// Bytes of log entries per append: well under the frame limit, so that
/// the append and the log fetch that follows it both fit one frame.
const APPEND_BUDGET_BYTES: usize = MAX_FRAME_BYTES / 2;

/// The mesh of a fan-out scenario.
#[derive(Debug)]
pub struct Crowd {
    /// Who posts: the owner first, then members who joined by invite.
    pub posters: Vec<Member>,
    /// The readers' member keys (added through the log).
    pub readers: Vec<SigningKey>,
    /// The mesh.
    pub mesh_id: MeshId,
    /// The whole membership log, as the owner verified it.
    pub entries: Vec<LogEntry>,
    /// How long each setup step took.
    pub steps: Vec<(&'static str, Duration)>,
    /// Log appends the readers and topic joins took.
    pub appends: usize,
}

impl Crowd {
    /// A fresh session of reader `key`, certified for a day.
    pub fn session(&self, key: &SigningKey) -> Result<SessionIdentity> {
        SessionIdentity::new(key, self.mesh_id, now_secs(), BENCH_CERT_LIFETIME)
            .map_err(|e| BenchError::ctx("cannot certify a reader's session", e))
    }

    /// Total setup time.
    pub fn took(&self) -> Duration {
        self.steps.iter().map(|(_, d)| *d).sum()
    }

    /// The steps as one line for the report.
    pub fn steps_note(&self) -> String {
        let steps = self
            .steps
            .iter()
            .map(|(what, d)| format!("{what} {:.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "setup: {steps} ({} log appends; the log has {} entries)",
            self.appends,
            self.entries.len()
        )
    }
}

fn now_secs() -> u64 {
    claudemesh_client::client::now_ms() / 1000
}

fn invalid(e: impl std::fmt::Display) -> ClientError {
    ClientError::Invalid(e.to_string().into())
}

/// How many items of `item_bytes` (each `entries_per_item` log entries)
/// one append carries.
fn per_append(item_bytes: usize, entries_per_item: usize) -> usize {
    (APPEND_BUDGET_BYTES / item_bytes.max(1)).clamp(1, MAX_LOG_ENTRIES_PER_FRAME / entries_per_item)
}

/// The encoded size of `entries`, bytes.
fn json_len(entries: &[LogEntry]) -> Result<usize> {
    entries.iter().try_fold(0, |n, e| {
        serde_json::to_vec(e)
            .map(|v| n + v.len() + 1)
            .map_err(|e| BenchError::ctx("cannot encode a log entry", e))
    })
}

/// Creates a mesh on `url` with `posters` posters (the owner and
/// `posters - 1` invited members, homes under `root`) and `readers` bare
/// members, all of them in public topic `topic` if one is given (the owner
/// creates it, so it is in it too).
pub async fn build_crowd(
    url: &str,
    root: &Path,
    posters: usize,
    readers: usize,
    topic: Option<&str>,
) -> Result<Crowd> {
    let mut steps = Vec::new();
    let mesh = build_mesh(url, root, posters.saturating_sub(1), |i| {
        format!("poster{}", i + 1)
    })
    .await?;
    steps.push(("mesh and posters by invite", mesh.took));
    let started = Instant::now();
    let readers: Vec<SigningKey> = (0..readers).map(|_| SigningKey::generate()).collect();
    let client = MeshClient::connect(
        &mesh.owner.home,
        &mesh.owner.mesh,
        ConnectOptions {
            session: SessionChoice::Ephemeral,
            ..ConnectOptions::default()
        },
    )
    .await?;
    let appended = add_readers(&client, &readers, topic, &mut steps, started).await;
    let entries = client.with_state(|s| s.entries().to_vec());
    client.close().await;
    let appends = appended?;
    let mut posters_list = Vec::with_capacity(posters);
    posters_list.push(mesh.owner.clone());
    posters_list.extend(mesh.members);
    Ok(Crowd {
        mesh_id: mesh.owner.mesh.id,
        posters: posters_list,
        readers,
        entries,
        steps,
        appends,
    })
}

/// Appends the readers (invite + admit pairs), the topic and its joins;
/// returns how many appends it took.
async fn add_readers(
    client: &MeshClient,
    readers: &[SigningKey],
    topic: Option<&str>,
    steps: &mut Vec<(&'static str, Duration)>,
    started: Instant,
) -> Result<usize> {
    let mut appends = 0;
    // One invite per reader, as `add_member` does; the invite keys are made
    // here so that a retried append (the log moved) signs the same ones.
    let pairs: Vec<(SigningKey, SigningKey)> = readers
        .iter()
        .map(|m| (m.clone(), SigningKey::generate()))
        .collect();
    let pair_bytes = {
        let owner = SigningKey::generate();
        let mut sample = LogBuilder::new(&owner, now_secs());
        sample
            .add_member(&owner, Role::Member, now_secs())
            .map_err(invalid)?;
        json_len(&sample.entries()[1..])?
    };
    for chunk in pairs.chunks(per_append(pair_bytes, 2)) {
        client
            .append_entries(|s| {
                let mut log = LogBuilder::from_verified(s.entries().to_vec(), s.roster().clone());
                let before = log.entries().len();
                let at = now_secs();
                for (member, invite) in chunk {
                    log.invite(
                        s.member_key(),
                        &invite.public(),
                        Role::Member,
                        1,
                        at,
                        at + 3600,
                    )
                    .map_err(invalid)?;
                    log.admit(member, invite, at).map_err(invalid)?;
                }
                Ok(log.entries()[before..].to_vec())
            })
            .await
            .map_err(|e| BenchError::ctx("adding readers to the log", e))?;
        appends += 1;
    }
    steps.push(("readers by log", started.elapsed()));
    let Some(topic) = topic else {
        return Ok(appends);
    };
    let started = Instant::now();
    let create =
        |s: &claudemesh_client::mesh::MeshState| -> std::result::Result<EntryBody, ClientError> {
            topic_create_body(
                topic,
                false,
                "claudemesh-bench",
                &s.member_key().public(),
                &s.mesh_id(),
            )
            .map(|(body, _)| body)
            .map_err(invalid)
        };
    client
        .append_entry(|s| {
            Ok(LogEntry::sign(
                s.member_key(),
                s.roster().len(),
                s.roster().head(),
                now_secs(),
                create(s)?,
            ))
        })
        .await
        .map_err(|e| BenchError::ctx("creating the topic", e))?;
    appends += 1;
    let join_bytes = match readers.first() {
        Some(k) => json_len(&[LogEntry::sign(
            k,
            u64::MAX,
            Hash32::ZERO,
            now_secs(),
            topic_join_body(topic, &k.public(), None).map_err(invalid)?,
        )])?,
        None => 1,
    };
    for chunk in readers.chunks(per_append(join_bytes, 1)) {
        client
            .append_entries(|s| {
                let mut log = LogBuilder::from_verified(s.entries().to_vec(), s.roster().clone());
                let before = log.entries().len();
                let at = now_secs();
                for k in chunk {
                    let body = topic_join_body(topic, &k.public(), None).map_err(invalid)?;
                    log.push(k, at, body).map_err(invalid)?;
                }
                Ok(log.entries()[before..].to_vec())
            })
            .await
            .map_err(|e| BenchError::ctx("joining the readers to the topic", e))?;
        appends += 1;
    }
    steps.push(("topic and its joins by log", started.elapsed()));
    Ok(appends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_fit_a_frame_and_the_entry_limit() {
        assert_eq!(per_append(1000, 2), MAX_FRAME_BYTES / 2 / 1000);
        assert_eq!(per_append(10, 2), MAX_LOG_ENTRIES_PER_FRAME / 2);
        assert_eq!(per_append(10, 1), MAX_LOG_ENTRIES_PER_FRAME);
        assert_eq!(per_append(MAX_FRAME_BYTES, 1), 1);
    }
}

//! File leases (issue 17 item 2, `docs/protocol.md` "File leases"): a
//! session reserves the files it is editing, for a while, so others (people
//! or Claude Code sessions) leave them alone; the broker decides conflicts
//! over keyed hashes of each path and never learns a path. This module owns
//! what a lease is ([`Lease`], its plaintext `{"repo", "paths",
//! "exclusive", "reason"?}`) and the [`MeshClient`] requests (`lease_take`,
//! `lease_list`, `lease_renew`, `lease_release`, `lease_conflicts`,
//! `lease_sync`). How paths are named is [`crate::lease_path`]'s.
//!
//! A take sends the sealed lease with its tags
//! ([`lease_tags`] under the current epoch's coordination key) and a probe
//! ([`lease_probe`] under the current epoch and every epoch a live lease
//! was tagged under, at most [`MAX_LEASE_PROBE_EPOCHS`]): the broker grants
//! it unless a live lease of another session meets the probe (and one of
//! the two is exclusive). A refusal names the leases in the way; this
//! device opens them to say which paths, whose and until when. Checking a
//! file before an edit (`lease_conflicts`, the Claude Code hook) reads this
//! device's verified copy of the live leases and compares paths directly.
//!
//! Nothing here logs a path, a reason or a key.

use std::collections::BTreeSet;
use std::time::Duration;

use claudemesh_crypto::coord::{
    CoordFacts, CoordId, CoordKind, CoordObject, coord_key, lease_probe, lease_tags,
};
use claudemesh_crypto::{MemberKey, PublicKey, SessionKey, SymmetricKey};
use claudemesh_proto::frames::{CoordForget, LeaseAnswer, LeaseRenew, LeaseTake};
use claudemesh_proto::limits::{
    MAX_LEASE_PATHS, MAX_LEASE_PROBE_EPOCHS, MAX_LEASE_TTL_MS, MIN_LEASE_TTL_MS,
};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::client::{MeshClient, now_ms};
use crate::coord_mirror::offline_ok;
use crate::error::{BadInput, ClientError, MissingKey};
use crate::lease_path::overlaps;
use crate::local::StoredItem;
use crate::memory::{MIN_ID_PREFIX, SyncPass, seal_coord};
use crate::session::unexpected;

/// Most bytes of a lease's reason.
pub const MAX_REASON: usize = 256;
/// Most bytes of a repository id.
pub const MAX_REPO: usize = 512;

/// A lease to take.
#[derive(Debug, Clone)]
pub struct LeaseRequest {
    /// The repository id ([`crate::lease_path::repo_of_origin`]).
    pub repo: String,
    /// Normalized paths ([`crate::lease_path::normalize`]), 1 to 16.
    pub paths: Vec<String>,
    /// Exclusive (the default for editing) or shared.
    pub exclusive: bool,
    /// How long (1 minute to 24 hours).
    pub ttl: Duration,
    /// Why, for whoever it stands in the way of.
    pub reason: Option<String>,
}

/// A live lease as this device can show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// Its id (32 hex digits in JSON).
    pub id: CoordId,
    /// The repository.
    pub repo: String,
    /// The paths (directories end in `/`).
    pub paths: Vec<String>,
    /// Exclusive or shared.
    pub exclusive: bool,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its holder.
    pub holder: MemberKey,
    /// The holder's display name.
    pub holder_name: String,
    /// The holder's session that took it.
    pub holder_session: SessionKey,
    /// This client's session took it.
    pub mine: bool,
    /// When it was taken (the holder's clock), unix ms.
    pub taken_at_ms: u64,
    /// When it ends (the broker's clock), unix ms.
    pub expires_at_ms: u64,
}

/// A lease's plaintext, as sealed.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseBody {
    repo: String,
    paths: Vec<String>,
    exclusive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `until 14:32` style end, as unix ms turned to a short UTC time of day
/// (the CLI shows local times; this is for messages from the SDK).
fn until(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{:02}:{:02} UTC", (secs / 3600) % 24, (secs / 60) % 60)
}

/// How a lease in the way reads: `src/net/ is leased exclusively by bob
/// until 14:32 UTC ("refactoring net")`.
pub fn describe(lease: &Lease) -> String {
    let how = if lease.exclusive {
        "exclusively"
    } else {
        "(shared)"
    };
    let reason = lease
        .reason
        .as_deref()
        .map(|r| format!(" ({r:?})"))
        .unwrap_or_default();
    format!(
        "{} {} leased {how} by {} until {}{reason}",
        lease.paths.join(", "),
        if lease.paths.len() == 1 { "is" } else { "are" },
        lease.holder_name,
        until(lease.expires_at_ms)
    )
}

fn bad(reason: String) -> ClientError {
    ClientError::BadInput(BadInput::Lease { reason })
}

impl MeshClient {
    /// Takes a lease (see the module): the lease as granted, or
    /// [`ClientError::LeaseHeld`] naming what stands in the way.
    pub async fn lease_take(&self, req: &LeaseRequest) -> Result<Lease, ClientError> {
        if req.paths.is_empty() || req.paths.len() > MAX_LEASE_PATHS {
            return Err(bad(format!("give 1 to {MAX_LEASE_PATHS} paths")));
        }
        let ttl_ms = u64::try_from(req.ttl.as_millis()).unwrap_or(u64::MAX);
        if !(MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(&ttl_ms) {
            return Err(bad("a lease lasts 1 minute to 24 hours".into()));
        }
        if req.repo.is_empty() || req.repo.len() > MAX_REPO {
            return Err(bad(format!("a repository id of 1 to {MAX_REPO} bytes")));
        }
        if let Some(r) = &req.reason
            && (r.len() > MAX_REASON || r.chars().any(char::is_control))
        {
            return Err(bad(format!(
                "a reason of at most {MAX_REASON} bytes, without control characters"
            )));
        }
        let plaintext = serde_json::to_vec(&LeaseBody {
            repo: req.repo.clone(),
            paths: req.paths.clone(),
            exclusive: req.exclusive,
            reason: req.reason.clone(),
        })
        .map_err(|e| ClientError::Local(format!("cannot encode a lease: {e}")))?;
        if plaintext.len() > claudemesh_proto::limits::MAX_LEASE_PLAINTEXT {
            return Err(bad(format!(
                "its paths and reason take {} bytes, at most {}",
                plaintext.len(),
                claudemesh_proto::limits::MAX_LEASE_PLAINTEXT
            )));
        }
        let mesh = self.mesh().id;
        let id = CoordId::random();
        let plaintext = &plaintext;
        let sent = self
            .resealing(|| async move {
                self.lease_sync().await?;
                let older = self.probe_keys().await?;
                let take = self.with_state(|s| {
                    let epoch = s.roster().epoch();
                    let root = s
                        .root(epoch)
                        .ok_or(ClientError::MissingKey(MissingKey::CurrentEpoch))?;
                    let key = coord_key(root, &mesh);
                    let facts = CoordFacts {
                        kind: CoordKind::Lease,
                        id,
                        rev: 1,
                        at_ms: now_ms(),
                    };
                    let object = seal_coord(s, facts, plaintext, bad)?;
                    let tags = req
                        .paths
                        .iter()
                        .flat_map(|p| lease_tags(&key, &mesh, &req.repo, p))
                        .collect();
                    let mut probe_keys = vec![key];
                    probe_keys.extend(
                        older
                            .iter()
                            .filter(|(e, _)| *e != epoch)
                            .map(|(_, k)| k.clone()),
                    );
                    probe_keys.truncate(MAX_LEASE_PROBE_EPOCHS);
                    let probe = probe_keys
                        .iter()
                        .flat_map(|k| {
                            req.paths
                                .iter()
                                .flat_map(|p| lease_probe(k, &mesh, &req.repo, p))
                        })
                        .collect();
                    Ok::<_, ClientError>(LeaseTake {
                        req: None,
                        object: Box::new(object),
                        exclusive: req.exclusive,
                        ttl_ms,
                        tags,
                        probe,
                    })
                })?;
                self.session()
                    .request(
                        |r| {
                            ClientFrame::LeaseTake(LeaseTake {
                                req: Some(r),
                                ..take
                            })
                        },
                        "take the lease",
                    )
                    .await
            })
            .await;
        let answer = match sent {
            Err(ClientError::Refused {
                code: ErrorCode::UnknownType,
                ..
            }) => return Err(ClientError::TasksUnsupported),
            Err(e) => return Err(e),
            Ok(BrokerFrame::LeaseAnswer(a)) if a.id == id => a,
            Ok(other) => return Err(unexpected(&other)),
        };
        if answer.granted {
            self.lease_sync().await?;
            return self
                .lease_list()
                .await?
                .into_iter()
                .find(|l| l.id == id)
                .ok_or_else(|| {
                    ClientError::Local("the lease just granted cannot be read back".into())
                });
        }
        Err(ClientError::LeaseHeld {
            detail: self.describe_conflicts(&answer).await?,
        })
    }

    /// The keys live leases were tagged under, by epoch, newest first (the
    /// current epoch's among them when a live lease has it).
    async fn probe_keys(&self) -> Result<Vec<(u64, SymmetricKey)>, ClientError> {
        let now = self.broker_now_ms();
        let epochs: BTreeSet<u64> = self
            .local()
            .coord_items(&self.mesh().id, CoordKind::Lease)
            .await?
            .iter()
            .filter(|r| r.expires_at_ms.is_some_and(|e| e > now))
            .filter_map(|r| serde_json::from_str::<CoordObject>(&r.object).ok())
            .map(|o| o.epoch)
            .collect();
        let mut pass = SyncPass::default();
        let mut out = Vec::new();
        for epoch in epochs.into_iter().rev().take(MAX_LEASE_PROBE_EPOCHS) {
            if let Some(k) = self
                .coord_keys_of(epoch, &mut pass)
                .await?
                .into_iter()
                .next()
            {
                out.push((epoch, k));
            }
        }
        Ok(out)
    }

    /// What a refused take's answer says, in words, from the leases this
    /// device can open (the others as "a lease of <member>").
    async fn describe_conflicts(&self, answer: &LeaseAnswer) -> Result<String, ClientError> {
        let mut pass = SyncPass::default();
        let mut parts = Vec::new();
        for held in &answer.conflicts {
            let row = StoredItem {
                item_id: held.id.to_hex(),
                cseq: 0,
                object: serde_json::to_string(&held.object)
                    .map_err(|e| ClientError::Local(format!("cannot read a lease: {e}")))?,
                act: None,
                expires_at_ms: Some(held.expires_at_ms),
            };
            match self.read_lease(&row, &mut pass).await? {
                Some(l) => parts.push(describe(&l)),
                None => parts.push(format!(
                    "a lease of {} that this device cannot read, until {}",
                    self.with_state(|s| s.name_of(held.holder.as_key())),
                    until(held.expires_at_ms)
                )),
            }
        }
        if parts.is_empty() {
            parts.push("another session's lease overlaps".into());
        }
        Ok(parts.join("; "))
    }

    /// The mesh's live leases, soonest to end first (after a sync; when the
    /// broker cannot be reached, this device's copy as it is).
    pub async fn lease_list(&self) -> Result<Vec<Lease>, ClientError> {
        offline_ok(self.lease_sync().await, "leases")?;
        let now = self.broker_now_ms();
        let mut pass = SyncPass::default();
        let mut out = Vec::new();
        for row in self
            .local()
            .coord_items(&self.mesh().id, CoordKind::Lease)
            .await?
        {
            if row.expires_at_ms.is_none_or(|e| e <= now) {
                continue;
            }
            if let Some(l) = self.read_lease(&row, &mut pass).await? {
                out.push(l);
            }
        }
        out.sort_by_key(|l| (l.expires_at_ms, l.id.0));
        Ok(out)
    }

    /// Live leases of other sessions (not in `own`, nor this client's)
    /// that overlap one of `paths` in `repo`, each with the path it
    /// overlaps: what an edit of those paths would step on.
    pub async fn lease_conflicts(
        &self,
        repo: &str,
        paths: &[String],
        own: &[SessionKey],
    ) -> Result<Vec<(String, Lease)>, ClientError> {
        let mut out = Vec::new();
        for lease in self.lease_list().await? {
            if lease.mine || own.contains(&lease.holder_session) || lease.repo != repo {
                continue;
            }
            if let Some(p) = paths
                .iter()
                .find(|p| lease.paths.iter().any(|l| overlaps(l, p)))
            {
                out.push((p.clone(), lease));
            }
        }
        Ok(out)
    }

    /// Extends leases this member holds to `ttl` from now: those named (id
    /// prefixes), or with none named every live lease of this session.
    /// Returns the leases extended.
    pub async fn lease_renew(
        &self,
        ids: &[String],
        ttl: Duration,
    ) -> Result<Vec<Lease>, ClientError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if !(MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(&ttl_ms) {
            return Err(bad("a lease lasts 1 minute to 24 hours".into()));
        }
        let chosen = self.chosen_leases(ids).await?;
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        let frame = self
            .session()
            .request(
                |req| {
                    ClientFrame::LeaseRenew(LeaseRenew {
                        req: Some(req),
                        ids: chosen.clone(),
                        ttl_ms,
                    })
                },
                "renew the leases",
            )
            .await?;
        let renewed = match frame {
            BrokerFrame::LeaseRenewed(r) => r.ids,
            other => return Err(unexpected(&other)),
        };
        self.lease_sync().await?;
        Ok(self
            .lease_list()
            .await?
            .into_iter()
            .filter(|l| renewed.contains(&l.id))
            .collect())
    }

    /// Releases leases: those named (id prefixes; this member's, or any as
    /// an owner or admin), or with none named every live lease of this
    /// session. Returns the ids released.
    pub async fn lease_release(&self, ids: &[String]) -> Result<Vec<CoordId>, ClientError> {
        let chosen = self.chosen_leases(ids).await?;
        let mut released = Vec::new();
        for id in chosen {
            let short = id.to_hex()[..8].to_owned();
            let frame = self
                .session()
                .request(
                    |req| {
                        ClientFrame::CoordForget(CoordForget {
                            req: Some(req),
                            kind: CoordKind::Lease,
                            id,
                        })
                    },
                    "release the lease",
                )
                .await
                .map_err(|e| match e {
                    ClientError::Refused {
                        code: ErrorCode::Forbidden,
                        ..
                    } => ClientError::NotAllowed(format!(
                        "only the holder of lease {short}, an owner or an admin can release it"
                    )),
                    e => e,
                })?;
            match frame {
                BrokerFrame::CoordStored(s) if s.id == id => released.push(id),
                other => return Err(unexpected(&other)),
            }
        }
        self.lease_sync().await?;
        Ok(released)
    }

    /// Brings this device's copy of the mesh's leases up to date.
    pub async fn lease_sync(&self) -> Result<(), ClientError> {
        self.mirror_sync(CoordKind::Lease)
            .await
            .map_err(|e| match e {
                ClientError::MemoryUnsupported => ClientError::TasksUnsupported,
                e => e,
            })
    }

    /// The lease ids `ids` name (unique prefixes of live leases, after a
    /// sync), or with none every live lease of this session.
    async fn chosen_leases(&self, ids: &[String]) -> Result<Vec<CoordId>, ClientError> {
        let live = self.lease_list().await?;
        if ids.is_empty() {
            return Ok(live.iter().filter(|l| l.mine).map(|l| l.id).collect());
        }
        let mut out = Vec::new();
        for input in ids {
            let prefix = input.trim().to_ascii_lowercase();
            if prefix.len() < MIN_ID_PREFIX
                || prefix.len() > 32
                || !prefix.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(bad(format!(
                    "{input:?} is not a lease id: give at least its first {MIN_ID_PREFIX} hex digits, as `lease list` shows it"
                )));
            }
            let matching: Vec<&Lease> = live
                .iter()
                .filter(|l| l.id.to_hex().starts_with(&prefix))
                .collect();
            match matching.as_slice() {
                [one] => out.push(one.id),
                [] => {
                    return Err(ClientError::NotFound(format!(
                        "no live lease {prefix}… (see claudemesh lease list)"
                    )));
                }
                _ => {
                    return Err(bad(format!(
                        "{prefix} matches several leases; give more hex digits"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// One mirrored lease, or `None` (logged with why) when it does not
    /// verify, open or read.
    async fn read_lease(
        &self,
        row: &StoredItem,
        pass: &mut SyncPass,
    ) -> Result<Option<Lease>, ClientError> {
        let id = &row.item_id;
        let skip = |why: String| {
            tracing::warn!(id = %id, why = %why, "leases: a lease cannot be trusted or read; it is not shown");
            Ok(None)
        };
        let (object, plain) = match self
            .open_mirrored(&row.object, id, |k| k == CoordKind::Lease, pass)
            .await?
        {
            Ok(o) => o,
            Err(why) => return skip(why),
        };
        let Ok(body) = serde_json::from_slice::<LeaseBody>(&plain) else {
            return skip("its contents are not a lease".into());
        };
        if body.paths.is_empty() || body.paths.len() > MAX_LEASE_PATHS || body.repo.is_empty() {
            return skip("its contents are not a well-formed lease".into());
        }
        let holder = object.member();
        let me: PublicKey = self.with_state(|s| s.session().public().0);
        Ok(Some(self.with_state(|s| Lease {
            id: object.id,
            repo: body.repo,
            paths: body.paths,
            exclusive: body.exclusive,
            reason: body.reason,
            holder,
            holder_name: s.name_of(holder.as_key()),
            holder_session: object.author.session,
            mine: object.author.session.0 == me,
            taken_at_ms: object.at_ms,
            expires_at_ms: row.expires_at_ms.unwrap_or(0),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(paths: &[&str], exclusive: bool, reason: Option<&str>) -> Lease {
        let k = claudemesh_crypto::SigningKey::generate().public();
        Lease {
            id: CoordId([1; 16]),
            repo: "github.com/acme/api".into(),
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            exclusive,
            reason: reason.map(str::to_owned),
            holder: MemberKey(k),
            holder_name: "bob".into(),
            holder_session: SessionKey(k),
            mine: false,
            taken_at_ms: 0,
            expires_at_ms: (14 * 3600 + 32 * 60) * 1000,
        }
    }

    #[test]
    fn a_lease_in_the_way_names_its_paths_holder_end_and_reason() {
        assert_eq!(
            describe(&lease(&["src/net/"], true, Some("refactoring net"))),
            "src/net/ is leased exclusively by bob until 14:32 UTC (\"refactoring net\")"
        );
        assert_eq!(
            describe(&lease(&["a.rs", "b.rs"], false, None)),
            "a.rs, b.rs are leased (shared) by bob until 14:32 UTC"
        );
    }
}

//! The wake-up payload: what one broker tells the others through
//! `pg_notify`, as plain data. [`pack`] turns what accumulated into as few
//! payloads as fit under Postgres' 8000-byte limit (each key listed once
//! per mesh, referred to by index), degrading to "recheck the mesh" or
//! "recheck everything" when that would take too many; [`merge`] reads them
//! back. No I/O here.

use std::collections::{BTreeSet, HashMap};

use claudemesh_crypto::coord::CoordKind;
use claudemesh_crypto::{MeshId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::metrics as m;

/// Largest notification payload built (Postgres refuses 8000 bytes).
pub const PAYLOAD_BUDGET: usize = 7_600;
/// More payloads than this in one round degrade to "recheck".
pub const MAX_PAYLOADS: usize = 16;

/// What to tell the other replicas about one mesh, accumulated between
/// notifications.
#[derive(Debug, Default)]
pub struct MeshOut {
    pub direct: Vec<(u64, Vec<PublicKey>)>,
    pub fanout: Vec<(u64, String)>,
    pub log_len: Option<u64>,
    pub grants: BTreeSet<PublicKey>,
    pub presence: BTreeSet<PublicKey>,
    pub coord: BTreeSet<CoordKind>,
    pub recheck: bool,
}

/// One notification payload (JSON). `b` comes first so a broker can skip
/// its own notifications by prefix, without parsing them.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Wake {
    /// The sending broker instance.
    pub b: String,
    /// Recheck every mesh (a degraded round, or a catch-up).
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
    /// Per mesh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub m: Vec<MeshWake>,
}

/// One mesh's part of a [`Wake`]. Keys are listed once in `k`; the other
/// fields refer to them by index.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MeshWake {
    pub id: MeshId,
    /// Key table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub k: Vec<PublicKey>,
    /// Direct messages: `[seq, key index, …]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub d: Vec<Vec<u64>>,
    /// Fan-out messages: `[seq, target]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub f: Vec<(u64, String)>,
    /// The log grew to this length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l: Option<u64>,
    /// Members whose grant set changed (key indexes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub g: Vec<u64>,
    /// Members whose sessions or presence changed (key indexes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub p: Vec<u64>,
    /// Recheck the whole mesh.
    #[serde(default, skip_serializing_if = "is_false")]
    pub r: bool,
    /// Kinds of coordination objects that changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub c: Vec<CoordKind>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What arrived for one mesh, merged over a batch of notifications.
#[derive(Debug, Default)]
pub struct Incoming {
    pub direct: Vec<(u64, Vec<PublicKey>)>,
    pub fanout: Vec<(u64, String)>,
    pub log_len: u64,
    pub grants: BTreeSet<PublicKey>,
    pub presence: BTreeSet<PublicKey>,
    pub coord: BTreeSet<CoordKind>,
    pub recheck: bool,
}

/// Adds one mesh's part of a notification to what arrived.
pub fn merge(into: &mut HashMap<MeshId, Incoming>, w: MeshWake) {
    let inc = into.entry(w.id).or_default();
    let key = |i: &u64| usize::try_from(*i).ok().and_then(|i| w.k.get(i)).copied();
    for d in &w.d {
        if let Some((seq, idx)) = d.split_first() {
            inc.direct
                .push((*seq, idx.iter().filter_map(key).collect()));
        }
    }
    inc.fanout.extend(w.f.iter().cloned());
    inc.log_len = inc.log_len.max(w.l.unwrap_or(0));
    inc.grants.extend(w.g.iter().filter_map(key));
    inc.presence.extend(w.p.iter().filter_map(key));
    inc.coord.extend(w.c.iter().copied());
    inc.recheck |= w.r;
}

/// Turns what accumulated into notification payloads: as few as fit under
/// [`PAYLOAD_BUDGET`] bytes each; more than [`MAX_PAYLOADS`] degrade to
/// "recheck" per mesh, and too many meshes to "recheck everything".
pub fn pack(instance: &str, out: HashMap<MeshId, MeshOut>) -> Vec<String> {
    let mut meshes: Vec<(MeshId, MeshOut)> = out.into_iter().collect();
    meshes.sort_by_key(|(id, _)| *id);
    let wakes = Packer::run(instance, meshes.iter().map(|(id, o)| (*id, o)));
    let mut payloads: Vec<String> = wakes.iter().map(to_json).collect();
    let fits = payloads.len() <= MAX_PAYLOADS && payloads.iter().all(|p| p.len() < 8000);
    if fits {
        return payloads;
    }
    metrics::counter!(m::REPLICA_DEGRADED).increment(1);
    let recheck: Vec<(MeshId, MeshOut)> = meshes
        .iter()
        .map(|(id, _)| {
            (
                *id,
                MeshOut {
                    recheck: true,
                    ..MeshOut::default()
                },
            )
        })
        .collect();
    payloads = Packer::run(instance, recheck.iter().map(|(id, o)| (*id, o)))
        .iter()
        .map(to_json)
        .collect();
    if payloads.len() <= MAX_PAYLOADS {
        return payloads;
    }
    vec![to_json(&Wake {
        b: instance.to_owned(),
        all: true,
        m: Vec::new(),
    })]
}

/// A payload's JSON.
pub fn to_json(w: &Wake) -> String {
    // Plain data: serialization cannot fail.
    serde_json::to_string(w).unwrap_or_default()
}

/// Fills payloads up to the budget, by estimated size (hex keys, decimal
/// seqs, targets of at most ~70 safe characters).
struct Packer {
    instance: String,
    done: Vec<Wake>,
    cur: Wake,
    cur_size: usize,
    mesh: MeshWake,
    keys: HashMap<PublicKey, u64>,
    mesh_size: usize,
}

const KEY_BYTES: usize = 67;
const MESH_BASE: usize = 110;

impl Packer {
    fn run<'a>(instance: &str, meshes: impl Iterator<Item = (MeshId, &'a MeshOut)>) -> Vec<Wake> {
        let base = 16 + instance.len();
        let mut p = Packer {
            instance: instance.to_owned(),
            done: Vec::new(),
            cur: Wake {
                b: instance.to_owned(),
                ..Wake::default()
            },
            cur_size: base,
            mesh: MeshWake::default(),
            keys: HashMap::new(),
            mesh_size: MESH_BASE,
        };
        for (id, o) in meshes {
            p.mesh = MeshWake {
                id,
                ..MeshWake::default()
            };
            p.keys.clear();
            p.mesh_size = MESH_BASE;
            if o.recheck {
                p.fit(8);
                p.mesh.r = true;
            }
            if let Some(len) = o.log_len {
                p.fit(26);
                p.mesh.l = Some(len);
            }
            for member in &o.grants {
                let i = p.key_fit(member, 6);
                p.mesh.g.push(i);
            }
            for member in &o.presence {
                let i = p.key_fit(member, 6);
                p.mesh.p.push(i);
            }
            for kind in &o.coord {
                p.fit(16);
                p.mesh.c.push(*kind);
            }
            for (seq, recipients) in &o.direct {
                let new_keys = recipients
                    .iter()
                    .filter(|k| !p.keys.contains_key(k))
                    .count();
                p.fit(24 + 6 * recipients.len() + KEY_BYTES * new_keys);
                let mut entry = Vec::with_capacity(recipients.len() + 1);
                entry.push(*seq);
                for k in recipients {
                    entry.push(p.key(k));
                }
                p.mesh.d.push(entry);
            }
            for (seq, target) in &o.fanout {
                p.fit(28 + 2 * target.len());
                p.mesh.f.push((*seq, target.clone()));
            }
            p.end_mesh();
        }
        p.end_mesh();
        if !p.cur.m.is_empty() {
            p.done.push(p.cur);
        }
        p.done
    }

    fn key(&mut self, k: &PublicKey) -> u64 {
        if let Some(i) = self.keys.get(k) {
            return *i;
        }
        let i = self.mesh.k.len() as u64;
        self.mesh.k.push(*k);
        self.keys.insert(*k, i);
        i
    }

    fn key_fit(&mut self, k: &PublicKey, extra: usize) -> u64 {
        let new = if self.keys.contains_key(k) {
            0
        } else {
            KEY_BYTES
        };
        self.fit(extra + new);
        self.key(k)
    }

    fn mesh_is_empty(&self) -> bool {
        let m = &self.mesh;
        m.d.is_empty()
            && m.f.is_empty()
            && m.g.is_empty()
            && m.p.is_empty()
            && m.c.is_empty()
            && m.l.is_none()
            && !m.r
    }

    /// Makes room for `extra` bytes: if they do not fit, what this payload
    /// holds is closed and the mesh continues in the next one.
    fn fit(&mut self, extra: usize) {
        if self.cur_size + self.mesh_size + extra <= PAYLOAD_BUDGET
            || (self.cur.m.is_empty() && self.mesh_is_empty())
        {
            self.mesh_size += extra;
            return;
        }
        let id = self.mesh.id;
        self.end_mesh();
        let full = std::mem::replace(
            &mut self.cur,
            Wake {
                b: self.instance.clone(),
                ..Wake::default()
            },
        );
        if !full.m.is_empty() {
            self.done.push(full);
        }
        self.cur_size = 16 + self.instance.len();
        self.mesh = MeshWake {
            id,
            ..MeshWake::default()
        };
        self.keys.clear();
        self.mesh_size = MESH_BASE + extra;
    }

    fn end_mesh(&mut self) {
        if !self.mesh_is_empty() {
            let id = self.mesh.id;
            let m = std::mem::replace(
                &mut self.mesh,
                MeshWake {
                    id,
                    ..MeshWake::default()
                },
            );
            self.cur.m.push(m);
            self.cur_size += self.mesh_size;
        }
        self.keys.clear();
        self.mesh_size = MESH_BASE;
    }
}

#[cfg(test)]
mod tests {
    use claudemesh_crypto::{Hash32, SigningKey};

    use super::*;

    fn keys(n: usize) -> Vec<PublicKey> {
        (0..n).map(|_| SigningKey::generate().public()).collect()
    }

    fn unpack(payloads: &[String]) -> HashMap<MeshId, Incoming> {
        let mut into = HashMap::new();
        for p in payloads {
            let w: Wake = serde_json::from_str(p).unwrap();
            assert_eq!(w.b, "b1#00");
            for m in w.m {
                merge(&mut into, m);
            }
        }
        into
    }

    #[test]
    fn a_small_round_is_one_payload_and_round_trips() {
        let k = keys(3);
        let mesh = MeshId(Hash32([7; 32]));
        let mut out = HashMap::new();
        out.insert(
            mesh,
            MeshOut {
                direct: vec![(5, vec![k[0]]), (6, vec![k[0], k[1]])],
                fanout: vec![(7, "#ops".into())],
                log_len: Some(12),
                grants: [k[2]].into_iter().collect(),
                presence: [k[1]].into_iter().collect(),
                coord: [CoordKind::Task, CoordKind::State].into_iter().collect(),
                recheck: false,
            },
        );
        let payloads = pack("b1#00", out);
        assert_eq!(payloads.len(), 1);
        assert!(payloads[0].starts_with("{\"b\":\"b1#00\""));
        let got = unpack(&payloads);
        let inc = &got[&mesh];
        assert_eq!(inc.direct, vec![(5, vec![k[0]]), (6, vec![k[0], k[1]])]);
        assert_eq!(inc.fanout, vec![(7, "#ops".to_owned())]);
        assert_eq!(inc.log_len, 12);
        assert_eq!(inc.grants, [k[2]].into_iter().collect());
        assert_eq!(inc.presence, [k[1]].into_iter().collect());
        assert_eq!(
            inc.coord,
            [CoordKind::Task, CoordKind::State].into_iter().collect()
        );
        assert!(!inc.recheck);
    }

    #[test]
    fn a_large_round_is_split_under_the_limit_and_loses_nothing() {
        let k = keys(50);
        let mesh = MeshId(Hash32([1; 32]));
        let direct: Vec<(u64, Vec<PublicKey>)> =
            (0..1500).map(|i| (i, vec![k[i as usize % 50]])).collect();
        let mut out = HashMap::new();
        out.insert(
            mesh,
            MeshOut {
                direct: direct.clone(),
                presence: k.iter().copied().collect(),
                ..MeshOut::default()
            },
        );
        let payloads = pack("b1#00", out);
        assert!(
            payloads.len() > 1 && payloads.len() <= MAX_PAYLOADS,
            "{}",
            payloads.len()
        );
        for p in &payloads {
            assert!(p.len() < 8000, "{}", p.len());
        }
        let got = unpack(&payloads);
        assert_eq!(got[&mesh].direct, direct);
        assert_eq!(got[&mesh].presence.len(), 50);
    }

    #[test]
    fn too_much_degrades_to_a_recheck() {
        let k = keys(4);
        let mut out = HashMap::new();
        for m in 0..3u8 {
            out.insert(
                MeshId(Hash32([m; 32])),
                MeshOut {
                    direct: (0..20_000).map(|i| (i, vec![k[i as usize % 4]])).collect(),
                    ..MeshOut::default()
                },
            );
        }
        let payloads = pack("b1#00", out);
        assert_eq!(payloads.len(), 1);
        let got = unpack(&payloads);
        assert_eq!(got.len(), 3);
        assert!(got.values().all(|i| i.recheck && i.direct.is_empty()));

        let mut out = HashMap::new();
        for m in 0..2000u32 {
            let mut id = [0; 32];
            id[..4].copy_from_slice(&m.to_le_bytes());
            out.insert(
                MeshId(Hash32(id)),
                MeshOut {
                    direct: (0..20).map(|i| (i, vec![k[0]])).collect(),
                    ..MeshOut::default()
                },
            );
        }
        let payloads = pack("b1#00", out);
        assert_eq!(payloads.len(), 1);
        let w: Wake = serde_json::from_str(&payloads[0]).unwrap();
        assert!(w.all && w.m.is_empty());
    }
}

//! Fan-out watermarks in memory (`docs/security.md` §8.1): the newest
//! signed watermark of each (member, target, state) this broker was sent,
//! kept here and written to the store in batches (`flush_every`), so that a
//! topic message to a thousand members costs no database write per
//! recipient. Reads (a drain deciding what a member already holds, a
//! message's status) merge these with the stored ones; another replica's
//! are at most one flush interval behind.
//!
//! The broker checks who sent a watermark (the connection) and that the
//! member may receive the target; it does not verify the signature on this
//! path (readers do), so a client can only ever misstate its own state.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use claudemesh_crypto::receipt::{ReceiptState, Watermark};
use claudemesh_crypto::{MeshId, PublicKey};

use crate::store::WatermarkRow;

/// How often watermarks kept in memory are written to the store. Each
/// write shares the writer with messages and adds its rows to the WAL (a
/// thousand subscribers of a busy topic move a thousand rows a second), so
/// not too often; another replica's view, and what survives a crash of
/// this broker (the client repeats its watermarks after every hello), is
/// at most this far behind.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// The same for a broker on SQLite: no other replica reads its store, and
/// after a restart every client sends its watermarks again with its hello,
/// so the store's copy only has to be reasonably recent, and each flush
/// holds the one writer (the only lock SQLite has) that messages wait for.
pub const FLUSH_EVERY_SQLITE: Duration = Duration::from_secs(10);

/// Rows per flush transaction. A flush is written as a trickle of such
/// transactions, each waiting for the one before to commit, so a message
/// that arrives meanwhile waits behind one small commit, never behind a
/// thousand rows (on SQLite every transaction holds the one write lock).
pub const FLUSH_CHUNK: usize = 100;

/// How often a broker on `backend` flushes its watermarks.
pub fn flush_every(backend: &str) -> Duration {
    if backend == "sqlite" {
        FLUSH_EVERY_SQLITE
    } else {
        FLUSH_EVERY
    }
}

/// One member's newest watermark of one state for one target.
#[derive(Debug, Clone)]
struct Kept {
    mark: Watermark,
    doc: String,
    dirty: bool,
}

/// (mesh, target) → (member, state) → newest watermark.
type ByTarget = HashMap<(MeshId, String), HashMap<(PublicKey, ReceiptState), Kept>>;

/// The watermarks this broker holds in memory.
#[derive(Debug, Default)]
pub struct Watermarks {
    inner: Mutex<ByTarget>,
}

/// Whether `new` supersedes `old`: it covers further, or as far and was
/// signed later (a gap it lists as missing may since have been filled).
pub fn supersedes(new: &Watermark, old: &Watermark) -> bool {
    new.upto > old.upto || (new.upto == old.upto && new.at_ms > old.at_ms)
}

impl Watermarks {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByTarget> {
        // A panic while holding the lock leaves a map that is still
        // consistent (every update is one insert), so go on with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `mark` (signed by a session of `member`, JSON `doc`) if it
    /// supersedes the one held. Returns whether it did.
    pub fn advance(&self, mesh: MeshId, member: PublicKey, mark: Watermark, doc: String) -> bool {
        let mut map = self.lock();
        let slot = map
            .entry((mesh, mark.target.to_string()))
            .or_default()
            .entry((member, mark.state));
        match slot {
            std::collections::hash_map::Entry::Occupied(mut held) => {
                if !supersedes(&mark, &held.get().mark) {
                    return false;
                }
                held.insert(Kept {
                    mark,
                    doc,
                    dirty: true,
                });
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Kept {
                    mark,
                    doc,
                    dirty: true,
                });
            }
        }
        true
    }

    /// The watermarks changed since the last call, as store rows, marked
    /// clean. If writing them fails they are lost from the store only until
    /// the member's next watermark (held here meanwhile).
    pub fn take_dirty(&self) -> Vec<WatermarkRow> {
        self.take_dirty_upto(usize::MAX)
    }

    /// At most `limit` of the changed watermarks, marked clean; the rest
    /// stay changed for the next call.
    pub fn take_dirty_upto(&self, limit: usize) -> Vec<WatermarkRow> {
        let mut map = self.lock();
        let mut out = Vec::new();
        for ((mesh, target), marks) in map.iter_mut() {
            for ((member, state), kept) in marks.iter_mut() {
                if out.len() >= limit {
                    return out;
                }
                if kept.dirty {
                    kept.dirty = false;
                    out.push(WatermarkRow {
                        mesh: *mesh,
                        member: *member,
                        target: target.clone(),
                        state: *state,
                        upto: kept.mark.upto,
                        at_ms: kept.mark.at_ms,
                        doc: kept.doc.clone(),
                    });
                }
            }
        }
        out
    }

    /// A member's watermarks (both states) for `target`.
    pub fn of_member(&self, mesh: &MeshId, member: &PublicKey, target: &str) -> Vec<Watermark> {
        let map = self.lock();
        let Some(marks) = map.get(&(*mesh, target.to_owned())) else {
            return Vec::new();
        };
        [ReceiptState::Delivered, ReceiptState::Shown]
            .iter()
            .filter_map(|s| marks.get(&(*member, *s)).map(|k| k.mark.clone()))
            .collect()
    }

    /// Every member's watermarks for `target` that cover `tseq`, with their
    /// JSON.
    pub fn covering(
        &self,
        mesh: &MeshId,
        target: &str,
        tseq: u64,
    ) -> Vec<(PublicKey, Watermark, String)> {
        let map = self.lock();
        let Some(marks) = map.get(&(*mesh, target.to_owned())) else {
            return Vec::new();
        };
        marks
            .iter()
            .filter(|(_, k)| k.mark.covers(tseq))
            .map(|((member, _), k)| (*member, k.mark.clone(), k.doc.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_crypto::cert::SessionIdentity;
    use claudemesh_crypto::envelope::Target;
    use claudemesh_crypto::receipt::{Via, WatermarkFacts};
    use claudemesh_crypto::{Hash32, SigningKey};

    const MESH: MeshId = MeshId(Hash32([3; 32]));

    fn mark(me: &SessionIdentity, upto: u64, missing: Vec<u64>, at_ms: u64) -> Watermark {
        Watermark::sign(
            me,
            WatermarkFacts {
                state: ReceiptState::Delivered,
                target: Target::Topic("t".into()),
                from: 0,
                upto,
                missing,
                at_ms,
                via: Via::Store,
            },
        )
        .expect("sign")
    }

    #[test]
    fn the_newest_covering_mark_wins_and_is_flushed_once() {
        let member = SigningKey::generate();
        let me = SessionIdentity::new(&member, MESH, 1_764_000_000, 3600).expect("session");
        let m = member.public();
        let w = Watermarks::default();
        assert!(w.advance(MESH, m, mark(&me, 5, vec![3], 1), "a".into()));
        assert!(!w.advance(MESH, m, mark(&me, 4, vec![], 2), "b".into()));
        // As far, signed later, with the gap filled: kept.
        assert!(w.advance(MESH, m, mark(&me, 5, vec![], 3), "c".into()));
        assert_eq!(w.take_dirty_upto(0).len(), 0);
        let rows = w.take_dirty();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].upto, rows[0].doc.as_str()), (5, "c"));
        assert!(w.take_dirty().is_empty());
        assert_eq!(w.covering(&MESH, "#t", 3).len(), 1);
        assert!(w.covering(&MESH, "#t", 6).is_empty());
        assert_eq!(w.of_member(&MESH, &m, "#t").len(), 1);
    }
}

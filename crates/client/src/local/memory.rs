//! The team memory mirror in `state.db` (migration `0011_memory.sql`): the
//! mesh's memory notes as this device verified and opened them, the ones it
//! verified but cannot open yet (kept as their object, retried on every
//! sync), an FTS5 index over the opened text and tags, and the feed
//! position applied so far per mesh and kind. A page of the broker's feed
//! is applied in one transaction together with the new position, and only
//! if the position is still the one the page was asked from (another
//! process sharing this database may have applied it meanwhile), so a
//! forgotten note is never brought back by a stale page; a note this device
//! just wrote is stored only while the position is below its own change, so
//! a sync that already applied its forgetting is not undone. What the notes
//! mean, and who may have written them, is [`crate::memory`]'s business.

use claudemesh_crypto::MeshId;
use claudemesh_crypto::coord::CoordKind;
use sqlx::Row;

use super::{LocalStore, i, mesh_key, u};
use crate::error::ClientError;

/// A note as the mirror holds it (hex keys and ids, as stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNote {
    /// The note's id (32 hex digits).
    pub note_id: String,
    /// Its author member (hex).
    pub author: String,
    /// The author's session that signed it (hex).
    pub session: String,
    /// The mesh epoch whose coordination key seals it.
    pub epoch: u64,
    /// The author's clock, unix ms.
    pub at_ms: u64,
    /// The feed position of the change this row reflects.
    pub cseq: u64,
    /// The opened note, `None` while this device cannot open it.
    pub opened: Option<OpenedNote>,
    /// The verified object (wire JSON), kept while it cannot be opened.
    pub object: Option<String>,
}

/// A note's opened contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    /// The text.
    pub text: String,
    /// Its tags, lowercase.
    pub tags: Vec<String>,
}

/// One change of a feed page, as the mirror applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorChange {
    /// Store (or replace) this note.
    Put(StoredNote),
    /// Remove the note with this id (forgotten, or replaced by an object
    /// that did not verify).
    Remove(String),
}

/// The columns [`note_row`] reads, in its order.
macro_rules! note_columns {
    () => {
        "n.note_id, n.author, n.session, n.epoch, n.at_ms, n.cseq, n.text, n.tags, n.object"
    };
}

/// One row selected as [`note_columns`].
fn note_row(r: &sqlx::sqlite::SqliteRow) -> Result<StoredNote, ClientError> {
    let text: Option<String> = r.try_get(6)?;
    let tags: Option<String> = r.try_get(7)?;
    let opened = match text {
        Some(text) => {
            let tags = match tags.as_deref() {
                Some(t) => serde_json::from_str(t).map_err(|e| {
                    ClientError::Local(format!("a stored memory note's tags are damaged: {e}"))
                })?,
                None => Vec::new(),
            };
            Some(OpenedNote { text, tags })
        }
        None => None,
    };
    Ok(StoredNote {
        note_id: r.try_get(0)?,
        author: r.try_get(1)?,
        session: r.try_get(2)?,
        epoch: u(r.try_get(3)?),
        at_ms: u(r.try_get(4)?),
        cseq: u(r.try_get(5)?),
        opened,
        object: r.try_get(8)?,
    })
}

/// The tag filter as bound: a JSON array, or `None` for no filter.
fn tag_filter(tags: &[String]) -> Option<String> {
    (!tags.is_empty()).then(|| serde_json::to_string(tags).unwrap_or_default())
}

/// The condition that a note (`n`) carries every tag of the JSON array
/// bound twice (`?`, `?`; NULL: no filter).
macro_rules! has_tags {
    () => {
        "(? IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(?) want \
          WHERE want.value NOT IN (SELECT value FROM json_each(n.tags))))"
    };
}

impl LocalStore {
    /// The feed position applied so far for `kind` in `mesh` (0: none).
    pub async fn coord_head(&self, mesh: &MeshId, kind: CoordKind) -> Result<u64, ClientError> {
        let head: Option<i64> =
            sqlx::query_scalar("SELECT head FROM coord_heads WHERE mesh_id = ? AND kind = ?")
                .bind(mesh_key(mesh))
                .bind(kind.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(head.map(u).unwrap_or(0))
    }

    /// The grants generation the last withheld change of the `kind` feed
    /// came with, if one came since the last full sync.
    pub async fn coord_withheld(
        &self,
        mesh: &MeshId,
        kind: CoordKind,
    ) -> Result<Option<u64>, ClientError> {
        let at: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT withheld_grants FROM coord_heads WHERE mesh_id = ? AND kind = ?",
        )
        .bind(mesh_key(mesh))
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(at.flatten().map(u))
    }

    /// Records that the `kind` feed withheld a change at grants
    /// generation `grants`, unless an older withholding is recorded
    /// already: that one is what a later generation must be compared with,
    /// or what it withheld would never be fetched again.
    pub async fn coord_mark_withheld(
        &self,
        mesh: &MeshId,
        kind: CoordKind,
        grants: u64,
    ) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT INTO coord_heads (mesh_id, kind, head, withheld_grants) VALUES (?, ?, 0, ?) \
             ON CONFLICT (mesh_id, kind) DO UPDATE \
             SET withheld_grants = COALESCE(coord_heads.withheld_grants, excluded.withheld_grants)",
        )
        .bind(mesh_key(mesh))
        .bind(kind.as_str())
        .bind(i(grants))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Moves the `kind` feed's position back to the start (nothing held
    /// is dropped: changes from the start replace only older copies) and
    /// forgets that anything was withheld.
    pub async fn coord_rewind(&self, mesh: &MeshId, kind: CoordKind) -> Result<(), ClientError> {
        sqlx::query(
            "UPDATE coord_heads SET head = 0, withheld_grants = NULL \
             WHERE mesh_id = ? AND kind = ?",
        )
        .bind(mesh_key(mesh))
        .bind(kind.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Applies one feed page of memory notes asked from `after`, and moves
    /// the position to `head`, in one transaction: only if the position is
    /// still `after` (`None`, and nothing changed, when another process
    /// applied something meanwhile; ask again from the new position). A
    /// note is only ever replaced by a change from later in the feed.
    /// Returns, per change, whether it changed the mirror (a note stored or
    /// replaced, a note removed that was there).
    pub async fn memory_apply_page(
        &self,
        mesh: &MeshId,
        after: u64,
        head: u64,
        changes: &[MirrorChange],
    ) -> Result<Option<Vec<bool>>, ClientError> {
        let mut tx = self.write_tx().await?;
        let now: Option<i64> =
            sqlx::query_scalar("SELECT head FROM coord_heads WHERE mesh_id = ? AND kind = ?")
                .bind(mesh_key(mesh))
                .bind(CoordKind::Memory.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if now.map(u).unwrap_or(0) != after {
            return Ok(None);
        }
        let mut changed = Vec::with_capacity(changes.len());
        for c in changes {
            changed.push(match c {
                MirrorChange::Put(note) => Self::upsert_note(&mut tx, mesh, note).await?,
                MirrorChange::Remove(id) => {
                    sqlx::query("DELETE FROM memory_notes WHERE mesh_id = ? AND note_id = ?")
                        .bind(mesh_key(mesh))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        > 0
                }
            });
        }
        sqlx::query(
            "INSERT INTO coord_heads (mesh_id, kind, head) VALUES (?, ?, ?) \
             ON CONFLICT (mesh_id, kind) DO UPDATE SET head = excluded.head",
        )
        .bind(mesh_key(mesh))
        .bind(CoordKind::Memory.as_str())
        .bind(i(head))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(changed))
    }

    /// Stores a note this device just wrote (the broker stored it as
    /// `note.cseq`), only if the feed position applied so far is below
    /// `note.cseq`, checked in the same transaction: at or past it, a sync
    /// (of this process or another sharing this store) already applied that
    /// change or a later one (its forgetting, say), and the note is not
    /// stored again. Whether it was stored.
    pub async fn memory_put(&self, mesh: &MeshId, note: &StoredNote) -> Result<bool, ClientError> {
        let mut tx = self.write_tx().await?;
        let head: Option<i64> =
            sqlx::query_scalar("SELECT head FROM coord_heads WHERE mesh_id = ? AND kind = ?")
                .bind(mesh_key(mesh))
                .bind(CoordKind::Memory.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if head.map(u).unwrap_or(0) >= note.cseq {
            return Ok(false);
        }
        let stored = Self::upsert_note(&mut tx, mesh, note).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// One stored note (opened or not), by id.
    pub async fn memory_get(
        &self,
        mesh: &MeshId,
        note_id: &str,
    ) -> Result<Option<StoredNote>, ClientError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            note_columns!(),
            " FROM memory_notes n WHERE n.mesh_id = ? AND n.note_id = ?"
        ))
        .bind(mesh_key(mesh))
        .bind(note_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(note_row).transpose()
    }

    /// Stores a note unless the mirror holds it as of the same or a later
    /// change; whether it did.
    async fn upsert_note(
        tx: &mut sqlx::SqliteTransaction<'_>,
        mesh: &MeshId,
        note: &StoredNote,
    ) -> Result<bool, ClientError> {
        let (text, tags) = match &note.opened {
            Some(o) => (
                Some(o.text.as_str()),
                Some(serde_json::to_string(&o.tags).unwrap_or_else(|_| "[]".into())),
            ),
            None => (None, None),
        };
        let done = sqlx::query(
            "INSERT INTO memory_notes (mesh_id, note_id, author, session, epoch, at_ms, cseq, \
             text, tags, object) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (mesh_id, note_id) DO UPDATE SET author = excluded.author, \
             session = excluded.session, epoch = excluded.epoch, at_ms = excluded.at_ms, \
             cseq = excluded.cseq, text = excluded.text, tags = excluded.tags, \
             object = excluded.object WHERE excluded.cseq > memory_notes.cseq",
        )
        .bind(mesh_key(mesh))
        .bind(&note.note_id)
        .bind(&note.author)
        .bind(&note.session)
        .bind(i(note.epoch))
        .bind(i(note.at_ms))
        .bind(i(note.cseq))
        .bind(text)
        .bind(tags)
        .bind(note.object.as_deref())
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The notes this device verified but could not open yet, oldest
    /// change first.
    pub async fn memory_pending(&self, mesh: &MeshId) -> Result<Vec<StoredNote>, ClientError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            note_columns!(),
            " FROM memory_notes n WHERE n.mesh_id = ? AND n.text IS NULL ORDER BY n.cseq"
        ))
        .bind(mesh_key(mesh))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(note_row).collect()
    }

    /// Records that a pending note (as of feed position `cseq`) opened;
    /// nothing changes if a later change replaced it meanwhile. Whether it
    /// changed.
    pub async fn memory_opened(
        &self,
        mesh: &MeshId,
        note_id: &str,
        cseq: u64,
        opened: &OpenedNote,
    ) -> Result<bool, ClientError> {
        let done = sqlx::query(
            "UPDATE memory_notes SET text = ?, tags = ?, object = NULL \
             WHERE mesh_id = ? AND note_id = ? AND cseq = ? AND text IS NULL",
        )
        .bind(&opened.text)
        .bind(serde_json::to_string(&opened.tags).unwrap_or_else(|_| "[]".into()))
        .bind(mesh_key(mesh))
        .bind(note_id)
        .bind(i(cseq))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes a note from the mirror (this device forgot it).
    pub async fn memory_remove(&self, mesh: &MeshId, note_id: &str) -> Result<(), ClientError> {
        sqlx::query("DELETE FROM memory_notes WHERE mesh_id = ? AND note_id = ?")
            .bind(mesh_key(mesh))
            .bind(note_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The ids of the stored notes (opened or not) starting with `prefix`
    /// (lowercase hex), at most `limit`.
    pub async fn memory_ids_with_prefix(
        &self,
        mesh: &MeshId,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, ClientError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT note_id FROM memory_notes WHERE mesh_id = ? AND substr(note_id, 1, ?) = ? \
             ORDER BY note_id LIMIT ?",
        )
        .bind(mesh_key(mesh))
        .bind(i64::try_from(prefix.len()).unwrap_or(i64::MAX))
        .bind(prefix)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// The opened notes carrying every tag of `tags`, newest first, at
    /// most `limit`.
    pub async fn memory_list(
        &self,
        mesh: &MeshId,
        tags: &[String],
        limit: u32,
    ) -> Result<Vec<StoredNote>, ClientError> {
        let filter = tag_filter(tags);
        let rows = sqlx::query(concat!(
            "SELECT ",
            note_columns!(),
            " FROM memory_notes n WHERE n.mesh_id = ? AND n.text IS NOT NULL AND ",
            has_tags!(),
            " ORDER BY n.at_ms DESC, n.cseq DESC LIMIT ?"
        ))
        .bind(mesh_key(mesh))
        .bind(filter.as_deref())
        .bind(filter.as_deref())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(note_row).collect()
    }

    /// The opened notes matching the FTS5 query `fts_query` (built by
    /// [`crate::memory::fts_query`], never raw user input) and carrying
    /// every tag of `tags`, best match first (`bm25`), at most `limit`.
    pub async fn memory_search(
        &self,
        mesh: &MeshId,
        fts_query: &str,
        tags: &[String],
        limit: u32,
    ) -> Result<Vec<StoredNote>, ClientError> {
        let filter = tag_filter(tags);
        let rows = sqlx::query(concat!(
            "SELECT ",
            note_columns!(),
            // CROSS JOIN keeps the full-text index the outer loop: the
            // match runs once; joined the other way round, SQLite may run
            // it again for every note (quadratic in the mirror's size).
            " FROM memory_fts CROSS JOIN memory_notes n ON n.id = memory_fts.rowid \
             WHERE memory_fts MATCH ? AND n.mesh_id = ? AND n.text IS NOT NULL AND ",
            has_tags!(),
            " ORDER BY bm25(memory_fts), n.at_ms DESC LIMIT ?"
        ))
        .bind(fts_query)
        .bind(mesh_key(mesh))
        .bind(filter.as_deref())
        .bind(filter.as_deref())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(note_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_crypto::Hash32;

    fn note(id: &str, cseq: u64, text: Option<&str>, tags: &[&str]) -> StoredNote {
        StoredNote {
            note_id: id.into(),
            author: "aa".repeat(32),
            session: "bb".repeat(32),
            epoch: 0,
            at_ms: 1000 + cseq,
            cseq,
            opened: text.map(|t| OpenedNote {
                text: t.into(),
                tags: tags.iter().map(|s| (*s).to_owned()).collect(),
            }),
            object: text.is_none().then(|| "{}".to_owned()),
        }
    }

    async fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        (dir, store)
    }

    fn ids(notes: &[StoredNote]) -> Vec<&str> {
        notes.iter().map(|n| n.note_id.as_str()).collect()
    }

    #[tokio::test]
    async fn pages_apply_once_search_finds_words_and_tags_filter() {
        let (_dir, local) = store().await;
        let mesh = MeshId(Hash32([1; 32]));
        let other = MeshId(Hash32([2; 32]));
        let page = [
            MirrorChange::Put(note(
                "a1",
                1,
                Some("the staging database listens on port 5433"),
                &["staging", "db"],
            )),
            MirrorChange::Put(note("b2", 2, Some("deploys go out on Tuesdays"), &["ops"])),
            MirrorChange::Put(note("c3", 3, None, &[])),
        ];
        let changed = local.memory_apply_page(&mesh, 0, 3, &page).await.unwrap();
        assert_eq!(changed, Some(vec![true; 3]));
        assert_eq!(local.coord_head(&mesh, CoordKind::Memory).await.unwrap(), 3);
        assert_eq!(
            local.coord_head(&other, CoordKind::Memory).await.unwrap(),
            0
        );
        // A stale page (asked from 0 again) changes nothing.
        let stale = [MirrorChange::Remove("a1".into())];
        assert_eq!(
            local.memory_apply_page(&mesh, 0, 1, &stale).await.unwrap(),
            None
        );

        let q = crate::memory::fts_query("Staging PORT?").unwrap();
        let found = local.memory_search(&mesh, &q, &[], 10).await.unwrap();
        assert_eq!(ids(&found), ["a1"]);
        let opened = found[0].opened.clone().unwrap();
        assert_eq!(opened.tags, ["staging", "db"]);
        // Prefix matches; tags are searched too; other meshes see nothing.
        let q = crate::memory::fts_query("tuesday").unwrap();
        assert_eq!(
            ids(&local.memory_search(&mesh, &q, &[], 10).await.unwrap()),
            ["b2"]
        );
        let q = crate::memory::fts_query("ops").unwrap();
        assert_eq!(
            ids(&local.memory_search(&mesh, &q, &[], 10).await.unwrap()),
            ["b2"]
        );
        assert!(
            local
                .memory_search(&other, &q, &[], 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Tag filters need every tag.
        let q = crate::memory::fts_query("staging tuesdays").unwrap();
        let all = local.memory_search(&mesh, &q, &[], 10).await.unwrap();
        assert_eq!(all.len(), 2);
        let db = local
            .memory_search(&mesh, &q, &["db".into()], 10)
            .await
            .unwrap();
        assert_eq!(ids(&db), ["a1"]);
        let none = local
            .memory_search(&mesh, &q, &["db".into(), "ops".into()], 10)
            .await
            .unwrap();
        assert!(none.is_empty());
        // The list is newest first and leaves out what is not opened.
        let list = local.memory_list(&mesh, &[], 10).await.unwrap();
        assert_eq!(ids(&list), ["b2", "a1"]);
        assert_eq!(
            ids(&local.memory_list(&mesh, &["ops".into()], 10).await.unwrap()),
            ["b2"]
        );
        assert_eq!(ids(&local.memory_pending(&mesh).await.unwrap()), ["c3"]);

        // The pending one opens; then it is found.
        let opened = OpenedNote {
            text: "the pager rota lives in the wiki".into(),
            tags: vec![],
        };
        local.memory_opened(&mesh, "c3", 3, &opened).await.unwrap();
        assert!(local.memory_pending(&mesh).await.unwrap().is_empty());
        let q = crate::memory::fts_query("rota").unwrap();
        assert_eq!(
            ids(&local.memory_search(&mesh, &q, &[], 10).await.unwrap()),
            ["c3"]
        );

        // A forget removes it from the index too; an older change of a note
        // does not replace a newer one.
        let page = [
            MirrorChange::Remove("a1".into()),
            MirrorChange::Remove("zz".into()),
            MirrorChange::Put(note("b2", 2, Some("deploys go out on Tuesdays"), &["ops"])),
        ];
        let changed = local.memory_apply_page(&mesh, 3, 4, &page).await.unwrap();
        assert_eq!(changed, Some(vec![true, false, false]));
        let q = crate::memory::fts_query("staging").unwrap();
        assert!(
            local
                .memory_search(&mesh, &q, &[], 10)
                .await
                .unwrap()
                .is_empty()
        );
        local
            .memory_put(&mesh, &note("b2", 1, Some("old text"), &[]))
            .await
            .unwrap();
        let q = crate::memory::fts_query("old").unwrap();
        assert!(
            local
                .memory_search(&mesh, &q, &[], 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            local.memory_ids_with_prefix(&mesh, "b", 10).await.unwrap(),
            ["b2"]
        );
        local.memory_remove(&mesh, "b2").await.unwrap();
        assert!(
            local
                .memory_ids_with_prefix(&mesh, "b", 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Forgetting the mesh forgets its notes and position.
        local.forget_mesh(&mesh).await.unwrap();
        assert!(local.memory_list(&mesh, &[], 10).await.unwrap().is_empty());
        assert_eq!(local.coord_head(&mesh, CoordKind::Memory).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_pending_note_is_kept_never_shown_and_opens_later() {
        let (_dir, local) = store().await;
        let mesh = MeshId(Hash32([3; 32]));
        // Kept sealed: its object stays, its text is NULL.
        let mut sealed = note("p1", 1, None, &[]);
        sealed.object = Some(r#"{"sealed":true}"#.into());
        let page = [
            MirrorChange::Put(sealed.clone()),
            MirrorChange::Put(note("o2", 2, Some("pending notes stay hidden"), &["x"])),
        ];
        assert_eq!(
            local.memory_apply_page(&mesh, 0, 2, &page).await.unwrap(),
            Some(vec![true, true])
        );
        // Never listed or found, whatever the filter; still pending after
        // later pages (retried on every sync).
        let listed = local.memory_list(&mesh, &[], 10).await.unwrap();
        assert_eq!(ids(&listed), ["o2"]);
        let q = crate::memory::fts_query("pending sealed true p1").unwrap();
        assert_eq!(
            ids(&local.memory_search(&mesh, &q, &[], 10).await.unwrap()),
            ["o2"]
        );
        let page = [MirrorChange::Put(note("o3", 3, Some("another"), &[]))];
        local.memory_apply_page(&mesh, 2, 3, &page).await.unwrap();
        let pending = local.memory_pending(&mesh).await.unwrap();
        assert_eq!(pending, [sealed.clone()]);
        assert_eq!(
            local.memory_get(&mesh, "p1").await.unwrap(),
            Some(sealed.clone())
        );
        assert_eq!(local.memory_get(&mesh, "zz").await.unwrap(), None);
        // The same change seen again (another pass) changes nothing.
        let again = [MirrorChange::Put(sealed.clone())];
        assert_eq!(
            local.memory_apply_page(&mesh, 3, 4, &again).await.unwrap(),
            Some(vec![false])
        );
        // Opening it as of an older change does nothing; as of its own, it
        // is shown and no longer pending.
        let opened = OpenedNote {
            text: "opened at last".into(),
            tags: vec!["late".into()],
        };
        assert!(!local.memory_opened(&mesh, "p1", 0, &opened).await.unwrap());
        assert!(local.memory_opened(&mesh, "p1", 1, &opened).await.unwrap());
        assert!(!local.memory_opened(&mesh, "p1", 1, &opened).await.unwrap());
        assert!(local.memory_pending(&mesh).await.unwrap().is_empty());
        let got = local.memory_get(&mesh, "p1").await.unwrap().unwrap();
        assert_eq!((got.opened, got.object), (Some(opened), None));
        let q = crate::memory::fts_query("last").unwrap();
        assert_eq!(
            ids(&local
                .memory_search(&mesh, &q, &["late".into()], 10)
                .await
                .unwrap()),
            ["p1"]
        );
    }

    #[tokio::test]
    async fn a_remembered_note_is_not_stored_once_the_feed_is_past_it() {
        let (_dir, local) = store().await;
        let mesh = MeshId(Hash32([4; 32]));
        // A sync applied up to 5, including the note's forgetting at 5 (it
        // was written at 4): the remember that answered 4 stores nothing.
        let page = [
            MirrorChange::Put(note("n0", 3, Some("someone else's"), &[])),
            MirrorChange::Remove("n1".into()),
        ];
        local.memory_apply_page(&mesh, 0, 5, &page).await.unwrap();
        assert!(
            !local
                .memory_put(&mesh, &note("n1", 4, Some("forgotten already"), &[]))
                .await
                .unwrap()
        );
        // At the head itself: that change is applied already.
        assert!(
            !local
                .memory_put(&mesh, &note("n5", 5, Some("applied by the sync"), &[]))
                .await
                .unwrap()
        );
        let listed = local.memory_list(&mesh, &[], 10).await.unwrap();
        assert_eq!(ids(&listed), ["n0"]);
        // Past the head, it is stored (and the head does not move)...
        assert!(
            local
                .memory_put(&mesh, &note("n6", 6, Some("just remembered"), &[]))
                .await
                .unwrap()
        );
        assert_eq!(local.coord_head(&mesh, CoordKind::Memory).await.unwrap(), 5);
        // ...the sync that brings its own change leaves it as it is, and a
        // later forgetting removes it.
        let page = [MirrorChange::Put(note(
            "n6",
            6,
            Some("just remembered"),
            &[],
        ))];
        assert_eq!(
            local.memory_apply_page(&mesh, 5, 6, &page).await.unwrap(),
            Some(vec![false])
        );
        let page = [MirrorChange::Remove("n6".into())];
        assert_eq!(
            local.memory_apply_page(&mesh, 6, 7, &page).await.unwrap(),
            Some(vec![true])
        );
        assert!(
            !local
                .memory_put(&mesh, &note("n6", 6, Some("just remembered"), &[]))
                .await
                .unwrap()
        );
        assert_eq!(
            ids(&local.memory_list(&mesh, &[], 10).await.unwrap()),
            ["n0"]
        );
    }
}

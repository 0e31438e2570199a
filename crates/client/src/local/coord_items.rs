//! The mirror of the coordination feed's tasks and state entries in
//! `state.db` (migration `0012_tasks.sql`): per object of a mesh and kind,
//! its sealed object (and a task's last act) as the broker's feed gave
//! them, and the feed position applied so far. A page is applied in one
//! transaction with the new position, only if the position is still the one
//! it was asked from (another process sharing this database may have
//! applied it meanwhile). Verifying and opening what is kept here is
//! [`crate::tasks`]' and [`crate::state`]'s business: nothing is trusted for
//! being stored.

use claudemesh_crypto::MeshId;
use claudemesh_crypto::coord::CoordKind;
use sqlx::Row;

use super::{LocalStore, i, mesh_key, u};
use crate::error::ClientError;

/// A coordination object as the mirror holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    /// The object's id (32 hex digits).
    pub item_id: String,
    /// The feed position of the change this row reflects.
    pub cseq: u64,
    /// The sealed object (wire JSON).
    pub object: String,
    /// The last act on it (wire JSON), if any.
    pub act: Option<String>,
    /// A lease's end (unix ms, the broker's clock), as the feed said.
    pub expires_at_ms: Option<u64>,
}

impl LocalStore {
    /// Applies one page of the `kind` feed asked from `after` and moves the
    /// position to `head`, in one transaction, only if the position is
    /// still `after` (false, and nothing changed, otherwise: ask again from
    /// the new position). Each change is the object's stored row, or its id
    /// alone when it was deleted.
    pub async fn coord_apply_page(
        &self,
        mesh: &MeshId,
        kind: CoordKind,
        after: u64,
        head: u64,
        changes: &[(String, Option<StoredItem>)],
    ) -> Result<bool, ClientError> {
        let mut tx = self.write_tx().await?;
        let now: Option<i64> =
            sqlx::query_scalar("SELECT head FROM coord_heads WHERE mesh_id = ? AND kind = ?")
                .bind(mesh_key(mesh))
                .bind(kind.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if now.map(u).unwrap_or(0) != after {
            return Ok(false);
        }
        for (id, row) in changes {
            match row {
                Some(t) => {
                    sqlx::query(
                        "INSERT INTO coord_items \
                         (mesh_id, kind, item_id, cseq, object, act, expires_at_ms) \
                         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (mesh_id, kind, item_id) DO UPDATE \
                         SET cseq = excluded.cseq, object = excluded.object, act = excluded.act, \
                         expires_at_ms = excluded.expires_at_ms \
                         WHERE excluded.cseq > coord_items.cseq",
                    )
                    .bind(mesh_key(mesh))
                    .bind(kind.as_str())
                    .bind(&t.item_id)
                    .bind(i(t.cseq))
                    .bind(&t.object)
                    .bind(&t.act)
                    .bind(t.expires_at_ms.map(i))
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "DELETE FROM coord_items WHERE mesh_id = ? AND kind = ? AND item_id = ?",
                    )
                    .bind(mesh_key(mesh))
                    .bind(kind.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        sqlx::query(
            "INSERT INTO coord_heads (mesh_id, kind, head) VALUES (?, ?, ?) \
             ON CONFLICT (mesh_id, kind) DO UPDATE SET head = excluded.head",
        )
        .bind(mesh_key(mesh))
        .bind(kind.as_str())
        .bind(i(head))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every object of `kind` in the mesh held here, oldest change first.
    pub async fn coord_items(
        &self,
        mesh: &MeshId,
        kind: CoordKind,
    ) -> Result<Vec<StoredItem>, ClientError> {
        let rows = sqlx::query(
            "SELECT item_id, cseq, object, act, expires_at_ms FROM coord_items \
             WHERE mesh_id = ? AND kind = ? \
             ORDER BY cseq",
        )
        .bind(mesh_key(mesh))
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredItem {
                    item_id: r.try_get(0)?,
                    cseq: u(r.try_get(1)?),
                    object: r.try_get(2)?,
                    act: r.try_get(3)?,
                    expires_at_ms: r.try_get::<Option<i64>, _>(4)?.map(u),
                })
            })
            .collect()
    }

    /// One object of `kind` held here, by its id (32 hex digits).
    pub async fn coord_item(
        &self,
        mesh: &MeshId,
        kind: CoordKind,
        item_id: &str,
    ) -> Result<Option<StoredItem>, ClientError> {
        let row = sqlx::query(
            "SELECT item_id, cseq, object, act, expires_at_ms FROM coord_items \
             WHERE mesh_id = ? AND kind = ? AND item_id = ?",
        )
        .bind(mesh_key(mesh))
        .bind(kind.as_str())
        .bind(item_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredItem {
                item_id: r.try_get(0)?,
                cseq: u(r.try_get(1)?),
                object: r.try_get(2)?,
                act: r.try_get(3)?,
                expires_at_ms: r.try_get::<Option<i64>, _>(4)?.map(u),
            })
        })
        .transpose()
    }

    /// The ids of the mesh's objects of `kind` held here that start with
    /// `prefix` (lowercase hex), at most `limit`.
    pub async fn coord_ids_with_prefix(
        &self,
        mesh: &MeshId,
        kind: CoordKind,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, ClientError> {
        let like = format!("{prefix}%");
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT item_id FROM coord_items WHERE mesh_id = ? AND kind = ? AND item_id LIKE ? \
             ORDER BY item_id LIMIT ?",
        )
        .bind(mesh_key(mesh))
        .bind(kind.as_str())
        .bind(like)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, cseq: u64, act: Option<&str>) -> StoredItem {
        StoredItem {
            item_id: id.into(),
            cseq,
            object: format!("{{\"task\":\"{id}\"}}"),
            act: act.map(str::to_owned),
            expires_at_ms: None,
        }
    }

    #[tokio::test]
    async fn pages_apply_once_from_their_position_and_deletes_remove() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let mesh = MeshId(claudemesh_crypto::Hash32([3; 32]));
        let page = [
            ("aa".to_owned(), Some(task("aa", 1, None))),
            ("bb".to_owned(), Some(task("bb", 2, None))),
        ];
        assert!(
            local
                .coord_apply_page(&mesh, CoordKind::Task, 0, 2, &page)
                .await
                .unwrap()
        );
        // A stale page (asked from 0 again) changes nothing.
        assert!(
            !local
                .coord_apply_page(&mesh, CoordKind::Task, 0, 2, &page)
                .await
                .unwrap()
        );
        let claimed = [("aa".to_owned(), Some(task("aa", 3, Some("{\"claim\":1}"))))];
        assert!(
            local
                .coord_apply_page(&mesh, CoordKind::Task, 2, 3, &claimed)
                .await
                .unwrap()
        );
        let deleted = [("bb".to_owned(), None)];
        assert!(
            local
                .coord_apply_page(&mesh, CoordKind::Task, 3, 4, &deleted)
                .await
                .unwrap()
        );
        let all = local.coord_items(&mesh, CoordKind::Task).await.unwrap();
        // Another kind of the same mesh is apart.
        assert!(
            local
                .coord_items(&mesh, CoordKind::State)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(all, vec![task("aa", 3, Some("{\"claim\":1}"))]);
        assert_eq!(local.coord_head(&mesh, CoordKind::Task).await.unwrap(), 4);
        assert_eq!(
            local
                .coord_item(&mesh, CoordKind::Task, "aa")
                .await
                .unwrap(),
            Some(task("aa", 3, Some("{\"claim\":1}")))
        );
        assert_eq!(
            local
                .coord_item(&mesh, CoordKind::Task, "bb")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            local
                .coord_ids_with_prefix(&mesh, CoordKind::Task, "a", 8)
                .await
                .unwrap(),
            vec!["aa".to_owned()]
        );
        // Another mesh's tasks stay apart.
        let other = MeshId(claudemesh_crypto::Hash32([4; 32]));
        assert!(
            local
                .coord_items(&other, CoordKind::Task)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

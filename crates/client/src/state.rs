//! Shared state (issue 17 item 3, `docs/protocol.md` "Shared state"):
//! small named values sealed to the mesh, written with compare-and-set by
//! version, which the broker orders without reading a key or a value. This
//! module owns what an entry is ([`StateEntry`], its plaintext and the rules
//! of its input) and the [`MeshClient`] requests (`state_set`,
//! `state_delete`, `state_get`, `state_list`, `state_sync`,
//! `state_changes`).
//!
//! An entry is a [`CoordObject`] of kind `state`, sealed under the current
//! epoch's coordination key, whose plaintext is `{"key", "value",
//! "tag_epoch"}` (or `"deleted": true` instead of a value). It is filed
//! under [`state_id`]: a keyed hash of the key under the coordination key of
//! `tag_epoch` (the epoch current when the key was first written; later
//! writes keep the id). Its `rev` is the version it makes, and the broker
//! stores it only if the entry is at the version before, so of two writers
//! of one version exactly one wins, and a delete moves the version on (a
//! stale `--if-version` never matches a re-created key). A reader checks the
//! id against the key it opens, so an entry cannot be filed under another
//! key; of two ids claiming one key (possible only across a rekey) the
//! newer write is shown.
//!
//! Nothing here logs a key, a value or a coordination key.

use std::collections::BTreeMap;

use claudemesh_crypto::coord::{CoordFacts, CoordId, CoordKind, coord_key, state_id};
use claudemesh_crypto::{MemberKey, SessionKey};
use claudemesh_proto::frames::{StateAnswer, StateSet};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::client::{Event, MeshClient, now_ms};
use crate::coord_mirror::offline_ok;
use crate::error::{BadInput, ClientError, MissingKey};
use crate::local::StoredItem;
use crate::memory::{SyncPass, seal_coord};
use crate::session::unexpected;

/// Most bytes of a key.
pub const MAX_KEY: usize = 256;
/// Most bytes of a value, as JSON.
pub const MAX_VALUE: usize = 8192;
/// How many times a write without `if_version` is tried when other writers
/// keep moving the entry.
const WRITE_TRIES: usize = 4;

/// A shared state entry as this device can show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateEntry {
    /// The key, as written.
    pub key: String,
    /// The value (any JSON).
    pub value: serde_json::Value,
    /// Its version: 1 when first written, one more per write or delete.
    pub version: u64,
    /// Who wrote this version.
    pub writer: MemberKey,
    /// The writer's display name.
    pub writer_name: String,
    /// The writer's session that signed it.
    pub writer_session: SessionKey,
    /// When it was written (the writer's clock), unix ms.
    pub updated_at_ms: u64,
}

/// A change to a watched key ([`MeshClient::state_watch`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateChange {
    /// The key.
    pub key: String,
    /// Its version now (0: it never existed).
    pub version: u64,
    /// The entry now; `None` when it was deleted (or never existed).
    pub entry: Option<StateEntry>,
}

/// An entry's plaintext, as sealed.
#[derive(Debug, Serialize, Deserialize)]
struct EntryBody {
    key: String,
    /// Absent once deleted; a JSON `null` is a value like any other.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    tag_epoch: u64,
}

/// A field that is there, `null` included (absent is `None` by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// What this device holds for one key: where it is filed and at which
/// version, and the entry unless it was deleted.
#[derive(Debug, Clone)]
struct Current {
    key: String,
    id: CoordId,
    tag_epoch: u64,
    version: u64,
    written_at_ms: u64,
    entry: Option<StateEntry>,
}

/// A key: 1 to [`MAX_KEY`] bytes as typed (case-sensitive, not trimmed),
/// no control characters.
pub fn validate_key(key: &str) -> Result<(), ClientError> {
    let bad = |reason: String| {
        ClientError::BadInput(BadInput::State {
            field: "key",
            reason,
        })
    };
    if key.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if key.len() > MAX_KEY {
        return Err(bad(format!("{} bytes, at most {MAX_KEY}", key.len())));
    }
    if key.chars().any(char::is_control) {
        return Err(bad("control characters are not allowed".into()));
    }
    Ok(())
}

/// A value: any JSON of at most [`MAX_VALUE`] bytes.
fn validate_value(value: &serde_json::Value) -> Result<(), ClientError> {
    let len = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if len > MAX_VALUE {
        return Err(ClientError::BadInput(BadInput::State {
            field: "value",
            reason: format!("{len} bytes as JSON, at most {MAX_VALUE}"),
        }));
    }
    Ok(())
}

/// Where a key stands, for a lost write.
fn describe(cur: Option<&Current>) -> String {
    match cur {
        None => "it does not exist".into(),
        Some(Current {
            entry: Some(e),
            version,
            ..
        }) => format!("it is at version {version}, written by {}", e.writer_name),
        Some(Current { version, .. }) => format!("it was deleted (version {version})"),
    }
}

impl MeshClient {
    /// Writes `value` under `key`. With `if_version`, only if the key is at
    /// that version now (0: it does not exist); a different version is
    /// [`ClientError::StateMoved`]. Without, over whatever is there (a write
    /// racing another is tried again from what won, a few times).
    pub async fn state_set(
        &self,
        key: &str,
        value: serde_json::Value,
        if_version: Option<u64>,
    ) -> Result<StateEntry, ClientError> {
        validate_key(key)?;
        validate_value(&value)?;
        self.state_write(key, Some(value), if_version)
            .await?
            .ok_or_else(|| ClientError::Local("the entry just written cannot be read back".into()))
    }

    /// Deletes `key` (its version moves on, so no stale write brings the
    /// old value back). With `if_version`, only from that version. Returns
    /// the version the delete made; a key that does not exist is
    /// [`ClientError::NotFound`].
    pub async fn state_delete(
        &self,
        key: &str,
        if_version: Option<u64>,
    ) -> Result<u64, ClientError> {
        validate_key(key)?;
        self.state_sync().await?;
        let live = self
            .state_current()
            .await?
            .get(key)
            .is_some_and(|c| c.entry.is_some());
        if !live {
            return Err(ClientError::NotFound(format!("no state key {key:?}")));
        }
        self.state_write(key, None, if_version).await?;
        let version = self
            .state_current()
            .await?
            .get(key)
            .map_or(0, |c| c.version);
        Ok(version)
    }

    /// The entry of `key`, if there is one (after a sync; when the broker
    /// cannot be reached, this device's copy as it is).
    pub async fn state_get(&self, key: &str) -> Result<Option<StateEntry>, ClientError> {
        validate_key(key)?;
        offline_ok(self.state_sync().await, "shared state")?;
        Ok(self
            .state_current()
            .await?
            .remove(key)
            .and_then(|c| c.entry))
    }

    /// Every entry whose key starts with `prefix`, by key (after a sync, as
    /// [`MeshClient::state_get`]).
    pub async fn state_list(&self, prefix: &str) -> Result<Vec<StateEntry>, ClientError> {
        offline_ok(self.state_sync().await, "shared state")?;
        Ok(self
            .state_current()
            .await?
            .into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter_map(|(_, c)| c.entry)
            .collect())
    }

    /// Brings this device's copy of the shared state up to date.
    pub async fn state_sync(&self) -> Result<(), ClientError> {
        self.mirror_sync(CoordKind::State)
            .await
            .map_err(|e| match e {
                ClientError::MemoryUnsupported => ClientError::TasksUnsupported,
                e => e,
            })
    }

    /// The versions of `keys` this device holds (0: absent or deleted is
    /// told apart by the entry), after a sync: what `state watch` compares
    /// between pushes.
    pub async fn state_versions(
        &self,
        keys: &[String],
    ) -> Result<BTreeMap<String, (u64, Option<StateEntry>)>, ClientError> {
        self.state_sync().await?;
        let mut now = self.state_current().await?;
        Ok(keys
            .iter()
            .map(|k| {
                let c = now.remove(k);
                (
                    k.clone(),
                    (c.as_ref().map_or(0, |c| c.version), c.and_then(|c| c.entry)),
                )
            })
            .collect())
    }

    /// Watches `keys`: first reports where each stands now, then each new
    /// version of one of them, as the broker pushes that shared state
    /// changed (and after a reconnect, which may have missed a push), until
    /// `on_change` returns false. A sync that fails for the network waits
    /// for the reconnection.
    pub async fn state_watch(
        &self,
        keys: &[String],
        mut on_change: impl FnMut(StateChange) -> bool,
    ) -> Result<(), ClientError> {
        for k in keys {
            validate_key(k)?;
        }
        // Subscribed before the first read, so no change falls between.
        let mut events = self.events();
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut first = true;
        loop {
            match self.state_versions(keys).await {
                Ok(now) => {
                    for (key, (version, entry)) in now {
                        if !first && seen.get(&key) == Some(&version) {
                            continue;
                        }
                        seen.insert(key.clone(), version);
                        if !on_change(StateChange {
                            key,
                            version,
                            entry,
                        }) {
                            return Ok(());
                        }
                    }
                    first = false;
                }
                Err(e) if e.kind() == crate::error_kind::ErrorKind::Network => {
                    tracing::info!(error = %e, "shared state: watch waits for the connection");
                }
                Err(e) => return Err(e),
            }
            loop {
                match MeshClient::next_event(&mut events).await {
                    None => return Err(ClientError::Disconnected),
                    Some(Event::CoordChanged(kinds)) if kinds.contains(&CoordKind::State) => break,
                    Some(Event::Connected) => break,
                    Some(Event::Stopped { reason }) => {
                        return Err(ClientError::Local(format!("the session stopped: {reason}")));
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// Writes (`Some` value) or deletes (`None`) `key` from the version
    /// this device sees after a sync, as described at
    /// [`MeshClient::state_set`]; the entry after the write.
    async fn state_write(
        &self,
        key: &str,
        value: Option<serde_json::Value>,
        if_version: Option<u64>,
    ) -> Result<Option<StateEntry>, ClientError> {
        let mesh = self.mesh().id;
        // What the broker said the entry is at when a write lost, for an
        // entry this device cannot read (its copy would say it is absent).
        let mut broker_at: Option<(CoordId, u64)> = None;
        for _ in 0..WRITE_TRIES {
            self.state_sync().await?;
            let current = self.state_current().await?.remove(key);
            let at = current.as_ref().map_or(0, |c| c.version);
            if let Some(want) = if_version
                && want != at
            {
                return Err(ClientError::StateMoved {
                    key: key.to_owned(),
                    detail: format!(
                        "expected version {want}, but {}",
                        describe(current.as_ref())
                    ),
                });
            }
            let (current_ref, value) = (&current, &value);
            let sent = self
                .resealing(|| async move {
                    let current = current_ref;
                    let mut at = at;
                    if let Some((moved_id, moved_at)) = broker_at {
                        let id = self.with_state(|s| {
                            s.root(s.roster().epoch())
                                .map(|r| state_id(&coord_key(r, &mesh), &mesh, key))
                        });
                        if current.is_none() && id == Some(moved_id) {
                            at = at.max(moved_at);
                        }
                    }
                    let object = self.with_state(|s| {
                        let epoch = s.roster().epoch();
                        let (id, tag_epoch) = match &current {
                            Some(c) => (c.id, c.tag_epoch),
                            None => {
                                let root = s
                                    .root(epoch)
                                    .ok_or(ClientError::MissingKey(MissingKey::CurrentEpoch))?;
                                (state_id(&coord_key(root, &mesh), &mesh, key), epoch)
                            }
                        };
                        let body = EntryBody {
                            key: key.to_owned(),
                            deleted: value.is_none(),
                            value: value.clone(),
                            tag_epoch,
                        };
                        let plaintext = serde_json::to_vec(&body).map_err(|e| {
                            ClientError::Local(format!("cannot encode a state entry: {e}"))
                        })?;
                        let facts = CoordFacts {
                            kind: CoordKind::State,
                            id,
                            rev: at + 1,
                            at_ms: now_ms(),
                        };
                        seal_coord(s, facts, &plaintext, |reason| {
                            ClientError::BadInput(BadInput::State {
                                field: "value",
                                reason,
                            })
                        })
                    })?;
                    let id = object.id;
                    let frame = self
                        .session()
                        .request(
                            |req| {
                                ClientFrame::StateSet(StateSet {
                                    req: Some(req),
                                    object: Box::new(object),
                                })
                            },
                            "write the state entry",
                        )
                        .await?;
                    Ok((frame, id))
                })
                .await;
            let answer = match sent {
                Err(ClientError::Refused {
                    code: ErrorCode::UnknownType,
                    ..
                }) => return Err(ClientError::TasksUnsupported),
                Err(e) => return Err(e),
                Ok((BrokerFrame::StateAnswer(a), id)) if a.id == id => a,
                Ok((other, _)) => return Err(unexpected(&other)),
            };
            let StateAnswer {
                ok, id, version, ..
            } = answer;
            broker_at = Some((id, version));
            self.state_sync().await?;
            let now = self.state_current().await?.remove(key);
            if ok {
                return Ok(now.and_then(|c| c.entry));
            }
            if if_version.is_some() {
                return Err(ClientError::StateMoved {
                    key: key.to_owned(),
                    detail: format!("another writer got there first: {}", describe(now.as_ref())),
                });
            }
        }
        Err(ClientError::StateMoved {
            key: key.to_owned(),
            detail: format!("other writers kept changing it ({WRITE_TRIES} tries)"),
        })
    }

    /// What this device holds, by key: each mirrored entry verified,
    /// opened and checked to be filed under its key (others are logged and
    /// skipped); of two ids claiming one key, the newer write.
    async fn state_current(&self) -> Result<BTreeMap<String, Current>, ClientError> {
        let mesh = self.mesh().id;
        let mut pass = SyncPass::default();
        let mut out: BTreeMap<String, Current> = BTreeMap::new();
        for row in self.local().coord_items(&mesh, CoordKind::State).await? {
            let Some(cur) = self.read_entry(&row, &mut pass).await? else {
                continue;
            };
            match out.get(&cur.key) {
                Some(have) if have.written_at_ms >= cur.written_at_ms => {}
                _ => {
                    out.insert(cur.key.clone(), cur);
                }
            }
        }
        Ok(out)
    }

    /// One mirrored entry, or `None` (logged with why) when it does not
    /// verify, open, read, or match the id it is filed under.
    async fn read_entry(
        &self,
        row: &StoredItem,
        pass: &mut SyncPass,
    ) -> Result<Option<Current>, ClientError> {
        let id = &row.item_id;
        let skip = |why: String| {
            tracing::warn!(id = %id, why = %why, "shared state: an entry cannot be trusted or read; it is not shown");
            Ok(None)
        };
        let (object, plain) = match self
            .open_mirrored(&row.object, id, |k| k == CoordKind::State, pass)
            .await?
        {
            Ok(o) => o,
            Err(why) => return skip(why),
        };
        let Ok(body) = serde_json::from_slice::<EntryBody>(&plain) else {
            return skip("its contents are not a state entry".into());
        };
        if validate_key(&body.key).is_err()
            || body.tag_epoch > object.epoch
            || body.deleted == body.value.is_some()
        {
            return skip("its contents are not a well-formed state entry".into());
        }
        let mesh = self.mesh().id;
        let filed = self
            .coord_keys_of(body.tag_epoch, pass)
            .await?
            .iter()
            .any(|k| state_id(k, &mesh, &body.key) == object.id);
        if !filed {
            return skip("it is not filed under its key".into());
        }
        let writer = object.member();
        let entry = body.value.map(|value| {
            self.with_state(|s| StateEntry {
                key: body.key.clone(),
                value,
                version: object.rev,
                writer,
                writer_name: s.name_of(writer.as_key()),
                writer_session: object.author.session,
                updated_at_ms: object.at_ms,
            })
        });
        Ok(Some(Current {
            key: body.key,
            id: object.id,
            tag_epoch: body.tag_epoch,
            version: object.rev,
            written_at_ms: object.at_ms,
            entry,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_taken_as_typed_within_bounds() {
        validate_key("deploy/staging").unwrap();
        validate_key(" Spaced Key ").unwrap();
        assert!(validate_key("").is_err());
        assert!(validate_key("tab\there").is_err());
        assert!(validate_key(&"k".repeat(MAX_KEY + 1)).is_err());
        validate_key(&"k".repeat(MAX_KEY)).unwrap();
    }

    #[test]
    fn values_are_bounded_as_json_and_bodies_say_deleted_or_a_value() {
        validate_value(&serde_json::json!({"a": [1, 2, 3]})).unwrap();
        assert!(validate_value(&serde_json::json!("x".repeat(MAX_VALUE))).is_err());
        let set = EntryBody {
            key: "k".into(),
            value: Some(serde_json::json!(null)),
            deleted: false,
            tag_epoch: 2,
        };
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"{"key":"k","value":null,"tag_epoch":2}"#
        );
        let gone = EntryBody {
            key: "k".into(),
            value: None,
            deleted: true,
            tag_epoch: 2,
        };
        assert_eq!(
            serde_json::to_string(&gone).unwrap(),
            r#"{"key":"k","deleted":true,"tag_epoch":2}"#
        );
        // A null value reads back as a value, not as "deleted".
        let back: EntryBody =
            serde_json::from_str(r#"{"key":"k","value":null,"tag_epoch":2}"#).unwrap();
        assert_eq!(
            (back.value, back.deleted),
            (Some(serde_json::Value::Null), false)
        );
        let back: EntryBody =
            serde_json::from_str(r#"{"key":"k","deleted":true,"tag_epoch":2}"#).unwrap();
        assert_eq!((back.value, back.deleted), (None, true));
    }
}

//! The device's mirror of the coordination feed for tasks and shared state
//! ([`crate::local::StoredItem`]): syncing a kind's feed into it, page by
//! page, and verifying and opening what it holds when it is read (kind and
//! id as filed, signature, certificate, mesh, an author admitted by the
//! verified roster, a key of its epoch). What the objects mean is
//! [`crate::tasks`]' and [`crate::state`]'s business.

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::coord::{CoordKind, CoordObject};

use claudemesh_crypto::envelope::Target;
use claudemesh_proto::ErrorCode;
use claudemesh_proto::frames::CoordPage;

use crate::client::MeshClient;
use crate::error::ClientError;
use crate::local::StoredItem;
use crate::memory::{Opened, Standing, SyncPass, standing};

/// A sync that could not reach the broker is no failure for a read: the
/// device's copy is used as it is, and the log says so (`what` names it).
pub(crate) fn offline_ok(synced: Result<(), ClientError>, what: &str) -> Result<(), ClientError> {
    match synced {
        Err(e) if e.kind() == crate::error_kind::ErrorKind::Network => {
            tracing::info!(error = %e, "{what}: the broker cannot be reached; using this device's copy");
            Ok(())
        }
        r => r,
    }
}

impl MeshClient {
    /// Runs `attempt` (which seals under the current epoch's coordination
    /// key and sends) after rotating the mesh key when that falls to this
    /// member (as for a message to `*`); on a `rekey_required` answer (a
    /// rekey meanwhile) syncs the log and runs it once more. Every
    /// coordination write seals this way.
    pub(crate) async fn resealing<T, Fut>(
        &self,
        attempt: impl FnMut() -> Fut,
    ) -> Result<T, ClientError>
    where
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        self.resealing_in(None, attempt).await
    }

    /// [`MeshClient::resealing`] for an object sealed to `topic` when one
    /// is given: a private topic's key is rotated too when that falls to
    /// this member (a member left it).
    pub(crate) async fn resealing_in<T, Fut>(
        &self,
        topic: Option<&str>,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, ClientError>
    where
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut resealed = false;
        loop {
            self.session().rotate_keys_for(&Target::Broadcast).await?;
            if let Some(t) = topic {
                self.session()
                    .rotate_keys_for(&Target::Topic(t.to_owned()))
                    .await?;
            }
            match attempt().await {
                Err(ClientError::Refused {
                    code: ErrorCode::RekeyRequired,
                    ..
                }) if !resealed => {
                    resealed = true;
                    self.sync_log().await?;
                }
                r => return r,
            }
        }
    }

    /// Called with the first page of each sync of `kind`: when this device
    /// was sent withheld changes (an author's grants refused this member)
    /// and the mesh's grants have changed since, moves the feed back to
    /// the start and says so, so what a changed grant lets through is
    /// fetched again. A full sync, but only for a member that was refused
    /// something, once per change of anyone's grants.
    pub(crate) async fn rewound_for_grants(
        &self,
        kind: CoordKind,
        page: &CoordPage,
    ) -> Result<bool, ClientError> {
        let mesh = self.mesh().id;
        match self.local().coord_withheld(&mesh, kind).await? {
            Some(at) if at != page.grants => {
                tracing::debug!(kind = %kind, "coordination: grants changed since something was withheld; syncing again from the start");
                self.local().coord_rewind(&mesh, kind).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Called before a page of `kind` is applied: remembers the grants
    /// generation of any change in it that was withheld (the oldest such
    /// generation is kept until the feed is synced again from the start).
    pub(crate) async fn note_withheld(
        &self,
        kind: CoordKind,
        page: &CoordPage,
    ) -> Result<(), ClientError> {
        if page.changes.iter().any(|c| c.withheld) {
            self.local()
                .coord_mark_withheld(&self.mesh().id, kind, page.grants)
                .await?;
        }
        Ok(())
    }

    /// Brings this device's copy of the `kind` feed up to date.
    pub(crate) async fn mirror_sync(&self, kind: CoordKind) -> Result<(), ClientError> {
        let mesh = self.mesh().id;
        let mut after = self.local().coord_head(&mesh, kind).await?;
        let mut first = true;
        loop {
            let page = self.coord_page(kind, after).await?;
            if std::mem::take(&mut first) && self.rewound_for_grants(kind, &page).await? {
                after = 0;
                continue;
            }
            let mut changes = Vec::with_capacity(page.changes.len());
            for c in &page.changes {
                let id = c.id.to_hex();
                let row = match &c.object {
                    None => None,
                    Some(object) => Some(StoredItem {
                        item_id: id.clone(),
                        cseq: c.cseq,
                        object: to_json(object)?,
                        act: c.act.as_deref().map(to_json).transpose()?,
                        expires_at_ms: c.expires_at_ms,
                    }),
                };
                changes.push((id, row));
            }
            // Recorded first: a crash between the two at worst syncs
            // again from the start, never forgets what was withheld.
            self.note_withheld(kind, &page).await?;
            if !self
                .local()
                .coord_apply_page(&mesh, kind, after, page.head, &changes)
                .await?
            {
                // Another process sharing this store applied changes
                // meanwhile: go on from where it got to.
                after = self.local().coord_head(&mesh, kind).await?;
                continue;
            }
            if !page.more {
                return Ok(());
            }
            after = page.head;
        }
    }

    /// Whether `member` may have signed something sealed under `epoch`:
    /// admitted by the verified roster (the log synced once per pass when
    /// it is unknown), and not departed before that epoch.
    pub(crate) async fn author_known(
        &self,
        member: &PublicKey,
        epoch: u64,
        pass: &mut SyncPass,
    ) -> Result<bool, ClientError> {
        let mut where_ = self.with_state(|s| standing(s, member));
        if where_ == Standing::Unknown && !pass.log_synced {
            self.sync_log().await?;
            pass.log_synced = true;
            where_ = self.with_state(|s| standing(s, member));
        }
        Ok(match where_ {
            Standing::Member => true,
            Standing::Departed { last_epoch } => epoch <= last_epoch,
            Standing::Unknown => false,
        })
    }

    /// Whether the author of `object` may have sealed it: for a private
    /// topic's task, the roster admitted it and the topic's key of that key
    /// epoch was sealed to it; for a public topic's, or the mesh's,
    /// [`MeshClient::author_known`] at the object's mesh epoch. A topic
    /// this device's log does not have (after syncing it) admits no one.
    async fn author_may_have_sealed(
        &self,
        object: &CoordObject,
        pass: &mut SyncPass,
    ) -> Result<bool, ClientError> {
        /// What the roster says of the object's topic.
        enum Sealer {
            /// A private topic: whether its key of the object's key epoch
            /// was sealed to the author.
            Private(bool),
            /// A public topic: its key derives from the mesh's.
            Public,
            /// Not in this device's log.
            Unknown,
        }
        let author = object.member();
        let Some(topic) = object.topic() else {
            return self.author_known(author.as_key(), object.epoch, pass).await;
        };
        let sealer = |s: &crate::mesh::MeshState| match s.roster().topic(topic) {
            None => Sealer::Unknown,
            Some(info) if info.private => Sealer::Private(
                info.key_epochs
                    .get(&object.epoch)
                    .is_some_and(|ke| ke.seals.contains_key(author.as_key())),
            ),
            Some(_) => Sealer::Public,
        };
        let mut verdict = self.with_state(sealer);
        if matches!(verdict, Sealer::Unknown | Sealer::Private(false)) && !pass.log_synced {
            self.sync_log().await?;
            pass.log_synced = true;
            verdict = self.with_state(sealer);
        }
        match verdict {
            Sealer::Private(given) => {
                Ok(given && self.with_state(|s| standing(s, author.as_key())) != Standing::Unknown)
            }
            Sealer::Public => self.author_known(author.as_key(), object.epoch, pass).await,
            Sealer::Unknown => Ok(false),
        }
    }

    /// Verifies and opens one object of the mirrored feed: its kind and id
    /// as expected, signature, certificate and mesh, an author the roster
    /// admits; the object and its plaintext, or why not.
    pub(crate) async fn open_mirrored(
        &self,
        json: &str,
        id: &str,
        kinds: impl Fn(CoordKind) -> bool,
        pass: &mut SyncPass,
    ) -> Result<Result<(CoordObject, zeroize::Zeroizing<Vec<u8>>), String>, ClientError> {
        let Ok(object) = serde_json::from_str::<CoordObject>(json) else {
            return Ok(Err("it does not parse".into()));
        };
        if !kinds(object.kind) || object.id.to_hex() != id {
            return Ok(Err("it does not match its place in the feed".into()));
        }
        if let Err(e) = object.verify(&self.mesh().id) {
            return Ok(Err(e.to_string()));
        }
        if !self.author_may_have_sealed(&object, pass).await? {
            return Ok(Err(
                "its author is not a member by this device's log (or had left)".into(),
            ));
        }
        Ok(match self.open_sealed(&object, pass).await? {
            Opened::Plain(plain) => Ok((object, plain)),
            Opened::NoKey => Err("this device has no key of its epoch".into()),
            Opened::Failed(reason) => Err(reason),
        })
    }
}

/// Wire JSON of a feed object, as the mirror keeps it.
fn to_json(o: &CoordObject) -> Result<String, ClientError> {
    serde_json::to_string(o)
        .map_err(|e| ClientError::Local(format!("cannot store a coordination object: {e}")))
}

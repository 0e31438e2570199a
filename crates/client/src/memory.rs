//! Team memory (issue 17 item 4, `docs/security.md` §16): notes sealed to
//! the mesh, which the broker stores and cannot read, mirrored on each
//! device (`state.db`, [`crate::local`]) and searched there with SQLite
//! FTS5. This module owns what a note is ([`Note`], its plaintext
//! `{"text": …, "tags": […]}` and the rules of its input), the
//! [`MeshClient`] requests (`memory_remember`, `memory_recall`,
//! `memory_list`, `memory_note`, `memory_forget`, `memory_sync`), what a
//! device accepts from the feed, and the coordination key ring.
//!
//! A note is a [`CoordObject`] sealed under the *coordination key* of the
//! mesh epoch current when it was written ([`coord_key`] of that epoch's
//! root). A device accepts one from the feed when its author's session
//! signature and certificate verify for this mesh and the author is, or
//! was, a member by this device's verified roster (a departed author's notes
//! stay, marked [`Note::departed`]); it opens it with the key of its epoch.
//! Only a note that is provably bad (its signature, certificate or mesh do
//! not check, or it does not match its place in the feed) is dropped. Any
//! other note this device cannot show yet (no key of its epoch, it does not
//! open with the keys this device has, its author is not admitted by this
//! device's log, its contents do not read) is kept sealed, never shown, and
//! tried again on every sync: this device's log or key ring may be behind.
//! Either way it is counted [`MemorySync::unreadable`] (a kept one once, not
//! a note merely waiting for a key) and logged by id and reason.
//!
//! The key of an epoch comes from its root when this device holds it, else
//! from the key ring: a [`RingLink`] seals epoch N−1's coordination key under
//! epoch N's. A link is trusted only from the author of the rekey that began
//! epoch N, or from a current owner or admin; the rekey author's link is
//! tried first, then the others. A key from the ring is remembered beyond
//! one sync only once a note of its epoch opened with it, so one bad link
//! hides nothing for long. Each member who may writes the link of each epoch
//! whose two roots it holds, on its next sync, note or rekey, unless a
//! trusted link of that epoch already holds the right key, so a member who
//! joined later can read what was written before.
//!
//! Nothing here logs a note's text, a key or a ciphertext.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use claudemesh_crypto::coord::{
    CoordFacts, CoordId, CoordKind, CoordObject, MAX_COORD_PLAINTEXT, RingLink, SCOPE_MESH,
    coord_key, private_topic_coord_key, public_topic_coord_key, topic_scope,
};
use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::log::Role;
use claudemesh_crypto::{MemberKey, PublicKey, SessionKey, SymmetricKey};
use claudemesh_proto::frames::{
    CoordForget, CoordPage, CoordPut, CoordRingPut, CoordRingQuery, CoordSync,
};
use claudemesh_proto::sync::lock;
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::client::{MeshClient, now_ms};
use crate::error::{BadInput, ClientError, MissingKey};
use crate::error_kind::ErrorKind;
use crate::local::{MirrorChange, OpenedNote, StoredNote};
use crate::mesh::{MeshState, short};
use crate::session::unexpected;

/// Most bytes of a note's text (after trimming).
pub const MAX_NOTE_TEXT: usize = 8192;
/// Most tags on one note.
pub const MAX_TAGS: usize = 16;
/// Most bytes of one tag.
pub const MAX_TAG: usize = 32;
/// The fewest hex digits of a note id that name a note.
pub const MIN_ID_PREFIX: usize = 4;
/// Most words of a search that are looked for (the rest are ignored).
pub const MAX_QUERY_WORDS: usize = 32;
/// Most notes one listing or search returns.
pub const MAX_LIMIT: usize = 10_000;

/// A team memory note as this device can show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// Its id (32 hex digits in JSON).
    pub id: CoordId,
    /// The text.
    pub text: String,
    /// Its tags, lowercase.
    pub tags: Vec<String>,
    /// Its author member (hex in JSON).
    pub author: MemberKey,
    /// The author's display name, when this device knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
    /// The author's session that signed it (hex in JSON).
    pub author_session: SessionKey,
    /// The author's clock when it was written, unix ms.
    pub at_ms: u64,
    /// The author is no longer a member of the mesh.
    pub departed: bool,
}

/// What a [`MeshClient::memory_sync`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemorySync {
    /// Notes added (or replaced) in this device's copy, including ones kept
    /// from an earlier sync that could be opened now.
    pub added: usize,
    /// Notes forgotten (that this device held).
    pub forgotten: usize,
    /// Notes not shown because they failed a check (each is logged with
    /// its id and why): dropped ones (they do not verify), and ones newly
    /// kept sealed to try again later (their author unknown to this
    /// device's log, they do not open with the keys it has, or their
    /// contents do not read). A note merely waiting for a key of its epoch
    /// is not counted.
    pub unreadable: usize,
}

/// A note's plaintext, as sealed.
#[derive(Debug, Serialize, Deserialize)]
struct NoteBody {
    text: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// What this client remembers of the coordination keys between requests:
/// keys derived from roots or that opened a note of their epoch (never a
/// key from the ring that no note confirmed), and the epochs known to have a
/// trusted link holding the right key (checked or written by this member).
/// One sync at a time per client.
#[derive(Default)]
pub(crate) struct MemoryCache {
    keys: Mutex<BTreeMap<u64, SymmetricKey>>,
    linked: Mutex<BTreeSet<u64>>,
    sync: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache").finish_non_exhaustive()
    }
}

/// The trimmed text and the normalized tags of a note, or why not.
pub fn validate_note(text: &str, tags: &[String]) -> Result<(String, Vec<String>), ClientError> {
    let text = text.trim();
    let bad = |reason: String| ClientError::BadInput(BadInput::NoteText { reason });
    if text.is_empty() {
        return Err(bad("is empty".into()));
    }
    if text.len() > MAX_NOTE_TEXT {
        return Err(bad(format!(
            "is at most {MAX_NOTE_TEXT} bytes (this one is {})",
            text.len()
        )));
    }
    if text.contains('\0') {
        return Err(bad("may not contain a NUL character".into()));
    }
    Ok((text.to_owned(), normalize_tags(tags)?))
}

/// Tags as stored and matched: lowercase, each once, in the order given;
/// at most [`MAX_TAGS`], each 1 to [`MAX_TAG`] of `A-Z a-z 0-9 _ . -`.
pub fn normalize_tags(tags: &[String]) -> Result<Vec<String>, ClientError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let ok = !tag.is_empty()
            && tag.len() <= MAX_TAG
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(ClientError::BadInput(BadInput::NoteTag {
                tag: tag.clone(),
                max: MAX_TAG,
            }));
        }
        let tag = tag.to_ascii_lowercase();
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > MAX_TAGS {
        return Err(ClientError::BadInput(BadInput::NoteTags {
            given: out.len(),
            max: MAX_TAGS,
        }));
    }
    Ok(out)
}

/// The plaintext sealed for a note (already validated).
fn note_plaintext(text: &str, tags: &[String]) -> Result<Vec<u8>, ClientError> {
    let body = NoteBody {
        text: text.to_owned(),
        tags: tags.to_vec(),
    };
    let bytes = serde_json::to_vec(&body)
        .map_err(|e| ClientError::Local(format!("cannot encode the note: {e}")))?;
    if bytes.len() > MAX_COORD_PLAINTEXT {
        // Only control characters (escaped six bytes each) get it there.
        return Err(ClientError::BadInput(BadInput::NoteText {
            reason: format!(
                "is at most {MAX_COORD_PLAINTEXT} bytes once encoded (this one is {}: it has many control characters)",
                bytes.len()
            ),
        }));
    }
    Ok(bytes)
}

/// The FTS5 query for a user's free text: each word (a run of letters and
/// digits) quoted as a prefix term, any of them matching (`"staging"* OR
/// "port"*`), at most [`MAX_QUERY_WORDS`]. Nothing of the input but those
/// words reaches FTS5, so no input is FTS5 syntax.
pub fn fts_query(input: &str) -> Result<String, ClientError> {
    let mut words: Vec<String> = Vec::new();
    for w in input.split(|c: char| !c.is_alphanumeric()) {
        if w.is_empty() {
            continue;
        }
        let w = w.to_lowercase();
        if !words.contains(&w) {
            words.push(w);
        }
        if words.len() == MAX_QUERY_WORDS {
            break;
        }
    }
    if words.is_empty() {
        return Err(ClientError::BadInput(BadInput::MemoryQuery));
    }
    Ok(words
        .iter()
        .map(|w| format!("\"{w}\"*"))
        .collect::<Vec<_>>()
        .join(" OR "))
}

/// `input` as a note id or id prefix (lowercase): 4 to 32 hex digits.
pub fn id_prefix(input: &str) -> Result<String, ClientError> {
    let prefix = input.trim().to_ascii_lowercase();
    if prefix.len() < MIN_ID_PREFIX
        || prefix.len() > 32
        || !prefix.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(ClientError::BadInput(BadInput::NoteId {
            input: input.to_owned(),
        }));
    }
    Ok(prefix)
}

/// The note id among `matching` (the stored ids starting with `prefix`).
fn one_note(prefix: &str, matching: &[String]) -> Result<CoordId, ClientError> {
    match matching {
        [one] => CoordId::from_hex(one)
            .map_err(|e| ClientError::Local(format!("a stored memory note's id is damaged: {e}"))),
        [] => Err(ClientError::NotFound(format!(
            "no memory note {prefix}… (see claudemesh memory list)"
        ))),
        many => Err(ClientError::AmbiguousNote {
            prefix: prefix.to_owned(),
            candidates: many
                .iter()
                .map(|id| id.get(..12).unwrap_or(id).to_owned())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// A listing limit as the store takes it.
fn limit_of(limit: usize) -> u32 {
    u32::try_from(limit.min(MAX_LIMIT)).unwrap_or(u32::MAX)
}

/// An `unknown_type` answer to a memory request: the broker predates
/// team memory.
pub(crate) fn unsupported_if_unknown(e: ClientError) -> ClientError {
    match e {
        ClientError::Refused {
            code: ErrorCode::UnknownType,
            ..
        } => ClientError::MemoryUnsupported,
        e => e,
    }
}

/// Whether `e` is the broker not knowing a request (an older broker).
pub(crate) fn is_unknown_type(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Refused {
            code: ErrorCode::UnknownType,
            ..
        }
    )
}

/// Where an object's author stands in the verified roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// A member now.
    Member,
    /// A member once, gone since the epoch given (the last epoch it could
    /// hold a key of).
    Departed { last_epoch: u64 },
    /// Never admitted, as far as this device's log goes.
    Unknown,
}

pub(crate) fn standing(s: &MeshState, author: &PublicKey) -> Standing {
    let roster = s.roster();
    if roster.is_member(author) {
        return Standing::Member;
    }
    match roster.departed().get(author) {
        Some(d) => Standing::Departed {
            last_epoch: roster
                .key_epochs()
                .iter()
                .filter(|(_, ke)| ke.seq < d.seq)
                .map(|(e, _)| *e)
                .max()
                .unwrap_or(0),
        },
        None => Standing::Unknown,
    }
}

/// Whether a ring link may be trusted: it verifies for this mesh, and its
/// signer wrote the rekey that began its epoch or is an owner or admin now.
fn link_trusted(s: &MeshState, link: &RingLink) -> bool {
    if link.epoch == 0 || link.verify(&s.mesh_id()).is_err() {
        return false;
    }
    let signer = link.member();
    let roster = s.roster();
    roster
        .key_epochs()
        .get(&link.epoch)
        .is_some_and(|ke| ke.author == *signer.as_key())
        || matches!(
            roster.role_of(signer.as_key()),
            Some(Role::Owner | Role::Admin)
        )
}

/// What opening a verified coordination object gave.
pub(crate) enum Opened {
    /// Its plaintext (padding included).
    Plain(Zeroizing<Vec<u8>>),
    /// No key of its epoch on this device (yet).
    NoKey,
    /// It does not open: why.
    Failed(String),
}

/// A note's opened plaintext read as a note, or why not.
fn read_note(plain: &[u8]) -> Result<OpenedNote, String> {
    let Ok(body) = serde_json::from_slice::<NoteBody>(plain) else {
        return Err("its contents are not a memory note".into());
    };
    match validate_note(&body.text, &body.tags) {
        Ok((text, tags)) => Ok(OpenedNote { text, tags }),
        Err(_) => Err("its contents are not a well-formed memory note".into()),
    }
}

/// The row a verified object is kept as (sealed, until it opens).
fn stored(object: &CoordObject, cseq: u64) -> Result<StoredNote, ClientError> {
    Ok(StoredNote {
        note_id: object.id.to_hex(),
        author: object.author.member.to_hex(),
        session: object.author.session.to_hex(),
        epoch: object.epoch,
        at_ms: object.at_ms,
        cseq,
        opened: None,
        object: Some(
            serde_json::to_string(object)
                .map_err(|e| ClientError::Local(format!("cannot store a memory note: {e}")))?,
        ),
    })
}

/// A mirror row as shown, with the author's name and standing from the
/// verified roster now.
fn note_of(s: &MeshState, row: StoredNote) -> Result<Option<Note>, ClientError> {
    let Some(opened) = row.opened else {
        return Ok(None);
    };
    let damaged =
        |what: &str| ClientError::Local(format!("a stored memory note's {what} is damaged"));
    let id = CoordId::from_hex(&row.note_id).map_err(|_| damaged("id"))?;
    let author = PublicKey::from_hex(&row.author).map_err(|_| damaged("author"))?;
    let session = PublicKey::from_hex(&row.session).map_err(|_| damaged("session"))?;
    let name = s.name_of(&author);
    Ok(Some(Note {
        id,
        text: opened.text,
        tags: opened.tags,
        author: MemberKey(author),
        author_name: (name != short(&author)).then_some(name),
        author_session: SessionKey(session),
        at_ms: row.at_ms,
        departed: !s.roster().is_member(&author),
    }))
}

/// What one sync learns as it goes (the log synced once, the ring fetched
/// once, the keys the ring gives).
#[derive(Default)]
pub(crate) struct SyncPass {
    /// The membership log was synced during this pass.
    pub(crate) log_synced: bool,
    /// The trusted ring links, once fetched (`Some(empty)` from a broker
    /// without a ring).
    ring: Option<Vec<RingLink>>,
    /// The broker answered `unknown_type` to the ring.
    ring_unsupported: bool,
    /// Per epoch, the keys the trusted ring links give for it, the rekey
    /// author's first: candidates only, for this pass, until a note opens.
    candidates: BTreeMap<u64, Vec<SymmetricKey>>,
}

/// What becomes of one object of the feed.
enum Verdict {
    /// Opened: keep it, shown.
    Opened(StoredNote),
    /// Keep it sealed, not shown, and try again on every later sync; with
    /// why when it failed a check (counted unreadable when first kept),
    /// `None` when there is only no key of its epoch yet.
    Pending(StoredNote, Option<String>),
    /// Provably bad (it does not verify, or does not match its place in the
    /// feed): dropped, with why.
    Bad(String),
}

/// The trusted links of epoch `n` in the order they are tried: the one
/// signed by `author` (who wrote the rekey that began `n`) first.
fn links_of<'a>(ring: &'a [RingLink], n: u64, author: Option<&PublicKey>) -> Vec<&'a RingLink> {
    let mut links: Vec<&RingLink> = ring.iter().filter(|l| l.epoch == n).collect();
    links.sort_by_key(|l| Some(l.member().as_key()) != author);
    links
}

impl MeshClient {
    /// Writes a note for the whole mesh: sealed under the current epoch's
    /// coordination key, stored by the broker, and added to this device's
    /// copy. When the mesh key must rotate first it is rotated if that
    /// falls to this member (as for a message to `*`), and refused with
    /// who can otherwise; a `rekey_required` answer (a rekey meanwhile) is
    /// answered by syncing the log and sealing again, once.
    pub async fn memory_remember(&self, text: &str, tags: &[String]) -> Result<Note, ClientError> {
        let (text, tags) = validate_note(text, tags)?;
        let plaintext = note_plaintext(&text, &tags)?;
        let id = CoordId::random();
        let at_ms = now_ms();
        let plaintext = &plaintext;
        let (object, cseq) = self
            .resealing(|| async move {
                let object = self.with_state(|s| seal_note(s, id, at_ms, plaintext))?;
                let cseq = self.coord_put(object.clone()).await?;
                Ok((object, cseq))
            })
            .await?;
        let mut row = stored(&object, cseq)?;
        row.object = None;
        row.opened = Some(OpenedNote { text, tags });
        // Not stored if a sync (this process's, or another's on this
        // store) already applied this change or a later one: its
        // forgetting must not be undone.
        self.local().memory_put(&self.mesh().id, &row).await?;
        self.write_links_quietly(&mut SyncPass::default()).await;
        self.with_state(|s| note_of(s, row))?
            .ok_or_else(|| ClientError::Local("the note just stored cannot be read back".into()))
    }

    /// The notes matching `query` (any of its words, as a word prefix, in
    /// the text or tags), best match first, carrying every tag of `tags`,
    /// at most `limit`. Syncs first; when the broker cannot be reached, it
    /// searches this device's copy as it is (and logs that it did).
    pub async fn memory_recall(
        &self,
        query: &str,
        tags: &[String],
        limit: usize,
    ) -> Result<Vec<Note>, ClientError> {
        let q = fts_query(query)?;
        let tags = normalize_tags(tags)?;
        self.sync_or_offline().await?;
        let rows = self
            .local()
            .memory_search(&self.mesh().id, &q, &tags, limit_of(limit))
            .await?;
        self.notes_of(rows)
    }

    /// The notes carrying every tag of `tags`, newest first, at most
    /// `limit`. Syncs first, as [`MeshClient::memory_recall`].
    pub async fn memory_list(
        &self,
        tags: &[String],
        limit: usize,
    ) -> Result<Vec<Note>, ClientError> {
        let tags = normalize_tags(tags)?;
        self.sync_or_offline().await?;
        let rows = self
            .local()
            .memory_list(&self.mesh().id, &tags, limit_of(limit))
            .await?;
        self.notes_of(rows)
    }

    /// Forgets a note for everyone (its author, an owner or an admin may):
    /// named by its id or a prefix of at least [`MIN_ID_PREFIX`] hex digits
    /// that no other note on this device shares (after a sync). Returns its
    /// id.
    pub async fn memory_forget(&self, id_or_prefix: &str) -> Result<CoordId, ClientError> {
        let (id, _one) = self.synced_note_id(id_or_prefix).await?;
        self.memory_forget_id(id).await?;
        Ok(id)
    }

    /// Forgets the note `id` for everyone, as [`MeshClient::memory_forget`]
    /// does once it has named it: for a caller that already resolved the
    /// note ([`MeshClient::memory_note`]), so it is not synced twice.
    pub async fn memory_forget_id(&self, id: CoordId) -> Result<(), ClientError> {
        let mesh = self.mesh().id;
        let short_id = &id.to_hex()[..8];
        let frame = self
            .session()
            .request(
                |req| {
                    ClientFrame::CoordForget(CoordForget {
                        req: Some(req),
                        kind: CoordKind::Memory,
                        id,
                    })
                },
                "forget the memory note",
            )
            .await
            .map_err(|e| match unsupported_if_unknown(e) {
                ClientError::Refused {
                    code: ErrorCode::Forbidden,
                    ..
                } => ClientError::NotAllowed(format!(
                    "only the author of memory note {short_id}, an owner or an admin can forget it"
                )),
                ClientError::Refused {
                    code: ErrorCode::NotFound,
                    message,
                } => ClientError::NotFound(format!(
                    "the broker has no memory note {short_id}: {message}"
                )),
                e => e,
            });
        if let Err(ClientError::NotFound(_)) = &frame {
            // Gone there: gone here too.
            self.local().memory_remove(&mesh, &id.to_hex()).await?;
        }
        match frame? {
            BrokerFrame::CoordStored(s) if s.id == id => {
                self.local().memory_remove(&mesh, &id.to_hex()).await
            }
            other => Err(unexpected(&other)),
        }
    }

    /// One note, named as [`MeshClient::memory_forget`] names it (its id or
    /// a prefix of at least [`MIN_ID_PREFIX`] hex digits no other note on
    /// this device shares, after a sync), as this device opened it. A note
    /// this device holds but cannot open yet is `NotFound`.
    pub async fn memory_note(&self, id_or_prefix: &str) -> Result<Note, ClientError> {
        let mesh = self.mesh().id;
        let (id, _one) = self.synced_note_id(id_or_prefix).await?;
        let hex = id.to_hex();
        let short_id = hex.get(..8).unwrap_or(&hex);
        let Some(row) = self.local().memory_get(&mesh, &hex).await? else {
            return Err(ClientError::NotFound(format!(
                "no memory note {short_id}… (see claudemesh memory list)"
            )));
        };
        self.with_state(|s| note_of(s, row))?.ok_or_else(|| {
            ClientError::NotFound(format!(
                "memory note {short_id} cannot be opened on this device yet"
            ))
        })
    }

    /// The note named by `id_or_prefix` (see [`MeshClient::memory_forget`])
    /// among this device's notes, opened or not, after a sync; with the
    /// sync lock held, so no sync changes this device's copy until it is
    /// dropped.
    async fn synced_note_id(
        &self,
        id_or_prefix: &str,
    ) -> Result<(CoordId, tokio::sync::MutexGuard<'_, ()>), ClientError> {
        let prefix = id_prefix(id_or_prefix)?;
        self.memory_sync().await?;
        let one = self.memory_cache().sync.lock().await;
        let matching = self
            .local()
            .memory_ids_with_prefix(&self.mesh().id, &prefix, 8)
            .await?;
        Ok((one_note(&prefix, &matching)?, one))
    }

    /// Brings this device's copy of the team memory up to date: every
    /// change of the feed since the last sync (pages applied one
    /// transaction each, with the new feed position), then the notes kept
    /// sealed from earlier syncs that can be opened now; and writes the key
    /// ring links that fall to this member.
    pub async fn memory_sync(&self) -> Result<MemorySync, ClientError> {
        let _one = self.memory_cache().sync.lock().await;
        let mut pass = SyncPass::default();
        let mut out = MemorySync::default();
        self.pull_feed(&mut pass, &mut out).await?;
        self.open_pending(&mut pass, &mut out).await?;
        self.write_links_quietly(&mut pass).await;
        Ok(out)
    }

    /// Writes the key ring links that fall to this member and are missing
    /// (after a rekey this member wrote, say); failures are logged only.
    pub(crate) async fn memory_link_keys(&self) {
        self.write_links_quietly(&mut SyncPass::default()).await;
    }

    /// [`MeshClient::memory_sync`], or, when the broker cannot be reached,
    /// nothing (the local copy is used as it is).
    async fn sync_or_offline(&self) -> Result<(), ClientError> {
        match self.memory_sync().await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Network => {
                tracing::info!(error = %e, "team memory: the broker cannot be reached; using this device's copy");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Mirror rows as shown.
    fn notes_of(&self, rows: Vec<StoredNote>) -> Result<Vec<Note>, ClientError> {
        self.with_state(|s| {
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                if let Some(n) = note_of(s, row)? {
                    out.push(n);
                }
            }
            Ok(out)
        })
    }

    /// `coord_put`: returns the feed position the broker stored it as.
    async fn coord_put(&self, object: CoordObject) -> Result<u64, ClientError> {
        self.coord_put_object(object, "store the memory note").await
    }

    /// `coord_put` of any object (`what` names the request in errors).
    pub(crate) async fn coord_put_object(
        &self,
        object: CoordObject,
        what: &'static str,
    ) -> Result<u64, ClientError> {
        let id = object.id;
        let frame = self
            .session()
            .request(
                |req| {
                    ClientFrame::CoordPut(CoordPut {
                        req: Some(req),
                        object: Box::new(object),
                    })
                },
                what,
            )
            .await
            .map_err(unsupported_if_unknown)?;
        match frame {
            BrokerFrame::CoordStored(s) if s.id == id => Ok(s.cseq),
            other => Err(unexpected(&other)),
        }
    }

    /// `coord_sync` of `kind` after `after`, checked to be in order.
    pub(crate) async fn coord_page(
        &self,
        kind: CoordKind,
        after: u64,
    ) -> Result<CoordPage, ClientError> {
        let frame = self
            .session()
            .request(
                |req| {
                    ClientFrame::CoordSync(CoordSync {
                        req: Some(req),
                        kind,
                        after,
                    })
                },
                "send the coordination feed",
            )
            .await
            .map_err(unsupported_if_unknown)?;
        match frame {
            BrokerFrame::CoordPage(p) if p.kind == kind => {
                let in_order = p.head >= after
                    && p.changes.iter().all(|c| c.cseq > after && c.cseq <= p.head)
                    && !(p.more && p.head == after);
                if !in_order {
                    return Err(ClientError::Protocol(format!(
                        "the broker sent {kind} changes out of order"
                    )));
                }
                Ok(p)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Pages the feed from this device's position until the broker has no
    /// more, applying each page with its new position.
    async fn pull_feed(
        &self,
        pass: &mut SyncPass,
        out: &mut MemorySync,
    ) -> Result<(), ClientError> {
        let mesh = self.mesh().id;
        let mut after = self.local().coord_head(&mesh, CoordKind::Memory).await?;
        let mut first = true;
        loop {
            let page = self.coord_page(CoordKind::Memory, after).await?;
            if std::mem::take(&mut first)
                && self.rewound_for_grants(CoordKind::Memory, &page).await?
            {
                after = 0;
                continue;
            }
            let mut changes = Vec::with_capacity(page.changes.len());
            // Per change: kept sealed after failing a check.
            let mut failed = Vec::with_capacity(page.changes.len());
            let mut dropped = 0;
            for change in &page.changes {
                let id = change.id.to_hex();
                let Some(object) = &change.object else {
                    changes.push(MirrorChange::Remove(id));
                    failed.push(false);
                    continue;
                };
                match self.judge(change.id, change.cseq, object, pass).await? {
                    Verdict::Opened(row) => {
                        changes.push(MirrorChange::Put(row));
                        failed.push(false);
                    }
                    Verdict::Pending(row, reason) => {
                        if let Some(reason) = &reason {
                            tracing::warn!(id = %id, reason = %reason, "team memory: a note cannot be read yet; it is kept sealed, not shown, and tried again on every sync");
                        }
                        changes.push(MirrorChange::Put(row));
                        failed.push(reason.is_some());
                    }
                    Verdict::Bad(reason) => {
                        tracing::warn!(id = %id, reason = %reason, "team memory: a note cannot be trusted; it is dropped");
                        dropped += 1;
                        // Any earlier copy of it goes too.
                        changes.push(MirrorChange::Remove(id));
                        failed.push(false);
                    }
                }
            }
            // Recorded first, as for the other kinds.
            self.note_withheld(CoordKind::Memory, &page).await?;
            let Some(changed) = self
                .local()
                .memory_apply_page(&mesh, after, page.head, &changes)
                .await?
            else {
                // Another process sharing this device's store applied
                // changes meanwhile: go on from where it got to.
                after = self.local().coord_head(&mesh, CoordKind::Memory).await?;
                continue;
            };
            out.unreadable += dropped;
            for (((change, feed), changed), failed) in
                changes.iter().zip(&page.changes).zip(changed).zip(failed)
            {
                match change {
                    MirrorChange::Put(row) if changed && row.opened.is_some() => out.added += 1,
                    // Newly kept sealed after failing a check (one kept
                    // already is not counted again).
                    MirrorChange::Put(_) if changed && failed => out.unreadable += 1,
                    MirrorChange::Remove(_)
                        if changed && feed.object.is_none() && !feed.withheld =>
                    {
                        out.forgotten += 1;
                    }
                    _ => {}
                }
            }
            if !page.more {
                return Ok(());
            }
            after = page.head;
        }
    }

    /// What becomes of one object of the feed (at `cseq`, listed as `id`).
    async fn judge(
        &self,
        id: CoordId,
        cseq: u64,
        object: &CoordObject,
        pass: &mut SyncPass,
    ) -> Result<Verdict, ClientError> {
        if object.id != id || object.kind != CoordKind::Memory {
            return Ok(Verdict::Bad(
                "it does not match its place in the feed".into(),
            ));
        }
        if let Err(e) = object.verify(&self.mesh().id) {
            return Ok(Verdict::Bad(e.to_string()));
        }
        let row = stored(object, cseq)?;
        let author = *object.member().as_key();
        let mut where_ = self.with_state(|s| standing(s, &author));
        if where_ == Standing::Unknown && !pass.log_synced {
            // A member this device's log does not know yet.
            self.sync_log().await?;
            pass.log_synced = true;
            where_ = self.with_state(|s| standing(s, &author));
        }
        match where_ {
            Standing::Unknown => {
                return Ok(Verdict::Pending(
                    row,
                    Some("its author is not a member by this device's log".into()),
                ));
            }
            Standing::Departed { last_epoch } if object.epoch > last_epoch => {
                return Ok(Verdict::Pending(
                    row,
                    Some("it is sealed under a key made after its author left".into()),
                ));
            }
            Standing::Member | Standing::Departed { .. } => {}
        }
        match self.open_sealed(object, pass).await? {
            Opened::Plain(plain) => match read_note(&plain) {
                Ok(opened) => {
                    let mut row = row;
                    row.opened = Some(opened);
                    row.object = None;
                    Ok(Verdict::Opened(row))
                }
                Err(reason) => Ok(Verdict::Pending(row, Some(reason))),
            },
            Opened::NoKey => Ok(Verdict::Pending(row, None)),
            Opened::Failed(reason) => Ok(Verdict::Pending(row, Some(reason))),
        }
    }

    /// Tries the notes kept sealed by earlier syncs again (this device's
    /// log or keys may have caught up): opens those it can now, drops those
    /// that turn out provably bad, keeps the others.
    async fn open_pending(
        &self,
        pass: &mut SyncPass,
        out: &mut MemorySync,
    ) -> Result<(), ClientError> {
        let mesh = self.mesh().id;
        for row in self.local().memory_pending(&mesh).await? {
            let object: Option<CoordObject> = row
                .object
                .as_deref()
                .and_then(|o| serde_json::from_str(o).ok());
            let verdict = match object {
                Some(object) if object.id.to_hex() == row.note_id => {
                    self.judge(object.id, row.cseq, &object, pass).await?
                }
                _ => Verdict::Bad("the copy kept on this device is damaged".into()),
            };
            match verdict {
                Verdict::Opened(opened) => {
                    let Some(opened) = opened.opened else {
                        continue;
                    };
                    if self
                        .local()
                        .memory_opened(&mesh, &row.note_id, row.cseq, &opened)
                        .await?
                    {
                        out.added += 1;
                    }
                }
                Verdict::Pending(_, reason) => {
                    if let Some(reason) = reason {
                        tracing::debug!(id = %row.note_id, reason = %reason, "team memory: a note still cannot be read; kept sealed");
                    }
                }
                Verdict::Bad(reason) => {
                    tracing::warn!(id = %row.note_id, reason = %reason, "team memory: a note cannot be trusted; it is dropped");
                    self.local().memory_remove(&mesh, &row.note_id).await?;
                    out.unreadable += 1;
                }
            }
        }
        Ok(())
    }

    /// Opens a verified note with a key of its epoch: the remembered one
    /// (from its root, or one that opened a note of that epoch before),
    /// else each key the trusted ring links give, the rekey author's first.
    /// A key from the ring that opens it is remembered.
    pub(crate) async fn open_sealed(
        &self,
        object: &CoordObject,
        pass: &mut SyncPass,
    ) -> Result<Opened, ClientError> {
        if let Some(topic) = object.topic() {
            return self.open_topic_sealed(object, topic, pass).await;
        }
        let epoch = object.epoch;
        if !pass.log_synced && self.with_state(|s| epoch > s.roster().epoch()) {
            // Sealed under an epoch this device's log has not reached.
            self.sync_log().await?;
            pass.log_synced = true;
        }
        let (known, from_root) =
            self.with_state(
                |s| match s.root(epoch).map(|r| coord_key(r, &s.mesh_id())) {
                    Some(k) => (Some(k), true),
                    None => (lock(&self.memory_cache().keys).get(&epoch).cloned(), false),
                },
            );
        let mut tried = false;
        if let Some(key) = &known {
            tried = true;
            if let Ok(plain) = object.open(key) {
                lock(&self.memory_cache().keys).insert(epoch, key.clone());
                return Ok(Opened::Plain(plain));
            }
            if from_root {
                return Ok(Opened::Failed(
                    "it does not open with the key of its epoch".into(),
                ));
            }
        }
        for key in self.ring_keys(epoch, pass).await? {
            if known.as_ref() == Some(&key) {
                continue;
            }
            tried = true;
            if let Ok(plain) = object.open(&key) {
                // Confirmed: remembered, and the only candidate left.
                lock(&self.memory_cache().keys).insert(epoch, key.clone());
                pass.candidates.insert(epoch, vec![key]);
                return Ok(Opened::Plain(plain));
            }
        }
        Ok(if tried {
            Opened::Failed("it does not open with the keys this device has for its epoch".into())
        } else {
            Opened::NoKey
        })
    }

    /// Opens a verified object sealed to `topic`: a private topic's with
    /// the topic key of its key epoch (held only by those it was sealed
    /// to), a public one's with the topic coordination key derived from
    /// each mesh coordination key this device may hold for its epoch (the
    /// ring's included, so later joiners read older tasks).
    async fn open_topic_sealed(
        &self,
        object: &CoordObject,
        topic: &str,
        pass: &mut SyncPass,
    ) -> Result<Opened, ClientError> {
        let epoch = object.epoch;
        let behind = |s: &MeshState| match s.roster().topic(topic) {
            None => true,
            Some(info) if info.private => epoch > info.key_epoch,
            Some(_) => epoch > s.roster().epoch(),
        };
        if !pass.log_synced && self.with_state(behind) {
            // A topic, or a key of it, this device's log has not reached.
            self.sync_log().await?;
            pass.log_synced = true;
        }
        /// What this device holds to open the object, by its topic.
        enum TopicKey {
            /// The topic is not in this device's log.
            Unknown,
            /// A private topic: its coordination key of the object's key
            /// epoch, if its topic key was sealed to this member.
            Private(Option<SymmetricKey>),
            /// A public topic: derived from the mesh's coordination keys.
            Public,
        }
        let mesh = self.mesh().id;
        let held = self.with_state(|s| match s.roster().topic(topic) {
            None => TopicKey::Unknown,
            Some(info) if info.private => TopicKey::Private(
                s.private_topic_key(topic, epoch)
                    .map(|k| private_topic_coord_key(k, &mesh, topic, epoch)),
            ),
            Some(_) => TopicKey::Public,
        });
        let keys = match held {
            TopicKey::Unknown => {
                return Ok(Opened::Failed(format!(
                    "its topic #{topic} is not in this device's log"
                )));
            }
            TopicKey::Private(None) => return Ok(Opened::NoKey),
            TopicKey::Private(Some(key)) => vec![key],
            TopicKey::Public => self
                .coord_keys_of(epoch, pass)
                .await?
                .iter()
                .map(|k| public_topic_coord_key(k, &mesh, topic, epoch))
                .collect(),
        };
        if keys.is_empty() {
            return Ok(Opened::NoKey);
        }
        Ok(keys.iter().find_map(|k| object.open(k).ok()).map_or_else(
            || {
                Opened::Failed(format!(
                    "it does not open with the keys of #{topic} this device has for its epoch"
                ))
            },
            Opened::Plain,
        ))
    }

    /// The coordination keys this device may hold for `epoch`: the one from
    /// its root or confirmed earlier, else the candidates the trusted ring
    /// links give (unconfirmed: the caller checks what one opens or
    /// derives).
    pub(crate) async fn coord_keys_of(
        &self,
        epoch: u64,
        pass: &mut SyncPass,
    ) -> Result<Vec<SymmetricKey>, ClientError> {
        let known = self.with_state(|s| {
            s.root(epoch)
                .map(|r| coord_key(r, &s.mesh_id()))
                .or_else(|| lock(&self.memory_cache().keys).get(&epoch).cloned())
        });
        match known {
            Some(k) => Ok(vec![k]),
            None => self.ring_keys(epoch, pass).await,
        }
    }

    /// The keys the trusted ring links give for `epoch` (this device holds
    /// no root of it), best first: down the ring from the nearest later
    /// epoch whose key this device holds or confirmed, at each step the
    /// link of the rekey author first, then the other trusted links. Kept
    /// for this pass only.
    async fn ring_keys(
        &self,
        epoch: u64,
        pass: &mut SyncPass,
    ) -> Result<Vec<SymmetricKey>, ClientError> {
        if let Some(c) = pass.candidates.get(&epoch) {
            return Ok(c.clone());
        }
        let (top, authors) = self.with_state(|s| {
            let mesh = s.mesh_id();
            let roster = s.roster();
            let keys = lock(&self.memory_cache().keys);
            let top = (epoch.saturating_add(1)..=roster.epoch()).find_map(|n| {
                s.root(n)
                    .map(|r| coord_key(r, &mesh))
                    .or_else(|| keys.get(&n).cloned())
                    .map(|k| (n, k))
            });
            let authors: BTreeMap<u64, PublicKey> = roster
                .key_epochs()
                .range(epoch.saturating_add(1)..)
                .map(|(e, ke)| (*e, ke.author))
                .collect();
            (top, authors)
        });
        let Some((top, key)) = top else {
            return Ok(Vec::new());
        };
        let ring = self.ring(pass).await?;
        let mut keys = vec![key];
        for n in (epoch.saturating_add(1)..=top).rev() {
            // `keys` are the candidates of epoch n: the trusted links of n
            // give those of n − 1.
            let older = match pass.candidates.get(&(n - 1)) {
                Some(c) => c.clone(),
                None => {
                    let mut older: Vec<SymmetricKey> = Vec::new();
                    for link in links_of(&ring, n, authors.get(&n)) {
                        for k in &keys {
                            if let Ok(o) = link.open(k)
                                && !older.contains(&o)
                            {
                                older.push(o);
                            }
                        }
                    }
                    pass.candidates.insert(n - 1, older.clone());
                    older
                }
            };
            if older.is_empty() {
                return Ok(Vec::new());
            }
            keys = older;
        }
        Ok(keys)
    }

    /// The trusted ring links, fetched once per pass (none from a broker
    /// without a ring).
    async fn ring(&self, pass: &mut SyncPass) -> Result<Vec<RingLink>, ClientError> {
        if let Some(r) = &pass.ring {
            return Ok(r.clone());
        }
        let mut links: Vec<RingLink> = Vec::new();
        let mut after = 0;
        loop {
            let frame = self
                .session()
                .request(
                    |req| {
                        ClientFrame::CoordRing(CoordRingQuery {
                            req: Some(req),
                            after,
                        })
                    },
                    "send the coordination key ring",
                )
                .await;
            match frame {
                Ok(BrokerFrame::CoordRingPage(p)) => {
                    let next = p.links.last().map(|l| l.epoch);
                    links.extend(p.links);
                    // Pages hold whole epochs: go on after the last one,
                    // and stop if a page moved nowhere.
                    match next {
                        Some(n) if p.more && n > after => after = n,
                        _ => break,
                    }
                }
                Ok(other) => return Err(unexpected(&other)),
                Err(e) if is_unknown_type(&e) => {
                    pass.ring_unsupported = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let trusted: Vec<RingLink> =
            self.with_state(|s| links.into_iter().filter(|l| link_trusted(s, l)).collect());
        pass.ring = Some(trusted.clone());
        Ok(trusted)
    }

    /// [`MeshClient::write_links`], its failure logged only: a missing
    /// link delays later joiners, it loses nothing.
    async fn write_links_quietly(&self, pass: &mut SyncPass) {
        if let Err(e) = self.write_links(pass).await {
            tracing::warn!(error = %e, "team memory: could not write a coordination key ring link; will retry on the next sync");
        }
    }

    /// Writes a ring link for each epoch N ≥ 1 whose roots N − 1 and N this
    /// device holds, whose link falls to this member (it wrote the rekey
    /// that began N, or it is an owner or admin), and that has no trusted
    /// link holding the right key: each trusted link of N is opened with
    /// N's key and compared with N − 1's. The broker keeps one link per
    /// epoch and signer, so this member's goes beside a bad one.
    async fn write_links(&self, pass: &mut SyncPass) -> Result<(), ClientError> {
        let due: Vec<u64> = self.with_state(|s| {
            let me = s.my_key();
            let admin = s.is_admin();
            let linked = lock(&self.memory_cache().linked);
            (1..=s.roster().epoch())
                .filter(|n| !linked.contains(n))
                .filter(|n| s.root(n - 1).is_some() && s.root(*n).is_some())
                .filter(|n| {
                    admin
                        || s.roster()
                            .key_epochs()
                            .get(n)
                            .is_some_and(|ke| ke.author == me)
                })
                .collect()
        });
        if due.is_empty() {
            return Ok(());
        }
        let ring = self.ring(pass).await?;
        if pass.ring_unsupported {
            return Ok(());
        }
        for n in due {
            let link = self.with_state(|s| {
                let mesh = s.mesh_id();
                let (Some(newer), Some(older)) = (s.root(n), s.root(n - 1)) else {
                    return None;
                };
                let (newer, older) = (coord_key(newer, &mesh), coord_key(older, &mesh));
                let right = ring
                    .iter()
                    .filter(|l| l.epoch == n)
                    .any(|l| l.open(&newer).is_ok_and(|k| k == older));
                Some((!right).then(|| RingLink::seal(s.session(), n, &newer, &older, now_ms())))
            });
            let link = match link {
                None => continue,
                Some(None) => {
                    // A trusted link of n holds the right key already.
                    lock(&self.memory_cache().linked).insert(n);
                    continue;
                }
                Some(Some(link)) => link,
            };
            let frame = self
                .session()
                .request(
                    |req| {
                        ClientFrame::CoordRingPut(CoordRingPut {
                            req: Some(req),
                            link: Box::new(link),
                        })
                    },
                    "store a coordination key ring link",
                )
                .await;
            match frame {
                Ok(BrokerFrame::CoordRingStored(_)) => {
                    lock(&self.memory_cache().linked).insert(n);
                }
                Ok(other) => return Err(unexpected(&other)),
                Err(e) if is_unknown_type(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Seals a note's plaintext under the current epoch's coordination key,
/// signed as this session.
fn seal_note(
    s: &MeshState,
    id: CoordId,
    at_ms: u64,
    plaintext: &[u8],
) -> Result<CoordObject, ClientError> {
    let facts = CoordFacts {
        kind: CoordKind::Memory,
        id,
        rev: 1,
        at_ms,
    };
    seal_coord(s, facts, plaintext, |reason| {
        ClientError::BadInput(BadInput::NoteText { reason })
    })
}

/// Seals a coordination object's plaintext under the current epoch's
/// coordination key, signed as this session; `too_large` words a
/// plaintext that cannot be sealed (it is too large).
pub(crate) fn seal_coord(
    s: &MeshState,
    facts: CoordFacts,
    plaintext: &[u8],
    too_large: impl FnOnce(String) -> ClientError,
) -> Result<CoordObject, ClientError> {
    seal_coord_in(s, None, facts, plaintext, too_large)
}

/// [`seal_coord`] for `topic`'s members when one is given (a task sealed
/// to a topic), under that topic's current coordination key.
pub(crate) fn seal_coord_in(
    s: &MeshState,
    topic: Option<&str>,
    facts: CoordFacts,
    plaintext: &[u8],
    too_large: impl FnOnce(String) -> ClientError,
) -> Result<CoordObject, ClientError> {
    let (scope, epoch, key) = coord_sealing_key(s, topic)?;
    CoordObject::seal_in(s.session(), &scope, &key, epoch, facts, plaintext)
        .map_err(|e| too_large(format!("cannot be sealed: {e}")))
}

/// The scope, epoch and coordination key an object for `topic` (or the
/// whole mesh) is sealed under now: a public topic's key derives from the
/// mesh's of the current epoch, a private one's from the topic's own key of
/// its current key epoch. Only the topic's members seal to it.
fn coord_sealing_key(
    s: &MeshState,
    topic: Option<&str>,
) -> Result<(String, u64, SymmetricKey), ClientError> {
    let mesh = s.mesh_id();
    let current = || {
        let epoch = s.roster().epoch();
        s.root(epoch)
            .map(|root| (epoch, coord_key(root, &mesh)))
            .ok_or(ClientError::MissingKey(MissingKey::CurrentEpoch))
    };
    let Some(t) = topic else {
        let (epoch, key) = current()?;
        return Ok((SCOPE_MESH.to_owned(), epoch, key));
    };
    let info = s.roster().topic(t).ok_or_else(|| s.no_such_topic(t))?;
    if !info.members.contains_key(&s.my_key()) {
        let how = if info.private {
            format!("ask one of its members to add you: `claudemesh topic add {t} <your name>`")
        } else {
            format!("join it first: `claudemesh topic join {t}`")
        };
        return Err(ClientError::NotAllowed(format!(
            "you are not in #{t}: only its members see and take on its tasks; {how}"
        )));
    }
    if info.private {
        let (epoch, key) = s.sealing_key(&Target::Topic(t.to_owned()))?;
        return Ok((
            topic_scope(t),
            epoch,
            private_topic_coord_key(&key, &mesh, t, epoch),
        ));
    }
    let (epoch, key) = current()?;
    Ok((
        topic_scope(t),
        epoch,
        public_topic_coord_key(&key, &mesh, t, epoch),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_search_becomes_quoted_prefix_words_or_ed() {
        assert_eq!(
            fts_query("staging port").unwrap(),
            r#""staging"* OR "port"*"#
        );
        // FTS5 syntax in the input is only ever words.
        assert_eq!(
            fts_query(r#"port" OR x) NEAR(* -col:"#).unwrap(),
            r#""port"* OR "or"* OR "x"* OR "near"* OR "col"*"#
        );
        assert_eq!(
            fts_query("  Port, PORT; port.5433 ").unwrap(),
            r#""port"* OR "5433"*"#
        );
        assert_eq!(fts_query("café über").unwrap(), r#""café"* OR "über"*"#);
        for empty in ["", "   ", "\"*():-^", "…"] {
            let e = fts_query(empty).unwrap_err();
            assert!(
                matches!(e, ClientError::BadInput(BadInput::MemoryQuery)),
                "{empty:?}: {e}"
            );
            assert_eq!(e.kind(), ErrorKind::Usage);
        }
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(
            fts_query(&many).unwrap().matches(" OR ").count(),
            MAX_QUERY_WORDS - 1
        );
    }

    #[test]
    fn notes_are_trimmed_and_tags_lowercased_once() {
        let (text, t) = validate_note(
            "  the db is on 5433\n",
            &tags(&["Staging", "db", "staging", "a.b-c_d"]),
        )
        .unwrap();
        assert_eq!(text, "the db is on 5433");
        assert_eq!(t, tags(&["staging", "db", "a.b-c_d"]));
        let exact = "x".repeat(MAX_NOTE_TEXT);
        assert!(validate_note(&exact, &[]).is_ok());
        for bad in ["", "   \n", "a\0b", &"x".repeat(MAX_NOTE_TEXT + 1)] {
            let e = validate_note(bad, &[]).unwrap_err();
            assert!(
                matches!(e, ClientError::BadInput(BadInput::NoteText { .. })),
                "{e}"
            );
            assert_eq!(e.kind(), ErrorKind::Usage);
        }
        for bad in [
            "",
            "has space",
            "emoji😀",
            "#hash",
            &"t".repeat(MAX_TAG + 1),
        ] {
            let e = validate_note("ok", &tags(&[bad])).unwrap_err();
            assert!(
                matches!(e, ClientError::BadInput(BadInput::NoteTag { .. })),
                "{bad:?}: {e}"
            );
            assert_eq!(e.kind(), ErrorKind::Usage);
        }
        assert!(normalize_tags(&tags(&[&"t".repeat(MAX_TAG)])).is_ok());
        let sixteen: Vec<String> = (0..MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(normalize_tags(&sixteen).unwrap().len(), MAX_TAGS);
        let seventeen: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        let e = normalize_tags(&seventeen).unwrap_err();
        assert!(
            matches!(
                e,
                ClientError::BadInput(BadInput::NoteTags { given: 17, max: 16 })
            ),
            "{e}"
        );
    }

    #[test]
    fn the_plaintext_is_json_and_fits_a_coordination_object() {
        let p = note_plaintext("port 5433", &tags(&["db"])).unwrap();
        assert_eq!(p, br#"{"text":"port 5433","tags":["db"]}"#);
        // Padded as sealed, it still reads.
        let mut padded = p.clone();
        padded.resize(256, b' ');
        let body: NoteBody = serde_json::from_slice(&padded).unwrap();
        assert_eq!(
            (body.text.as_str(), body.tags),
            ("port 5433", tags(&["db"]))
        );
        // Control characters escape to six bytes each: too many do not fit.
        let text = format!("a{}b", "\u{1}".repeat(MAX_NOTE_TEXT - 2));
        let (text, t) = validate_note(&text, &[]).unwrap();
        let e = note_plaintext(&text, &t).unwrap_err();
        assert!(
            matches!(e, ClientError::BadInput(BadInput::NoteText { .. })),
            "{e}"
        );
    }

    #[test]
    fn a_note_is_named_by_its_id_or_a_unique_prefix() {
        assert_eq!(id_prefix(" ABCD ").unwrap(), "abcd");
        for bad in ["abc", "zzzz", "", &"a".repeat(33)] {
            let e = id_prefix(bad).unwrap_err();
            assert!(
                matches!(e, ClientError::BadInput(BadInput::NoteId { .. })),
                "{bad:?}"
            );
            assert_eq!(e.kind(), ErrorKind::Usage);
        }
        let a = CoordId([0xab; 16]).to_hex();
        let b = CoordId([0xac; 16]).to_hex();
        assert_eq!(
            one_note("ab", std::slice::from_ref(&a)).unwrap(),
            CoordId([0xab; 16])
        );
        let e = one_note("a", &[a, b]).unwrap_err();
        assert!(matches!(e, ClientError::AmbiguousNote { .. }), "{e}");
        assert_eq!(e.kind(), ErrorKind::Usage);
        let e = one_note("ffff", &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn a_note_serializes_with_hex_ids_and_keys() {
        let member = claudemesh_crypto::SigningKey::generate().public();
        let session = claudemesh_crypto::SigningKey::generate().public();
        let n = Note {
            id: CoordId([1; 16]),
            text: "t".into(),
            tags: vec![],
            author: MemberKey(member),
            author_name: None,
            author_session: SessionKey(session),
            at_ms: 5,
            departed: false,
        };
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["id"], CoordId([1; 16]).to_hex());
        assert_eq!(v["author"], member.to_hex());
        assert_eq!(v["author_session"], session.to_hex());
        assert_eq!(v["at_ms"], 5);
        assert!(v.get("author_name").is_none());
    }
}

//! Key epochs as the membership log records them — a mesh epoch's root key
//! or a private topic's key, sealed to each recipient, with the key
//! confirmation of the entry that made it — and opening them one by one: a
//! seal that does not open, or opens to a key that does not match the
//! confirmation, is a [`BadSeal`] naming the entry and its author, and never
//! keeps any other epoch from opening (`docs/security.md` §7.4).

use std::collections::BTreeMap;
use std::fmt;

use crate::boxes::SymmetricKey;
use crate::ids::MeshId;
use crate::keys::{PublicKey, SigningKey};

use super::entry::{KeyConfirm, Role, SealedRootKey};
use super::sign::{ConfirmContext, key_confirm, open_sealed_key};

/// One recipient's sealed copy of a key, and the entry that sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// `crypto_box_seal(key, x25519(recipient))`: 80 bytes.
    pub ciphertext: Vec<u8>,
    /// Who wrote the entry that sealed it.
    pub author: PublicKey,
    /// That entry's position.
    pub seq: u64,
}

/// One key epoch: the entry that began it, its confirmation, and the seals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEpoch {
    /// The entry that began it (`rekey`, `topic_create`, `topic_rekey`).
    pub seq: u64,
    /// Its author.
    pub author: PublicKey,
    /// The author's role when it wrote the entry.
    pub author_role: Role,
    /// The key confirmation the entry carries.
    pub confirm: KeyConfirm,
    /// Recipient → its seal (for a private topic, later `topic_join`s add
    /// seals to the current key epoch).
    pub seals: BTreeMap<PublicKey, Seal>,
}

impl KeyEpoch {
    /// A key epoch begun by entry `seq` of `author` (in role `author_role`).
    pub fn new(
        seq: u64,
        author: PublicKey,
        author_role: Role,
        confirm: KeyConfirm,
        sealed: &[SealedRootKey],
    ) -> Self {
        let mut epoch = KeyEpoch {
            seq,
            author,
            author_role,
            confirm,
            seals: BTreeMap::new(),
        };
        epoch.add_seals(sealed, author, seq);
        epoch
    }

    /// Adds seals written by entry `seq` of `author`.
    pub fn add_seals(&mut self, sealed: &[SealedRootKey], author: PublicKey, seq: u64) {
        for s in sealed {
            self.seals.insert(
                s.recipient,
                Seal {
                    ciphertext: s.ciphertext.clone(),
                    author,
                    seq,
                },
            );
        }
    }

    /// Opens my seal of this epoch, if there is one, and checks the key it
    /// holds against the confirmation.
    pub fn open(
        &self,
        mine: &SigningKey,
        mesh_id: &MeshId,
        scope: &SealScope,
    ) -> Option<Result<SymmetricKey, Box<BadSeal>>> {
        let seal = self.seals.get(&mine.public())?;
        let bad = |reason| {
            Box::new(BadSeal {
                scope: scope.clone(),
                author: seal.author,
                seq: seal.seq,
                reason,
            })
        };
        let key = match open_sealed_key(&seal.ciphertext, mine) {
            Ok(k) => k,
            Err(_) => return Some(Err(bad(BadSealReason::DoesNotOpen))),
        };
        if key_confirm(&key, mesh_id, scope.context()) != self.confirm {
            return Some(Err(bad(BadSealReason::ConfirmMismatch)));
        }
        Some(Ok(key))
    }
}

/// Which key a seal holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealScope {
    /// The root key of a mesh epoch.
    Mesh {
        /// The mesh epoch.
        epoch: u64,
    },
    /// A private topic's key of one key epoch.
    Topic {
        /// The topic name (without `#`).
        topic: String,
        /// The topic's key epoch.
        key_epoch: u64,
    },
}

impl SealScope {
    /// The confirmation context of this key.
    pub fn context(&self) -> ConfirmContext<'_> {
        match self {
            SealScope::Mesh { epoch } => ConfirmContext::Mesh { epoch: *epoch },
            SealScope::Topic { topic, key_epoch } => ConfirmContext::Topic {
                topic,
                key_epoch: *key_epoch,
            },
        }
    }
}

impl fmt::Display for SealScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealScope::Mesh { epoch } => write!(f, "mesh key of epoch {epoch}"),
            SealScope::Topic { topic, key_epoch } => {
                write!(f, "key of #{topic} (key epoch {key_epoch})")
            }
        }
    }
}

/// What is wrong with a seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadSealReason {
    /// It does not open with the recipient's key (garbage, or sealed to
    /// another key).
    DoesNotOpen,
    /// It opens, to a key that does not match the entry's confirmation.
    ConfirmMismatch,
}

impl fmt::Display for BadSealReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BadSealReason::DoesNotOpen => "does not open",
            BadSealReason::ConfirmMismatch => "holds a key that does not match its confirmation",
        })
    }
}

/// A key sealed to me that I cannot use: which key, and who sealed it where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("the {scope} sealed to this member in log entry {seq} by {} {reason}", &author.to_hex()[..8])]
pub struct BadSeal {
    /// Which key.
    pub scope: SealScope,
    /// The author of the entry that sealed it.
    pub author: PublicKey,
    /// That entry's position.
    pub seq: u64,
    /// What is wrong.
    pub reason: BadSealReason,
}

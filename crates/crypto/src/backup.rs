//! The `.cmb` backup format (TM9): a passphrase-encrypted file holding a
//! home's keys and settings. Argon2id derives the key; XChaCha20-Poly1305
//! encrypts, with the whole header (magic, version, KDF and its parameters,
//! salt, nonce) as associated data, so no header byte can be changed
//! without the file failing to open.
//!
//! Layout (big-endian integers), 55-byte header then ciphertext:
//!
//! ```text
//! "CMBK" | version u8 = 1 | kdf u8 = 1 (Argon2id v1.3) | m_cost_kib u32 |
//! t_cost u32 | parallelism u8 | salt[16] | nonce[24] | ciphertext ‖ tag[16]
//! ```
//!
//! The payload's format belongs to the caller (the client writes JSON).

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::keys::random_bytes;

/// File magic.
pub const BACKUP_MAGIC: &[u8; 4] = b"CMBK";
/// The format version this build writes and reads.
pub const BACKUP_VERSION: u8 = 1;
/// KDF identifier for Argon2id v1.3.
pub const KDF_ARGON2ID13: u8 = 1;
/// Header length in bytes.
pub const HEADER_BYTES: usize = 4 + 1 + 1 + 4 + 4 + 1 + 16 + 24;
/// Poly1305 tag length.
pub const TAG_BYTES: usize = 16;
/// Shortest passphrase accepted when writing.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// Least memory a new backup may use (64 MiB).
pub const MIN_M_COST_KIB: u32 = 64 * 1024;
/// Fewest passes a new backup may use.
pub const MIN_T_COST: u32 = 3;
/// Most memory a file may ask for when read (1 GiB): a hostile file must not
/// make us allocate without bound.
pub const MAX_M_COST_KIB: u32 = 1024 * 1024;
/// Most passes a file may ask for when read.
pub const MAX_T_COST: u32 = 16;

/// Why a backup could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    /// The file does not start with `CMBK`.
    #[error("not a claudemesh backup (.cmb) file")]
    NotABackup,
    /// A format version this build does not know.
    #[error("backup format version {0} is not supported by this claudemesh; upgrade it")]
    UnsupportedVersion(u8),
    /// An unknown key-derivation function.
    #[error("backup uses unknown key-derivation function {0}")]
    UnsupportedKdf(u8),
    /// KDF parameters outside what this build accepts.
    #[error("backup key-derivation parameters are out of range ({0})")]
    ParametersOutOfRange(&'static str),
    /// Shorter than a header plus a tag.
    #[error("backup file is truncated")]
    Truncated,
    /// The AEAD tag does not verify.
    #[error("wrong passphrase, or the backup file is corrupted (the two cannot be told apart)")]
    WrongPassphraseOrCorrupted,
    /// Passphrase shorter than 12 characters.
    #[error("passphrase must be at least 12 characters")]
    PassphraseTooShort,
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes (always 1, as libsodium).
    pub parallelism: u8,
}

impl Default for BackupParams {
    /// 256 MiB, 3 passes, 1 lane: libsodium's `MODERATE` cost, about 0.6 s
    /// on the 2-core reference machine (see `docs/benchmarks.md`).
    fn default() -> Self {
        BackupParams {
            m_cost_kib: 256 * 1024,
            t_cost: 3,
            parallelism: 1,
        }
    }
}

impl BackupParams {
    fn check_readable(&self) -> Result<(), BackupError> {
        if self.parallelism != 1 {
            return Err(BackupError::ParametersOutOfRange("parallelism must be 1"));
        }
        if self.m_cost_kib < 8 || self.m_cost_kib > MAX_M_COST_KIB {
            return Err(BackupError::ParametersOutOfRange("memory above 1 GiB"));
        }
        if self.t_cost == 0 || self.t_cost > MAX_T_COST {
            return Err(BackupError::ParametersOutOfRange("more than 16 passes"));
        }
        Ok(())
    }
}

/// The parsed header of a `.cmb` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupHeader {
    /// KDF parameters.
    pub params: BackupParams,
    /// Argon2id salt.
    pub salt: [u8; 16],
    /// XChaCha20-Poly1305 nonce.
    pub nonce: [u8; 24],
}

impl BackupHeader {
    /// The 55 header bytes (also the AEAD associated data).
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[..4].copy_from_slice(BACKUP_MAGIC);
        out[4] = BACKUP_VERSION;
        out[5] = KDF_ARGON2ID13;
        out[6..10].copy_from_slice(&self.params.m_cost_kib.to_be_bytes());
        out[10..14].copy_from_slice(&self.params.t_cost.to_be_bytes());
        out[14] = self.params.parallelism;
        out[15..31].copy_from_slice(&self.salt);
        out[31..55].copy_from_slice(&self.nonce);
        out
    }

    /// Parses and range-checks the header of `file` (before any slow work).
    pub fn parse(file: &[u8]) -> Result<Self, BackupError> {
        if file.len() < 4 || &file[..4] != BACKUP_MAGIC {
            return Err(BackupError::NotABackup);
        }
        if file.len() < 5 {
            return Err(BackupError::Truncated);
        }
        if file[4] != BACKUP_VERSION {
            return Err(BackupError::UnsupportedVersion(file[4]));
        }
        if file.len() < HEADER_BYTES + TAG_BYTES {
            return Err(BackupError::Truncated);
        }
        if file[5] != KDF_ARGON2ID13 {
            return Err(BackupError::UnsupportedKdf(file[5]));
        }
        let u32_at =
            |i: usize| u32::from_be_bytes([file[i], file[i + 1], file[i + 2], file[i + 3]]);
        let params = BackupParams {
            m_cost_kib: u32_at(6),
            t_cost: u32_at(10),
            parallelism: file[14],
        };
        params.check_readable()?;
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&file[15..31]);
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&file[31..55]);
        Ok(BackupHeader {
            params,
            salt,
            nonce,
        })
    }
}

/// A key derived from a passphrase. Zeroized on drop, never printed.
pub struct BackupKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupKey(<redacted>)")
    }
}

/// The slow step: Argon2id(passphrase, salt, params) → 32 bytes. Separate so
/// a caller can run it on a thread while showing progress.
pub fn derive_backup_key(
    passphrase: &str,
    header: &BackupHeader,
) -> Result<BackupKey, BackupError> {
    header.params.check_readable()?;
    let params = Params::new(
        header.params.m_cost_kib,
        header.params.t_cost,
        u32::from(header.params.parallelism),
        Some(32),
    )
    .map_err(|_| BackupError::ParametersOutOfRange("rejected by Argon2"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), &header.salt, key.as_mut())
        .map_err(|_| BackupError::ParametersOutOfRange("rejected by Argon2"))?;
    Ok(BackupKey(key))
}

fn cipher(key: &BackupKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&(*key.0).into())
}

/// A fresh header (random salt and nonce) for `params`, enforcing the
/// minimums for new backups.
pub fn new_header(params: BackupParams) -> Result<BackupHeader, BackupError> {
    if params.m_cost_kib < MIN_M_COST_KIB || params.t_cost < MIN_T_COST {
        return Err(BackupError::ParametersOutOfRange(
            "new backups need at least 64 MiB and 3 passes",
        ));
    }
    params.check_readable()?;
    Ok(BackupHeader {
        params,
        salt: random_bytes(),
        nonce: random_bytes(),
    })
}

/// Encrypts `payload` under a key already derived for `header`.
pub fn seal_with_key(header: &BackupHeader, key: &BackupKey, payload: &[u8]) -> Vec<u8> {
    let aad = header.to_bytes();
    let nonce = XNonce::from(header.nonce);
    let ct = match cipher(key).encrypt(
        &nonce,
        Payload {
            msg: payload,
            aad: &aad,
        },
    ) {
        Ok(ct) => ct,
        // Only fails for payloads above 256 GiB.
        Err(_) => unreachable!("XChaCha20-Poly1305 encrypts any in-memory payload"),
    };
    let mut out = Vec::with_capacity(HEADER_BYTES + ct.len());
    out.extend_from_slice(&aad);
    out.extend_from_slice(&ct);
    out
}

/// Decrypts a file whose header was parsed into `header`, with its key.
pub fn open_with_key(
    header: &BackupHeader,
    key: &BackupKey,
    file: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    if file.len() < HEADER_BYTES + TAG_BYTES {
        return Err(BackupError::Truncated);
    }
    let aad = header.to_bytes();
    if file[..HEADER_BYTES] != aad {
        return Err(BackupError::WrongPassphraseOrCorrupted);
    }
    let nonce = XNonce::from(header.nonce);
    cipher(key)
        .decrypt(
            &nonce,
            Payload {
                msg: &file[HEADER_BYTES..],
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| BackupError::WrongPassphraseOrCorrupted)
}

/// Writes a backup of `payload` (passphrase ≥ 12 characters).
pub fn seal_backup(
    passphrase: &str,
    payload: &[u8],
    params: BackupParams,
) -> Result<Vec<u8>, BackupError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(BackupError::PassphraseTooShort);
    }
    let header = new_header(params)?;
    let key = derive_backup_key(passphrase, &header)?;
    Ok(seal_with_key(&header, &key, payload))
}

/// Reads a backup. A wrong passphrase and a corrupted file give the same error.
pub fn open_backup(passphrase: &str, file: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    let header = BackupHeader::parse(file)?;
    let key = derive_backup_key(passphrase, &header)?;
    open_with_key(&header, &key, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = "correct horse battery";

    /// Cheap parameters for tests (below the write minimum, within read range).
    fn small(payload: &[u8]) -> Vec<u8> {
        let header = BackupHeader {
            params: BackupParams {
                m_cost_kib: 8 * 1024,
                t_cost: 1,
                parallelism: 1,
            },
            salt: random_bytes(),
            nonce: random_bytes(),
        };
        let key = derive_backup_key(PASS, &header).unwrap();
        seal_with_key(&header, &key, payload)
    }

    #[test]
    fn default_roundtrip() {
        let file = seal_backup(PASS, b"{\"keys\":1}", BackupParams::default()).unwrap();
        assert_eq!(&open_backup(PASS, &file).unwrap()[..], b"{\"keys\":1}");
        let h = BackupHeader::parse(&file).unwrap();
        assert_eq!(h.params, BackupParams::default());
    }

    #[test]
    fn wrong_passphrase_and_short_passphrase() {
        let file = small(b"data");
        assert_eq!(
            open_backup("not the passphrase", &file).unwrap_err(),
            BackupError::WrongPassphraseOrCorrupted
        );
        assert_eq!(
            seal_backup("short", b"x", BackupParams::default()).unwrap_err(),
            BackupError::PassphraseTooShort
        );
    }

    #[test]
    fn every_header_byte_is_authenticated() {
        let file = small(b"payload");
        for i in 0..HEADER_BYTES {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(open_backup(PASS, &bad).is_err(), "byte {i} not covered");
        }
        let mut bad = file.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            open_backup(PASS, &bad).unwrap_err(),
            BackupError::WrongPassphraseOrCorrupted
        );
    }

    #[test]
    fn truncation_and_foreign_files() {
        let file = small(b"payload");
        assert_eq!(open_backup(PASS, b"").unwrap_err(), BackupError::NotABackup);
        assert_eq!(
            open_backup(PASS, b"PK\x03\x04 zip").unwrap_err(),
            BackupError::NotABackup
        );
        assert_eq!(
            open_backup(PASS, &file[..4]).unwrap_err(),
            BackupError::Truncated
        );
        assert_eq!(
            open_backup(PASS, &file[..40]).unwrap_err(),
            BackupError::Truncated
        );
        assert_eq!(
            open_backup(PASS, &file[..HEADER_BYTES + 15]).unwrap_err(),
            BackupError::Truncated
        );
        assert_eq!(
            open_backup(PASS, &file[..file.len() - 1]).unwrap_err(),
            BackupError::WrongPassphraseOrCorrupted
        );
    }

    #[test]
    fn unknown_versions_and_hostile_parameters_fail_before_deriving() {
        let file = small(b"x");
        let mut v = file.clone();
        v[4] = 2;
        assert_eq!(
            open_backup(PASS, &v).unwrap_err(),
            BackupError::UnsupportedVersion(2)
        );
        let mut k = file.clone();
        k[5] = 7;
        assert_eq!(
            open_backup(PASS, &k).unwrap_err(),
            BackupError::UnsupportedKdf(7)
        );
        let mut m = file.clone();
        m[6..10].copy_from_slice(&(4u32 * 1024 * 1024).to_be_bytes()); // 4 GiB
        assert!(matches!(
            open_backup(PASS, &m).unwrap_err(),
            BackupError::ParametersOutOfRange(_)
        ));
        let mut t = file.clone();
        t[10..14].copy_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(
            open_backup(PASS, &t).unwrap_err(),
            BackupError::ParametersOutOfRange(_)
        ));
        let mut p = file;
        p[14] = 4;
        assert!(matches!(
            open_backup(PASS, &p).unwrap_err(),
            BackupError::ParametersOutOfRange(_)
        ));
    }

    #[test]
    fn new_backups_enforce_minimum_cost() {
        let weak = BackupParams {
            m_cost_kib: 1024,
            t_cost: 1,
            parallelism: 1,
        };
        assert!(matches!(
            seal_backup(PASS, b"x", weak),
            Err(BackupError::ParametersOutOfRange(_))
        ));
    }
}

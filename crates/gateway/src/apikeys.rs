//! The gateway's API keys: issuing one (printed once, only a hash kept),
//! listing, revoking, and checking a bearer token and its scope (one mesh,
//! capabilities, optionally some topics). Keys live in the home's
//! `state.db` (mode 0600), table `api_keys`.
//!
//! A key reads `cmk_<prefix>_<secret>`: the prefix (12 hex digits) names
//! it in lists, revocations and the audit log; the secret is 256 random
//! bits. The secret is stored as its SHA-256, which is enough for a
//! uniformly random secret (no password to stretch), and compared in
//! constant time.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claudemesh_crypto::MeshId;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqlitePool;
use sqlx::{Row, sqlite::SqliteRow};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The columns of an [`ApiKeyInfo`], as a literal so each query stays a
/// `&'static str` (sqlx 0.9 takes no built strings).
macro_rules! select_info {
    ($($rest:literal)?) => {
        concat!(
            "SELECT prefix, label, mesh_id, caps, topics, created_at, expires_at, ",
            "last_used_at, revoked_at, secret_hash FROM api_keys"
            $(, " ", $rest)?
        )
    };
}

/// What every key starts with, so a leaked one is recognisable (secret
/// scanners, logs) and cannot be mistaken for another kind of token.
pub const KEY_SCHEME: &str = "cmk_";
/// Hex digits in a key's public prefix.
const PREFIX_HEX: usize = 12;
/// A last-use time is written at most this often per key, so a busy
/// script does not turn every request into a database write.
const LAST_USED_EVERY_MS: u64 = 60_000;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cap {
    /// Read messages, topics, peers, events.
    Read,
    /// Send messages and post to topics, mark messages read.
    Send,
    /// Create, join and leave topics and groups; set the profile.
    Admin,
}

impl Cap {
    /// The word used on the command line, in lists and in errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Cap::Read => "read",
            Cap::Send => "send",
            Cap::Admin => "admin",
        }
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Cap {
    type Err = ApiKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "read" => Ok(Cap::Read),
            "send" => Ok(Cap::Send),
            "admin" => Ok(Cap::Admin),
            other => Err(ApiKeyError::UnknownCap(other.to_owned())),
        }
    }
}

/// A set of capabilities, as `read,send` on the command line and in the
/// table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Caps(BTreeSet<Cap>);

impl Caps {
    /// Whether the set holds `cap`.
    pub fn has(&self, cap: Cap) -> bool {
        self.0.contains(&cap)
    }

    /// The capabilities, in order.
    pub fn iter(&self) -> impl Iterator<Item = Cap> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<Cap> for Caps {
    fn from_iter<I: IntoIterator<Item = Cap>>(iter: I) -> Self {
        Caps(iter.into_iter().collect())
    }
}

impl FromStr for Caps {
    type Err = ApiKeyError;
    /// `read,send,admin` (any order, at least one).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let caps: Caps = s
            .split(',')
            .filter(|w| !w.trim().is_empty())
            .map(Cap::from_str)
            .collect::<Result<_, _>>()?;
        if caps.0.is_empty() {
            return Err(ApiKeyError::NoCaps);
        }
        Ok(caps)
    }
}

impl fmt::Display for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<&str> = self.iter().map(Cap::as_str).collect();
        f.write_str(&words.join(","))
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// A capability other than read, send or admin.
    #[error("unknown capability {0:?} (use read, send, admin)")]
    UnknownCap(String),
    /// `--cap` named nothing.
    #[error("a key needs at least one capability (read, send, admin)")]
    NoCaps,
    /// An empty or overlong label.
    #[error("a key's label must be 1 to 64 characters, without control characters")]
    BadLabel,
    /// A topic scope that is not a topic name.
    #[error("{0:?} is not a topic name")]
    BadTopic(String),
    /// No key with that prefix (or it was already revoked).
    #[error("no active API key {prefix}")]
    NotFound {
        /// The prefix asked for.
        prefix: String,
    },
    /// The operating system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
    /// A row that does not read back.
    #[error("the API key table is damaged: {0}")]
    Damaged(String),
    /// The database failed.
    #[error("the local database failed: {0}")]
    Db(#[from] sqlx::Error),
}

/// Why a bearer token is refused. The four are told apart only after the
/// secret matched: a wrong secret and an unknown prefix read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not `cmk_<prefix>_<secret>`.
    #[error("the API key is malformed")]
    Malformed,
    /// No key with that prefix, or the secret does not match.
    #[error("the API key is not valid")]
    Unknown,
    /// The key was revoked.
    #[error("the API key was revoked")]
    Revoked,
    /// The key's time ran out.
    #[error("the API key has expired")]
    Expired,
}

/// What a new key may do, as `apikey create` takes it.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// A name for people (`ci-bot`).
    pub label: String,
    /// The one mesh it acts in.
    pub mesh: MeshId,
    /// Its capabilities.
    pub caps: Caps,
    /// The topics it is limited to; empty for all.
    pub topics: Vec<String>,
    /// When it stops working, unix ms.
    pub expires_at: Option<u64>,
}

/// A key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    /// `cmk_<12 hex>`: names the key.
    pub prefix: String,
    /// Its label.
    pub label: String,
    /// The mesh it acts in.
    pub mesh: MeshId,
    /// Its capabilities.
    pub caps: Caps,
    /// The topics it is limited to; empty for all.
    pub topics: Vec<String>,
    /// Created, unix ms.
    pub created_at: u64,
    /// Expires, unix ms.
    pub expires_at: Option<u64>,
    /// Last used (to the minute), unix ms.
    pub last_used_at: Option<u64>,
    /// Revoked, unix ms.
    pub revoked_at: Option<u64>,
}

impl ApiKeyInfo {
    /// Whether the key holds `cap`.
    pub fn allows(&self, cap: Cap) -> bool {
        self.caps.has(cap)
    }

    /// Whether the key may see or post to `topic` (any, if it names none).
    pub fn allows_topic(&self, topic: &str) -> bool {
        self.topics.is_empty() || self.topics.iter().any(|t| t == topic)
    }

    /// Whether it is limited to some topics (then direct messages, groups
    /// and broadcasts are out of its scope).
    pub fn topic_scoped(&self) -> bool {
        !self.topics.is_empty()
    }
}

/// A key just issued: the only time its full text exists.
#[derive(Debug)]
pub struct IssuedKey {
    /// What `list` will show.
    pub info: ApiKeyInfo,
    /// `cmk_<prefix>_<secret>`, to print once.
    pub token: Zeroizing<String>,
}

/// The key table of one home.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    pool: SqlitePool,
}

impl ApiKeys {
    /// The keys in the home's local store (see `LocalStore::pool`).
    pub fn new(pool: SqlitePool) -> Self {
        ApiKeys { pool }
    }

    /// Issues a key; its text is returned once and never stored.
    pub async fn create(&self, new: NewKey, now_ms: u64) -> Result<IssuedKey, ApiKeyError> {
        let label = new.label.trim().to_owned();
        if label.is_empty() || label.chars().count() > 64 || label.chars().any(char::is_control) {
            return Err(ApiKeyError::BadLabel);
        }
        let topics = topic_scope(new.topics)?;
        if new.caps.0.is_empty() {
            return Err(ApiKeyError::NoCaps);
        }
        let mut raw = Zeroizing::new([0u8; PREFIX_HEX / 2 + 32]);
        getrandom::fill(raw.as_mut_slice()).map_err(|e| ApiKeyError::Random(e.to_string()))?;
        let (id, secret) = raw.split_at(PREFIX_HEX / 2);
        let prefix = format!("{KEY_SCHEME}{}", hex::encode(id));
        let token = Zeroizing::new(format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(secret)));
        sqlx::query(
            "INSERT INTO api_keys (prefix, secret_hash, label, mesh_id, caps, topics, \
             created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&prefix)
        .bind(&Sha256::digest(secret)[..])
        .bind(&label)
        .bind(&new.mesh.as_bytes()[..])
        .bind(new.caps.to_string())
        .bind(topics_json(&topics)?)
        .bind(as_db(now_ms))
        .bind(new.expires_at.map(as_db))
        .execute(&self.pool)
        .await?;
        Ok(IssuedKey {
            info: ApiKeyInfo {
                prefix,
                label,
                mesh: new.mesh,
                caps: new.caps,
                topics,
                created_at: now_ms,
                expires_at: new.expires_at,
                last_used_at: None,
                revoked_at: None,
            },
            token,
        })
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn list(&self) -> Result<Vec<ApiKeyInfo>, ApiKeyError> {
        let rows = sqlx::query(select_info!("ORDER BY created_at, prefix"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(info_from_row).collect()
    }

    /// Revokes the active key named `prefix` (`cmk_…`, or its 12 hex
    /// digits alone).
    pub async fn revoke(&self, prefix: &str, now_ms: u64) -> Result<ApiKeyInfo, ApiKeyError> {
        let prefix = prefix_of(prefix);
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL",
        )
        .bind(as_db(now_ms))
        .bind(&prefix)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(ApiKeyError::NotFound { prefix });
        }
        self.get(&prefix)
            .await?
            .ok_or(ApiKeyError::NotFound { prefix })
    }

    /// The key behind a bearer token, if it is valid now; records its use
    /// (to the minute).
    pub async fn authenticate(
        &self,
        token: &str,
        now_ms: u64,
    ) -> Result<Result<ApiKeyInfo, AuthError>, ApiKeyError> {
        let Some((prefix, secret)) = split_token(token) else {
            return Ok(Err(AuthError::Malformed));
        };
        let presented = Sha256::digest(&secret[..]);
        let row = sqlx::query(select_info!("WHERE prefix = ?"))
            .bind(prefix)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(Err(AuthError::Unknown));
        };
        let stored: Vec<u8> = row.try_get("secret_hash")?;
        if !bool::from(stored.as_slice().ct_eq(&presented[..])) {
            return Ok(Err(AuthError::Unknown));
        }
        let info = info_from_row(&row)?;
        if info.revoked_at.is_some() {
            return Ok(Err(AuthError::Revoked));
        }
        if info.expires_at.is_some_and(|t| t <= now_ms) {
            return Ok(Err(AuthError::Expired));
        }
        if info
            .last_used_at
            .is_none_or(|t| now_ms.saturating_sub(t) >= LAST_USED_EVERY_MS)
        {
            sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE prefix = ?")
                .bind(as_db(now_ms))
                .bind(prefix)
                .execute(&self.pool)
                .await?;
        }
        Ok(Ok(info))
    }

    async fn get(&self, prefix: &str) -> Result<Option<ApiKeyInfo>, ApiKeyError> {
        let row = sqlx::query(select_info!("WHERE prefix = ?"))
            .bind(prefix)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(info_from_row).transpose()
    }
}

/// `cmk_<12 hex>_<43 base64url>` split into its prefix and 32-byte secret.
fn split_token(token: &str) -> Option<(&str, Zeroizing<Vec<u8>>)> {
    let rest = token.strip_prefix(KEY_SCHEME)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != PREFIX_HEX || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let secret = Zeroizing::new(URL_SAFE_NO_PAD.decode(secret).ok()?);
    if secret.len() != 32 {
        return None;
    }
    Some((&token[..KEY_SCHEME.len() + PREFIX_HEX], secret))
}

/// The key a user named, as `cmk_<hex>`: from `cmk_<hex>`, the bare hex
/// digits, or a whole key pasted by mistake, whose secret goes no further
/// than this function (so it never reaches a query or the audit log).
pub fn prefix_of(typed: &str) -> String {
    let t = typed.trim();
    let bare = t
        .get(..KEY_SCHEME.len())
        .filter(|scheme| scheme.eq_ignore_ascii_case(KEY_SCHEME))
        .map_or(t, |_| &t[KEY_SCHEME.len()..]);
    let id = bare.split_once('_').map_or(bare, |(id, _)| id);
    format!("{KEY_SCHEME}{}", id.to_ascii_lowercase())
}

/// The prefix of a token presented to the gateway, when it has a key's
/// shape (`cmk_<12 hex>`, with or without its secret); `None` for anything
/// else, so a token that is no claudemesh key (another service's secret
/// sent by mistake) is not written anywhere, not even in part.
pub fn presented_prefix(token: &str) -> Option<String> {
    let p = prefix_of(token);
    let id = &p[KEY_SCHEME.len()..];
    (id.len() == PREFIX_HEX && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(p)
}

/// Topic names as the CLI writes them (`#deploys` or `deploys`), without
/// the `#`, deduplicated.
fn topic_scope(topics: Vec<String>) -> Result<Vec<String>, ApiKeyError> {
    let mut out: Vec<String> = Vec::new();
    for t in topics {
        let name = t.trim().trim_start_matches('#');
        if name.is_empty()
            || name.len() > 64
            || name.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(ApiKeyError::BadTopic(t));
        }
        if !out.iter().any(|o| o == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

fn topics_json(topics: &[String]) -> Result<String, ApiKeyError> {
    serde_json::to_string(topics).map_err(|e| ApiKeyError::Damaged(e.to_string()))
}

fn info_from_row(row: &SqliteRow) -> Result<ApiKeyInfo, ApiKeyError> {
    let damaged = |what: &str| ApiKeyError::Damaged(what.to_owned());
    let mesh: Vec<u8> = row.try_get("mesh_id")?;
    let mesh = <[u8; 32]>::try_from(mesh.as_slice()).map_err(|_| damaged("a mesh id"))?;
    let caps: String = row.try_get("caps")?;
    let topics: String = row.try_get("topics")?;
    let time = |col: &str| -> Result<Option<u64>, ApiKeyError> {
        let v: Option<i64> = row.try_get(col)?;
        v.map(|t| u64::try_from(t).map_err(|_| damaged(col)))
            .transpose()
    };
    Ok(ApiKeyInfo {
        prefix: row.try_get("prefix")?,
        label: row.try_get("label")?,
        mesh: MeshId::from(claudemesh_crypto::Hash32(mesh)),
        caps: caps.parse().map_err(|_| damaged("capabilities"))?,
        topics: serde_json::from_str(&topics).map_err(|_| damaged("topics"))?,
        created_at: time("created_at")?.ok_or_else(|| damaged("created_at"))?,
        expires_at: time("expires_at")?,
        last_used_at: time("last_used_at")?,
        revoked_at: time("revoked_at")?,
    })
}

/// Unix ms as SQLite's integer (times past year 292 million saturate).
pub(crate) fn as_db(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_client::local::LocalStore;
    use claudemesh_crypto::Hash32;

    async fn keys() -> (tempfile::TempDir, ApiKeys) {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        (dir, ApiKeys::new(local.pool().clone()))
    }

    fn new_key(caps: &str, topics: &[&str], expires_at: Option<u64>) -> NewKey {
        NewKey {
            label: "ci-bot".into(),
            mesh: MeshId(Hash32([9; 32])),
            caps: caps.parse().unwrap(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            expires_at,
        }
    }

    #[tokio::test]
    async fn a_key_is_shown_once_stored_hashed_and_checked_in_scope() {
        let (_dir, keys) = keys().await;
        let issued = keys
            .create(new_key("send,read", &["#deploys", "deploys"], None), 1_000)
            .await
            .unwrap();
        let token = issued.token.as_str();
        assert!(
            token.starts_with(&format!("{}_", issued.info.prefix)),
            "{token}"
        );
        assert_eq!(issued.info.caps.to_string(), "read,send");
        assert_eq!(issued.info.topics, ["deploys"]);
        // The table holds no part of the secret.
        // The secret is base64url, which may itself hold `_`.
        let secret = &token[issued.info.prefix.len() + 1..];
        let dump: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT prefix, secret_hash FROM api_keys")
                .fetch_all(&keys.pool)
                .await
                .unwrap();
        assert_eq!(dump.len(), 1);
        let secret = URL_SAFE_NO_PAD.decode(secret).unwrap();
        assert_eq!(dump[0].1, Sha256::digest(&secret).to_vec());
        assert_ne!(dump[0].1, secret);

        let info = keys.authenticate(token, 2_000).await.unwrap().unwrap();
        assert_eq!(info.prefix, issued.info.prefix);
        assert!(info.allows(Cap::Read) && info.allows(Cap::Send) && !info.allows(Cap::Admin));
        assert!(info.allows_topic("deploys") && !info.allows_topic("random"));
        assert_eq!(keys.list().await.unwrap()[0].last_used_at, Some(2_000));
        // Used again within the minute: the time is not rewritten.
        keys.authenticate(token, 30_000).await.unwrap().unwrap();
        assert_eq!(keys.list().await.unwrap()[0].last_used_at, Some(2_000));
    }

    #[tokio::test]
    async fn wrong_malformed_revoked_and_expired_keys_are_refused() {
        let (_dir, keys) = keys().await;
        let a = keys
            .create(new_key("read", &[], Some(10_000)), 1_000)
            .await
            .unwrap();
        let b = keys
            .create(new_key("read", &[], None), 1_000)
            .await
            .unwrap();
        let ta = a.token.as_str();
        // The right prefix with another key's secret reads as unknown.
        let secret_b = &b.token[b.info.prefix.len() + 1..];
        let forged = format!("{}_{secret_b}", a.info.prefix);
        assert_eq!(
            keys.authenticate(&forged, 2_000).await.unwrap(),
            Err(AuthError::Unknown)
        );
        for bad in [
            "",
            "Bearer x",
            "cmk_",
            "cmk_zz_yy",
            &ta[..ta.len() - 1],
            &format!("{ta}A"),
        ] {
            assert!(
                keys.authenticate(bad, 2_000).await.unwrap().is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            keys.authenticate(ta, 10_000).await.unwrap(),
            Err(AuthError::Expired)
        );
        // Revoking by prefix, by bare hex, or by a pasted whole key.
        let revoked = keys.revoke(b.token.as_str(), 3_000).await.unwrap();
        assert_eq!(revoked.revoked_at, Some(3_000));
        assert_eq!(
            keys.authenticate(b.token.as_str(), 4_000).await.unwrap(),
            Err(AuthError::Revoked)
        );
        let bare = a.info.prefix.trim_start_matches(KEY_SCHEME).to_uppercase();
        keys.revoke(&bare, 3_000).await.unwrap();
        assert!(matches!(
            keys.revoke(&bare, 3_000).await,
            Err(ApiKeyError::NotFound { .. })
        ));
        assert_eq!(keys.list().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn bad_scopes_are_clear_errors_and_store_nothing() {
        let (_dir, keys) = keys().await;
        assert!(
            matches!("read,write".parse::<Caps>(), Err(ApiKeyError::UnknownCap(w)) if w == "write")
        );
        assert!(matches!(",".parse::<Caps>(), Err(ApiKeyError::NoCaps)));
        let mut k = new_key("read", &["two words"], None);
        assert!(matches!(
            keys.create(k.clone(), 1).await,
            Err(ApiKeyError::BadTopic(_))
        ));
        k.topics.clear();
        k.label = " ".into();
        assert!(matches!(
            keys.create(k, 1).await,
            Err(ApiKeyError::BadLabel)
        ));
        assert!(keys.list().await.unwrap().is_empty());
    }

    #[test]
    fn only_a_keys_prefix_is_named_from_a_presented_token() {
        let whole = format!("cmk_0123456789AB_{}", "x".repeat(43));
        assert_eq!(
            presented_prefix(&whole).as_deref(),
            Some("cmk_0123456789ab")
        );
        assert_eq!(
            presented_prefix("cmk_0123456789ab").as_deref(),
            Some("cmk_0123456789ab")
        );
        for other in [
            "eyJhbGciOiJIUzI1NiJ9secret",
            "ghp_0123456789abcdefsecret",
            "cmk_0123456789abcd_secret",
            "cmk_zzzzzzzzzzzz_secret",
            "",
        ] {
            assert_eq!(presented_prefix(other), None, "{other}");
        }
    }
}

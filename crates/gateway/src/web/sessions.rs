//! The web app's sign-in links and sessions, in the home's `state.db`.
//!
//! `claudemesh serve open` issues a sign-in link: a 256-bit secret that
//! works once, for [`SIGNIN_TTL_MS`]. The browser presents it to
//! `/web/signin`, which redeems it for a session: an id (`ws_<8 hex>`,
//! which names the session in `serve sessions`), a 256-bit secret carried
//! only in an HttpOnly cookie, and a CSRF token the page reads from
//! `/web/session` and sends back on every state-changing request. As with
//! API keys, only SHA-256 of each secret is stored (a uniformly random
//! secret needs no stretching), and secrets are compared in constant time.
//! A session ends after [`SESSION_TTL_MS`], or when it is ended
//! (`serve sessions end`, or signing out).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::apikeys::as_db;

/// How long a sign-in link works.
pub const SIGNIN_TTL_MS: u64 = 10 * 60 * 1000;
/// How long a session lasts, however active.
pub const SESSION_TTL_MS: u64 = 12 * 3600 * 1000;
/// The session cookie's name.
pub const COOKIE: &str = "cm_web";
/// How a session id starts.
const ID_SCHEME: &str = "ws_";
/// Hex digits of a session id after its scheme.
const ID_HEX: usize = 8;
/// `last_seen_at` is written at most this often per session.
const LAST_SEEN_EVERY_MS: u64 = 60_000;
/// Longest user agent kept (it only helps a person tell sessions apart).
const MAX_AGENT: usize = 120;

/// Why a sign-in link or session was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebAuthError {
    /// Not a link or cookie this gateway could have made.
    #[error("the sign-in link or session is not valid")]
    Unknown,
    /// The link was used already.
    #[error("the sign-in link was used already")]
    Used,
    /// The link or session is too old.
    #[error("the sign-in link or session has expired")]
    Expired,
    /// The session was ended.
    #[error("the session was ended")]
    Ended,
}

/// The store failed.
#[derive(Debug, thiserror::Error)]
pub enum WebSessionError {
    /// No randomness for a secret.
    #[error("no randomness for a new secret: {0}")]
    Random(String),
    /// The local database.
    #[error("the local database failed: {0}")]
    Db(#[from] sqlx::Error),
    /// No session has that id.
    #[error("no active web session {0}")]
    NotFound(String),
}

/// A sign-in link's secret, shown once.
#[derive(Debug)]
pub struct SignIn {
    /// The secret (URL-safe base64 of 32 bytes).
    pub token: Zeroizing<String>,
    /// Unix ms.
    pub expires_at: u64,
}

/// A session as `serve sessions` lists it (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebSessionInfo {
    /// `ws_<8 hex>`.
    pub id: String,
    /// The browser's user agent, cut short.
    pub agent: String,
    /// Unix ms.
    pub created_at: u64,
    /// Unix ms.
    pub expires_at: u64,
    /// Unix ms, to the minute.
    pub last_seen_at: u64,
    /// Unix ms, once ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<u64>,
    /// The token the page must send back (`X-CSRF-Token`); never listed.
    #[serde(skip)]
    pub csrf: String,
}

/// A new session: its info and the cookie value, given to the browser once.
#[derive(Debug)]
pub struct NewSession {
    /// The session.
    pub info: WebSessionInfo,
    /// `ws_<id>_<secret>`: the cookie's value.
    pub cookie: Zeroizing<String>,
}

/// The sign-in links and sessions of one home.
#[derive(Debug, Clone)]
pub struct WebSessions {
    pool: SqlitePool,
}

fn random32() -> Result<Zeroizing<[u8; 32]>, WebSessionError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut_slice()).map_err(|e| WebSessionError::Random(e.to_string()))?;
    Ok(raw)
}

fn from_db(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn info_from_row(r: &SqliteRow) -> Result<WebSessionInfo, sqlx::Error> {
    Ok(WebSessionInfo {
        id: r.try_get("id")?,
        agent: r.try_get("agent")?,
        created_at: from_db(r.try_get("created_at")?),
        expires_at: from_db(r.try_get("expires_at")?),
        last_seen_at: from_db(r.try_get("last_seen_at")?),
        ended_at: r.try_get::<Option<i64>, _>("ended_at")?.map(from_db),
        csrf: r.try_get("csrf")?,
    })
}

macro_rules! select_session {
    ($rest:literal) => {
        concat!(
            "SELECT id, secret_hash, csrf, agent, created_at, expires_at, ",
            "last_seen_at, ended_at FROM web_sessions ",
            $rest
        )
    };
}

/// The cookie value's parts: its id and its secret, if it has the shape.
fn split_cookie(value: &str) -> Option<(&str, Zeroizing<Vec<u8>>)> {
    let rest = value.strip_prefix(ID_SCHEME)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != ID_HEX || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let secret = Zeroizing::new(URL_SAFE_NO_PAD.decode(secret).ok()?);
    (secret.len() == 32).then_some((&value[..ID_SCHEME.len() + ID_HEX], secret))
}

/// The session id a cookie value names (for the audit log), if it has
/// the shape of one.
pub fn presented_id(value: &str) -> Option<String> {
    split_cookie(value).map(|(id, _)| id.to_owned())
}

/// Whether two tokens are equal, in constant time.
pub fn same_token(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl WebSessions {
    /// The sessions kept in `pool` (the home's `state.db`).
    pub fn new(pool: SqlitePool) -> Self {
        WebSessions { pool }
    }

    /// Issues a sign-in link's secret, valid once for [`SIGNIN_TTL_MS`].
    pub async fn issue_signin(&self, now_ms: u64) -> Result<SignIn, WebSessionError> {
        let raw = random32()?;
        let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_slice()));
        let expires_at = now_ms.saturating_add(SIGNIN_TTL_MS);
        // Links never used are dropped once long expired.
        sqlx::query("DELETE FROM web_signins WHERE expires_at < ?")
            .bind(as_db(now_ms.saturating_sub(SESSION_TTL_MS)))
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO web_signins (secret_hash, created_at, expires_at) VALUES (?, ?, ?)",
        )
        .bind(&Sha256::digest(raw.as_slice())[..])
        .bind(as_db(now_ms))
        .bind(as_db(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(SignIn { token, expires_at })
    }

    /// Redeems a sign-in link's secret for a new session. Of two browsers
    /// presenting the same link, one gets the session.
    pub async fn redeem(
        &self,
        token: &str,
        agent: &str,
        now_ms: u64,
    ) -> Result<Result<NewSession, WebAuthError>, WebSessionError> {
        let Some(secret) = URL_SAFE_NO_PAD
            .decode(token.trim())
            .ok()
            .map(Zeroizing::new)
            .filter(|s| s.len() == 32)
        else {
            return Ok(Err(WebAuthError::Unknown));
        };
        let hash = Sha256::digest(secret.as_slice());
        let taken = sqlx::query(
            "UPDATE web_signins SET used_at = ? \
             WHERE secret_hash = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(as_db(now_ms))
        .bind(&hash[..])
        .bind(as_db(now_ms))
        .execute(&self.pool)
        .await?;
        if taken.rows_affected() != 1 {
            let row = sqlx::query("SELECT used_at FROM web_signins WHERE secret_hash = ?")
                .bind(&hash[..])
                .fetch_optional(&self.pool)
                .await?;
            return Ok(Err(match row {
                None => WebAuthError::Unknown,
                Some(r) if r.try_get::<Option<i64>, _>(0)?.is_some() => WebAuthError::Used,
                Some(_) => WebAuthError::Expired,
            }));
        }
        let raw = random32()?;
        let id = format!("{ID_SCHEME}{}", hex::encode(&raw[..ID_HEX / 2]));
        let secret = random32()?;
        let csrf = URL_SAFE_NO_PAD.encode(random32()?.as_slice());
        let agent: String = agent
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_AGENT)
            .collect();
        let info = WebSessionInfo {
            id,
            agent,
            created_at: now_ms,
            expires_at: now_ms.saturating_add(SESSION_TTL_MS),
            last_seen_at: now_ms,
            ended_at: None,
            csrf,
        };
        sqlx::query(
            "INSERT INTO web_sessions (id, secret_hash, csrf, agent, created_at, expires_at, \
             last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&info.id)
        .bind(&Sha256::digest(secret.as_slice())[..])
        .bind(&info.csrf)
        .bind(&info.agent)
        .bind(as_db(info.created_at))
        .bind(as_db(info.expires_at))
        .bind(as_db(info.last_seen_at))
        .execute(&self.pool)
        .await?;
        let cookie = Zeroizing::new(format!(
            "{}_{}",
            info.id,
            URL_SAFE_NO_PAD.encode(secret.as_slice())
        ));
        Ok(Ok(NewSession { info, cookie }))
    }

    /// The session a cookie value names, if it is valid now.
    pub async fn authenticate(
        &self,
        cookie: &str,
        now_ms: u64,
    ) -> Result<Result<WebSessionInfo, WebAuthError>, WebSessionError> {
        let Some((id, secret)) = split_cookie(cookie) else {
            return Ok(Err(WebAuthError::Unknown));
        };
        let row = sqlx::query(select_session!("WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(Err(WebAuthError::Unknown));
        };
        let stored: Vec<u8> = row.try_get("secret_hash")?;
        if !bool::from(
            stored
                .as_slice()
                .ct_eq(&Sha256::digest(secret.as_slice())[..]),
        ) {
            return Ok(Err(WebAuthError::Unknown));
        }
        let info = info_from_row(&row)?;
        if info.ended_at.is_some() {
            return Ok(Err(WebAuthError::Ended));
        }
        if info.expires_at <= now_ms {
            return Ok(Err(WebAuthError::Expired));
        }
        if now_ms.saturating_sub(info.last_seen_at) >= LAST_SEEN_EVERY_MS {
            sqlx::query("UPDATE web_sessions SET last_seen_at = ? WHERE id = ?")
                .bind(as_db(now_ms))
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Ok(info))
    }

    /// The sessions not ended nor expired, oldest first.
    pub async fn active(&self, now_ms: u64) -> Result<Vec<WebSessionInfo>, WebSessionError> {
        let rows = sqlx::query(select_session!(
            "WHERE ended_at IS NULL AND expires_at > ? ORDER BY created_at, id"
        ))
        .bind(as_db(now_ms))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(info_from_row).collect::<Result<_, _>>()?)
    }

    /// Ends one session (by its id), at once: its next request is 401.
    pub async fn end(&self, id: &str, now_ms: u64) -> Result<(), WebSessionError> {
        let done = sqlx::query(
            "UPDATE web_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL \
             AND expires_at > ?",
        )
        .bind(as_db(now_ms))
        .bind(id.trim())
        .bind(as_db(now_ms))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(WebSessionError::NotFound(id.trim().to_owned()));
        }
        Ok(())
    }

    /// Ends every active session; returns how many.
    pub async fn end_all(&self, now_ms: u64) -> Result<u64, WebSessionError> {
        let done = sqlx::query(
            "UPDATE web_sessions SET ended_at = ? WHERE ended_at IS NULL AND expires_at > ?",
        )
        .bind(as_db(now_ms))
        .bind(as_db(now_ms))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_client::local::LocalStore;

    #[tokio::test]
    async fn a_link_works_once_and_a_session_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let web = WebSessions::new(local.pool().clone());
        let now = 1_800_000_000_000;
        let link = web.issue_signin(now).await.unwrap();
        let s = web
            .redeem(&link.token, "Firefox", now + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            web.redeem(&link.token, "x", now + 2)
                .await
                .unwrap()
                .unwrap_err(),
            WebAuthError::Used
        );
        assert_eq!(
            web.redeem("AAAA", "x", now).await.unwrap().unwrap_err(),
            WebAuthError::Unknown
        );
        let late = web.issue_signin(now).await.unwrap();
        assert_eq!(
            web.redeem(&late.token, "x", now + SIGNIN_TTL_MS)
                .await
                .unwrap()
                .unwrap_err(),
            WebAuthError::Expired
        );

        let seen = web.authenticate(&s.cookie, now + 5).await.unwrap().unwrap();
        assert_eq!(
            (seen.id.as_str(), seen.csrf.as_str()),
            (s.info.id.as_str(), s.info.csrf.as_str())
        );
        assert_eq!(presented_id(&s.cookie).as_deref(), Some(s.info.id.as_str()));
        // Another secret under the same id is refused.
        let forged = format!("{}_{}", s.info.id, URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert_eq!(
            web.authenticate(&forged, now).await.unwrap().unwrap_err(),
            WebAuthError::Unknown
        );
        assert_eq!(
            web.authenticate(&s.cookie, now + SESSION_TTL_MS + 1)
                .await
                .unwrap()
                .unwrap_err(),
            WebAuthError::Expired
        );
        assert_eq!(web.active(now).await.unwrap().len(), 1);
        web.end(&s.info.id, now + 6).await.unwrap();
        assert_eq!(
            web.authenticate(&s.cookie, now + 7)
                .await
                .unwrap()
                .unwrap_err(),
            WebAuthError::Ended
        );
        assert!(web.end(&s.info.id, now + 8).await.is_err());
        assert!(web.active(now + 9).await.unwrap().is_empty());
        assert!(same_token("abc", "abc") && !same_token("abc", "abd"));
    }
}

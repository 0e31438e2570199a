//! Session certificates: the session a connection acts as (stored by
//! name, renewed before it expires, or ephemeral), signed by the member
//! key.

use claudemesh_crypto::cert::{SessionCert, SessionIdentity};
use claudemesh_crypto::{MeshId, SigningKey};

use crate::error::ClientError;
use crate::home::MeshKeys;

use super::state::SESSION_CERT_LIFETIME;
use claudemesh_crypto::SessionKey;

/// The session a connection acts as: the stored one by `name`, renewed if
/// its certificate expires within `renew_before` seconds (normally
/// [`SESSION_CERT_RENEW_BEFORE`]), or a new one. Returns whether the keys
/// changed (the caller saves them).
pub fn session_for(
    keys: &mut MeshKeys,
    mesh_id: MeshId,
    name: &str,
    now_secs: u64,
    renew_before: u64,
) -> Result<(SessionIdentity, bool), ClientError> {
    if let Some(s) = keys.sessions.get(name)
        && s.cert.expires_at > now_secs.saturating_add(renew_before)
        && s.cert.issued_at <= now_secs + 300
        && s.cert.mesh_id == mesh_id
    {
        return Ok((s.clone(), false));
    }
    Ok((renew_session(keys, mesh_id, name, now_secs)?, true))
}

/// Certifies the session `name` anew from `now_secs`, for
/// [`SESSION_CERT_LIFETIME`], with the member key: the same session key
/// (a new one if there is none yet), stored in `keys` (the caller saves
/// them).
pub fn renew_session(
    keys: &mut MeshKeys,
    mesh_id: MeshId,
    name: &str,
    now_secs: u64,
) -> Result<SessionIdentity, ClientError> {
    // Keep the session key across renewals so peers' references stay valid.
    let key = keys
        .sessions
        .get(name)
        .map(|s| s.key.clone())
        .unwrap_or_else(SigningKey::generate);
    let cert = SessionCert::issue(
        &keys.member,
        mesh_id,
        SessionKey(key.public()),
        now_secs,
        SESSION_CERT_LIFETIME,
    )
    .map_err(|e| ClientError::Local(format!("cannot certify a session: {e}")))?;
    let identity = SessionIdentity { key, cert };
    keys.sessions.insert(name.to_owned(), identity.clone());
    Ok(identity)
}

/// The session `current` (its key) certified anew from `now_secs` by
/// `member`, for [`SESSION_CERT_LIFETIME`].
pub fn recertify(
    member: &SigningKey,
    mesh_id: MeshId,
    current: &SessionIdentity,
    now_secs: u64,
) -> Result<SessionIdentity, ClientError> {
    let cert = SessionCert::issue(
        member,
        mesh_id,
        SessionKey(current.key.public()),
        now_secs,
        SESSION_CERT_LIFETIME,
    )
    .map_err(|e| ClientError::Local(format!("cannot certify a session: {e}")))?;
    Ok(SessionIdentity {
        key: current.key.clone(),
        cert,
    })
}

/// An ephemeral session (never stored), for benchmarks and one-off tools.
pub fn ephemeral_session(
    member: &SigningKey,
    mesh_id: MeshId,
    now_secs: u64,
) -> Result<SessionIdentity, ClientError> {
    SessionIdentity::new(member, mesh_id, now_secs, SESSION_CERT_LIFETIME)
        .map_err(|e| ClientError::Local(format!("cannot certify a session: {e}")))
}

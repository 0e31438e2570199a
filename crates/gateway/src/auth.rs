//! Who is calling and what they may do: the `Host` check every request
//! passes first, the bearer key (`Authorization: Bearer cmk_…`) checked
//! against the home's keys, and the capability and topic checks a route
//! asks for. Each refusal is a [`Problem`]; a key's text never reaches a
//! log or an answer.

use axum::http::{HeaderMap, header};
use claudemesh_proto::clock::now_ms;

use crate::apikeys::{ApiKeyInfo, ApiKeys, AuthError, Cap};
use crate::host::AllowedHosts;
use crate::problem::Problem;

/// Refuses a request whose `Host` is not one of the listener's names.
pub fn check_host(allowed: &AllowedHosts, tls: bool, headers: &HeaderMap) -> Result<(), Problem> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if allowed.allows(host, tls) {
        Ok(())
    } else {
        Err(Problem::wrong_host())
    }
}

/// The key a request presents, checked now; records its use.
pub async fn authenticate(keys: &ApiKeys, headers: &HeaderMap) -> Result<ApiKeyInfo, Problem> {
    let token = bearer(headers).map_err(Problem::unauthorized)?;
    match keys.authenticate(token, now_ms()).await {
        Ok(Ok(info)) => Ok(info),
        Ok(Err(why)) => Err(Problem::unauthorized(why)),
        Err(e) => {
            tracing::error!(error = %e, "checking an API key failed");
            Err(Problem::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                claudemesh_client::error_kind::ErrorKind::Io,
                "the gateway could not read its keys",
            ))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in
/// any case, as RFC 9110 allows).
fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Malformed)?
        .to_str()
        .map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    Ok(token.trim())
}

/// Refuses a key without `cap`.
pub fn require(key: &ApiKeyInfo, cap: Cap) -> Result<(), Problem> {
    if key.allows(cap) {
        Ok(())
    } else {
        Err(Problem::missing_cap(cap))
    }
}

/// Refuses a topic-scoped key anything but its topics: `target` as the
/// CLI writes it (`#deploys`, `@eng`, `*`, a peer's name).
pub fn require_target(key: &ApiKeyInfo, target: &str) -> Result<(), Problem> {
    if !key.topic_scoped() {
        return Ok(());
    }
    match target.strip_prefix('#') {
        Some(topic) if key.allows_topic(topic) => Ok(()),
        _ => Err(Problem::out_of_scope(target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikeys::{Caps, NewKey};
    use axum::http::HeaderValue;
    use claudemesh_client::local::LocalStore;
    use claudemesh_crypto::{Hash32, MeshId};

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[tokio::test]
    async fn host_then_key_then_scope() {
        let allowed = AllowedHosts::for_tcp("127.0.0.1:7901".parse().unwrap(), &[]);
        assert!(
            check_host(
                &allowed,
                false,
                &headers(&[(header::HOST, "localhost:7901")])
            )
            .is_ok()
        );
        let p = check_host(
            &allowed,
            false,
            &headers(&[(header::HOST, "evil.test:7901")]),
        )
        .unwrap_err();
        assert_eq!(p.status, 421);
        assert!(check_host(&allowed, false, &HeaderMap::new()).is_err());

        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        let keys = ApiKeys::new(local.pool().clone());
        let issued = keys
            .create(
                NewKey {
                    label: "bot".into(),
                    mesh: MeshId(Hash32([1; 32])),
                    caps: "read".parse::<Caps>().unwrap(),
                    topics: vec!["deploys".into()],
                    expires_at: None,
                },
                now_ms(),
            )
            .await
            .unwrap();
        let token = issued.token.as_str();
        for auth in [format!("Bearer {token}"), format!("bearer  {token} ")] {
            let key = authenticate(&keys, &headers(&[(header::AUTHORIZATION, &auth)]))
                .await
                .unwrap();
            assert_eq!(key.prefix, issued.info.prefix);
        }
        for bad in [
            String::new(),
            token.to_owned(),
            format!("Basic {token}"),
            "Bearer cmk_x".into(),
        ] {
            let h = if bad.is_empty() {
                HeaderMap::new()
            } else {
                headers(&[(header::AUTHORIZATION, &bad)])
            };
            let p = authenticate(&keys, &h).await.unwrap_err();
            assert_eq!(p.status, 401, "{bad:?}");
            assert!(!p.detail.contains(token) && p.hint.is_some(), "{p:?}");
        }

        let key = issued.info;
        assert!(require(&key, Cap::Read).is_ok());
        assert_eq!(require(&key, Cap::Send).unwrap_err().status, 403);
        assert!(require_target(&key, "#deploys").is_ok());
        for other in ["#random", "@eng", "*", "bob"] {
            assert_eq!(
                require_target(&key, other).unwrap_err().status,
                403,
                "{other}"
            );
        }
    }
}

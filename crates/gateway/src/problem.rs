//! Every error the gateway answers, as `application/problem+json` (RFC
//! 9457). The client's failures keep the CLI's numbering: `code` is the
//! exit code `claudemesh` would have returned, `kind` its name, so a script
//! reads the same answer from the CLI and from HTTP. Refusals of the
//! gateway's own (the key, its scope, its rate, the request's size) map to
//! the nearest of those kinds.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use claudemesh_client::ClientError;
use claudemesh_client::error_kind::ErrorKind;
use serde::Serialize;

use crate::apikeys::{AuthError, Cap};

/// The media type of a problem answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One problem answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: u16,
    /// The kind of failure: `code`, `kind`, `type` and `title` in the body.
    pub kind: ErrorKind,
    /// What happened this time.
    pub detail: String,
    /// What to do next.
    pub hint: Option<String>,
    /// For 429 and 503: seconds until a retry may succeed (also
    /// `Retry-After`).
    pub retry_after: Option<u64>,
}

/// The body as RFC 9457 lays it out, with claudemesh's members after the
/// standard ones.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    code: u8,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

impl Problem {
    /// A problem of `kind` answered with `status`.
    pub fn new(status: StatusCode, kind: ErrorKind, detail: impl Into<String>) -> Self {
        Problem {
            status: status.as_u16(),
            kind,
            detail: detail.into(),
            hint: None,
            retry_after: None,
        }
    }

    /// The same, with what to do next.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A bad request: `400`, kind `usage`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, ErrorKind::Usage, detail)
    }

    /// Nothing by that name: `404`, kind `not_found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, detail)
    }

    /// No valid key: `401`, kind `refused`.
    pub fn unauthorized(why: AuthError) -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::Refused,
            why.to_string(),
        )
        .hint(match why {
            AuthError::Revoked | AuthError::Expired => {
                "make a new key with `claudemesh apikey create`"
            }
            AuthError::Malformed | AuthError::Unknown => {
                "send `Authorization: Bearer cmk_…` with a key from `claudemesh apikey create`"
            }
        })
    }

    /// The key lacks a capability: `403`, kind `denied`.
    pub fn missing_cap(cap: Cap) -> Self {
        Problem::new(
            StatusCode::FORBIDDEN,
            ErrorKind::Denied,
            format!("this API key may not {}", cap_action(cap)),
        )
        .hint(format!("use a key made with `--cap {cap}`"))
    }

    /// The key is limited to other topics: `403`, kind `denied`.
    pub fn out_of_scope(what: &str) -> Self {
        Problem::new(
            StatusCode::FORBIDDEN,
            ErrorKind::Denied,
            format!("this API key is limited to other topics than {what}"),
        )
    }

    /// Too many requests for this key: `429`, kind `network` (as the CLI
    /// reports a broker's rate limit).
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Network,
            "too many requests for this API key",
        )
        .hint("slow down and retry");
        p.retry_after = Some(retry_after_secs.max(1));
        p
    }

    /// The `Host` header names another server: `421`, kind `refused`.
    pub fn wrong_host() -> Self {
        Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            ErrorKind::Refused,
            "this gateway does not answer to that Host",
        )
        .hint("call it by the address it listens on (or add the name with --allow-host)")
    }

    /// The mesh's session is not connected (yet): `503`, kind `network`,
    /// with a `Retry-After`.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Network, detail)
            .hint("retry shortly; `claudemesh status` says whether the broker answers");
        p.retry_after = Some(retry_after_secs.max(1));
        p
    }

    /// The gateway's own storage failed: `500`, kind `io` (the cause is
    /// logged, not answered).
    pub fn storage(what: &str, e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{what}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Io,
            format!("the gateway could not {what}"),
        )
    }

    /// A client failure, kind and hint as the CLI gives them. A network
    /// failure says when to retry: the broker's rate limit (presence
    /// changes, frames, log entries) is a 429 like the gateway's own, after
    /// a second; a broker that does not answer a 503, after two.
    pub fn from_client(e: &ClientError) -> Self {
        let kind = e.kind();
        let mut p = Problem::new(status_of(kind), kind, e.to_string());
        p.hint = e.hint().map(str::to_owned);
        if kind == ErrorKind::Network {
            if broker_rate_limited(e) {
                p.status = StatusCode::TOO_MANY_REQUESTS.as_u16();
                p.retry_after = Some(1);
            } else {
                p.retry_after = Some(2);
            }
        }
        p
    }
}

fn broker_rate_limited(e: &ClientError) -> bool {
    match e {
        ClientError::Refused {
            code: claudemesh_proto::ErrorCode::RateLimited,
            ..
        } => true,
        ClientError::Shared(inner) => broker_rate_limited(inner),
        _ => false,
    }
}

impl From<ClientError> for Problem {
    fn from(e: ClientError) -> Self {
        Problem::from_client(&e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&Body {
            type_uri: format!("urn:claudemesh:problem:{}", self.kind.as_str()),
            title: title(self.kind),
            status: self.status,
            detail: &self.detail,
            code: self.kind.code(),
            kind: self.kind.as_str(),
            hint: self.hint.as_deref(),
            retry_after,
        })
        .unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// The HTTP status for a kind of client failure.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Usage => StatusCode::BAD_REQUEST,
        ErrorKind::Refused | ErrorKind::Denied => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Exists => StatusCode::CONFLICT,
        // The broker did not answer, or answered with what does not verify:
        // the gateway's upstream failed.
        ErrorKind::Network => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Security => StatusCode::BAD_GATEWAY,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Failure | ErrorKind::Internal | ErrorKind::Io => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn title(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Failure => "The request failed",
        ErrorKind::Refused => "Refused",
        ErrorKind::Usage => "Bad request",
        ErrorKind::Network => "The broker is unavailable",
        ErrorKind::NotFound => "Not found",
        ErrorKind::Exists => "Already exists",
        ErrorKind::Denied => "Not allowed for this key",
        ErrorKind::Internal => "Internal error",
        ErrorKind::Io => "Local storage failed",
        ErrorKind::Security => "The broker's answer did not verify",
        ErrorKind::Conflict => "Someone else changed it first",
    }
}

fn cap_action(cap: Cap) -> &'static str {
    match cap {
        Cap::Read => "read",
        Cap::Send => "send",
        Cap::Admin => "create topics or invites",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_proto::ErrorCode;

    async fn body_of(resp: Response) -> (StatusCode, String, serde_json::Value) {
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, ct, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_client_failure_keeps_the_clis_code_and_hint() {
        let e = ClientError::Refused {
            code: ErrorCode::NotAMember,
            message: "not a member".into(),
        };
        let (status, ct, v) = body_of(Problem::from(e).into_response()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(ct, PROBLEM_JSON);
        assert_eq!(v["type"], "urn:claudemesh:problem:refused");
        assert_eq!(v["status"], 403);
        assert_eq!(v["code"], 2);
        assert_eq!(v["kind"], "refused");
        assert_eq!(v["hint"], "join with an invite first");
        assert!(v.get("retry_after").is_none());
    }

    #[tokio::test]
    async fn the_brokers_rate_limit_is_a_429_and_a_lost_broker_a_503_both_with_retry_after() {
        let limited = ClientError::Refused {
            code: ErrorCode::RateLimited,
            message: "at most 5 presence changes per second".into(),
        };
        let resp = Problem::from(limited).into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let (status, _, v) = body_of(resp).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            (v["code"].as_u64(), v["kind"].as_str()),
            (Some(4), Some("network"))
        );
        let resp = Problem::from(ClientError::Disconnected).into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        let (status, _, v) = body_of(resp).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(v["retry_after"], 2);
    }

    #[tokio::test]
    async fn the_gateways_own_refusals() {
        let (status, _, v) =
            body_of(Problem::unauthorized(AuthError::Revoked).into_response()).await;
        assert_eq!(
            (status, v["code"].as_u64()),
            (StatusCode::UNAUTHORIZED, Some(2))
        );
        let (status, _, v) = body_of(Problem::missing_cap(Cap::Send).into_response()).await;
        assert_eq!(
            (status, v["kind"].as_str()),
            (StatusCode::FORBIDDEN, Some("denied"))
        );
        assert_eq!(v["code"], 7);
        let resp = Problem::rate_limited(0).into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let (status, _, v) = body_of(resp).await;
        assert_eq!(
            (status, v["retry_after"].as_u64()),
            (StatusCode::TOO_MANY_REQUESTS, Some(1))
        );
        for kind in ErrorKind::ALL {
            let (status, _, v) =
                body_of(Problem::new(status_of(kind), kind, "x").into_response()).await;
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{kind:?}"
            );
            assert_eq!(
                (v["code"].as_u64(), v["kind"].as_str()),
                (Some(u64::from(kind.code())), Some(kind.as_str()))
            );
            assert_eq!(
                v["type"],
                format!("urn:claudemesh:problem:{}", kind.as_str())
            );
        }
    }
}

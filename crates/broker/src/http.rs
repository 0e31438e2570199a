//! The HTTP side of the broker's one port: the `/ws` upgrade (which insists
//! on the `claudemesh.v1` subprotocol), `/healthz` (the process answers),
//! `/readyz` (the store answers and is fully migrated), `/metrics`
//! (Prometheus), and `/join`, the page an invite link opens in a browser.
//! No route changes state without the websocket handshake (TM10), and no
//! CORS headers are sent, so no other origin may script these routes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use claudemesh_proto::limits::MAX_FRAME_BYTES;
use claudemesh_proto::version::{SUBPROTOCOL, WS_PATH};

use crate::admission::{Origin, PendingRefusal};
use crate::state::BrokerState;

/// Initial read and write buffer of each websocket.
const SOCKET_BUFFER_BYTES: usize = 4096;

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Every route.
pub fn router(state: Arc<BrokerState>) -> Router {
    Router::new()
        .route(WS_PATH, any(ws_upgrade))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/join", get(join_page))
        .with_state(state)
}

async fn ws_upgrade(
    State(state): State<Arc<BrokerState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if !offered {
        return (
            StatusCode::BAD_REQUEST,
            format!("the websocket subprotocol {SUBPROTOCOL} is required\n"),
        )
            .into_response();
    }
    if *state.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let config = &state.config;
    let origin = Origin::new(peer, &headers, &config.trusted_proxies);
    // Counted from the upgrade until the hello succeeds (or the socket ends).
    let pending = match state.pending.enter(
        &origin,
        config.max_pending_per_address,
        config.max_pending,
    ) {
        Ok(guard) => guard,
        Err(PendingRefusal::Address) => {
            metrics::counter!(crate::metrics::CAPPED, "cap" => "pending_per_address").increment(1);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                "too many connections from your address have not said hello yet; retry in a moment\n",
            )
                .into_response();
        }
        Err(PendingRefusal::Total) => {
            metrics::counter!(crate::metrics::CAPPED, "cap" => "pending").increment(1);
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "the broker has too many connections that have not said hello yet; retry in a moment\n",
            )
                .into_response();
        }
    };
    // The socket accepts frames above the protocol limit so the broker can
    // answer `frame_too_large` itself instead of the connection just dying.
    // Small socket buffers (they grow for a big frame): tungstenite's
    // default 128 KiB read buffer per connection would make 10,000 idle
    // peers cost over a gigabyte.
    ws.protocols([SUBPROTOCOL])
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .max_message_size(2 * MAX_FRAME_BYTES)
        .max_frame_size(2 * MAX_FRAME_BYTES)
        .on_upgrade(move |socket| crate::connection::serve(socket, state, origin, pending))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<BrokerState>>) -> Response {
    if *state.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store not ready: {e}\n"),
            )
                .into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store did not answer\n").into_response(),
    }
}

async fn metrics(State(state): State<Arc<BrokerState>>) -> Response {
    let Some(handle) = crate::metrics::handle() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n",
        )
            .into_response();
    };
    metrics::gauge!(crate::metrics::CONNECTIONS).set(state.connections.count() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// An invite link (`https://host/join#token`) opened in a browser lands
/// here. The token is in the fragment, which the browser never sends, so
/// the page shows the command with the link the browser holds.
async fn join_page() -> Response {
    (
        [(header::CONTENT_SECURITY_POLICY, JOIN_CSP)],
        Html(JOIN_PAGE),
    )
        .into_response()
}

/// Only the page's own inline script (by hash) may run.
const JOIN_CSP: &str = "default-src 'none'; script-src 'sha256-Bs2X/q6XpGQU4N6/NGvETDHqSYKWVh8GvnYstLFwiaE='; style-src 'unsafe-inline'";

const JOIN_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Join a claudemesh mesh</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}code{background:#eee;padding:.2em .4em;word-break:break-all}</style>
</head><body>
<h1>You were invited to a claudemesh mesh</h1>
<p>Run this in a terminal (install claudemesh first):</p>
<p><code id="cmd">claudemesh join '&lt;this page's full address&gt;'</code></p>
<p>The invite secret is in the part of the address after <code>#</code>. Your browser never sent it to this server, and the claudemesh broker never learns it.</p>
<script>document.getElementById("cmd").textContent="claudemesh join '"+location.href+"'";</script>
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn join_page_script_matches_its_csp_hash() {
        let start = JOIN_PAGE.find("<script>").unwrap() + "<script>".len();
        let end = JOIN_PAGE.find("</script>").unwrap();
        let digest = sha2::Sha256::digest(&JOIN_PAGE.as_bytes()[start..end]);
        let source = format!(
            "'sha256-{}'",
            claudemesh_crypto::encoding::b64_encode(&digest)
        );
        assert!(JOIN_CSP.contains(&source), "update JOIN_CSP to {source}");
    }
}

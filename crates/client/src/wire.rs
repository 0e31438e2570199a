//! One websocket to a broker, below any mesh logic: the URL of the `/ws`
//! endpoint, TLS for `wss://` (trust from [`crate::tls`]), the upgrade with
//! the `claudemesh.v1` subprotocol, reading the broker's `challenge`, and
//! encoding/decoding frames (typed errors for anything a broker sends that
//! is not the protocol).

use std::time::Duration;

use claudemesh_proto::frames::Challenge;
use claudemesh_proto::limits::MAX_FRAME_BYTES;
use claudemesh_proto::version::{SUBPROTOCOL, SUPPORTED_VERSIONS, WS_PATH, negotiate};
use claudemesh_proto::{BrokerFrame, ClientFrame, decode_broker_frame, encode_client_frame};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::error::{BadInput, ClientError};

/// The websocket type.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// Its write half.
pub type WsSink = SplitSink<Ws, Message>;
/// Its read half.
pub type WsStream = SplitStream<Ws>;

/// The `/ws` endpoint of a broker URL (`ws://host:port[/prefix]`).
pub fn endpoint(broker_url: &str) -> String {
    let trimmed = broker_url.trim_end_matches('/');
    if trimmed.ends_with(WS_PATH) {
        trimmed.to_owned()
    } else {
        format!("{trimmed}{WS_PATH}")
    }
}

/// A fresh connection, with the broker's challenge read.
#[derive(Debug)]
pub struct Opened {
    /// Write half.
    pub sink: WsSink,
    /// Read half.
    pub stream: WsStream,
    /// The broker's challenge.
    pub challenge: Challenge,
    /// The protocol version both speak.
    pub version: u32,
    /// Round-trip of the upgrade, ms (for clock-skew estimates).
    pub rtt_ms: u64,
}

/// Connects to `broker_url`, upgrades with the subprotocol and reads the
/// challenge, all within `timeout`. A `wss://` broker is verified against
/// the platform roots and the process's default CA
/// ([`crate::tls::set_default_ca`]).
pub async fn open(broker_url: &str, timeout: Duration) -> Result<Opened, ClientError> {
    open_with_ca(broker_url, None, timeout).await
}

/// [`open`], trusting also `ca` (PEM certificates: a mesh's stored CA) for
/// a `wss://` broker.
pub async fn open_with_ca(
    broker_url: &str,
    ca: Option<&str>,
    timeout: Duration,
) -> Result<Opened, ClientError> {
    let unreachable = |reason: String| ClientError::Unreachable {
        url: broker_url.to_owned(),
        reason,
    };
    let connector = if broker_url.starts_with("wss://") {
        Connector::Rustls(crate::tls::client_config(ca)?)
    } else if broker_url.starts_with("ws://") {
        Connector::Plain
    } else {
        return Err(ClientError::BadInput(BadInput::BrokerUrl {
            url: broker_url.to_owned(),
        }));
    };
    let mut request = endpoint(broker_url).into_client_request().map_err(|e| {
        ClientError::BadInput(BadInput::BadBrokerUrl {
            url: broker_url.to_owned(),
            reason: e.to_string(),
        })
    })?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let config = WebSocketConfig::default()
        .max_message_size(Some(2 * MAX_FRAME_BYTES))
        .max_frame_size(Some(2 * MAX_FRAME_BYTES));
    let started = std::time::Instant::now();
    let (ws, _response) = tokio::time::timeout(
        timeout,
        tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(config),
            true,
            Some(connector),
        ),
    )
    .await
    .map_err(|_| unreachable("no answer (timed out)".into()))?
    .map_err(|e| connect_error(broker_url, e))?;
    let rtt_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (sink, mut stream) = ws.split();
    let first = tokio::time::timeout(timeout, next_frame(&mut stream))
        .await
        .map_err(|_| ClientError::Timeout("send its challenge"))??;
    let challenge = match first {
        BrokerFrame::Challenge(c) => c,
        BrokerFrame::Error(e) => {
            return Err(ClientError::Refused {
                code: e.code,
                message: e.message,
            });
        }
        other => {
            return Err(ClientError::Protocol(format!(
                "expected a challenge first, got {}",
                other.type_name()
            )));
        }
    };
    let version = negotiate(&challenge.versions, SUPPORTED_VERSIONS).ok_or_else(|| {
        ClientError::Protocol(format!(
            "the broker speaks protocol versions {:?}; this claudemesh speaks {SUPPORTED_VERSIONS:?}: upgrade one of them",
            challenge.versions
        ))
    })?;
    Ok(Opened {
        sink,
        stream,
        challenge,
        version,
        rtt_ms,
    })
}

/// Why the upgrade failed: TLS (an untrusted certificate, a broker that does
/// not speak TLS), an HTTP answer other than the upgrade (with its text, such
/// as a TLS broker's "use wss://"), or an unreachable broker.
fn connect_error(url: &str, e: tokio_tungstenite::tungstenite::Error) -> ClientError {
    use tokio_tungstenite::tungstenite::Error;
    let unreachable = |reason: String| ClientError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    match e {
        Error::Io(io) => match crate::tls::classify(url, &io) {
            Some(tls) => ClientError::Tls(tls),
            None => unreachable(io.to_string()),
        },
        Error::Tls(tls) => ClientError::Tls(crate::tls::TlsError::Handshake {
            url: url.to_owned(),
            reason: tls.to_string(),
        }),
        Error::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .map(|b| b.trim().chars().take(200).collect::<String>())
                .filter(|b| !b.is_empty());
            let status = response.status();
            unreachable(match body {
                Some(body) => format!("it answered {status}: {body}"),
                None => format!("it answered {status} instead of a websocket upgrade"),
            })
        }
        other => unreachable(other.to_string()),
    }
}

/// Reads the next protocol frame (skipping pings), or how the socket ended.
pub async fn next_frame(stream: &mut WsStream) -> Result<BrokerFrame, ClientError> {
    loop {
        match stream.next().await {
            None => return Err(ClientError::Disconnected),
            Some(Err(e)) => {
                return Err(ClientError::Closed {
                    code: 1006,
                    reason: e.to_string(),
                });
            }
            Some(Ok(Message::Text(t))) => {
                return decode_broker_frame(t.as_str())
                    .map_err(|e| ClientError::Protocol(format!("bad frame from the broker: {e}")));
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.as_str().to_owned()))
                    .unwrap_or((1005, String::new()));
                return Err(ClientError::Closed { code, reason });
            }
            Some(Ok(Message::Binary(_))) => {
                return Err(ClientError::Protocol(
                    "the broker sent a binary frame".into(),
                ));
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// Sends one frame.
pub async fn send_frame(sink: &mut WsSink, frame: &ClientFrame) -> Result<(), ClientError> {
    sink.send(Message::text(encode_client_frame(frame)))
        .await
        .map_err(|_| ClientError::Disconnected)
}

/// Sends a request and waits for the frame that answers it (matching `req`),
/// on a connection nothing else reads (before hello).
pub async fn request(
    opened: &mut Opened,
    frame: &ClientFrame,
    timeout: Duration,
    what: &'static str,
) -> Result<BrokerFrame, ClientError> {
    let req = frame.req().map(str::to_owned);
    send_frame(&mut opened.sink, frame).await?;
    let wait = async {
        loop {
            let f = next_frame(&mut opened.stream).await?;
            let matches = match &f {
                BrokerFrame::Error(e) => e.req == req || e.req.is_none(),
                other => frame_req(other) == req.as_deref(),
            };
            if matches {
                return Ok(f);
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| ClientError::Timeout(what))?
}

/// The `req` an answer carries.
pub fn frame_req(frame: &BrokerFrame) -> Option<&str> {
    match frame {
        BrokerFrame::Error(f) => f.req.as_deref(),
        BrokerFrame::Accepted(f) => f.req.as_deref(),
        BrokerFrame::Peers(f) => f.req.as_deref(),
        BrokerFrame::LogEntries(f) => f.req.as_deref(),
        BrokerFrame::LogAppended(f) => f.req.as_deref(),
        BrokerFrame::InviteBundle(f) => f.req.as_deref(),
        BrokerFrame::Joined(f) => f.req.as_deref(),
        BrokerFrame::MessageStatusResult(f) => f.req.as_deref(),
        BrokerFrame::TopicHistoryResult(f) => f.req.as_deref(),
        BrokerFrame::GrantsStored(f) => f.req.as_deref(),
        BrokerFrame::Scheduled(f) => f.req.as_deref(),
        BrokerFrame::SchedulePage(f) => f.req.as_deref(),
        BrokerFrame::ScheduleCancelled(f) => f.req.as_deref(),
        BrokerFrame::CoordStored(f) => f.req.as_deref(),
        BrokerFrame::CoordPage(f) => f.req.as_deref(),
        BrokerFrame::CoordRingStored(f) => f.req.as_deref(),
        BrokerFrame::CoordRingPage(f) => f.req.as_deref(),
        BrokerFrame::TaskState(f) => f.req.as_deref(),
        BrokerFrame::StateAnswer(f) => f.req.as_deref(),
        BrokerFrame::LeaseAnswer(f) => f.req.as_deref(),
        BrokerFrame::LeaseRenewed(f) => f.req.as_deref(),
        BrokerFrame::Pong(f) => f.req.as_deref(),
        BrokerFrame::Challenge(_)
        | BrokerFrame::Welcome(_)
        | BrokerFrame::Deliver(_)
        | BrokerFrame::Presence(_)
        | BrokerFrame::CoordChanged(_)
        | BrokerFrame::LogUpdate(_) => None,
    }
}

/// Turns an `error` frame into the client error.
pub fn refused(frame: BrokerFrame) -> ClientError {
    match frame {
        BrokerFrame::Error(e) => ClientError::Refused {
            code: e.code,
            message: e.message,
        },
        other => ClientError::Protocol(format!("unexpected {} frame", other.type_name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_appends_ws_once() {
        assert_eq!(endpoint("ws://h:1"), "ws://h:1/ws");
        assert_eq!(endpoint("ws://h:1/"), "ws://h:1/ws");
        assert_eq!(endpoint("ws://h:1/ws"), "ws://h:1/ws");
        assert_eq!(endpoint("wss://h/mesh"), "wss://h/mesh/ws");
    }
}

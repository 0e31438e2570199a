//! The wire-level clients' view of broker frames: only the fields they
//! need (`type`, `req`, `seq`, `id`, the envelope's `id`, an error's code).
//! Everything else is skipped unparsed and no key is decoded (a key seen for
//! the first time is validated with a prime-order check that costs more than
//! the rest of the frame), so the bench's clients stay cheap next to the
//! broker they measure.

use claudemesh_client::wire::WsStream;
use claudemesh_crypto::envelope::MessageId;
use claudemesh_proto::ErrorCode;
use tokio_tungstenite::tungstenite::Message;

use crate::{BenchError, Result};

/// The fields of a broker frame the wire path reads.
#[derive(Debug, serde::Deserialize)]
pub struct LightFrame {
    /// The frame type (`accepted`, `deliver`, `error`, `welcome`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Correlation id.
    #[serde(default)]
    pub req: Option<String>,
    /// Broker sequence number.
    #[serde(default)]
    pub seq: Option<u64>,
    /// `accepted`: the message id.
    #[serde(default)]
    pub id: Option<MessageId>,
    /// `deliver`: the envelope.
    #[serde(default)]
    pub envelope: Option<LightEnvelope>,
    /// `deliver` of a fan-out message: its number within its target.
    #[serde(default)]
    pub tseq: Option<u64>,
    /// `error`: its code.
    #[serde(default)]
    pub code: Option<ErrorCode>,
    /// `error`: its text.
    #[serde(default)]
    pub message: Option<String>,
    /// `error`: when to retry.
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

/// The one envelope field the wire path reads.
#[derive(Debug, serde::Deserialize)]
pub struct LightEnvelope {
    /// The message id.
    pub id: MessageId,
}

/// The next text frame, lightly parsed (pings skipped).
pub async fn next_light(stream: &mut WsStream) -> Result<LightFrame> {
    use futures_util::StreamExt as _;
    loop {
        match stream.next().await {
            None => return Err(BenchError("the broker closed the connection".into())),
            Some(Err(e)) => return Err(BenchError::ctx("connection", e)),
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str())
                    .map_err(|e| BenchError::ctx("bad frame from the broker", e));
            }
            Some(Ok(Message::Close(f))) => {
                return Err(BenchError(format!(
                    "the broker closed the connection: {}",
                    f.map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_default()
                )));
            }
            Some(Ok(_)) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_it_needs_and_skips_the_rest() {
        let accepted: LightFrame = serde_json::from_str(
            r#"{"type":"accepted","req":"7","id":"000102030405060708090a0b0c0d0e0f","seq":9,"duplicate":false}"#,
        )
        .unwrap();
        assert_eq!(accepted.kind, "accepted");
        assert_eq!(accepted.req.as_deref(), Some("7"));
        assert_eq!(accepted.id.map(|i| i.0[15]), Some(15));
        let deliver: LightFrame = serde_json::from_str(
            r#"{"type":"deliver","seq":3,"envelope":{"v":1,"id":"000102030405060708090a0b0c0d0e0f","sender":{"member":"not a key"}},"queued_at_ms":1}"#,
        )
        .unwrap();
        assert_eq!(deliver.seq, Some(3));
        assert_eq!(deliver.envelope.map(|e| e.id.0[1]), Some(1));
        let error: LightFrame = serde_json::from_str(
            r#"{"type":"error","req":"4","code":"rate_limited","message":"slow down","retry_after_ms":12}"#,
        )
        .unwrap();
        assert_eq!(error.code, Some(ErrorCode::RateLimited));
        assert_eq!(error.retry_after_ms, Some(12));
    }
}

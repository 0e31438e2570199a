//! Decoding and encoding frames. The size limit is checked before any
//! parsing; a frame of unknown `type` is a typed [`FrameError::UnknownType`]
//! (answered with `unknown_type`, never ignored); a known type with bad
//! fields is [`FrameError::Malformed`] naming the type.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::errors::ErrorCode;
use crate::frames::{BrokerFrame, ClientFrame, ErrorFrame};
use crate::limits::{MAX_FRAME_BYTES, MAX_REQ_LEN};

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Larger than the frame limit (not parsed).
    #[error("frame is {len} bytes; the limit is {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A `type` this side does not know.
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    /// Not a JSON object with a string `type`, or a known type with bad fields.
    #[error("malformed {}frame: {detail}", frame_type.as_deref().map(|t| format!("{t} ")).unwrap_or_default())]
    Malformed {
        /// The `type`, when one was readable.
        frame_type: Option<String>,
        /// What is wrong (no frame contents are echoed beyond the parser's position).
        detail: String,
    },
}

impl FrameError {
    /// The error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::UnknownType(_) => ErrorCode::UnknownType,
            FrameError::Malformed { .. } => ErrorCode::Malformed,
        }
    }

    /// The `error` frame that answers this failure.
    pub fn to_error_frame(&self, req: Option<String>) -> BrokerFrame {
        BrokerFrame::Error(ErrorFrame {
            req,
            code: self.code(),
            message: self.to_string(),
            retry_after_ms: None,
        })
    }
}

#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow, default)]
    frame_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    req: Option<Cow<'a, str>>,
}

/// The `req` of a frame that failed to decode, if it can be read (so the
/// error can still be correlated). Over-long values are dropped.
pub fn salvage_req(text: &str) -> Option<String> {
    if text.len() > MAX_FRAME_BYTES {
        return None;
    }
    let t: TypeOnly<'_> = serde_json::from_str(text).ok()?;
    t.req
        .filter(|r| r.len() <= MAX_REQ_LEN)
        .map(Cow::into_owned)
}

fn decode<T: DeserializeOwned>(text: &str, known: &[&str]) -> Result<T, FrameError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: text.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    match serde_json::from_str::<T>(text) {
        Ok(frame) => Ok(frame),
        Err(parse_error) => {
            // Slow path only on failure: find out whether the type is known.
            let frame_type = serde_json::from_str::<TypeOnly<'_>>(text)
                .ok()
                .and_then(|t| t.frame_type.map(Cow::into_owned));
            match frame_type {
                Some(t) if !known.contains(&t.as_str()) => {
                    let mut t = t;
                    t.truncate(MAX_REQ_LEN);
                    Err(FrameError::UnknownType(t))
                }
                frame_type => Err(FrameError::Malformed {
                    detail: if frame_type.is_some() {
                        parse_error.to_string()
                    } else {
                        "expected a JSON object with a string \"type\"".to_owned()
                    },
                    frame_type,
                }),
            }
        }
    }
}

/// Decodes a frame a client sent, and checks `req` length.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    let frame: ClientFrame = decode(text, ClientFrame::TYPES)?;
    if frame.req().is_some_and(|r| r.len() > MAX_REQ_LEN) {
        return Err(FrameError::Malformed {
            frame_type: Some(frame.type_name().to_owned()),
            detail: format!("req longer than {MAX_REQ_LEN} characters"),
        });
    }
    Ok(frame)
}

/// Decodes a frame a broker sent.
pub fn decode_broker_frame(text: &str) -> Result<BrokerFrame, FrameError> {
    decode(text, BrokerFrame::TYPES)
}

/// Encodes a frame as one JSON text.
pub fn encode_client_frame(frame: &ClientFrame) -> String {
    // Frames contain only strings, numbers, bools and lists: cannot fail.
    serde_json::to_string(frame).unwrap_or_default()
}

/// Encodes a frame as one JSON text.
pub fn encode_broker_frame(frame: &BrokerFrame) -> String {
    serde_json::to_string(frame).unwrap_or_default()
}

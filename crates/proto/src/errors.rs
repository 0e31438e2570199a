//! Error codes carried by `error` frames, and websocket close codes. Every
//! code says whether the connection survives it and what a client should do.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Websocket close codes the broker uses.
pub mod close {
    /// Normal closure (client leaving, session replaced).
    pub const NORMAL: u16 = 1000;
    /// The broker is shutting down: reconnect with backoff (possibly elsewhere).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol violation (malformed frames, unknown types repeatedly).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Authentication or policy failure; the reason string is the error code.
    pub const POLICY: u16 = 1008;
    /// A frame exceeded the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// No protocol version in common.
    pub const UNSUPPORTED_VERSION: u16 = 4000;
    /// Removed from the mesh (kick): terminal, do not reconnect.
    pub const KICKED: u16 = 4001;
    /// Banned: terminal, do not reconnect.
    pub const BANNED: u16 = 4002;
    /// The client read too slowly; reconnect and drain faster.
    pub const SLOW_CONSUMER: u16 = 4003;
    /// No hello within the handshake timeout.
    pub const HANDSHAKE_TIMEOUT: u16 = 4004;
    /// The member has as many sessions connected as the broker allows:
    /// retry later (or close another session).
    pub const TOO_MANY_SESSIONS: u16 = 4005;
}

/// Machine-readable error codes (snake_case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON or a known frame has bad fields.
    Malformed,
    /// The frame's `type` is not one this broker knows.
    UnknownType,
    /// No common protocol version.
    UnsupportedVersion,
    /// The frame exceeds `max_frame_bytes`.
    FrameTooLarge,
    /// A frame other than `hello`/`invite_*`/`ping` before the handshake.
    NotAuthenticated,
    /// A second `hello` on an authenticated connection.
    AlreadyAuthenticated,
    /// A signature (hello, envelope, proof) does not verify.
    BadSignature,
    /// The session certificate is invalid.
    BadCertificate,
    /// The session certificate has expired: renew it with the member key.
    CertExpired,
    /// The broker has no such mesh.
    UnknownMesh,
    /// The key is not a member of the mesh.
    NotAMember,
    /// The member was removed from the mesh.
    Removed,
    /// The member is banned.
    Banned,
    /// Too many frames; wait `retry_after_ms`.
    RateLimited,
    /// The log moved on: fetch the new entries, re-verify, retry.
    LogConflict,
    /// The submitted log entries do not verify.
    LogInvalid,
    /// No such invite.
    InviteNotFound,
    /// The invite has expired.
    InviteExpired,
    /// The invite was revoked.
    InviteRevoked,
    /// The invite has no uses left.
    InviteExhausted,
    /// The target names no member, session, group or topic.
    UnknownRecipient,
    /// The recipient refused the message (grants or block).
    Refused,
    /// The member's role does not allow this.
    Forbidden,
    /// The thing asked about does not exist.
    NotFound,
    /// The message body exceeds `max_body_bytes`.
    BodyTooLarge,
    /// The message is sealed under an old key epoch, or the key it needs must
    /// be rotated first (a member left): sync the log, rekey if asked, reseal.
    RekeyRequired,
    /// The connection's outbound queue overflowed.
    SlowConsumer,
    /// The member already has as many sessions connected as the broker
    /// allows (`welcome.limits.max_sessions_per_member`).
    TooManySessions,
    /// The broker is shutting down.
    ShuttingDown,
    /// A broker fault; retry later.
    Internal,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::Malformed,
        ErrorCode::UnknownType,
        ErrorCode::UnsupportedVersion,
        ErrorCode::FrameTooLarge,
        ErrorCode::NotAuthenticated,
        ErrorCode::AlreadyAuthenticated,
        ErrorCode::BadSignature,
        ErrorCode::BadCertificate,
        ErrorCode::CertExpired,
        ErrorCode::UnknownMesh,
        ErrorCode::NotAMember,
        ErrorCode::Removed,
        ErrorCode::Banned,
        ErrorCode::RateLimited,
        ErrorCode::LogConflict,
        ErrorCode::LogInvalid,
        ErrorCode::InviteNotFound,
        ErrorCode::InviteExpired,
        ErrorCode::InviteRevoked,
        ErrorCode::InviteExhausted,
        ErrorCode::UnknownRecipient,
        ErrorCode::Refused,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::BodyTooLarge,
        ErrorCode::RekeyRequired,
        ErrorCode::SlowConsumer,
        ErrorCode::TooManySessions,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::AlreadyAuthenticated => "already_authenticated",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::BadCertificate => "bad_certificate",
            ErrorCode::CertExpired => "cert_expired",
            ErrorCode::UnknownMesh => "unknown_mesh",
            ErrorCode::NotAMember => "not_a_member",
            ErrorCode::Removed => "removed",
            ErrorCode::Banned => "banned",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::LogConflict => "log_conflict",
            ErrorCode::LogInvalid => "log_invalid",
            ErrorCode::InviteNotFound => "invite_not_found",
            ErrorCode::InviteExpired => "invite_expired",
            ErrorCode::InviteRevoked => "invite_revoked",
            ErrorCode::InviteExhausted => "invite_exhausted",
            ErrorCode::UnknownRecipient => "unknown_recipient",
            ErrorCode::Refused => "refused",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::RekeyRequired => "rekey_required",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::TooManySessions => "too_many_sessions",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
        }
    }

    /// The close code that follows this error, or `None` when the connection
    /// stays open (the error answers one request).
    pub fn close_code(&self) -> Option<u16> {
        match self {
            ErrorCode::UnsupportedVersion => Some(close::UNSUPPORTED_VERSION),
            ErrorCode::FrameTooLarge => Some(close::TOO_BIG),
            ErrorCode::BadCertificate
            | ErrorCode::CertExpired
            | ErrorCode::UnknownMesh
            | ErrorCode::NotAMember => Some(close::POLICY),
            ErrorCode::Removed => Some(close::KICKED),
            ErrorCode::Banned => Some(close::BANNED),
            ErrorCode::SlowConsumer => Some(close::SLOW_CONSUMER),
            ErrorCode::TooManySessions => Some(close::TOO_MANY_SESSIONS),
            ErrorCode::ShuttingDown => Some(close::GOING_AWAY),
            _ => None,
        }
    }

    /// Whether the broker closes the connection after sending this error.
    /// (`bad_signature` on a `hello` is also fatal; the broker closes with
    /// 1008 then. On a later frame it only refuses that frame.)
    pub fn is_fatal(&self) -> bool {
        self.close_code().is_some()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), *code);
        }
    }
}

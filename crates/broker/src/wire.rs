//! Broker frames as websocket text: the encoding every path shares, and
//! the `deliver` frame built around a stored envelope's JSON without
//! parsing it again.

use axum::extract::ws::Utf8Bytes;
use claudemesh_proto::{BrokerFrame, ErrorCode, encode_broker_frame};

/// Encodes a broker frame as a websocket text payload.
pub fn text(frame: &BrokerFrame) -> Utf8Bytes {
    Utf8Bytes::from(encode_broker_frame(frame))
}

/// The `deliver` frame for a stored envelope, built around the stored JSON
/// text without re-parsing it (it is the same text a `send` carried).
pub fn deliver_text(
    seq: u64,
    envelope_json: &str,
    queued_at_ms: u64,
    tseq: Option<u64>,
    deadline_ms: Option<u64>,
) -> Utf8Bytes {
    let mut s = String::with_capacity(envelope_json.len() + 120);
    s.push_str("{\"type\":\"deliver\",\"seq\":");
    s.push_str(&seq.to_string());
    s.push_str(",\"envelope\":");
    s.push_str(envelope_json);
    s.push_str(",\"queued_at_ms\":");
    s.push_str(&queued_at_ms.to_string());
    if let Some(deadline) = deadline_ms {
        s.push_str(",\"deadline_ms\":");
        s.push_str(&deadline.to_string());
    }
    if let Some(tseq) = tseq {
        s.push_str(",\"tseq\":");
        s.push_str(&tseq.to_string());
    }
    s.push('}');
    Utf8Bytes::from(s)
}

/// The error frame for `code`.
pub fn error_text(req: Option<String>, code: ErrorCode, message: impl Into<String>) -> Utf8Bytes {
    text(&BrokerFrame::error(req, code, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_crypto::MemberKey;
    use claudemesh_crypto::SigningKey;
    use claudemesh_crypto::cert::SessionIdentity;
    use claudemesh_crypto::envelope::{
        Envelope, EnvelopeHeader, MessageId, Priority, SealingKey, Target,
    };
    use claudemesh_crypto::{Hash32, MeshId};

    #[test]
    fn deliver_text_decodes_as_a_deliver_frame() {
        let member = SigningKey::generate();
        let to = SigningKey::generate().public();
        let mesh = MeshId(Hash32([1; 32]));
        let session = SessionIdentity::new(&member, mesh, 1_700_000_000, 3600).unwrap();
        let env = Envelope::seal(
            &session,
            EnvelopeHeader {
                mesh,
                epoch: 0,
                target: Target::Member(MemberKey(to)),
                id: MessageId::random(),
                reply_to: None,
                priority: Priority::Next,
                sent_at: 1_700_000_000_000,
                log_head: Hash32([1; 32]),
            },
            b"hi",
            SealingKey::Direct(&to),
        )
        .unwrap();
        let json = serde_json::to_string(&env).unwrap();
        let frame = deliver_text(7, &json, 99, Some(3), Some(1234));
        match claudemesh_proto::decode_broker_frame(frame.as_str()).unwrap() {
            BrokerFrame::Deliver(d) => {
                assert_eq!(d.seq, 7);
                assert_eq!(d.queued_at_ms, 99);
                assert_eq!((d.tseq, d.deadline_ms), (Some(3), Some(1234)));
                assert_eq!(*d.envelope, env);
            }
            other => panic!("not a deliver: {other:?}"),
        }
    }
}

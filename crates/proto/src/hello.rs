//! The `hello` frame and its signature (TM2). The client's session key signs
//! a transcript that starts with the broker's fresh challenge and covers
//! every field of the hello, so a captured hello is useless on any other
//! connection and no hello field can be changed or added unsigned.
//!
//! ```text
//! Transcript("claudemesh/hello/v1")
//!   .bytes(challenge[32]) .u64(version) .bytes(mesh_id[32])
//!   .bytes(cert.signed_bytes()) .bytes(cert.sig[64])
//!   .opt(log_head[32]) .str(status) .opt(str(peer_type))
//!   .opt(summary: field(u64 epoch) ‖ field(nonce[24]) ‖ field(ciphertext))
//!   .str(client)
//! ```

use claudemesh_crypto::cert::{CertError, SessionCert, SessionIdentity};
use claudemesh_crypto::encoding::{Transcript, label};
use claudemesh_crypto::log::PeerType;
use claudemesh_crypto::{Hash32, MeshId, Signature};
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_LABEL_LEN, MAX_SUMMARY_CIPHERTEXT_BYTES};
use crate::presence::{EncryptedBlob, Status};

/// Presence a client asserts in its hello (all of it signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HelloPresence {
    /// Initial status.
    pub status: Status,
    /// Peer type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_type: Option<PeerType>,
    /// Encrypted one-line summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<EncryptedBlob>,
}

/// `hello`. Unknown fields are refused: nothing unsigned may ride along.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// The protocol version chosen from the challenge's list.
    pub version: u32,
    /// The mesh to join.
    pub mesh_id: MeshId,
    /// The session certificate (names the member and session keys).
    pub cert: SessionCert,
    /// The log head the client has verified, if any.
    #[serde(default)]
    pub log_head: Option<Hash32>,
    /// Presence asserted at connect.
    pub presence: HelloPresence,
    /// Client software, e.g. `claudemesh/0.1.0`.
    pub client: String,
    /// Session-key signature over the transcript (module docs).
    pub sig: Signature,
}

/// Why a hello was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The session signature over the challenge-bound transcript does not verify.
    #[error("hello signature does not verify for this connection's challenge")]
    BadSignature,
    /// The session certificate is invalid.
    #[error("session certificate: {0}")]
    Certificate(#[from] CertError),
    /// A field exceeds its limit.
    #[error("hello field too large: {0}")]
    TooLarge(&'static str),
}

impl Hello {
    /// The bytes the session key signs, bound to `challenge`.
    pub fn signed_bytes(&self, challenge: &[u8; 32]) -> Vec<u8> {
        let mut t = Transcript::new(label::HELLO);
        t.bytes(challenge)
            .u64(u64::from(self.version))
            .bytes(self.mesh_id.as_bytes())
            .bytes(&self.cert.signed_bytes())
            .bytes(&self.cert.sig.0)
            .opt_bytes(self.log_head.as_ref().map(|h| &h.as_bytes()[..]))
            .str(self.presence.status.as_str())
            .opt_str(self.presence.peer_type.as_ref().map(PeerType::as_str));
        match &self.presence.summary {
            None => t.bytes(&[0]),
            Some(s) => t
                .bytes(&[1])
                .u64(s.epoch)
                .bytes(&s.nonce.0)
                .bytes(&s.ciphertext),
        };
        t.str(&self.client);
        t.into_bytes()
    }

    /// Builds and signs a hello for `challenge`.
    pub fn sign(
        session: &SessionIdentity,
        challenge: &[u8; 32],
        version: u32,
        log_head: Option<Hash32>,
        presence: HelloPresence,
        client: &str,
    ) -> Hello {
        let mut hello = Hello {
            version,
            mesh_id: session.cert.mesh_id,
            cert: session.cert.clone(),
            log_head,
            presence,
            client: client.to_owned(),
            sig: Signature([0; 64]),
        };
        hello.sig = session.key.sign(&hello.signed_bytes(challenge));
        hello
    }

    /// Checks sizes, the session certificate (valid for `mesh_id` at `now_secs`)
    /// and the signature over this connection's `challenge`. Membership of
    /// `cert.member` is the broker's (and every client's) separate check.
    pub fn verify(&self, challenge: &[u8; 32], now_secs: u64) -> Result<(), HelloError> {
        if self.client.len() > MAX_LABEL_LEN {
            return Err(HelloError::TooLarge("client"));
        }
        if self
            .presence
            .summary
            .as_ref()
            .is_some_and(|s| s.ciphertext.len() > MAX_SUMMARY_CIPHERTEXT_BYTES)
        {
            return Err(HelloError::TooLarge("summary"));
        }
        self.cert.verify(&self.mesh_id, now_secs)?;
        self.cert
            .session
            .verify(&self.signed_bytes(challenge), &self.sig)
            .map_err(|_| HelloError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_crypto::{Nonce, SigningKey};

    const NOW: u64 = 1_700_000_000;

    fn hello(challenge: &[u8; 32]) -> Hello {
        let member = SigningKey::from_seed(&[1; 32]);
        let session = SessionIdentity::new(&member, MeshId(Hash32([2; 32])), NOW, 3600).unwrap();
        let presence = HelloPresence {
            status: Status::Working,
            peer_type: Some(PeerType::Ai),
            summary: Some(EncryptedBlob {
                epoch: 0,
                nonce: Nonce([3; 24]),
                ciphertext: vec![4; 40],
            }),
        };
        Hello::sign(
            &session,
            challenge,
            1,
            Some(Hash32([5; 32])),
            presence,
            "claudemesh/test",
        )
    }

    #[test]
    fn valid_hello_verifies() {
        hello(&[9; 32]).verify(&[9; 32], NOW).unwrap();
    }

    #[test]
    fn a_hello_replayed_on_another_connection_fails() {
        let h = hello(&[9; 32]);
        assert_eq!(h.verify(&[8; 32], NOW), Err(HelloError::BadSignature));
    }

    #[test]
    fn every_field_is_signed() {
        let c = [9; 32];
        let good = hello(&c);
        type Mutation = Box<dyn Fn(&mut Hello)>;
        let mutations: Vec<(&str, Mutation)> = vec![
            ("version", Box::new(|h| h.version = 2)),
            ("log_head", Box::new(|h| h.log_head = None)),
            (
                "log_head value",
                Box::new(|h| h.log_head = Some(Hash32([6; 32]))),
            ),
            ("status", Box::new(|h| h.presence.status = Status::Idle)),
            (
                "peer_type",
                Box::new(|h| h.presence.peer_type = Some(PeerType::Bot)),
            ),
            ("peer_type none", Box::new(|h| h.presence.peer_type = None)),
            ("summary", Box::new(|h| h.presence.summary = None)),
            (
                "summary epoch",
                Box::new(|h| h.presence.summary.as_mut().unwrap().epoch = 1),
            ),
            (
                "summary nonce",
                Box::new(|h| h.presence.summary.as_mut().unwrap().nonce.0[0] ^= 1),
            ),
            (
                "summary ct",
                Box::new(|h| h.presence.summary.as_mut().unwrap().ciphertext[0] ^= 1),
            ),
            ("client", Box::new(|h| h.client.push('x'))),
            ("sig", Box::new(|h| h.sig.0[0] ^= 1)),
        ];
        for (name, mutate) in mutations {
            let mut h = good.clone();
            mutate(&mut h);
            assert_eq!(h.verify(&c, NOW), Err(HelloError::BadSignature), "{name}");
        }
        // Mesh id and certificate fields are covered by the certificate check too.
        let mut h = good.clone();
        h.mesh_id = MeshId(Hash32([7; 32]));
        assert!(h.verify(&c, NOW).is_err());
        let mut h = good.clone();
        h.cert.expires_at += 1;
        assert!(h.verify(&c, NOW).is_err());
        // A session swapped for another certified session of the same member.
        let member = SigningKey::from_seed(&[1; 32]);
        let other = SessionIdentity::new(&member, MeshId(Hash32([2; 32])), NOW, 3600).unwrap();
        let mut h = good;
        h.cert = other.cert;
        assert_eq!(h.verify(&c, NOW), Err(HelloError::BadSignature));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = serde_json::to_value(hello(&[9; 32])).unwrap();
        v["display_name"] = "mallory".into();
        assert!(serde_json::from_value::<Hello>(v).is_err());
    }

    #[test]
    fn expired_certificate_is_refused() {
        let h = hello(&[9; 32]);
        assert!(matches!(
            h.verify(&[9; 32], NOW + 7200),
            Err(HelloError::Certificate(CertError::Expired { .. }))
        ));
    }
}

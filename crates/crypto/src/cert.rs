//! Session certificates: a member key vouches for a session key (one Claude
//! Code session, script, or MCP server) for a bounded time, so that each
//! connection signs as itself while chaining to an admitted member.
//!
//! Signed bytes: `Transcript("claudemesh/session-cert/v1")` with fields
//! `mesh_id ‖ member ‖ session ‖ issued_at ‖ expires_at` (unix seconds).
//! Unlike the TypeScript claudemesh, no display name is certified here: names
//! are encrypted (profiles, presence), so the broker never sees them (TM1).

use serde::{Deserialize, Serialize};

use crate::encoding::{Transcript, label};
use crate::ids::{MemberKey, MeshId, SessionKey};
use crate::keys::{KeyError, Signature, SigningKey};

/// Longest validity a certificate may claim: 30 days.
pub const MAX_CERT_LIFETIME_SECS: u64 = 30 * 24 * 3600;
/// Clock skew tolerated when checking `issued_at` against the verifier's clock.
pub const CERT_CLOCK_SKEW_SECS: u64 = 300;

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The member's signature over the certificate does not verify.
    #[error("session certificate signature does not verify")]
    BadSignature,
    /// `expires_at` is at or before the time it was checked against.
    #[error("session certificate expired at {expires_at} (checked at {now})")]
    Expired {
        /// When it expired (unix seconds).
        expires_at: u64,
        /// The time it was checked against.
        now: u64,
    },
    /// `issued_at` lies in the future beyond the tolerated skew.
    #[error("session certificate issued in the future ({issued_at} > {now})")]
    NotYetValid {
        /// Claimed issue time.
        issued_at: u64,
        /// The time it was checked against.
        now: u64,
    },
    /// Validity longer than [`MAX_CERT_LIFETIME_SECS`] or `expires_at <= issued_at`.
    #[error("session certificate lifetime is invalid (must be 1 s to 30 days)")]
    BadLifetime,
    /// Issued for a different mesh.
    #[error("session certificate is for another mesh")]
    WrongMesh,
}

/// Why an item a session signed fails the checks every such item shares
/// ([`SessionCert::check_signed_item`]); each item's error type turns it
/// into its own variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedItemFault {
    /// A version other than the one supported.
    Version(u64),
    /// The session signature does not verify.
    Signature,
    /// Signed for another mesh.
    Mesh,
    /// The signer's certificate is not valid at the item's time.
    Certificate(CertError),
}

/// A member's signed statement that `session` may act for it in `mesh_id`
/// between `issued_at` and `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCert {
    /// The mesh this certificate is valid in.
    pub mesh_id: MeshId,
    /// The member key that signs (must be admitted in the mesh's log).
    pub member: MemberKey,
    /// The session key it certifies.
    pub session: SessionKey,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds; at most 30 days after `issued_at`.
    pub expires_at: u64,
    /// ed25519 signature by `member` over [`SessionCert::signed_bytes`].
    pub sig: Signature,
}

impl SessionCert {
    /// Issues a certificate for `session` signed by `member`.
    pub fn issue(
        member: &SigningKey,
        mesh_id: MeshId,
        session: SessionKey,
        issued_at: u64,
        lifetime_secs: u64,
    ) -> Result<Self, CertError> {
        if lifetime_secs == 0 || lifetime_secs > MAX_CERT_LIFETIME_SECS {
            return Err(CertError::BadLifetime);
        }
        let mut cert = SessionCert {
            mesh_id,
            member: MemberKey(member.public()),
            session,
            issued_at,
            expires_at: issued_at.saturating_add(lifetime_secs),
            sig: Signature([0; 64]),
        };
        cert.sig = member.sign(&cert.signed_bytes());
        Ok(cert)
    }

    /// The canonical bytes the member signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(label::SESSION_CERT);
        t.bytes(self.mesh_id.as_bytes())
            .bytes(self.member.as_bytes())
            .bytes(self.session.as_bytes())
            .u64(self.issued_at)
            .u64(self.expires_at);
        t.into_bytes()
    }

    /// Checks the signature, the lifetime bound, and validity at `now`
    /// (unix seconds) for `mesh_id`. Whether `member` is admitted is the
    /// membership log's question, not this one.
    pub fn verify(&self, mesh_id: &MeshId, now: u64) -> Result<(), CertError> {
        self.check_shape(mesh_id)?;
        self.member
            .verify(&self.signed_bytes(), &self.sig)
            .map_err(|_: KeyError| CertError::BadSignature)?;
        self.check_time(now)
    }

    /// The checks every item a session signs (a receipt, a watermark, a
    /// coordination object) shares, in this order: the item's version `v`
    /// against the one `supported`, `sig` over `signed` by this
    /// certificate's session key, the mesh the item was signed for against
    /// `mesh`, and this certificate at `floor(at_ms / 1000)`.
    pub fn check_signed_item(
        &self,
        (v, supported): (u64, u64),
        signed: &[u8],
        sig: &Signature,
        (signed_for, mesh): (&MeshId, &MeshId),
        at_ms: u64,
    ) -> Result<(), SignedItemFault> {
        if v != supported {
            return Err(SignedItemFault::Version(v));
        }
        self.session
            .verify(signed, sig)
            .map_err(|_: KeyError| SignedItemFault::Signature)?;
        if signed_for != mesh {
            return Err(SignedItemFault::Mesh);
        }
        self.verify(mesh, at_ms / 1000)
            .map_err(SignedItemFault::Certificate)
    }

    /// Everything [`SessionCert::verify`] checks except the signature: for a
    /// certificate whose signature the caller verified before (the very same
    /// certificate, field for field), which is still judged at `now`.
    pub fn verify_previously_signed(&self, mesh_id: &MeshId, now: u64) -> Result<(), CertError> {
        self.check_shape(mesh_id)?;
        self.check_time(now)
    }

    fn check_shape(&self, mesh_id: &MeshId) -> Result<(), CertError> {
        if &self.mesh_id != mesh_id {
            return Err(CertError::WrongMesh);
        }
        if self.expires_at <= self.issued_at
            || self.expires_at - self.issued_at > MAX_CERT_LIFETIME_SECS
        {
            return Err(CertError::BadLifetime);
        }
        Ok(())
    }

    fn check_time(&self, now: u64) -> Result<(), CertError> {
        if self.issued_at > now.saturating_add(CERT_CLOCK_SKEW_SECS) {
            return Err(CertError::NotYetValid {
                issued_at: self.issued_at,
                now,
            });
        }
        if now >= self.expires_at {
            return Err(CertError::Expired {
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }
}

/// A session's signing key together with the certificate that vouches for it.
#[derive(Debug, Clone)]
pub struct SessionIdentity {
    /// The session's own signing key.
    pub key: SigningKey,
    /// The member's certificate for `key.public()`.
    pub cert: SessionCert,
}

impl SessionIdentity {
    /// Makes a fresh session key and certifies it with `member`.
    pub fn new(
        member: &SigningKey,
        mesh_id: MeshId,
        issued_at: u64,
        lifetime_secs: u64,
    ) -> Result<Self, CertError> {
        let key = SigningKey::generate();
        let cert = SessionCert::issue(
            member,
            mesh_id,
            SessionKey(key.public()),
            issued_at,
            lifetime_secs,
        )?;
        Ok(SessionIdentity { key, cert })
    }

    /// The session public key.
    pub fn public(&self) -> SessionKey {
        self.cert.session
    }

    /// The member public key this session acts for.
    pub fn member(&self) -> MemberKey {
        self.cert.member
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::Hash32;
    use proptest::prelude::*;

    const MESH: MeshId = MeshId(Hash32([4; 32]));

    fn cert(now: u64) -> SessionCert {
        let member = SigningKey::from_seed(&[1; 32]);
        let session = SigningKey::from_seed(&[2; 32]).public();
        SessionCert::issue(&member, MESH, SessionKey(session), now, 3600).unwrap()
    }

    #[test]
    fn valid_certificate_verifies() {
        cert(1000).verify(&MESH, 1500).unwrap();
    }

    #[test]
    fn expiry_future_and_mesh_are_checked() {
        let c = cert(1000);
        assert!(matches!(
            c.verify(&MESH, 4600),
            Err(CertError::Expired { .. })
        ));
        assert!(matches!(
            c.verify(&MESH, 600),
            Err(CertError::NotYetValid { .. })
        ));
        assert_eq!(
            c.verify(&MeshId(Hash32([5; 32])), 1500),
            Err(CertError::WrongMesh)
        );
        let member = SigningKey::from_seed(&[1; 32]);
        assert_eq!(
            SessionCert::issue(&member, MESH, c.session, 0, MAX_CERT_LIFETIME_SECS + 1),
            Err(CertError::BadLifetime)
        );
    }

    #[test]
    fn a_known_signature_still_expires_and_stays_in_its_mesh() {
        let c = cert(1000);
        c.verify_previously_signed(&MESH, 1500).unwrap();
        assert!(matches!(
            c.verify_previously_signed(&MESH, 4600),
            Err(CertError::Expired { .. })
        ));
        assert_eq!(
            c.verify_previously_signed(&MeshId(Hash32([5; 32])), 1500),
            Err(CertError::WrongMesh)
        );
    }

    #[test]
    fn flipping_any_signed_field_fails() {
        let good = cert(1000);
        let mut c = good.clone();
        c.expires_at += 1;
        assert_eq!(c.verify(&MESH, 1500), Err(CertError::BadSignature));
        let mut c = good.clone();
        c.session = SessionKey(SigningKey::from_seed(&[3; 32]).public());
        assert_eq!(c.verify(&MESH, 1500), Err(CertError::BadSignature));
        for byte in 0..64 {
            let mut c = good.clone();
            c.sig.0[byte] ^= 0x01;
            assert_eq!(c.verify(&MESH, 1500), Err(CertError::BadSignature));
        }
    }

    proptest! {
        #[test]
        fn serde_roundtrip(issued in 0u64..1u64 << 40, life in 1u64..MAX_CERT_LIFETIME_SECS) {
            let member = SigningKey::from_seed(&[1; 32]);
            let c = SessionCert::issue(&member, MESH, SessionKey(SigningKey::from_seed(&[2; 32]).public()), issued, life).unwrap();
            let back: SessionCert = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
            prop_assert_eq!(&back, &c);
            prop_assert!(back.verify(&MESH, issued).is_ok());
        }
    }
}

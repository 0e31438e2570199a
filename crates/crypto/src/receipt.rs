//! Delivery evidence a recipient signs (issue 15, `docs/security.md` §8.1):
//! a [`Receipt`] for one message (`delivered`, `shown`, `answered`) and a
//! [`Watermark`] for a fan-out target ("every message of `#deploys` up to
//! broker seq N was delivered / shown to me").
//!
//! Both are signed by the recipient's session key and carry the member's
//! certificate for it, so a sender verifies them against its own verified
//! roster; the broker stores and forwards them but cannot forge one, move one
//! to another message, recipient, state or mesh, or turn `delivered` into
//! `shown`. Receipts and watermarks have different labels, so neither can be
//! read as the other.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cert::{CertError, SessionCert, SessionIdentity, SignedItemFault};
use crate::encoding::{DecodeError, Transcript, label};
use crate::envelope::MessageId;
use crate::ids::{MemberKey, MeshId, SessionKey};
use crate::keys::Signature;
use crate::target::Target;

/// The only receipt and watermark version.
pub const RECEIPT_VERSION: u64 = 1;

/// What a recipient attests about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    /// Stored on a device of the recipient (its local store).
    Delivered,
    /// Put in front of a reader: printed, returned to a model, pushed or
    /// injected into a conversation, displayed.
    Shown,
    /// The recipient sent a message with `reply_to` this one.
    Answered,
}

impl ReceiptState {
    /// The wire and signed spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptState::Delivered => "delivered",
            ReceiptState::Shown => "shown",
            ReceiptState::Answered => "answered",
        }
    }
}

impl fmt::Display for ReceiptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReceiptState {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "delivered" => Ok(ReceiptState::Delivered),
            "shown" => Ok(ReceiptState::Shown),
            "answered" => Ok(ReceiptState::Answered),
            _ => Err(DecodeError::Invalid("receipt state")),
        }
    }
}

/// How the recipient's device reached that state. Signed, so the sender
/// learns whether a model or a person saw the message, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Stored in the local store (`delivered`).
    Store,
    /// Printed by `claudemesh inbox` (or `topic read`).
    Inbox,
    /// Returned by the MCP `check_messages` tool.
    McpTool,
    /// Pushed into a Claude Code conversation as a channel notification.
    Channel,
    /// Injected into a Claude Code conversation by a hook.
    Hook,
    /// Returned by the local gateway's HTTP API.
    Gateway,
    /// Displayed by the web app.
    Web,
    /// A reply was sent (`answered`).
    Reply,
}

impl Via {
    /// The wire and signed spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Store => "store",
            Via::Inbox => "inbox",
            Via::McpTool => "mcp_tool",
            Via::Channel => "channel",
            Via::Hook => "hook",
            Via::Gateway => "gateway",
            Via::Web => "web",
            Via::Reply => "reply",
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a receipt or watermark is not evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// A version other than [`RECEIPT_VERSION`].
    #[error("unsupported receipt version {0}")]
    UnsupportedVersion(u64),
    /// The session signature does not verify.
    #[error("receipt signature does not verify")]
    BadSignature,
    /// Signed for another mesh.
    #[error("receipt is for another mesh")]
    WrongMesh,
    /// The signer's certificate is not valid at the receipt's time.
    #[error("receipt signer's certificate: {0}")]
    BadCertificate(#[from] CertError),
    /// Fields that cannot go together (a reply id without `answered`, a
    /// watermark for a direct target or for `answered`).
    #[error("malformed receipt: {0}")]
    Malformed(&'static str),
}

impl From<SignedItemFault> for ReceiptError {
    fn from(f: SignedItemFault) -> Self {
        match f {
            SignedItemFault::Version(v) => ReceiptError::UnsupportedVersion(v),
            SignedItemFault::Signature => ReceiptError::BadSignature,
            SignedItemFault::Mesh => ReceiptError::WrongMesh,
            SignedItemFault::Certificate(e) => ReceiptError::BadCertificate(e),
        }
    }
}

/// A recipient's signed statement about one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Receipt {
    /// Always [`RECEIPT_VERSION`].
    pub v: u64,
    /// The mesh.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub mesh: MeshId,
    /// What is attested.
    pub state: ReceiptState,
    /// The member who sent the message.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub sender: MemberKey,
    /// The message's id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: MessageId,
    /// The message's target, as its envelope named it.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub target: Target,
    /// The recipient's clock, unix milliseconds.
    pub at_ms: u64,
    /// How the state was reached.
    pub via: Via,
    /// The reply's id; present exactly when `state` is `answered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub reply: Option<MessageId>,
    /// The recipient member's certificate for the signing session key.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub signer: SessionCert,
    /// ed25519 by `signer.session` over [`Receipt::signed_bytes`].
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub sig: Signature,
}

/// What one receipt is about, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts {
    /// What is attested.
    pub state: ReceiptState,
    /// The member who sent the message.
    pub sender: MemberKey,
    /// The message's id.
    pub id: MessageId,
    /// The message's target.
    pub target: Target,
    /// The recipient's clock, unix milliseconds.
    pub at_ms: u64,
    /// How the state was reached.
    pub via: Via,
    /// The reply's id (only for `answered`).
    pub reply: Option<MessageId>,
}

impl Receipt {
    /// Signs `facts` as the session `me`.
    pub fn sign(me: &SessionIdentity, facts: ReceiptFacts) -> Result<Self, ReceiptError> {
        let mut r = Receipt {
            v: RECEIPT_VERSION,
            mesh: me.cert.mesh_id,
            state: facts.state,
            sender: facts.sender,
            id: facts.id,
            target: facts.target,
            at_ms: facts.at_ms,
            via: facts.via,
            reply: facts.reply,
            signer: me.cert.clone(),
            sig: Signature([0; 64]),
        };
        r.check_shape()?;
        r.sig = me.key.sign(&r.signed_bytes());
        Ok(r)
    }

    /// The canonical bytes the recipient's session key signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(label::RECEIPT);
        t.u64(self.v)
            .bytes(self.mesh.as_bytes())
            .str(self.state.as_str())
            .bytes(self.sender.as_bytes())
            .bytes(&self.id.0)
            .str(&self.target.to_string())
            .bytes(&self.signer.signed_bytes())
            .bytes(&self.signer.sig.0)
            .u64(self.at_ms)
            .str(self.via.as_str())
            .opt_bytes(self.reply.as_ref().map(|r| &r.0[..]));
        t.into_bytes()
    }

    /// The recipient member that signed.
    pub fn member(&self) -> MemberKey {
        self.signer.member
    }

    /// The recipient session that signed.
    pub fn session(&self) -> SessionKey {
        self.signer.session
    }

    /// Checks, in this order: the version, the session signature, the mesh,
    /// the certificate at `floor(at_ms / 1000)`, and the shape. Whether the
    /// signer is the right recipient of the right message is the caller's
    /// question (`docs/security.md` §8.1, "what the sender checks").
    pub fn verify(&self, mesh: &MeshId) -> Result<(), ReceiptError> {
        self.signer.check_signed_item(
            (self.v, RECEIPT_VERSION),
            &self.signed_bytes(),
            &self.sig,
            (&self.mesh, mesh),
            self.at_ms,
        )?;
        self.check_shape()
    }

    /// The checks of `verify` that need no key: which fields may go
    /// together (cheap, for a relay that does not verify signatures).
    pub fn check_shape(&self) -> Result<(), ReceiptError> {
        if (self.state == ReceiptState::Answered) != self.reply.is_some() {
            return Err(ReceiptError::Malformed(
                "a reply id goes with `answered` and only with it",
            ));
        }
        Ok(())
    }
}

/// Most `missing` entries a watermark may list.
pub const MAX_WATERMARK_MISSING: usize = 64;

/// A recipient's signed statement about a fan-out target (`@group`,
/// `#topic`, `*`): every message of it numbered `from < tseq <= upto` by the
/// broker's per-target sequence reached `state`, except those in `missing`.
/// The recipient claims only what it holds: a message it has not got (a
/// gap, a message held back while it was busy) is listed as missing, never
/// covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Watermark {
    /// Always [`RECEIPT_VERSION`].
    pub v: u64,
    /// The mesh.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub mesh: MeshId,
    /// `delivered` or `shown`.
    pub state: ReceiptState,
    /// The fan-out target.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub target: Target,
    /// Exclusive lower bound of the covered per-target numbers.
    pub from: u64,
    /// Inclusive upper bound of the covered per-target numbers.
    pub upto: u64,
    /// Per-target numbers in `(from, upto]` not covered, ascending, at most
    /// [`MAX_WATERMARK_MISSING`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<u64>,
    /// The recipient's clock, unix milliseconds.
    pub at_ms: u64,
    /// How the state was reached (of the last message covered).
    pub via: Via,
    /// The recipient member's certificate for the signing session key.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub signer: SessionCert,
    /// ed25519 by `signer.session` over [`Watermark::signed_bytes`].
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub sig: Signature,
}

/// What one watermark covers, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkFacts {
    /// `delivered` or `shown`.
    pub state: ReceiptState,
    /// The fan-out target.
    pub target: Target,
    /// Exclusive lower bound (per-target numbers).
    pub from: u64,
    /// Inclusive upper bound.
    pub upto: u64,
    /// Numbers in `(from, upto]` not covered.
    pub missing: Vec<u64>,
    /// The recipient's clock, unix milliseconds.
    pub at_ms: u64,
    /// How the state was reached.
    pub via: Via,
}

impl Watermark {
    /// Signs `facts` as the session `me`.
    pub fn sign(me: &SessionIdentity, facts: WatermarkFacts) -> Result<Self, ReceiptError> {
        let mut w = Watermark {
            v: RECEIPT_VERSION,
            mesh: me.cert.mesh_id,
            state: facts.state,
            target: facts.target,
            from: facts.from,
            upto: facts.upto,
            missing: facts.missing,
            at_ms: facts.at_ms,
            via: facts.via,
            signer: me.cert.clone(),
            sig: Signature([0; 64]),
        };
        w.check_shape()?;
        w.sig = me.key.sign(&w.signed_bytes());
        Ok(w)
    }

    /// Whether this watermark covers the message numbered `tseq`.
    pub fn covers(&self, tseq: u64) -> bool {
        self.from < tseq && tseq <= self.upto && self.missing.binary_search(&tseq).is_err()
    }

    /// The canonical bytes the recipient's session key signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new(label::WATERMARK);
        t.u64(self.v)
            .bytes(self.mesh.as_bytes())
            .str(self.state.as_str())
            .str(&self.target.to_string())
            .u64(self.from)
            .u64(self.upto)
            .list_len(self.missing.len());
        for m in &self.missing {
            t.u64(*m);
        }
        t.bytes(&self.signer.signed_bytes())
            .bytes(&self.signer.sig.0)
            .u64(self.at_ms)
            .str(self.via.as_str());
        t.into_bytes()
    }

    /// The recipient member that signed.
    pub fn member(&self) -> MemberKey {
        self.signer.member
    }

    /// Checks what [`Receipt::verify`] checks, for a watermark.
    pub fn verify(&self, mesh: &MeshId) -> Result<(), ReceiptError> {
        self.signer.check_signed_item(
            (self.v, RECEIPT_VERSION),
            &self.signed_bytes(),
            &self.sig,
            (&self.mesh, mesh),
            self.at_ms,
        )?;
        self.check_shape()
    }

    /// The checks of `verify` that need no key: which fields may go
    /// together (cheap, for a relay that does not verify signatures).
    pub fn check_shape(&self) -> Result<(), ReceiptError> {
        if self.state == ReceiptState::Answered {
            return Err(ReceiptError::Malformed(
                "`answered` is per message, never a watermark",
            ));
        }
        if self.target.is_direct() {
            return Err(ReceiptError::Malformed(
                "a watermark is for a group, topic or broadcast",
            ));
        }
        if self.from >= self.upto {
            return Err(ReceiptError::Malformed("a watermark covers from < upto"));
        }
        if self.missing.len() > MAX_WATERMARK_MISSING {
            return Err(ReceiptError::Malformed("too many missing entries"));
        }
        let in_range = self
            .missing
            .iter()
            .all(|m| self.from < *m && *m <= self.upto);
        let ascending = self.missing.windows(2).all(|w| w[0] < w[1]);
        if !in_range || !ascending {
            return Err(ReceiptError::Malformed(
                "missing entries must be ascending, inside (from, upto]",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::Hash32;
    use crate::keys::SigningKey;

    const MESH: MeshId = MeshId(Hash32([4; 32]));
    const T0: u64 = 1_764_000_000;

    fn bob() -> SessionIdentity {
        let member = SigningKey::from_seed(&[2; 32]);
        let key = SigningKey::from_seed(&[3; 32]);
        let cert =
            SessionCert::issue(&member, MESH, SessionKey(key.public()), T0, 3600).expect("cert");
        SessionIdentity { key, cert }
    }

    fn alice() -> MemberKey {
        MemberKey(SigningKey::from_seed(&[1; 32]).public())
    }

    fn facts(state: ReceiptState) -> ReceiptFacts {
        ReceiptFacts {
            state,
            sender: alice(),
            id: MessageId([9; 16]),
            target: Target::Member(bob().member()),
            at_ms: (T0 + 60) * 1000,
            via: Via::Hook,
            reply: (state == ReceiptState::Answered).then_some(MessageId([7; 16])),
        }
    }

    #[test]
    fn receipts_verify_and_roundtrip_through_json() {
        for state in [
            ReceiptState::Delivered,
            ReceiptState::Shown,
            ReceiptState::Answered,
        ] {
            let r = Receipt::sign(&bob(), facts(state)).expect("sign");
            r.verify(&MESH).expect("verify");
            let json = serde_json::to_string(&r).expect("json");
            let back: Receipt = serde_json::from_str(&json).expect("parse");
            assert_eq!(back, r);
            back.verify(&MESH).expect("verify after json");
        }
    }

    #[test]
    fn every_signed_field_is_bound() {
        let good = Receipt::sign(&bob(), facts(ReceiptState::Delivered)).expect("sign");
        let tamper: Vec<fn(&mut Receipt)> = vec![
            |r| r.state = ReceiptState::Shown,
            |r| r.sender = MemberKey(SigningKey::from_seed(&[8; 32]).public()),
            |r| r.id = MessageId([1; 16]),
            |r| r.target = Target::Broadcast,
            |r| r.at_ms += 1,
            |r| r.via = Via::Inbox,
            |r| r.signer.expires_at += 1,
        ];
        for (i, t) in tamper.iter().enumerate() {
            let mut r = good.clone();
            t(&mut r);
            assert_eq!(r.verify(&MESH), Err(ReceiptError::BadSignature), "case {i}");
        }
        let other_mesh = MeshId(Hash32([5; 32]));
        assert_eq!(good.verify(&other_mesh), Err(ReceiptError::WrongMesh));
    }

    #[test]
    fn a_receipt_outside_its_certificate_or_misshaped_is_refused() {
        let late = ReceiptFacts {
            at_ms: (T0 + 7200) * 1000,
            ..facts(ReceiptState::Shown)
        };
        let r = Receipt::sign(&bob(), late).expect("sign");
        assert!(matches!(
            r.verify(&MESH),
            Err(ReceiptError::BadCertificate(CertError::Expired { .. }))
        ));
        let no_reply = ReceiptFacts {
            reply: None,
            ..facts(ReceiptState::Answered)
        };
        assert!(matches!(
            Receipt::sign(&bob(), no_reply),
            Err(ReceiptError::Malformed(_))
        ));
        // A certificate that the member did not sign.
        let mut forged = bob();
        forged.cert.member = alice();
        let r = Receipt::sign(&forged, facts(ReceiptState::Shown)).expect("sign");
        assert_eq!(
            r.verify(&MESH),
            Err(ReceiptError::BadCertificate(CertError::BadSignature))
        );
    }

    fn mark(state: ReceiptState, target: Target, missing: Vec<u64>) -> WatermarkFacts {
        WatermarkFacts {
            state,
            target,
            from: 10,
            upto: 42,
            missing,
            at_ms: (T0 + 5) * 1000,
            via: Via::Channel,
        }
    }

    #[test]
    fn watermarks_verify_cover_exactly_and_are_not_receipts() {
        let deploys = Target::Topic("deploys".into());
        let w = Watermark::sign(
            &bob(),
            mark(ReceiptState::Shown, deploys.clone(), vec![12, 40]),
        )
        .expect("sign");
        w.verify(&MESH).expect("verify");
        let covered: Vec<u64> = (0..50).filter(|t| w.covers(*t)).collect();
        let expected: Vec<u64> = (11..=42).filter(|t| *t != 12 && *t != 40).collect();
        assert_eq!(covered, expected);
        let tamper: Vec<fn(&mut Watermark)> = vec![
            |w| w.upto = 43,
            |w| w.from = 9,
            |w| {
                w.missing.pop();
            },
            |w| w.target = Target::Group("eng".into()),
            |w| w.state = ReceiptState::Delivered,
        ];
        for (i, t) in tamper.iter().enumerate() {
            let mut moved = w.clone();
            t(&mut moved);
            assert_eq!(
                moved.verify(&MESH),
                Err(ReceiptError::BadSignature),
                "case {i}"
            );
        }
        for bad in [
            mark(ReceiptState::Answered, Target::Broadcast, vec![]),
            mark(ReceiptState::Delivered, Target::Member(alice()), vec![]),
            mark(ReceiptState::Delivered, Target::Broadcast, vec![40, 12]),
            mark(ReceiptState::Delivered, Target::Broadcast, vec![10]),
            WatermarkFacts {
                upto: 200,
                ..mark(
                    ReceiptState::Delivered,
                    Target::Broadcast,
                    (11..=75).collect(),
                )
            },
            WatermarkFacts {
                upto: 10,
                ..mark(ReceiptState::Delivered, Target::Broadcast, vec![])
            },
        ] {
            assert!(
                matches!(
                    Watermark::sign(&bob(), bad),
                    Err(ReceiptError::Malformed(_))
                ),
                "refused"
            );
        }
        // Domain separation: a watermark's signature never verifies as a receipt's.
        let r = Receipt::sign(&bob(), facts(ReceiptState::Shown)).expect("sign");
        let mut swapped = r.clone();
        swapped.sig = w.sig;
        assert_eq!(swapped.verify(&MESH), Err(ReceiptError::BadSignature));
    }

    /// Known answers: the signed bytes' SHA-256 and the signature of a fixed
    /// receipt and watermark, so another implementation of §8.1 can check
    /// itself byte for byte (ed25519 is deterministic).
    #[test]
    fn known_answers() {
        let r = Receipt::sign(&bob(), facts(ReceiptState::Answered)).expect("sign");
        let w = Watermark::sign(
            &bob(),
            mark(
                ReceiptState::Delivered,
                Target::Topic("deploys".into()),
                vec![12],
            ),
        )
        .expect("sign");
        let digest = |b: &[u8]| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(b))
        };
        let got = [
            digest(&r.signed_bytes()),
            hex::encode(r.sig.0),
            digest(&w.signed_bytes()),
            hex::encode(w.sig.0),
        ];
        assert_eq!(
            got, KNOWN,
            "update docs/security.md §12 with the new values"
        );
    }

    const KNOWN: [&str; 4] = [
        "7eec3ee29b28dd3f11c326f03c5d70d379cb0cb2702d3cb28486ac4312734ac7",
        "26d25d420a1637141e4964ef9d6abae86b1e9fc4a0029036e8d89b5d5caef3c664b6397ef291435ddc93cc3b8e960bdd9845b9f8209fd2925ce5290fea402707",
        "06f9b228b815e12a40f37d2919f9697719984e56ff62937caeae6497842c7414",
        "fd8caaae605a82f221b6a7132c1aa822bd1a9c8390ccfae80a473072ded63beb0b916a269a0529789a70093ddd8895bcfa5dc381d62ee673ca01d074c8f23409",
    ];
}

//! What a sender believes about a message it sent (issue 15,
//! `docs/security.md` §8.1): each recipient's signed receipts and
//! watermarks, as the broker handed them over, checked against this
//! device's own verified roster. A proof counts only when its signature and
//! certificate verify ([`Receipt::verify`], [`Watermark::verify`]) and it is
//! about this very message: sent by this member, with this id and target,
//! signed by that recipient (the member or session a direct message named;
//! a recipient of a fan-out message as of when it was sent), and for a
//! watermark, covering the message's number within its target. A proof that
//! fails is kept, with why, and never raises the state; what the broker
//! says without a proof is reported as the broker's word only.

use claudemesh_crypto::envelope::{MessageId, Target};
use claudemesh_crypto::log::Roster;
use claudemesh_crypto::receipt::{Receipt, ReceiptState, Via, Watermark};
use claudemesh_crypto::{MemberKey, MeshId, PublicKey};
use claudemesh_proto::frames::{DeliveryState, RecipientStatus};
use serde::Serialize;

/// How far past the log length a message was sent at a fan-out recipient
/// is looked for (a member added to a topic between the sender's log head
/// and the broker's acceptance); the current length is always tried too.
const RECIPIENT_SCAN: u64 = 1024;

/// The kind of a proof.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProofKind {
    /// A receipt about this one message.
    Receipt,
    /// A watermark: every message of a fan-out target up to a number.
    Watermark,
}

/// One signed statement of a recipient about a message, and whether it
/// holds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proof {
    /// What it attests.
    pub state: ReceiptState,
    /// A receipt or a watermark.
    pub kind: ProofKind,
    /// When, by the recipient's clock (unix ms).
    pub at_ms: u64,
    /// How the recipient's device reached the state.
    pub via: Via,
    /// The session that signed (hex).
    pub session: String,
    /// For `answered`: the reply's id (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// It verifies and is about this message and this recipient.
    pub ok: bool,
    /// Why not, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a well-signed receipt or watermark is not evidence for this message
/// and this recipient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The signature or the certificate does not verify.
    #[error(transparent)]
    Signature(#[from] claudemesh_crypto::receipt::ReceiptError),
    /// About a message of another sender.
    #[error("the receipt is about another sender's message")]
    OtherSender,
    /// About another message.
    #[error("the receipt is about another message ({0})")]
    OtherMessage(String),
    /// About another target than the message's.
    #[error("the proof names another target ({0})")]
    OtherTarget(String),
    /// Signed by someone else than this recipient.
    #[error("signed by another member or session than this recipient")]
    OtherSigner,
    /// The signer is not a recipient of the message in this device's
    /// verified roster.
    #[error("the signer was not a recipient of this message")]
    NotRecipient,
    /// A watermark that does not cover this message.
    #[error("the watermark does not cover this message (#{tseq} of its target)")]
    NotCovering {
        /// The message's number within its target.
        tseq: u64,
    },
    /// A watermark, but the message's number within its target is unknown.
    #[error("the message's number within its target is unknown")]
    NoNumber,
}

/// The message a status is about, as this device knows it.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The mesh.
    pub mesh: MeshId,
    /// This member (the sender).
    pub sender: MemberKey,
    /// The message id.
    pub id: MessageId,
    /// Its target, from this device's outbox (`None`: sent from another
    /// device; each proof's own target is then judged).
    pub target: Option<Target>,
    /// Its number within its fan-out target: as accepted by the broker
    /// (this device's outbox), else as its status says.
    pub tseq: Option<u64>,
    /// The log length when it was sent (its envelope's log head), if known.
    pub sent_len: Option<u64>,
}

/// One recipient's state as proven and as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The broker's word (unsigned), `read` spelled `shown`.
    pub observed: &'static str,
    /// The highest state a proof that holds attests.
    pub proven: Option<ReceiptState>,
    /// Every proof, in the order given.
    pub proofs: Vec<Proof>,
}

impl Judged {
    /// The state to report: the highest proven, else the broker's word;
    /// but `expired` (not shown by its deadline, or dropped by retention)
    /// unless it was proven shown or answered.
    pub fn state(&self) -> String {
        let shown = matches!(
            self.proven,
            Some(ReceiptState::Shown | ReceiptState::Answered)
        );
        if self.observed == "expired" && !shown {
            return self.observed.to_owned();
        }
        self.proven
            .map_or(self.observed, ReceiptState::as_str)
            .to_owned()
    }
}

/// The broker's observed state, `read` spelled `shown`.
pub fn observed_str(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Queued => "queued",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Read => "shown",
        DeliveryState::Expired => "expired",
        DeliveryState::Answered => "answered",
    }
}

/// Judges every receipt and watermark of one recipient of `subject`.
pub fn judge(roster: &Roster, subject: &Subject, status: &RecipientStatus) -> Judged {
    let mut proofs = Vec::with_capacity(status.receipts.len() + status.marks.len());
    for r in &status.receipts {
        let checked = check_receipt(roster, subject, &status.recipient, r);
        proofs.push(Proof {
            state: r.state,
            kind: ProofKind::Receipt,
            at_ms: r.at_ms,
            via: r.via,
            session: r.signer.session.to_hex(),
            reply: r.reply.map(|id| id.to_hex()),
            ok: checked.is_ok(),
            error: checked.err().map(|e| e.to_string()),
        });
    }
    for w in &status.marks {
        let checked = check_mark(roster, subject, &status.recipient, w);
        proofs.push(Proof {
            state: w.state,
            kind: ProofKind::Watermark,
            at_ms: w.at_ms,
            via: w.via,
            session: w.signer.session.to_hex(),
            reply: None,
            ok: checked.is_ok(),
            error: checked.err().map(|e| e.to_string()),
        });
    }
    let proven = proofs.iter().filter(|p| p.ok).map(|p| p.state).max();
    Judged {
        observed: observed_str(status.state),
        proven,
        proofs,
    }
}

/// The target to judge a proof against: the message's, else the proof's.
fn target_for<'a>(subject: &'a Subject, claimed: &'a Target) -> Result<&'a Target, ProofError> {
    match &subject.target {
        Some(t) if t != claimed => Err(ProofError::OtherTarget(claimed.to_string())),
        Some(t) => Ok(t),
        None => Ok(claimed),
    }
}

/// Checks one receipt listed under `recipient`.
pub fn check_receipt(
    roster: &Roster,
    subject: &Subject,
    recipient: &PublicKey,
    r: &Receipt,
) -> Result<(), ProofError> {
    r.verify(&subject.mesh)?;
    if r.sender != subject.sender {
        return Err(ProofError::OtherSender);
    }
    if r.id != subject.id {
        return Err(ProofError::OtherMessage(r.id.to_hex()));
    }
    let target = target_for(subject, &r.target)?;
    let (member, session) = (r.signer.member, r.signer.session);
    match target {
        Target::Member(k) => {
            if member != *k || *recipient != k.0 {
                return Err(ProofError::OtherSigner);
            }
            if !was_member(roster, subject, &member.0) {
                return Err(ProofError::NotRecipient);
            }
        }
        Target::Session(s) => {
            if session != *s || (*recipient != s.0 && *recipient != member.0) {
                return Err(ProofError::OtherSigner);
            }
            if !was_member(roster, subject, &member.0) {
                return Err(ProofError::NotRecipient);
            }
        }
        fanout => {
            if *recipient != member.0 {
                return Err(ProofError::OtherSigner);
            }
            if !was_recipient(roster, subject, &member.0, fanout) {
                return Err(ProofError::NotRecipient);
            }
        }
    }
    Ok(())
}

/// Checks one watermark listed under `recipient`.
pub fn check_mark(
    roster: &Roster,
    subject: &Subject,
    recipient: &PublicKey,
    w: &Watermark,
) -> Result<(), ProofError> {
    w.verify(&subject.mesh)?;
    let target = target_for(subject, &w.target)?;
    let tseq = subject.tseq.ok_or(ProofError::NoNumber)?;
    if !w.covers(tseq) {
        return Err(ProofError::NotCovering { tseq });
    }
    let member = w.signer.member;
    if *recipient != member.0 {
        return Err(ProofError::OtherSigner);
    }
    if !was_recipient(roster, subject, &member.0, target) {
        return Err(ProofError::NotRecipient);
    }
    Ok(())
}

/// The log lengths to judge membership at: from the one the message was
/// sent at (or the start) a bounded way forward, and the current one.
fn lengths(roster: &Roster, subject: &Subject) -> impl Iterator<Item = u64> {
    let now = roster.len();
    let sent = subject.sent_len.unwrap_or(1).clamp(1, now.max(1));
    let scan_to = sent.saturating_add(RECIPIENT_SCAN).min(now);
    std::iter::once(sent)
        .chain(std::iter::once(now))
        .chain(sent.saturating_add(1)..scan_to)
}

/// Whether `member` was admitted to the mesh when the message was sent
/// (or soon after).
fn was_member(roster: &Roster, subject: &Subject, member: &PublicKey) -> bool {
    lengths(roster, subject).any(|len| roster.was_member_at_len(member, len))
}

/// Whether `member` was a recipient of a fan-out message to `target` when
/// it was sent (or soon after).
fn was_recipient(roster: &Roster, subject: &Subject, member: &PublicKey, target: &Target) -> bool {
    lengths(roster, subject).any(|len| roster.is_recipient_at(member, target, len))
}

#[cfg(test)]
#[path = "receipts_tests.rs"]
mod tests;

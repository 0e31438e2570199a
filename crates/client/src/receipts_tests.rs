//! Unit tests of the sender's checks on receipts and watermarks, over a log
//! built in memory (alice sends; bob, carol and dave receive; eve is not a
//! member): no broker, no disk.

use claudemesh_crypto::SigningKey;
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::envelope::{MessageId, Target};
use claudemesh_crypto::log::{LogBuilder, Role, topic_create_body, topic_join_body};
use claudemesh_crypto::receipt::{
    Receipt, ReceiptError, ReceiptFacts, ReceiptState, Via, Watermark, WatermarkFacts,
};
use claudemesh_crypto::{MemberKey, PublicKey};
use claudemesh_proto::frames::{DeliveryState, RecipientStatus};

use super::*;

const T: u64 = 1_800_000_000;
const ID: MessageId = MessageId([7; 16]);

/// A mesh owned by alice with bob, carol and dave; `#deploys` holds alice,
/// bob and carol (not dave).
struct World {
    log: LogBuilder,
    alice: SigningKey,
    bob: SigningKey,
    carol: SigningKey,
    dave: SigningKey,
}

impl World {
    fn new() -> World {
        let alice = SigningKey::generate();
        let mut log = LogBuilder::new(&alice, T);
        let bob = log.add_member(&alice, Role::Member, T).unwrap();
        let carol = log.add_member(&alice, Role::Member, T).unwrap();
        let dave = log.add_member(&alice, Role::Member, T).unwrap();
        let mesh = log.roster().mesh_id();
        let (body, _) = topic_create_body("deploys", false, "", &alice.public(), &mesh).unwrap();
        log.push(&alice, T, body).unwrap();
        for who in [&bob, &carol] {
            log.push(
                &alice,
                T,
                topic_join_body("deploys", &who.public(), None).unwrap(),
            )
            .unwrap();
        }
        World {
            log,
            alice,
            bob,
            carol,
            dave,
        }
    }

    fn roster(&self) -> &Roster {
        self.log.roster()
    }

    fn session(&self, who: &SigningKey) -> SessionIdentity {
        SessionIdentity::new(who, self.roster().mesh_id(), T, 3600).unwrap()
    }

    /// The message alice sent to `target`, numbered 5 in it if fan-out.
    fn subject(&self, target: Target) -> Subject {
        let tseq = (!target.is_direct()).then_some(5);
        Subject {
            mesh: self.roster().mesh_id(),
            sender: MemberKey(self.alice.public()),
            id: ID,
            target: Some(target),
            tseq,
            sent_len: Some(self.roster().len()),
        }
    }

    fn receipt(&self, signer: &SessionIdentity, subject: &Subject, state: ReceiptState) -> Receipt {
        Receipt::sign(
            signer,
            ReceiptFacts {
                state,
                sender: subject.sender,
                id: subject.id,
                target: subject.target.clone().unwrap(),
                at_ms: (T + 60) * 1000,
                via: Via::Inbox,
                reply: (state == ReceiptState::Answered).then_some(MessageId([8; 16])),
            },
        )
        .unwrap()
    }

    fn mark(
        &self,
        signer: &SessionIdentity,
        target: Target,
        upto: u64,
        missing: Vec<u64>,
    ) -> Watermark {
        Watermark::sign(
            signer,
            WatermarkFacts {
                state: ReceiptState::Shown,
                target,
                from: 0,
                upto,
                missing,
                at_ms: (T + 60) * 1000,
                via: Via::Hook,
            },
        )
        .unwrap()
    }
}

fn status(
    recipient: PublicKey,
    state: DeliveryState,
    receipts: Vec<Receipt>,
    marks: Vec<Watermark>,
) -> RecipientStatus {
    RecipientStatus {
        recipient,
        state,
        receipts,
        marks,
    }
}

fn dm_to(w: &World, who: &SigningKey) -> Subject {
    w.subject(Target::Member(MemberKey(who.public())))
}

#[test]
fn a_valid_receipt_proves_its_state() {
    let w = World::new();
    let subject = dm_to(&w, &w.bob);
    let bob = w.session(&w.bob);
    let delivered = w.receipt(&bob, &subject, ReceiptState::Delivered);
    let shown = w.receipt(&bob, &subject, ReceiptState::Shown);
    let j = judge(
        w.roster(),
        &subject,
        &status(
            w.bob.public(),
            DeliveryState::Read,
            vec![delivered, shown],
            vec![],
        ),
    );
    assert_eq!(j.proven, Some(ReceiptState::Shown));
    assert_eq!(j.state(), "shown");
    assert_eq!(j.observed, "shown");
    assert!(j.proofs.iter().all(|p| p.ok && p.error.is_none()));
    assert_eq!(j.proofs[1].via, Via::Inbox);
    assert_eq!(j.proofs[1].session, bob.public().to_hex());
}

#[test]
fn a_receipt_by_a_key_not_in_the_roster_proves_nothing() {
    let w = World::new();
    let subject = dm_to(&w, &w.bob);
    // Eve is no member: her certificate verifies against her own key, but
    // she is not the recipient (nor any member).
    let eve = SigningKey::generate();
    let r = w.receipt(&w.session(&eve), &subject, ReceiptState::Shown);
    let j = judge(
        w.roster(),
        &subject,
        &status(w.bob.public(), DeliveryState::Read, vec![r.clone()], vec![]),
    );
    assert_eq!(j.proven, None);
    assert!(!j.proofs[0].ok);
    assert_eq!(
        check_receipt(w.roster(), &subject, &w.bob.public(), &r),
        Err(ProofError::OtherSigner)
    );
    // Even listed under her own key, for a message to the topic.
    let topic = w.subject(Target::Topic("deploys".into()));
    let r = w.receipt(&w.session(&eve), &topic, ReceiptState::Answered);
    assert_eq!(
        check_receipt(w.roster(), &topic, &eve.public(), &r),
        Err(ProofError::NotRecipient)
    );
}

#[test]
fn bobs_receipt_presented_under_carol_proves_nothing() {
    let w = World::new();
    // A topic message: both bob and carol are recipients.
    let subject = w.subject(Target::Topic("deploys".into()));
    let bob = w.session(&w.bob);
    let r = w.receipt(&bob, &subject, ReceiptState::Answered);
    assert_eq!(
        check_receipt(w.roster(), &subject, &w.bob.public(), &r),
        Ok(())
    );
    let j = judge(
        w.roster(),
        &subject,
        &status(w.carol.public(), DeliveryState::Answered, vec![r], vec![]),
    );
    assert_eq!(j.proven, None);
    assert_eq!(j.state(), "answered", "the broker's word, reported as such");
    assert_eq!(
        j.proofs[0].error.as_deref(),
        Some(ProofError::OtherSigner.to_string().as_str())
    );
    // Bob's watermark under carol, likewise.
    let m = w.mark(&bob, Target::Topic("deploys".into()), 9, vec![]);
    assert_eq!(
        check_mark(w.roster(), &subject, &w.carol.public(), &m),
        Err(ProofError::OtherSigner)
    );
    // A DM to carol with bob's receipt under carol.
    let dm = dm_to(&w, &w.carol);
    let r = w.receipt(&bob, &dm_to(&w, &w.bob), ReceiptState::Shown);
    assert!(check_receipt(w.roster(), &dm, &w.carol.public(), &r).is_err());
}

#[test]
fn a_receipt_for_another_message_proves_nothing() {
    let w = World::new();
    let subject = dm_to(&w, &w.bob);
    let other = Subject {
        id: MessageId([9; 16]),
        ..subject.clone()
    };
    let r = w.receipt(&w.session(&w.bob), &other, ReceiptState::Shown);
    assert_eq!(
        check_receipt(w.roster(), &subject, &w.bob.public(), &r),
        Err(ProofError::OtherMessage(MessageId([9; 16]).to_hex()))
    );
    // Or of another sender.
    let carols = Subject {
        sender: MemberKey(w.carol.public()),
        ..subject.clone()
    };
    let r = w.receipt(&w.session(&w.bob), &carols, ReceiptState::Shown);
    assert_eq!(
        check_receipt(w.roster(), &subject, &w.bob.public(), &r),
        Err(ProofError::OtherSender)
    );
}

#[test]
fn a_watermark_below_the_message_or_with_it_missing_proves_nothing() {
    let w = World::new();
    let topic = Target::Topic("deploys".into());
    let subject = w.subject(topic.clone());
    let bob = w.session(&w.bob);
    let below = w.mark(&bob, topic.clone(), 4, vec![]);
    assert_eq!(
        check_mark(w.roster(), &subject, &w.bob.public(), &below),
        Err(ProofError::NotCovering { tseq: 5 })
    );
    let gap = w.mark(&bob, topic.clone(), 9, vec![5]);
    assert_eq!(
        check_mark(w.roster(), &subject, &w.bob.public(), &gap),
        Err(ProofError::NotCovering { tseq: 5 })
    );
    let other_target = w.mark(&bob, Target::Group("eng".into()), 9, vec![]);
    assert_eq!(
        check_mark(w.roster(), &subject, &w.bob.public(), &other_target),
        Err(ProofError::OtherTarget("@eng".into()))
    );
    let covering = w.mark(&bob, topic.clone(), 9, vec![4]);
    let j = judge(
        w.roster(),
        &subject,
        &status(
            w.bob.public(),
            DeliveryState::Read,
            vec![],
            vec![below, covering],
        ),
    );
    assert_eq!(j.proven, Some(ReceiptState::Shown));
    assert_eq!(j.proofs.iter().filter(|p| p.ok).count(), 1);
    assert_eq!(j.proofs[1].kind, ProofKind::Watermark);
    // Dave is a member but not in the topic: his watermark proves nothing.
    let dave = w.mark(&w.session(&w.dave), topic, 9, vec![]);
    assert_eq!(
        check_mark(w.roster(), &subject, &w.dave.public(), &dave),
        Err(ProofError::NotRecipient)
    );
}

#[test]
fn a_tampered_via_fails_the_signature() {
    let w = World::new();
    let subject = dm_to(&w, &w.bob);
    let bob = w.session(&w.bob);
    let mut r = w.receipt(&bob, &subject, ReceiptState::Shown);
    r.via = Via::Hook;
    let j = judge(
        w.roster(),
        &subject,
        &status(w.bob.public(), DeliveryState::Read, vec![r], vec![]),
    );
    assert_eq!(j.proven, None);
    assert!(!j.proofs[0].ok);
    assert_eq!(j.proofs[0].via, Via::Hook, "shown as claimed, marked bad");
    assert_eq!(
        j.proofs[0].error.as_deref(),
        Some(ReceiptError::BadSignature.to_string().as_str())
    );
    // A watermark's `via` likewise.
    let mut m = w.mark(&bob, Target::Topic("deploys".into()), 9, vec![]);
    m.via = Via::Inbox;
    let topic = w.subject(Target::Topic("deploys".into()));
    assert_eq!(
        check_mark(w.roster(), &topic, &w.bob.public(), &m),
        Err(ProofError::Signature(ReceiptError::BadSignature))
    );
}

#[test]
fn an_observed_read_without_proof_is_the_brokers_word_only() {
    let w = World::new();
    let subject = dm_to(&w, &w.bob);
    let j = judge(
        w.roster(),
        &subject,
        &status(w.bob.public(), DeliveryState::Read, vec![], vec![]),
    );
    assert_eq!(j.proven, None);
    assert_eq!(j.observed, "shown");
    assert!(j.proofs.is_empty());
    // A proven delivered under an observed read stays delivered.
    let r = w.receipt(&w.session(&w.bob), &subject, ReceiptState::Delivered);
    let j = judge(
        w.roster(),
        &subject,
        &status(w.bob.public(), DeliveryState::Read, vec![r], vec![]),
    );
    assert_eq!(j.proven, Some(ReceiptState::Delivered));
    assert_eq!(j.state(), "delivered");
}

#[test]
fn a_session_target_wants_that_sessions_signature() {
    let w = World::new();
    let bob1 = w.session(&w.bob);
    let bob2 = w.session(&w.bob);
    let subject = w.subject(Target::Session(bob1.public()));
    let r1 = w.receipt(&bob1, &subject, ReceiptState::Shown);
    assert_eq!(
        check_receipt(w.roster(), &subject, &bob1.public().0, &r1),
        Ok(())
    );
    let r2 = w.receipt(&bob2, &subject, ReceiptState::Shown);
    assert_eq!(
        check_receipt(w.roster(), &subject, &bob1.public().0, &r2),
        Err(ProofError::OtherSigner)
    );
}

#[test]
fn without_the_outbox_each_proof_is_judged_by_its_own_target() {
    let w = World::new();
    let mut subject = w.subject(Target::Topic("deploys".into()));
    let bob = w.session(&w.bob);
    let m = w.mark(&bob, Target::Topic("deploys".into()), 9, vec![]);
    subject.target = None;
    subject.sent_len = None;
    assert_eq!(
        check_mark(w.roster(), &subject, &w.bob.public(), &m),
        Ok(())
    );
    subject.tseq = None;
    assert_eq!(
        check_mark(w.roster(), &subject, &w.bob.public(), &m),
        Err(ProofError::NoNumber)
    );
}

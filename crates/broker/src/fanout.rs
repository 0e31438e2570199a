//! Topic, group and broadcast messages after they are stored: which
//! fan-out targets a member may have messages waiting on, how a drain walks
//! them (stored once, per-recipient state only from acks, a
//! per-(member, target) cursor that only ever moves past messages that are
//! settled for that member), and a message's per-recipient status. Who
//! receives one is [`crate::route`]'s rule.

use std::collections::BTreeMap;

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::log::Roster;
use claudemesh_proto::frames::DeliveryState;

use crate::store::{FanoutRow, MessageStatus, PendingMessage};

/// A cursor never moves past a message younger than this: with several
/// writers (or replicas) a lower seq can commit after a higher one, and a
/// transaction never stays open this long.
pub const CURSOR_SETTLE_MS: u64 = 60_000;

/// Every fan-out target `member` may have messages waiting on, with the
/// lowest log length (exclusive) at which it could have been a recipient.
pub fn member_targets(roster: &Roster, member: &PublicKey) -> Vec<(String, u64)> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    let mut note = |target: String, since: u64| {
        out.entry(target)
            .and_modify(|s| *s = (*s).min(since))
            .or_insert(since);
    };
    let Some(info) = roster.member(member) else {
        return Vec::new();
    };
    note("*".into(), info.admitted_seq);
    for (name, topic) in roster.topics() {
        let current = topic.members.get(member).copied();
        let past = topic
            .spans
            .iter()
            .filter(|s| s.member == *member)
            .map(|s| s.from);
        if let Some(since) = current.into_iter().chain(past).min() {
            note(format!("#{name}"), since);
        }
    }
    for (name, group) in roster.groups() {
        let current = group.members.get(member).map(|(since, _)| *since);
        let past = group
            .spans
            .iter()
            .filter(|s| s.member == *member)
            .map(|s| s.from);
        if let Some(since) = current.into_iter().chain(past).min() {
            // A message to `@eng` reaches members of `@eng/backend`.
            let mut prefix = name.as_str();
            loop {
                note(format!("@{prefix}"), since);
                match prefix.rfind('/') {
                    Some(i) => prefix = &prefix[..i],
                    None => break,
                }
            }
        }
    }
    out.into_iter().collect()
}

/// What a drain does with one page of a target's rows for one member.
#[derive(Debug, Default)]
pub struct PageVerdict {
    /// Rows to deliver.
    pub deliver: Vec<PendingMessage>,
    /// The cursor may move to this seq: every row up to it is settled
    /// (acked, not for this member, or expired) and old enough.
    pub cursor: Option<u64>,
}

/// Sorts one page of fan-out rows into deliveries and a cursor move. A row
/// whose sender `member`'s grants refuse (`allowed` says no) is treated as
/// not for this member: skipped silently, and the cursor may pass it.
pub fn judge_page(
    roster: &Roster,
    member: &PublicKey,
    target: &Target,
    rows: Vec<FanoutRow>,
    now_ms: u64,
    allowed: &dyn Fn(&PublicKey) -> bool,
) -> PageVerdict {
    let mut verdict = PageVerdict::default();
    let mut settled_prefix = true;
    for row in rows {
        let for_me =
            crate::route::receives(roster, member, &row.sender, target, row.at_len, || {
                allowed(&row.sender)
            });
        let settled = row.acked || !for_me || row.envelope_json.is_none();
        if settled_prefix && settled && row.queued_at_ms.saturating_add(CURSOR_SETTLE_MS) < now_ms {
            verdict.cursor = Some(row.seq);
        } else {
            settled_prefix = false;
        }
        if let (false, true, Some(env)) = (row.acked, for_me, row.envelope_json) {
            verdict.deliver.push(PendingMessage {
                seq: row.seq,
                envelope_json: env,
                queued_at_ms: row.queued_at_ms,
                tseq: row.tseq,
                deadline_ms: row.deadline_ms,
            });
        }
    }
    verdict
}

/// The per-recipient status of a fan-out message: every member it was for
/// (as of send time), with its receipt, or `queued` (`expired` once
/// retention dropped it).
pub fn fanout_status(
    roster: &Roster,
    sender: &PublicKey,
    target: &Target,
    at_len: u64,
    expired: bool,
    status: &MessageStatus,
) -> Vec<(PublicKey, DeliveryState)> {
    let receipts: BTreeMap<PublicKey, DeliveryState> = status.recipients.iter().copied().collect();
    roster
        .members()
        .keys()
        .chain(roster.departed().keys())
        .filter(|k| *k != sender && roster.is_recipient_at(k, target, at_len))
        .map(|k| {
            let state = receipts.get(k).copied().unwrap_or(if expired {
                DeliveryState::Expired
            } else {
                DeliveryState::Queued
            });
            (*k, state)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use claudemesh_crypto::SigningKey;
    use claudemesh_crypto::log::{EntryBody, LogBuilder, Role, topic_create_body};

    use super::*;

    const T: u64 = 1_700_000_000;

    #[test]
    fn member_targets_cover_group_ancestors_and_past_topics() {
        let owner = SigningKey::generate();
        let mut log = LogBuilder::new(&owner, T);
        let alice = log.add_member(&owner, Role::Member, T).unwrap();
        log.push(
            &alice,
            T,
            EntryBody::GroupJoin {
                group: "eng/backend/db".into(),
                member: alice.public(),
                role: None,
            },
        )
        .unwrap();
        let (body, _) =
            topic_create_body("ops", false, "", &owner.public(), &log.roster().mesh_id()).unwrap();
        log.push(&owner, T, body).unwrap();
        log.push(
            &alice,
            T,
            claudemesh_crypto::log::topic_join_body("ops", &alice.public(), None).unwrap(),
        )
        .unwrap();
        log.push(
            &alice,
            T,
            EntryBody::TopicLeave {
                topic: "ops".into(),
                member: alice.public(),
            },
        )
        .unwrap();
        let names: Vec<String> = member_targets(log.roster(), &alice.public())
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(
            names,
            vec!["#ops", "*", "@eng", "@eng/backend", "@eng/backend/db"]
        );
    }

    #[test]
    fn the_cursor_stops_at_the_first_unsettled_or_young_row() {
        let owner = SigningKey::generate();
        let mut log = LogBuilder::new(&owner, T);
        let alice = log.add_member(&owner, Role::Member, T).unwrap();
        let at_len = log.roster().len();
        let row = |seq, acked, age_ms: u64| FanoutRow {
            seq,
            target: "*".into(),
            at_len,
            queued_at_ms: 1_000_000 - age_ms,
            acked,
            envelope_json: (!acked).then(|| format!("env{seq}")),
            sender: owner.public(),
            priority: claudemesh_crypto::envelope::Priority::Next,
            tseq: Some(seq),
            deadline_ms: None,
        };
        let old = CURSOR_SETTLE_MS + 1;
        let v = judge_page(
            log.roster(),
            &alice.public(),
            &Target::Broadcast,
            vec![row(1, true, old), row(2, false, old), row(3, true, old)],
            1_000_000,
            &|_| true,
        );
        assert_eq!(v.cursor, Some(1));
        assert_eq!(v.deliver.len(), 1);
        assert_eq!(v.deliver[0].seq, 2);
        let v = judge_page(
            log.roster(),
            &alice.public(),
            &Target::Broadcast,
            vec![row(1, true, old), row(2, true, 10)],
            1_000_000,
            &|_| true,
        );
        assert_eq!(v.cursor, Some(1), "a young row holds the cursor");
        // A sender the member's grants refuse: not delivered, and settled.
        let v = judge_page(
            log.roster(),
            &alice.public(),
            &Target::Broadcast,
            vec![row(1, false, old), row(2, false, old)],
            1_000_000,
            &|_| false,
        );
        assert!(v.deliver.is_empty());
        assert_eq!(v.cursor, Some(2));
    }
}

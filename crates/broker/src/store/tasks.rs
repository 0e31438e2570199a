//! The task state machine both stores apply (issue 17 item 1): which act
//! moves a task from where it stands to where, and who may. Pure, so each
//! backend runs it under its mesh lock and the rules live in one place.

use claudemesh_crypto::coord::CoordKind;
use claudemesh_proto::frames::TaskPhase;

use super::records::{TaskActOutcome, TaskActRequest, TaskRow};

/// A task's phase as stored (0 open, 1 claimed, 2 done).
pub(crate) fn phase_rank(p: TaskPhase) -> i64 {
    match p {
        TaskPhase::Open => 0,
        TaskPhase::Claimed => 1,
        TaskPhase::Done => 2,
    }
}

/// The stored rank back (an unknown rank is a damaged row).
pub(crate) fn phase_from_rank(r: i64) -> Option<TaskPhase> {
    match r {
        0 => Some(TaskPhase::Open),
        1 => Some(TaskPhase::Claimed),
        2 => Some(TaskPhase::Done),
        _ => None,
    }
}

/// What `act` does to the task `row`: the row it makes (`Applied`, to be
/// stored), or why it does not apply.
pub(crate) fn apply(row: TaskRow, act: &TaskActRequest) -> TaskActOutcome {
    // The creator's grants (TM7): a member it refuses `task` does not take
    // on its work, nor hears where it stands (a lost act's answer carries
    // the last act, a result included). Giving back a task it holds
    // stays allowed.
    if row.creator != act.actor
        && act.refused_by.contains(&row.creator)
        && !(act.kind == CoordKind::TaskRelease
            && row.phase == TaskPhase::Claimed
            && row.holder.as_ref() == Some(&act.actor))
    {
        return TaskActOutcome::Refused(row);
    }
    if row.version.checked_add(1) != Some(act.version) {
        return TaskActOutcome::Lost(row);
    }
    let holds = row.holder.as_ref() == Some(&act.actor);
    // Taking a task from its claimant: asked for, and the creator's or an
    // owner's or admin's to take. A claimant that left the mesh (or was
    // removed) holds nothing any more: its claim is anyone's to take.
    let holder_gone = row.phase == TaskPhase::Claimed
        && row
            .holder
            .as_ref()
            .is_some_and(|h| act.departed.contains(h));
    let may_force = holder_gone || (act.force && (act.actor_is_admin || row.creator == act.actor));
    let next = match (act.kind, row.phase) {
        (CoordKind::TaskClaim, TaskPhase::Open) => (TaskPhase::Claimed, Some(act.actor)),
        (CoordKind::TaskClaim, TaskPhase::Claimed) if holder_gone => {
            (TaskPhase::Claimed, Some(act.actor))
        }
        (CoordKind::TaskRelease, TaskPhase::Claimed) if holds || may_force => {
            (TaskPhase::Open, None)
        }
        (CoordKind::TaskDone, TaskPhase::Open) => (TaskPhase::Done, Some(act.actor)),
        (CoordKind::TaskDone, TaskPhase::Claimed) if holds || may_force => {
            (TaskPhase::Done, Some(act.actor))
        }
        (CoordKind::TaskRelease | CoordKind::TaskDone, TaskPhase::Claimed) => {
            return TaskActOutcome::Held(row);
        }
        _ => return TaskActOutcome::Lost(row),
    };
    TaskActOutcome::Applied(TaskRow {
        version: act.version,
        phase: next.0,
        holder: next.1,
        creator: row.creator,
        act_json: Some(act.act_json.clone()),
        cseq: row.cseq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use claudemesh_crypto::coord::CoordId;
    use claudemesh_crypto::{MeshId, PublicKey, SigningKey};

    fn key() -> PublicKey {
        SigningKey::generate().public()
    }

    fn row(phase: TaskPhase, holder: Option<PublicKey>, creator: PublicKey) -> TaskRow {
        TaskRow {
            version: 3,
            phase,
            holder,
            creator,
            act_json: None,
            cseq: 7,
        }
    }

    fn act(kind: CoordKind, actor: PublicKey, version: u64, force: bool) -> TaskActRequest {
        TaskActRequest {
            mesh: MeshId(claudemesh_crypto::Hash32([1; 32])),
            id: CoordId([2; 16]),
            kind,
            version,
            actor,
            force,
            actor_is_admin: false,
            refused_by: Vec::new(),
            departed: Vec::new(),
            act_json: "{}".into(),
            now_ms: 1,
        }
    }

    #[test]
    fn a_claim_takes_an_open_task_at_its_version_only() {
        let (creator, bob) = (key(), key());
        let open = row(TaskPhase::Open, None, creator);
        match apply(open.clone(), &act(CoordKind::TaskClaim, bob, 4, false)) {
            TaskActOutcome::Applied(r) => {
                assert_eq!(
                    (r.phase, r.holder, r.version),
                    (TaskPhase::Claimed, Some(bob), 4)
                );
            }
            o => panic!("{o:?}"),
        }
        // A stale version, or a claimed task, loses.
        assert!(matches!(
            apply(open, &act(CoordKind::TaskClaim, bob, 3, false)),
            TaskActOutcome::Lost(_)
        ));
        let claimed = row(TaskPhase::Claimed, Some(creator), creator);
        assert!(matches!(
            apply(claimed, &act(CoordKind::TaskClaim, bob, 4, false)),
            TaskActOutcome::Lost(_)
        ));
    }

    #[test]
    fn only_the_claimant_or_a_forcing_creator_or_admin_takes_a_claimed_task() {
        let (creator, alice, bob) = (key(), key(), key());
        let claimed = row(TaskPhase::Claimed, Some(alice), creator);
        for kind in [CoordKind::TaskRelease, CoordKind::TaskDone] {
            assert!(matches!(
                apply(claimed.clone(), &act(kind, alice, 4, false)),
                TaskActOutcome::Applied(_)
            ));
            assert!(matches!(
                apply(claimed.clone(), &act(kind, bob, 4, false)),
                TaskActOutcome::Held(_)
            ));
            // Forcing is the creator's, an owner's or an admin's.
            assert!(matches!(
                apply(claimed.clone(), &act(kind, bob, 4, true)),
                TaskActOutcome::Held(_)
            ));
            assert!(matches!(
                apply(claimed.clone(), &act(kind, creator, 4, true)),
                TaskActOutcome::Applied(_)
            ));
            let mut admin = act(kind, bob, 4, true);
            admin.actor_is_admin = true;
            assert!(matches!(
                apply(claimed.clone(), &admin),
                TaskActOutcome::Applied(_)
            ));
        }
    }

    #[test]
    fn a_claim_of_a_departed_member_is_anyones_to_take() {
        let (creator, gone, bob) = (key(), key(), key());
        let held = row(TaskPhase::Claimed, Some(gone), creator);
        for (kind, phase, holder) in [
            (CoordKind::TaskClaim, TaskPhase::Claimed, Some(bob)),
            (CoordKind::TaskRelease, TaskPhase::Open, None),
            (CoordKind::TaskDone, TaskPhase::Done, Some(bob)),
        ] {
            let mut a = act(kind, bob, 4, false);
            assert!(
                !matches!(apply(held.clone(), &a), TaskActOutcome::Applied(_)),
                "{kind} while the holder is a member"
            );
            a.departed = vec![gone];
            match apply(held.clone(), &a) {
                TaskActOutcome::Applied(r) => assert_eq!((r.phase, r.holder), (phase, holder)),
                o => panic!("{kind}: {o:?}"),
            }
        }
    }

    #[test]
    fn a_member_the_creator_refuses_may_only_give_a_task_back() {
        let (creator, bob) = (key(), key());
        let open = row(TaskPhase::Open, None, creator);
        for kind in [CoordKind::TaskClaim, CoordKind::TaskDone] {
            let mut a = act(kind, bob, 4, false);
            a.refused_by = vec![key(), creator];
            assert!(matches!(
                apply(open.clone(), &a),
                TaskActOutcome::Refused(_)
            ));
            // Refused by someone else: no matter.
            a.refused_by = vec![key()];
            assert!(matches!(
                apply(open.clone(), &a),
                TaskActOutcome::Applied(_)
            ));
        }
        let held = row(TaskPhase::Claimed, Some(bob), creator);
        let mut give_back = act(CoordKind::TaskRelease, bob, 4, false);
        give_back.refused_by = vec![creator];
        assert!(matches!(
            apply(held.clone(), &give_back),
            TaskActOutcome::Applied(_)
        ));
        let mut finish = act(CoordKind::TaskDone, bob, 4, false);
        finish.refused_by = vec![creator];
        assert!(matches!(apply(held, &finish), TaskActOutcome::Refused(_)));
        // Releasing a task it does not hold (a departed member's, or at a
        // stale version to read the answer) is refused too.
        let gone = key();
        let theirs = row(TaskPhase::Claimed, Some(gone), creator);
        let mut reopen = act(CoordKind::TaskRelease, bob, 4, false);
        reopen.refused_by = vec![creator];
        reopen.departed = vec![gone];
        assert!(matches!(apply(theirs, &reopen), TaskActOutcome::Refused(_)));
        let mut stale = act(CoordKind::TaskRelease, bob, 9, false);
        stale.refused_by = vec![creator];
        let done = row(TaskPhase::Done, Some(key()), creator);
        assert!(matches!(apply(done, &stale), TaskActOutcome::Refused(_)));
    }

    #[test]
    fn a_done_task_is_final_and_an_open_one_cannot_be_released() {
        let (creator, bob) = (key(), key());
        let done = row(TaskPhase::Done, Some(bob), creator);
        for kind in [
            CoordKind::TaskClaim,
            CoordKind::TaskRelease,
            CoordKind::TaskDone,
        ] {
            assert!(matches!(
                apply(done.clone(), &act(kind, bob, 4, true)),
                TaskActOutcome::Lost(_)
            ));
        }
        let open = row(TaskPhase::Open, None, creator);
        assert!(matches!(
            apply(open.clone(), &act(CoordKind::TaskRelease, bob, 4, false)),
            TaskActOutcome::Lost(_)
        ));
        // Completing an open task is allowed to anyone (it was never claimed).
        match apply(open, &act(CoordKind::TaskDone, bob, 4, false)) {
            TaskActOutcome::Applied(r) => assert_eq!(r.holder, Some(bob)),
            o => panic!("{o:?}"),
        }
    }
}

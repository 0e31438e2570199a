//! Tasks through the SDK (`claudemesh_client::tasks`): a task one member
//! creates is listed by another with its title, body, tags and creator;
//! claims race and exactly one wins, on one broker and across two replicas
//! on one Postgres; a lost claim names the holder; only the claimant (or,
//! forced, the creator, an owner or an admin) releases or completes a
//! claimed task; done is final and carries the result; deleting takes it
//! from every device; a removed member's claim binds no one. What the
//! broker keeps of a task is ciphertext: its title never appears in the
//! database (TM1, in `trust.rs`, checks every table).

use claudemesh_client::tasks::{TaskDraft, TaskFilter, TaskPriority};
use claudemesh_client::{ClientError, MeshClient};
use claudemesh_crypto::MemberKey;
use claudemesh_proto::frames::TaskPhase;

use crate::both;
use crate::support::*;

pub(crate) fn draft(title: &str) -> TaskDraft {
    TaskDraft {
        title: title.into(),
        ..TaskDraft::default()
    }
}

async fn titles(c: &MeshClient, filter: &TaskFilter) -> Vec<String> {
    c.task_list(filter)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.title)
        .collect()
}

fn member_of(c: &MeshClient) -> MemberKey {
    MemberKey(c.with_state(|s| s.my_key()))
}

async fn tasks_are_created_claimed_and_completed_by_their_claimant(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;
    let (a, b, c) = (
        alice.connect().await,
        bob.connect().await,
        carol.connect().await,
    );
    let task = a
        .task_create(TaskDraft {
            title: "  fix the flaky login test ".into(),
            body: Some("it fails one run in ten on CI".into()),
            assignee: Some("bob".into()),
            priority: Some(TaskPriority::High),
            tags: vec!["CI".into()],
            due_ms: Some(1_900_000_000_000),
            topic: None,
        })
        .await
        .unwrap();
    assert_eq!(task.title, "fix the flaky login test");
    assert_eq!((task.status, task.version), (TaskPhase::Open, 1));
    assert_eq!(task.assignee, Some(member_of(&b)));
    a.task_create(draft("write the release notes"))
        .await
        .unwrap();

    // Bob sees both, the urgent one first, with what Alice wrote.
    let listed = b.task_list(&TaskFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 2);
    let got = &listed[0];
    assert_eq!(got.id, task.id);
    assert_eq!(got.body.as_deref(), Some("it fails one run in ten on CI"));
    assert_eq!(got.tags, vec!["ci"]);
    assert_eq!(got.priority, TaskPriority::High);
    assert_eq!(got.creator_name, "alice");
    assert_eq!(got.assignee_name.as_deref(), Some("bob"));
    assert_eq!(got.due_ms, Some(1_900_000_000_000));
    let mine = TaskFilter {
        assignee: Some(member_of(&b)),
        ..TaskFilter::default()
    };
    assert_eq!(titles(&b, &mine).await, vec!["fix the flaky login test"]);
    let tagged = TaskFilter {
        tags: vec!["ci".into()],
        ..TaskFilter::default()
    };
    assert_eq!(titles(&c, &tagged).await.len(), 1);

    // Bob claims it by a prefix of its id; claiming again changes nothing.
    let hex = task.id.to_hex();
    let claimed = b.task_claim(&hex[..6]).await.unwrap();
    assert_eq!(
        (claimed.status, claimed.holder, claimed.version),
        (TaskPhase::Claimed, Some(member_of(&b)), 2)
    );
    assert_eq!(claimed.holder_name.as_deref(), Some("bob"));
    assert_eq!(b.task_claim(&hex).await.unwrap().version, 2);
    // Carol's claim loses and names Bob.
    let e = c.task_claim(&hex).await.unwrap_err();
    match &e {
        ClientError::TaskTaken { detail, .. } => assert!(detail.contains("bob"), "{e}"),
        other => panic!("expected a lost claim, got {other}"),
    }
    assert_eq!(e.kind(), claudemesh_client::error_kind::ErrorKind::Conflict);
    // Nor may she release or complete it.
    let e = c.task_release(&hex, false).await.unwrap_err();
    assert!(matches!(e, ClientError::TaskTaken { .. }), "{e}");
    let e = c.task_complete(&hex, None, false).await.unwrap_err();
    assert!(matches!(e, ClientError::TaskTaken { .. }), "{e}");
    // Forcing is the creator's, an owner's or an admin's: not Carol's.
    let e = c.task_release(&hex, true).await.unwrap_err();
    assert!(matches!(e, ClientError::NotAllowed(_)), "{e}");

    // Bob completes it with a result; done is final.
    let done = b
        .task_complete(
            &hex,
            Some("retried the socket connect; fixed in a1b2c3"),
            false,
        )
        .await
        .unwrap();
    assert_eq!((done.status, done.version), (TaskPhase::Done, 3));
    let seen = a.task_show(&hex[..8]).await.unwrap();
    assert_eq!(seen.status, TaskPhase::Done);
    assert_eq!(seen.holder_name.as_deref(), Some("bob"));
    assert_eq!(
        seen.result.as_deref(),
        Some("retried the socket connect; fixed in a1b2c3")
    );
    let e = a.task_claim(&hex).await.unwrap_err();
    assert!(matches!(e, ClientError::TaskTaken { .. }), "{e}");
    // Done tasks leave the default listing and show under --status done.
    assert_eq!(
        titles(&a, &TaskFilter::default()).await,
        vec!["write the release notes"]
    );
    let done_only = TaskFilter {
        status: vec![TaskPhase::Done],
        ..TaskFilter::default()
    };
    assert_eq!(
        titles(&c, &done_only).await,
        vec!["fix the flaky login test"]
    );

    // The creator forces back a claim Carol abandoned.
    let notes = titles(&c, &TaskFilter::default()).await;
    assert_eq!(notes, vec!["write the release notes"]);
    let other = c.task_list(&TaskFilter::default()).await.unwrap()[0]
        .id
        .to_hex();
    c.task_claim(&other).await.unwrap();
    let e = a.task_release(&other, false).await.unwrap_err();
    assert!(matches!(e, ClientError::TaskTaken { .. }), "{e}");
    let back = a.task_release(&other, true).await.unwrap();
    assert_eq!((back.status, back.holder), (TaskPhase::Open, None));

    // Only the creator (or an owner or admin) deletes; it goes everywhere.
    let e = c.task_delete(&other).await.unwrap_err();
    assert!(matches!(e, ClientError::NotAllowed(_)), "{e}");
    a.task_delete(&other).await.unwrap();
    assert!(titles(&b, &TaskFilter::default()).await.is_empty());
    let e = b.task_show(&other).await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound(_)), "{e}");
    // Bad input is refused before anything is sent.
    let e = a.task_create(draft("two\nlines")).await.unwrap_err();
    assert!(matches!(e, ClientError::BadInput(_)), "{e}");
    let e = a.task_claim("zz").await.unwrap_err();
    assert!(matches!(e, ClientError::BadInput(_)), "{e}");

    for x in [a, b, c] {
        x.close().await;
    }
    broker.stop().await;
}
both!(tasks_are_created_claimed_and_completed_by_their_claimant);

/// Claimers racing from their own connections: exactly one gets the task,
/// every other is told it lost and who holds it.
async fn race(clients: &[MeshClient], id: &str) -> Vec<MemberKey> {
    let outcomes = futures_util::future::join_all(clients.iter().map(|c| c.task_claim(id))).await;
    let mut winners = Vec::new();
    for o in outcomes {
        match o {
            Ok(t) => winners.push(t.holder.expect("a claimed task has a holder")),
            Err(ClientError::TaskTaken { .. }) => {}
            Err(e) => panic!("a lost claim is TaskTaken, got {e}"),
        }
    }
    winners
}

async fn of_concurrent_claims_exactly_one_wins(backend: Backend) {
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let mut peers = vec![alice];
    for name in ["bob", "carol", "dave"] {
        let p = joiner(&broker, &peers[0], name).await;
        peers.push(p);
    }
    let mut clients = Vec::new();
    for p in &peers {
        clients.push(p.connect().await);
    }
    for round in 0..3 {
        let t = clients[0]
            .task_create(draft(&format!("round {round}")))
            .await
            .unwrap();
        // Every device has seen the task before the race.
        for c in &clients {
            c.task_sync().await.unwrap();
        }
        let winners = race(&clients, &t.id.to_hex()).await;
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let shown = clients[1].task_show(&t.id.to_hex()).await.unwrap();
        assert_eq!(shown.holder, Some(winners[0]));
    }
    for c in clients {
        c.close().await;
    }
    broker.stop().await;
}
both!(of_concurrent_claims_exactly_one_wins);

/// Two replicas on one Postgres: claimers on either side race, and exactly
/// one wins; each side then sees the same holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_claims_across_replicas_exactly_one_wins() {
    let (ra, rb) = start_replicas().await;
    let alice = owner(&ra, "alice").await;
    let mut bob = joiner(&ra, &alice, "bob").await;
    let carol = joiner(&ra, &alice, "carol").await;
    let mut dave = joiner(&ra, &alice, "dave").await;
    bob.mesh.broker_url = rb.url.clone();
    dave.mesh.broker_url = rb.url.clone();
    let clients = vec![
        alice.connect().await,
        bob.connect().await,
        carol.connect().await,
        dave.connect().await,
    ];
    for round in 0..3 {
        let t = clients[0]
            .task_create(draft(&format!("round {round}")))
            .await
            .unwrap();
        for c in &clients {
            c.task_sync().await.unwrap();
        }
        let winners = race(&clients, &t.id.to_hex()).await;
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        for c in [&clients[1], &clients[2]] {
            assert_eq!(
                c.task_show(&t.id.to_hex()).await.unwrap().holder,
                Some(winners[0])
            );
        }
    }
    for c in clients {
        c.close().await;
    }
    rb.stop().await;
    ra.stop().await;
}

/// A claim binds only a member: once its claimant is removed, the task is
/// anyone's to claim, and every device says so.
async fn a_removed_members_claim_binds_no_one(backend: Backend) {
    use claudemesh_client::moderation;
    use claudemesh_crypto::log::RemoveKind;
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;
    let (a, b, c) = (
        alice.connect().await,
        bob.connect().await,
        carol.connect().await,
    );
    let task = a
        .task_create(draft("migrate the billing db"))
        .await
        .unwrap();
    let id = task.id.to_hex();
    b.task_claim(&id).await.unwrap();
    // While bob is a member, his claim holds.
    match c.task_claim(&id).await {
        Err(ClientError::TaskTaken { detail, .. }) => assert!(detail.contains("bob"), "{detail}"),
        other => panic!("expected the task taken, got {other:?}"),
    }
    b.close().await;
    moderation::remove(&a, "bob", RemoveKind::Kick)
        .await
        .unwrap();
    c.sync_log().await.unwrap();
    let shown = c.task_show(&id).await.unwrap();
    assert!(shown.holder_departed, "{shown:?}");
    assert_eq!(shown.status, TaskPhase::Claimed);
    let now = c.task_claim(&id).await.unwrap();
    assert_eq!(now.holder, Some(member_of(&c)));
    assert!(!now.holder_departed);
    for client in [a, c] {
        client.close().await;
    }
    broker.stop().await;
}
both!(a_removed_members_claim_binds_no_one);

/// A task sealed to a topic reaches its members only: others are not sent
/// it (it opens with the topic's coordination key alone) and cannot seal
/// one to it; joining the topic brings its tasks; a claimant who leaves
/// the topic holds the task no longer, and the next act rotates a private
/// topic's key first.
async fn tasks_sealed_to_a_topic_reach_only_its_members(backend: Backend) {
    use claudemesh_client::topics;
    let broker = start(backend).await;
    let alice = owner(&broker, "alice").await;
    let bob = joiner(&broker, &alice, "bob").await;
    let carol = joiner(&broker, &alice, "carol").await;
    let (a, b, c) = (
        alice.connect().await,
        bob.connect().await,
        carol.connect().await,
    );
    topics::topic_create(&a, "secret", true, "").await.unwrap();
    topics::topic_add(&a, "secret", "bob").await.unwrap();
    topics::topic_create(&a, "ops", false, "").await.unwrap();
    b.sync_log().await.unwrap();
    c.sync_log().await.unwrap();

    // Only a member of the topic may be its task's assignee.
    let for_carol = a
        .task_create(TaskDraft {
            topic: Some("secret".into()),
            assignee: Some("carol".into()),
            ..draft("rotate the vault key")
        })
        .await;
    assert!(
        matches!(for_carol, Err(ClientError::BadInput(_))),
        "{for_carol:?}"
    );
    let secret = a
        .task_create(TaskDraft {
            topic: Some("#secret".into()),
            assignee: Some("bob".into()),
            ..draft("rotate the vault key")
        })
        .await
        .unwrap();
    assert_eq!(secret.topic.as_deref(), Some("secret"));
    let ops = a
        .task_create(TaskDraft {
            topic: Some("ops".into()),
            ..draft("page the on-call")
        })
        .await
        .unwrap();
    a.task_create(draft("for everyone")).await.unwrap();

    // Bob is in #secret, not #ops; carol in neither.
    let mut seen = titles(&b, &TaskFilter::default()).await;
    seen.sort();
    assert_eq!(seen, vec!["for everyone", "rotate the vault key"]);
    let only_secret = TaskFilter {
        topic: Some("secret".into()),
        ..TaskFilter::default()
    };
    assert_eq!(titles(&b, &only_secret).await, vec!["rotate the vault key"]);
    assert_eq!(
        titles(&c, &TaskFilter::default()).await,
        vec!["for everyone"]
    );
    assert!(matches!(
        c.task_show(&secret.id.to_hex()).await,
        Err(ClientError::NotFound(_))
    ));
    let outsider = c
        .task_create(TaskDraft {
            topic: Some("secret".into()),
            ..draft("sneak in")
        })
        .await;
    assert!(
        matches!(outsider, Err(ClientError::NotAllowed(_))),
        "{outsider:?}"
    );

    // Joining #ops brings its task to carol, who claims it.
    topics::topic_join(&c, "ops").await.unwrap();
    let mut seen = titles(&c, &TaskFilter::default()).await;
    seen.sort();
    assert_eq!(seen, vec!["for everyone", "page the on-call"]);
    let claimed = c.task_claim(&ops.id.to_hex()).await.unwrap();
    assert_eq!(claimed.holder, Some(member_of(&c)));
    assert_eq!(claimed.topic.as_deref(), Some("ops"));

    // Bob claims the #secret task, then leaves the topic: his claim binds
    // no one, and alice's claim (after rotating the topic's key) wins.
    b.task_claim(&secret.id.to_hex()).await.unwrap();
    topics::topic_leave(&b, "secret").await.unwrap();
    a.sync_log().await.unwrap();
    let shown = a.task_show(&secret.id.to_hex()).await.unwrap();
    assert!(shown.holder_departed, "{shown:?}");
    let now = a.task_claim(&secret.id.to_hex()).await.unwrap();
    assert_eq!(now.holder, Some(member_of(&a)));
    let done = a
        .task_complete(&secret.id.to_hex(), Some("rotated"), false)
        .await
        .unwrap();
    assert_eq!(done.result.as_deref(), Some("rotated"));
    // Bob, outside the topic now, is no longer sent it.
    let every_secret = TaskFilter {
        status: vec![TaskPhase::Open, TaskPhase::Claimed, TaskPhase::Done],
        ..only_secret
    };
    assert!(titles(&b, &every_secret).await.is_empty());
    assert_eq!(
        titles(&a, &every_secret).await,
        vec!["rotate the vault key"]
    );
    // Alice, who was never refused anything, leaves #ops: its task, synced
    // before, is no longer shown to her.
    let every = TaskFilter {
        status: vec![TaskPhase::Open, TaskPhase::Claimed, TaskPhase::Done],
        ..TaskFilter::default()
    };
    assert!(
        titles(&a, &every)
            .await
            .contains(&"page the on-call".to_owned())
    );
    topics::topic_leave(&a, "ops").await.unwrap();
    assert!(
        !titles(&a, &every)
            .await
            .contains(&"page the on-call".to_owned())
    );
    for client in [a, b, c] {
        client.close().await;
    }
    broker.stop().await;
}
both!(tasks_sealed_to_a_topic_reach_only_its_members);

//! Prints one real example of every frame (a mesh is created, an invite is
//! made and used, a message sent and delivered), as used in
//! `docs/protocol.md`, and with `--corpus <dir>` writes them as the fuzz seed
//! corpus (`seed-<type>.json`).
//!
//!     cargo run -p claudemesh-proto --example protocol_examples -- --corpus crates/proto/fuzz/corpus/decode_frame
#![allow(clippy::unwrap_used, clippy::expect_used)]

use claudemesh_crypto::MemberKey;
use claudemesh_crypto::SessionKey;
use claudemesh_crypto::cert::SessionIdentity;
use claudemesh_crypto::envelope::{
    Envelope, EnvelopeHeader, MessageId, Priority, SealingKey, Target,
};
use claudemesh_crypto::invite::{Invite, WelcomeBundle, seal_bundle};
use claudemesh_crypto::log::{EntryBody, LogBuilder, LogEntry, PeerType, Profile, Role};
use claudemesh_crypto::receipt::{
    Receipt, ReceiptFacts, ReceiptState, Via, Watermark, WatermarkFacts,
};
use claudemesh_crypto::{EpochRootKey, Hash32, SigningKey};
use claudemesh_proto::frames::*;
use claudemesh_proto::hello::{Hello, HelloPresence};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode, Limits};

const T: u64 = 1_764_000_000;

fn main() {
    let corpus = std::env::args().skip_while(|a| a != "--corpus").nth(1);
    let mut frames: Vec<(String, String)> = Vec::new();
    let push_c = |f: ClientFrame, frames: &mut Vec<(String, String)>| {
        frames.push((
            f.type_name().to_owned(),
            serde_json::to_string_pretty(&f).unwrap(),
        ));
    };
    let push_b = |f: BrokerFrame, frames: &mut Vec<(String, String)>| {
        frames.push((
            f.type_name().to_owned(),
            serde_json::to_string_pretty(&f).unwrap(),
        ));
    };

    // Alice creates a mesh; her client holds the root key of epoch 0.
    let alice = SigningKey::from_seed(&[0xa1; 32]);
    let mut log = LogBuilder::new(&alice, T);
    let mesh_id = log.roster().mesh_id();
    push_c(
        ClientFrame::MeshCreate(MeshCreate {
            token: None,
            req: Some("c1".into()),
            genesis: log.entries()[0].clone(),
        }),
        &mut frames,
    );
    let root = EpochRootKey::from_bytes(0, [0x42; 32]);
    let profile = Profile {
        name: "alice".into(),
        summary: None,
        peer_type: PeerType::Human,
    };
    log.push(&alice, T, profile.seal(&root, &mesh_id)).unwrap();

    // She makes an invite: the entry and the encrypted bundle go to the broker.
    let invite = Invite::generate("ws://127.0.0.1:7900").unwrap();
    let invite_key = invite.secret.public_key();
    let invite_entry = LogEntry::sign(
        &alice,
        log.roster().len(),
        log.roster().head(),
        T,
        EntryBody::Invite {
            invite_key,
            role: Role::Member,
            max_uses: 1,
            expires_at: T + 7 * 86400,
        },
    );
    let bundle = seal_bundle(
        &invite.secret,
        &WelcomeBundle {
            invite_key,
            mesh_id,
            mesh_name: "demo".into(),
            broker_url: invite.broker_url.clone(),
            owner: alice.public(),
            role: Role::Member,
            epoch: 0,
            root_key: root.key().clone(),
            created_at: T,
        },
    )
    .unwrap();
    push_c(
        ClientFrame::InviteCreate(InviteCreate {
            req: Some("r1".into()),
            entry: invite_entry.clone(),
            bundle: bundle.clone(),
        }),
        &mut frames,
    );
    log.push_entry(invite_entry).unwrap();
    push_b(
        BrokerFrame::LogAppended(LogAppended {
            req: Some("r1".into()),
            head: log.roster().head(),
            len: log.roster().len(),
        }),
        &mut frames,
    );

    // Bob connects with the invite.
    let challenge = [0x5c; 32];
    push_b(
        BrokerFrame::Challenge(Challenge {
            nonce: ChallengeNonce(challenge),
            broker_id: "broker-1".into(),
            time_ms: T * 1000,
            versions: vec![1],
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::InviteFetch(InviteFetch {
            req: Some("j1".into()),
            invite_key,
            proof: invite.secret.prove(&challenge),
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::InviteBundle(InviteBundle {
            req: Some("j1".into()),
            mesh_id,
            bundle,
            log: log.entries().to_vec(),
            log_len: log.roster().len(),
        }),
        &mut frames,
    );
    let bob = SigningKey::from_seed(&[0xb0; 32]);
    let admit = LogEntry::admit(
        &bob,
        &invite.secret.signing_key(),
        log.roster().len(),
        log.roster().head(),
        T + 60,
    );
    push_c(
        ClientFrame::InviteJoin(InviteJoin {
            req: Some("j2".into()),
            entry: admit.clone(),
        }),
        &mut frames,
    );
    log.push_entry(admit).unwrap();
    push_b(
        BrokerFrame::Joined(Joined {
            req: Some("j2".into()),
            head: log.roster().head(),
            len: log.roster().len(),
        }),
        &mut frames,
    );

    // Bob's session says hello on the same connection (same challenge).
    let bob_session = SessionIdentity::new(&bob, mesh_id, T + 60, 30 * 86400).unwrap();
    let hello = Hello::sign(
        &bob_session,
        &challenge,
        1,
        Some(log.roster().head()),
        HelloPresence {
            status: claudemesh_proto::frames::Status::Idle,
            peer_type: Some(PeerType::Ai),
            summary: None,
        },
        "claudemesh/0.1.0",
    );
    push_c(ClientFrame::Hello(Box::new(hello)), &mut frames);
    push_b(
        BrokerFrame::Welcome(Box::new(Welcome {
            member: MemberKey(bob.public()),
            session: SessionKey(bob_session.public().0),
            log_head: log.roster().head(),
            log_len: log.roster().len(),
            limits: Limits::default(),
            time_ms: (T + 60) * 1000,
        })),
        &mut frames,
    );

    // Bob sends Alice a direct message.
    let id = MessageId([0x11; 16]);
    let env = Envelope::seal(
        &bob_session,
        EnvelopeHeader {
            mesh: mesh_id,
            epoch: 0,
            target: Target::Member(MemberKey(alice.public())),
            id,
            reply_to: None,
            priority: Priority::Next,
            sent_at: (T + 61) * 1000,
            log_head: log.roster().head(),
        },
        b"hello alice",
        SealingKey::Direct(&alice.public()),
    )
    .unwrap();
    push_c(
        ClientFrame::Send(Send {
            req: Some("s1".into()),
            envelope: Box::new(env.clone()),
            ttl_ms: None,
            deliver_at_ms: None,
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::Accepted(Accepted {
            req: Some("s1".into()),
            id,
            seq: 1,
            duplicate: false,
            tseq: None,
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::Deliver(Deliver {
            seq: 1,
            envelope: Box::new(env),
            queued_at_ms: (T + 61) * 1000,
            deadline_ms: None,
            tseq: None,
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::Ack(Ack {
            seqs: vec![1],
            read: false,
        }),
        &mut frames,
    );
    // Bob schedules a reminder for Alice in an hour: the broker holds the
    // sealed envelope and answers `scheduled` instead of `accepted`.
    let later_id = MessageId([0x33; 16]);
    let deliver_at_ms = (T + 62 + 3600) * 1000;
    let later = Envelope::seal(
        &bob_session,
        EnvelopeHeader {
            mesh: mesh_id,
            epoch: 0,
            target: Target::Member(MemberKey(alice.public())),
            id: later_id,
            reply_to: None,
            priority: Priority::Next,
            sent_at: (T + 62) * 1000,
            log_head: log.roster().head(),
        },
        b"standup in 5 minutes",
        SealingKey::Direct(&alice.public()),
    )
    .unwrap();
    let later_size = serde_json::to_string(&later).unwrap().len() as u64;
    push_c(
        ClientFrame::Send(Send {
            req: Some("s3".into()),
            envelope: Box::new(later),
            ttl_ms: Some(600_000),
            deliver_at_ms: Some(deliver_at_ms),
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::Scheduled(Scheduled {
            req: Some("s3".into()),
            id: later_id,
            deliver_at_ms,
            duplicate: false,
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::ScheduleList(ScheduleListQuery {
            req: Some("q1".into()),
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::SchedulePage(SchedulePage {
            req: Some("q1".into()),
            messages: vec![HeldMessage {
                id: later_id,
                target: Target::Member(MemberKey(alice.public())).to_string(),
                deliver_at_ms,
                ttl_ms: Some(600_000),
                size: later_size,
                created_at_ms: (T + 62) * 1000,
                state: "held".into(),
                error: None,
            }],
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::ScheduleCancel(ScheduleCancel {
            req: Some("q2".into()),
            id: later_id,
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::ScheduleCancelled(ScheduleCancelled {
            req: Some("q2".into()),
            id: later_id,
        }),
        &mut frames,
    );
    // Alice opens a public topic and posts to it; Bob reads its history.
    let (topic_body, _) = claudemesh_crypto::log::topic_create_body(
        "deploys",
        false,
        "release announcements",
        &alice.public(),
        &mesh_id,
    )
    .unwrap();
    log.push(&alice, T + 70, topic_body).unwrap();
    let alice_session = SessionIdentity::new(&alice, mesh_id, T + 70, 30 * 86400).unwrap();
    let post = Envelope::seal(
        &alice_session,
        EnvelopeHeader {
            mesh: mesh_id,
            epoch: 0,
            target: Target::Topic("deploys".into()),
            id: MessageId([0x22; 16]),
            reply_to: None,
            priority: Priority::Next,
            sent_at: (T + 71) * 1000,
            log_head: log.roster().head(),
        },
        b"v1.2 is out",
        SealingKey::Symmetric(&root.topic_key(&mesh_id, b"deploys")),
    )
    .unwrap();
    push_c(
        ClientFrame::TopicHistory(TopicHistoryQuery {
            req: Some("h1".into()),
            topic: "deploys".into(),
            limit: Some(50),
            before_seq: None,
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::TopicHistoryResult(TopicHistoryResult {
            req: Some("h1".into()),
            topic: "deploys".into(),
            messages: vec![Deliver {
                seq: 2,
                envelope: Box::new(post),
                queued_at_ms: (T + 71) * 1000,
                deadline_ms: None,
                tseq: Some(1),
            }],
            more: false,
        }),
        &mut frames,
    );
    // Alice's session signs that Bob's message was stored and then shown,
    // and that #deploys was shown to her up to seq 2.
    let receipt = |state, via, at| {
        Receipt::sign(
            &alice_session,
            ReceiptFacts {
                state,
                sender: MemberKey(bob.public()),
                id,
                target: Target::Member(MemberKey(alice.public())),
                at_ms: at,
                via,
                reply: None,
            },
        )
        .unwrap()
    };
    let delivered = receipt(ReceiptState::Delivered, Via::Store, (T + 72) * 1000);
    let shown = receipt(ReceiptState::Shown, Via::Hook, (T + 80) * 1000);
    push_c(
        ClientFrame::Receipt(ReceiptFrame {
            receipts: vec![
                SeqReceipt {
                    seq: 1,
                    receipt: delivered.clone(),
                },
                SeqReceipt {
                    seq: 1,
                    receipt: shown.clone(),
                },
            ],
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::Watermark(WatermarkFrame {
            marks: vec![
                Watermark::sign(
                    &alice_session,
                    WatermarkFacts {
                        state: ReceiptState::Shown,
                        target: Target::Topic("deploys".into()),
                        from: 0,
                        upto: 1,
                        missing: vec![],
                        at_ms: (T + 81) * 1000,
                        via: Via::Channel,
                    },
                )
                .unwrap(),
            ],
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::MessageStatus(MessageStatusQuery {
            req: Some("m1".into()),
            id,
            after: None,
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::MessageStatusResult(MessageStatusResult {
            req: Some("m1".into()),
            id,
            seq: 1,
            deadline_ms: None,
            tseq: None,
            recipients: vec![RecipientStatus {
                recipient: alice.public(),
                state: DeliveryState::Read,
                receipts: vec![delivered, shown],
                marks: vec![],
            }],
            next: None,
        }),
        &mut frames,
    );

    let summary = EncryptedBlob {
        epoch: 0,
        nonce: claudemesh_crypto::Nonce([0x33; 24]),
        ciphertext: root
            .profile_key(&mesh_id)
            .encrypt(b"reviewing PR 12", &claudemesh_crypto::Nonce([0x33; 24])),
    };
    push_c(
        ClientFrame::PresenceSet(PresenceSet {
            req: None,
            status: Some(Status::Working),
            summary: Some(summary.clone()),
            peer_type: None,
        }),
        &mut frames,
    );
    let peer = PeerPresence {
        member: MemberKey(bob.public()),
        session: Some(SessionKey(bob_session.public().0)),
        cert: Some(bob_session.cert.clone()),
        online: true,
        status: Status::Working,
        peer_type: Some(PeerType::Ai),
        summary: Some(summary),
        connected_at_ms: Some((T + 60) * 1000),
        last_seen_ms: Some((T + 62) * 1000),
        live_push: true,
    };
    push_b(
        BrokerFrame::Presence(PresenceUpdate {
            peer: Box::new(peer.clone()),
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::PeerList(PeerListQuery {
            req: Some("p1".into()),
            after: None,
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::Peers(Peers {
            req: Some("p1".into()),
            peers: vec![peer],
            next: None,
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::LogFetch(LogFetch {
            req: Some("l1".into()),
            from_seq: 3,
            limit: Some(256),
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::LogEntries(LogEntries {
            req: Some("l1".into()),
            entries: log.entries()[3..].to_vec(),
            head: log.roster().head(),
            len: log.roster().len(),
            more: false,
        }),
        &mut frames,
    );
    let carol = log.add_member(&alice, Role::Member, T + 100).unwrap();
    let _ = carol;
    push_c(
        ClientFrame::LogAppend(LogAppend {
            req: Some("l2".into()),
            entries: log.entries()[5..].to_vec(),
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::LogUpdate(LogUpdate {
            head: log.roster().head(),
            len: log.roster().len(),
        }),
        &mut frames,
    );
    // Bob blocks Alice (not silently): his signed grant set goes to the broker.
    let mut grants = claudemesh_crypto::grants::GrantMap::new();
    grants.insert(alice.public(), (Default::default(), false));
    push_c(
        ClientFrame::GrantsSet(GrantsSetFrame {
            req: Some("g1".into()),
            grants: Box::new(claudemesh_crypto::grants::GrantSet::sign(
                &bob,
                mesh_id,
                (T + 80) * 1000,
                &grants,
            )),
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::GrantsStored(GrantsStored {
            req: Some("g1".into()),
            version: (T + 80) * 1000,
        }),
        &mut frames,
    );
    // Alice remembers a fact for the team: sealed under epoch 0's
    // coordination key; Bob's device syncs the feed, and after a rekey
    // Alice links epoch 1's coordination key back to epoch 0's.
    let coord0 = claudemesh_crypto::coord::coord_key(&root, &mesh_id);
    let note_id = claudemesh_crypto::coord::CoordId([0x44; 16]);
    let note = claudemesh_crypto::coord::CoordObject::seal(
        &alice_session,
        &coord0,
        0,
        claudemesh_crypto::coord::CoordFacts {
            kind: claudemesh_crypto::coord::CoordKind::Memory,
            id: note_id,
            rev: 1,
            at_ms: (T + 90) * 1000,
        },
        br#"{"text":"the staging database listens on port 5433","tags":["infra"]}"#,
    )
    .unwrap();
    push_c(
        ClientFrame::CoordPut(CoordPut {
            req: Some("n1".into()),
            object: Box::new(note.clone()),
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::CoordStored(CoordStored {
            req: Some("n1".into()),
            kind: claudemesh_crypto::coord::CoordKind::Memory,
            id: note_id,
            cseq: 1,
            duplicate: false,
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::CoordSync(CoordSync {
            req: Some("n2".into()),
            kind: claudemesh_crypto::coord::CoordKind::Memory,
            after: 0,
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::CoordPage(CoordPage {
            req: Some("n2".into()),
            kind: claudemesh_crypto::coord::CoordKind::Memory,
            changes: vec![CoordChange {
                cseq: 1,
                id: note_id,
                object: Some(Box::new(note)),
                act: None,
                expires_at_ms: None,
                withheld: false,
            }],
            head: 1,
            more: false,
            grants: 0,
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::CoordForget(CoordForget {
            req: Some("n3".into()),
            kind: claudemesh_crypto::coord::CoordKind::Memory,
            id: note_id,
        }),
        &mut frames,
    );
    let root1 = EpochRootKey::from_bytes(1, [0x43; 32]);
    let link = claudemesh_crypto::coord::RingLink::seal(
        &alice_session,
        1,
        &claudemesh_crypto::coord::coord_key(&root1, &mesh_id),
        &coord0,
        (T + 95) * 1000,
    );
    push_c(
        ClientFrame::CoordRingPut(CoordRingPut {
            req: Some("r1".into()),
            link: Box::new(link.clone()),
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::CoordRingStored(CoordRingStored {
            req: Some("r1".into()),
            epoch: 1,
            duplicate: false,
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::CoordRing(CoordRingQuery {
            req: Some("r2".into()),
            after: 0,
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::CoordRingPage(CoordRingPage {
            req: Some("r2".into()),
            links: vec![link],
            more: false,
        }),
        &mut frames,
    );
    // Alice writes a task; Bob claims it with a signed act whose `rev` is
    // the version it makes (2: the one after creation).
    let task_id = claudemesh_crypto::coord::CoordId([0x55; 16]);
    let task = claudemesh_crypto::coord::CoordObject::seal(
        &alice_session,
        &coord0,
        0,
        claudemesh_crypto::coord::CoordFacts {
            kind: claudemesh_crypto::coord::CoordKind::Task,
            id: task_id,
            rev: 1,
            at_ms: (T + 96) * 1000,
        },
        br#"{"title":"fix the flaky login test","priority":"high"}"#,
    )
    .unwrap();
    push_c(
        ClientFrame::CoordPut(CoordPut {
            req: Some("t1".into()),
            object: Box::new(task.clone()),
        }),
        &mut frames,
    );
    let claim = claudemesh_crypto::coord::CoordObject::seal(
        &bob_session,
        &coord0,
        0,
        claudemesh_crypto::coord::CoordFacts {
            kind: claudemesh_crypto::coord::CoordKind::TaskClaim,
            id: task_id,
            rev: 2,
            at_ms: (T + 97) * 1000,
        },
        b"{}",
    )
    .unwrap();
    push_c(
        ClientFrame::TaskAct(TaskActFrame {
            req: Some("t2".into()),
            act: Box::new(claim.clone()),
            force: false,
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::TaskState(TaskState {
            req: Some("t2".into()),
            ok: true,
            id: task_id,
            version: 2,
            phase: TaskPhase::Claimed,
            holder: Some(claim.member()),
            act: Some(Box::new(claim)),
            cseq: 4,
        }),
        &mut frames,
    );
    // Bob sets a shared state entry that did not exist (version 0 → 1),
    // filed under its key's keyed hash.
    let key_id = claudemesh_crypto::coord::state_id(&coord0, &mesh_id, "deploy/staging");
    let entry = claudemesh_crypto::coord::CoordObject::seal(
        &bob_session,
        &coord0,
        0,
        claudemesh_crypto::coord::CoordFacts {
            kind: claudemesh_crypto::coord::CoordKind::State,
            id: key_id,
            rev: 1,
            at_ms: (T + 98) * 1000,
        },
        br#"{"key":"deploy/staging","value":{"version":"1.4.2","by":"bob"},"tag_epoch":0}"#,
    )
    .unwrap();
    push_c(
        ClientFrame::StateSet(StateSet {
            req: Some("s1".into()),
            object: Box::new(entry),
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::StateAnswer(StateAnswer {
            req: Some("s1".into()),
            ok: true,
            id: key_id,
            version: 1,
            cseq: 5,
            current: None,
        }),
        &mut frames,
    );
    // Bob leases src/net/ in github.com/acme/api for 30 minutes,
    // exclusively: the broker sees keyed tags, never the paths.
    let lease_id = claudemesh_crypto::coord::CoordId([0x66; 16]);
    let lease = claudemesh_crypto::coord::CoordObject::seal(
        &bob_session,
        &coord0,
        0,
        claudemesh_crypto::coord::CoordFacts {
            kind: claudemesh_crypto::coord::CoordKind::Lease,
            id: lease_id,
            rev: 1,
            at_ms: (T + 99) * 1000,
        },
        br#"{"repo":"github.com/acme/api","paths":["src/net/"],"exclusive":true,"reason":"refactoring net"}"#,
    )
    .unwrap();
    let repo = "github.com/acme/api";
    push_c(
        ClientFrame::LeaseTake(LeaseTake {
            req: Some("l1".into()),
            object: Box::new(lease.clone()),
            exclusive: true,
            ttl_ms: 1_800_000,
            tags: claudemesh_crypto::coord::lease_tags(&coord0, &mesh_id, repo, "src/net/"),
            probe: claudemesh_crypto::coord::lease_probe(&coord0, &mesh_id, repo, "src/net/"),
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::LeaseAnswer(LeaseAnswer {
            req: Some("l1".into()),
            granted: true,
            id: lease_id,
            expires_at_ms: (T + 99) * 1000 + 1_800_000,
            cseq: 6,
            conflicts: Vec::new(),
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::LeaseRenew(LeaseRenew {
            req: Some("l2".into()),
            ids: vec![lease_id],
            ttl_ms: 1_800_000,
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::LeaseRenewed(LeaseRenewed {
            req: Some("l2".into()),
            ids: vec![lease_id],
            expires_at_ms: (T + 600) * 1000 + 1_800_000,
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::CoordChanged(CoordChanged {
            kinds: vec![claudemesh_crypto::coord::CoordKind::State],
        }),
        &mut frames,
    );
    push_c(
        ClientFrame::Ping(Request {
            req: Some("k1".into()),
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::Pong(Pong {
            req: Some("k1".into()),
            time_ms: (T + 70) * 1000,
        }),
        &mut frames,
    );
    push_b(
        BrokerFrame::error(
            Some("s2".into()),
            ErrorCode::UnknownRecipient,
            "no member 3fa2c1d0 in this mesh",
        ),
        &mut frames,
    );
    let _ = Hash32::ZERO;

    if let Some(dir) = corpus {
        // The first example of a type is `seed-<type>.json`; a later one
        // (a `send` with `deliver_at_ms`) `seed-<type>-2.json`, so the
        // first seeds keep their names.
        let mut seen = std::collections::BTreeMap::<&str, usize>::new();
        for (name, json) in &frames {
            let compact: serde_json::Value = serde_json::from_str(json).unwrap();
            let n = seen.entry(name.as_str()).or_default();
            *n += 1;
            let file = if *n == 1 {
                format!("{dir}/seed-{name}.json")
            } else {
                format!("{dir}/seed-{name}-{n}.json")
            };
            std::fs::write(file, serde_json::to_string(&compact).unwrap()).unwrap();
        }
        eprintln!("wrote {} seed files to {dir}", frames.len());
    } else {
        for (name, json) in frames {
            println!("### {name}\n\n```json\n{json}\n```\n");
        }
    }
}

//! Conformance tests for [`Store`]: one function per behaviour, written
//! against the trait, each run against a fresh SQLite store and a fresh
//! Postgres database, so the two backends cannot drift apart.
//!
//! Postgres is required (CI has it): without one the Postgres half fails
//! with a message saying how to start it.

use std::time::Duration;

use claudemesh_crypto::coord::{CoordId, CoordKind};
use claudemesh_crypto::envelope::{MessageId, Priority};
use claudemesh_crypto::log::{LogBuilder, LogEntry, PeerType, Role};
use claudemesh_crypto::{Hash32, MeshId, Nonce, PublicKey, SigningKey};
use claudemesh_proto::frames::{DeliveryState, EncryptedBlob, Status, TaskPhase};

use super::{
    AckOp, AppendExtras, AppendOutcome, CancelOutcome, CoordRow, ForgetOutcome, HeldMessage,
    HoldOutcome, InsertOutcome, LeaseOutcome, LeaseTakeRequest, MemberState, NewCoordObject,
    NewMessage, PageLimit, PendingMessage, PostgresStore, PutOutcome, RetentionOutcome,
    SqliteStore, StateOutcome, Store, TableDump, TaskActOutcome, TaskActRequest,
};
use crate::testing::{TestDatabase, fresh_postgres_url, fresh_sqlite_url};

const LOCK_TIMEOUT: Duration = Duration::from_secs(60);
const T0: u64 = 1_700_000_000_000;

pub(super) async fn open_sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&fresh_sqlite_url(dir.path()).await)
        .await
        .unwrap();
    (store, dir)
}

pub(super) async fn open_postgres() -> (PostgresStore, TestDatabase) {
    let db = fresh_postgres_url()
        .await
        .expect("Postgres is required for the store tests");
    let store = PostgresStore::open(db.url(), LOCK_TIMEOUT).await.unwrap();
    (store, db)
}

/// Runs each behaviour against both backends: `sqlite::<name>` and
/// `postgres::<name>`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _dir) = super::open_sqlite().await;
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, db) = super::open_postgres().await;
                    super::$name(&store).await;
                    store.pool().close().await;
                    db.drop_database().await;
                }
            )*
        }
    };
}

conformance!(
    opens_ready,
    create_mesh_is_idempotent,
    load_log_of_unknown_mesh_is_none,
    append_log_and_conflict,
    invites_and_uses,
    write_batch_new_and_duplicates,
    write_batch_in_batch_duplicates,
    write_batch_large_batch_keeps_order,
    pending_filters,
    acks_touch_only_own_rows_and_never_downgrade,
    acks_in_one_batch_take_the_highest_state,
    message_status_of_unknown_is_none,
    sessions_round_trip,
    member_state_round_trip,
    sweep_retention_expires_then_purges,
    dump_has_every_table_as_text,
    fanout_messages_are_stored_once_and_acked_by_receipt,
    pages_are_cut_by_weight,
    grants_keep_the_newest_version,
    fanout_messages_are_numbered_per_target,
    receipts_are_stored_only_for_their_message_and_recipient,
    watermarks_keep_the_furthest,
    deadlines_expire_what_was_not_shown,
    held_messages_fire_once_and_a_cancel_or_a_fire_wins,
    held_messages_fail_are_capped_and_purged,
    coord_put_is_idempotent_and_forget_leaves_a_tombstone,
    coord_changes_are_paged_by_bytes,
    coord_feed_positions_are_commit_ordered_under_concurrency,
    coord_quota_counts_the_authors_live_objects,
    coord_ring_keeps_the_first_link_per_signer,
    coord_rows_of_another_mesh_never_leak,
    tasks_move_by_acts_and_the_feed_carries_the_last_act,
    concurrent_claims_of_one_task_have_exactly_one_winner,
    state_writes_are_compare_and_set,
    of_concurrent_state_writers_of_one_version_exactly_one_wins,
    leases_conflict_by_tags_unless_shared_or_own_and_expire,
    of_concurrent_overlapping_exclusive_takes_exactly_one_is_granted,
);

// ---------------------------------------------------------------- helpers

fn key() -> PublicKey {
    SigningKey::generate().public()
}

struct TestMesh {
    owner: SigningKey,
    builder: LogBuilder,
    id: MeshId,
}

impl TestMesh {
    fn new() -> Self {
        let owner = SigningKey::generate();
        let builder = LogBuilder::new(&owner, T0 / 1000);
        let id = MeshId(builder.entries()[0].hash());
        TestMesh { owner, builder, id }
    }

    fn genesis(&self) -> &LogEntry {
        &self.builder.entries()[0]
    }

    async fn create(s: &dyn Store) -> Self {
        let mesh = TestMesh::new();
        assert!(s.create_mesh(mesh.genesis(), mesh.id, T0).await.unwrap());
        mesh
    }
}

fn with_hash(e: &LogEntry) -> (LogEntry, Hash32) {
    (e.clone(), e.hash())
}

fn message(mesh: &MeshId, sender: &PublicKey, recipients: &[PublicKey]) -> NewMessage {
    let id = MessageId::random();
    NewMessage {
        mesh: *mesh,
        sender_member: *sender,
        id,
        target: format!("member:{}", recipients[0].to_hex()),
        priority: Priority::Next,
        envelope_json: serde_json::json!({ "id": id.to_hex(), "ciphertext": "AAAA" }).to_string(),
        recipients: recipients.to_vec(),
        at_len: None,
        created_at_ms: T0,
        expires_at_ms: T0 + 86_400_000,
        deadline_ms: None,
        held: false,
    }
}

fn ack(
    mesh: &MeshId,
    member: &PublicKey,
    session: &PublicKey,
    seqs: &[u64],
    state: DeliveryState,
    at: u64,
) -> AckOp {
    AckOp {
        mesh: *mesh,
        member: *member,
        session: *session,
        seqs: seqs.to_vec(),
        state,
        at_ms: at,
        fanout_targets: vec![("#ops".into(), 0)],
    }
}

fn new(seq: u64) -> InsertOutcome {
    InsertOutcome {
        seq,
        duplicate: false,
        tseq: None,
    }
}

fn dup(seq: u64) -> InsertOutcome {
    InsertOutcome {
        seq,
        duplicate: true,
        tseq: None,
    }
}

/// The recipients' states of a message, sorted by key.
async fn states(s: &dyn Store, m: &NewMessage) -> Vec<(PublicKey, DeliveryState)> {
    let status = s
        .message_status(&m.mesh, &m.sender_member, &m.id)
        .await
        .unwrap()
        .expect("message is stored");
    status.recipients
}

fn sorted(mut v: Vec<(PublicKey, DeliveryState)>) -> Vec<(PublicKey, DeliveryState)> {
    v.sort_by_key(|(k, _)| *k);
    v
}

async fn pending_seqs(
    s: &dyn Store,
    mesh: &MeshId,
    recipients: &[PublicKey],
    after: u64,
    max: Priority,
    limit: u32,
) -> Vec<u64> {
    s.pending(mesh, recipients, after, max, limit.into())
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.seq)
        .collect()
}

fn table<'a>(dump: &'a [TableDump], name: &str) -> &'a TableDump {
    dump.iter()
        .find(|t| t.table == name)
        .unwrap_or_else(|| panic!("table {name} in dump"))
}

fn cell<'a>(t: &'a TableDump, row: usize, column: &str) -> &'a str {
    let i = t
        .columns
        .iter()
        .position(|c| c == column)
        .unwrap_or_else(|| panic!("column {column} of {}", t.table));
    &t.rows[row][i]
}

/// A blob as SQLite's `quote()` renders it (and the Postgres dump mimics).
fn blob(b: &[u8]) -> String {
    format!("X'{}'", hex::encode_upper(b))
}

// ------------------------------------------------------------- behaviours

async fn opens_ready(s: &dyn Store) {
    s.ready().await.unwrap();
    assert!(matches!(s.backend(), "sqlite" | "postgres"));
}

async fn create_mesh_is_idempotent(s: &dyn Store) {
    let mesh = TestMesh::new();
    assert!(s.create_mesh(mesh.genesis(), mesh.id, T0).await.unwrap());
    assert!(
        !s.create_mesh(mesh.genesis(), mesh.id, T0 + 1)
            .await
            .unwrap()
    );
    let log = s.load_log(&mesh.id).await.unwrap().unwrap();
    assert_eq!(log, vec![mesh.genesis().clone()]);
    // A second mesh is independent.
    let other = TestMesh::create(s).await;
    assert_eq!(s.load_log(&other.id).await.unwrap().unwrap().len(), 1);
    assert_eq!(s.load_log(&mesh.id).await.unwrap().unwrap().len(), 1);
}

async fn load_log_of_unknown_mesh_is_none(s: &dyn Store) {
    assert!(
        s.load_log(&MeshId(Hash32([7; 32])))
            .await
            .unwrap()
            .is_none()
    );
    TestMesh::create(s).await;
    assert!(
        s.load_log(&MeshId(Hash32([7; 32])))
            .await
            .unwrap()
            .is_none()
    );
}

async fn append_log_and_conflict(s: &dyn Store) {
    let mut mesh = TestMesh::create(s).await;
    let invite = SigningKey::generate();
    let e1 = with_hash(
        mesh.builder
            .invite(
                &mesh.owner,
                &invite.public(),
                Role::Member,
                1,
                T0 / 1000,
                T0 / 1000 + 3600,
            )
            .unwrap(),
    );
    let member = SigningKey::generate();
    let e2 = with_hash(mesh.builder.admit(&member, &invite, T0 / 1000).unwrap());

    assert_eq!(
        s.append_log(
            &mesh.id,
            1,
            std::slice::from_ref(&e1),
            &AppendExtras::default()
        )
        .await
        .unwrap(),
        AppendOutcome::Appended
    );
    // The log moved on: appending at the old length conflicts and writes
    // nothing, not even the extras.
    let stray_invite = key();
    let conflict = s
        .append_log(
            &mesh.id,
            1,
            std::slice::from_ref(&e2),
            &AppendExtras {
                new_invite: Some((stray_invite, vec![1, 2, 3])),
                used_invite: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(conflict, AppendOutcome::Conflict);
    assert_eq!(s.load_log(&mesh.id).await.unwrap().unwrap().len(), 2);
    assert!(s.invite_bundle(&stray_invite).await.unwrap().is_none());
    // Too long an expectation conflicts as well.
    assert_eq!(
        s.append_log(
            &mesh.id,
            5,
            std::slice::from_ref(&e2),
            &AppendExtras::default()
        )
        .await
        .unwrap(),
        AppendOutcome::Conflict
    );
    // So does an unknown mesh.
    assert_eq!(
        s.append_log(
            &MeshId(Hash32([9; 32])),
            1,
            std::slice::from_ref(&e2),
            &AppendExtras::default()
        )
        .await
        .unwrap(),
        AppendOutcome::Conflict
    );
    assert_eq!(
        s.append_log(
            &mesh.id,
            2,
            std::slice::from_ref(&e2),
            &AppendExtras::default()
        )
        .await
        .unwrap(),
        AppendOutcome::Appended
    );
    // Nothing to append is a no-op.
    assert_eq!(
        s.append_log(&mesh.id, 3, &[], &AppendExtras::default())
            .await
            .unwrap(),
        AppendOutcome::Appended
    );
    let log = s.load_log(&mesh.id).await.unwrap().unwrap();
    assert_eq!(log, mesh.builder.entries().to_vec());
    claudemesh_crypto::log::verify_log(&log).unwrap();

    // Several entries at once, with the head recorded.
    let e3 = with_hash(
        mesh.builder
            .invite(
                &mesh.owner,
                &key(),
                Role::Admin,
                2,
                T0 / 1000,
                T0 / 1000 + 60,
            )
            .unwrap(),
    );
    let e4 = with_hash(
        mesh.builder
            .invite(
                &mesh.owner,
                &key(),
                Role::Member,
                3,
                T0 / 1000,
                T0 / 1000 + 60,
            )
            .unwrap(),
    );
    assert_eq!(
        s.append_log(&mesh.id, 3, &[e3, e4.clone()], &AppendExtras::default())
            .await
            .unwrap(),
        AppendOutcome::Appended
    );
    assert_eq!(
        s.load_log(&mesh.id).await.unwrap().unwrap(),
        mesh.builder.entries().to_vec()
    );
    let dump = s.dump().await.unwrap();
    let meshes = table(&dump, "meshes");
    assert_eq!(meshes.rows.len(), 1);
    assert_eq!(cell(meshes, 0, "log_len"), "5");
    assert_eq!(cell(meshes, 0, "log_head"), blob(&e4.1.0));
}

async fn invites_and_uses(s: &dyn Store) {
    let mut mesh = TestMesh::create(s).await;
    let invite = SigningKey::generate();
    let bundle = b"sealed welcome bundle".to_vec();
    assert!(s.invite_bundle(&invite.public()).await.unwrap().is_none());
    let e1 = with_hash(
        mesh.builder
            .invite(
                &mesh.owner,
                &invite.public(),
                Role::Member,
                5,
                T0 / 1000,
                T0 / 1000 + 3600,
            )
            .unwrap(),
    );
    let extras = AppendExtras {
        new_invite: Some((invite.public(), bundle.clone())),
        used_invite: None,
    };
    assert_eq!(
        s.append_log(&mesh.id, 1, &[e1], &extras).await.unwrap(),
        AppendOutcome::Appended
    );
    assert_eq!(
        s.invite_bundle(&invite.public()).await.unwrap(),
        Some((mesh.id, bundle.clone()))
    );

    let uses = |dump: &[TableDump]| {
        let t = table(dump, "invites");
        assert_eq!(t.rows.len(), 1);
        cell(t, 0, "uses").to_owned()
    };
    assert_eq!(uses(&s.dump().await.unwrap()), "0");

    for (i, len) in [(0u64, 2u64), (1, 3)] {
        let member = SigningKey::generate();
        let e = with_hash(mesh.builder.admit(&member, &invite, T0 / 1000 + i).unwrap());
        let extras = AppendExtras {
            new_invite: None,
            used_invite: Some(invite.public()),
        };
        assert_eq!(
            s.append_log(&mesh.id, len, &[e], &extras).await.unwrap(),
            AppendOutcome::Appended
        );
    }
    let dump = s.dump().await.unwrap();
    assert_eq!(uses(&dump), "2");
    let invites = table(&dump, "invites");
    assert_eq!(
        cell(invites, 0, "invite_key"),
        blob(invite.public().as_bytes())
    );
    assert_eq!(cell(invites, 0, "mesh_id"), blob(mesh.id.as_bytes()));
    assert_eq!(cell(invites, 0, "bundle"), blob(&bundle));
    // The bundle is still there after use (max_uses is the log's business).
    assert!(s.invite_bundle(&invite.public()).await.unwrap().is_some());
}

async fn write_batch_new_and_duplicates(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let sender = key();
    let (r1, r2) = (key(), key());
    let a = message(&mesh.id, &sender, &[r1, r2]);
    let b = message(&mesh.id, &sender, &[r1]);

    assert_eq!(s.write_batch(&[], &[]).await.unwrap(), vec![]);
    let out = s.write_batch(&[a.clone(), b.clone()], &[]).await.unwrap();
    assert_eq!(out.len(), 2);
    assert!(!out[0].duplicate && !out[1].duplicate);
    assert!(out[1].seq > out[0].seq);
    let (sa, sb) = (out[0].seq, out[1].seq);

    // A resend (even with other recipients) is a duplicate with the
    // original seq and writes no delivery row.
    let mut resend = a.clone();
    resend.recipients.push(key());
    assert_eq!(s.write_batch(&[resend], &[]).await.unwrap(), vec![dup(sa)]);
    let status = s
        .message_status(&mesh.id, &sender, &a.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.seq, sa);
    assert_eq!(
        status.recipients,
        sorted(vec![
            (r1, DeliveryState::Queued),
            (r2, DeliveryState::Queued)
        ])
    );

    // A fresh message between two stored ones: outcomes stay in input order.
    let c = message(&mesh.id, &sender, &[r2]);
    let out = s
        .write_batch(&[b.clone(), c.clone(), a.clone()], &[])
        .await
        .unwrap();
    assert_eq!(out[0], dup(sb));
    assert!(!out[1].duplicate && out[1].seq > sb);
    assert_eq!(out[2], dup(sa));

    // The same id from another sender, or in another mesh, is another message.
    let mut other_sender = a.clone();
    other_sender.sender_member = key();
    let other_mesh_id = TestMesh::create(s).await.id;
    let mut other_mesh = a.clone();
    other_mesh.mesh = other_mesh_id;
    let out = s
        .write_batch(&[other_sender, other_mesh], &[])
        .await
        .unwrap();
    assert!(out.iter().all(|o| !o.duplicate));
    assert!(out[0].seq != sa && out[1].seq != sa && out[0].seq != out[1].seq);

    let dump = s.dump().await.unwrap();
    assert_eq!(table(&dump, "messages").rows.len(), 5);
    // a: 2, b: 1, c: 1, other sender: 2, other mesh: 2.
    assert_eq!(table(&dump, "deliveries").rows.len(), 8);
}

async fn write_batch_in_batch_duplicates(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let sender = key();
    let (r1, r2, r3) = (key(), key(), key());
    let old = message(&mesh.id, &sender, &[r1]);
    let [o] = s
        .write_batch(std::slice::from_ref(&old), &[])
        .await
        .unwrap()[..]
    else {
        panic!("one outcome")
    };

    let c = message(&mesh.id, &sender, &[r1, r2]);
    let mut c_again = c.clone();
    c_again.recipients = vec![r3];
    c_again.envelope_json = "{\"other\":true}".into();
    let d = message(&mesh.id, &sender, &[r2]);
    let out = s
        .write_batch(
            &[
                c.clone(),
                old.clone(),
                c_again.clone(),
                d.clone(),
                c.clone(),
            ],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 5);
    let sc = out[0].seq;
    assert_eq!(out[0], new(sc));
    assert!(sc > o.seq);
    assert_eq!(out[1], dup(o.seq));
    assert_eq!(out[2], dup(sc));
    assert!(!out[3].duplicate && out[3].seq > sc);
    assert_eq!(out[4], dup(sc));

    // The first occurrence is the one stored: its recipients and envelope.
    assert_eq!(
        states(s, &c).await,
        sorted(vec![
            (r1, DeliveryState::Queued),
            (r2, DeliveryState::Queued)
        ])
    );
    let p = s
        .pending(&mesh.id, &[r1], 0, Priority::Low, 10.into())
        .await
        .unwrap();
    assert_eq!(p.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![o.seq, sc]);
    assert_eq!(p[1].envelope_json, c.envelope_json);
    assert!(
        s.pending(&mesh.id, &[r3], 0, Priority::Low, 10.into())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn write_batch_large_batch_keeps_order(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let sender = key();
    let rcpt = key();
    let batch: Vec<NewMessage> = (0..1000)
        .map(|_| message(&mesh.id, &sender, &[rcpt]))
        .collect();
    let out = s.write_batch(&batch, &[]).await.unwrap();
    assert_eq!(out.len(), 1000);
    assert!(out.iter().all(|o| !o.duplicate));
    assert!(out.windows(2).all(|w| w[0].seq < w[1].seq));
    let again = s.write_batch(&batch, &[]).await.unwrap();
    assert_eq!(again, out.iter().map(|o| dup(o.seq)).collect::<Vec<_>>());
    let pending = s
        .pending(&mesh.id, &[rcpt], 0, Priority::Low, 2000.into())
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|p| p.seq).collect::<Vec<_>>(),
        out.iter().map(|o| o.seq).collect::<Vec<_>>()
    );
    for (p, m) in pending.iter().zip(&batch) {
        assert_eq!(p.envelope_json, m.envelope_json);
    }
}

async fn pending_filters(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let other_mesh = TestMesh::create(s).await;
    let sender = key();
    let (member, session, other) = (key(), key(), key());

    let mut p1 = message(&mesh.id, &sender, &[member]);
    p1.priority = Priority::Next;
    p1.created_at_ms = T0 + 1;
    let mut p2 = message(&mesh.id, &sender, &[session]);
    p2.priority = Priority::Now;
    p2.created_at_ms = T0 + 2;
    let p3 = message(&mesh.id, &sender, &[other]);
    let mut p4 = message(&mesh.id, &sender, &[member]);
    p4.priority = Priority::Low;
    p4.created_at_ms = T0 + 4;
    let p5 = message(&other_mesh.id, &sender, &[member]);
    let out = s
        .write_batch(&[p1.clone(), p2.clone(), p3, p4.clone(), p5], &[])
        .await
        .unwrap();
    let seq: Vec<u64> = out.iter().map(|o| o.seq).collect();
    let both = [member, session];

    assert_eq!(
        pending_seqs(s, &mesh.id, &both, 0, Priority::Low, 100).await,
        vec![seq[0], seq[1], seq[3]]
    );
    let full = s
        .pending(&mesh.id, &both, 0, Priority::Low, 100.into())
        .await
        .unwrap();
    assert_eq!(full[0].envelope_json, p1.envelope_json);
    assert_eq!(full[0].queued_at_ms, T0 + 1);
    assert_eq!(full[1].envelope_json, p2.envelope_json);
    assert_eq!(full[2].queued_at_ms, T0 + 4);
    // By recipient.
    assert_eq!(
        pending_seqs(s, &mesh.id, &[member], 0, Priority::Low, 100).await,
        vec![seq[0], seq[3]]
    );
    assert_eq!(
        pending_seqs(s, &mesh.id, &[session], 0, Priority::Low, 100).await,
        vec![seq[1]]
    );
    assert_eq!(
        pending_seqs(s, &mesh.id, &[other], 0, Priority::Low, 100).await,
        vec![seq[2]]
    );
    assert!(
        pending_seqs(s, &mesh.id, &[], 0, Priority::Low, 100)
            .await
            .is_empty()
    );
    // By mesh.
    assert_eq!(
        pending_seqs(s, &other_mesh.id, &both, 0, Priority::Low, 100).await,
        vec![seq[4]]
    );
    // By priority.
    assert_eq!(
        pending_seqs(s, &mesh.id, &both, 0, Priority::Now, 100).await,
        vec![seq[1]]
    );
    assert_eq!(
        pending_seqs(s, &mesh.id, &both, 0, Priority::Next, 100).await,
        vec![seq[0], seq[1]]
    );
    // By seq and limit.
    assert_eq!(
        pending_seqs(s, &mesh.id, &both, seq[0], Priority::Low, 100).await,
        vec![seq[1], seq[3]]
    );
    assert_eq!(
        pending_seqs(s, &mesh.id, &both, 0, Priority::Low, 2).await,
        vec![seq[0], seq[1]]
    );
    assert!(
        pending_seqs(s, &mesh.id, &both, 0, Priority::Low, 0)
            .await
            .is_empty()
    );
    // By state: acked messages are no longer pending.
    s.write_batch(
        &[],
        &[ack(
            &mesh.id,
            &member,
            &session,
            &[seq[0]],
            DeliveryState::Delivered,
            T0 + 10,
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        pending_seqs(s, &mesh.id, &both, 0, Priority::Low, 100).await,
        vec![seq[1], seq[3]]
    );
}

async fn acks_touch_only_own_rows_and_never_downgrade(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let sender = key();
    let (member, session, other, other_session) = (key(), key(), key(), key());
    let to_member = message(&mesh.id, &sender, &[member, other]);
    let to_session = message(&mesh.id, &sender, &[session]);
    let out = s
        .write_batch(&[to_member.clone(), to_session.clone()], &[])
        .await
        .unwrap();
    let (s1, s2) = (out[0].seq, out[1].seq);

    // Someone else's ack changes nothing of ours.
    s.write_batch(
        &[],
        &[ack(
            &mesh.id,
            &other,
            &other_session,
            &[s2],
            DeliveryState::Read,
            T0 + 1,
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        states(s, &to_session).await,
        vec![(session, DeliveryState::Queued)]
    );
    // An ack in another mesh changes nothing.
    s.write_batch(
        &[],
        &[ack(
            &MeshId(Hash32([3; 32])),
            &member,
            &session,
            &[s1, s2],
            DeliveryState::Read,
            T0 + 1,
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        states(s, &to_session).await,
        vec![(session, DeliveryState::Queued)]
    );

    // The member's connection acks rows addressed to its member key and to
    // its session key, and only those.
    s.write_batch(
        &[],
        &[ack(
            &mesh.id,
            &member,
            &session,
            &[s1, s2],
            DeliveryState::Delivered,
            T0 + 2,
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        states(s, &to_member).await,
        sorted(vec![
            (member, DeliveryState::Delivered),
            (other, DeliveryState::Queued)
        ])
    );
    assert_eq!(
        states(s, &to_session).await,
        vec![(session, DeliveryState::Delivered)]
    );

    // Read, then a late delivered: stays read.
    s.write_batch(
        &[],
        &[ack(
            &mesh.id,
            &member,
            &session,
            &[s1],
            DeliveryState::Read,
            T0 + 3,
        )],
    )
    .await
    .unwrap();
    s.write_batch(
        &[],
        &[ack(
            &mesh.id,
            &member,
            &session,
            &[s1],
            DeliveryState::Delivered,
            T0 + 4,
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        states(s, &to_member).await,
        sorted(vec![
            (member, DeliveryState::Read),
            (other, DeliveryState::Queued)
        ])
    );
    // Unknown seqs are ignored.
    s.write_batch(
        &[],
        &[ack(
            &mesh.id,
            &member,
            &session,
            &[s2 + 1000],
            DeliveryState::Read,
            T0 + 5,
        )],
    )
    .await
    .unwrap();

    // The other recipient's own ack, with a message in the same batch.
    let third = message(&mesh.id, &sender, &[other]);
    let out = s
        .write_batch(
            std::slice::from_ref(&third),
            &[ack(
                &mesh.id,
                &other,
                &other_session,
                &[s1],
                DeliveryState::Read,
                T0 + 6,
            )],
        )
        .await
        .unwrap();
    assert!(!out[0].duplicate);
    assert_eq!(
        states(s, &to_member).await,
        sorted(vec![
            (member, DeliveryState::Read),
            (other, DeliveryState::Read)
        ])
    );
    assert_eq!(
        states(s, &third).await,
        vec![(other, DeliveryState::Queued)]
    );
}

async fn acks_in_one_batch_take_the_highest_state(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let sender = key();
    let (member, session) = (key(), key());
    let a = message(&mesh.id, &sender, &[member]);
    let b = message(&mesh.id, &sender, &[member, session]);
    let out = s.write_batch(&[a.clone(), b.clone()], &[]).await.unwrap();
    let (sa, sb) = (out[0].seq, out[1].seq);
    s.write_batch(
        &[],
        &[
            ack(
                &mesh.id,
                &member,
                &session,
                &[sa],
                DeliveryState::Delivered,
                T0 + 1,
            ),
            ack(
                &mesh.id,
                &member,
                &session,
                &[sa],
                DeliveryState::Read,
                T0 + 2,
            ),
            ack(
                &mesh.id,
                &member,
                &session,
                &[sb],
                DeliveryState::Read,
                T0 + 3,
            ),
            ack(
                &mesh.id,
                &member,
                &session,
                &[sb],
                DeliveryState::Delivered,
                T0 + 4,
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(states(s, &a).await, vec![(member, DeliveryState::Read)]);
    assert_eq!(
        states(s, &b).await,
        sorted(vec![
            (member, DeliveryState::Read),
            (session, DeliveryState::Read)
        ])
    );
    // The update time is that of the ack that set the state.
    let dump = s.dump().await.unwrap();
    let deliveries = table(&dump, "deliveries");
    for (i, row) in deliveries.rows.iter().enumerate() {
        let seq: u64 = cell(deliveries, i, "seq").parse().unwrap();
        let at = cell(deliveries, i, "updated_at_ms");
        let want = if seq == sa { T0 + 2 } else { T0 + 3 };
        assert_eq!(at, want.to_string(), "row {row:?}");
    }
}

async fn message_status_of_unknown_is_none(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let sender = key();
    let rcpt = key();
    assert!(
        s.message_status(&mesh.id, &sender, &MessageId::random())
            .await
            .unwrap()
            .is_none()
    );
    let m = message(&mesh.id, &sender, &[rcpt]);
    let out = s.write_batch(std::slice::from_ref(&m), &[]).await.unwrap();
    let status = s
        .message_status(&mesh.id, &sender, &m.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.seq, out[0].seq);
    assert_eq!(status.recipients, vec![(rcpt, DeliveryState::Queued)]);
    // Only the sender can look it up, and only in its mesh.
    assert!(
        s.message_status(&mesh.id, &rcpt, &m.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.message_status(&MeshId(Hash32([5; 32])), &sender, &m.id)
            .await
            .unwrap()
            .is_none()
    );
    // A message with no recipient still has a status.
    let mut lonely = message(&mesh.id, &sender, &[rcpt]);
    lonely.recipients.clear();
    let out = s.write_batch(&[lonely.clone()], &[]).await.unwrap();
    let status = s
        .message_status(&mesh.id, &sender, &lonely.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.seq, out[0].seq);
    assert!(status.recipients.is_empty());
}

async fn sessions_round_trip(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (session, member) = (key(), key());
    assert!(
        s.session_member(&mesh.id, &session)
            .await
            .unwrap()
            .is_none()
    );
    s.record_session(&mesh.id, &session, &member, T0)
        .await
        .unwrap();
    assert_eq!(
        s.session_member(&mesh.id, &session).await.unwrap(),
        Some(member)
    );
    // Recording again is fine (it refreshes last-seen).
    s.record_session(&mesh.id, &session, &member, T0 + 5)
        .await
        .unwrap();
    assert_eq!(
        s.session_member(&mesh.id, &session).await.unwrap(),
        Some(member)
    );
    let dump = s.dump().await.unwrap();
    let sessions = table(&dump, "sessions");
    assert_eq!(sessions.rows.len(), 1);
    assert_eq!(cell(sessions, 0, "last_seen_ms"), (T0 + 5).to_string());
    // Sessions are per mesh.
    assert!(
        s.session_member(&MeshId(Hash32([1; 32])), &session)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.session_member(&mesh.id, &member).await.unwrap().is_none());
}

async fn grants_keep_the_newest_version(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (m1, m2) = (key(), key());
    assert!(s.load_grants(&mesh.id).await.unwrap().is_empty());
    assert!(
        s.save_grants(&mesh.id, &m1, 10, "{\"v\":10}")
            .await
            .unwrap()
    );
    assert!(s.save_grants(&mesh.id, &m2, 5, "{\"v\":5}").await.unwrap());
    // Older and equal versions never replace the stored one.
    assert!(!s.save_grants(&mesh.id, &m1, 9, "{\"v\":9}").await.unwrap());
    assert!(
        !s.save_grants(&mesh.id, &m1, 10, "{\"v\":\"x\"}")
            .await
            .unwrap()
    );
    assert!(s.save_grants(&mesh.id, &m2, 6, "{\"v\":6}").await.unwrap());
    let mut got = s.load_grants(&mesh.id).await.unwrap();
    got.sort_by_key(|(k, _)| *k);
    let mut want = vec![(m1, "{\"v\":10}".to_owned()), (m2, "{\"v\":6}".to_owned())];
    want.sort_by_key(|(k, _)| *k);
    assert_eq!(got, want);
    // Per mesh.
    assert!(
        s.load_grants(&MeshId(Hash32([2; 32])))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn member_state_round_trip(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (m1, m2) = (key(), key());
    assert!(s.member_states(&mesh.id).await.unwrap().is_empty());
    let bare = MemberState {
        status: Status::Idle,
        peer_type: None,
        summary: None,
        last_seen_ms: T0,
    };
    let full = MemberState {
        status: Status::Dnd,
        peer_type: Some(PeerType::Human),
        summary: Some(EncryptedBlob {
            epoch: 3,
            nonce: Nonce([9; 24]),
            ciphertext: vec![1, 2, 3, 4, 5],
        }),
        last_seen_ms: T0 + 7,
    };
    s.save_member_state(&mesh.id, &m1, &bare).await.unwrap();
    s.save_member_state(&mesh.id, &m2, &full).await.unwrap();
    let mut got = s.member_states(&mesh.id).await.unwrap();
    got.sort_by_key(|(k, _)| *k);
    let mut want = vec![(m1, bare.clone()), (m2, full.clone())];
    want.sort_by_key(|(k, _)| *k);
    assert_eq!(got, want);

    // Saving again replaces every field, including clearing optional ones.
    let working = MemberState {
        status: Status::Working,
        peer_type: Some(PeerType::Bot),
        summary: None,
        last_seen_ms: T0 + 9,
    };
    s.save_member_state(&mesh.id, &m2, &working).await.unwrap();
    s.save_member_state(&mesh.id, &m1, &full).await.unwrap();
    let mut got = s.member_states(&mesh.id).await.unwrap();
    got.sort_by_key(|(k, _)| *k);
    let mut want = vec![(m1, full), (m2, working)];
    want.sort_by_key(|(k, _)| *k);
    assert_eq!(got, want);
    // Per mesh.
    assert!(
        s.member_states(&MeshId(Hash32([2; 32])))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn sweep_retention_expires_then_purges(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let sender = key();
    let (member, session) = (key(), key());
    let mut undelivered = message(&mesh.id, &sender, &[member]);
    undelivered.expires_at_ms = T0 + 1000;
    let mut delivered = message(&mesh.id, &sender, &[member]);
    delivered.expires_at_ms = T0 + 1000;
    let mut later = message(&mesh.id, &sender, &[member]);
    later.expires_at_ms = T0 + 5000;
    let out = s
        .write_batch(
            &[undelivered.clone(), delivered.clone(), later.clone()],
            &[],
        )
        .await
        .unwrap();
    let seqs: Vec<u64> = out.iter().map(|o| o.seq).collect();
    s.write_batch(
        &[],
        &[ack(
            &mesh.id,
            &member,
            &session,
            &[seqs[1]],
            DeliveryState::Delivered,
            T0 + 10,
        )],
    )
    .await
    .unwrap();

    // Nothing is due yet.
    assert_eq!(
        s.sweep_retention(T0 + 999, 0).await.unwrap(),
        RetentionOutcome::default()
    );
    // Both past expiry lose their ciphertext; the undelivered one is
    // reported expired, the delivered one keeps its state.
    assert_eq!(
        s.sweep_retention(T0 + 2000, 0).await.unwrap(),
        RetentionOutcome {
            expired: 2,
            purged: 0
        }
    );
    assert_eq!(
        states(s, &undelivered).await,
        vec![(member, DeliveryState::Expired)]
    );
    assert_eq!(
        states(s, &delivered).await,
        vec![(member, DeliveryState::Delivered)]
    );
    assert_eq!(
        states(s, &later).await,
        vec![(member, DeliveryState::Queued)]
    );
    assert_eq!(
        pending_seqs(s, &mesh.id, &[member], 0, Priority::Low, 10).await,
        vec![seqs[2]]
    );
    let dump = s.dump().await.unwrap();
    let messages = table(&dump, "messages");
    for (i, _) in messages.rows.iter().enumerate() {
        let seq: u64 = cell(messages, i, "seq").parse().unwrap();
        let envelope = cell(messages, i, "envelope");
        assert_eq!(envelope == "NULL", seq != seqs[2], "seq {seq}: {envelope}");
    }
    // An expired message cannot be acked back to life.
    s.write_batch(
        &[],
        &[ack(
            &mesh.id,
            &member,
            &session,
            &[seqs[0]],
            DeliveryState::Read,
            T0 + 2001,
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        states(s, &undelivered).await,
        vec![(member, DeliveryState::Expired)]
    );
    // A second sweep has nothing to do.
    assert_eq!(
        s.sweep_retention(T0 + 2000, 0).await.unwrap(),
        RetentionOutcome::default()
    );
    // Purging removes the tombstones and delivered messages for good.
    assert_eq!(
        s.sweep_retention(T0 + 2000, T0 + 1500).await.unwrap(),
        RetentionOutcome {
            expired: 0,
            purged: 2
        }
    );
    assert!(
        s.message_status(&mesh.id, &sender, &undelivered.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.message_status(&mesh.id, &sender, &delivered.id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        states(s, &later).await,
        vec![(member, DeliveryState::Queued)]
    );
    let dump = s.dump().await.unwrap();
    assert_eq!(table(&dump, "messages").rows.len(), 1);
    assert_eq!(table(&dump, "deliveries").rows.len(), 1);
    // A resend of a purged message is stored again, as new.
    let out = s.write_batch(&[undelivered.clone()], &[]).await.unwrap();
    assert!(!out[0].duplicate);
}

async fn dump_has_every_table_as_text(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let sender = key();
    let (member, session) = (key(), key());
    let m = message(&mesh.id, &sender, &[member]);
    let seq = s.write_batch(std::slice::from_ref(&m), &[]).await.unwrap()[0].seq;
    s.record_session(&mesh.id, &session, &member, T0)
        .await
        .unwrap();
    s.save_member_state(
        &mesh.id,
        &member,
        &MemberState {
            status: Status::Working,
            peer_type: None,
            summary: None,
            last_seen_ms: T0,
        },
    )
    .await
    .unwrap();

    let dump = s.dump().await.unwrap();
    let names: Vec<&str> = dump.iter().map(|t| t.table.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "_sqlx_migrations",
            "brokers",
            "coord_heads",
            "coord_objects",
            "coord_ring",
            "deliveries",
            "fanout_cursors",
            "fanout_receipts",
            "grants",
            "invites",
            "log_entries",
            "member_state",
            "meshes",
            "messages",
            "receipts",
            "scheduled_messages",
            "sessions",
            "sessions_online",
            "target_seqs",
            "watermarks",
        ]
    );
    for t in &dump {
        assert!(!t.columns.is_empty(), "{}", t.table);
        for row in &t.rows {
            assert_eq!(row.len(), t.columns.len(), "{}", t.table);
        }
    }
    let migrations = table(&dump, "_sqlx_migrations");
    assert_eq!(migrations.rows.len(), 9);
    for (i, version) in ["1", "2", "3", "4", "5", "6", "7", "8", "9"]
        .into_iter()
        .enumerate()
    {
        assert_eq!(cell(migrations, i, "version"), version);
        assert_eq!(cell(migrations, i, "success"), "1");
    }

    let meshes = table(&dump, "meshes");
    assert_eq!(
        meshes.columns,
        vec!["mesh_id", "log_len", "log_head", "created_at_ms"]
    );
    assert_eq!(
        meshes.rows,
        vec![vec![
            blob(mesh.id.as_bytes()),
            "1".to_owned(),
            blob(mesh.id.as_bytes()),
            T0.to_string()
        ]]
    );
    let log = table(&dump, "log_entries");
    assert_eq!(cell(log, 0, "seq"), "0");
    assert_eq!(cell(log, 0, "hash"), blob(mesh.id.as_bytes()));
    let entry = cell(log, 0, "entry");
    assert!(entry.starts_with('\'') && entry.ends_with('\''), "{entry}");
    let messages = table(&dump, "messages");
    assert_eq!(
        messages.columns,
        vec![
            "seq",
            "mesh_id",
            "sender_member",
            "msg_id",
            "target",
            "priority",
            "envelope",
            "size",
            "created_at_ms",
            "expires_at_ms",
            "at_len",
            "tseq",
            "deadline_ms"
        ]
    );
    assert_eq!(
        messages.rows,
        vec![vec![
            seq.to_string(),
            blob(mesh.id.as_bytes()),
            blob(sender.as_bytes()),
            blob(&m.id.0),
            format!("'{}'", m.target),
            "1".to_owned(),
            format!("'{}'", m.envelope_json),
            m.envelope_json.len().to_string(),
            T0.to_string(),
            m.expires_at_ms.to_string(),
            "NULL".to_owned(),
            "NULL".to_owned(),
            "NULL".to_owned(),
        ]]
    );
    let deliveries = table(&dump, "deliveries");
    assert_eq!(
        deliveries.rows,
        vec![vec![
            seq.to_string(),
            blob(mesh.id.as_bytes()),
            blob(member.as_bytes()),
            "0".to_owned(),
            T0.to_string()
        ]]
    );
    let states = table(&dump, "member_state");
    assert_eq!(
        states.rows,
        vec![vec![
            blob(mesh.id.as_bytes()),
            blob(member.as_bytes()),
            "'working'".to_owned(),
            "NULL".to_owned(),
            "NULL".to_owned(),
            T0.to_string()
        ]]
    );
    assert_eq!(table(&dump, "sessions").rows.len(), 1);
    assert!(table(&dump, "invites").rows.is_empty());
    // Quotes inside text are doubled, as in SQL.
    let mut quoted = message(&mesh.id, &sender, &[member]);
    quoted.envelope_json = "{\"it's\":1}".into();
    let qseq = s.write_batch(&[quoted], &[]).await.unwrap()[0].seq;
    let dump = s.dump().await.unwrap();
    let messages = table(&dump, "messages");
    let row = (0..messages.rows.len())
        .find(|&i| cell(messages, i, "seq") == qseq.to_string())
        .unwrap();
    assert_eq!(cell(messages, row, "envelope"), "'{\"it''s\":1}'");
}

/// A fan-out message: one row, no delivery rows; acks become receipts that
/// only go up; pages skip the sender and honor the cursor and `min_at_len`;
/// history is newest first; status carries the fan-out facts.
async fn fanout_messages_are_stored_once_and_acked_by_receipt(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (sender, alice, bob) = (key(), key(), key());
    let fan = |at_len: u64| NewMessage {
        target: "#ops".into(),
        recipients: vec![alice, bob],
        at_len: Some(at_len),
        ..message(&mesh.id, &sender, &[alice])
    };
    let batch = [fan(5), fan(9), message(&mesh.id, &sender, &[alice])];
    let out = s.write_batch(&batch, &[]).await.unwrap();
    let (first, second) = (out[0].seq, out[1].seq);
    let deliveries = s.dump().await.unwrap();
    assert_eq!(
        table(&deliveries, "deliveries").rows.len(),
        1,
        "only the direct message has a delivery row"
    );
    let page = |who: PublicKey, after: u64, min: u64| {
        let s = &s;
        async move {
            s.fanout_pages(&mesh.id, &who, &[("#ops".into(), min)], after, 10.into())
                .await
                .unwrap()
        }
    };
    let rows = page(alice, 0, 0).await;
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![first, second]
    );
    assert!(rows.iter().all(|r| !r.acked && r.envelope_json.is_some()));
    assert_eq!(rows[0].at_len, 5);
    assert!(
        page(sender, 0, 0).await.is_empty(),
        "the sender never gets its own"
    );
    assert_eq!(
        page(alice, 0, 5).await.len(),
        1,
        "at_len must be above min_at_len"
    );
    assert!(
        s.fanout_pages(&mesh.id, &alice, &[("@eng".into(), 0)], 0, 10.into())
            .await
            .unwrap()
            .is_empty()
    );
    // Alice reads the first (read, then a late delivered ack: stays read).
    let ack = |member: PublicKey, state: DeliveryState| AckOp {
        mesh: mesh.id,
        member,
        session: key(),
        seqs: vec![first],
        state,
        at_ms: T0,
        fanout_targets: vec![("#ops".into(), 0)],
    };
    s.write_batch(&[], &[ack(alice, DeliveryState::Read)])
        .await
        .unwrap();
    s.write_batch(&[], &[ack(alice, DeliveryState::Delivered)])
        .await
        .unwrap();
    // Bob acks it too, but as someone whose targets do not include #ops
    // (a private topic he is not in), and as one who joined #ops after it
    // was sent: neither writes a receipt.
    for targets in [vec![("*".to_owned(), 0)], vec![("#ops".to_owned(), 5)]] {
        let mut stranger = ack(bob, DeliveryState::Read);
        stranger.fanout_targets = targets;
        s.write_batch(&[], &[stranger]).await.unwrap();
    }
    let rows = page(alice, 0, 0).await;
    assert!(rows[0].acked && rows[0].envelope_json.is_none());
    assert!(!rows[1].acked);
    assert!(!page(bob, 0, 0).await[0].acked, "receipts are per member");
    let status = s
        .message_status(&mesh.id, &sender, &batch[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.seq, first);
    assert_eq!(status.recipients, vec![(alice, DeliveryState::Read)]);
    let facts = status.fanout.unwrap();
    assert_eq!(
        (facts.target.as_str(), facts.at_len, facts.expired),
        ("#ops", 5, false)
    );
    // The cursor only moves forward and hides what is at or below it.
    s.advance_fanout_cursor(&mesh.id, &alice, "#ops", first)
        .await
        .unwrap();
    s.advance_fanout_cursor(&mesh.id, &alice, "#ops", 0)
        .await
        .unwrap();
    assert_eq!(page(alice, 0, 0).await.len(), 1);
    assert_eq!(page(bob, 0, 0).await.len(), 2);
    // History: newest first, below `before_seq`.
    let h = s
        .fanout_history(&mesh.id, "#ops", u64::MAX, 10.into())
        .await
        .unwrap();
    assert_eq!(
        h.iter().map(|p| p.seq).collect::<Vec<_>>(),
        vec![second, first]
    );
    let h = s
        .fanout_history(&mesh.id, "#ops", second, 10.into())
        .await
        .unwrap();
    assert_eq!(h.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![first]);
    // Several targets in one call (bob has no cursor): merged by seq,
    // each row naming its
    // its target, and a limit cuts the merge, never a gap in it.
    let eng = NewMessage {
        target: "@eng".into(),
        at_len: Some(5),
        ..message(&mesh.id, &sender, &[alice])
    };
    let more = s.write_batch(&[eng.clone(), fan(6)], &[]).await.unwrap();
    let both = [("#ops".to_owned(), 0), ("@eng".to_owned(), 0)];
    let merged = s
        .fanout_pages(&mesh.id, &bob, &both, 0, 10.into())
        .await
        .unwrap();
    assert_eq!(
        merged
            .iter()
            .map(|r| (r.seq, r.target.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (first, "#ops"),
            (second, "#ops"),
            (more[0].seq, "@eng"),
            (more[1].seq, "#ops")
        ]
    );
    let cut = s
        .fanout_pages(&mesh.id, &bob, &both, 0, 3.into())
        .await
        .unwrap();
    assert_eq!(
        cut.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![first, second, more[0].seq]
    );
    let after = s
        .fanout_pages(&mesh.id, &bob, &both, second, 10.into())
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![more[0].seq, more[1].seq]
    );
}

/// A page stops after the message whose envelope reaches the byte limit
/// (always at least one): queues, fan-out pages and history alike, so what
/// a drain holds for a slow reader is bounded by weight, not only by count.
async fn pages_are_cut_by_weight(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (sender, rcpt) = (key(), key());
    let heavy = |target: Option<&str>| {
        let mut m = message(&mesh.id, &sender, &[rcpt]);
        m.envelope_json = serde_json::json!({
            "id": m.id.to_hex(),
            "ciphertext": "A".repeat(10_000),
        })
        .to_string();
        if let Some(t) = target {
            m.target = t.into();
            m.at_len = Some(1);
        }
        m
    };
    let direct: Vec<NewMessage> = (0..5).map(|_| heavy(None)).collect();
    let fan: Vec<NewMessage> = (0..5).map(|_| heavy(Some("*"))).collect();
    let d = s.write_batch(&direct, &[]).await.unwrap();
    let f = s.write_batch(&fan, &[]).await.unwrap();
    let weight = direct[0].envelope_json.len() as u64;
    let limit = |n: u64| PageLimit {
        rows: 100,
        bytes: n,
    };
    let seqs = |p: Vec<PendingMessage>| p.iter().map(|m| m.seq).collect::<Vec<_>>();
    // 2.5 envelopes' worth: the third is the one that reaches it.
    let page = s
        .pending(&mesh.id, &[rcpt], 0, Priority::Low, limit(weight * 5 / 2))
        .await
        .unwrap();
    assert_eq!(seqs(page), vec![d[0].seq, d[1].seq, d[2].seq]);
    // Less than one: still one.
    let page = s
        .pending(&mesh.id, &[rcpt], 0, Priority::Low, limit(1))
        .await
        .unwrap();
    assert_eq!(seqs(page), vec![d[0].seq]);
    let rows = s
        .fanout_pages(
            &mesh.id,
            &rcpt,
            &[("*".into(), 0)],
            0,
            limit(weight * 3 / 2),
        )
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![f[0].seq, f[1].seq]
    );
    // An acked row carries no envelope and weighs nothing.
    let mut a = ack(
        &mesh.id,
        &rcpt,
        &key(),
        &[f[0].seq],
        DeliveryState::Delivered,
        T0,
    );
    a.fanout_targets = vec![("*".into(), 0)];
    s.write_batch(&[], &[a]).await.unwrap();
    let rows = s
        .fanout_pages(
            &mesh.id,
            &rcpt,
            &[("*".into(), 0)],
            0,
            limit(weight * 3 / 2),
        )
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| (r.seq, r.acked)).collect::<Vec<_>>(),
        vec![(f[0].seq, true), (f[1].seq, false), (f[2].seq, false)]
    );
    // History, newest first.
    let page = s
        .fanout_history(&mesh.id, "*", u64::MAX, limit(weight * 3 / 2))
        .await
        .unwrap();
    assert_eq!(seqs(page), vec![f[4].seq, f[3].seq]);
}

/// Fan-out messages get 1, 2, 3, … per (mesh, target) in seq order, with no
/// number burned by a duplicate; direct messages none.
async fn fanout_messages_are_numbered_per_target(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (sender, alice) = (key(), key());
    let fan = |target: &str| NewMessage {
        target: target.into(),
        recipients: vec![alice],
        at_len: Some(1),
        ..message(&mesh.id, &sender, &[alice])
    };
    let first = [
        fan("#ops"),
        fan("#dev"),
        fan("#ops"),
        message(&mesh.id, &sender, &[alice]),
    ];
    let out = s.write_batch(&first, &[]).await.unwrap();
    let tseqs: Vec<Option<u64>> = out.iter().map(|o| o.tseq).collect();
    assert_eq!(tseqs, vec![Some(1), Some(1), Some(2), None]);
    // A resend is a duplicate and takes no number; the next one is 3.
    let again = [first[2].clone(), fan("#ops")];
    let out = s.write_batch(&again, &[]).await.unwrap();
    assert!(out[0].duplicate);
    assert_eq!((out[0].tseq, out[1].tseq), (None, Some(3)));
    let rows = s
        .fanout_pages(&mesh.id, &alice, &[("#ops".into(), 0)], 0, 10.into())
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.tseq).collect::<Vec<_>>(),
        vec![Some(1), Some(2), Some(3)]
    );
    let status = s
        .message_status(&mesh.id, &sender, &again[1].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.fanout.and_then(|f| f.tseq), Some(3));
}

fn receipt_row(
    mesh: &MeshId,
    m: &NewMessage,
    seq: u64,
    member: PublicKey,
    state: claudemesh_crypto::receipt::ReceiptState,
    doc: &str,
) -> super::ReceiptRow {
    super::ReceiptRow {
        mesh: *mesh,
        member,
        session: key(),
        seq,
        sender: m.sender_member,
        id: m.id,
        target: m.target.clone(),
        direct: m.at_len.is_none(),
        state,
        at_ms: T0 + 5,
        doc: doc.into(),
    }
}

/// A receipt is stored only when its seq, sender, id and target name one
/// stored message and (direct) its signer is a recipient; a direct
/// `delivered` / `shown` receipt moves the delivery row like an ack.
async fn receipts_are_stored_only_for_their_message_and_recipient(s: &dyn Store) {
    use claudemesh_crypto::receipt::ReceiptState::{Answered, Delivered, Shown};
    let mesh = TestMesh::create(s).await;
    let (sender, alice, bob) = (key(), key(), key());
    let dm = message(&mesh.id, &sender, &[alice]);
    let post = NewMessage {
        target: "#ops".into(),
        recipients: vec![alice, bob],
        at_len: Some(1),
        ..message(&mesh.id, &sender, &[alice])
    };
    let out = s
        .write_batch(&[dm.clone(), post.clone()], &[])
        .await
        .unwrap();
    let (dm_seq, post_seq) = (out[0].seq, out[1].seq);
    let mut wrong_id = receipt_row(&mesh.id, &dm, dm_seq, alice, Shown, "wrong id");
    wrong_id.id = MessageId::random();
    let mut wrong_seq = receipt_row(&mesh.id, &dm, post_seq, alice, Shown, "wrong seq");
    wrong_seq.direct = true;
    s.write_receipts(&[
        receipt_row(&mesh.id, &dm, dm_seq, alice, Delivered, "alice delivered"),
        receipt_row(&mesh.id, &dm, dm_seq, bob, Shown, "bob is no recipient"),
        wrong_id,
        wrong_seq,
        receipt_row(&mesh.id, &post, post_seq, bob, Answered, "bob answered"),
    ])
    .await
    .unwrap();
    let dm_status = s
        .message_status(&mesh.id, &sender, &dm.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        dm_status.receipts,
        vec![(alice, "alice delivered".to_string())]
    );
    assert_eq!(
        dm_status.recipients,
        vec![(alice, DeliveryState::Delivered)]
    );
    let post_status = s
        .message_status(&mesh.id, &sender, &post.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        post_status.receipts,
        vec![(bob, "bob answered".to_string())]
    );
    // The same receipt again changes nothing; `shown` moves the row on.
    s.write_receipts(&[
        receipt_row(&mesh.id, &dm, dm_seq, alice, Delivered, "alice delivered"),
        receipt_row(&mesh.id, &dm, dm_seq, alice, Shown, "alice shown"),
    ])
    .await
    .unwrap();
    let dm_status = s
        .message_status(&mesh.id, &sender, &dm.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dm_status.receipts.len(), 2);
    assert_eq!(dm_status.recipients, vec![(alice, DeliveryState::Read)]);
}

/// Per (member, target, state) the furthest watermark is kept, whatever the
/// order it arrives in; an equal one signed later replaces it.
async fn watermarks_keep_the_furthest(s: &dyn Store) {
    use claudemesh_crypto::receipt::ReceiptState::{Delivered, Shown};
    let mesh = TestMesh::create(s).await;
    let (alice, bob) = (key(), key());
    let row = |member, state, upto, at_ms, doc: &str| super::WatermarkRow {
        mesh: mesh.id,
        member,
        target: "#ops".into(),
        state,
        upto,
        at_ms,
        doc: doc.into(),
    };
    s.write_watermarks(&[
        row(alice, Delivered, 7, 1, "a7"),
        row(alice, Delivered, 5, 2, "a5"),
        row(alice, Shown, 3, 1, "a3 shown"),
        row(bob, Delivered, 2, 1, "b2"),
    ])
    .await
    .unwrap();
    s.write_watermarks(&[
        row(alice, Delivered, 7, 9, "a7 later"),
        row(bob, Delivered, 1, 9, "b1"),
    ])
    .await
    .unwrap();
    let mut mine = s.member_watermarks(&mesh.id, &alice).await.unwrap();
    mine.sort_by_key(|w| w.upto);
    assert_eq!(
        mine.iter().map(|w| w.doc.as_str()).collect::<Vec<_>>(),
        vec!["a3 shown", "a7 later"]
    );
    let reaching: Vec<String> = s
        .target_watermarks(&mesh.id, "#ops", 3)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.doc)
        .collect();
    assert_eq!(reaching.len(), 2, "{reaching:?}");
    assert!(!reaching.contains(&"b2".to_string()));
    assert!(
        s.target_watermarks(&mesh.id, "#dev", 0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A message sent with a deadline loses its ciphertext at the deadline;
/// a delivery not yet shown becomes `expired`, a shown one stays.
async fn deadlines_expire_what_was_not_shown(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (sender, alice, bob) = (key(), key(), key());
    let dm = NewMessage {
        deadline_ms: Some(T0 + 10),
        expires_at_ms: T0 + 10,
        ..message(&mesh.id, &sender, &[alice, bob])
    };
    let keep = message(&mesh.id, &sender, &[alice]);
    let out = s
        .write_batch(&[dm.clone(), keep.clone()], &[])
        .await
        .unwrap();
    s.write_batch(
        &[],
        &[ack(
            &mesh.id,
            &bob,
            &key(),
            &[out[0].seq],
            DeliveryState::Read,
            T0 + 5,
        )],
    )
    .await
    .unwrap();
    assert_eq!(s.expire_due(T0 + 9).await.unwrap(), 0);
    assert_eq!(s.expire_due(T0 + 10).await.unwrap(), 1);
    assert_eq!(s.expire_due(T0 + 11).await.unwrap(), 0, "once");
    let mut got = states(s, &dm).await;
    got.sort_by_key(|(k, _)| *k);
    let mut want = vec![(alice, DeliveryState::Expired), (bob, DeliveryState::Read)];
    want.sort_by_key(|(k, _)| *k);
    assert_eq!(got, want);
    assert_eq!(states(s, &keep).await, vec![(alice, DeliveryState::Queued)]);
    let status = s
        .message_status(&mesh.id, &sender, &dm.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.deadline_ms, Some(T0 + 10));
}

/// A message held for `at`, and the message it becomes at its time.
fn held(
    mesh: &MeshId,
    sender: &PublicKey,
    recipient: &PublicKey,
    at: u64,
) -> (HeldMessage, NewMessage) {
    let m = NewMessage {
        held: true,
        created_at_ms: at,
        ..message(mesh, sender, &[*recipient])
    };
    let h = HeldMessage {
        mesh: *mesh,
        sender_member: *sender,
        id: m.id,
        target: m.target.clone(),
        priority: m.priority,
        envelope_json: m.envelope_json.clone(),
        ttl_ms: Some(60_000),
        deliver_at_ms: at,
        created_at_ms: T0,
        error: None,
    };
    (h, m)
}

async fn held_messages_fire_once_and_a_cancel_or_a_fire_wins(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (sender, bob) = (key(), key());
    let at = T0 + 60_000;
    let (h1, m1) = held(&mesh.id, &sender, &bob, at);
    let first = HoldOutcome::Held {
        deliver_at_ms: at,
        duplicate: false,
    };
    assert_eq!(s.hold_message(&h1, 10).await.unwrap(), first);
    // A resend keeps the first hold's time.
    let later = HeldMessage {
        deliver_at_ms: at + 5,
        ..h1.clone()
    };
    assert_eq!(
        s.hold_message(&later, 10).await.unwrap(),
        HoldOutcome::Held {
            deliver_at_ms: at,
            duplicate: true
        }
    );
    assert_eq!(
        s.held_of(&mesh.id, &sender, 10).await.unwrap(),
        vec![h1.clone()]
    );
    assert!(s.held_of(&mesh.id, &bob, 10).await.unwrap().is_empty());
    // Not before its time; nothing stored meanwhile.
    assert!(s.due_held(at - 1, 10).await.unwrap().is_empty());
    assert!(
        s.message_status(&mesh.id, &sender, &m1.id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.due_held(at, 10).await.unwrap(), vec![h1.clone()]);

    // Two brokers fire it at once (two transactions racing for its row):
    // one stores it, the other stores nothing.
    let (x, y) = tokio::join!(
        s.write_batch(std::slice::from_ref(&m1), &[]),
        s.write_batch(std::slice::from_ref(&m1), &[])
    );
    let (x, y) = (x.unwrap()[0], y.unwrap()[0]);
    let out = if x.duplicate { [y] } else { [x] };
    assert!(!out[0].duplicate && out[0].seq > 0, "{x:?} {y:?}");
    assert_eq!(
        [x, y].iter().filter(|o| **o == dup(0)).count(),
        1,
        "the other took nothing: {x:?} {y:?}"
    );
    // A third, later, takes nothing either.
    assert_eq!(
        s.write_batch(std::slice::from_ref(&m1), &[]).await.unwrap(),
        vec![dup(0)]
    );
    assert_eq!(states(s, &m1).await, vec![(bob, DeliveryState::Queued)]);
    assert!(s.due_held(at, 10).await.unwrap().is_empty());
    assert!(s.held_of(&mesh.id, &sender, 10).await.unwrap().is_empty());
    // Its resend and its cancel, after it fired, name the stored seq.
    assert_eq!(
        s.hold_message(&h1, 10).await.unwrap(),
        HoldOutcome::AlreadySent {
            seq: out[0].seq,
            tseq: None
        }
    );
    assert_eq!(
        s.cancel_held(&mesh.id, &sender, &m1.id).await.unwrap(),
        CancelOutcome::AlreadySent { seq: out[0].seq }
    );

    // A cancel first: the fire stores nothing, in a batch with others.
    let (h2, m2) = held(&mesh.id, &sender, &bob, at);
    let (h3, m3) = held(&mesh.id, &sender, &bob, at);
    s.hold_message(&h2, 10).await.unwrap();
    s.hold_message(&h3, 10).await.unwrap();
    // Another member cannot cancel it.
    assert_eq!(
        s.cancel_held(&mesh.id, &bob, &m2.id).await.unwrap(),
        CancelOutcome::NotFound
    );
    assert_eq!(
        s.cancel_held(&mesh.id, &sender, &m2.id).await.unwrap(),
        CancelOutcome::Cancelled
    );
    let plain = message(&mesh.id, &sender, &[bob]);
    let out = s
        .write_batch(&[plain.clone(), m2.clone(), m3.clone()], &[])
        .await
        .unwrap();
    assert!(!out[0].duplicate && !out[2].duplicate, "{out:?}");
    assert_eq!(out[1], dup(0));
    assert!(out[0].seq < out[2].seq);
    assert!(
        s.message_status(&mesh.id, &sender, &m2.id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(states(s, &m3).await, vec![(bob, DeliveryState::Queued)]);
    assert_eq!(
        s.cancel_held(&mesh.id, &sender, &m2.id).await.unwrap(),
        CancelOutcome::NotFound
    );
    assert!(s.held_of(&mesh.id, &sender, 10).await.unwrap().is_empty());
    // A cancel lasts: the same id sent again (another device's resend, a
    // retry) is refused, not held again.
    assert_eq!(
        s.hold_message(&h2, 10).await.unwrap(),
        HoldOutcome::Cancelled
    );
    assert!(s.held_of(&mesh.id, &sender, 10).await.unwrap().is_empty());
    assert!(s.due_held(at, 10).await.unwrap().is_empty());
    // A held row is taken only once due by the firing's clock.
    let (h4, m4) = held(&mesh.id, &sender, &bob, at + 60_000);
    s.hold_message(&h4, 10).await.unwrap();
    let early = NewMessage {
        created_at_ms: at,
        ..m4.clone()
    };
    assert_eq!(
        s.write_batch(std::slice::from_ref(&early), &[])
            .await
            .unwrap(),
        vec![dup(0)]
    );
    assert_eq!(s.held_of(&mesh.id, &sender, 10).await.unwrap().len(), 1);
}

async fn held_messages_fail_are_capped_and_purged(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (sender, bob) = (key(), key());
    let (h1, m1) = held(&mesh.id, &sender, &bob, T0 + 1000);
    let (h2, _) = held(&mesh.id, &sender, &bob, T0 + 2000);
    let (h3, _) = held(&mesh.id, &sender, &bob, T0 + 3000);
    s.hold_message(&h1, 2).await.unwrap();
    s.hold_message(&h2, 2).await.unwrap();
    // The cap counts every held row of the member, and the refused one is
    // not kept.
    assert_eq!(s.hold_message(&h3, 2).await.unwrap(), HoldOutcome::TooMany);
    assert_eq!(s.held_of(&mesh.id, &sender, 10).await.unwrap().len(), 2);
    // Another member has a cap of its own.
    let (other, _) = held(&mesh.id, &bob, &sender, T0 + 1000);
    assert!(matches!(
        s.hold_message(&other, 2).await.unwrap(),
        HoldOutcome::Held { .. }
    ));

    // Failed at its time: kept for its sender with why, never due again,
    // never stored by a late fire.
    s.fail_held(
        &mesh.id,
        &sender,
        &m1.id,
        "its sender is no longer a member",
    )
    .await
    .unwrap();
    let listed = s.held_of(&mesh.id, &sender, 10).await.unwrap();
    assert_eq!(listed[0].id, m1.id);
    assert_eq!(
        listed[0].error.as_deref(),
        Some("its sender is no longer a member")
    );
    assert_eq!(listed[1].error, None);
    let due = s.due_held(T0 + 5000, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![other.id, h2.id]
    );
    assert_eq!(
        s.write_batch(std::slice::from_ref(&m1), &[]).await.unwrap(),
        vec![dup(0)]
    );
    // Sent again under the same id (resealed), a failed one is held anew.
    let again = HeldMessage {
        envelope_json: "{\"resealed\":true}".into(),
        deliver_at_ms: T0 + 1200,
        ..h1.clone()
    };
    assert_eq!(
        s.hold_message(&again, 5).await.unwrap(),
        HoldOutcome::Held {
            deliver_at_ms: T0 + 1200,
            duplicate: false
        }
    );
    let listed = s.held_of(&mesh.id, &sender, 10).await.unwrap();
    assert_eq!(listed[0], again);
    s.fail_held(&mesh.id, &sender, &m1.id, "failed again")
        .await
        .unwrap();
    // Retention purges failed rows past it, and only those.
    s.sweep_retention(T0 + 5000, T0 + 1500).await.unwrap();
    let listed = s.held_of(&mesh.id, &sender, 10).await.unwrap();
    assert_eq!(listed.iter().map(|h| h.id).collect::<Vec<_>>(), vec![h2.id]);
}

// ------------------------------------------------------- team memory

const MEMORY: CoordKind = CoordKind::Memory;
/// A generous quota, for the tests that are not about it.
const MANY: u64 = 10_000;

/// A coordination object of `author`'s with `json` as its stored form (the
/// store never parses it).
fn note(mesh: &MeshId, author: &PublicKey, id: CoordId, json: &str) -> NewCoordObject {
    NewCoordObject {
        mesh: *mesh,
        kind: MEMORY,
        id,
        author_member: *author,
        epoch: 0,
        object_json: json.to_owned(),
        now_ms: T0,
    }
}

/// A stored form exactly `len` bytes long.
fn json_of_len(tag: usize, len: usize) -> String {
    let head = format!("{{\"n\":{tag},\"pad\":\"");
    let pad = len - head.len() - 2;
    format!("{head}{}\"}}", "x".repeat(pad))
}

async fn all_changes(s: &dyn Store, mesh: &MeshId, after: u64) -> Vec<CoordRow> {
    let (rows, more) = s
        .coord_changes(mesh, MEMORY, after, u64::MAX / 2)
        .await
        .unwrap();
    assert!(!more);
    rows
}

fn stored(o: PutOutcome) -> u64 {
    match o {
        PutOutcome::Stored { cseq } => cseq,
        other => panic!("expected stored, got {other:?}"),
    }
}

async fn coord_put_is_idempotent_and_forget_leaves_a_tombstone(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let author = key();
    let (id1, id2) = (CoordId::random(), CoordId::random());
    let o1 = note(&mesh.id, &author, id1, "{\"first\":1}");
    let c1 = stored(s.coord_put(&o1, MANY).await.unwrap());
    assert_eq!(c1, 1, "a mesh's feed starts at 1");
    // A resend with the same bytes is a duplicate at the same position;
    // other bytes under the same id change nothing.
    assert_eq!(
        s.coord_put(&o1, MANY).await.unwrap(),
        PutOutcome::Duplicate { cseq: c1 }
    );
    let other = note(&mesh.id, &author, id1, "{\"first\":2}");
    assert_eq!(
        s.coord_put(&other, MANY).await.unwrap(),
        PutOutcome::Conflict
    );
    // Refusals took no position: the next one follows at once.
    let c2 = stored(
        s.coord_put(&note(&mesh.id, &author, id2, "{\"second\":1}"), MANY)
            .await
            .unwrap(),
    );
    assert_eq!(c2, c1 + 1);
    assert_eq!(
        s.coord_author(&mesh.id, MEMORY, &id1).await.unwrap(),
        Some((author, false))
    );
    assert_eq!(
        s.coord_author(&mesh.id, MEMORY, &CoordId::random())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        all_changes(s, &mesh.id, 0).await,
        vec![
            CoordRow {
                cseq: c1,
                id: id1,
                object_json: Some("{\"first\":1}".into()),
                act_json: None,
                expires_at_ms: None,
            },
            CoordRow {
                cseq: c2,
                id: id2,
                object_json: Some("{\"second\":1}".into()),
                act_json: None,
                expires_at_ms: None,
            },
        ]
    );

    // Forgotten: the object moves to the end of the feed, without contents.
    let c3 = match s
        .coord_forget(&mesh.id, MEMORY, &id1, T0 + 1)
        .await
        .unwrap()
    {
        ForgetOutcome::Forgotten { cseq } => cseq,
        other => panic!("expected forgotten, got {other:?}"),
    };
    assert!(c3 > c2);
    assert_eq!(
        s.coord_author(&mesh.id, MEMORY, &id1).await.unwrap(),
        Some((author, true))
    );
    let tombstone = CoordRow {
        cseq: c3,
        id: id1,
        object_json: None,
        act_json: None,
        expires_at_ms: None,
    };
    let feed = all_changes(s, &mesh.id, 0).await;
    assert_eq!(feed.len(), 2, "each object once, at its latest change");
    assert_eq!(feed[0].id, id2);
    assert_eq!(feed[1], tombstone);
    // A reader that had seen c2 learns of the forget.
    assert_eq!(all_changes(s, &mesh.id, c2).await, vec![tombstone.clone()]);
    assert_eq!(all_changes(s, &mesh.id, c3).await, vec![]);
    // A forgotten id is never revived, whatever the bytes.
    assert_eq!(s.coord_put(&o1, MANY).await.unwrap(), PutOutcome::Forgotten);
    assert_eq!(
        s.coord_put(&other, MANY).await.unwrap(),
        PutOutcome::Forgotten
    );
    assert_eq!(
        s.coord_forget(&mesh.id, MEMORY, &id1, T0 + 2)
            .await
            .unwrap(),
        ForgetOutcome::AlreadyForgotten { cseq: c3 }
    );
    assert_eq!(
        s.coord_forget(&mesh.id, MEMORY, &CoordId::random(), T0 + 2)
            .await
            .unwrap(),
        ForgetOutcome::NotFound
    );
    assert_eq!(all_changes(s, &mesh.id, 0).await[1], tombstone);
    // None of the refusals took a position either.
    let c4 = stored(
        s.coord_put(&note(&mesh.id, &author, CoordId::random(), "{}"), MANY)
            .await
            .unwrap(),
    );
    assert_eq!(c4, c3 + 1);
}

async fn coord_changes_are_paged_by_bytes(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let author = key();
    let mut ids = Vec::new();
    for i in 0..10 {
        let id = CoordId::random();
        let o = note(&mesh.id, &author, id, &json_of_len(i, 1000));
        assert_eq!(o.object_json.len(), 1000);
        s.coord_put(&o, MANY).await.unwrap();
        ids.push(id);
    }
    // Rows are added while the bytes before them are under the budget.
    let (page, more) = s.coord_changes(&mesh.id, MEMORY, 0, 2500).await.unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), ids[..3]);
    assert!(more);
    let (page, more) = s.coord_changes(&mesh.id, MEMORY, 0, 3000).await.unwrap();
    assert_eq!(page.len(), 3, "the third fills the budget exactly");
    assert!(more);
    // One byte: one row, always.
    let (page, more) = s.coord_changes(&mesh.id, MEMORY, 0, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert!(more);
    // Paging from each head walks the whole feed once, in order.
    let (mut head, mut seen, mut pages) = (0, Vec::new(), 0);
    loop {
        let (page, more) = s.coord_changes(&mesh.id, MEMORY, head, 2500).await.unwrap();
        pages += 1;
        for r in &page {
            assert!(r.cseq > head);
            head = r.cseq;
            seen.push(r.id);
        }
        if !more {
            break;
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(pages, 4);
    let (page, more) = s.coord_changes(&mesh.id, MEMORY, head, 2500).await.unwrap();
    assert!(page.is_empty() && !more);

    // Tombstones are cut by their own weight, not passed in bulk.
    for id in &ids {
        s.coord_forget(&mesh.id, MEMORY, id, T0).await.unwrap();
    }
    let w = super::records::COORD_TOMBSTONE_WEIGHT;
    let (page, more) = s
        .coord_changes(&mesh.id, MEMORY, head, 3 * w)
        .await
        .unwrap();
    assert_eq!(page.len(), 3);
    assert!(page.iter().all(|r| r.object_json.is_none()));
    assert!(more);
    let (page, more) = s
        .coord_changes(&mesh.id, MEMORY, head, 100 * w)
        .await
        .unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    assert!(!more);
}

async fn coord_feed_positions_are_commit_ordered_under_concurrency(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let notes: Vec<NewCoordObject> = (0..20)
        .map(|i| {
            note(
                &mesh.id,
                &key(),
                CoordId::random(),
                &format!("{{\"n\":{i}}}"),
            )
        })
        .collect();
    let puts = futures_util::future::join_all(notes.iter().map(|o| s.coord_put(o, MANY)));
    // A reader polling the feed all along: each page starts after the last
    // position it saw, so a change committed below it would be lost to it.
    let reader = async {
        let (mut head, mut seen) = (0u64, Vec::new());
        for _ in 0..10_000 {
            let (page, _) = s
                .coord_changes(&mesh.id, MEMORY, head, u64::MAX / 2)
                .await
                .unwrap();
            for r in page {
                assert!(r.cseq > head, "{} after {head}", r.cseq);
                head = r.cseq;
                seen.push(r.cseq);
            }
            if seen.len() == 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        seen
    };
    let (outcomes, seen) = tokio::join!(puts, reader);
    let mut cseqs: Vec<u64> = outcomes.into_iter().map(|o| stored(o.unwrap())).collect();
    cseqs.sort_unstable();
    assert_eq!(cseqs, (1..=20).collect::<Vec<_>>(), "no repeat, no hole");
    assert_eq!(
        seen,
        (1..=20).collect::<Vec<_>>(),
        "the reader saw every one, in order"
    );
    let feed = all_changes(s, &mesh.id, 0).await;
    let mut ids: Vec<CoordId> = feed.iter().map(|r| r.id).collect();
    ids.sort_by_key(|i| i.0);
    let mut want: Vec<CoordId> = notes.iter().map(|o| o.id).collect();
    want.sort_by_key(|i| i.0);
    assert_eq!(ids, want);
}

async fn coord_quota_counts_the_authors_live_objects(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (alice, bob) = (key(), key());
    let a1 = note(&mesh.id, &alice, CoordId::random(), "{\"a\":1}");
    let a2 = note(&mesh.id, &alice, CoordId::random(), "{\"a\":2}");
    let a3 = note(&mesh.id, &alice, CoordId::random(), "{\"a\":3}");
    stored(s.coord_put(&a1, 2).await.unwrap());
    let c2 = stored(s.coord_put(&a2, 2).await.unwrap());
    assert_eq!(s.coord_put(&a3, 2).await.unwrap(), PutOutcome::TooMany);
    // A resend at the quota is still the duplicate it is.
    assert_eq!(
        s.coord_put(&a2, 2).await.unwrap(),
        PutOutcome::Duplicate { cseq: c2 }
    );
    // The refused one left nothing, and bob has a quota of his own.
    assert_eq!(
        s.coord_author(&mesh.id, MEMORY, &a3.id).await.unwrap(),
        None
    );
    assert_eq!(all_changes(s, &mesh.id, 0).await.len(), 2);
    stored(
        s.coord_put(&note(&mesh.id, &bob, CoordId::random(), "{\"b\":1}"), 2)
            .await
            .unwrap(),
    );
    // Forgotten objects do not count.
    s.coord_forget(&mesh.id, MEMORY, &a1.id, T0).await.unwrap();
    stored(s.coord_put(&a3, 2).await.unwrap());
    let a4 = note(&mesh.id, &alice, CoordId::random(), "{\"a\":4}");
    assert_eq!(s.coord_put(&a4, 2).await.unwrap(), PutOutcome::TooMany);
}

async fn coord_ring_keeps_the_first_link_per_signer(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let mut signers = [key(), key()];
    signers.sort_by_key(|k| *k.as_bytes());
    let [first, second] = signers;
    // Stored out of order; read by epoch, then signer.
    assert!(
        !s.coord_ring_put(&mesh.id, "mesh", 2, &second, "e2-second")
            .await
            .unwrap()
    );
    assert!(
        !s.coord_ring_put(&mesh.id, "mesh", 1, &second, "e1-second")
            .await
            .unwrap()
    );
    assert!(
        !s.coord_ring_put(&mesh.id, "mesh", 1, &first, "e1-first")
            .await
            .unwrap()
    );
    // A second link of the same signer and epoch: the first stands.
    assert!(
        s.coord_ring_put(&mesh.id, "mesh", 1, &first, "e1-first-again")
            .await
            .unwrap()
    );
    assert!(
        s.coord_ring_put(&mesh.id, "mesh", 1, &first, "e1-first")
            .await
            .unwrap()
    );
    let links = |after| async move {
        s.coord_ring(&mesh.id, after)
            .await
            .unwrap()
            .into_iter()
            .map(|(e, l)| format!("{e}:{l}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        links(0).await,
        vec!["1:e1-first", "1:e1-second", "2:e2-second"]
    );
    assert_eq!(links(1).await, vec!["2:e2-second"]);
    assert!(links(2).await.is_empty());
}

async fn coord_rows_of_another_mesh_never_leak(s: &dyn Store) {
    let (a, b) = (TestMesh::create(s).await, TestMesh::create(s).await);
    let author = key();
    let id = CoordId::random();
    // The same id in two meshes: two objects, two feeds each from 1.
    assert_eq!(
        s.coord_put(&note(&a.id, &author, id, "{\"mesh\":\"a\"}"), MANY)
            .await
            .unwrap(),
        PutOutcome::Stored { cseq: 1 }
    );
    assert_eq!(
        s.coord_put(&note(&b.id, &author, id, "{\"mesh\":\"b\"}"), MANY)
            .await
            .unwrap(),
        PutOutcome::Stored { cseq: 1 }
    );
    let only_b = CoordId::random();
    stored(
        s.coord_put(&note(&b.id, &author, only_b, "{\"only\":\"b\"}"), MANY)
            .await
            .unwrap(),
    );
    let feed_a = all_changes(s, &a.id, 0).await;
    assert_eq!(feed_a.len(), 1);
    assert_eq!(feed_a[0].object_json.as_deref(), Some("{\"mesh\":\"a\"}"));
    assert_eq!(all_changes(s, &b.id, 0).await.len(), 2);
    assert_eq!(s.coord_author(&a.id, MEMORY, &only_b).await.unwrap(), None);
    assert_eq!(
        s.coord_forget(&a.id, MEMORY, &only_b, T0).await.unwrap(),
        ForgetOutcome::NotFound
    );
    // Forgetting in one mesh leaves the other's object.
    s.coord_forget(&a.id, MEMORY, &id, T0).await.unwrap();
    assert_eq!(
        s.coord_author(&b.id, MEMORY, &id).await.unwrap(),
        Some((author, false))
    );
    // The quota is per mesh too.
    assert_eq!(
        s.coord_put(&note(&a.id, &author, CoordId::random(), "{}"), 1)
            .await
            .unwrap(),
        PutOutcome::Stored { cseq: 3 }
    );
    assert!(
        !s.coord_ring_put(&b.id, "mesh", 1, &author, "b-link")
            .await
            .unwrap()
    );
    assert!(s.coord_ring(&a.id, 0).await.unwrap().is_empty());
    assert_eq!(
        s.coord_ring(&b.id, 0).await.unwrap(),
        vec![(1, "b-link".to_owned())]
    );
}

/// A task of `creator`'s, stored as a coordination object.
async fn new_task(s: &dyn Store, mesh: &MeshId, creator: &PublicKey) -> CoordId {
    let id = CoordId::random();
    let mut o = note(mesh, creator, id, "{\"task\":1}");
    o.kind = CoordKind::Task;
    stored(s.coord_put(&o, MANY).await.unwrap());
    id
}

/// An act of `actor`'s on task `id`, making `version`.
fn task_act(
    mesh: &MeshId,
    id: CoordId,
    kind: CoordKind,
    version: u64,
    actor: &PublicKey,
) -> TaskActRequest {
    TaskActRequest {
        mesh: *mesh,
        id,
        kind,
        version,
        actor: *actor,
        force: false,
        actor_is_admin: false,
        refused_by: Vec::new(),
        departed: Vec::new(),
        act_json: format!("{{\"act\":\"{kind}\",\"v\":{version}}}"),
        now_ms: T0 + version,
    }
}

async fn tasks_move_by_acts_and_the_feed_carries_the_last_act(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (alice, bob) = (key(), key());
    let id = new_task(s, &mesh.id, &alice).await;
    // Bob claims version 1 (his act makes 2).
    let claim = task_act(&mesh.id, id, CoordKind::TaskClaim, 2, &bob);
    let claimed = match s.task_act(&claim).await.unwrap() {
        TaskActOutcome::Applied(r) => r,
        o => panic!("expected applied, got {o:?}"),
    };
    assert_eq!(
        (
            claimed.phase,
            claimed.holder,
            claimed.version,
            claimed.creator
        ),
        (TaskPhase::Claimed, Some(bob), 2, alice)
    );
    // The feed moved the task to its new position, with the act beside it.
    let (feed, _) = s
        .coord_changes(&mesh.id, CoordKind::Task, 0, u64::MAX / 2)
        .await
        .unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].cseq, claimed.cseq);
    assert_eq!(feed[0].object_json.as_deref(), Some("{\"task\":1}"));
    assert_eq!(feed[0].act_json.as_deref(), Some(claim.act_json.as_str()));
    // A second claim of the same version loses, and names the holder.
    let late = task_act(&mesh.id, id, CoordKind::TaskClaim, 2, &alice);
    match s.task_act(&late).await.unwrap() {
        TaskActOutcome::Lost(r) => assert_eq!((r.holder, r.version), (Some(bob), 2)),
        o => panic!("expected lost, got {o:?}"),
    }
    // Alice did not claim it: she may not release it unforced…
    let release = task_act(&mesh.id, id, CoordKind::TaskRelease, 3, &alice);
    assert!(matches!(
        s.task_act(&release).await.unwrap(),
        TaskActOutcome::Held(_)
    ));
    // …but as its creator she may force it back.
    let mut forced = release.clone();
    forced.force = true;
    match s.task_act(&forced).await.unwrap() {
        TaskActOutcome::Applied(r) => assert_eq!((r.phase, r.holder), (TaskPhase::Open, None)),
        o => panic!("expected applied, got {o:?}"),
    }
    // Bob completes the open task; done is final.
    let done = task_act(&mesh.id, id, CoordKind::TaskDone, 4, &bob);
    match s.task_act(&done).await.unwrap() {
        TaskActOutcome::Applied(r) => {
            assert_eq!(
                (r.phase, r.holder, r.version),
                (TaskPhase::Done, Some(bob), 4)
            );
        }
        o => panic!("expected applied, got {o:?}"),
    }
    let again = task_act(&mesh.id, id, CoordKind::TaskClaim, 5, &alice);
    assert!(matches!(
        s.task_act(&again).await.unwrap(),
        TaskActOutcome::Lost(_)
    ));
    // Unknown and deleted tasks are not found; a memory note is no task.
    let unknown = task_act(&mesh.id, CoordId::random(), CoordKind::TaskClaim, 2, &bob);
    assert_eq!(
        s.task_act(&unknown).await.unwrap(),
        TaskActOutcome::NotFound
    );
    let note_id = CoordId::random();
    stored(
        s.coord_put(&note(&mesh.id, &alice, note_id, "{}"), MANY)
            .await
            .unwrap(),
    );
    let on_note = task_act(&mesh.id, note_id, CoordKind::TaskClaim, 2, &bob);
    assert_eq!(
        s.task_act(&on_note).await.unwrap(),
        TaskActOutcome::NotFound
    );
    s.coord_forget(&mesh.id, CoordKind::Task, &id, T0 + 10)
        .await
        .unwrap();
    let after_delete = task_act(&mesh.id, id, CoordKind::TaskDone, 5, &bob);
    assert_eq!(
        s.task_act(&after_delete).await.unwrap(),
        TaskActOutcome::NotFound
    );
    // The tombstone carries no act.
    let (feed, _) = s
        .coord_changes(&mesh.id, CoordKind::Task, 0, u64::MAX / 2)
        .await
        .unwrap();
    assert_eq!(
        (feed[0].object_json.as_deref(), feed[0].act_json.as_deref()),
        (None, None)
    );
}

async fn concurrent_claims_of_one_task_have_exactly_one_winner(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let id = new_task(s, &mesh.id, &key()).await;
    let claimers: Vec<TaskActRequest> = (0..12)
        .map(|_| task_act(&mesh.id, id, CoordKind::TaskClaim, 2, &key()))
        .collect();
    let outcomes = futures_util::future::join_all(claimers.iter().map(|c| s.task_act(c))).await;
    let winners: Vec<PublicKey> = outcomes
        .iter()
        .filter_map(|o| match o.as_ref().unwrap() {
            TaskActOutcome::Applied(r) => r.holder,
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins: {outcomes:?}");
    for o in &outcomes {
        match o.as_ref().unwrap() {
            TaskActOutcome::Applied(_) => {}
            TaskActOutcome::Lost(r) => {
                assert_eq!((r.holder, r.version), (Some(winners[0]), 2));
            }
            other => panic!("a losing claim is lost, got {other:?}"),
        }
    }
}

/// A state entry `id` of `writer`'s, stored as `json`.
fn entry(mesh: &MeshId, writer: &PublicKey, id: CoordId, json: &str) -> NewCoordObject {
    let mut o = note(mesh, writer, id, json);
    o.kind = CoordKind::State;
    o
}

fn state_stored(o: StateOutcome) -> u64 {
    match o {
        StateOutcome::Stored { cseq } => cseq,
        other => panic!("expected stored, got {other:?}"),
    }
}

async fn state_writes_are_compare_and_set(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (alice, bob) = (key(), key());
    let id = CoordId::random();
    // Absent is version 0: only a write of version 1 creates it.
    assert_eq!(
        s.state_put(&entry(&mesh.id, &alice, id, "{\"v\":2}"), 2, MANY)
            .await
            .unwrap(),
        StateOutcome::Moved {
            version: 0,
            object_json: None,
            cseq: 0
        }
    );
    let v1 = entry(&mesh.id, &alice, id, "{\"v\":1}");
    let c1 = state_stored(s.state_put(&v1, 1, MANY).await.unwrap());
    // The same object resent is stored already, at the same position.
    assert_eq!(
        s.state_put(&v1, 1, MANY).await.unwrap(),
        StateOutcome::Stored { cseq: c1 }
    );
    // A stale writer of version 1 sees what is there.
    assert_eq!(
        s.state_put(&entry(&mesh.id, &bob, id, "{\"v\":\"bob1\"}"), 1, MANY)
            .await
            .unwrap(),
        StateOutcome::Moved {
            version: 1,
            object_json: Some("{\"v\":1}".into()),
            cseq: c1
        }
    );
    // Bob writes version 2 over it: the row moves in the feed, his now.
    let c2 = state_stored(
        s.state_put(&entry(&mesh.id, &bob, id, "{\"v\":2}"), 2, MANY)
            .await
            .unwrap(),
    );
    assert!(c2 > c1);
    let (feed, _) = s
        .coord_changes(&mesh.id, CoordKind::State, 0, u64::MAX / 2)
        .await
        .unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(
        (feed[0].cseq, feed[0].object_json.as_deref()),
        (c2, Some("{\"v\":2}"))
    );
    assert_eq!(
        s.coord_author(&mesh.id, CoordKind::State, &id)
            .await
            .unwrap(),
        Some((bob, false))
    );
    // A memory note of the same id is another object.
    assert!(all_changes(s, &mesh.id, 0).await.is_empty());
    // A new entry counts against its writer's quota; a rewrite does not.
    let other = entry(&mesh.id, &bob, CoordId::random(), "{}");
    assert_eq!(
        s.state_put(&other, 1, 1).await.unwrap(),
        StateOutcome::TooMany
    );
    state_stored(
        s.state_put(&entry(&mesh.id, &bob, id, "{\"v\":3}"), 3, 1)
            .await
            .unwrap(),
    );
}

async fn of_concurrent_state_writers_of_one_version_exactly_one_wins(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let id = CoordId::random();
    state_stored(
        s.state_put(&entry(&mesh.id, &key(), id, "{\"v\":1}"), 1, MANY)
            .await
            .unwrap(),
    );
    let writers: Vec<NewCoordObject> = (0..12)
        .map(|i| entry(&mesh.id, &key(), id, &format!("{{\"w\":{i}}}")))
        .collect();
    let outcomes =
        futures_util::future::join_all(writers.iter().map(|w| s.state_put(w, 2, MANY))).await;
    let won: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o.as_ref().unwrap(), StateOutcome::Stored { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(won.len(), 1, "exactly one writer wins: {outcomes:?}");
    let winner = writers[won[0]].object_json.clone();
    for o in &outcomes {
        if let StateOutcome::Moved {
            version,
            object_json,
            ..
        } = o.as_ref().unwrap()
        {
            assert_eq!(
                (*version, object_json.as_deref()),
                (2, Some(winner.as_str()))
            );
        }
    }
}

/// A lease take of `session`'s (member `holder`) at `now`, for `ttl` ms,
/// with these tags and probe.
#[allow(clippy::too_many_arguments)]
fn take(
    mesh: &MeshId,
    holder: &PublicKey,
    session: &PublicKey,
    exclusive: bool,
    tags: &[CoordId],
    probe: &[CoordId],
    now: u64,
    ttl: u64,
) -> LeaseTakeRequest {
    let id = CoordId::random();
    let mut new = note(
        mesh,
        holder,
        id,
        &format!("{{\"lease\":\"{}\"}}", id.to_hex()),
    );
    new.kind = CoordKind::Lease;
    new.now_ms = now;
    LeaseTakeRequest {
        new,
        session: *session,
        exclusive,
        expires_at_ms: now + ttl,
        tags: tags.to_vec(),
        probe: probe.to_vec(),
        max_per_member: 256,
        max_conflicts: 16,
        max_conflict_bytes: 64 * 1024,
        departed: Vec::new(),
    }
}

async fn leases_conflict_by_tags_unless_shared_or_own_and_expire(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let (alice, bob) = (key(), key());
    let (a1, a2, b1) = (key(), key(), key());
    let [t1, t2, t3] = [CoordId::random(), CoordId::random(), CoordId::random()];
    // Alice's session a1 leases {t1, t2} exclusively, for 60 s.
    let first = take(&mesh.id, &alice, &a1, true, &[t1, t2], &[t1], T0, 60_000);
    let granted = s.lease_take(&first).await.unwrap();
    assert!(
        matches!(granted, LeaseOutcome::Granted { .. }),
        "{granted:?}"
    );
    // Bob's probe meeting t2 conflicts, and names Alice's lease.
    let bobs = take(&mesh.id, &bob, &b1, false, &[t3], &[t3, t2], T0 + 1, 60_000);
    match s.lease_take(&bobs).await.unwrap() {
        LeaseOutcome::Conflict(rows) => {
            assert_eq!(rows.len(), 1);
            assert_eq!(
                (rows[0].id, rows[0].holder, rows[0].session),
                (first.new.id, alice, a1)
            );
            assert!(rows[0].exclusive);
            assert_eq!(rows[0].expires_at_ms, T0 + 60_000);
            assert_eq!(rows[0].object_json, first.new.object_json);
        }
        o => panic!("expected a conflict, got {o:?}"),
    }
    // A probe that meets nothing is granted; so is Alice's own session's.
    let apart = take(&mesh.id, &bob, &b1, true, &[t3], &[t3], T0 + 2, 60_000);
    assert!(matches!(
        s.lease_take(&apart).await.unwrap(),
        LeaseOutcome::Granted { .. }
    ));
    let own = take(
        &mesh.id,
        &alice,
        &a1,
        true,
        &[t1],
        &[t1, t2],
        T0 + 3,
        60_000,
    );
    assert!(matches!(
        s.lease_take(&own).await.unwrap(),
        LeaseOutcome::Granted { .. }
    ));
    // Another session of Alice's member does conflict.
    let other_session = take(&mesh.id, &alice, &a2, false, &[t1], &[t1], T0 + 4, 60_000);
    assert!(matches!(
        s.lease_take(&other_session).await.unwrap(),
        LeaseOutcome::Conflict(_)
    ));
    // The same id again is refused.
    assert_eq!(s.lease_take(&apart).await.unwrap(), LeaseOutcome::Exists);
    // Renewing: only the holder's member, only live leases.
    let renewed = s
        .lease_renew(
            &mesh.id,
            &bob,
            &[first.new.id, apart.new.id],
            T0 + 5,
            T0 + 120_000,
        )
        .await
        .unwrap();
    assert_eq!(renewed, vec![apart.new.id]);
    // Past its end, Alice's first lease stands in no one's way, and the
    // next take releases it (a tombstone in the feed).
    let own_end = T0 + 3 + 60_000;
    let later = take(
        &mesh.id,
        &bob,
        &b1,
        true,
        &[t2],
        &[t1, t2],
        own_end + 1,
        60_000,
    );
    assert!(matches!(
        s.lease_take(&later).await.unwrap(),
        LeaseOutcome::Granted { .. }
    ));
    let (feed, _) = s
        .coord_changes(&mesh.id, CoordKind::Lease, 0, u64::MAX / 2)
        .await
        .unwrap();
    let by_id = |id: CoordId| feed.iter().find(|r| r.id == id).cloned();
    assert_eq!(
        by_id(first.new.id).and_then(|r| r.object_json),
        None,
        "expired: released"
    );
    let kept = by_id(apart.new.id).unwrap();
    assert_eq!(kept.expires_at_ms, Some(T0 + 120_000), "renewed");
    assert!(kept.object_json.is_some());
    // Shared leases never conflict with each other.
    let s1 = take(
        &mesh.id,
        &alice,
        &a2,
        false,
        &[t3],
        &[t3],
        own_end + 2,
        60_000,
    );
    let s2 = take(
        &mesh.id,
        &bob,
        &key(),
        false,
        &[t3],
        &[t3],
        own_end + 3,
        60_000,
    );
    assert!(
        matches!(s.lease_take(&s1).await.unwrap(), LeaseOutcome::Conflict(_)),
        "t3 is held exclusively by bob"
    );
    let free = CoordId::random();
    let s3 = take(
        &mesh.id,
        &alice,
        &a2,
        false,
        &[free],
        &[free],
        own_end + 4,
        60_000,
    );
    let s4 = take(
        &mesh.id,
        &bob,
        &key(),
        false,
        &[free],
        &[free],
        own_end + 5,
        60_000,
    );
    assert!(matches!(
        s.lease_take(&s3).await.unwrap(),
        LeaseOutcome::Granted { .. }
    ));
    assert!(matches!(
        s.lease_take(&s4).await.unwrap(),
        LeaseOutcome::Granted { .. }
    ));
    drop(s2);
    // A departed member's lease stands in no one's way, and the take that
    // meets it releases it.
    let gone = key();
    let tg = CoordId::random();
    let theirs = take(
        &mesh.id,
        &gone,
        &key(),
        true,
        &[tg],
        &[tg],
        own_end + 7,
        60_000,
    );
    assert!(matches!(
        s.lease_take(&theirs).await.unwrap(),
        LeaseOutcome::Granted { .. }
    ));
    let mut after_removal = take(&mesh.id, &bob, &b1, true, &[tg], &[tg], own_end + 8, 60_000);
    assert!(matches!(
        s.lease_take(&after_removal.clone()).await.unwrap(),
        LeaseOutcome::Conflict(_)
    ));
    after_removal.new.id = CoordId::random();
    after_removal.departed = vec![gone];
    assert!(matches!(
        s.lease_take(&after_removal).await.unwrap(),
        LeaseOutcome::Granted { .. }
    ));
    let (feed, _) = s
        .coord_changes(&mesh.id, CoordKind::Lease, 0, u64::MAX / 2)
        .await
        .unwrap();
    let released = feed.iter().find(|r| r.id == theirs.new.id).unwrap();
    assert_eq!(released.object_json, None, "released");
    // The quota counts live leases.
    let mut full = take(
        &mesh.id,
        &alice,
        &a2,
        false,
        &[CoordId::random()],
        &[CoordId::random()],
        own_end + 6,
        60_000,
    );
    full.max_per_member = 1;
    assert_eq!(s.lease_take(&full).await.unwrap(), LeaseOutcome::TooMany);
}

async fn of_concurrent_overlapping_exclusive_takes_exactly_one_is_granted(s: &dyn Store) {
    let mesh = TestMesh::create(s).await;
    let t = CoordId::random();
    let takes: Vec<LeaseTakeRequest> = (0..12)
        .map(|_| take(&mesh.id, &key(), &key(), true, &[t], &[t], T0, 60_000))
        .collect();
    let outcomes = futures_util::future::join_all(takes.iter().map(|l| s.lease_take(l))).await;
    let granted = outcomes
        .iter()
        .filter(|o| matches!(o.as_ref().unwrap(), LeaseOutcome::Granted { .. }))
        .count();
    assert_eq!(granted, 1, "exactly one is granted: {outcomes:?}");
    for o in &outcomes {
        assert!(
            matches!(
                o.as_ref().unwrap(),
                LeaseOutcome::Granted { .. } | LeaseOutcome::Conflict(_)
            ),
            "{o:?}"
        );
    }
}

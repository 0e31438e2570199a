//! Postgres-only behaviour beyond the conformance suite: the migration
//! lock, replicas writing overlapping batches at once, and the write rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use claudemesh_crypto::envelope::{MessageId, Priority};
use claudemesh_crypto::log::LogBuilder;
use claudemesh_crypto::{MeshId, PublicKey, SigningKey};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::PostgresStore;
use super::migrate::{MIGRATION_LOCK_KEY, migrator};
use crate::store::{AckOp, NewMessage, Store, StoreError};
use crate::testing::fresh_postgres_url;

#[tokio::test]
async fn migrations_wait_for_the_lock_and_time_out() {
    let db = fresh_postgres_url().await.expect("Postgres for tests");
    // Another "broker" holds the migration lock.
    let mut holder = PgConnection::connect(db.url()).await.unwrap();
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert!(got);
    let started = Instant::now();
    let err = PostgresStore::open(db.url(), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LockTimeout(t) if t == Duration::from_millis(500)),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nothing was migrated meanwhile.
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_one(&mut holder)
    .await
    .unwrap();
    assert_eq!(tables, 0);

    // Once released, a waiting broker gets it.
    let url = db.url().to_owned();
    let waiter =
        tokio::spawn(async move { PostgresStore::open(&url, Duration::from_secs(30)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    let _: bool = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .fetch_one(&mut holder)
        .await
        .unwrap();
    let store = waiter.await.unwrap().unwrap();
    store.ready().await.unwrap();
    // The lock was released after migrating.
    let again: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert!(again);
    holder.close().await.unwrap();
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_starting_together_migrate_once() {
    let db = fresh_postgres_url().await.expect("Postgres for tests");
    let mut starts = Vec::new();
    for _ in 0..6 {
        let url = db.url().to_owned();
        starts.push(tokio::spawn(async move {
            PostgresStore::open(&url, Duration::from_secs(30)).await
        }));
    }
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().unwrap());
    }
    for s in &stores {
        s.ready().await.unwrap();
    }
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    let known = i64::try_from(migrator().iter().count()).unwrap();
    assert_eq!(applied, known, "each migration applied exactly once");
    // Reopening an up-to-date database is fine too.
    let again = PostgresStore::open(db.url(), Duration::from_secs(5))
        .await
        .unwrap();
    again.ready().await.unwrap();
    again.pool().close().await;
    for s in stores {
        s.pool().close().await;
    }
    db.drop_database().await;
}

#[tokio::test]
async fn a_bad_url_is_an_error_not_a_panic() {
    let err = PostgresStore::open("postgres://nobody@127.0.0.1:1/x", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Db(_)), "{err}");
    let Err(err) = crate::store::open("mysql://x", Duration::from_secs(1)).await else {
        panic!("a mysql URL opened");
    };
    assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_with_shared_duplicates_agree() {
    // Two writers (as two replicas) store overlapping batches at once:
    // every message ends up stored once, and both agree on its seq.
    let db = fresh_postgres_url().await.expect("Postgres for tests");
    let store = Arc::new(
        PostgresStore::open(db.url(), Duration::from_secs(30))
            .await
            .unwrap(),
    );
    let owner = SigningKey::generate();
    let builder = LogBuilder::new(&owner, 1);
    let mesh = MeshId(builder.entries()[0].hash());
    store
        .create_mesh(&builder.entries()[0], mesh, 1)
        .await
        .unwrap();
    let sender = SigningKey::generate().public();
    let rcpt = SigningKey::generate().public();
    let batch: Vec<NewMessage> = (0..500)
        .map(|i| NewMessage {
            mesh,
            sender_member: sender,
            id: MessageId::random(),
            target: format!("member:{}", rcpt.to_hex()),
            priority: Priority::Next,
            envelope_json: format!("{{\"n\":{i}}}"),
            recipients: vec![rcpt],
            at_len: None,
            created_at_ms: 1,
            expires_at_ms: u64::MAX,
            deadline_ms: None,
            held: false,
        })
        .collect();
    let mut reversed = batch.clone();
    reversed.reverse();
    let (a, b) = (store.clone(), store.clone());
    let (batch_a, batch_b) = (batch.clone(), reversed);
    let ta = tokio::spawn(async move { a.write_batch(&batch_a, &[]).await });
    let tb = tokio::spawn(async move { b.write_batch(&batch_b, &[]).await });
    let out_a = ta.await.unwrap().unwrap();
    let mut out_b = tb.await.unwrap().unwrap();
    out_b.reverse();
    for (x, y) in out_a.iter().zip(&out_b) {
        assert_eq!(x.seq, y.seq);
        assert!(x.duplicate != y.duplicate);
    }
    let pending = store
        .pending(&mesh, &[rcpt], 0, Priority::Low, 1000.into())
        .await
        .unwrap();
    assert_eq!(pending.len(), 500);
    store.pool().close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn pending_takes_any_number_of_recipients_once_each() {
    // Beyond the shared conformance tests: SQLite looks at the first two
    // recipient keys only and lists a message addressed to two of them
    // twice; here every key counts and each message comes once.
    let db = fresh_postgres_url().await.expect("Postgres for tests");
    let store = PostgresStore::open(db.url(), Duration::from_secs(30))
        .await
        .unwrap();
    let builder = LogBuilder::new(&SigningKey::generate(), 1);
    let mesh = MeshId(builder.entries()[0].hash());
    store
        .create_mesh(&builder.entries()[0], mesh, 1)
        .await
        .unwrap();
    let keys: Vec<PublicKey> = (0..3).map(|_| SigningKey::generate().public()).collect();
    let message = |recipients: Vec<PublicKey>| NewMessage {
        mesh,
        sender_member: keys[0],
        id: MessageId::random(),
        target: "all".into(),
        priority: Priority::Low,
        envelope_json: "{}".into(),
        recipients,
        at_len: None,
        created_at_ms: 1,
        expires_at_ms: 10,
        deadline_ms: None,
        held: false,
    };
    let out = store
        .write_batch(
            &[
                message(vec![keys[0], keys[1]]),
                message(vec![keys[2]]),
                message(vec![keys[1], keys[1]]),
            ],
            &[],
        )
        .await
        .unwrap();
    let seqs: Vec<u64> = store
        .pending(&mesh, &keys, 0, Priority::Low, 10.into())
        .await
        .unwrap()
        .iter()
        .map(|p| p.seq)
        .collect();
    assert_eq!(seqs, out.iter().map(|o| o.seq).collect::<Vec<_>>());
    store.pool().close().await;
    db.drop_database().await;
}

/// Not a benchmark (see crates/bench), a guard against accidentally
/// going back to per-message statements: 20 batches of 1000 messages
/// with two recipients each, plus acks, and the rate printed.
#[tokio::test]
async fn write_batch_throughput() {
    let db = fresh_postgres_url().await.expect("Postgres for tests");
    let store = PostgresStore::open(db.url(), Duration::from_secs(30))
        .await
        .unwrap();
    let owner = SigningKey::generate();
    let builder = LogBuilder::new(&owner, 1);
    let mesh = MeshId(builder.entries()[0].hash());
    store
        .create_mesh(&builder.entries()[0], mesh, 1)
        .await
        .unwrap();
    let sender = SigningKey::generate().public();
    let (member, session) = (
        SigningKey::generate().public(),
        SigningKey::generate().public(),
    );
    let envelope = format!("{{\"ciphertext\":\"{}\"}}", "A".repeat(400));
    let mut total = 0usize;
    let mut last_seqs: Vec<u64> = Vec::new();
    let started = Instant::now();
    for _ in 0..20 {
        let batch: Vec<NewMessage> = (0..1000)
            .map(|_| NewMessage {
                mesh,
                sender_member: sender,
                id: MessageId::random(),
                target: format!("member:{}", member.to_hex()),
                priority: Priority::Next,
                envelope_json: envelope.clone(),
                recipients: vec![member, session],
                at_len: None,
                created_at_ms: 1,
                expires_at_ms: u64::MAX,
                deadline_ms: None,
                held: false,
            })
            .collect();
        let acks = vec![AckOp {
            mesh,
            member,
            session,
            seqs: last_seqs.clone(),
            state: claudemesh_proto::frames::DeliveryState::Delivered,
            at_ms: 2,
            fanout_targets: Vec::new(),
        }];
        let out = store.write_batch(&batch, &acks).await.unwrap();
        total += out.len();
        last_seqs = out.iter().map(|o| o.seq).collect();
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    println!("postgres write_batch: {total} messages at {rate:.0}/s");
    let pending = store
        .pending(&mesh, &[member, session], 0, Priority::Low, 5000.into())
        .await
        .unwrap();
    assert_eq!(pending.len(), 1000);
    // Generous floor: unoptimized test build on a small shared machine.
    assert!(rate > 2_000.0, "{rate:.0} messages/s");
    store.pool().close().await;
    db.drop_database().await;
}

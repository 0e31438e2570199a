//! The broker's Prometheus metrics: their names, and the one process-wide
//! recorder that `/metrics` renders (the `metrics` facade allows a single
//! global recorder, so several brokers in one test process share it).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Gauge: open websocket connections.
pub const CONNECTIONS: &str = "claudemesh_connections";
/// Counter: hellos, labelled `result` = `ok` or the error code.
pub const HANDSHAKES: &str = "claudemesh_handshakes_total";
/// Counter: messages durably stored and acknowledged to their sender.
pub const ACCEPTED: &str = "claudemesh_messages_accepted_total";
/// Counter: resends of a stored message (answered as duplicates).
pub const DUPLICATES: &str = "claudemesh_messages_duplicate_total";
/// Counter: deliveries acknowledged by recipients.
pub const DELIVERED: &str = "claudemesh_messages_delivered_total";
/// Counter: `deliver` frames pushed to connected sessions.
pub const PUSHED: &str = "claudemesh_messages_pushed_total";
/// Histogram: seconds per group commit.
pub const COMMIT_SECONDS: &str = "claudemesh_commit_seconds";
/// Histogram: messages and acks per group commit.
pub const COMMIT_BATCH: &str = "claudemesh_commit_batch_size";
/// Gauge: jobs waiting for the group-commit writer.
pub const WRITER_QUEUE: &str = "claudemesh_writer_queue_depth";
/// Counter: connections closed because they read too slowly.
pub const SLOW_CONSUMERS: &str = "claudemesh_slow_consumer_disconnects_total";
/// Counter: connections closed because a write to the socket timed out.
pub const WRITE_TIMEOUTS: &str = "claudemesh_write_timeouts_total";
/// Counter: connections or hellos refused by a cap (per address before the
/// hello, sessions per member), labelled `cap`.
pub const CAPPED: &str = "claudemesh_capped_total";
/// Counter: frames refused by the rate limiter.
pub const RATE_LIMITED: &str = "claudemesh_rate_limited_total";
/// Counter: store failures.
pub const STORE_ERRORS: &str = "claudemesh_store_errors_total";
/// Gauge: other live broker instances on the same database.
pub const REPLICAS: &str = "claudemesh_replicas";
/// Counter: wake-up notifications sent to other replicas.
pub const REPLICA_WAKES_SENT: &str = "claudemesh_replica_wakes_sent_total";
/// Counter: wake-up notifications received from other replicas.
pub const REPLICA_WAKES_RECEIVED: &str = "claudemesh_replica_wakes_received_total";
/// Counter: catch-ups after the notification connection was lost.
pub const REPLICA_CATCH_UPS: &str = "claudemesh_replica_catch_ups_total";
/// Counter: re-reads of a mesh's log a connection asked for (a hello or a
/// send naming a key this replica does not know yet).
pub const LOG_CATCH_UPS: &str = "claudemesh_log_catch_ups_total";
/// Counter: rounds too large to name every message (sent as "recheck").
pub const REPLICA_DEGRADED: &str = "claudemesh_replica_degraded_total";
/// Counter: messages held for later (`send.deliver_at_ms`).
pub const HELD: &str = "claudemesh_messages_held_total";
/// Counter: held messages handed to the writer at their time (one that
/// two replicas both fire counts twice here, is stored once).
pub const HELD_FIRED: &str = "claudemesh_messages_held_fired_total";
/// Counter: held messages that could not be sent at their time.
pub const HELD_FAILED: &str = "claudemesh_messages_held_failed_total";
/// Counter: coordination writes that changed something (team memory),
/// labelled `op` = `put`, `forget` or `ring`.
pub const COORD_WRITES: &str = "claudemesh_coord_writes_total";
/// Counter: coordination objects sent to a reader as withheld because
/// their author's grants refuse that reader (`task`, `state`, `memory`).
pub const COORD_WITHHELD: &str = "claudemesh_coord_withheld_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle
/// (`None` if another recorder was installed first by an embedding program).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(COMMIT_SECONDS.to_owned()),
                    &[
                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 1.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(COMMIT_BATCH.to_owned()),
                        &[
                            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                        ],
                    )
                })
                .ok()
                .and_then(|b| b.install_recorder().ok())
                .inspect(|_| register())
        })
        .as_ref()
}

/// Describes every metric and creates it at zero, so `/metrics` lists them
/// all from the start (a scraper should not see a series appear later).
fn register() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "open websocket connections");
    describe_counter!(HANDSHAKES, "hellos, by result (ok or the error code)");
    describe_counter!(
        ACCEPTED,
        "messages durably stored and acknowledged to their sender"
    );
    describe_counter!(DUPLICATES, "resends of an already stored message");
    describe_counter!(DELIVERED, "deliveries acknowledged by recipients");
    describe_counter!(PUSHED, "deliver frames pushed to connected sessions");
    describe_histogram!(
        COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "duration of one group commit"
    );
    describe_histogram!(COMMIT_BATCH, "messages and acks per group commit");
    describe_gauge!(WRITER_QUEUE, "jobs waiting for the group-commit writer");
    describe_counter!(
        SLOW_CONSUMERS,
        "connections closed because they read too slowly"
    );
    describe_counter!(
        WRITE_TIMEOUTS,
        "connections closed because a socket write timed out"
    );
    describe_counter!(CAPPED, "connections or hellos refused by a cap, by cap");
    describe_counter!(RATE_LIMITED, "frames refused by the rate limiter");
    describe_counter!(STORE_ERRORS, "store failures");
    describe_gauge!(REPLICAS, "other live broker instances on the same database");
    describe_counter!(
        REPLICA_WAKES_SENT,
        "wake-up notifications sent to other replicas"
    );
    describe_counter!(
        REPLICA_WAKES_RECEIVED,
        "wake-up notifications received from other replicas"
    );
    describe_counter!(
        REPLICA_CATCH_UPS,
        "catch-ups after the notification connection was lost"
    );
    describe_counter!(
        LOG_CATCH_UPS,
        "re-reads of a mesh's log asked for by a connection"
    );
    describe_counter!(
        REPLICA_DEGRADED,
        "wake-up rounds too large to name every message"
    );
    describe_counter!(HELD, "messages held for later (send.deliver_at_ms)");
    describe_counter!(
        HELD_FIRED,
        "held messages handed to the writer at their time"
    );
    describe_counter!(
        HELD_FAILED,
        "held messages that could not be sent at their time"
    );
    describe_counter!(
        COORD_WRITES,
        "coordination objects stored, forgotten and ring links stored, by op"
    );
    describe_counter!(
        COORD_WITHHELD,
        "coordination objects withheld from a reader by their author's grants"
    );
    for c in [
        ACCEPTED,
        DUPLICATES,
        DELIVERED,
        PUSHED,
        SLOW_CONSUMERS,
        WRITE_TIMEOUTS,
        RATE_LIMITED,
        STORE_ERRORS,
        REPLICA_WAKES_SENT,
        REPLICA_WAKES_RECEIVED,
        REPLICA_CATCH_UPS,
        LOG_CATCH_UPS,
        REPLICA_DEGRADED,
        HELD,
        HELD_FIRED,
        HELD_FAILED,
        COORD_WITHHELD,
    ] {
        metrics::counter!(c).increment(0);
    }
    metrics::counter!(HANDSHAKES, "result" => "ok").increment(0);
    for op in ["put", "forget", "ring"] {
        metrics::counter!(COORD_WRITES, "op" => op).increment(0);
    }
    metrics::gauge!(CONNECTIONS).set(0.0);
    metrics::gauge!(WRITER_QUEUE).set(0.0);
    metrics::gauge!(REPLICAS).set(0.0);
    let _ = metrics::histogram!(COMMIT_SECONDS);
    let _ = metrics::histogram!(COMMIT_BATCH);
}

//! `log_append`: verified membership-log entries appended at the log's end,
//! under this broker's quotas and size cap. A member whose own batch
//! removes it gets its answer, then the connection closes.

use claudemesh_crypto::log::{EntryBody, LogEntry, RemoveKind};
use claudemesh_proto::frames::{LogAppend, LogAppended};
use claudemesh_proto::{BrokerFrame, ErrorCode, close};

use super::{Caller, Context, Handle, Refusal, Reply};
use crate::config::BrokerConfig;
use crate::mesh_log::{AppendError, AppendLimits};
use crate::metrics as m;
use crate::store::AppendExtras;

/// Appends a `log_append`'s entries.
impl Handle for LogAppend {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        append_and_answer(caller, self.req, self.entries, AppendExtras::default()).await
    }
}

/// Appends verified entries and answers `log_appended` (then closes, if
/// they remove the caller's own member).
pub async fn append_and_answer(
    caller: Caller<'_>,
    req: Option<String>,
    entries: Vec<LogEntry>,
    extras: AppendExtras,
) -> Result<Reply, Refusal> {
    let me = caller.session.member;
    let my_removal = entries.iter().find_map(|e| match &e.body {
        EntryBody::Remove { member, how } if *member == me => Some(*how),
        _ => None,
    });
    let (head, len) = caller
        .mesh
        .append(
            caller.broker.store.as_ref(),
            entries,
            extras,
            Some(caller.session.conn_id),
            append_limits(&caller.broker.config),
        )
        .await
        .map_err(append_refusal)?;
    let answer = BrokerFrame::LogAppended(LogAppended { req, head, len });
    // This connection's member removed itself (or was removed in its own
    // batch): close after the answer it is waiting for.
    Ok(match my_removal {
        Some(RemoveKind::Ban) => {
            Reply::FrameThenClose(answer, close::BANNED, ErrorCode::Banned.as_str())
        }
        Some(RemoveKind::Kick | RemoveKind::Leave) => {
            Reply::FrameThenClose(answer, close::KICKED, ErrorCode::Removed.as_str())
        }
        None => Reply::Frame(answer),
    })
}

/// What a client hears when an append is refused.
pub fn append_refusal(e: AppendError) -> Refusal {
    if let AppendError::Store(s) = &e {
        tracing::error!(error = %s, "log append failed");
    }
    if e.code() == ErrorCode::RateLimited {
        metrics::counter!(m::RATE_LIMITED).increment(1);
    }
    Refusal::new(e.code(), e.to_string()).retry_after(e.retry_after_ms())
}

/// This broker's limits on appends, as configured, at its clock now.
pub fn append_limits(c: &BrokerConfig) -> AppendLimits {
    AppendLimits {
        entries_per_hour: c.log_entries_per_hour,
        burst: c.log_burst,
        bytes_per_hour: c.log_bytes_per_hour,
        max_log_bytes: c.max_log_bytes,
        now_secs: crate::now_ms() / 1000,
    }
}

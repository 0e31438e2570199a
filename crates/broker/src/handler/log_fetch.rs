//! `log_fetch`: a page of the mesh's verified membership log, from memory.
//! Members ask it; so may a joiner that proved it holds an invite, before
//! its hello (its admit must chain to the head).

use claudemesh_crypto::log::LogEntry;
use claudemesh_proto::BrokerFrame;
use claudemesh_proto::frames::{LogEntries, LogFetch};
use claudemesh_proto::limits::MAX_LOG_ENTRIES_PER_FRAME;

use super::{Caller, Context, Handle, Refusal, Reply, load_mesh, not_authenticated};
use crate::mesh::MeshHub;

/// Bytes of log entries one frame carries at most: half a frame, so the
/// rest of the frame (an invite bundle, JSON framing) always fits.
const LOG_BYTES_PER_FRAME: usize = claudemesh_proto::limits::MAX_FRAME_BYTES / 2;

impl Handle for LogFetch {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        Ok(handle(caller.mesh, self))
    }

    /// A joiner that proved it holds an invite may read the whole log
    /// before it signs its admit (the admit must chain to the head).
    async fn before_hello(self, cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        let Some((mesh_id, _)) = *cx.invite else {
            return Err(not_authenticated());
        };
        let mesh = load_mesh(cx.broker, &mesh_id).await?;
        Ok(handle(&mesh, self))
    }
}

/// Answers a `log_fetch` from the mesh's verified log in memory.
fn handle(mesh: &MeshHub, f: LogFetch) -> Reply {
    let limit = f
        .limit
        .map(|l| l as usize)
        .unwrap_or(MAX_LOG_ENTRIES_PER_FRAME)
        .clamp(1, MAX_LOG_ENTRIES_PER_FRAME);
    Reply::Frame(BrokerFrame::LogEntries(mesh.read_log(|l| {
        let from = usize::try_from(f.from_seq)
            .unwrap_or(usize::MAX)
            .min(l.entries.len());
        let entries = entries_within_budget(&l.entries[from..], limit);
        let more = from + entries.len() < l.entries.len();
        LogEntries {
            req: f.req,
            entries,
            head: l.roster.head(),
            len: l.roster.len(),
            more,
        }
    })))
}

/// The first entries of `entries`, at most `max` of them and at most
/// [`LOG_BYTES_PER_FRAME`] of JSON (always at least one): a big mesh's log
/// is sent in as many frames as it takes, never in one that is refused.
pub fn entries_within_budget(entries: &[LogEntry], max: usize) -> Vec<LogEntry> {
    let mut bytes = 0;
    let mut out = Vec::new();
    for e in entries.iter().take(max) {
        let size = serde_json::to_string(e).map_or(0, |j| j.len());
        if !out.is_empty() && bytes + size > LOG_BYTES_PER_FRAME {
            break;
        }
        bytes += size;
        out.push(e.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use claudemesh_crypto::SigningKey;
    use claudemesh_crypto::log::{LogBuilder, Role};

    use super::*;

    #[test]
    fn a_big_log_is_served_in_frames_under_the_limit() {
        // 600 members: ~1,200 entries, far more than one frame holds.
        let owner = SigningKey::generate();
        let mut log = LogBuilder::new(&owner, 1_700_000_000);
        for _ in 0..600 {
            log.add_member(&owner, Role::Member, 1_700_000_000).unwrap();
        }
        let entries = log.entries();
        let mut from = 0;
        let mut frames = 0;
        while from < entries.len() {
            let page = entries_within_budget(&entries[from..], MAX_LOG_ENTRIES_PER_FRAME);
            assert!(!page.is_empty());
            let frame = BrokerFrame::LogEntries(LogEntries {
                req: Some("r".repeat(64)),
                entries: page.clone(),
                head: log.roster().head(),
                len: log.roster().len(),
                more: true,
            });
            let text = serde_json::to_string(&frame).unwrap();
            assert!(text.len() <= claudemesh_proto::limits::MAX_FRAME_BYTES);
            from += page.len();
            frames += 1;
        }
        assert!(frames > 4, "{frames} frames");
    }
}

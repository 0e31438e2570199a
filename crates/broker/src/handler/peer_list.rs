//! `peer_list`: the mesh's peers as the caller may see them, in pages of at
//! most half a frame, by a `(member, session)` cursor.

use claudemesh_proto::BrokerFrame;
use claudemesh_proto::frames::{PeerListQuery, PeerPresence, Peers};

use super::{Caller, Context, Handle, Refusal, Reply};

/// Bytes of peer entries one `peers` frame carries at most.
const PEERS_BYTES_PER_FRAME: usize = claudemesh_proto::limits::MAX_FRAME_BYTES / 2;

impl Handle for PeerListQuery {
    async fn handle(self, caller: Caller<'_>, _cx: &mut Context<'_>) -> Result<Reply, Refusal> {
        Ok(handle(caller, self))
    }
}

/// Answers one page of `peers`.
fn handle(caller: Caller<'_>, q: PeerListQuery) -> Reply {
    let (peers, next) = peers_page(
        caller.mesh.peers(&caller.session.member),
        q.after.as_deref(),
    );
    Reply::Frame(BrokerFrame::Peers(Peers {
        req: q.req,
        peers,
        next,
    }))
}

/// A peer's place in the `peers` order, and the `after`/`next` cursor
/// naming it: `<member hex>/<session hex>`, or `<member hex>/-` for a
/// member's entry without a session.
fn peer_cursor(p: &PeerPresence) -> String {
    match &p.session {
        Some(s) => format!("{}/{}", p.member.to_hex(), s.to_hex()),
        None => format!("{}/-", p.member.to_hex()),
    }
}

/// One page of `peers`: the entries after the cursor `after` in (member,
/// session) order, as many as fit half a frame (always at least one), and
/// the cursor of the last one if more follow. One member with hundreds of
/// sessions and long summaries can no longer make an answer no client
/// accepts.
fn peers_page(all: Vec<PeerPresence>, after: Option<&str>) -> (Vec<PeerPresence>, Option<String>) {
    let mut keyed: Vec<(String, PeerPresence)> =
        all.into_iter().map(|p| (peer_cursor(&p), p)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let start = after.map_or(0, |a| keyed.partition_point(|(k, _)| k.as_str() <= a));
    let mut page = Vec::new();
    let mut bytes = 0;
    let mut last = None;
    let mut rest = keyed.into_iter().skip(start).peekable();
    while let Some((key, p)) = rest.peek() {
        let size = serde_json::to_string(p).map_or(0, |j| j.len()) + 1;
        if !page.is_empty() && bytes + size > PEERS_BYTES_PER_FRAME {
            break;
        }
        bytes += size;
        last = Some(key.clone());
        if let Some((_, p)) = rest.next() {
            page.push(p);
        }
    }
    let next = if rest.peek().is_some() { last } else { None };
    (page, next)
}

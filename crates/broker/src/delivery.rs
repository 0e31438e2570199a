//! Delivery of stored messages to connected sessions: live pushes right
//! after a commit ([`deliver_live`]), and drains when a push cannot do
//! (after a hello, when a busy session turns idle, when a session fell
//! behind or another replica stored messages for it: [`drain`],
//! [`wake_drain`]). A drain sends oldest first with backpressure; live
//! pushes skip the session meanwhile, and a final re-check catches what
//! committed between.

use std::sync::Arc;

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::{Priority, Target};

use axum::extract::ws::Utf8Bytes;

use crate::mesh::MeshHub;
use crate::metrics as m;
use crate::sessions::SessionHandle;
use claudemesh_crypto::receipt::Watermark;

use crate::state::BrokerState;
use crate::store::{FanoutRow, PageLimit, PendingMessage, fanout_weight};
use crate::wire::deliver_text;

/// Stored messages fetched per page when draining to a session, from each
/// source (direct, fan-out): a page is held while the session's reader
/// takes it, so it is bounded by weight too.
const DRAIN_PAGE: PageLimit = PageLimit {
    rows: 256,
    bytes: 512 * 1024,
};

/// Pushes a stored message to the connected sessions of its recipients
/// (a member key reaches all of that member's sessions, a session key
/// that one). Busy sessions keep non-urgent messages for later; sessions
/// in the middle of a drain get it from the drain. Returns how many
/// sessions it was queued to.
pub fn deliver_live(
    mesh: &MeshHub,
    recipients: &[PublicKey],
    priority: Priority,
    frame: &Utf8Bytes,
) -> usize {
    let mut pushed = 0;
    mesh.sessions().for_each_reached(recipients, |t| {
        if t.takes_live(priority) && t.push_live(frame.clone()) {
            pushed += 1;
        }
    });
    pushed
}

/// Sends a session every stored message waiting for it (its member's and its
/// own), oldest first, with backpressure. While it runs, live pushes to the
/// session are skipped; the final re-check after turning that off catches
/// anything committed in between, so nothing is missed and order holds.
pub async fn drain(broker: &BrokerState, mesh: &MeshHub, session: &SessionHandle) {
    let _one_at_a_time = session.drain_lock.lock().await;
    drain_locked(broker, mesh, session, Priority::Low).await;
}

/// A drain because another replica stored messages for this session that
/// were not pushed to it (a catch-up after missed notifications, or a round
/// too large to name them): coalesced (one waiting at a time per session,
/// which sees everything a second would), and, unlike a pull, it respects
/// the session's status as a live push does (busy: `now` only).
pub fn wake_drain(broker: Arc<BrokerState>, mesh: Arc<MeshHub>, session: Arc<SessionHandle>) {
    if !session.schedule_wake() {
        return;
    }
    tokio::spawn(async move {
        let _one_at_a_time = session.drain_lock.lock().await;
        session.wake_started();
        let max = session.max_priority();
        drain_locked(&broker, &mesh, &session, max).await;
    });
}

/// [`drain`] with the session's drain lock held, of messages of at most
/// `max_priority` (`Low`: all).
async fn drain_locked(
    broker: &BrokerState,
    mesh: &MeshHub,
    session: &SessionHandle,
    max_priority: Priority,
) {
    session.set_draining(true);
    let recipients = [session.member, session.session];
    let mut after = 0;
    let mut rechecked = false;
    loop {
        if session.is_killed() {
            break;
        }
        // A drain is a pull (a new connection, or a session turning idle):
        // it hands over every priority. Only live pushes respect `working`.
        let page = match drain_page(broker, mesh, session, &recipients, after, max_priority).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "reading queued messages failed");
                break;
            }
        };
        let Some(page) = page else {
            if rechecked {
                break;
            }
            session.set_draining(false);
            rechecked = true;
            continue;
        };
        if rechecked {
            session.set_draining(true);
            rechecked = false;
        }
        after = after.max(page.upto);
        for p in page.deliver {
            if !session
                .push_wait(deliver_text(
                    p.seq,
                    &p.envelope_json,
                    p.queued_at_ms,
                    p.tseq,
                    p.deadline_ms,
                ))
                .await
            {
                session.set_draining(false);
                return;
            }
            metrics::counter!(m::PUSHED).increment(1);
        }
    }
    session.set_draining(false);
}

/// One step of a drain: what to deliver, oldest first, and the seq up to
/// which everything was looked at.
struct DrainPage {
    deliver: Vec<PendingMessage>,
    upto: u64,
}

/// Reads the next page of a session's queue: its direct messages and, for
/// its member, the fan-out messages of every target it may be a recipient
/// of. Sources are merged by seq up to the lowest seq at which a full page
/// was cut off, so nothing is skipped. `None` when nothing is left.
async fn drain_page(
    broker: &BrokerState,
    mesh: &MeshHub,
    session: &SessionHandle,
    recipients: &[PublicKey],
    after: u64,
    max_priority: Priority,
) -> Result<Option<DrainPage>, crate::store::StoreError> {
    let store = broker.store.as_ref();
    let direct = store
        .pending(&mesh.id, recipients, after, max_priority, DRAIN_PAGE)
        .await?;
    // A page that may have been cut (by count or by weight) bounds what the
    // other source may deliver: nothing above its last seq is known yet.
    let weight = |rows: &[PendingMessage]| rows.iter().map(|p| p.envelope_json.len() as u64).sum();
    let mut bound = match direct.last() {
        Some(last) if DRAIN_PAGE.may_be_cut(direct.len(), weight(&direct)) => last.seq,
        _ => u64::MAX,
    };
    let mut seen = direct.last().map(|p| p.seq);
    let mut deliver = direct;
    let targets = mesh.read_log(|l| crate::fanout::member_targets(&l.roster, &session.member));
    // Every target in one query; the answer holds every fan-out row up to
    // its last, so a full answer bounds the page like a full direct one.
    let rows = store
        .fanout_pages(&mesh.id, &session.member, &targets, after, DRAIN_PAGE)
        .await?;
    if let Some(last) = rows.last() {
        seen = Some(seen.map_or(last.seq, |s| s.max(last.seq)));
        if DRAIN_PAGE.may_be_cut(rows.len(), fanout_weight(&rows)) {
            bound = bound.min(last.seq);
        }
    }
    let mut by_target: std::collections::BTreeMap<String, Vec<FanoutRow>> = Default::default();
    for row in rows {
        by_target.entry(row.target.clone()).or_default().push(row);
    }
    // What the member's watermarks say it holds (stored, and held here not
    // yet flushed): those rows count as acked. A watermark claims only what
    // its signer has (gaps are listed), so nothing it covers is lost.
    let stored_marks = if by_target.is_empty() {
        Vec::new()
    } else {
        store.member_watermarks(&mesh.id, &session.member).await?
    };
    for (target, rows) in by_target.iter_mut() {
        let mut marks: Vec<Watermark> = stored_marks
            .iter()
            .filter(|w| w.target == *target)
            .filter_map(|w| serde_json::from_str(&w.doc).ok())
            .collect();
        marks.extend(
            broker
                .watermarks
                .of_member(&mesh.id, &session.member, target),
        );
        for row in rows.iter_mut() {
            if !row.acked && row.tseq.is_some_and(|t| marks.iter().any(|m| m.covers(t))) {
                row.acked = true;
                row.envelope_json = None;
            }
        }
    }
    let now = crate::now_ms();
    for (target_text, rows) in by_target {
        let Ok(target) = target_text.parse::<Target>() else {
            continue;
        };
        // Rows above the priority limit still count for the cursor (judged
        // below); they are only not delivered now.
        let too_low: std::collections::HashSet<u64> = rows
            .iter()
            .filter(|r| {
                crate::store::priority_rank(r.priority) > crate::store::priority_rank(max_priority)
            })
            .map(|r| r.seq)
            .collect();
        let verdict = mesh.read_log(|l| {
            crate::fanout::judge_page(&l.roster, &session.member, &target, rows, now, &|sender| {
                crate::route::grants_let(mesh, &session.member, sender, &target)
            })
        });
        if let Some(cursor) = verdict.cursor {
            store
                .advance_fanout_cursor(&mesh.id, &session.member, &target_text, cursor)
                .await?;
        }
        deliver.extend(
            verdict
                .deliver
                .into_iter()
                .filter(|p| !too_low.contains(&p.seq)),
        );
    }
    let Some(seen) = seen else {
        return Ok(None);
    };
    deliver.retain(|p| p.seq <= bound);
    deliver.sort_by_key(|p| p.seq);
    deliver.dedup_by_key(|p| p.seq);
    Ok(Some(DrainPage {
        deliver,
        upto: seen.min(bound),
    }))
}

//! What becomes of the messages sent through the gateway: each is watched
//! for a while (its delivery state asked of the broker, often at first,
//! then less often) and every change of a recipient's state (queued →
//! delivered → shown → answered) or of its evidence is written to the
//! journal as a `status` event, so a script learns it from
//! `/api/v1/events` instead of polling. Each state says whether a receipt
//! the recipient signed proves it or only the broker says so
//! (`claudemesh_client::receipts`). A message is settled, and no longer
//! watched, once every recipient is shown, answered or expired.
//! At most [`MAX_WATCHED`] messages are watched at once (the newest);
//! `GET /api/v1/messages/{id}` reports any message's state on demand.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claudemesh_client::MeshClient;
use claudemesh_client::client::RecipientReport;
use claudemesh_client::naming::{label_recipients, status_json, utc_time};
use claudemesh_crypto::envelope::MessageId;
use claudemesh_proto::clock::now_ms;
use claudemesh_proto::sync::lock;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::journal::{EventKind, Journal};
use crate::links::MeshLink;

/// Whether a recipient is done with a message: shown or answered (proven,
/// or as the broker says: it cannot get further), or expired (`read` from
/// an older report counts as shown).
fn settled(r: &RecipientReport) -> bool {
    ["shown", "read", "answered", "expired"]
        .iter()
        .any(|s| r.state == *s || r.observed == *s)
}

/// Most messages watched at once; the oldest give way.
pub const MAX_WATCHED: usize = 256;
/// How long a message is watched.
const WATCH_FOR: Duration = Duration::from_secs(3600);
/// First wait before asking.
const FIRST_POLL: Duration = Duration::from_millis(500);
/// Longest wait between two asks.
const MAX_POLL: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Watched {
    id: MessageId,
    topic: Option<String>,
    since: Instant,
    due: Instant,
    every: Duration,
    last: Option<String>,
}

/// The messages one mesh's session is watching.
#[derive(Debug, Default)]
pub struct Delivery {
    watched: Mutex<VecDeque<Watched>>,
    wake: Notify,
}

impl Delivery {
    /// Starts watching a message just sent (to `topic`, for keys scoped to
    /// topics).
    pub fn watch(&self, id: MessageId, topic: Option<String>) {
        self.watch_after(id, topic, Duration::ZERO);
    }

    /// Starts watching a message `after` from now: one the broker holds
    /// until then (sent with `at`/`in`), which has no delivery to report
    /// before it is sent, is asked about from its time, for as long as one
    /// sent now.
    pub fn watch_after(&self, id: MessageId, topic: Option<String>, after: Duration) {
        let now = Instant::now() + after;
        let mut w = lock(&self.watched);
        if w.iter().any(|m| m.id == id) {
            return;
        }
        if w.len() >= MAX_WATCHED {
            w.pop_front();
        }
        w.push_back(Watched {
            id,
            topic,
            since: now,
            due: now + FIRST_POLL,
            every: FIRST_POLL,
            last: None,
        });
        drop(w);
        self.wake.notify_one();
    }

    /// How many are watched now.
    pub fn len(&self) -> usize {
        lock(&self.watched).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The messages due to be asked about now, and when the next one is.
    fn due(&self, now: Instant) -> (Vec<(MessageId, Option<String>)>, Option<Instant>) {
        let w = lock(&self.watched);
        let due = w
            .iter()
            .filter(|m| m.due <= now)
            .map(|m| (m.id, m.topic.clone()))
            .collect();
        let next = w.iter().map(|m| m.due).min();
        (due, next)
    }

    /// Notes what was learned of `id`: returns whether it changed.
    fn learned(&self, id: &MessageId, fingerprint: Option<String>, settled: bool) -> bool {
        let now = Instant::now();
        let mut w = lock(&self.watched);
        let Some(pos) = w.iter().position(|m| m.id == *id) else {
            return false;
        };
        let changed = fingerprint.is_some() && w[pos].last != fingerprint;
        if settled || now.duration_since(w[pos].since) > WATCH_FOR {
            w.remove(pos);
            return changed;
        }
        let m = &mut w[pos];
        if fingerprint.is_some() {
            m.last = fingerprint;
        }
        m.every = (m.every * 2).min(MAX_POLL);
        m.due = now + m.every;
        changed
    }
}

/// Asks after the watched messages of one session until `stop`.
pub async fn watch(
    home: claudemesh_client::Home,
    link: Arc<MeshLink>,
    client: Arc<MeshClient>,
    journal: Journal,
    mut stop: watch::Receiver<bool>,
) {
    let delivery = &link.delivery;
    loop {
        let (due, next) = delivery.due(Instant::now());
        // Read once per round, not once per message asked about.
        let pins = link.pins(&home);
        for (id, topic) in due {
            let (fingerprint, settled, data) = match client.message_status(&id).await {
                Ok(mut report) => {
                    let marks =
                        client.with_state(|s| label_recipients(s, &pins, &mut report.recipients));
                    let fingerprint = format!(
                        "{}:{}",
                        report.state,
                        report
                            .recipients
                            .iter()
                            .map(|r| {
                                let ok = r.proofs.iter().filter(|p| p.ok).count();
                                let bad = r.proofs.len() - ok;
                                format!("{}={}/{}/{ok}/{bad}", r.key, r.state, r.observed)
                            })
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    let settled = report.state == "failed"
                        || (report.state == "accepted"
                            && !report.recipients.is_empty()
                            && report.recipients.iter().all(settled));
                    (
                        Some(fingerprint),
                        settled,
                        status_json(&report, &marks, &utc_time).ok(),
                    )
                }
                Err(e) => {
                    tracing::debug!(%id, "cannot ask a message's status: {e}");
                    (None, false, None)
                }
            };
            if delivery.learned(&id, fingerprint, settled)
                && let Some(data) = data
                && let Err(e) = journal
                    .record(
                        &link.mesh.id,
                        EventKind::Status,
                        topic.as_deref(),
                        &data,
                        now_ms(),
                    )
                    .await
            {
                tracing::error!("{e}");
            }
        }
        let sleep = match next {
            Some(at) => {
                tokio::time::sleep_until(at.max(Instant::now() + Duration::from_millis(50)))
            }
            None => tokio::time::sleep(MAX_POLL),
        };
        tokio::select! {
            () = sleep => {}
            () = delivery.wake.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_held_for_later_is_asked_about_from_its_time() {
        let d = Delivery::default();
        let (now_id, later_id) = (MessageId::random(), MessageId::random());
        d.watch(now_id, None);
        d.watch_after(later_id, None, Duration::from_secs(3600));
        assert_eq!(d.len(), 2);
        let soon = Instant::now() + FIRST_POLL;
        let (due, _) = d.due(soon);
        assert_eq!(
            due.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![now_id]
        );
        let (due, _) = d.due(soon + Duration::from_secs(3600));
        assert_eq!(due.len(), 2, "both, once the later one's time came");
        // Asked about (now, before its time even), it is a first report,
        // and it is not dropped as watched too long.
        assert!(d.learned(&later_id, Some("queued".into()), false));
        assert_eq!(d.len(), 2);
    }
}

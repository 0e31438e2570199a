//! `GET /api/v1/events`: the journal of the key's mesh as server-sent
//! events (`message`, `status`, `presence`, `membership`, `connection`,
//! `rejected`, `coordination`), each with its journal number as the SSE `id`. A client
//! that reconnects with `Last-Event-ID` (or `?after=`) gets every event
//! after that number, in order, once; without either the stream starts at
//! the newest. Rows are read from the journal after the last one sent,
//! whether woken by a new event or not, so nothing is skipped or sent
//! twice however events and wake-ups interleave. A key limited to topics
//! gets only the messages and delivery changes of its topics (and the
//! link's state). Comments keep idle connections open; the stream ends
//! when the gateway stops.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use tokio::sync::watch;
use utoipa::IntoParams;

use crate::api::Params;
use crate::api::messages::labeled;
use crate::apikeys::Cap;
use crate::app::{AppState, Caller};
use crate::journal::{EventKind, StoredEvent};
use crate::links::MeshLink;
use crate::problem::Problem;

/// How often an idle stream sends a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Journal rows read at a time.
const BATCH: u32 = 200;

/// Where to start, and what to send.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start after this event id (as `Last-Event-ID` does; the header wins).
    /// `0`: everything still kept (a week).
    #[serde(default)]
    pub after: Option<i64>,
    /// Only these kinds, comma-separated (`message,status`).
    #[serde(default)]
    pub kinds: Option<String>,
}

/// The event stream.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `event:` is the kind (`message`, `status`, `presence`, `membership`, `connection`, `rejected`, `coordination`), `id:` the event id, `data:` JSON (a `message` is shaped as in `GET /api/v1/messages`, a `status` as `delivery` in `GET /api/v1/messages/{id}`, a `coordination` is `{\"kinds\": [\"task\", \"state\", \"lease\", \"memory\"]}`, the kinds that changed)", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad Last-Event-ID or kind", body = crate::api::ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn stream(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Params(q): Params<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    caller.require(Cap::Read)?;
    let last_event_id = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| Problem::bad_request("Last-Event-ID must be an event id"))?,
        ),
        None => None,
    };
    let kinds = match &q.kinds {
        None => EventKind::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                EventKind::parse(s).ok_or_else(|| {
                    Problem::bad_request(format!(
                        "unknown event kind {s:?} (message, status, presence, membership, connection, rejected, coordination)"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if kinds.is_empty() {
        return Err(Problem::bad_request(
            "`kinds` names no event kind (leave it out for all of them)",
        ));
    }
    // Subscribed before the first read, so nothing written in between is
    // missed.
    let wake = state.journal.subscribe();
    let last = last_event_id
        .or(q.after.map(|a| a.max(0)))
        .unwrap_or_else(|| state.journal.latest());
    let cursor = Cursor {
        scope: caller.scoped_targets().map(|t| {
            t.into_iter()
                .map(|t| t.trim_start_matches('#').to_owned())
                .collect()
        }),
        link: caller.link.clone(),
        stop: state.stop.clone(),
        state,
        kinds,
        last,
        ready: VecDeque::new(),
        wake,
    };
    // A comment first, so the answer's head goes out now: without a first
    // chunk it would wait for an event or the first keep-alive (15 s),
    // and a client would not know it is connected (an `EventSource`'s
    // `open`, an HTTP client's wait for the head).
    let opened = futures_util::stream::once(async { Ok(Event::default().comment("open")) });
    let events = opened.chain(futures_util::stream::unfold(cursor, |mut c| async move {
        let event = c.next().await?;
        Some((Ok(event), c))
    }));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")))
}

/// One stream's place in the journal.
struct Cursor {
    state: Arc<AppState>,
    link: Arc<MeshLink>,
    scope: Option<Vec<String>>,
    kinds: Vec<EventKind>,
    last: i64,
    ready: VecDeque<Event>,
    wake: watch::Receiver<i64>,
    stop: watch::Receiver<bool>,
}

impl Cursor {
    /// The next event to send; `None` when the gateway stops.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if *self.stop.borrow() {
                return None;
            }
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            self.wake.borrow_and_update();
            let rows = match self
                .state
                .journal
                .after(&self.link.mesh.id, self.last, BATCH)
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!("{e}");
                    Vec::new()
                }
            };
            if rows.is_empty() {
                tokio::select! {
                    r = self.wake.changed() => if r.is_err() { return None },
                    _ = self.stop.wait_for(|s| *s) => return None,
                    // A journal error above is retried.
                    () = tokio::time::sleep(KEEP_ALIVE) => {}
                }
                continue;
            }
            for row in rows {
                self.last = row.id;
                if let Some(e) = self.render(row).await {
                    self.ready.push_back(e);
                }
            }
        }
    }

    fn wanted(&self, row: &StoredEvent) -> bool {
        if !self.kinds.contains(&row.kind) {
            return false;
        }
        let Some(scope) = &self.scope else {
            return true;
        };
        match row.kind {
            EventKind::Connection => true,
            EventKind::Message | EventKind::Status => row
                .topic
                .as_ref()
                .is_some_and(|t| scope.iter().any(|s| s == t)),
            EventKind::Presence
            | EventKind::Membership
            | EventKind::Rejected
            | EventKind::Coordination => false,
        }
    }

    async fn render(&self, row: StoredEvent) -> Option<Event> {
        if !self.wanted(&row) {
            return None;
        }
        let data = match row.kind {
            EventKind::Message => {
                let inbox_id = row.data.get("inbox_id")?.as_i64()?;
                // Gone from the inbox (the mesh forgotten): nothing to show.
                let m = self
                    .state
                    .local
                    .inbox_row(&self.link.mesh.id, inbox_id)
                    .await
                    .ok()??;
                // Its time to live ran out before it was shown: gone.
                if m.expired {
                    return None;
                }
                match self.link.client() {
                    Ok(client) => {
                        let pins = self.link.pins(&self.state.home);
                        let shown = labeled(&client, &pins, vec![m]);
                        serde_json::to_string(shown.first()?).ok()?
                    }
                    Err(_) => serde_json::to_string(&m).ok()?,
                }
            }
            _ => row.data.to_string(),
        };
        Some(
            Event::default()
                .id(row.id.to_string())
                .event(row.kind.as_str())
                .data(data),
        )
    }
}

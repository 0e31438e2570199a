//! What a session asks the broker and reads back in pages: the peer list,
//! a topic's stored messages, and the delivery state of a sent message.

use claudemesh_crypto::envelope::MessageId;
use claudemesh_proto::frames::{
    MessageStatusQuery, PeerListQuery, TopicHistoryQuery, TopicHistoryResult,
};
use claudemesh_proto::{BrokerFrame, ClientFrame, ErrorCode};

use super::core::Session;
use super::requests::unexpected;
use crate::error::ClientError;
use crate::mesh::PeerView;
use claudemesh_proto::clock::now_ms;

/// Most `peers` pages one listing reads (a broker that never stops paging
/// cannot hold the client forever).
const MAX_PEER_PAGES: usize = 1000;
/// Most `message_status_result` pages one status reads.
const MAX_STATUS_PAGES: usize = 1000;

/// Per-recipient delivery state of a sent message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusReport {
    /// The message id.
    pub id: String,
    /// `pending` (not yet accepted), `failed`, or `accepted`.
    pub state: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Broker seq.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The target as sent (`member:<hex>`, `#deploys`, `@eng`, `*`), when
    /// this device still has the message in its outbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Each recipient.
    pub recipients: Vec<RecipientReport>,
}

/// One recipient's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecipientReport {
    /// Name (or short key).
    pub name: String,
    /// Key (hex).
    pub key: String,
    /// `queued`, `delivered`, `read` or `expired`.
    pub state: String,
}

impl Session {
    /// One page of a topic's stored messages, as the broker returns them
    /// (newest first, not yet verified: open each with
    /// [`MeshClient::open_envelope`]).
    pub(crate) async fn topic_history_page(
        &self,
        topic: &str,
        limit: Option<u32>,
        before_seq: Option<u64>,
    ) -> Result<TopicHistoryResult, ClientError> {
        let topic = topic.to_owned();
        let frame = self
            .request(
                |req| {
                    ClientFrame::TopicHistory(TopicHistoryQuery {
                        req: Some(req),
                        topic,
                        limit,
                        before_seq,
                    })
                },
                "send the topic's history",
            )
            .await?;
        match frame {
            BrokerFrame::TopicHistoryResult(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// The mesh's members and their presence, as this device verified them
    /// (every page of the broker's list).
    pub(crate) async fn peers(&self) -> Result<Vec<PeerView>, ClientError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PEER_PAGES {
            let query = after.clone();
            let frame = self
                .request(
                    |req| {
                        ClientFrame::PeerList(PeerListQuery {
                            req: Some(req),
                            after: query,
                        })
                    },
                    "list peers",
                )
                .await?;
            let BrokerFrame::Peers(p) = frame else {
                return Err(unexpected(&frame));
            };
            all.extend(p.peers);
            // A cursor that does not move on would loop forever.
            match p.next {
                Some(next) if after.as_ref() != Some(&next) => after = Some(next),
                _ => break,
            }
        }
        let now = now_ms() / 1000;
        Ok(self.write_state(|s| s.peer_views(&all, now)))
    }

    /// The delivery state of a message this device sent.
    pub(crate) async fn message_status(&self, id: &MessageId) -> Result<StatusReport, ClientError> {
        let mesh = self.mesh.id;
        let local = self.local.outbox_get(&mesh, id).await?;
        let target = local.as_ref().map(|e| e.target.clone());
        if let Some(entry) = &local
            && entry.state != "accepted"
        {
            return Ok(StatusReport {
                id: id.to_hex(),
                state: entry.state.clone(),
                error: entry.error.clone(),
                seq: None,
                target,
                recipients: Vec::new(),
            });
        }
        // Every page (a broadcast's status lists every member it was for).
        let mut recipients = Vec::new();
        let mut after = None;
        let mut seq = 0;
        for _ in 0..MAX_STATUS_PAGES {
            let frame = self
                .request(
                    |req| {
                        ClientFrame::MessageStatus(MessageStatusQuery {
                            req: Some(req),
                            id: *id,
                            after,
                        })
                    },
                    "report the message status",
                )
                .await
                .map_err(|e| match e {
                    ClientError::Refused {
                        code: ErrorCode::NotFound,
                        ..
                    } => ClientError::NotFound(format!(
                        "no message {id} sent by this member is known to the broker"
                    )),
                    e => e,
                })?;
            let BrokerFrame::MessageStatusResult(page) = frame else {
                return Err(unexpected(&frame));
            };
            seq = page.seq;
            recipients.extend(page.recipients);
            match page.next {
                Some(next) if after != Some(next) => after = Some(next),
                _ => break,
            }
        }
        let recipients = self.read_state(|s| {
            recipients
                .iter()
                .map(|r| RecipientReport {
                    // A member now, or one that left after the message was
                    // sent (a fan-out message's recipients are fixed when
                    // it is sent); otherwise the key names a session.
                    name: if s.roster().is_member(&r.recipient)
                        || s.roster().departed().contains_key(&r.recipient)
                    {
                        s.name_of(&r.recipient)
                    } else {
                        format!("session {}", crate::mesh::short(&r.recipient))
                    },
                    key: r.recipient.to_hex(),
                    state: serde_json::to_value(r.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                })
                .collect()
        });
        Ok(StatusReport {
            id: id.to_hex(),
            state: "accepted".into(),
            error: None,
            seq: Some(seq),
            target,
            recipients,
        })
    }
}

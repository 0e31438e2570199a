//! Peers from a member's side: the mesh's members and their sessions as
//! this device verified them (`peer_list`, every page), a recipient as a
//! user types it, and this session's own presence (`presence_set`: status
//! and encrypted summary).

use claudemesh_crypto::MemberKey;
use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::safety::SafetyNumber;
use claudemesh_proto::clock::now_ms;
use claudemesh_proto::frames::{PeerListQuery, PresenceSet, Status};
use claudemesh_proto::{BrokerFrame, ClientFrame};

use crate::client::MeshClient;
use crate::error::{ClientError, InvalidRequest, MissingKey};
use crate::mesh::{PeerView, SessionProfile};
use crate::session::unexpected;

/// Most `peers` pages one listing reads (a broker that never stops paging
/// cannot hold the client forever).
const MAX_PEER_PAGES: usize = 1000;

impl MeshClient {
    /// Resolves a recipient as typed by a user (name, key prefix, session
    /// name, `member:`/`session:` key), asking the broker for the peer list
    /// when a session name may be meant.
    pub async fn resolve(&self, to: &str) -> Result<Target, ClientError> {
        if crate::mesh::names_a_session(to) {
            // `<member>@<name>`: only a connected session of that member.
            let peers = self.peers().await?;
            return self.with_state(|s| s.resolve(to, &peers));
        }
        match self.with_state(|s| s.resolve(to, &[])) {
            Ok(t) => Ok(t),
            Err(ClientError::NoSuchPeer(_)) => {
                let peers = self.peers().await?;
                self.with_state(|s| s.resolve(to, &peers))
            }
            Err(e) => Err(e),
        }
    }

    /// The peer a user names to verify (`peer verify`, the gateway's
    /// safety route): its member key, display name and the safety number
    /// this member and it share. Refuses a name that is not one other
    /// member.
    pub async fn safety_of(
        &self,
        peer: &str,
    ) -> Result<(MemberKey, String, SafetyNumber), ClientError> {
        let member = crate::grants::resolve_member(self, peer).await?;
        self.with_state(|s| {
            if member == s.member_key().public() {
                return Err(ClientError::Invalid(InvalidRequest::VerifySelf));
            }
            Ok((
                member,
                s.display_name(&member),
                crate::mesh::pins::safety_number(s, &member),
            ))
        })
    }

    /// The mesh's members and their presence, as this device verified them
    /// (every page of the broker's list).
    pub async fn peers(&self) -> Result<Vec<PeerView>, ClientError> {
        let session = self.session();
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PEER_PAGES {
            let query = after.clone();
            let frame = session
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
        Ok(session.write_state(|s| s.peer_views(&all, now)))
    }

    /// Sets this session's status and/or summary (encrypted).
    pub async fn set_presence(
        &self,
        status: Option<Status>,
        summary: Option<String>,
    ) -> Result<(), ClientError> {
        let session = self.session();
        let mut profile = session.presence().1;
        let blob = match &summary {
            Some(text) => {
                profile.summary = Some(text.clone()).filter(|t| !t.is_empty());
                Some(
                    session
                        .read_state(|s| s.seal_presence(&profile))
                        .ok_or(ClientError::MissingKey(MissingKey::Summary))?,
                )
            }
            None => None,
        };
        // The broker answers presence_set only when it fails.
        session
            .request_unanswered(|req| {
                ClientFrame::PresenceSet(PresenceSet {
                    req: Some(req),
                    status,
                    summary: blob,
                    peer_type: None,
                })
            })
            .await?;
        session.presence_taken(status, summary.is_some().then_some(profile));
        Ok(())
    }

    /// This session's status and published details as last set.
    pub fn presence(&self) -> (Status, SessionProfile) {
        self.session().presence()
    }
}

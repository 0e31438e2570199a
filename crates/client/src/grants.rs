//! Grants (TM7): who may reach this member, and how. The member's signed
//! [`GrantSet`] lives in `meshes/<id>/grants.json` (0600; the backup takes
//! it along). Every change is signed with the member key, written there, and
//! pushed to the broker (`grants_set`), which enforces it; it is pushed again
//! after each connect. The client checks it once more on receipt: a message
//! whose sender these grants refuse is acked and recorded as a rejection,
//! never shown, even if the broker delivered it (an older set, or a broker
//! that ignores grants).
//!
//! A sender with no entry may do everything. `block` leaves the sender no
//! capability (optionally silently: the sender is not told), `revoke all`
//! the same but never silent, `grant` adds capabilities back to the entry,
//! `unblock` removes it.

//!
//! [`crate::grant_set`]: the grant set, its file and the check on receipt
//! (the session reads it there, below every feature); this file: a change
//! by peer name, pushed to the broker.

use claudemesh_crypto::PublicKey;

use crate::client::MeshClient;
use crate::error::ClientError;
pub use crate::grant_set::*;
use crate::home::Home;
use claudemesh_crypto::MemberKey;

impl MeshClient {
    /// Hands the broker this member's signed grant set (it enforces it from
    /// then on); returns the version the broker holds. The session sends
    /// the same `grants_set` again after each connect.
    pub async fn push_grants(
        &self,
        set: &claudemesh_crypto::grants::GrantSet,
    ) -> Result<u64, ClientError> {
        self.session().wait_up().await?;
        self.session().push_grants(set).await
    }
}

/// Resolves `peer` (a name or key, as other peer commands take) to one
/// member, changes the grants, and pushes them to the broker. Returns the
/// member and its name.
pub async fn change(
    client: &MeshClient,
    home: &Home,
    peer: &str,
    change: GrantChange,
) -> Result<(PublicKey, String), ClientError> {
    let member = resolve_member(client, peer).await?;
    let set = client.with_state(|s| change_local(home, s, member.0, &change))?;
    client.push_grants(&set).await?;
    let name = client.with_state(|s| s.display_name(&member));
    Ok((member.0, name))
}

/// The member a peer name or key stands for.
pub async fn resolve_member(client: &MeshClient, peer: &str) -> Result<MemberKey, ClientError> {
    let target = client.resolve(peer).await?;
    client.with_state(|s| {
        s.member_of_target(&target)
            .ok_or_else(|| ClientError::NotOnePeer {
                peer: peer.to_owned(),
            })
    })
}

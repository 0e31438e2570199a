//! How the CLI and the MCP server name peers (TM8): every sender of a shown
//! message through the client's one rule (`MeshState::sender_labels`: the
//! display name, invisible characters shown as `?`, with the short key when
//! it does not tell the member apart — another member's name looks the same
//! (`claudemesh_client::lookalike`: case, invisible characters, look-alike
//! letters ignored), or it is altered, not plain ASCII, or shaped like a
//! key — marked when it looks like the name of a pin of another key), the
//! warning printed
//! once per such impostor, and who a direct message reached — always the
//! verified member (name and short key) and, for one session, that session
//! and its name — never a bare `session:<hex>`.

use std::collections::HashSet;

use claudemesh_client::MeshClient;
use claudemesh_client::home::Home;
use claudemesh_client::mesh::pins::{self, Pins};
use claudemesh_client::mesh::{Label, MeshState, SenderLabels, session_display_name, short};
use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::{MeshId, PublicKey};
use serde::Serialize;

/// This mesh's pins; a file that cannot be read counts as none, with a
/// warning (names are then shown without the "not the one you verified"
/// marks, and sends still check the pins themselves).
pub fn pins_or_warn(home: &Home, mesh: &MeshId) -> Pins {
    Pins::load(home, mesh).unwrap_or_else(|e| {
        eprintln!("warning: {e}; names cannot be checked against the keys you verified");
        Pins::default()
    })
}

/// The label of a sender given as a key in hex (as stored in the inbox).
pub fn label_hex(state: &MeshState, labels: &SenderLabels, hex: &str) -> Label {
    match PublicKey::from_hex(hex) {
        Ok(k) => labels.label(state, &k),
        Err(_) => {
            let s = crate::output::short(hex).to_owned();
            Label {
                text: s.clone(),
                name: s,
                key: hex.to_owned(),
                ambiguous: false,
                pin_mismatch: false,
                verified: false,
                pinned_name: None,
            }
        }
    }
}

/// Prints the pin warning once per key whose name is that of a pin of
/// another key.
#[derive(Debug, Default)]
pub struct Warnings(HashSet<String>);

impl Warnings {
    /// Warns on stderr about `label` if it is an impostor not warned about yet.
    pub fn check(&mut self, label: &Label) {
        if let Some(pinned) = &label.pinned_name
            && self.0.insert(label.key.clone())
        {
            eprintln!(
                "{} (This message is from {}.)",
                pins::changed_warning(pinned),
                label.text
            );
        }
    }
}

/// Who a sent message reached, as this device verified it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reached {
    /// For people: `alice (1bbf6ba3)`, `alice (1bbf6ba3), session alice@api
    /// (4e362ed2)`, or the fan-out target (`#deploys`, `@eng`, `*`).
    #[serde(skip)]
    pub text: String,
    /// The member's label (`to` in JSON) for a direct message.
    #[serde(skip)]
    pub name: Option<String>,
    /// The member's key (hex), for a direct message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_key: Option<String>,
    /// The session's key (hex), for a message to one session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_session: Option<String>,
    /// That session's name as shown (`alice@api`, or `mallory: api` for a
    /// name that is not its member's), when it published one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_session_name: Option<String>,
    /// The member's name does not tell it apart (another member's name
    /// looks the same, or it is altered, not plain ASCII, or key-shaped):
    /// the key tells.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub name_ambiguous: bool,
}

/// Who `target` reaches: for a direct message the verified member, and for
/// a session target that session (its name from the peer list).
pub async fn reached(client: &MeshClient, pins: &Pins, target: &Target) -> Reached {
    let Some(member) = client.with_state(|s| s.member_of_target(target)) else {
        return Reached {
            text: target.to_string(),
            ..Reached::default()
        };
    };
    let label = client.with_state(|s| s.sender_label(&member, pins));
    let mut out = Reached {
        text: label.with_key(),
        name: Some(label.text.clone()),
        to_key: Some(member.to_hex()),
        name_ambiguous: label.ambiguous,
        ..Reached::default()
    };
    if let Target::Session(session) = target {
        let hex = session.to_hex();
        let published = match client.peers().await {
            Ok(peers) => peers.iter().find_map(|p| {
                let s = p.sessions.iter().find(|s| s.key == hex)?;
                let name = s.name.as_deref()?;
                Some(session_display_name(&p.name, name))
            }),
            Err(e) => {
                tracing::info!("cannot list peers to name the session: {e}");
                None
            }
        };
        out.text = match &published {
            Some(n) => format!("{}, session {n} ({})", out.text, short(session)),
            None => format!("{}, session {}", out.text, short(session)),
        };
        out.to_session = Some(hex);
        out.to_session_name = published;
    }
    out
}

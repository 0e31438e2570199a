//! How the CLI and the MCP server warn about names (TM8): the pins read
//! with a warning when they cannot be, and the warning printed once per
//! sender whose name is that of a pin of another key. The naming rule
//! itself, and the labels of senders, recipients and whom a message
//! reached, are the client's ([`claudemesh_client::naming`], re-exported
//! here), shared with the gateway.

use std::collections::HashSet;

use claudemesh_client::home::Home;
use claudemesh_client::mesh::Label;
use claudemesh_client::mesh::pins::{self, Pins};
use claudemesh_crypto::MeshId;

pub use claudemesh_client::naming::{label_hex, reached};

/// This mesh's pins; a file that cannot be read counts as none, with a
/// warning (names are then shown without the "not the one you verified"
/// marks, and sends still check the pins themselves).
pub fn pins_or_warn(home: &Home, mesh: &MeshId) -> Pins {
    Pins::load(home, mesh).unwrap_or_else(|e| {
        eprintln!("warning: {e}; names cannot be checked against the keys you verified");
        Pins::default()
    })
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

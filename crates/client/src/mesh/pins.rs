//! Safety numbers and pinned keys (TM8). A member checks a peer's key out
//! of band by comparing the 60-digit safety number both screens show
//! (`claudemesh peer verify`), then pins it (`--mark`): the pair (member
//! key, display name) is kept in `meshes/<id>/pins.json`. If the log later
//! shows a different key under a pinned name, or a name that looks like it
//! (`аlice` with a Cyrillic `а`, `alice` with a zero-width space: see
//! [`crate::mesh::names_look_alike`]) — the person re-joined with a new
//! key, or someone took their name — every command that touches that
//! peer warns, and direct messages to it are refused until it is verified
//! again.

use claudemesh_crypto::safety::SafetyNumber;
use claudemesh_crypto::{MeshId, PublicKey};
use serde::{Deserialize, Serialize};

use super::state::MeshState;
use crate::error::ClientError;
use crate::home::{Home, write_private_file};

/// One verified key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The member key (hex) the safety number was computed with.
    pub member: String,
    /// The display name it had when it was verified.
    pub name: String,
    /// When, unix seconds.
    pub verified_at: u64,
}

/// Every pin of one mesh on this device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pins {
    /// The pins, at most one per member key.
    pub pins: Vec<Pin>,
}

/// What this device knows about a peer's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinStatus {
    /// Never verified.
    Unverified,
    /// This exact key was verified.
    Verified,
    /// A different key was verified under this peer's name: it changed.
    Changed {
        /// The name the pin was made under.
        name: String,
        /// The key that was verified (hex).
        pinned: String,
    },
}

/// The safety number of this member and `peer`.
pub fn safety_number(state: &MeshState, peer: &PublicKey) -> SafetyNumber {
    SafetyNumber::compute(&state.member_key().public(), peer)
}

impl Pins {
    /// Reads a mesh's pins (none when the file does not exist).
    pub fn load(home: &Home, mesh: &MeshId) -> Result<Self, ClientError> {
        let path = home.mesh_file(mesh, "pins.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::Local(format!(
                    "{} is damaged ({e}); delete it and verify your peers again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Pins::default()),
            Err(e) => Err(ClientError::Local(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Writes a mesh's pins (0600).
    pub fn save(&self, home: &Home, mesh: &MeshId) -> Result<(), ClientError> {
        let path = home.mesh_file(mesh, "pins.json");
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| ClientError::Local(format!("cannot encode pins: {e}")))?;
        write_private_file(&path, &json)
    }

    /// Pins `member` under `name`, replacing any pin of that key or name.
    pub fn pin(&mut self, member: &PublicKey, name: &str, now_secs: u64) {
        let hex = member.to_hex();
        self.pins
            .retain(|p| p.member != hex && !p.name.eq_ignore_ascii_case(name));
        self.pins.push(Pin {
            member: hex,
            name: name.to_owned(),
            verified_at: now_secs,
        });
    }

    /// The status of a current member's key.
    pub fn status(&self, state: &MeshState, member: &PublicKey) -> PinStatus {
        let hex = member.to_hex();
        if self.pins.iter().any(|p| p.member == hex) {
            return PinStatus::Verified;
        }
        let name = state.display_name(member);
        // The same comparison as the labels' mark (TM8): a name that only
        // looks like a pinned one (`аlice`, `alice\u{200B}`) is that name.
        match self
            .pins
            .iter()
            .find(|p| crate::mesh::names::names_look_alike(&p.name, &name))
        {
            Some(p) => PinStatus::Changed {
                name: p.name.clone(),
                pinned: p.member.clone(),
            },
            None => PinStatus::Unverified,
        }
    }

    /// Refuses a direct message to a member whose pinned key changed.
    pub fn check_send(&self, state: &MeshState, member: &PublicKey) -> Result<(), ClientError> {
        match self.status(state, member) {
            PinStatus::Changed { name, .. } => Err(ClientError::KeyChanged(name)),
            PinStatus::Verified | PinStatus::Unverified => Ok(()),
        }
    }
}

/// The warning every command prints for a peer whose pinned key changed.
pub fn changed_warning(name: &str) -> String {
    format!(
        "WARNING: the key of {name} is not the one you verified. It may be a new device of \
         theirs, or someone else using the name. Compare safety numbers again \
         (claudemesh peer verify {name}) before you trust it; messages to it are refused until then."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_replaces_older_pins_of_the_key_or_name() {
        let (a, b) = (
            claudemesh_crypto::SigningKey::generate().public(),
            claudemesh_crypto::SigningKey::generate().public(),
        );
        let mut pins = Pins::default();
        pins.pin(&a, "bob", 1);
        pins.pin(&b, "Bob", 2);
        assert_eq!(pins.pins.len(), 1);
        assert_eq!(pins.pins[0].member, b.to_hex());
        let json = serde_json::to_string(&pins).unwrap();
        assert_eq!(serde_json::from_str::<Pins>(&json).unwrap(), pins);
    }
}

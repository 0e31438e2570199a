//! Names for what a bare [`Hash32`] or [`PublicKey`] stands for: a
//! [`MeshId`] (the hash of a mesh's genesis entry), a [`MemberKey`] (a
//! member's identity key, as the membership log admits it) and a
//! [`SessionKey`] (a key a member certified for one session).
//!
//! Each is a transparent wrapper: the same JSON (`#[serde(transparent)]`),
//! the same `Display` and `Debug` text as the bare value, and `From` both
//! ways, so code can adopt them one signature at a time and a mixed-up
//! argument (a session key where a member key belongs) stops compiling.
//! No existing signature uses them yet.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::encoding::Hash32;
use crate::keys::PublicKey;

/// Declares a transparent newtype over `$inner` with conversions both ways
/// and the inner value's serde, `Display` and `Debug`.
macro_rules! transparent_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty), $get:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The bare value.
            pub const fn $get(&self) -> &$inner {
                &self.0
            }
        }

        impl From<$inner> for $name {
            fn from(inner: $inner) -> Self {
                $name(inner)
            }
        }

        impl From<$name> for $inner {
            fn from(named: $name) -> Self {
                named.0
            }
        }

        impl AsRef<$inner> for $name {
            fn as_ref(&self) -> &$inner {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}

transparent_newtype!(
    /// A mesh's id: the hash of its genesis entry ([`crate::log::Roster::mesh_id`]).
    MeshId(Hash32),
    as_hash
);

transparent_newtype!(
    /// A member's identity (ed25519) key: the key the membership log admits,
    /// gives a role and removes, and that certifies the member's sessions.
    MemberKey(PublicKey),
    as_key
);

transparent_newtype!(
    /// A session's key: certified by a member key for one Claude Code
    /// session, script or MCP server (a [`crate::cert::SessionCert`]); it
    /// signs that connection's hellos and envelopes.
    SessionKey(PublicKey),
    as_key
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn json(v: &impl Serialize) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn each_name_reads_and_writes_exactly_as_its_bare_value() {
        let hash = Hash32([7; 32]);
        let key = SigningKey::from_seed(&[3; 32]).public();
        let mesh = MeshId::from(hash);
        let member = MemberKey::from(key);
        let session = SessionKey::from(key);

        assert_eq!(json(&mesh), json(&hash));
        assert_eq!(json(&member), json(&key));
        assert_eq!(json(&session), json(&key));
        assert_eq!(mesh.to_string(), hash.to_string());
        assert_eq!(format!("{mesh:?}"), format!("{hash:?}"));
        assert_eq!(format!("{member:?}"), format!("{key:?}"));
        assert_eq!(format!("{session}"), format!("{key}"));

        let back: MeshId = serde_json::from_str(&json(&hash)).unwrap();
        assert_eq!(back, mesh);
        let back: MemberKey = serde_json::from_str(&json(&key)).unwrap();
        assert_eq!(PublicKey::from(back), key);
        assert!(serde_json::from_str::<SessionKey>("\"zz\"").is_err());
        assert_eq!(*session.as_key(), key);
        assert_eq!(*mesh.as_hash(), hash);
    }
}

//! Names for what a bare [`Hash32`] or [`PublicKey`] stands for: a
//! [`MeshId`] (the hash of a mesh's genesis entry), a [`MemberKey`] (a
//! member's identity key, as the membership log admits it) and a
//! [`SessionKey`] (a key a member certified for one session).
//!
//! Each is a transparent wrapper: the same JSON (`#[serde(transparent)]`),
//! the same `Display` and `Debug` text as the bare value, and `From` both
//! ways, so code can adopt them one signature at a time and a mixed-up
//! argument (a session key where a member key belongs) stops compiling.
//! The wire format is unchanged: each reads and writes exactly as its bare
//! value.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::encoding::{DecodeError, Hash32};
use crate::keys::{KeyError, PublicKey, Signature};

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

/// The all-zero id: no mesh hashes to it, so it stands for "none yet"
/// where a value is required (a replica's wake-up before it names a mesh).
impl Default for MeshId {
    fn default() -> Self {
        MeshId(Hash32::ZERO)
    }
}

impl MeshId {
    /// The raw bytes (what transcripts and the store hold).
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
        Hash32::from_hex(s).map(MeshId)
    }
}

/// What the two key names share with [`PublicKey`]: their bytes, hex and
/// signature check.
macro_rules! key_methods {
    ($name:ident) => {
        impl $name {
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                self.0.as_bytes()
            }

            /// Lowercase hex, 64 characters.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }

            /// Parses 64 hex characters as a valid ed25519 point.
            pub fn from_hex(s: &str) -> Result<Self, KeyError> {
                PublicKey::from_hex(s).map($name)
            }

            /// Verifies `signature` over `message` by this key.
            pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
                self.0.verify(message, signature)
            }
        }

        /// Every read-only use of a [`PublicKey`] (its box key, its bytes)
        /// applies to a named one, and `&key` passes where code below the
        /// naming still takes a bare `&PublicKey` (the roster, boxes).
        /// The other way needs the name: a `PublicKey`, or the other kind
        /// of key, does not pass where a `$name` is asked for.
        impl std::ops::Deref for $name {
            type Target = PublicKey;
            fn deref(&self) -> &PublicKey {
                &self.0
            }
        }

        impl PartialEq<PublicKey> for $name {
            fn eq(&self, other: &PublicKey) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for PublicKey {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

key_methods!(MemberKey);
key_methods!(SessionKey);

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

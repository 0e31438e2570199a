//! Who a message is for: one member, one session, a group, a topic or the
//! whole mesh, and the names groups and topics may have. Its own module
//! because both the membership log (topic and group names) and envelopes
//! use it, and neither should import the other for it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::encoding::DecodeError;
use crate::ids::{MemberKey, SessionKey};
use crate::keys::PublicKey;

/// Longest `@group` or `#topic` name, in bytes.
pub const MAX_TARGET_NAME_BYTES: usize = 64;

/// Who a message is for. Wire form (a string): `member:<64 hex>`,
/// `session:<64 hex>`, `@<group>`, `#<topic id>`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Every session of one member (direct, `crypto_box` to the member key).
    Member(MemberKey),
    /// One session (direct, `crypto_box` to the session key).
    Session(SessionKey),
    /// A group, hierarchical with `/` (`@eng` also reaches `@eng/backend`).
    Group(String),
    /// A topic, by id.
    Topic(String),
    /// Every member of the mesh.
    Broadcast,
}

impl Target {
    /// Whether the body is a `crypto_box` to one key (member or session).
    pub fn is_direct(&self) -> bool {
        matches!(self, Target::Member(_) | Target::Session(_))
    }
}

/// Group and topic names: 1–64 bytes of `[A-Za-z0-9._/-]`, not starting or
/// ending with `/`, no empty path segment.
pub fn validate_target_name(name: &str) -> Result<(), DecodeError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TARGET_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && !name.split('/').any(str::is_empty);
    if ok {
        Ok(())
    } else {
        Err(DecodeError::Invalid(
            "group or topic name (1-64 of A-Z a-z 0-9 . _ - /)",
        ))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Member(k) => write!(f, "member:{k}"),
            Target::Session(k) => write!(f, "session:{k}"),
            Target::Group(g) => write!(f, "@{g}"),
            Target::Topic(t) => write!(f, "#{t}"),
            Target::Broadcast => f.write_str("*"),
        }
    }
}

impl FromStr for Target {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = |hex: &str| {
            PublicKey::from_hex(hex).map_err(|_| DecodeError::Invalid("target public key"))
        };
        if s == "*" {
            Ok(Target::Broadcast)
        } else if let Some(hex) = s.strip_prefix("member:") {
            Ok(Target::Member(MemberKey(key(hex)?)))
        } else if let Some(hex) = s.strip_prefix("session:") {
            Ok(Target::Session(SessionKey(key(hex)?)))
        } else if let Some(g) = s.strip_prefix('@') {
            validate_target_name(g)?;
            Ok(Target::Group(g.to_owned()))
        } else if let Some(t) = s.strip_prefix('#') {
            validate_target_name(t)?;
            Ok(Target::Topic(t.to_owned()))
        } else {
            Err(DecodeError::Invalid(
                "target (member:<hex>, session:<hex>, @group, #topic or *)",
            ))
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_strings_roundtrip_and_reject_bad_names() {
        for bad in [
            "",
            "@",
            "#",
            "@a b",
            "@/x",
            "#x/",
            "member:zz",
            "nobody",
            "@a//b",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
        assert!(format!("@{}", "a".repeat(65)).parse::<Target>().is_err());
    }
}

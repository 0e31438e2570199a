//! Who may register a new mesh: the policy ([`MeshCreatePolicy`]) and the
//! operator's token that overrides it ([`MeshCreateToken`], kept only as a
//! digest).

use serde::Deserialize;

use super::error::ConfigError;

/// Who may register a new mesh (`mesh_create`). Whoever holds the
/// operator's mesh-creation token may, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MeshCreatePolicy {
    /// Only connections from this machine (a loopback peer address, with no
    /// `Forwarded`/`X-Forwarded-For`/`X-Real-IP` header: a reverse proxy on
    /// the same host does not make its clients local).
    #[default]
    Local,
    /// Anyone who can reach the broker.
    Anyone,
    /// No one (only token holders).
    Nobody,
}

impl std::str::FromStr for MeshCreatePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" | "loopback" => Ok(MeshCreatePolicy::Local),
            // `true`/`false` are what this setting took before it had three values.
            "anyone" | "true" | "yes" => Ok(MeshCreatePolicy::Anyone),
            "nobody" | "no" | "false" | "none" => Ok(MeshCreatePolicy::Nobody),
            other => Err(format!(
                "{other:?} is not a mesh-creation policy (local, anyone or nobody)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for MeshCreatePolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // YAML may say `true`/`false` (the old form) or a word.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(MeshCreatePolicy::Anyone),
            Raw::Bool(false) => Ok(MeshCreatePolicy::Nobody),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The operator's mesh-creation token, kept only as its SHA-256 so it is
/// compared in constant time and can never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MeshCreateToken([u8; 32]);

/// Shortest mesh-creation token accepted (it is a password for the broker).
pub const MIN_MESH_CREATE_TOKEN_LEN: usize = 16;

impl MeshCreateToken {
    /// The token for `secret` (at least [`MIN_MESH_CREATE_TOKEN_LEN`] characters).
    pub fn new(secret: &str) -> Result<Self, ConfigError> {
        let secret = secret.trim();
        if secret.chars().count() < MIN_MESH_CREATE_TOKEN_LEN {
            return Err(ConfigError::Invalid(format!(
                "the mesh-creation token must be at least {MIN_MESH_CREATE_TOKEN_LEN} characters"
            )));
        }
        Ok(MeshCreateToken(Self::digest(secret)))
    }

    fn digest(secret: &str) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(secret.trim().as_bytes()).into()
    }

    /// Whether `offered` is the token (constant time).
    pub fn matches(&self, offered: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(Self::digest(offered).ct_eq(&self.0))
    }
}

impl std::fmt::Debug for MeshCreateToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshCreateToken(<redacted>)")
    }
}

//! Invites as bearer secrets the broker never sees (TM6): the invite secret,
//! the keys derived from it, its URL/token and short-code forms, the proof
//! of possession a joiner shows the broker, and the encrypted welcome bundle
//! the broker stores for it.
//!
//! The broker only ever holds the invite's public key (in the log), its role,
//! uses and expiry, and the welcome bundle encrypted under a key derived from
//! the secret. The secret travels in the URL fragment (`#…`), which HTTP
//! clients never send to a server.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::boxes::{BoxError, EpochRootKey, NONCE_BYTES, Nonce, SymmetricKey, hkdf_sha256};
use crate::encoding::{Transcript, b64url_decode, b64url_encode, label};
use crate::ids::MeshId;
use crate::keys::{PublicKey, Signature, SigningKey, random_bytes};
use crate::log::Role;

/// Token format version byte.
pub const INVITE_TOKEN_VERSION: u8 = 1;
/// Longest broker URL an invite token may carry.
pub const MAX_BROKER_URL_BYTES: usize = 512;
/// Largest stored welcome bundle (nonce + ciphertext).
pub const MAX_BUNDLE_BYTES: usize = 8 * 1024;
/// Characters in a short code (Crockford base32, 5 bits each: 65 bits).
pub const SHORT_CODE_CHARS: usize = 13;
/// Argon2id memory for short codes, KiB (64 MiB).
pub const SHORT_CODE_M_COST_KIB: u32 = 64 * 1024;
/// Argon2id passes for short codes.
pub const SHORT_CODE_T_COST: u32 = 3;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Why an invite could not be parsed, proven or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// The text is not an invite URL, token or short code.
    #[error(
        "not a claudemesh invite (expected https://…/join#<token>, claudemesh://join/<token> or a token)"
    )]
    NotAnInvite,
    /// The token's version byte is unknown.
    #[error("invite format version {0} is not supported by this claudemesh; upgrade it")]
    UnsupportedVersion(u8),
    /// The token is not valid base64url or is too short.
    #[error("invite token is damaged (bad encoding or truncated); ask for a new link")]
    Damaged,
    /// The broker URL inside the token is not a ws:// or wss:// URL.
    #[error("invite names an invalid broker URL")]
    BadBrokerUrl,
    /// A short code of the wrong length or with characters outside the alphabet.
    #[error("not a valid short code (13 characters of 0-9 A-Z without I, L, O, U)")]
    BadShortCode,
    /// The bundle does not open with this secret (wrong invite, or altered).
    #[error("the invite's welcome bundle does not open with this invite (wrong or altered)")]
    BundleDoesNotOpen,
    /// The bundle opened but is not a valid bundle, or belongs to another invite.
    #[error("the invite's welcome bundle is malformed or belongs to another invite")]
    BundleMalformed,
    /// The bundle exceeds [`MAX_BUNDLE_BYTES`].
    #[error("welcome bundle is too large")]
    BundleTooLarge,
    /// The proof of possession does not verify.
    #[error("invite proof does not verify")]
    BadProof,
}

/// The 32-byte invite secret. Zeroized on drop, never printed.
#[derive(Clone)]
pub struct InviteSecret(Zeroizing<[u8; 32]>);

impl InviteSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        InviteSecret(Zeroizing::new(random_bytes()))
    }

    /// Wraps known secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        InviteSecret(Zeroizing::new(bytes))
    }

    /// The raw secret.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The invite signing key: seed = HKDF-SHA256(ikm = secret, salt = "",
    /// info = "claudemesh/invite-sign/v1").
    pub fn signing_key(&self) -> SigningKey {
        let seed = hkdf_sha256(self.as_bytes(), b"", label::INVITE_SIGN.as_bytes());
        SigningKey::from_seed(seed.as_bytes())
    }

    /// The invite public key the broker knows the invite by.
    pub fn public_key(&self) -> PublicKey {
        self.signing_key().public()
    }

    /// The welcome-bundle key: HKDF-SHA256(ikm = secret, salt = "",
    /// info = "claudemesh/invite-bundle/v1").
    pub fn bundle_key(&self) -> SymmetricKey {
        hkdf_sha256(self.as_bytes(), b"", label::INVITE_BUNDLE.as_bytes())
    }

    /// Proof of possession for the broker's challenge: the invite key signs
    /// `Transcript("claudemesh/invite-proof/v1").bytes(challenge).bytes(invite_pk)`.
    pub fn prove(&self, challenge: &[u8; 32]) -> Signature {
        let key = self.signing_key();
        key.sign(&proof_bytes(challenge, &key.public()))
    }
}

impl PartialEq for InviteSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}

impl Eq for InviteSecret {}

impl fmt::Debug for InviteSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteSecret(<redacted>)")
    }
}

fn proof_bytes(challenge: &[u8; 32], invite_key: &PublicKey) -> Vec<u8> {
    let mut t = Transcript::new(label::INVITE_PROOF);
    t.bytes(challenge).bytes(invite_key.as_bytes());
    t.into_bytes()
}

/// Checks a joiner's proof that it holds the secret behind `invite_key`.
pub fn verify_invite_proof(
    invite_key: &PublicKey,
    challenge: &[u8; 32],
    proof: &Signature,
) -> Result<(), InviteError> {
    invite_key
        .verify(&proof_bytes(challenge, invite_key), proof)
        .map_err(|_| InviteError::BadProof)
}

/// A full invite: the secret and the broker to join through.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    /// The bearer secret.
    pub secret: InviteSecret,
    /// The broker's websocket URL (`ws://` or `wss://`).
    pub broker_url: String,
}

impl fmt::Debug for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invite")
            .field("broker_url", &self.broker_url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn valid_broker_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"));
    match rest {
        Some(r) => {
            !r.is_empty()
                && url.len() <= MAX_BROKER_URL_BYTES
                && !r.starts_with('/')
                && url.bytes().all(|b| b.is_ascii_graphic())
        }
        None => false,
    }
}

impl Invite {
    /// A new invite for `broker_url`.
    pub fn generate(broker_url: &str) -> Result<Self, InviteError> {
        if !valid_broker_url(broker_url) {
            return Err(InviteError::BadBrokerUrl);
        }
        Ok(Invite {
            secret: InviteSecret::generate(),
            broker_url: broker_url.to_owned(),
        })
    }

    /// The token: base64url-no-pad of `0x01 ‖ secret[32] ‖ broker URL (UTF-8)`.
    pub fn token(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(Vec::with_capacity(33 + self.broker_url.len()));
        raw.push(INVITE_TOKEN_VERSION);
        raw.extend_from_slice(self.secret.as_bytes());
        raw.extend_from_slice(self.broker_url.as_bytes());
        Zeroizing::new(b64url_encode(&raw))
    }

    /// `https://<broker host[:port]>/join#<token>` (`http://` for a `ws://`
    /// broker). The token is in the fragment, which is never sent to a server.
    pub fn to_https_url(&self) -> Zeroizing<String> {
        let (scheme, rest) = match self.broker_url.strip_prefix("wss://") {
            Some(r) => ("https", r),
            None => ("http", self.broker_url.trim_start_matches("ws://")),
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        Zeroizing::new(format!("{scheme}://{host}/join#{}", self.token().as_str()))
    }

    /// `claudemesh://join/<token>`.
    pub fn to_app_url(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("claudemesh://join/{}", self.token().as_str()))
    }

    /// Parses any of: an https/http URL with `/join#<token>`,
    /// `claudemesh://join/<token>`, or a bare token. Surrounding whitespace
    /// is ignored.
    pub fn parse(text: &str) -> Result<Self, InviteError> {
        let text = text.trim();
        let token = if let Some(rest) = text.strip_prefix("claudemesh://join/") {
            rest
        } else if text.starts_with("https://") || text.starts_with("http://") {
            let (path, fragment) = text.split_once('#').ok_or(InviteError::NotAnInvite)?;
            if !path.trim_end_matches('/').ends_with("/join") {
                return Err(InviteError::NotAnInvite);
            }
            fragment
        } else if !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && text.len() > 44
        {
            text
        } else {
            return Err(InviteError::NotAnInvite);
        };
        let raw = Zeroizing::new(b64url_decode(token).map_err(|_| InviteError::Damaged)?);
        let (&version, rest) = raw.split_first().ok_or(InviteError::Damaged)?;
        if version != INVITE_TOKEN_VERSION {
            return Err(InviteError::UnsupportedVersion(version));
        }
        if rest.len() < 33 {
            return Err(InviteError::Damaged);
        }
        let (secret, url) = rest.split_at(32);
        let broker_url = std::str::from_utf8(url).map_err(|_| InviteError::BadBrokerUrl)?;
        if !valid_broker_url(broker_url) {
            return Err(InviteError::BadBrokerUrl);
        }
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(secret);
        Ok(Invite {
            secret: InviteSecret::from_bytes(bytes),
            broker_url: broker_url.to_owned(),
        })
    }
}

/// A short invite code for reading aloud: 13 Crockford base32 characters
/// (65 random bits), shown as `XXXX-XXXX-XXXX-X`. Its secret comes from
/// Argon2id, so a broker holding the invite public key would need ~2^64
/// Argon2id(64 MiB) evaluations on average to find the code.
#[derive(Clone, PartialEq, Eq)]
pub struct ShortCode(Zeroizing<String>);

impl ShortCode {
    /// A fresh random code.
    pub fn generate() -> Self {
        // 9 random bytes = 72 bits; the first 65 bits, 5 at a time.
        let bytes = Zeroizing::new(random_bytes::<9>());
        let mut bits: u128 = 0;
        for b in bytes.iter() {
            bits = (bits << 8) | u128::from(*b);
        }
        bits >>= 72 - 65;
        let mut code = Zeroizing::new(String::with_capacity(SHORT_CODE_CHARS));
        for i in (0..SHORT_CODE_CHARS).rev() {
            let idx = ((bits >> (5 * i)) & 31) as usize;
            code.push(char::from(CROCKFORD[idx]));
        }
        ShortCode(code)
    }

    /// Parses a code: case-insensitive, `-` and spaces ignored, `O`→`0`,
    /// `I`/`L`→`1`.
    pub fn parse(text: &str) -> Result<Self, InviteError> {
        let mut code = Zeroizing::new(String::with_capacity(SHORT_CODE_CHARS));
        for c in text.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c if c.is_ascii() && CROCKFORD.contains(&(c as u8)) => c,
                _ => return Err(InviteError::BadShortCode),
            };
            code.push(c);
        }
        if code.len() != SHORT_CODE_CHARS {
            return Err(InviteError::BadShortCode);
        }
        Ok(ShortCode(code))
    }

    /// The canonical 13 characters (uppercase, no dashes).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code grouped for display: `XXXX-XXXX-XXXX-X`.
    pub fn display(&self) -> Zeroizing<String> {
        let c = &self.0;
        Zeroizing::new(format!(
            "{}-{}-{}-{}",
            &c[..4],
            &c[4..8],
            &c[8..12],
            &c[12..]
        ))
    }

    /// The invite secret: Argon2id v1.3 (m = 64 MiB, t = 3, p = 1, 32 bytes)
    /// of the canonical code, with salt = the first 16 bytes of
    /// SHA-256("claudemesh/invite-code/v1"). Takes about half a second.
    pub fn derive_secret(&self) -> InviteSecret {
        let salt: [u8; 32] = Sha256::digest(label::INVITE_CODE.as_bytes()).into();
        let mut out = Zeroizing::new([0u8; 32]);
        let derived = Params::new(SHORT_CODE_M_COST_KIB, SHORT_CODE_T_COST, 1, Some(32))
            .map(|p| Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
            .and_then(|a| a.hash_password_into(self.0.as_bytes(), &salt[..16], out.as_mut()));
        if let Err(e) = derived {
            unreachable!("fixed Argon2id parameters are valid: {e}");
        }
        InviteSecret(out)
    }
}

impl fmt::Debug for ShortCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShortCode(<redacted>)")
    }
}

/// What a joiner learns from the broker-stored bundle: enough to verify the
/// log and read the mesh. Encrypted under the invite's bundle key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WelcomeBundle {
    /// The invite public key this bundle belongs to (binds bundle to invite).
    pub invite_key: PublicKey,
    /// The mesh id (hash of the genesis entry).
    pub mesh_id: MeshId,
    /// The mesh's name.
    pub mesh_name: String,
    /// The broker URL the inviter used.
    pub broker_url: String,
    /// The owner's member key (the root of the log's authority chain).
    pub owner: PublicKey,
    /// The role the invite grants.
    pub role: Role,
    /// The epoch of `root_key`.
    pub epoch: u64,
    /// The epoch's root key (secret).
    #[serde(with = "root_key_hex")]
    pub root_key: SymmetricKey,
    /// Unix seconds.
    pub created_at: u64,
}

impl WelcomeBundle {
    /// The root key as an [`EpochRootKey`].
    pub fn epoch_root(&self) -> EpochRootKey {
        EpochRootKey::from_bytes(self.epoch, *self.root_key.as_bytes())
    }
}

impl fmt::Debug for WelcomeBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WelcomeBundle")
            .field("mesh_id", &self.mesh_id)
            .field("epoch", &self.epoch)
            .field("root_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

mod root_key_hex {
    use serde::{Deserialize, Deserializer, Serializer};
    use zeroize::Zeroizing;

    use crate::boxes::SymmetricKey;

    pub fn serialize<S: Serializer>(k: &SymmetricKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Zeroizing::new(hex::encode(k.as_bytes())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SymmetricKey, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        let bytes =
            crate::encoding::decode_hex_array::<32>(&s).map_err(serde::de::Error::custom)?;
        Ok(SymmetricKey::from_bytes(bytes))
    }
}

/// Encrypts a bundle for storage at the broker: `nonce[24] ‖
/// crypto_secretbox(JSON(bundle), nonce, bundle_key)`.
pub fn seal_bundle(secret: &InviteSecret, bundle: &WelcomeBundle) -> Result<Vec<u8>, InviteError> {
    if bundle.invite_key != secret.public_key() {
        return Err(InviteError::BundleMalformed);
    }
    let json =
        Zeroizing::new(serde_json::to_vec(bundle).map_err(|_| InviteError::BundleMalformed)?);
    let nonce = Nonce::random();
    let mut out = nonce.0.to_vec();
    out.extend_from_slice(&secret.bundle_key().encrypt(&json, &nonce));
    if out.len() > MAX_BUNDLE_BYTES {
        return Err(InviteError::BundleTooLarge);
    }
    Ok(out)
}

/// Opens a stored bundle with the invite secret.
pub fn open_bundle(secret: &InviteSecret, blob: &[u8]) -> Result<WelcomeBundle, InviteError> {
    if blob.len() > MAX_BUNDLE_BYTES {
        return Err(InviteError::BundleTooLarge);
    }
    if blob.len() < NONCE_BYTES {
        return Err(InviteError::BundleDoesNotOpen);
    }
    let (nonce, ct) = blob.split_at(NONCE_BYTES);
    let mut n = [0u8; NONCE_BYTES];
    n.copy_from_slice(nonce);
    let json = secret
        .bundle_key()
        .decrypt(ct, &Nonce(n))
        .map_err(|_: BoxError| InviteError::BundleDoesNotOpen)?;
    let bundle: WelcomeBundle =
        serde_json::from_slice(&json).map_err(|_| InviteError::BundleMalformed)?;
    if bundle.invite_key != secret.public_key() {
        return Err(InviteError::BundleMalformed);
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::Hash32;
    use proptest::prelude::*;

    fn bundle(secret: &InviteSecret) -> WelcomeBundle {
        WelcomeBundle {
            invite_key: secret.public_key(),
            mesh_id: MeshId(Hash32([3; 32])),
            mesh_name: "demo".into(),
            broker_url: "ws://127.0.0.1:7900".into(),
            owner: SigningKey::from_seed(&[1; 32]).public(),
            role: Role::Member,
            epoch: 2,
            root_key: SymmetricKey::from_bytes([9; 32]),
            created_at: 1_700_000_000,
        }
    }

    #[test]
    fn every_url_form_gives_the_same_invite() {
        let inv = Invite::generate("wss://mesh.example.com:8443/ws").unwrap();
        let https = inv.to_https_url();
        assert!(
            https.starts_with("https://mesh.example.com:8443/join#"),
            "{}",
            https.as_str()
        );
        for form in [
            https.as_str(),
            inv.to_app_url().as_str(),
            inv.token().as_str(),
        ] {
            assert_eq!(Invite::parse(&format!("  {form}\n")).unwrap(), inv);
        }
        let local = Invite::generate("ws://127.0.0.1:7900").unwrap();
        assert!(
            local
                .to_https_url()
                .starts_with("http://127.0.0.1:7900/join#")
        );
        assert_eq!(Invite::parse(&local.to_https_url()).unwrap(), local);
    }

    #[test]
    fn bad_invites_get_clear_errors() {
        assert_eq!(Invite::parse("hello"), Err(InviteError::NotAnInvite));
        assert_eq!(
            Invite::parse("https://x/join"),
            Err(InviteError::NotAnInvite)
        );
        assert_eq!(
            Invite::parse("https://x/other#abc"),
            Err(InviteError::NotAnInvite)
        );
        assert_eq!(
            Invite::parse("claudemesh://join/!!!"),
            Err(InviteError::Damaged)
        );
        let inv = Invite::generate("ws://h:1").unwrap();
        let token = inv.token();
        assert_eq!(
            Invite::parse(&format!("claudemesh://join/{}", &token[..20])),
            Err(InviteError::Damaged)
        );
        let mut raw = b64url_decode(&token).unwrap();
        raw[0] = 9;
        assert_eq!(
            Invite::parse(&format!("claudemesh://join/{}", b64url_encode(&raw))),
            Err(InviteError::UnsupportedVersion(9))
        );
        let mut raw = vec![1u8];
        raw.extend_from_slice(&[0; 32]);
        raw.extend_from_slice(b"http://not-a-ws");
        assert_eq!(
            Invite::parse(&format!("claudemesh://join/{}", b64url_encode(&raw))),
            Err(InviteError::BadBrokerUrl)
        );
        assert_eq!(
            Invite::generate("http://x").unwrap_err(),
            InviteError::BadBrokerUrl
        );
    }

    #[test]
    fn the_debug_form_hides_the_secret() {
        let inv = Invite::generate("ws://h:1").unwrap();
        let shown = format!("{inv:?} {:?} {:?}", inv.secret, bundle(&inv.secret));
        assert!(!shown.contains(&hex::encode(inv.secret.as_bytes())));
        assert!(!shown.contains(&hex::encode([9u8; 32])));
    }

    #[test]
    fn bundle_opens_only_with_its_secret() {
        let s = InviteSecret::generate();
        let blob = seal_bundle(&s, &bundle(&s)).unwrap();
        let opened = open_bundle(&s, &blob).unwrap();
        assert_eq!(opened, bundle(&s));
        assert_eq!(opened.epoch_root().epoch, 2);
        assert_eq!(
            open_bundle(&InviteSecret::generate(), &blob),
            Err(InviteError::BundleDoesNotOpen)
        );
        for i in [0, 10, 30, blob.len() - 1] {
            let mut bad = blob.clone();
            bad[i] ^= 1;
            assert_eq!(open_bundle(&s, &bad), Err(InviteError::BundleDoesNotOpen));
        }
        assert_eq!(
            open_bundle(&s, &blob[..10]),
            Err(InviteError::BundleDoesNotOpen)
        );
        // A bundle made for another invite key is refused even if it opens.
        let other = InviteSecret::generate();
        assert_eq!(
            seal_bundle(&s, &bundle(&other)),
            Err(InviteError::BundleMalformed)
        );
    }

    #[test]
    fn proof_binds_challenge_and_key() {
        let s = InviteSecret::generate();
        let proof = s.prove(&[1; 32]);
        verify_invite_proof(&s.public_key(), &[1; 32], &proof).unwrap();
        assert_eq!(
            verify_invite_proof(&s.public_key(), &[2; 32], &proof),
            Err(InviteError::BadProof)
        );
        let other = InviteSecret::generate();
        assert_eq!(
            verify_invite_proof(&other.public_key(), &[1; 32], &proof),
            Err(InviteError::BadProof)
        );
    }

    #[test]
    fn short_codes_normalize_and_derive_deterministically() {
        let code = ShortCode::generate();
        assert_eq!(code.as_str().len(), SHORT_CODE_CHARS);
        let shown = code.display();
        assert_eq!(shown.len(), 16);
        assert_eq!(ShortCode::parse(&shown.to_lowercase()).unwrap(), code);
        let parsed = ShortCode::parse("o1il-abcd-efgh-j").unwrap();
        assert_eq!(parsed.as_str(), "0111ABCDEFGHJ");
        assert_eq!(
            ShortCode::parse("ABCD-EFGH"),
            Err(InviteError::BadShortCode)
        );
        assert_eq!(
            ShortCode::parse("ABCD-EFGH-JKMN-U"),
            Err(InviteError::BadShortCode)
        );
        // Known answer, pinned: a change of KDF or salt would break old codes.
        let s = ShortCode::parse("0123-4567-89AB-C")
            .unwrap()
            .derive_secret();
        assert_eq!(
            s,
            ShortCode::parse("0123456789abc").unwrap().derive_secret()
        );
        assert_eq!(
            hex::encode(s.as_bytes()),
            "91d0ebc00f1804786526207d95c55c25db62d8db9eb4943d3d9c2fcaa615185a" // libsodium crypto_pwhash agrees
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn token_roundtrip(secret in any::<[u8; 32]>(), host in "[a-z0-9.-]{1,30}", port in 1u16..) {
            let inv = Invite { secret: InviteSecret::from_bytes(secret), broker_url: format!("wss://{host}:{port}/ws") };
            prop_assert_eq!(Invite::parse(&inv.to_https_url()).unwrap(), inv.clone());
            prop_assert_eq!(Invite::parse(&inv.to_app_url()).unwrap(), inv);
        }
    }
}

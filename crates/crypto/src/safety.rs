//! Safety numbers (TM8): a 60-digit number both members compute from their
//! two identity (member) keys, identical on both screens, to compare out of
//! band. Symmetric and order-independent (the two per-key fingerprints are
//! sorted), domain-separated, and iterated (5200 rounds of SHA-512 per key)
//! so that finding a colliding key costs far more than a hash.

use std::fmt;

use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::encoding::{Transcript, label};
use crate::keys::PublicKey;

/// Iterations of SHA-512 per key fingerprint.
pub const SAFETY_NUMBER_ITERATIONS: u32 = 5200;
/// Fingerprint format version (part of the hashed input).
pub const SAFETY_NUMBER_VERSION: u64 = 1;

/// The safety number of a pair of member keys.
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyNumber {
    digits: String,
}

/// The 30-digit fingerprint of one key.
fn fingerprint(key: &PublicKey) -> String {
    let mut t = Transcript::new(label::SAFETY_NUMBER);
    t.u64(SAFETY_NUMBER_VERSION).bytes(key.as_bytes());
    let mut h: [u8; 64] = Sha512::digest(t.as_bytes()).into();
    for _ in 0..SAFETY_NUMBER_ITERATIONS {
        let mut d = Sha512::new();
        d.update(h);
        d.update(key.as_bytes());
        h = d.finalize().into();
    }
    let mut out = String::with_capacity(30);
    for chunk in h[..30].chunks_exact(5) {
        let v = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        out.push_str(&format!("{:05}", v % 100_000));
    }
    out
}

impl SafetyNumber {
    /// Computes the number for members `a` and `b` (order does not matter).
    pub fn compute(a: &PublicKey, b: &PublicKey) -> Self {
        let (fa, fb) = (fingerprint(a), fingerprint(b));
        let (lo, hi) = if fa <= fb { (fa, fb) } else { (fb, fa) };
        SafetyNumber { digits: lo + &hi }
    }

    /// The 60 digits without spaces.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The text a QR code carries: `claudemesh-sn:1:<60 digits>`.
    pub fn qr_payload(&self) -> String {
        format!("claudemesh-sn:1:{}", self.digits)
    }

    /// Whether `text` (60 digits, spaces and dashes ignored, or a QR payload)
    /// is this number. Constant-time over the digits.
    pub fn matches(&self, text: &str) -> bool {
        let text = text.trim();
        let text = text.strip_prefix("claudemesh-sn:1:").unwrap_or(text);
        let given: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        given.len() == self.digits.len()
            && bool::from(given.as_bytes().ct_eq(self.digits.as_bytes()))
    }
}

impl fmt::Display for SafetyNumber {
    /// 12 groups of 5 digits separated by spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.digits.as_bytes().chunks(5).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn key(n: u8) -> PublicKey {
        SigningKey::from_seed(&[n; 32]).public()
    }

    #[test]
    fn symmetric_and_shaped() {
        let n = SafetyNumber::compute(&key(1), &key(2));
        assert_eq!(n, SafetyNumber::compute(&key(2), &key(1)));
        assert_eq!(n.digits().len(), 60);
        assert!(n.digits().bytes().all(|b| b.is_ascii_digit()));
        let shown = n.to_string();
        assert_eq!(shown.split(' ').count(), 12);
        assert!(shown.split(' ').all(|g| g.len() == 5));
        assert!(n.matches(&shown));
        assert!(n.matches(n.digits()));
        assert!(n.matches(&n.qr_payload()));
        assert!(!n.matches(&shown[..50]));
    }

    #[test]
    fn changes_when_either_key_changes() {
        let n = SafetyNumber::compute(&key(1), &key(2));
        assert_ne!(n, SafetyNumber::compute(&key(1), &key(3)));
        assert_ne!(n, SafetyNumber::compute(&key(4), &key(2)));
    }

    #[test]
    fn known_answer() {
        // Pinned: both sides of every released build must agree forever.
        assert_eq!(
            SafetyNumber::compute(&key(1), &key(2)).to_string(),
            "24482 05363 43427 45077 59303 59220 25562 71770 73885 39406 42980 20866" // matches an independent Python implementation of docs/security.md
        );
    }
}

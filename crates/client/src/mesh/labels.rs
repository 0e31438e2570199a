//! How a sender is named where its messages are shown (TM8): bare when
//! its name is plain and unique, with its short key when the name is
//! shared, looks like another, or imitates a verified one.

use std::collections::HashMap;

use claudemesh_crypto::PublicKey;
use serde::Serialize;

use crate::lookalike;
use crate::mesh::pins::Pins;

use super::names::{name_key, shown_name};
use super::state::{MeshState, short};

impl MeshState {
    /// How senders are named where their messages are shown; build it once
    /// per listing and ask [`SenderLabels::label`] per message.
    pub fn sender_labels(&self, pins: &Pins) -> SenderLabels {
        SenderLabels::new(self.known_names(), pins)
    }

    /// How one sender is named where its messages are shown (see
    /// [`SenderLabels::label`]).
    pub fn sender_label(&self, member: &PublicKey, pins: &Pins) -> Label {
        self.sender_labels(pins).label(self, member)
    }
}

/// How a member is named where its messages are shown (TM8). A display name
/// is chosen by its member, so two members can pick the same one, or one
/// that looks the same (`аlice` with a Cyrillic `а`, `alice` with a
/// zero-width space), or the name of someone this device verified: the
/// text then carries the short key, and the verified one says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    /// What to print: `alice`, `alice (3fa2c1d0)` when the name does not
    /// tell this member apart, `alice (3fa2c1d0, NOT the alice you
    /// verified)` when it is the name of a pin of another key.
    pub text: String,
    /// The display name as shown (invisible characters replaced by `?`,
    /// parentheses and their look-alikes by brackets), or the short key
    /// when there is none.
    pub name: String,
    /// The member key (hex).
    pub key: String,
    /// The name does not tell this member apart, so the text carries the
    /// short key: another member — current, or departed and known to this
    /// device — bears a name that looks the same, the name had to be
    /// altered to be shown, it is not plain printable ASCII, or it is
    /// shaped like a key prefix that is not this member's.
    pub ambiguous: bool,
    /// The name is one the user verified (`peer verify --mark`) with a
    /// different key.
    pub pin_mismatch: bool,
    /// This very key is pinned.
    pub verified: bool,
    /// The name of the pin this key does not match.
    #[serde(skip)]
    pub pinned_name: Option<String>,
}

impl Label {
    /// The text with the short key always in it (`alice (3fa2c1d0)`), for
    /// confirmations that must say which member was reached.
    pub fn with_key(&self) -> String {
        if self.ambiguous || self.pin_mismatch {
            self.text.clone()
        } else if self.name == self.key[..8.min(self.key.len())] {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, &self.key[..8.min(self.key.len())])
        }
    }
}

/// The names senders bear on this device, and its pins: what
/// [`SenderLabels::label`] needs, gathered once per listing.
#[derive(Debug, Clone)]
pub struct SenderLabels {
    names: HashMap<PublicKey, String>,
    /// Name key ([`name_key`]) → the keys that bear it.
    bearers: HashMap<String, Vec<PublicKey>>,
    /// Pins: (key hex, name key, name).
    pins: Vec<(String, String, String)>,
}

impl SenderLabels {
    /// The labels of the keys in `names` (key → display name), and `pins`.
    fn new(names: HashMap<PublicKey, String>, pins: &Pins) -> SenderLabels {
        let mut bearers: HashMap<String, Vec<PublicKey>> = HashMap::new();
        for (key, name) in &names {
            bearers.entry(name_key(name)).or_default().push(*key);
        }
        SenderLabels {
            names,
            bearers,
            pins: pins
                .pins
                .iter()
                .map(|p| (p.member.clone(), name_key(&p.name), p.name.clone()))
                .collect(),
        }
    }

    /// The one rule for naming a sender wherever its messages are shown
    /// (`inbox`, `topic history`, message status, the MCP server's pushes
    /// and tools): the display name as shown ([`shown_name`]); with the
    /// short key when another member this device knows (current or
    /// departed) bears a name that looks the same ([`name_key`]: any case,
    /// invisible characters, compatibility forms and confusable letters
    /// ignored), the name had to be altered to be shown, it is not plain
    /// printable ASCII, or it is shaped like a key prefix (8+ hex digits)
    /// that is not this member's; marked when the name looks like that of
    /// a pin of another key.
    pub fn label(&self, state: &MeshState, member: &PublicKey) -> Label {
        match self.names.get(member) {
            Some(raw) => self.label_named(member, raw),
            None => self.label_named(member, &state.name_of(member)),
        }
    }

    /// [`SenderLabels::label`] for `member` bearing the display name `raw`.
    fn label_named(&self, member: &PublicKey, raw: &str) -> Label {
        let (name, altered) = shown_name(raw);
        let norm = name_key(raw);
        let hex = member.to_hex();
        let unplain = !lookalike::is_plain(&name);
        let key_shaped =
            lookalike::looks_like_key(&name) && !hex.starts_with(&name.to_ascii_lowercase());
        let shared = self
            .bearers
            .get(&norm)
            .is_some_and(|keys| keys.iter().any(|k| k != member));
        let verified = self.pins.iter().any(|(k, ..)| *k == hex);
        let pinned_name = if verified {
            None
        } else {
            self.pins
                .iter()
                .find(|(k, n, _)| *n == norm && *k != hex)
                .map(|(_, _, name)| shown_name(name).0)
        };
        let ambiguous = shared || altered || unplain || key_shaped;
        let key = short(member);
        let text = if ambiguous || pinned_name.is_some() {
            let mut notes = vec![key.clone()];
            if verified {
                notes.push("verified".into());
            }
            if let Some(p) = &pinned_name {
                notes.push(format!("NOT the {p} you verified"));
            }
            format!("{name} ({})", notes.join(", "))
        } else {
            name.clone()
        };
        Label {
            text,
            name,
            key: hex,
            ambiguous,
            pin_mismatch: pinned_name.is_some(),
            verified,
            pinned_name,
        }
    }
}

#[cfg(test)]
mod tests {
    use claudemesh_crypto::SigningKey;

    use super::*;

    fn member(seed: u8) -> PublicKey {
        SigningKey::from_seed(&[seed; 32]).public()
    }

    fn labels(names: &[(PublicKey, &str)], pins: &[(PublicKey, &str)]) -> SenderLabels {
        let mut p = Pins::default();
        for (k, n) in pins {
            p.pin(k, n, 0);
        }
        SenderLabels::new(
            names.iter().map(|(k, n)| (*k, (*n).to_owned())).collect(),
            &p,
        )
    }

    #[test]
    fn plain_ascii_names_stay_bare_and_duplicates_carry_the_key() {
        let (a, b, c) = (member(1), member(2), member(3));
        let l = labels(&[(a, "alice"), (b, "bob"), (c, "carol")], &[]);
        for (k, n) in [(a, "alice"), (b, "bob"), (c, "carol")] {
            let label = l.label_named(&k, n);
            assert_eq!(label.text, n);
            assert!(!label.ambiguous && !label.pin_mismatch);
        }
        let l = labels(&[(a, "alice"), (b, "Alice")], &[]);
        assert_eq!(
            l.label_named(&b, "Alice").text,
            format!("Alice ({})", short(&b))
        );
        assert!(l.label_named(&a, "alice").ambiguous);
    }

    /// Look-alikes of `alice` (TM8): each, and alice, carry their key; a
    /// pin of alice marks every one of them.
    #[test]
    fn look_alike_names_carry_the_key_and_are_marked_against_pins() {
        let alice = member(1);
        let impostors = [
            "\u{430}lice",
            "alice\u{200b}",
            "alice\u{feff}",
            "\u{202e}alice",
            "\u{ff41}lice",
            "al\u{ad}ice",
            "ALICE",
            "aiice\u{301}",
        ];
        for (i, raw) in impostors.iter().enumerate() {
            let mallory = member(10 + u8::try_from(i).unwrap_or(0));
            let l = labels(&[(alice, "alice"), (mallory, raw)], &[]);
            let label = l.label_named(&mallory, raw);
            assert!(label.ambiguous, "{raw:?}");
            assert!(
                label.text.ends_with(&format!("({})", short(&mallory))),
                "{raw:?}: {}",
                label.text
            );
            if *raw != "aiice\u{301}" {
                // It shares alice's name, so alice carries her key too.
                assert!(l.label_named(&alice, "alice").ambiguous, "{raw:?}");
            }
            // After the user pinned the real alice, the impostor is marked
            // (when its name looks like hers), she is not.
            let l = labels(&[(alice, "alice"), (mallory, raw)], &[(alice, "alice")]);
            let label = l.label_named(&mallory, raw);
            if *raw == "aiice\u{301}" {
                assert!(!label.pin_mismatch);
                continue;
            }
            assert!(label.pin_mismatch, "{raw:?}");
            assert_eq!(label.pinned_name.as_deref(), Some("alice"));
            assert!(
                label.text.contains("NOT the alice you verified"),
                "{}",
                label.text
            );
            let real = l.label_named(&alice, "alice");
            assert!(real.verified && !real.pin_mismatch, "{raw:?}");
            // Alone in the mesh, it is still flagged against the pin.
            let l = labels(&[(mallory, raw)], &[(alice, "alice")]);
            assert!(l.label_named(&mallory, raw).pin_mismatch, "{raw:?}");
        }
    }

    #[test]
    fn non_ascii_and_key_shaped_names_always_carry_the_key() {
        let (a, b) = (member(1), member(2));
        let b_hex = b.to_hex();
        for raw in [
            "\u{430}lice",
            "Jos\u{e9}",
            "\u{674e}",
            "\u{ff41}lice",
            "1bbf6ba3",
            "DEADBEEF",
        ] {
            let l = labels(&[(a, raw)], &[]);
            let label = l.label_named(&a, raw);
            assert!(label.ambiguous, "{raw:?}");
            assert_eq!(label.text, format!("{} ({})", label.name, short(&a)));
            assert_eq!(label.with_key(), label.text);
        }
        // A member without a name is shown by its own short key, bare.
        let own = short(&b);
        let l = labels(&[(b, &own)], &[]);
        let label = l.label_named(&b, &own);
        assert_eq!(label.text, own);
        assert!(!label.ambiguous);
        assert_eq!(label.with_key(), own);
        // A longer prefix of its own key is not an imitation either.
        let l = labels(&[(b, &b_hex[..12])], &[]);
        assert!(!l.label_named(&b, &b_hex[..12]).ambiguous);
    }
}

//! Names: a member's display name (from its decrypted profile), who a
//! name means, and how a name may be shown and compared (TM8: invisible
//! characters, look-alike letters, a session's `<member>@<name>`).

use std::collections::HashMap;

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::Target;
use claudemesh_crypto::log::Profile;

use crate::error::ClientError;
use crate::lookalike;

use super::state::{MeshState, short};

impl MeshState {
    /// A member's decrypted profile, if this device can read it.
    pub fn profile(&self, member: &PublicKey) -> Option<Profile> {
        let sealed = self.roster.member(member)?.profile.as_ref()?;
        let root = self.root(sealed.epoch)?;
        Profile::open(root, &self.config.id, &sealed.nonce, &sealed.ciphertext).ok()
    }

    /// A member's display name, or its short key.
    pub fn display_name(&self, member: &PublicKey) -> String {
        self.profile(member)
            .map(|p| p.name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| short(member))
    }

    /// The display name of any key this log ever admitted: a current
    /// member's from its profile; a departed one's from the last profile it
    /// published (this device may still hold that epoch's key); else the
    /// short key.
    pub fn name_of(&self, key: &PublicKey) -> String {
        if self.roster.is_member(key) {
            return self.display_name(key);
        }
        self.entries
            .iter()
            .rev()
            .find_map(|e| match &e.body {
                claudemesh_crypto::log::EntryBody::Profile {
                    epoch,
                    nonce,
                    ciphertext,
                } if e.author == *key => {
                    let root = self.root(*epoch)?;
                    Profile::open(root, &self.config.id, nonce, ciphertext)
                        .ok()
                        .map(|p| p.name)
                        .filter(|n| !n.is_empty())
                }
                _ => None,
            })
            .unwrap_or_else(|| short(key))
    }

    /// The member whose display name is `name`, if exactly one member's
    /// name looks like `name` (see [`MeshState::resolve`]) and that name is
    /// `name` (any case, compatibility forms alike).
    pub fn member_named(&self, name: &str) -> Option<PublicKey> {
        match self.members_named_as_candidates(name).as_slice() {
            [(_, Target::Member(k), true)] => Some(k.0),
            _ => None,
        }
    }

    /// The display name of every key this device can name: current members
    /// (from their profiles, else their short keys) and departed members
    /// whose last profile this device can still open.
    pub(super) fn known_names(&self) -> HashMap<PublicKey, String> {
        let mut names: HashMap<PublicKey, String> = self
            .roster
            .members()
            .keys()
            .map(|m| (*m, self.display_name(m)))
            .collect();
        // A departed member: its last profile this device can open.
        for e in self.entries.iter().rev() {
            if let claudemesh_crypto::log::EntryBody::Profile {
                epoch,
                nonce,
                ciphertext,
            } = &e.body
                && !names.contains_key(&e.author)
                && let Some(name) = self
                    .root(*epoch)
                    .and_then(|root| Profile::open(root, &self.config.id, nonce, ciphertext).ok())
                    .map(|p| p.name)
                    .filter(|n| !n.is_empty())
            {
                names.insert(e.author, name);
            }
        }
        names
    }
}

/// A display name as it can be shown: every invisible character
/// ([`lookalike::is_invisible`]: controls, format characters such as
/// zero-width spaces and bidi controls, default-ignorable code points)
/// becomes `?`, and parentheses and their look-alikes (`（`, `﹙`, …)
/// brackets (so a name cannot imitate a key suffix such as `alice
/// (3fa2c1d0)`), surrounding spaces go. Returns whether it changed.
pub fn shown_name(raw: &str) -> (String, bool) {
    let shown: String = raw
        .trim()
        .chars()
        .map(|c| match c {
            c if lookalike::is_invisible(c) => '?',
            c => bracket(c),
        })
        .collect();
    let altered = shown != raw;
    (shown, altered)
}

/// `(` and `)` and their look-alikes (`（`, `﹙`, …) as `[` and `]`.
fn bracket(c: char) -> char {
    match c {
        '(' => '[',
        ')' => ']',
        c if c.is_ascii() => c,
        c => match lookalike::char_skeleton(c).as_str() {
            "(" => '[',
            ")" => ']',
            _ => c,
        },
    }
}

/// What two display names must share to be the same name for a reader:
/// the [`lookalike::skeleton`] of the name (NFKC, case folded, invisible
/// characters dropped, confusable letters mapped to one, surrounding spaces
/// dropped) up to any bracket or parenthesis, so `alice (1bbf6ba3)` is
/// `alice`.
pub(super) fn name_key(raw: &str) -> String {
    let bracketed: String = raw.chars().map(bracket).collect();
    lookalike::skeleton(&bracketed)
        .split('[')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Whether two display names are the same name to a reader (TM8): the rule
/// [`SenderLabels::label`] groups bearers and matches pins by, so `alice`,
/// `ALICE`, `аlice` (Cyrillic `а`) and `alice\u{200B}` are one name.
pub fn names_look_alike(a: &str, b: &str) -> bool {
    name_key(a) == name_key(b)
}

/// Whether what a user typed is a session name, `<member>@<name>`: an `@`
/// after the first character (a leading `@` is a group).
pub fn names_a_session(to: &str) -> bool {
    let to = to.trim();
    !to.starts_with('@')
        && !to.starts_with("member:")
        && !to.starts_with("session:")
        && to.contains('@')
}

/// Whether a session's published name is one of its member's: the part
/// before its first `@` is exactly the member's display name (any case,
/// compatibility forms alike: [`lookalike::exact`], as display names are
/// matched; a look-alike such as `аlice@api` for `alice` is not). Only such
/// names are matched by name (`send alice@api`); any other is shown as
/// `<member>: <name>` and reached by key prefix only, so no session can
/// pose as another member's.
pub fn session_name_is_members(member_name: &str, session_name: &str) -> bool {
    session_name.split_once('@').is_some_and(|(who, _)| {
        !who.is_empty() && lookalike::exact(who) == lookalike::exact(member_name)
    })
}

/// How a session's name is shown: as published when it is its member's
/// ([`session_name_is_members`]), else `<member>: <name>`.
pub fn session_display_name(member_name: &str, session_name: &str) -> String {
    if session_name_is_members(member_name, session_name) {
        session_name.to_owned()
    } else {
        format!("{member_name}: {session_name}")
    }
}

/// The error for a name (`name`, in what was asked: `query`) that only one
/// member's name looks like, without being it.
pub(super) fn look_alike(query: &str, name: &str, candidate: &str) -> ClientError {
    ClientError::LookAlikePeer {
        query: query.to_owned(),
        name: name.to_owned(),
        candidate: candidate.to_owned(),
    }
}

/// The error for a recipient that names several candidates.
pub(super) fn ambiguous_peer(query: &str, found: Vec<(String, Target)>) -> ClientError {
    ClientError::AmbiguousPeer {
        query: query.to_owned(),
        candidates: found
            .into_iter()
            .map(|f| f.0)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_belong_to_the_member_named_before_the_first_at() {
        assert!(session_name_is_members("alice", "alice@api"));
        assert!(session_name_is_members("Alice", "ALICE@api@x"));
        assert!(!session_name_is_members("mallory", "alice@api"));
        assert!(!session_name_is_members("alice", "api"));
        assert!(!session_name_is_members("alice", "alice"));
        assert!(!session_name_is_members("", "@api"));
        // A display name with an `@` has no session name of its own.
        assert!(!session_name_is_members("bob@corp", "bob@corp@api"));
        assert_eq!(session_display_name("alice", "alice@api"), "alice@api");
        assert_eq!(
            session_display_name("mallory", "alice@api"),
            "mallory: alice@api"
        );
        assert!(names_a_session(" alice@api "));
        assert!(!names_a_session("@eng"));
        assert!(!names_a_session("alice"));
        assert!(!names_a_session("member:00"));
    }

    #[test]
    fn shown_names_cannot_imitate_a_key_suffix() {
        assert_eq!(shown_name("alice"), ("alice".into(), false));
        assert_eq!(
            shown_name("alice (1bbf6ba3)"),
            ("alice [1bbf6ba3]".into(), true)
        );
        assert_eq!(shown_name(" alice\n"), ("alice".into(), true));
        assert_eq!(shown_name("al\u{1b}ice"), ("al?ice".into(), true));
        assert_eq!(name_key("Alice [1bbf6ba3]"), "alice");
        assert_eq!(name_key("Alice (1bbf6ba3)"), "alice");
        assert_eq!(name_key("ALICE"), name_key("alice"));
        // Look-alike parentheses are brackets too.
        assert_eq!(
            shown_name("alice\u{ff08}1bbf6ba3\u{ff09}"),
            ("alice[1bbf6ba3]".into(), true)
        );
        assert_eq!(shown_name("alice \u{fe59}x\u{fe5a}").0, "alice [x]");
    }

    #[test]
    fn invisible_characters_are_shown_and_ignored_in_comparisons() {
        for (raw, shown, like) in [
            ("alice\u{200b}", "alice?", "alice"),
            ("al\u{feff}ice", "al?ice", "alice"),
            ("\u{202e}ecila", "?ecila", "ecila"),
            ("alice\u{2066}", "alice?", "alice"),
            ("ali\u{ad}ce", "ali?ce", "alice"),
            ("alice\u{e0041}", "alice?", "alice"),
            ("alice\u{2028}x", "alice?x", "alicex"),
            ("al\u{1b}ice", "al?ice", "alice"),
        ] {
            assert_eq!(shown_name(raw), (shown.into(), true), "{raw:?}");
            assert!(names_look_alike(raw, like), "{raw:?}");
        }
        // A name is compared as a reader sees it, not by its code points.
        for twin in [
            "ALICE",
            "\u{430}lice",
            "alice\u{200b}",
            "\u{ff41}lice",
            " alice ",
            "al\u{ad}ice",
            "alice (1bbf6ba3)",
        ] {
            assert!(names_look_alike(twin, "alice"), "{twin:?}");
        }
        for other in ["alicia", "bob", "alice2", "al ice"] {
            assert!(!names_look_alike(other, "alice"), "{other:?}");
        }
    }
}

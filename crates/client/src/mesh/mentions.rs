//! `@name` mentions (pure rules, no I/O): where a mention starts in a
//! text, which members a text mentions, and whether a received message
//! is flagged for this member.

use claudemesh_crypto::PublicKey;
use claudemesh_crypto::envelope::VerifiedMessage;

use super::state::MeshState;

/// At most this many `@` in one post are looked at for mentions.
pub const MAX_MENTIONS: usize = 16;

/// Byte offsets just after each `@` that starts a mention (not inside a
/// word, so `bob@example.com` mentions no one), at most [`MAX_MENTIONS`].
fn mention_starts(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.match_indices('@')
        .filter(|(i, _)| {
            text[..*i]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric())
        })
        .map(|(i, _)| i + 1)
        .take(MAX_MENTIONS)
}

/// Whether `rest` starts with `name` (any ASCII case), followed by the end
/// or a character that cannot continue a name.
fn name_at(rest: &str, name: &str) -> bool {
    !name.is_empty()
        && rest
            .get(..name.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(name))
        && rest[name.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'))
}

/// Whether `text` mentions `name` (`@name`, any ASCII case).
pub fn mentions_name(text: &str, name: &str) -> bool {
    mention_starts(text).any(|at| name_at(&text[at..], name))
}

/// The members `text` mentions by display name (`@alice`, `@Bob Smith`),
/// in order, each once. At each `@` the longest matching name wins; a name
/// two members share mentions neither.
pub fn mentioned_members(state: &MeshState, text: &str) -> Vec<PublicKey> {
    let names: Vec<(PublicKey, String)> = state
        .roster()
        .members()
        .keys()
        .filter_map(|m| state.profile(m).map(|p| (*m, p.name)))
        .filter(|(_, n)| !n.is_empty())
        .collect();
    let mut out: Vec<PublicKey> = Vec::new();
    for at in mention_starts(text) {
        let rest = &text[at..];
        let mut hits: Vec<&(PublicKey, String)> =
            names.iter().filter(|(_, n)| name_at(rest, n)).collect();
        let Some(longest) = hits.iter().map(|(_, n)| n.len()).max() else {
            continue;
        };
        hits.retain(|(_, n)| n.len() == longest);
        if let [(k, _)] = hits.as_slice()
            && !out.contains(k)
        {
            out.push(*k);
        }
    }
    out
}

/// This member's display name: from its profile, else the local settings.
pub fn my_name(state: &MeshState) -> String {
    state
        .profile(&state.my_key())
        .map(|p| p.name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| state.config.display_name.clone())
}

/// Whether a received message is flagged for this member: a topic, group
/// or broadcast message whose body mentions `my_name`.
pub fn flags_me(msg: &VerifiedMessage, my_name: &str) -> bool {
    !msg.target().is_direct() && mentions_name(&String::from_utf8_lossy(msg.body()), my_name)
}

//! How text a peer chose is compared the way a reader sees it (TM8): two
//! display names that look alike must count as one name, and a word that
//! looks like `channel` must count as `channel`, whatever code points spell
//! them.
//!
//! - [`is_invisible`]: characters that show as nothing or reorder what
//!   follows — controls, format characters (`Cf`, bidi controls included),
//!   default-ignorable code points, line and paragraph separators, private
//!   use and unassigned code points.
//! - [`skeleton`]: the form two look-alike strings share: NFKC, invisible
//!   characters dropped, case folded, the UTS #39 confusable skeleton
//!   (from the `unicode-security` crate), lower case again, runs of spaces
//!   made one, trimmed. `alice`, `ALICE`, `аlice` (Cyrillic `а`),
//!   `alice\u{200B}`, `ａｌｉｃｅ` share one; so do the ASCII look-alikes
//!   `mallory`/`rnallory` and `bob`/`b0b`.
//! - [`exact`]: the form two strings share only when they are the same
//!   text up to compatibility forms and case (NFKC, case folded): for ASCII
//!   exactly `eq_ignore_ascii_case`.
//! - [`is_plain`], [`looks_like_key`]: names that are printable ASCII, and
//!   names shaped like a key prefix (8+ hex digits).
//! - [`starts_with_word`]: whether text begins with something read as a
//!   given ASCII word (`ｃｈａｎｎｅｌ`, `cha\u{200B}nnel`, `chаnnel` with a
//!   Cyrillic `а` all read as `channel`).

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};
use unicode_security::GeneralSecurityProfile;
use unicode_security::general_security_profile::IdentifierType;

/// Whether `c` shows as nothing, or changes how what follows is shown:
/// controls (`Cc`), format characters (`Cf`: zero-width characters, the
/// byte order mark, bidi controls, soft hyphen, tags), default-ignorable
/// code points (variation selectors, Hangul fillers, …), line and
/// paragraph separators, private-use and unassigned code points.
pub fn is_invisible(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    matches!(c.general_category_group(), GeneralCategoryGroup::Other)
        || matches!(
            c.general_category(),
            GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator
        )
        || c.identifier_type() == Some(IdentifierType::Default_Ignorable)
        // The skeleton drops exactly the default-ignorable code points.
        || unicode_security::skeleton(c.encode_utf8(&mut [0; 4])).next().is_none()
}

/// The form look-alike strings share (see the module docs): two names are
/// the same name to a reader when their skeletons are equal.
pub fn skeleton(s: &str) -> String {
    let visible: String = s.nfkc().filter(|c| !is_invisible(*c)).collect();
    let folded = fold_case(&visible);
    let skel: String = unicode_security::skeleton(&folded).collect();
    let lower = skel.to_lowercase();
    lower.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The skeleton of one character (see [`skeleton`]), without collapsing
/// spaces: empty for an invisible one.
pub fn char_skeleton(c: char) -> String {
    if is_invisible(c) {
        return String::new();
    }
    let visible: String = c.encode_utf8(&mut [0; 4]).nfkc().collect();
    let folded = fold_case(&visible);
    unicode_security::skeleton(&folded)
        .collect::<String>()
        .to_lowercase()
}

/// The form strings share only when they are the same text up to
/// compatibility forms and case: NFKC, case folded. Invisible characters
/// are kept, so `alice\u{200B}` is not exactly `alice`.
pub fn exact(s: &str) -> String {
    fold_case(&s.nfkc().collect::<String>()).nfkc().collect()
}

/// Whether every character of `s` is printable ASCII (space to `~`).
pub fn is_plain(s: &str) -> bool {
    s.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// Whether `s` is shaped like a key prefix: 8 or more hex digits.
pub fn looks_like_key(s: &str) -> bool {
    s.len() >= 8 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` starts with something a reader would take for `word` (an
/// ASCII word in lower case): its characters folded one at a time — NFKC,
/// case folding and the UTS #39 confusable skeleton, in either order, so
/// `I` counts as `l` as well as `i` — with invisible characters
/// ([`is_invisible`]) and combining marks skipped. Spaces are not skipped:
/// `chan nel` is not `channel`.
pub fn starts_with_word(s: &str, word: &str) -> bool {
    // One candidate per order of folding: (folded so far, still a match).
    let mut tries = [(String::new(), true), (String::new(), true)];
    for c in s.chars() {
        if tries
            .iter()
            .all(|(folded, ok)| !ok || folded.len() >= word.len())
        {
            break;
        }
        if is_invisible(c) || is_mark(c) {
            continue;
        }
        for (case_first, (folded, ok)) in [true, false].into_iter().zip(tries.iter_mut()) {
            if *ok && folded.len() < word.len() {
                folded.extend(fold_char(c, case_first).chars().filter(|c| !is_mark(*c)));
                *ok = word.starts_with(folded.as_str()) || folded.starts_with(word);
            }
        }
    }
    tries
        .iter()
        .any(|(folded, ok)| *ok && folded.starts_with(word))
}

/// One character folded for [`starts_with_word`]: NFKC, then case folding
/// and the confusable skeleton in the order asked, then lower case.
fn fold_char(c: char, case_first: bool) -> String {
    let nfkc: String = c.encode_utf8(&mut [0; 4]).nfkc().collect();
    if case_first {
        unicode_security::skeleton(&fold_case(&nfkc))
            .collect::<String>()
            .to_lowercase()
    } else {
        fold_case(&unicode_security::skeleton(&nfkc).collect::<String>())
    }
}

/// Whether `c` is a combining mark drawn on the character before it.
fn is_mark(c: char) -> bool {
    !c.is_ascii()
        && matches!(
            c.general_category(),
            GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark
        )
}

/// Full case folding, near enough: upper then lower case (`ß` and `SS`,
/// `ς` and `σ` fold alike).
fn fold_case(s: &str) -> String {
    s.to_uppercase().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters() {
        for c in [
            '\u{0}',
            '\u{7f}',
            '\u{85}',
            '\u{ad}',
            '\u{34f}',
            '\u{61c}',
            '\u{115f}',
            '\u{180e}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{2028}',
            '\u{2029}',
            '\u{202a}',
            '\u{202e}',
            '\u{2060}',
            '\u{2066}',
            '\u{2069}',
            '\u{206f}',
            '\u{3164}',
            '\u{fe0f}',
            '\u{feff}',
            '\u{ffa0}',
            '\u{fff9}',
            '\u{e000}',
            '\u{e0001}',
            '\u{e0041}',
            '\u{e0100}',
            '\u{1bca0}',
            '\u{1d173}',
            '\u{10ffff}',
            '\u{600}',
        ] {
            assert!(is_invisible(c), "{:x}", c as u32);
        }
        for c in [
            'a', ' ', '\u{a0}', 'é', 'а', '李', '\u{301}', '/', '(', '\u{3000}',
        ] {
            assert!(!is_invisible(c), "{:x}", c as u32);
        }
    }

    #[test]
    fn look_alikes_share_a_skeleton() {
        let alice = skeleton("alice");
        assert_eq!(alice, "alice");
        for twin in [
            "ALICE",
            " Alice ",
            "аlice",
            "alice\u{200b}",
            "al\u{feff}ice",
            "\u{202e}alice",
            "alice\u{2066}",
            "ａｌｉｃｅ",
            "al\u{ad}ice",
            "alice\u{fe0f}",
            "аlісе",
        ] {
            assert_eq!(skeleton(twin), alice, "{twin:?}");
        }
        assert_eq!(skeleton("mallory"), skeleton("rnallory"));
        assert_eq!(skeleton("bob"), skeleton("b0b"));
        assert_eq!(skeleton("a\u{a0} b"), skeleton("a b"));
        assert_eq!(skeleton("STRASSE"), skeleton("straße"));
        for other in ["alicia", "bob", "al ice", "alice2", "éalice"] {
            assert_ne!(skeleton(other), alice, "{other:?}");
        }
        assert_eq!(skeleton("\u{200b}"), "");
    }

    #[test]
    fn exact_is_case_and_compatibility_only() {
        assert_eq!(exact("ALICE"), exact("alice"));
        assert_eq!(exact("ａｌｉｃｅ"), exact("alice"));
        assert_ne!(exact("аlice"), exact("alice"));
        assert_ne!(exact("alice\u{200b}"), exact("alice"));
        assert_ne!(exact("b0b"), exact("bob"));
        for (a, b) in [("Bob", "bOB"), ("x-1", "X-1"), ("a@b", "A@B")] {
            assert_eq!(exact(a) == exact(b), a.eq_ignore_ascii_case(b));
        }
    }

    #[test]
    fn plain_and_key_shaped() {
        assert!(is_plain("alice (x) ~"));
        assert!(!is_plain("аlice"));
        assert!(!is_plain("alice\u{200b}"));
        assert!(!is_plain("al\tice"));
        assert!(looks_like_key("1bbf6ba3"));
        assert!(looks_like_key("DEADBEEF00"));
        assert!(!looks_like_key("1bbf6ba"));
        assert!(!looks_like_key("1bbf6bag"));
    }

    #[test]
    fn words_are_read_as_a_reader_reads_them() {
        for yes in [
            "channel",
            "CHANNEL>",
            "ｃｈａｎｎｅｌ＞",
            "cha\u{200b}nnel",
            "ch\u{ad}an\u{ad}nel",
            "ch\u{430}nnel",
            "\u{441}\u{4bb}\u{430}nnel",
            "chann\u{435}l",
            "channeI",
            "channe1",
            "cha\u{308}nnel",
            "chännel",
            "c\u{202e}hannel",
            "channels",
            "\u{1d41c}\u{1d421}annel",
        ] {
            assert!(starts_with_word(yes, "channel"), "{yes:?}");
        }
        for no in [
            "",
            "chan",
            "chan nel",
            "chanel",
            "canal",
            "xchannel",
            "chann-el",
            "chan\u{a0}nel",
        ] {
            assert!(!starts_with_word(no, "channel"), "{no:?}");
        }
    }

    #[test]
    fn char_skeletons() {
        assert_eq!(char_skeleton('ｃ'), "c");
        assert_eq!(char_skeleton('а'), "a");
        assert_eq!(char_skeleton('H'), "h");
        assert_eq!(char_skeleton('\u{200b}'), "");
        assert_eq!(char_skeleton('／'), "/");
        assert_eq!(char_skeleton('\u{2044}'), "/");
        assert_eq!(char_skeleton('\u{2215}'), "/");
        assert_eq!(char_skeleton('（'), "(");
    }
}

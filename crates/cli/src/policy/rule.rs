//! A rule of `allow:` or `deny:` in `policy.yaml`: a verb (`peer.ban`),
//! every verb of a noun (`peer.*`), or every verb (`*`).

use std::fmt;

use serde::Deserialize;

use crate::policy::verb::Verb;

/// A rule of `allow:` or `deny:`.
#[derive(Clone, PartialEq, Eq)]
pub enum Rule {
    /// `*`.
    Every,
    /// `noun.*`: every verb of a noun that has two-word verbs.
    Noun(&'static str),
    /// One verb.
    One(Verb),
}

impl Rule {
    /// Reads a rule as the file spells it.
    pub fn parse(s: &str) -> Result<Rule, String> {
        if s == "*" {
            return Ok(Rule::Every);
        }
        if let Ok(v) = s.parse::<Verb>() {
            return Ok(Rule::One(v));
        }
        let noun = s.strip_suffix(".*").and_then(|noun| {
            Verb::ALL
                .iter()
                .find_map(|v| v.noun().filter(|n| *n == noun))
        });
        match noun {
            Some(n) => Ok(Rule::Noun(n)),
            None => Err(format!(
                "unknown verb {s:?}: a rule is a verb such as peer.ban, a group such as peer.*, or *"
            )),
        }
    }

    /// Whether the rule covers `verb`.
    pub fn matches(&self, verb: Verb) -> bool {
        match self {
            Rule::Every => true,
            Rule::Noun(n) => verb.noun() == Some(*n),
            Rule::One(v) => *v == verb,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Every => f.write_str("*"),
            Rule::Noun(n) => write!(f, "{n}.*"),
            Rule::One(v) => f.write_str(v.as_str()),
        }
    }
}

/// `Rule("peer.*")`: refusals quote a rule this way (as they did when a
/// rule was a string in a tuple struct); kept so their text stays the same.
impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Rule").field(&self.to_string()).finish()
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Rule::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verb(s: &str) -> Verb {
        s.parse().unwrap()
    }

    #[test]
    fn rules_match_verbs_groups_and_everything() {
        let r = |s: &str| Rule::parse(s).unwrap();
        assert!(r("peer.ban").matches(verb("peer.ban")));
        assert!(!r("peer.ban").matches(verb("peer.kick")));
        assert!(r("peer.*").matches(verb("peer.kick")));
        assert!(!r("peer.*").matches(verb("mesh.leave")));
        assert!(r("*").matches(verb("restore")));
        assert!(Rule::parse("peer").is_err());
        assert!(Rule::parse("nothing.*").is_err());
        assert!(Rule::parse("restore.*").is_err());
        for v in Verb::ALL {
            assert!(Rule::parse(v.as_str()).is_ok(), "{v}");
        }
    }
}

//! Method names and the selector patterns rules use to pick methods.
//!
//! Syntax (google/api `DocumentationRule.selector`, as ESP applies it to every rule kind): a
//! comma-separated list of patterns; `*` alone means every method; a pattern may end in `.*`,
//! which matches one or more trailing name components. Any other `*` is invalid.

use std::fmt;

/// The fully qualified name of a method, `<proto package>.<Service>.<Method>`,
/// e.g. `endpoints.examples.bookstore.Bookstore.ListShelves`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector(String);

impl Selector {
    pub fn new(full_name: impl Into<String>) -> Self {
        Self(full_name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Selector {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// One pattern of a rule's selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectorPattern {
    /// `*`: every method.
    All,
    /// A full method name.
    Exact(String),
    /// `prefix.*`: every method whose name starts with `prefix.` and has at least one more
    /// component. Holds the prefix without the trailing `.*`.
    Prefix(String),
}

impl SelectorPattern {
    pub fn parse(text: &str) -> Result<Self, SelectorFault> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SelectorFault::Empty);
        }
        if text == "*" {
            return Ok(Self::All);
        }
        let (name, wildcard) = match text.strip_suffix(".*") {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        if name.contains('*') {
            return Err(SelectorFault::MisplacedWildcard);
        }
        if !name.split('.').all(is_identifier) {
            return Err(SelectorFault::InvalidName);
        }
        Ok(if wildcard {
            Self::Prefix(name.to_owned())
        } else {
            Self::Exact(name.to_owned())
        })
    }

    pub fn matches(&self, selector: &Selector) -> bool {
        let name = selector.as_str();
        match self {
            Self::All => true,
            Self::Exact(exact) => name == exact,
            Self::Prefix(prefix) => name
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|rest| !rest.is_empty()),
        }
    }
}

impl fmt::Display for SelectorPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}.*"),
        }
    }
}

/// A rule's whole selector: a non-empty list of patterns, matching when any pattern matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSelector(Vec<SelectorPattern>);

impl RuleSelector {
    pub fn parse(text: &str) -> Result<Self, SelectorFault> {
        text.split(',')
            .map(SelectorPattern::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn patterns(&self) -> &[SelectorPattern] {
        &self.0
    }

    pub fn matches(&self, selector: &Selector) -> bool {
        self.0.iter().any(|pattern| pattern.matches(selector))
    }
}

/// Why a selector does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorFault {
    /// The selector, or one pattern of a comma-separated list, is empty.
    Empty,
    /// A `*` that is neither the whole pattern nor a whole trailing component (`foo.b*`, `foo.*.bar`).
    MisplacedWildcard,
    /// A name component is empty or not a protobuf identifier (`foo..bar`, `foo.1x`).
    InvalidName,
}

impl fmt::Display for SelectorFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty pattern",
            Self::MisplacedWildcard => {
                "a wildcard must be the whole pattern (`*`) or its whole last component (`.*`)"
            }
            Self::InvalidName => "name components must be non-empty protobuf identifiers",
        })
    }
}

fn is_identifier(component: &str) -> bool {
    let mut chars = component.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST_SHELVES: &str = "endpoints.examples.bookstore.Bookstore.ListShelves";

    #[test]
    fn matching_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", LIST_SHELVES, true),
            (LIST_SHELVES, LIST_SHELVES, true),
            (
                "endpoints.examples.bookstore.Bookstore.GetShelf",
                LIST_SHELVES,
                false,
            ),
            (
                "endpoints.examples.bookstore.Bookstore.*",
                LIST_SHELVES,
                true,
            ),
            ("endpoints.examples.bookstore.*", LIST_SHELVES, true),
            ("endpoints.*", LIST_SHELVES, true),
            // A trailing `.*` needs at least one more component.
            (
                "endpoints.examples.bookstore.Bookstore.ListShelves.*",
                LIST_SHELVES,
                false,
            ),
            // Components match whole: `Book.*` does not match `Bookstore.…`.
            ("endpoints.examples.bookstore.Book.*", LIST_SHELVES, false),
            (
                "endpoints.examples.bookstore.Bookstore.List",
                LIST_SHELVES,
                false,
            ),
            // Lists: any pattern; spaces around patterns are ignored.
            (
                "a.B.C, endpoints.examples.bookstore.Bookstore.ListShelves",
                LIST_SHELVES,
                true,
            ),
            ("a.B.C,a.*", LIST_SHELVES, false),
        ];
        for (selector, method, want) in cases {
            let parsed = RuleSelector::parse(selector)
                .unwrap_or_else(|fault| panic!("{selector:?} should parse: {fault}"));
            assert_eq!(
                parsed.matches(&Selector::new(*method)),
                *want,
                "{selector:?} vs {method:?}"
            );
        }
    }

    #[test]
    fn invalid_table() {
        let cases: &[(&str, SelectorFault)] = &[
            ("", SelectorFault::Empty),
            ("a.B.C,", SelectorFault::Empty),
            ("a.B.C,,a.B.D", SelectorFault::Empty),
            ("foo.b*", SelectorFault::MisplacedWildcard),
            ("foo.*.bar", SelectorFault::MisplacedWildcard),
            ("*.Foo", SelectorFault::MisplacedWildcard),
            ("**", SelectorFault::MisplacedWildcard),
            ("foo.**", SelectorFault::MisplacedWildcard),
            (".*", SelectorFault::InvalidName),
            ("foo..bar", SelectorFault::InvalidName),
            ("foo.1bar", SelectorFault::InvalidName),
            ("foo/bar", SelectorFault::InvalidName),
        ];
        for (selector, want) in cases {
            assert_eq!(RuleSelector::parse(selector), Err(*want), "{selector:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["*", "a.b.C", "a.b.*"] {
            let pattern = SelectorPattern::parse(text).expect("valid");
            assert_eq!(pattern.to_string(), text);
        }
    }
}

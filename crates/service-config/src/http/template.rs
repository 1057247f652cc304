//! HTTP path templates (google/api/http.proto):
//!
//! ```text
//! Template = "/" | "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! esprit's restrictions beyond the grammar, each with its own error: `**` only as the last
//! segment (ESP also allows literals after it), a literal is RFC 3986 `pchar`s other than `:` and
//! `*` (percent-escapes included), an identifier is `[A-Za-z_][A-Za-z0-9_]*`, and a field is bound
//! by at most one variable. Literals and the verb are kept normalised: escapes of unreserved
//! characters decoded, other escapes in upper-case hex, so they compare with a request path
//! normalised the same way ([`normalize_literal`]).

use std::fmt;

/// A template segment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    /// A literal, normalised ([`normalize_literal`]).
    Literal(String),
    /// `*`: exactly one segment.
    Single,
    /// `**`: zero or more segments; always the last.
    Multi,
}

/// A variable: the dotted field path and the segments `[start, end)` it spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Variable {
    pub field: String,
    pub start: usize,
    pub end: usize,
}

impl Variable {
    /// `{name}` or `{name=*}`: one segment, fully percent-decoded. Anything longer, or holding
    /// `**`, is a multi-segment ("reserved expansion") variable.
    pub fn is_single(&self, segments: &[Segment]) -> bool {
        self.end == self.start + 1 && segments[self.start] != Segment::Multi
    }
}

/// A parsed path template. `Display` prints it back in normal form: `{name=*}` as `{name}`,
/// literals with needless percent-escapes decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    pub(crate) segments: Vec<Segment>,
    pub(crate) variables: Vec<Variable>,
    pub(crate) verb: Option<String>,
}

/// Why a path template does not parse. Positions count characters from 1. The messages are part
/// of `esprit config check`'s output; keep them stable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    #[error("a path template must start with '/'")]
    NoLeadingSlash,
    #[error("{} at position {at}, expected {expected}", describe(*.found))]
    Unexpected {
        at: usize,
        /// `None`: the end of the template.
        found: Option<char>,
        expected: &'static str,
    },
    #[error("'**' must be the last segment (position {at})")]
    WildcardNotLast { at: usize },
    #[error("variables cannot be nested (position {at})")]
    NestedVariable { at: usize },
    #[error("field {field:?} is bound by two variables")]
    DuplicateVariable { field: String },
}

fn describe(found: Option<char>) -> String {
    match found {
        Some(c) => format!("unexpected {c:?}"),
        None => "unexpected end of template".to_owned(),
    }
}

impl PathTemplate {
    pub fn parse(text: &str) -> Result<PathTemplate, TemplateError> {
        Parser {
            chars: text.chars().collect(),
            at: 0,
            segments: Vec::new(),
            variables: Vec::new(),
            multi_at: None,
        }
        .template()
    }

    /// The custom verb (`:cancel` → `cancel`), normalised.
    pub fn verb(&self) -> Option<&str> {
        self.verb.as_deref()
    }

    /// The dotted field paths of the variables, in template order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(|v| v.field.as_str())
    }

    /// What two templates must share to match the same requests: segments and verb.
    pub(crate) fn shape(&self) -> (&[Segment], Option<&str>) {
        (&self.segments, self.verb.as_deref())
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            f.write_str("/")?;
        }
        let mut i = 0;
        while i < self.segments.len() {
            f.write_str("/")?;
            match self.variables.iter().find(|v| v.start == i) {
                Some(var) => {
                    write!(f, "{{{}", var.field)?;
                    let spanned = &self.segments[var.start..var.end];
                    if spanned != [Segment::Single] {
                        f.write_str("=")?;
                        write_segments(f, spanned)?;
                    }
                    f.write_str("}")?;
                    i = var.end;
                }
                None => {
                    write_segments(f, &self.segments[i..=i])?;
                    i += 1;
                }
            }
        }
        if let Some(verb) = &self.verb {
            write!(f, ":{verb}")?;
        }
        Ok(())
    }
}

fn write_segments(f: &mut fmt::Formatter<'_>, segments: &[Segment]) -> fmt::Result {
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            f.write_str("/")?;
        }
        match segment {
            Segment::Literal(text) => f.write_str(text)?,
            Segment::Single => f.write_str("*")?,
            Segment::Multi => f.write_str("**")?,
        }
    }
    Ok(())
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    /// Position (1-based) of the first `**`.
    multi_at: Option<usize>,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn unexpected(&self, expected: &'static str) -> TemplateError {
        TemplateError::Unexpected {
            at: self.at + 1,
            found: self.peek(),
            expected,
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn template(mut self) -> Result<PathTemplate, TemplateError> {
        if !self.eat('/') {
            return Err(TemplateError::NoLeadingSlash);
        }
        let mut verb = None;
        if self.peek().is_some() {
            self.segments_(false)?;
            if self.eat(':') {
                verb = Some(self.literal("a verb after ':'")?);
            }
            if self.peek().is_some() {
                return Err(self.unexpected("'/', ':' or the end of the template"));
            }
        }
        if let Some(at) = self.multi_at
            && self.segments.last() != Some(&Segment::Multi)
        {
            return Err(TemplateError::WildcardNotLast { at });
        }
        for (i, var) in self.variables.iter().enumerate() {
            if self.variables[..i].iter().any(|v| v.field == var.field) {
                return Err(TemplateError::DuplicateVariable {
                    field: var.field.clone(),
                });
            }
        }
        Ok(PathTemplate {
            segments: self.segments,
            variables: self.variables,
            verb,
        })
    }

    fn segments_(&mut self, in_variable: bool) -> Result<(), TemplateError> {
        loop {
            self.segment(in_variable)?;
            if !self.eat('/') {
                return Ok(());
            }
        }
    }

    fn segment(&mut self, in_variable: bool) -> Result<(), TemplateError> {
        let start = self.at + 1;
        match self.peek() {
            Some('*') => {
                self.at += 1;
                if self.eat('*') {
                    self.multi_at.get_or_insert(start);
                    self.segments.push(Segment::Multi);
                } else {
                    self.segments.push(Segment::Single);
                }
                Ok(())
            }
            Some('{') if in_variable => Err(TemplateError::NestedVariable { at: start }),
            Some('{') => {
                self.at += 1;
                self.variable()
            }
            _ => {
                let literal = self.literal("a segment")?;
                self.segments.push(Segment::Literal(literal));
                Ok(())
            }
        }
    }

    fn variable(&mut self) -> Result<(), TemplateError> {
        let mut field = self.identifier()?;
        while self.eat('.') {
            field.push('.');
            field.push_str(&self.identifier()?);
        }
        let start = self.segments.len();
        if self.eat('=') {
            self.segments_(true)?;
        } else {
            // {field} is {field=*}.
            self.segments.push(Segment::Single);
        }
        if !self.eat('}') {
            return Err(self.unexpected("'}'"));
        }
        self.variables.push(Variable {
            field,
            start,
            end: self.segments.len(),
        });
        Ok(())
    }

    fn identifier(&mut self) -> Result<String, TemplateError> {
        let mut out = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
            _ => return Err(self.unexpected("a field name")),
        }
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            out.push(c);
            self.at += 1;
        }
        Ok(out)
    }

    /// One or more `pchar`s other than `:` and `*`, normalised.
    fn literal(&mut self, expected: &'static str) -> Result<String, TemplateError> {
        let begin = self.at;
        while let Some(c) = self.peek() {
            if c == '%' {
                let hex = |i: usize| self.chars.get(i).is_some_and(char::is_ascii_hexdigit);
                if !(hex(self.at + 1) && hex(self.at + 2)) {
                    return Err(self.unexpected("two hex digits after '%'"));
                }
                self.at += 3;
            } else if is_unreserved(c) || "!$&'()+,;=@".contains(c) {
                self.at += 1;
            } else {
                break;
            }
        }
        if self.at == begin {
            return Err(self.unexpected(expected));
        }
        let raw: String = self.chars[begin..self.at].iter().collect();
        Ok(normalize_literal(&raw))
    }
}

/// RFC 3986 unreserved characters.
pub(crate) fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// A path segment in the form literals are compared in: escapes of unreserved characters
/// decoded (`%7E` → `~`), every other escape in upper-case hex (`%2f` → `%2F`), malformed
/// escapes left as they are.
pub(crate) fn normalize_literal(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(byte) = escaped_byte(bytes, i) {
            if is_unreserved(char::from(byte)) {
                out.push(char::from(byte));
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
            i += 3;
        } else {
            // Copy the whole UTF-8 character starting here.
            let len = segment[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&segment[i..i + len]);
            i += len;
        }
    }
    out
}

/// The byte `%HH` at `i` encodes, if there is one.
pub(crate) fn escaped_byte(bytes: &[u8], i: usize) -> Option<u8> {
    if bytes.get(i) != Some(&b'%') {
        return None;
    }
    let hi = char::from(*bytes.get(i + 1)?).to_digit(16)?;
    let lo = char::from(*bytes.get(i + 2)?).to_digit(16)?;
    u8::try_from(hi * 16 + lo).ok()
}

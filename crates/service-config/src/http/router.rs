//! Which binding an HTTP request calls: a trie of template segments built once at load.
//!
//! Precedence is ESP's (grpc-httpjson-transcoding's `PathMatcherNode`): at each segment a literal
//! child is tried first, then `*`, then `**`; the first complete match whose HTTP method is the
//! request's (else `*`, any method) wins. The verb is matched exactly: the text after the last `:`
//! of the last segment is a verb only when some template declares that verb (ESP's default), and
//! it then selects among the templates declaring it. Each trie node is visited at most once per
//! lookup (`**` is always a leaf), so a lookup costs the path's length plus at most the size of
//! the configuration, whatever the request.

use std::collections::{HashMap, HashSet};

use super::template::{PathTemplate, Segment, escaped_byte, normalize_literal};

/// `*` as a binding's HTTP method: any method.
pub(crate) const ANY_METHOD: &str = "*";

#[derive(Clone, Debug, Default)]
pub(crate) struct Router {
    root: Node,
    /// Every verb some template declares, normalised.
    verbs: HashSet<String>,
    /// Each inserted template's payload, by entry index.
    entries: Vec<(usize, usize)>,
    /// `http.fully_decode_reserved_expansion`.
    fully_decode_reserved: bool,
}

#[derive(Clone, Debug, Default)]
struct Node {
    literals: HashMap<String, Node>,
    single: Option<Box<Node>>,
    multi: Option<Box<Node>>,
    ends: Vec<End>,
}

#[derive(Clone, Debug)]
struct End {
    verb: Option<String>,
    method: String,
    entry: usize,
}

impl Node {
    fn end(&self, verb: Option<&str>, method: &str) -> Option<usize> {
        let find = |method: &str| {
            self.ends
                .iter()
                .find(|e| e.verb.as_deref() == verb && e.method == method)
                .map(|e| e.entry)
        };
        find(method).or_else(|| find(ANY_METHOD))
    }

    fn find(&self, parts: &[String], verb: Option<&str>, method: &str) -> Option<usize> {
        let Some((first, rest)) = parts.split_first() else {
            // `**` matches zero segments too.
            return self.end(verb, method).or_else(|| {
                self.multi
                    .as_ref()
                    .and_then(|multi| multi.end(verb, method))
            });
        };
        if let Some(found) = self
            .literals
            .get(first)
            .and_then(|child| child.find(rest, verb, method))
        {
            return Some(found);
        }
        if let Some(found) = self
            .single
            .as_ref()
            .and_then(|child| child.find(rest, verb, method))
        {
            return Some(found);
        }
        self.multi
            .as_ref()
            .and_then(|multi| multi.end(verb, method))
    }
}

/// A request path cut into segments: the raw (still percent-encoded) text and the verb.
#[derive(Clone, Debug)]
pub(crate) struct RequestPath<'p> {
    pub parts: Vec<&'p str>,
    pub verb: Option<String>,
}

impl Router {
    pub fn new(fully_decode_reserved: bool) -> Self {
        Self {
            fully_decode_reserved,
            ..Self::default()
        }
    }

    /// Adds `template` for `method` with its payload; on a template already bound to the same
    /// HTTP method (same segments and verb, whatever the variable names), returns that payload.
    pub fn insert(
        &mut self,
        method: &str,
        template: &PathTemplate,
        payload: (usize, usize),
    ) -> Result<(), (usize, usize)> {
        let (segments, verb) = template.shape();
        let mut node = &mut self.root;
        for segment in segments {
            node = match segment {
                Segment::Literal(text) => node.literals.entry(text.clone()).or_default(),
                Segment::Single => node.single.get_or_insert_with(Box::default),
                Segment::Multi => node.multi.get_or_insert_with(Box::default),
            };
        }
        if let Some(existing) = node
            .ends
            .iter()
            .find(|e| e.verb.as_deref() == verb && e.method == method)
        {
            return Err(self.entries[existing.entry]);
        }
        node.ends.push(End {
            verb: verb.map(str::to_owned),
            method: method.to_owned(),
            entry: self.entries.len(),
        });
        self.entries.push(payload);
        if let Some(verb) = verb {
            self.verbs.insert(verb.to_owned());
        }
        Ok(())
    }

    /// The payload of the binding `method` `path` calls, with the path cut into segments.
    /// `path` is the request URI's path, percent-encoded, without the query string.
    pub fn lookup<'p>(
        &self,
        method: &str,
        path: &'p str,
    ) -> Option<((usize, usize), RequestPath<'p>)> {
        let request = self.split(path)?;
        let normalized: Vec<String> = request
            .parts
            .iter()
            .map(|part| normalize_literal(part))
            .collect();
        let entry = self
            .root
            .find(&normalized, request.verb.as_deref(), method)?;
        Some((self.entries[entry], request))
    }

    fn split<'p>(&self, path: &'p str) -> Option<RequestPath<'p>> {
        let mut path = path.strip_prefix('/')?;
        let mut verb = None;
        if let Some(colon) = path.rfind(':')
            && !path[colon..].contains('/')
        {
            let candidate = normalize_literal(&path[colon + 1..]);
            if self.verbs.contains(&candidate) {
                verb = Some(candidate);
                path = &path[..colon];
            }
        }
        let mut parts: Vec<&str> = path.split('/').collect();
        // ESP: trailing empty segments ("/v1/shelves/") are dropped.
        while parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        Some(RequestPath { parts, verb })
    }

    /// The decoded value of each variable of `template` in a path it matched; `None` when a
    /// value does not decode to UTF-8.
    pub fn bind(
        &self,
        template: &PathTemplate,
        request: &RequestPath<'_>,
    ) -> Option<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(template.variables.len());
        for var in &template.variables {
            let has_multi = template.segments[var.start..var.end].contains(&Segment::Multi);
            // `**` is last: its variable runs to the end of the path.
            let end = if has_multi {
                request.parts.len()
            } else {
                var.end
            };
            let keep = if var.is_single(&template.segments) {
                Keep::Nothing
            } else if self.fully_decode_reserved {
                Keep::Slash
            } else {
                Keep::Reserved
            };
            let mut bytes = Vec::new();
            for (i, part) in request.parts.get(var.start..end)?.iter().enumerate() {
                if i > 0 {
                    bytes.push(b'/');
                }
                decode(part, keep, &mut bytes);
            }
            out.push((var.field.clone(), String::from_utf8(bytes).ok()?));
        }
        Some(out)
    }
}

/// Which escapes a variable's value keeps (google/api/http.proto).
#[derive(Clone, Copy)]
enum Keep {
    /// Single-segment variables decode everything.
    Nothing,
    /// Multi-segment variables keep RFC 6570 reserved characters encoded.
    Reserved,
    /// With `fully_decode_reserved_expansion`, only `%2F` stays encoded.
    Slash,
}

fn decode(part: &str, keep: Keep, out: &mut Vec<u8>) {
    let bytes = part.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match escaped_byte(bytes, i) {
            Some(byte) if !kept(byte, keep) => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
}

fn kept(byte: u8, keep: Keep) -> bool {
    match keep {
        Keep::Nothing => false,
        Keep::Slash => byte == b'/',
        Keep::Reserved => b"!#$&'()*+,/:;=?@[]".contains(&byte),
    }
}

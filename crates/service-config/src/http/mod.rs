//! HTTP rules (`google.api.http`): which RPC an HTTP request calls and which parts of the
//! request fill which fields. Pure code: templates ([`PathTemplate`]), the bindings of each
//! method ([`HttpBinding`]) and the router built from them at load (`router`). Reading and
//! checking the rules against the descriptor is `resolve::http`.

pub(crate) mod router;
pub(crate) mod template;

use std::fmt;

pub use template::{PathTemplate, TemplateError};

use crate::model::Method;

/// Where the request message comes from besides the path and the query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpBody {
    /// No `body`: every field not bound by the path comes from the query string.
    None,
    /// `body: "*"`: every field not bound by the path comes from the body.
    Whole,
    /// `body: "<field>"`: that field (dotted path) comes from the body, the rest from the query.
    Field(String),
}

/// One HTTP binding of a method: a `google.api.HttpRule` pattern with its body mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpBinding {
    /// `GET`, `PUT`, `POST`, `DELETE`, `PATCH`, or a custom kind as written (`*`: any method).
    pub method: String,
    pub template: PathTemplate,
    pub body: HttpBody,
    /// The response field (dotted path) sent as the HTTP body; `None`: the whole response.
    pub response_body: Option<String>,
}

impl fmt::Display for HttpBinding {
    /// `GET /v1/shelves/{shelf}`, then ` body=shelf` / ` body=*` and ` response_body=x` when set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.template)?;
        match &self.body {
            HttpBody::None => {}
            HttpBody::Whole => f.write_str(" body=*")?,
            HttpBody::Field(field) => write!(f, " body={field}")?,
        }
        if let Some(field) = &self.response_body {
            write!(f, " response_body={field}")?;
        }
        Ok(())
    }
}

/// The result of routing an HTTP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpMatch<'a> {
    /// The configured RPC.
    pub method: &'a Method,
    pub binding: &'a HttpBinding,
    /// (dotted field path, percent-decoded value) of each path variable, in template order.
    pub variables: Vec<(String, String)>,
}

//! What the key server's answer means for the call: a pure function, like `authn::authenticate`.

use http::HeaderValue;

use super::OnUnreachable;
use crate::wire::Rejection;

/// What the checker learned about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Valid; the consumer project, already a header value (an answer whose project is not one
    /// is malformed, so invalid).
    Valid { consumer_project: HeaderValue },
    /// Unknown, revoked, refused by the key server (4xx but 401/403), or an answer without a
    /// verdict.
    Invalid,
}

/// Why the checker has no answer. Never cached: the next call asks again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CheckError {
    /// Connect failure, timeout, or a 5xx: the only case fail-open applies to.
    #[error("key server unreachable: {0}")]
    Unreachable(String),
    /// Too many checks outstanding; refused without asking.
    #[error("too many key checks in progress")]
    Overloaded,
    /// The key server refused the proxy itself (401/403: no, a bad, or an unauthorized
    /// `--service-account-key`), or the proxy could not sign its token. Fails closed even with
    /// fail-open: a proxy the key server does not trust must not let keys through unchecked.
    #[error("{0}")]
    NotAuthorized(String),
}

/// Forward (with the consumer project when the key was checked) or refuse.
#[derive(Debug)]
#[cfg_attr(test, derive(PartialEq))]
pub(crate) enum Action {
    Forward {
        consumer_project: Option<HeaderValue>,
    },
    Reject(Rejection),
}

#[cfg(test)]
impl PartialEq for Rejection {
    fn eq(&self, other: &Rejection) -> bool {
        // For tests of decisions: same variant and same message.
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.to_string() == other.to_string()
    }
}

/// The action and the word the access log records (never the key).
#[derive(Debug)]
#[cfg_attr(test, derive(PartialEq))]
pub(crate) struct Decision {
    pub action: Action,
    pub outcome: &'static str,
}

fn reject(rejection: Rejection, outcome: &'static str) -> Decision {
    Decision {
        action: Action::Reject(rejection),
        outcome,
    }
}

/// Before asking: the key worth asking about, or the decision without asking. A key longer than
/// [`keycheck::MAX_API_KEY_BYTES`] is not a key (Google's are 39 characters): it is refused as
/// invalid and costs no lookup.
pub(crate) fn admit(found: Option<&str>) -> Result<&str, Decision> {
    match found {
        None => Err(reject(Rejection::ApiKeyMissing, "missing")),
        Some(key) if key.len() > keycheck::MAX_API_KEY_BYTES => {
            Err(reject(Rejection::ApiKeyInvalid, "too-long"))
        }
        Some(key) => Ok(key),
    }
}

/// The checker's answer (or why there is none) and the fail-open setting → the decision.
/// Fail-open opens only for an unreachable key server: never for an invalid key, and never for
/// the proxy's own cap on outstanding checks (saturation must not be a way in).
pub(crate) fn decide(
    answer: Result<Answer, CheckError>,
    on_unreachable: OnUnreachable,
) -> Decision {
    match answer {
        Ok(Answer::Valid { consumer_project }) => Decision {
            action: Action::Forward {
                consumer_project: Some(consumer_project),
            },
            outcome: "valid",
        },
        Ok(Answer::Invalid) => reject(Rejection::ApiKeyInvalid, "invalid"),
        Err(CheckError::Overloaded) => reject(Rejection::ApiKeyCheckOverloaded, "overloaded"),
        Err(CheckError::NotAuthorized(_)) => {
            reject(Rejection::ApiKeyCheckUnavailable, "proxy-not-authorized")
        }
        Err(CheckError::Unreachable(_)) => match on_unreachable {
            OnUnreachable::FailClosed => reject(Rejection::ApiKeyCheckUnavailable, "unchecked"),
            OnUnreachable::FailOpen => Decision {
                action: Action::Forward {
                    consumer_project: None,
                },
                outcome: "unchecked-allowed",
            },
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn admission_before_any_lookup() {
        let long = "k".repeat(keycheck::MAX_API_KEY_BYTES + 1);
        let limit = "k".repeat(keycheck::MAX_API_KEY_BYTES);
        assert_eq!(admit(Some("AIzaKey")), Ok("AIzaKey"));
        assert_eq!(admit(Some(&limit)), Ok(limit.as_str()));
        assert_eq!(
            admit(Some(&long)),
            Err(reject(Rejection::ApiKeyInvalid, "too-long"))
        );
        assert_eq!(
            admit(None),
            Err(reject(Rejection::ApiKeyMissing, "missing"))
        );
    }

    #[test]
    fn every_answer_with_both_settings() {
        use OnUnreachable::{FailClosed, FailOpen};
        let project = HeaderValue::from_static("p");
        let valid = || {
            Ok(Answer::Valid {
                consumer_project: project.clone(),
            })
        };
        let forward = |p: Option<HeaderValue>, outcome| Decision {
            action: Action::Forward {
                consumer_project: p,
            },
            outcome,
        };
        let unreachable = || Err(CheckError::Unreachable("connection refused".into()));
        type Case = (Result<Answer, CheckError>, OnUnreachable, Decision);
        let table: Vec<Case> = vec![
            (valid(), FailClosed, forward(Some(project.clone()), "valid")),
            (valid(), FailOpen, forward(Some(project.clone()), "valid")),
            (
                Ok(Answer::Invalid),
                FailClosed,
                reject(Rejection::ApiKeyInvalid, "invalid"),
            ),
            (
                Ok(Answer::Invalid),
                FailOpen,
                reject(Rejection::ApiKeyInvalid, "invalid"),
            ),
            (
                unreachable(),
                FailClosed,
                reject(Rejection::ApiKeyCheckUnavailable, "unchecked"),
            ),
            (unreachable(), FailOpen, forward(None, "unchecked-allowed")),
            (
                Err(CheckError::Overloaded),
                FailClosed,
                reject(Rejection::ApiKeyCheckOverloaded, "overloaded"),
            ),
            (
                Err(CheckError::Overloaded),
                FailOpen,
                reject(Rejection::ApiKeyCheckOverloaded, "overloaded"),
            ),
            (
                Err(CheckError::NotAuthorized("HTTP 403".into())),
                FailClosed,
                reject(Rejection::ApiKeyCheckUnavailable, "proxy-not-authorized"),
            ),
            (
                Err(CheckError::NotAuthorized("HTTP 401".into())),
                FailOpen,
                reject(Rejection::ApiKeyCheckUnavailable, "proxy-not-authorized"),
            ),
        ];
        for (answer, setting, want) in table {
            let desc = format!("{answer:?} {setting:?}");
            assert_eq!(decide(answer, setting), want, "{desc}");
        }
    }
}

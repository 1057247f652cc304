//! The values the store holds and the CLI shows.

use std::fmt;
use std::str::FromStr;

use crate::ids::encode_path_segment;
use crate::{IamError, Result};

/// A service account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// `ACCOUNT_ID@PROJECT_ID.iam.gserviceaccount.com`; the account's name everywhere.
    pub email: String,
    /// The part of the email before `@`.
    pub account_id: String,
    /// The project the account belongs to.
    pub project_id: String,
    /// The account's numeric unique id (21 digits), the key files' `client_id`.
    pub unique_id: String,
    /// When it was created, seconds since the Unix epoch.
    pub created: u64,
}

/// The algorithm of a service-account key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA 2048, RS256: what Google creates.
    Rs256,
    /// ECDSA P-256, ES256.
    Es256,
}

impl KeyAlgorithm {
    /// The JWS name, `RS256` or `ES256`.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Rs256 => "RS256",
            KeyAlgorithm::Es256 => "ES256",
        }
    }

    /// The `jose` algorithm.
    pub fn jose(self) -> jose::Algorithm {
        match self {
            KeyAlgorithm::Rs256 => jose::Algorithm::RS256,
            KeyAlgorithm::Es256 => jose::Algorithm::ES256,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = IamError;

    /// `RS256` or `ES256`, any case.
    fn from_str(s: &str) -> Result<KeyAlgorithm> {
        match s.to_ascii_uppercase().as_str() {
            "RS256" => Ok(KeyAlgorithm::Rs256),
            "ES256" => Ok(KeyAlgorithm::Es256),
            _ => Err(IamError::UnsupportedAlgorithm(s.to_owned())),
        }
    }
}

/// Whether a key is published by the key server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    /// Published: tokens signed with it verify.
    Enabled,
    /// Kept, not published, until enabled again.
    Disabled,
}

impl KeyStatus {
    /// `ENABLED` or `DISABLED`.
    pub fn name(self) -> &'static str {
        match self {
            KeyStatus::Enabled => "ENABLED",
            KeyStatus::Disabled => "DISABLED",
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The public half of a service-account key, as the store keeps it. There is no private key
/// here: it exists only in the key file given to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// 40 hex characters; the key file's `private_key_id` and tokens' `kid`.
    pub key_id: String,
    /// The account's email.
    pub email: String,
    /// The key's algorithm.
    pub algorithm: KeyAlgorithm,
    /// SubjectPublicKeyInfo PEM.
    pub public_key_pem: String,
    /// Self-signed X.509 certificate PEM carrying the same public key.
    pub certificate_pem: String,
    /// When it was created, seconds since the Unix epoch.
    pub created: u64,
    /// Enabled or disabled.
    pub state: KeyStatus,
}

/// The base URL at which `esprit iam serve` is reachable, e.g. `http://127.0.0.1:8085`; key
/// files point their `client_x509_cert_url` there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyServerUrl(String);

impl KeyServerUrl {
    /// The default, matching `esprit iam serve`'s default listen address.
    pub const DEFAULT: &'static str = "http://127.0.0.1:8085";

    /// Checks the scheme and drops trailing `/`.
    pub fn parse(url: &str) -> Result<KeyServerUrl> {
        let trimmed = url.trim().trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("http://")
            .or_else(|| trimmed.strip_prefix("https://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
                Ok(KeyServerUrl(trimmed.to_owned()))
            }
            _ => Err(IamError::InvalidBaseUrl(url.to_owned())),
        }
    }

    /// The base URL without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `{base}/robot/v1/metadata/x509/{email}`: the account's X.509 map (Google's path).
    pub fn x509_url(&self, email: &str) -> String {
        format!(
            "{}/robot/v1/metadata/x509/{}",
            self.0,
            encode_path_segment(email)
        )
    }

    /// `{base}/service_accounts/v1/jwk/{email}`: the account's JWKS (Google's path).
    pub fn jwks_url(&self, email: &str) -> String {
        format!(
            "{}/service_accounts/v1/jwk/{}",
            self.0,
            encode_path_segment(email)
        )
    }

    /// `{base}/v1/services/{service}:check`: the API-key check for `service` (POST).
    pub fn check_url(&self, service: &str) -> String {
        format!(
            "{}/v1/services/{}:check",
            self.0,
            encode_path_segment(service)
        )
    }
}

impl Default for KeyServerUrl {
    fn default() -> Self {
        KeyServerUrl(KeyServerUrl::DEFAULT.to_owned())
    }
}

impl fmt::Display for KeyServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for KeyServerUrl {
    type Err = IamError;

    fn from_str(s: &str) -> Result<KeyServerUrl> {
        KeyServerUrl::parse(s)
    }
}

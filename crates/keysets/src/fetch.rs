//! One fetch of one provider's key set: `file://`, `http(s)://`, or OpenID discovery.

use std::time::Duration;

use jose::{KeySet, KeySource};
use reqwest::header::{ACCEPT, LOCATION};
use reqwest::{Certificate, Url, redirect};
use service_config::{AuthProvider, Issuer};
use tokio::io::AsyncReadExt as _;

use crate::{FetchError, JwksSettings};

/// Fetches key sets. Holds one HTTP client (connection pool, TLS roots), so build it once.
///
/// The client never uses a proxy (proxy environment variables are ignored: key servers are
/// reached directly), never follows a redirect, and bounds every GET by the fetch timeout and
/// the body size cap.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: reqwest::Client,
    timeout: Duration,
    max_body_bytes: u64,
}

/// The CA certificates (PEM, at least one) in `path`, to trust on top of the system roots
/// (`--jwks-ca`, and the proxy's `--service-control-ca`).
pub fn extra_roots(path: &std::path::Path) -> Result<Vec<Certificate>, FetchError> {
    let pem = std::fs::read(path).map_err(|source| FetchError::CaRead {
        path: path.to_owned(),
        source,
    })?;
    let certs = Certificate::from_pem_bundle(&pem).map_err(|_| FetchError::CaInvalid {
        path: path.to_owned(),
    })?;
    if certs.is_empty() {
        return Err(FetchError::CaInvalid {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

impl Fetcher {
    /// Builds the HTTP client: system roots plus the PEM certificates of `settings.extra_ca`.
    pub fn new(settings: &JwksSettings) -> Result<Fetcher, FetchError> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            // A redirect could lead a fetch anywhere (including plain http or a local
            // address); key servers are configured by URL, so a 3xx is an error.
            .redirect(redirect::Policy::none())
            .connect_timeout(settings.fetch_timeout)
            .timeout(settings.fetch_timeout)
            .user_agent(concat!("esprit-jwks-cache/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.extra_ca {
            builder = builder.tls_certs_merge(extra_roots(path)?);
        }
        let client = builder
            .build()
            .map_err(|source| FetchError::Client { source })?;
        Ok(Fetcher {
            client,
            timeout: settings.fetch_timeout,
            max_body_bytes: settings.max_body_bytes,
        })
    }

    /// Fetches and parses `provider`'s key set: from its `jwks_uri`, or by OpenID discovery
    /// when it has none. Logs the result (URL, key count, kids, skipped keys and why).
    pub async fn fetch(&self, provider: &AuthProvider) -> Result<KeySet, FetchError> {
        let (url, keys) = match &provider.jwks_uri {
            Some(uri) => {
                let url = uri.as_str().to_owned();
                let keys = self.fetch_key_set(&url).await?;
                (url, keys)
            }
            None => {
                let discovery = discovery_url(&provider.issuer);
                let url = self.discover(&discovery).await?;
                tracing::debug!(provider = %provider.id, %discovery, jwks_uri = %url, "OpenID discovery");
                let keys = self.fetch_key_set(&url).await?;
                (url, keys)
            }
        };
        let kids: Vec<&str> = keys
            .keys()
            .iter()
            .map(|k| k.kid().map_or("-", |kid| kid.as_str()))
            .collect();
        tracing::info!(
            provider = %provider.id,
            %url,
            keys = keys.keys().len(),
            ?kids,
            skipped = keys.skipped().len(),
            "fetched key set"
        );
        for skipped in keys.skipped() {
            tracing::warn!(
                provider = %provider.id,
                %url,
                index = skipped.index,
                kid = skipped.kid.as_ref().map(|k| k.as_str()),
                reason = %skipped.reason,
                "skipped a key of the key set"
            );
        }
        Ok(keys)
    }

    /// Reads the discovery document at `url` and returns its `jwks_uri`.
    async fn discover(&self, url: &str) -> Result<String, FetchError> {
        let body = self.get(url).await?;
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| FetchError::DiscoveryBadJson {
                url: url.to_owned(),
            })?;
        let serde_json::Value::Object(doc) = json else {
            return Err(FetchError::DiscoveryBadJson {
                url: url.to_owned(),
            });
        };
        let Some(serde_json::Value::String(jwks_uri)) = doc.get("jwks_uri") else {
            return Err(FetchError::DiscoveryMissingJwksUri {
                url: url.to_owned(),
            });
        };
        // A remote document must not point us at local files: a file's HMAC keys would be
        // trusted as local. Only http(s) is followed.
        match (scheme(url).as_deref(), scheme(jwks_uri).as_deref()) {
            // A document that came over https must not downgrade the key fetch to plain http:
            // anyone on the path could then serve keys that sign any token.
            (Some("https"), Some("http")) => Err(FetchError::InvalidUrl {
                url: jwks_uri.clone(),
                reason: "a discovery document fetched over https may not point at an http jwks_uri",
            }),
            (_, Some("http" | "https")) => Ok(jwks_uri.clone()),
            _ => Err(FetchError::InvalidUrl {
                url: jwks_uri.clone(),
                reason: "a discovered jwks_uri must be an http or https URL",
            }),
        }
    }

    /// Fetches a key set by URL: `file://` is read from disk as a local set (HMAC keys
    /// allowed), `http(s)://` is fetched as a remote set (HMAC keys skipped).
    async fn fetch_key_set(&self, url: &str) -> Result<KeySet, FetchError> {
        let (bytes, source) = match scheme(url).as_deref() {
            Some("file") => (self.read_file(url).await?, KeySource::Local),
            Some("http" | "https") => (self.get(url).await?, KeySource::Remote),
            _ => {
                return Err(FetchError::InvalidUrl {
                    url: url.to_owned(),
                    reason: "must be an absolute http, https or file URL",
                });
            }
        };
        // A well-formed document listing no keys at all (`{"keys": []}`, or `{}`: an empty X.509
        // map) is the key server saying the issuer has none left (its last key was disabled or
        // deleted): it replaces the cached set, so withdrawn keys stop verifying within
        // `cache_duration`. A document whose keys are all unusable (unsupported, too weak, HMAC
        // from a remote source), or that is not a key set, stays an error and the last good set
        // is kept.
        if lists_no_keys(&bytes) {
            tracing::warn!(
                url,
                "the key set lists no keys: every token of this provider will be refused"
            );
            return Ok(KeySet::empty(source));
        }
        KeySet::parse(&bytes, source).map_err(|source| FetchError::Parse {
            url: url.to_owned(),
            source,
        })
    }

    async fn read_file(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let path = Url::parse(url)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .ok_or_else(|| FetchError::InvalidUrl {
                url: url.to_owned(),
                reason: "a file URL needs an absolute path (file:///path)",
            })?;
        let read_error = |source| FetchError::FileRead {
            path: path.clone(),
            source,
        };
        let file = tokio::fs::File::open(&path).await.map_err(read_error)?;
        let mut bytes = Vec::new();
        // Read one byte past the cap to tell "exactly the cap" from "larger".
        file.take(self.max_body_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .await
            .map_err(read_error)?;
        if bytes.len() as u64 > self.max_body_bytes {
            return Err(FetchError::TooLarge {
                url: url.to_owned(),
                limit: self.max_body_bytes,
            });
        }
        Ok(bytes)
    }

    /// One GET of an http(s) URL, bounded by the timeout (the whole exchange, body
    /// included) and the size cap (checked on `Content-Length` and while streaming).
    async fn get(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let parsed = Url::parse(url).map_err(|_| FetchError::InvalidUrl {
            url: url.to_owned(),
            reason: "not a valid URL",
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::InvalidUrl {
                url: url.to_owned(),
                reason: "must be an http or https URL",
            });
        }
        match tokio::time::timeout(self.timeout, self.get_body(parsed, url)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(FetchError::Timeout {
                url: url.to_owned(),
                after: self.timeout,
            }),
        }
    }

    async fn get_body(&self, parsed: Url, url: &str) -> Result<Vec<u8>, FetchError> {
        let transport = |source: reqwest::Error| {
            if source.is_timeout() {
                FetchError::Timeout {
                    url: url.to_owned(),
                    after: self.timeout,
                }
            } else {
                FetchError::Transport {
                    url: url.to_owned(),
                    source,
                }
            }
        };
        let mut response = self
            .client
            .get(parsed)
            .header(
                ACCEPT,
                "application/json, application/jwk-set+json, */*;q=0.5",
            )
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::RedirectRefused {
                url: url.to_owned(),
                status: status.as_u16(),
                location: response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            });
        }
        if !status.is_success() {
            return Err(FetchError::HttpStatus {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: url.to_owned(),
            limit: self.max_body_bytes,
        };
        if response
            .content_length()
            .is_some_and(|len| len > self.max_body_bytes)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        // The cap is enforced chunk by chunk, so a body without Content-Length (or one that
        // lies about it) never grows past the cap in memory.
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if (body.len() + chunk.len()) as u64 > self.max_body_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// docs/esp-compatibility.md (Authentication): `<issuer>/.well-known/openid-configuration`, with `https://` prefixed when
/// the issuer has no scheme and one trailing `/` trimmed.
pub fn discovery_url(issuer: &Issuer) -> String {
    let issuer = issuer.as_str();
    let issuer = issuer.strip_suffix('/').unwrap_or(issuer);
    if issuer.contains("://") {
        format!("{issuer}/.well-known/openid-configuration")
    } else {
        format!("https://{issuer}/.well-known/openid-configuration")
    }
}

/// The lowercased scheme of `url`, if it has one.
fn scheme(url: &str) -> Option<String> {
    url.split_once("://").map(|(s, _)| s.to_ascii_lowercase())
}

/// Fetches `provider`'s key set once, without a cache: what `esprit token inspect` uses.
/// The same code path (client settings, discovery, size cap, parsing) as [`crate::JwksCache`].
pub async fn fetch_once(
    provider: &AuthProvider,
    settings: &JwksSettings,
) -> Result<KeySet, FetchError> {
    Fetcher::new(settings)?.fetch(provider).await
}

/// `{}` (an empty X.509 map) or `{"keys": []}` (an empty JWKS).
fn lists_no_keys(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes) {
        Ok(map) => match map.get("keys") {
            None => map.is_empty(),
            Some(serde_json::Value::Array(keys)) => keys.is_empty(),
            Some(_) => false,
        },
        Err(_) => false,
    }
}

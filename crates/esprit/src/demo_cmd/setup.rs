//! The demo's fixtures: its files, the accounts, keys and API key it creates through the `iam`
//! store (printing the equivalent commands), the tokens it mints and the service config it writes.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use iam::{KeyAlgorithm, KeyServerUrl};

use super::transcript::{command, output};
use super::{LIST_SHELVES, SERVICE_NAME};

/// Seconds since the epoch.
pub(super) fn now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

/// The tutorial's `api_config_auth.yaml`, with the consumer's local key server as `jwks_uri`:
/// every method needs a token, and every method but `ListShelves` an API key.
pub(super) fn service_config_yaml(issuer: &str, jwks_uri: &str) -> String {
    format!(
        r#"# The Bookstore tutorial's service configuration with service-to-service authentication:
# every method needs a token signed by the consumer's service account.
type: google.api.Service
config_version: 3
name: {SERVICE_NAME}
title: Bookstore gRPC API
apis:
- name: endpoints.examples.bookstore.Bookstore
authentication:
  providers:
  - id: google_service_account
    # The consumer's service account email.
    issuer: {issuer}
    # esprit's key server instead of https://www.googleapis.com.
    jwks_uri: {jwks_uri}
  rules:
  # This auth rule applies to all methods.
  - selector: "*"
    requirements:
      - provider_id: google_service_account
usage:
  rules:
  # ListShelves methods can be called without an API Key.
  - selector: {LIST_SHELVES}
    allow_unregistered_calls: true
"#
    )
}

/// The demo's files, all in its temporary directory.
pub(super) struct Files {
    pub(super) store: PathBuf,
    pub(super) consumer_key: PathBuf,
    pub(super) other_key: PathBuf,
    pub(super) config: PathBuf,
    pub(super) descriptor: PathBuf,
    pub(super) database: PathBuf,
}

impl Files {
    pub(super) fn new(dir: &Path) -> Files {
        Files {
            store: dir.join("iam.db"),
            consumer_key: dir.join("bookstore-client.json"),
            other_key: dir.join("other-client.json"),
            config: dir.join("api_config_auth.yaml"),
            descriptor: dir.join("api_descriptor.pb"),
            database: dir.join("bookstore.db"),
        }
    }
}

/// One account and its key file, created through the `iam` store as the CLI does, with the
/// equivalent commands printed. Returns the email.
pub(super) fn create_account_with_key(
    files: &Files,
    (name, project): (&str, &str),
    key_file: &Path,
    key_server: &KeyServerUrl,
) -> anyhow::Result<String> {
    let mut store = iam::Store::open(&files.store)
        .with_context(|| format!("opening the IAM store {}", files.store.display()))?;
    command(&format!(
        "esprit iam accounts create {name} --project {project}"
    ));
    let account = store
        .create_account(name, project, now()?)
        .with_context(|| format!("creating the account {name}"))?;
    output(&account.email);
    command(&format!(
        "esprit iam keys create {} --out {} --issuer-base-url {}",
        account.email,
        key_file.display(),
        key_server.as_str()
    ));
    let key = store
        .create_key(
            &account.email,
            KeyAlgorithm::Rs256,
            key_server,
            key_file,
            now()?,
        )
        .with_context(|| format!("creating a key for {}", account.email))?;
    output(&key.key_id);
    Ok(account.email)
}

/// An API key for `project`, created through the `iam` store as `esprit iam api-keys create`
/// does; prints the equivalent command and what that command says on stderr (not the key).
pub(super) fn create_api_key(files: &Files, project: &str) -> anyhow::Result<String> {
    let mut store = iam::Store::open(&files.store)
        .with_context(|| format!("opening the IAM store {}", files.store.display()))?;
    command(&format!(
        "API_KEY=$(esprit iam api-keys create --project {project})"
    ));
    let (key, record) = store
        .create_api_key(project, None, now()?)
        .with_context(|| format!("creating an API key for {project}"))?;
    output(&format!(
        "created API key {} for project {} (keep it secret: it is shown only now)",
        record.id, record.project
    ));
    Ok(key)
}

/// A token from `key_file` for the service, as `esprit token --key-file F --audiences SERVICE
/// [--issuer ISS]` mints it.
pub(super) fn mint(key_file: &Path, issuer: Option<&str>) -> anyhow::Result<String> {
    let args = crate::token_cmd::MintArgs::new(
        key_file.to_owned(),
        SERVICE_NAME.to_owned(),
        issuer.map(str::to_owned),
    );
    crate::token_cmd::mint_token(&args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_valid_and_needs_a_token_everywhere_and_a_key_but_for_list_shelves() {
        let yaml = service_config_yaml(
            "bookstore-client@consumer-project.iam.gserviceaccount.com",
            "http://127.0.0.1:1/robot/v1/metadata/x509/bookstore-client@consumer-project.iam.gserviceaccount.com",
        );
        let descriptor =
            service_config::Descriptor::from_file_descriptor_set(bookstore::FILE_DESCRIPTOR_SET)
                .expect("descriptor");
        let config = service_config::from_yaml(&yaml, descriptor).expect("valid config");
        assert_eq!(config.name(), SERVICE_NAME);
        // The tutorial's usage rules: ListShelves alone allows unregistered calls.
        let methods = config.methods();
        assert!(methods.len() > 1);
        for method in methods {
            let want = if method.selector.as_str() == LIST_SHELVES {
                service_config::ApiKeyRequirement::NotRequired
            } else {
                service_config::ApiKeyRequirement::Required
            };
            assert_eq!(method.api_key, want, "{}", method.selector.as_str());
        }
    }
}

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
///
/// A second provider, the key server's token service (`token_service`: its issuer URL), accepts
/// the stringent path's ID tokens for every method, from `consumer` alone
/// (`x_esprit_allowed_callers`: the token service signs for any account it knows).
pub(super) fn service_config_yaml(
    issuer: &str,
    jwks_uri: &str,
    token_service: &str,
    consumer: &str,
) -> String {
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
  # The stringent path: ID tokens signed by the token service (Google ID tokens).
  - id: esprit_token_service
    issuer: {token_service}
    jwks_uri: {token_service}/oauth2/v3/certs
  rules:
  # This auth rule applies to all methods.
  - selector: "*"
    requirements:
      - provider_id: google_service_account
      # The token service signs for any account it knows: accept the consumer alone.
      - provider_id: esprit_token_service
        x_esprit_allowed_callers: [{consumer}]
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
    pub(super) kek: PathBuf,
    pub(super) consumer_key: PathBuf,
    pub(super) other_key: PathBuf,
    pub(super) proxy_key: PathBuf,
    pub(super) config: PathBuf,
    pub(super) descriptor: PathBuf,
    pub(super) database: PathBuf,
}

impl Files {
    pub(super) fn new(dir: &Path) -> Files {
        Files {
            store: dir.join("iam.db"),
            kek: dir.join("kek"),
            consumer_key: dir.join("bookstore-client.json"),
            other_key: dir.join("other-client.json"),
            proxy_key: dir.join("esprit-proxy.json"),
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
    token_uri: &str,
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
        "esprit iam keys create {} --out {} --issuer-base-url {} --token-uri {token_uri}",
        account.email,
        key_file.display(),
        key_server.as_str()
    ));
    let key = store
        .create_key_with_token_uri(
            &account.email,
            KeyAlgorithm::Rs256,
            key_server,
            Some(token_uri),
            key_file,
            now()?,
        )
        .with_context(|| format!("creating a key for {}", account.email))?;
    output(&key.key_id);
    Ok(account.email)
}

/// `roles/servicemanagement.serviceController` on `services/SERVICE` for `email`, granted
/// through the `iam` store as `esprit iam roles grant` does, with the command printed.
pub(super) fn grant_service_controller(
    files: &Files,
    email: &str,
    service: &str,
) -> anyhow::Result<()> {
    let role = iam::ServiceRole::ServiceController;
    let (member, resource) = (
        iam::roles::member_name(email),
        iam::service_roles::service_resource_name(service),
    );
    command(&format!(
        "esprit iam roles grant --member {member} --role {role} --resource {resource}"
    ));
    iam::Store::open(&files.store)
        .with_context(|| format!("opening the IAM store {}", files.store.display()))?
        .grant_service_role(email, role, service, now()?)
        .with_context(|| format!("granting {role} to {email}"))?;
    output(&format!("granted {role} on {resource} to {member}"));
    Ok(())
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

/// What `esprit token` prints for `args`, or its error as the CLI shows it. Off the async
/// runtime: `--id-token` and `--impersonate` make blocking HTTP calls.
pub(super) async fn fetch_token(args: crate::token_cmd::MintArgs) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || crate::token_cmd::token_for(&args))
        .await
        .context("the token task failed")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_valid_and_needs_a_token_everywhere_and_a_key_but_for_list_shelves() {
        let consumer = "bookstore-client@consumer-project.iam.gserviceaccount.com";
        let yaml = service_config_yaml(
            consumer,
            "http://127.0.0.1:1/robot/v1/metadata/x509/bookstore-client@consumer-project.iam.gserviceaccount.com",
            "http://127.0.0.1:1",
            consumer,
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
            // Two ways in: the consumer's own key, or the token service's ID token for the
            // consumer alone.
            let auth = method.auth.as_ref().expect("every method needs a token");
            let providers: Vec<&str> = auth
                .requirements
                .iter()
                .map(|r| r.provider_id.as_str())
                .collect();
            assert_eq!(
                providers,
                ["google_service_account", "esprit_token_service"]
            );
            assert_eq!(
                auth.requirements[0].allowed_callers,
                service_config::AllowedCallers::Any
            );
            match &auth.requirements[1].allowed_callers {
                service_config::AllowedCallers::Listed { callers, .. } => {
                    let listed: Vec<&str> = callers.iter().map(|c| c.as_str()).collect();
                    assert_eq!(listed, [consumer]);
                }
                other => panic!("the token service's requirement lists no callers: {other:?}"),
            }
        }
    }
}

//! The demo's stringent path (the tutorial's "Google ID token"): ID tokens signed by the key
//! server's token service instead of by the caller's own key, the config's list of accepted
//! callers, and the Token Creator role that lets one account obtain another's ID token through
//! the IAM Credentials API.

use anyhow::Context as _;
use bookstore::pb::bookstore_client::BookstoreClient;
use iam::roles::Role;
use tonic::Code;
use tonic::transport::Channel;

use super::SERVICE_NAME;
use super::calls::{BookstoreMethod, Call, Expect, make_call};
use super::setup::{Files, fetch_token, now};
use super::transcript::{command, output, step};
use crate::token_cmd::MintArgs;

/// A service the consumer may ask an ID token for, but not the one the proxy guards.
const OTHER_SERVICE: &str = "inventory.endpoints.producer-project.cloud.goog";

/// The start of the CLI's error when generateIdToken is refused for want of the role.
const NO_ROLE: &str = "generateIdToken refused: PERMISSION_DENIED (403)";

/// The accounts of the demo, by email, and the proxy's port (for the command lines).
pub(super) struct Accounts<'a> {
    pub(super) consumer: &'a str,
    pub(super) other: &'a str,
    pub(super) port: u16,
}

/// Steps 10 and 11; returns how many checks did not behave as expected.
pub(super) async fn run(
    client: &mut BookstoreClient<Channel>,
    files: &Files,
    accounts: &Accounts<'_>,
) -> anyhow::Result<usize> {
    let Accounts {
        consumer,
        other,
        port,
    } = *accounts;
    let mut failures = 0;

    step(
        "10. The stringent path: an ID token signed by the token service (a Google ID token; gcloud auth print-identity-token)",
    );
    let id_token = |key_file: &std::path::Path, audience: &str| {
        MintArgs::id_token(key_file.to_owned(), audience.to_owned())
    };
    command(&format!(
        "ID_TOKEN=$(esprit token --key-file {} --id-token --target-audience {SERVICE_NAME})",
        files.consumer_key.display()
    ));
    let consumer_token = fetch_token(id_token(&files.consumer_key, SERVICE_NAME)).await?;
    command(&format!(
        "WRONG_AUDIENCE=$(esprit token --key-file {} --id-token --target-audience {OTHER_SERVICE})",
        files.consumer_key.display()
    ));
    let wrong_audience = fetch_token(id_token(&files.consumer_key, OTHER_SERVICE)).await?;
    command(&format!(
        "OTHER_ID_TOKEN=$(esprit token --key-file {} --id-token --target-audience {SERVICE_NAME})",
        files.other_key.display()
    ));
    let other_token = fetch_token(id_token(&files.other_key, SERVICE_NAME)).await?;
    let denied = |message| Expect::Rejected {
        code: Code::PermissionDenied,
        message,
    };
    let list_shelves = |comment: &str, variable: &str, token, expect| Call {
        line: format!("bookstore-client --port {port} --auth_token ${variable}  # {comment}"),
        method: BookstoreMethod::ListShelves,
        token: Some(token),
        api_key: None,
        expect,
    };
    let calls = [
        list_shelves(
            "the consumer's ID token",
            "ID_TOKEN",
            consumer_token.as_str(),
            Expect::Answer,
        ),
        list_shelves(
            "an ID token for another service",
            "WRONG_AUDIENCE",
            &wrong_audience,
            denied("Audiences in Jwt are not allowed"),
        ),
        list_shelves(
            &format!("{other}: a valid ID token, but not an accepted caller"),
            "OTHER_ID_TOKEN",
            &other_token,
            denied("Caller in Jwt is not allowed"),
        ),
    ];
    for call in &calls {
        command(&call.line);
        if !make_call(client, call).await? {
            failures += 1;
        }
    }

    step(
        "11. The Token Creator role: other-client asks the IAM Credentials API for the consumer's ID token",
    );
    let impersonation = || {
        MintArgs::impersonate(
            files.other_key.clone(),
            consumer.to_owned(),
            SERVICE_NAME.to_owned(),
        )
    };
    let impersonate_line = format!(
        "esprit token --key-file {} --impersonate {consumer} --audiences {SERVICE_NAME} --include-email",
        files.other_key.display()
    );
    command(&format!("{impersonate_line}  # without the role"));
    match fetch_token(impersonation()).await {
        Err(err) => {
            let shown = format!("{err:#}");
            output(&format!("esprit: {shown}"));
            if shown.starts_with(NO_ROLE) {
                output("  -> as expected: refused without the Token Creator role");
            } else {
                output(&format!("  -> UNEXPECTED: wanted \"{NO_ROLE}: …\""));
                failures += 1;
            }
        }
        Ok(_) => {
            output("(an ID token was issued)");
            output("  -> UNEXPECTED: wanted a refusal without the Token Creator role");
            failures += 1;
        }
    }

    let role = Role::ServiceAccountTokenCreator;
    command(&format!(
        "esprit iam roles grant --member serviceAccount:{other} --role {role} --resource projects/-/serviceAccounts/{consumer}"
    ));
    iam::Store::open(&files.store)
        .with_context(|| format!("opening the IAM store {}", files.store.display()))?
        .grant_role(other, role, consumer, now()?)
        .context("granting the Token Creator role")?;
    command(&format!("IMPERSONATED=$({impersonate_line})"));
    let impersonated = fetch_token(impersonation()).await?;
    let call = list_shelves(
        &format!("{other} acting as the consumer"),
        "IMPERSONATED",
        &impersonated,
        Expect::Answer,
    );
    command(&call.line);
    if !make_call(client, &call).await? {
        failures += 1;
    }
    Ok(failures)
}

//! `esprit iam keys …`: an account's key files (created here, the private key written once to
//! the file) and the state of its published keys.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use iam::{KeyAlgorithm, KeyServerUrl, KeyStatus, StoreLocation};
use serde_json::json;

use super::{now, open, print_list, rfc3339};

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum AlgorithmArg {
    /// RSA 2048 (what Google makes).
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA P-256.
    #[value(name = "ES256")]
    Es256,
}

impl From<AlgorithmArg> for KeyAlgorithm {
    fn from(arg: AlgorithmArg) -> KeyAlgorithm {
        match arg {
            AlgorithmArg::Rs256 => KeyAlgorithm::Rs256,
            AlgorithmArg::Es256 => KeyAlgorithm::Es256,
        }
    }
}

fn parse_key_server_url(text: &str) -> Result<KeyServerUrl, String> {
    KeyServerUrl::parse(text).map_err(|e| e.to_string())
}

#[derive(Subcommand)]
pub(super) enum KeysCommand {
    /// Create a key and write its Google JSON key file (mode 0600; never overwrites).
    /// Prints the key id. Only the public key is kept in the store.
    Create {
        /// The account's email.
        email: String,
        /// The key file to write. Must not exist.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The key's algorithm.
        #[arg(long, value_enum, ignore_case = true, default_value = "RS256")]
        algorithm: AlgorithmArg,
        /// Where `esprit iam serve` is reachable; the key file's `client_x509_cert_url` is
        /// {URL}/robot/v1/metadata/x509/{email}.
        #[arg(
            long,
            env = "ESPRIT_IAM_BASE_URL",
            default_value = KeyServerUrl::DEFAULT,
            value_name = "URL",
            value_parser = parse_key_server_url
        )]
        issuer_base_url: KeyServerUrl,
        /// The key file's `token_uri`, where Google's client libraries ask for tokens: the
        /// token service of `esprit iam serve --issuer-url URL` is at URL/token.
        #[arg(
            long,
            env = "ESPRIT_TOKEN_URI",
            default_value = GOOGLE_TOKEN_URI,
            value_name = "URL"
        )]
        token_uri: String,
    },
    /// List an account's keys (enabled and disabled).
    List {
        /// The account's email.
        email: String,
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop publishing a key (tokens signed with it stop verifying once caches expire).
    Disable { email: String, key_id: String },
    /// Publish a disabled key again.
    Enable { email: String, key_id: String },
    /// Delete a key for good.
    Delete { email: String, key_id: String },
}

/// Google's token endpoint: the `token_uri` of key files unless `--token-uri` says otherwise.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

pub(super) fn keys(path: &StoreLocation, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let mut store = open(path)?;
    match command {
        KeysCommand::Create {
            email,
            out,
            algorithm,
            issuer_base_url,
            token_uri,
        } => {
            let token_uri = (token_uri != GOOGLE_TOKEN_URI).then_some(token_uri.as_str());
            let key = store.create_key_with_token_uri(
                &email,
                algorithm.into(),
                &issuer_base_url,
                token_uri,
                &out,
                now()?,
            )?;
            println!("{}", key.key_id);
            eprintln!(
                "created {} key {} for {email}; key file {} (keep it secret: it holds the only \
                 copy of the private key)",
                key.algorithm,
                key.key_id,
                out.display()
            );
        }
        KeysCommand::List { email, json } => {
            print_list(
                &store.keys(&email)?,
                json,
                |k| {
                    json!({
                        "key_id": k.key_id, "algorithm": k.algorithm.name(),
                        "state": k.state.name(), "created": rfc3339(k.created),
                    })
                },
                &["KEY_ID", "ALGORITHM", "STATE", "CREATED"],
                |k| {
                    vec![
                        k.key_id.clone(),
                        k.algorithm.to_string(),
                        k.state.to_string(),
                        rfc3339(k.created),
                    ]
                },
            )?;
        }
        KeysCommand::Disable { email, key_id } => {
            store.set_key_state(&email, &key_id, KeyStatus::Disabled)?;
            eprintln!("disabled key {key_id} of {email}");
        }
        KeysCommand::Enable { email, key_id } => {
            store.set_key_state(&email, &key_id, KeyStatus::Enabled)?;
            eprintln!("enabled key {key_id} of {email}");
        }
        KeysCommand::Delete { email, key_id } => {
            store.delete_key(&email, &key_id)?;
            eprintln!("deleted key {key_id} of {email}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

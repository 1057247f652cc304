//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can fail in `iam`. The messages are shown to users of `esprit iam` as they
/// are (after "esprit: "), so each names the value at fault and, where there is one, the rule.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// An account id (the part of the email before `@`) breaks Google's rules.
    #[error(
        "invalid service account id {id:?}: {reason} (6-30 characters: lowercase letters, digits \
         and hyphens, starting with a letter, not ending with a hyphen)"
    )]
    InvalidAccountId {
        /// The id as given.
        id: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A project id breaks Google's rules.
    #[error(
        "invalid project id {id:?}: {reason} (6-30 characters: lowercase letters, digits and \
         hyphens, starting with a letter, not ending with a hyphen)"
    )]
    InvalidProjectId {
        /// The id as given.
        id: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The key server's base URL is not an `http://` or `https://` URL.
    #[error("invalid key server base URL {0:?}: must start with http:// or https://")]
    InvalidBaseUrl(String),
    /// A key algorithm other than RS256 or ES256 was asked for.
    #[error("unsupported key algorithm {0:?}: use RS256 or ES256")]
    UnsupportedAlgorithm(String),
    /// `accounts create` for an email that is already in the store.
    #[error("service account {0} already exists")]
    AccountExists(String),
    /// No account with this email in the store.
    #[error("service account {0} does not exist")]
    UnknownAccount(String),
    /// The account has no key with this id (never had one, or it was deleted).
    #[error("service account {email} has no key {key_id}")]
    UnknownKey {
        /// The account.
        email: String,
        /// The key id asked for.
        key_id: String,
    },
    /// `keys create --out` names a file that exists: key files are never overwritten.
    #[error("{0} already exists; refusing to overwrite a key file (choose another --out)")]
    KeyFileExists(PathBuf),
    /// The key file could not be created or written.
    #[error("cannot write key file {path}")]
    KeyFileWrite {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store file could not be opened or prepared.
    #[error("cannot open the IAM store {path}")]
    StoreOpen {
        /// The store file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The store file could not be created (mode 0600).
    #[error("cannot create the IAM store {path}")]
    StoreCreate {
        /// The store file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Every connection of the key server's store pool stayed busy for the whole wait; the
    /// key server answers 503.
    #[error("the IAM store is busy: no connection was free within {waited:?}")]
    StoreBusy {
        /// How long the request waited.
        waited: std::time::Duration,
    },
    /// A store lookup ended without an answer (its worker panicked or was cancelled).
    #[error("IAM store lookup did not finish: {0}")]
    StoreWorker(String),
    /// The store was written by a newer esprit (its schema version is unknown here).
    #[error(
        "the IAM store has schema version {found}, newer than this esprit supports ({supported})"
    )]
    StoreTooNew {
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A query on the store failed.
    #[error("IAM store query failed")]
    Store(#[from] rusqlite::Error),
    /// A row of the store holds a value this build cannot read (edited by hand?).
    #[error("IAM store is corrupt: {0}")]
    StoreCorrupt(String),
    /// Generating or encoding a key failed.
    #[error("key operation failed")]
    Key(#[from] jose::JoseError),
    /// Making the self-signed certificate failed.
    #[error("cannot make the key's X.509 certificate")]
    Certificate(#[from] rcgen::Error),
    /// An API key's display name breaks the rules.
    #[error(
        "invalid API key name {name:?}: {reason} (at most 63 characters, no control characters)"
    )]
    InvalidApiKeyName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// No API key has this id.
    #[error("API key {0} does not exist (see `esprit iam api-keys list` for the ids)")]
    UnknownApiKey(String),
    /// An API key was given where its id was expected. The key is not repeated in the message:
    /// error messages end up in terminals and logs.
    #[error(
        "that is an API key, not an API key id; find its id with `esprit iam api-keys list` \
         (the key starts with {prefix}…)"
    )]
    ApiKeyGivenForId {
        /// The key's shown prefix.
        prefix: String,
    },
    /// A role esprit does not know (it knows Google's two service-account roles).
    #[error(
        "unknown role {0:?}: esprit knows roles/iam.serviceAccountTokenCreator and \
         roles/iam.serviceAccountUser"
    )]
    UnknownRole(String),
    /// A member that is not `serviceAccount:EMAIL` with a well-formed account email.
    #[error("invalid member {member:?}: {reason}")]
    InvalidMember {
        /// The member as given.
        member: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A resource that is not `projects/-/serviceAccounts/EMAIL` (or `EMAIL`) with a
    /// well-formed account email.
    #[error("invalid resource {resource:?}: {reason}")]
    InvalidResource {
        /// The resource as given.
        resource: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `roles revoke` of a binding that does not exist (as gcloud's
    /// `remove-iam-policy-binding`).
    #[error("{member} does not hold {role} on {resource}: nothing to revoke")]
    NoSuchBinding {
        /// `serviceAccount:EMAIL`.
        member: String,
        /// The role's name.
        role: String,
        /// `projects/-/serviceAccounts/EMAIL`.
        resource: String,
    },
    /// The system's random generator failed.
    #[error("random generator failed")]
    Random,
}

/// `Result` with [`IamError`].
pub type Result<T, E = IamError> = std::result::Result<T, E>;

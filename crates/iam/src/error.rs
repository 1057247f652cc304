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
        /// The store's schema version (`PRAGMA user_version` of a SQLite file, the row of
        /// `esprit_iam_schema` in PostgreSQL).
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A query on the store failed.
    #[error("IAM store query failed")]
    Store(#[from] rusqlite::Error),
    /// A query on the PostgreSQL store failed.
    #[error("IAM store query failed")]
    StorePostgres(#[from] postgres::Error),
    /// `--store` is a `postgres://` URL that does not parse. The URL is not repeated: it may
    /// hold a password.
    #[error("invalid PostgreSQL store URL: {0}")]
    InvalidStoreUrl(String),
    /// The TLS settings of a `postgres://` store URL cannot be used (`sslrootcert` unreadable or
    /// without a certificate, no system roots).
    #[error("IAM store TLS: {0}")]
    StoreTls(String),
    /// The PostgreSQL store could not be reached or logged in to.
    #[error("cannot connect to the IAM store {url}")]
    StoreConnect {
        /// The store's URL, its password left out.
        url: String,
        /// Why.
        #[source]
        source: postgres::Error,
    },
    /// `iam store copy --from` a SQLite file that does not exist.
    #[error("the IAM store {0} does not exist")]
    StoreMissing(PathBuf),
    /// The connection to the PostgreSQL store ended (its thread is gone).
    #[error("the connection to the IAM store ended")]
    StoreGone,
    /// `iam store copy` from a store whose schema is not this build's: migrate it first.
    #[error(
        "the IAM store {store} has schema version {found}, this esprit writes version \
         {supported}: run `esprit iam migrate --store {store}` first (with an esprit that knows \
         version {found} when it is newer)"
    )]
    StoreVersionMismatch {
        /// The store, its password left out.
        store: String,
        /// Its schema version.
        found: i64,
        /// This build's.
        supported: i64,
    },
    /// `iam store copy` to a store that already holds rows.
    #[error(
        "the IAM store {store} is not empty (table {table} has {rows} rows): copy only into a \
         new store"
    )]
    StoreNotEmpty {
        /// The target store, its password left out.
        store: String,
        /// The first table found with rows.
        table: String,
        /// How many.
        rows: i64,
    },
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
    /// A role esprit does not know (Google's two service-account roles and the service role).
    #[error(
        "unknown role {0:?}: esprit knows roles/iam.serviceAccountTokenCreator and \
         roles/iam.serviceAccountUser (on projects/-/serviceAccounts/EMAIL), and \
         roles/servicemanagement.serviceController (on services/SERVICE)"
    )]
    UnknownRole(String),
    /// A known role granted on the wrong kind of resource (a service role on an account, or an
    /// account role on a service).
    #[error("{role} is granted on {expected}, not on {resource:?}")]
    RoleNotOnResource {
        /// The role's name.
        role: String,
        /// The resource as given.
        resource: String,
        /// The kind of resource the role applies to (`services/SERVICE`, ...).
        expected: &'static str,
    },
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
    /// A cryptographic operation of aws-lc-rs failed (sealing, key loading).
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
    /// The key-encryption key given (file or `ESPRIT_IAM_KEK`) is malformed. The value is never
    /// repeated.
    #[error("invalid key-encryption key: {0} (expected 32 bytes in base64 or base64url)")]
    KekInvalid(&'static str),
    /// The key-encryption key file cannot be read or written.
    #[error("cannot use key-encryption key file {path}")]
    KekFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `iam kek generate --out` names a file that exists.
    #[error("{0} already exists; refusing to overwrite a key-encryption key file")]
    KekFileExists(PathBuf),
    /// The store holds server-managed keys sealed with another key-encryption key.
    #[error(
        "the key-encryption key does not match the IAM store: its server-managed keys were \
         sealed with another key (check value {expected}, given key {given}); start with the \
         key-encryption key the store was used with (--kek-file or ESPRIT_IAM_KEK)"
    )]
    KekMismatch {
        /// The check value recorded in the store.
        expected: String,
        /// The check value of the key given.
        given: String,
    },
    /// A sealed private key does not open with the key-encryption key (tampered with, moved to
    /// another row, or sealed with another key).
    #[error("server-managed key {key_id} cannot be unsealed with this key-encryption key")]
    Unseal {
        /// The key.
        key_id: String,
    },
    /// The token service's issuer URL is not an absolute `http(s)` URL without query or fragment.
    #[error(
        "invalid issuer URL {0:?}: must be an http:// or https:// URL without query or fragment"
    )]
    InvalidIssuerUrl(String),
    /// A key file's `token_uri` is not an absolute `http(s)` URL.
    #[error(
        "invalid token URI {0:?}: must be an http:// or https:// URL without query or fragment"
    )]
    InvalidTokenUri(String),
    /// The signing-key rotation period is out of bounds.
    #[error("signing-key rotation {secs} s is out of range: {min} to {max} s")]
    RotationOutOfRange {
        /// The period asked for, seconds.
        secs: u64,
        /// The least allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
    /// An access token was asked for with a lifetime out of bounds.
    #[error("access token lifetime {secs} s is out of range: 1 to 3600 s")]
    AccessTokenLifetime {
        /// The lifetime asked for, seconds.
        secs: u64,
    },
    /// Claims to sign could not be encoded.
    #[error("cannot encode the claims to sign")]
    Claims(#[from] serde_json::Error),
}

/// `Result` with [`IamError`].
pub type Result<T, E = IamError> = std::result::Result<T, E>;

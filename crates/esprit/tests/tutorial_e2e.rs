//! Google's "Authentication Between Services" tutorial end to end with the real pieces: accounts
//! and key files made by the `esprit iam` CLI, the key server (`iam::serve`), the Bookstore and
//! the proxy in-process on `127.0.0.1:0`, tokens signed by Python's google-auth, and a tonic
//! Bookstore client calling through the proxy. Then what happens to a key's tokens when the key
//! is disabled, enabled, deleted or newly created.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bookstore::pb::bookstore_client::BookstoreClient;
use serde_json::json;
use testkit::{KeyServer, RunningProxy, bookstore_service, settings, start_bookstore};
use tonic::{Code, Request, Status};

const SERVICE: &str = "bookstore.endpoints.producer-project.cloud.goog";
const JWKS_MISSING_KID: &str = "Jwks doesn't have key to match kid or alg from Jwt";
/// How long a change may take to show: generous for a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// The tutorial's `api_config_auth.yaml`, pointed at the local key server. API keys are not
/// checked here: every method allows unregistered calls.
fn tutorial_config(issuer: &str, jwks_uri: &str) -> String {
    format!(
        r#"
type: google.api.Service
config_version: 3
name: {SERVICE}
apis:
- name: endpoints.examples.bookstore.Bookstore
authentication:
  providers:
  - id: google_service_account
    issuer: {issuer}
    jwks_uri: {jwks_uri}
  rules:
  - selector: "*"
    requirements:
      - provider_id: google_service_account
usage:
  rules:
  - selector: "*"
    allow_unregistered_calls: true
"#
    )
}

/// `esprit ARGS` (blocking on a worker thread); asserts success and returns stdout, trimmed.
async fn esprit(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        testkit::cli::ok(testkit::cli::command(env!("CARGO_BIN_EXE_esprit")).args(&args))
    })
    .await
    .unwrap()
}

/// A Python script from `tests/python`; asserts success and returns its last stdout line.
async fn python(script: &'static str, args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = testkit::run_python(script, &args);
        testkit::assert_success(script, &out);
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout.lines().last().unwrap().trim().to_owned()
    })
    .await
    .unwrap()
}

/// One service account in the IAM store, with the key server, the Bookstore and the proxy
/// (all stopped when the stack is dropped).
struct Stack {
    dir: tempfile::TempDir,
    store: PathBuf,
    key_server: String,
    email: String,
    proxy: SocketAddr,
    _key_server: KeyServer,
    _behind_proxy: Option<(bookstore::RunningServer, RunningProxy)>,
}

impl Stack {
    /// Creates the consumer account with the CLI, starts the key server, creates `keys` keys,
    /// then starts the Bookstore and a proxy with the tutorial's config and `tune`d settings.
    async fn start(keys: usize, tune: impl FnOnce(&mut proxy::ProxySettings)) -> (Stack, Vec<Key>) {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("iam.db");
        let email = esprit(args(&[
            "iam",
            "accounts",
            "create",
            "bookstore-client",
            "--project",
            "consumer-project",
            "--store",
            &store.to_string_lossy(),
        ]))
        .await;
        assert_eq!(
            email,
            "bookstore-client@consumer-project.iam.gserviceaccount.com"
        );
        let key_server = KeyServer::start(&store).await;
        let mut stack = Stack {
            dir,
            store,
            key_server: key_server.url(),
            email,
            proxy: "127.0.0.1:0".parse().unwrap(),
            _key_server: key_server,
            _behind_proxy: None,
        };
        let mut created = Vec::new();
        for i in 0..keys {
            created.push(stack.create_key(&format!("key{i}.json")).await);
        }

        let bookstore = start_bookstore().await;
        let jwks_uri = format!(
            "{}/robot/v1/metadata/x509/{}",
            stack.key_server, stack.email
        );
        let config = bookstore_service(&tutorial_config(&stack.email, &jwks_uri));
        let mut settings = settings(bookstore.addr());
        tune(&mut settings);
        let proxy = RunningProxy::start(&config, settings).await;
        stack.proxy = proxy.addr;
        stack._behind_proxy = Some((bookstore, proxy));
        (stack, created)
    }

    fn store_arg(&self) -> String {
        self.store.to_string_lossy().into_owned()
    }

    /// `esprit iam keys create EMAIL --out FILE --issuer-base-url KEY_SERVER`.
    async fn create_key(&self, file: &str) -> Key {
        let path = self.dir.path().join(file);
        let id = esprit(args(&[
            "iam",
            "keys",
            "create",
            &self.email,
            "--out",
            &path.to_string_lossy(),
            "--issuer-base-url",
            &self.key_server,
            "--store",
            &self.store_arg(),
        ]))
        .await;
        assert_eq!(id.len(), 40, "{id}");
        Key { id, file: path }
    }

    /// `esprit iam keys VERB EMAIL KEY_ID`.
    async fn key_command(&self, verb: &str, key: &Key) {
        esprit(args(&[
            "iam",
            "keys",
            verb,
            &self.email,
            &key.id,
            "--store",
            &self.store_arg(),
        ]))
        .await;
    }

    /// ListShelves through the proxy with `token`; the number of shelves or the error.
    async fn list_shelves(&self, token: &str) -> Result<usize, Status> {
        let mut client = BookstoreClient::connect(format!("http://{}", self.proxy))
            .await
            .unwrap();
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request.set_timeout(Duration::from_secs(10));
        client
            .list_shelves(request)
            .await
            .map(|r| r.into_inner().shelves.len())
    }

    /// Calls with a never-seen token of `key` (so the verified-token cache cannot answer) until
    /// the outcome is `want`; fails after [`PATIENCE`].
    async fn wait_until(&self, key: &Key, want: Outcome, what: &str) -> Duration {
        self.wait_until_token(|| fresh_token(key, &self.email), want, what)
            .await
    }

    /// Polls with the tokens `token` makes until the call has the `want` outcome.
    async fn wait_until_token(
        &self,
        token: impl Fn() -> String,
        want: Outcome,
        what: &str,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let got = self.list_shelves(&token()).await;
            if want.matches(&got) {
                eprintln!("{what}: {want:?} after {:?}", started.elapsed());
                return started.elapsed();
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{what}: still {got:?} after {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Accepted,
    Rejected(&'static str),
}

impl Outcome {
    fn matches(self, got: &Result<usize, Status>) -> bool {
        match (self, got) {
            (Outcome::Accepted, Ok(shelves)) => *shelves == 2,
            (Outcome::Rejected(message), Err(status)) => {
                status.code() == Code::Unauthenticated && status.message() == message
            }
            _ => false,
        }
    }

    #[track_caller]
    fn assert(self, got: &Result<usize, Status>, what: &str) {
        assert!(self.matches(got), "{what}: wanted {self:?}, got {got:?}");
    }
}

/// A key made by `esprit iam keys create`: its id and key file.
struct Key {
    id: String,
    file: PathBuf,
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A token signed with `key`'s key file that no call has carried before (a unique `jti`), so
/// the proxy must find the key and check the signature.
fn fresh_token(key: &Key, issuer: &str) -> String {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let jti = format!("fresh-{}", SERIAL.fetch_add(1, Ordering::Relaxed));
    testkit::tokens::sign_with_key_file(&key.file, issuer, SERVICE, &jti)
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_auth_reads_our_key_files_and_its_tokens_pass_the_proxy() {
    let (stack, keys) = Stack::start(1, |_| {}).await;
    let key = &keys[0];

    // google.oauth2.service_account.Credentials.from_service_account_file reads the key file
    // (email, project, key id checked by the script), and google.auth.jwt.encode signs with it.
    let credentials_token = python(
        "iam_keyfile_sign.py",
        vec![path_arg(&key.file), SERVICE.to_owned()],
    )
    .await;
    // The tutorial's generate-jwt.py: RSASigner.from_service_account_file + jwt.encode.
    let tutorial_token = python(
        "mint_token.py",
        args(&[
            "google-auth",
            &path_arg(&key.file),
            "--issuer",
            &stack.email,
            "--audience",
            SERVICE,
        ]),
    )
    .await;
    // And `esprit token`, the same step without Python.
    let esprit_token = esprit(args(&[
        "token",
        "--key-file",
        &path_arg(&key.file),
        "--audiences",
        SERVICE,
    ]))
    .await;
    for (what, token) in [
        ("google-auth Credentials", &credentials_token),
        ("google-auth RSASigner (generate-jwt.py)", &tutorial_token),
        ("esprit token", &esprit_token),
    ] {
        Outcome::Accepted.assert(&stack.list_shelves(token).await, what);
    }

    // A google-auth token from another account's key file that claims to be the consumer:
    // rejected.
    let other_dir = tempfile::tempdir().unwrap();
    let other_store = path_arg(&other_dir.path().join("other.db"));
    let other_email = esprit(args(&[
        "iam",
        "accounts",
        "create",
        "other-client",
        "--project",
        "other-project",
        "--store",
        &other_store,
    ]))
    .await;
    let other_file = path_arg(&other_dir.path().join("other.json"));
    esprit(args(&[
        "iam",
        "keys",
        "create",
        &other_email,
        "--out",
        &other_file,
        "--store",
        &other_store,
    ]))
    .await;
    let forged = python(
        "mint_token.py",
        args(&[
            "google-auth",
            &other_file,
            "--issuer",
            &stack.email,
            "--audience",
            SERVICE,
        ]),
    )
    .await;
    Outcome::Rejected(JWKS_MISSING_KID).assert(
        &stack.list_shelves(&forged).await,
        "another account's key posing as the consumer",
    );
}

/// Disabling, enabling and deleting a key, with the key cache refreshed every 0.8 s
/// (`cache_duration` 1 s): tokens of a withdrawn key are rejected once the proxy refetches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_and_deleted_keys_stop_verifying_once_the_key_cache_refreshes() {
    let (stack, keys) = Stack::start(2, |s| {
        s.auth.jwks.cache_duration = Duration::from_secs(1);
        s.auth.jwks.refetch_interval = Duration::from_secs(1);
    })
    .await;
    let (k1, k2) = (&keys[0], &keys[1]);
    // Both keys work (the first call may wait for the proxy's first key fetch).
    stack.wait_until(k1, Outcome::Accepted, "k1 at start").await;
    let seen_k1 = fresh_token(k1, &stack.email);
    Outcome::Accepted.assert(&stack.list_shelves(&seen_k1).await, "k1, remembered");
    let seen_k2 = fresh_token(k2, &stack.email);
    Outcome::Accepted.assert(&stack.list_shelves(&seen_k2).await, "k2, remembered");

    stack.key_command("disable", k1).await;
    stack
        .wait_until(k1, Outcome::Rejected(JWKS_MISSING_KID), "k1 disabled")
        .await;
    Outcome::Accepted.assert(
        &stack.list_shelves(&fresh_token(k2, &stack.email)).await,
        "k2 while k1 is disabled",
    );
    // A token whose signature was verified before its key was withdrawn is remembered in the
    // verified-token cache, but no longer than a key set is (`cache_duration`): then it is
    // checked again, against the set without k1.
    stack
        .wait_until_token(
            || seen_k1.clone(),
            Outcome::Rejected(JWKS_MISSING_KID),
            "a k1 token verified before k1 was disabled",
        )
        .await;

    stack.key_command("enable", k1).await;
    stack
        .wait_until(k1, Outcome::Accepted, "k1 enabled again")
        .await;

    stack.key_command("delete", k1).await;
    stack
        .wait_until(k1, Outcome::Rejected(JWKS_MISSING_KID), "k1 deleted")
        .await;
    Outcome::Accepted.assert(
        &stack.list_shelves(&fresh_token(k2, &stack.email)).await,
        "k2 after k1 was deleted",
    );

    // The account's last key: the key server now answers an empty map, which says the account
    // has no keys (unlike garbage or unusable keys, it replaces the cached set): every token of
    // the provider is rejected once the key cache refreshes, remembered ones included.
    stack.key_command("delete", k2).await;
    stack
        .wait_until(
            k2,
            Outcome::Rejected(JWKS_MISSING_KID),
            "k2 deleted, the last key",
        )
        .await;
    stack
        .wait_until_token(
            || seen_k2.clone(),
            Outcome::Rejected(JWKS_MISSING_KID),
            "a remembered k2 token once the account has no keys",
        )
        .await;
}

/// A key created after the proxy fetched the key set works on its first call: the unknown `kid`
/// triggers one refetch. The key cache is fresh for 300 s here, so no scheduled refresh can be
/// what finds the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_is_accepted_on_first_use() {
    let refetch_interval = Duration::from_secs(1);
    let (stack, keys) = Stack::start(1, |s| {
        s.auth.jwks.cache_duration = Duration::from_secs(300);
        s.auth.jwks.refetch_interval = refetch_interval;
    })
    .await;
    stack
        .wait_until(&keys[0], Outcome::Accepted, "the first key")
        .await;
    // Any refetch the first calls caused (keys not fetched yet) no longer rate-limits the next.
    // Real time: the refetch budget runs on tokio's clock, and the proxy runs as a process.
    tokio::time::sleep(refetch_interval + Duration::from_millis(500)).await;

    let new = stack.create_key("new.json").await;
    Outcome::Accepted.assert(
        &stack.list_shelves(&fresh_token(&new, &stack.email)).await,
        "a key created after the proxy fetched the keys, first call",
    );
    // The old key still works: the refetched set has both.
    Outcome::Accepted.assert(
        &stack
            .list_shelves(&fresh_token(&keys[0], &stack.email))
            .await,
        "the first key after the refetch",
    );
}

/// Issue 9 item 12, the tutorial's own sequence with the default 30 s refetch interval: a token
/// whose `kid` the key server does not have (another account's key) is rejected, then a key is
/// created and its first token is accepted, with no wait in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_is_accepted_on_first_use_right_after_an_unknown_kid() {
    let (stack, keys) = Stack::start(1, |s| {
        s.auth.jwks.cache_duration = Duration::from_secs(300);
    })
    .await;
    stack
        .wait_until(&keys[0], Outcome::Accepted, "the first key")
        .await;

    let stranger = jose::generate_rsa_2048().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": stack.email, "sub": stack.email, "aud": SERVICE, "iat": now, "exp": now + 3600,
    });
    let bogus = stranger
        .signer()
        .unwrap()
        .sign_jwt(Some("0123456789abcdef"), jose::Algorithm::RS256, &claims)
        .unwrap();
    Outcome::Rejected(JWKS_MISSING_KID).assert(
        &stack.list_shelves(&bogus).await,
        "a kid the key server does not have",
    );

    let new = stack.create_key("new.json").await;
    Outcome::Accepted.assert(
        &stack.list_shelves(&fresh_token(&new, &stack.email)).await,
        "a key created right after an unknown kid, first call",
    );
}

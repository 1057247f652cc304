//! IAM stores for tests, on both backends: a SQLite file in a temporary directory, or a fresh
//! database on the PostgreSQL server that `scripts/postgres-env.sh` keeps running.
//!
//! [`store_tests!`](crate::store_tests) turns one test function taking a [`TestStore`] into a
//! test per backend. A PostgreSQL test FAILS (never skips) when no server can be started.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use iam::StoreLocation;

use crate::repo_root;

/// The two store backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// `$ESPRIT_TEST_POSTGRES_URL`, else the URL that `scripts/postgres-env.sh` prints (starting the
/// server on first use), once per process: the `postgres` database as a superuser. Panics,
/// failing the test, when no server can be had.
pub fn postgres_server() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("ESPRIT_TEST_POSTGRES_URL") {
            return url;
        }
        let script = repo_root().join("scripts/postgres-env.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|err| panic!("running {}: {err}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}): PostgreSQL is needed for the store tests (apt-get install \
             postgresql)\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        stdout.lines().last().unwrap().trim().to_owned()
    })
    .clone()
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Runs `work` with a client of the server's `postgres` database, on a thread of its own (the
/// synchronous client must not block an async test's thread).
fn with_admin<T: Send + 'static>(
    work: impl FnOnce(&mut postgres::Client) -> T + Send + 'static,
) -> T {
    let url = postgres_server();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .unwrap_or_else(|err| panic!("connecting to the test PostgreSQL server: {err}"));
        work(&mut client)
    })
    .join()
    .unwrap()
}

/// A database of its own on the test server, dropped with this value.
#[derive(Debug)]
pub struct PgDatabase {
    name: String,
    url: String,
}

impl PgDatabase {
    /// `CREATE DATABASE esprit_test_…` with a name no other test uses.
    pub fn create() -> PgDatabase {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "esprit_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let create = format!("CREATE DATABASE {name}");
        with_admin(move |client| client.batch_execute(&create).unwrap());
        let url = with_database(&postgres_server(), &name);
        PgDatabase { name, url }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs SQL statements on the database as they are (to set up or damage a store).
    pub fn execute(&self, sql: &str) {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client.batch_execute(&sql).unwrap();
        })
        .join()
        .unwrap();
    }

    /// The first column of a query's rows, as text (`::text` casts where needed).
    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client
                .query(&sql, &[])
                .unwrap()
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect()
        })
        .join()
        .unwrap()
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Not while panicking for another reason: a second panic would abort the test binary.
        let dropped = std::thread::spawn(move || {
            let url = postgres_server();
            postgres::Client::connect(&url, postgres::NoTls)
                .and_then(|mut client| client.batch_execute(&drop))
        })
        .join();
        if !std::thread::panicking() {
            dropped.unwrap().unwrap();
        }
    }
}

/// The PostgreSQL server of the TLS tests, one per test process, started on first use by
/// `scripts/postgres-env.sh --tls` (a cluster of its own, ~1-2 s; stopped and removed when the
/// process ends): it listens on 127.0.0.1 with `ssl=on` and a server certificate for `localhost`
/// and `127.0.0.1` issued by a private CA made here ([`PgTlsServer::ca_pem`]); a TCP connection
/// must use TLS and log in as [`PgTlsServer::USER`] with [`PgTlsServer::password`]
/// (`hostssl … scram-sha-256` only: a clear connection is refused). Panics, failing the test,
/// when no server can be had.
#[derive(Debug)]
pub struct PgTlsServer {
    dir: PathBuf,
    port: u16,
    ca_pem: String,
    password: String,
}

/// See [`PgTlsServer`].
pub fn postgres_tls_server() -> &'static PgTlsServer {
    static SERVER: OnceLock<PgTlsServer> = OnceLock::new();
    SERVER.get_or_init(PgTlsServer::start)
}

impl PgTlsServer {
    /// The role that tests log in as (it owns their databases).
    pub const USER: &'static str = "esprit_tls";

    fn start() -> PgTlsServer {
        let pki = keysets::test_server::TestPki::generate().unwrap();
        let dir = tempfile::Builder::new()
            .prefix("esprit-pgtls")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::write(dir.join("server.crt"), &pki.server_cert_pem).unwrap();
        std::fs::write(dir.join("server.key"), &pki.server_key_pem).unwrap();
        let script = repo_root().join("scripts/postgres-env.sh");
        let mut port = 0;
        for _ in 0..5 {
            // A free port now; when another process takes it first, the script says so (3).
            port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let out = Command::new("bash")
                .arg(&script)
                .args(["--tls", &dir.display().to_string(), &port.to_string()])
                .arg(std::process::id().to_string())
                .output()
                .unwrap_or_else(|err| panic!("running {}: {err}", script.display()));
            if out.status.code() == Some(3) {
                continue;
            }
            assert!(
                out.status.success(),
                "{} --tls failed ({}): PostgreSQL is needed for the TLS store tests\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let server = PgTlsServer {
                dir,
                port,
                ca_pem: pki.ca_pem,
                password: format!("pgtls-s3cret-{}-{nanos}", std::process::id()),
            };
            server.admin(format!(
                "CREATE ROLE {} LOGIN PASSWORD '{}'",
                PgTlsServer::USER,
                server.password
            ));
            return server;
        }
        panic!("no free port for the TLS PostgreSQL server (last tried {port})");
    }

    /// Runs SQL as the superuser over the server's Unix socket (`trust`), on a thread of its
    /// own.
    fn admin(&self, sql: String) {
        let url = format!(
            "postgresql://postgres@/postgres?host={}/run&port={}",
            self.dir.display(),
            self.port
        );
        std::thread::spawn(move || {
            postgres::Client::connect(&url, postgres::NoTls)
                .and_then(|mut client| client.batch_execute(&sql))
        })
        .join()
        .unwrap()
        .unwrap_or_else(|err| panic!("the TLS PostgreSQL server: {err}"));
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The private CA that issued the server's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// [`PgTlsServer::USER`]'s password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A new database owned by [`PgTlsServer::USER`], dropped with the value.
    pub fn create_database(&'static self) -> PgTlsDatabase {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "esprit_tls_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.admin(format!(
            "CREATE DATABASE {name} OWNER {}",
            PgTlsServer::USER
        ));
        PgTlsDatabase { name, server: self }
    }
}

/// A database on the [`PgTlsServer`], dropped with this value.
#[derive(Debug)]
pub struct PgTlsDatabase {
    name: String,
    server: &'static PgTlsServer,
}

impl PgTlsDatabase {
    /// `postgres://esprit_tls:PASSWORD@HOST:PORT/DATABASE`, then `?` and `params` when not
    /// empty (`sslmode=verify-full&sslrootcert=…`). `host` is the name TLS checks: `localhost`
    /// or `127.0.0.1` reach the server, any other name needs `hostaddr=127.0.0.1` in `params`.
    pub fn url(&self, host: &str, params: &str) -> String {
        let url = format!(
            "postgres://{}:{}@{host}:{}/{}",
            PgTlsServer::USER,
            self.server.password,
            self.server.port,
            self.name
        );
        if params.is_empty() {
            url
        } else {
            format!("{url}?{params}")
        }
    }
}

impl Drop for PgTlsDatabase {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.server.admin(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A new, empty store of one backend, with a temporary directory for the test's other files
/// (key files and the like). Both are removed with this value.
#[derive(Debug)]
pub struct TestStore {
    /// Which backend.
    pub backend: Backend,
    location: StoreLocation,
    dir: tempfile::TempDir,
    database: Option<PgDatabase>,
}

impl TestStore {
    /// A new store of `backend`.
    pub fn new(backend: Backend) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let (location, database) = match backend {
            Backend::Sqlite => (StoreLocation::Sqlite(dir.path().join("iam.db")), None),
            Backend::Postgres => {
                let database = PgDatabase::create();
                (
                    StoreLocation::Postgres(database.url().to_owned()),
                    Some(database),
                )
            }
        };
        TestStore {
            backend,
            location,
            dir,
            database,
        }
    }

    /// A new SQLite store.
    pub fn sqlite() -> TestStore {
        TestStore::new(Backend::Sqlite)
    }

    /// A new PostgreSQL store (a fresh database).
    pub fn postgres() -> TestStore {
        TestStore::new(Backend::Postgres)
    }

    /// Where the store is (what `--store` takes).
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// The store as `--store` takes it: the file's path or the URL.
    pub fn arg(&self) -> String {
        match &self.location {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres(url) => url.clone(),
        }
    }

    /// The test's temporary directory (not the store).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path in the test's temporary directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The SQLite file, or `None` for PostgreSQL.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.location {
            StoreLocation::Sqlite(path) => Some(path),
            StoreLocation::Postgres(_) => None,
        }
    }

    /// Runs SQL statements on the store as they are, bypassing esprit (to damage a store or
    /// look under it). The SQL must suit the backend.
    pub fn execute_raw(&self, sql: &str) {
        match (&self.location, &self.database) {
            (StoreLocation::Sqlite(path), _) => {
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap();
            }
            (_, Some(database)) => database.execute(sql),
            _ => unreachable!("a PostgreSQL store has its database"),
        }
    }

    /// The first column of a query's rows as text, bypassing esprit.
    pub fn query_raw(&self, sql: &str) -> Vec<String> {
        match (&self.location, &self.database) {
            (StoreLocation::Sqlite(path), _) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let mut stmt = conn.prepare(sql).unwrap();
                stmt.query_map([], |r| r.get::<_, String>(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            (_, Some(database)) => database.query_strings(sql),
            _ => unreachable!("a PostgreSQL store has its database"),
        }
    }

    /// Where a [`Relay`](crate::relay::Relay) in front of this PostgreSQL store's server
    /// connects: the server's Unix socket or TCP address.
    pub fn postgres_target(&self) -> crate::relay::RelayTarget {
        let config: postgres::Config = self.arg().parse().unwrap();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        match config.get_hosts().first() {
            Some(postgres::config::Host::Unix(dir)) => {
                crate::relay::RelayTarget::Unix(dir.join(format!(".s.PGSQL.{port}")))
            }
            Some(postgres::config::Host::Tcp(host)) => {
                let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                    .unwrap()
                    .next()
                    .unwrap();
                crate::relay::RelayTarget::Tcp(addr)
            }
            None => panic!("the test PostgreSQL URL names no host"),
        }
    }

    /// This PostgreSQL store's URL through a relay listening on `relay` (same user, password
    /// and database; clear text, as the relay's far side is the test server's).
    pub fn postgres_url_via(&self, relay: std::net::SocketAddr) -> String {
        let config: postgres::Config = self.arg().parse().unwrap();
        let user = config.get_user().unwrap_or("postgres");
        let password = config
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        let database = config.get_dbname().unwrap();
        format!("postgres://{user}{password}@{relay}/{database}?sslmode=disable")
    }

    /// Sets the store's schema version as a newer esprit would (the store must exist).
    pub fn set_schema_version(&self, version: i64) {
        match self.backend {
            Backend::Sqlite => self.execute_raw(&format!("PRAGMA user_version = {version}")),
            Backend::Postgres => self.execute_raw(&format!(
                "UPDATE esprit_iam_schema SET version = {version} WHERE id = 1"
            )),
        }
    }
}

/// One test per backend from functions taking a [`TestStore`]:
///
/// ```ignore
/// testkit::store_tests!(accounts_are_unique, keys_round_trip);           // #[test] fn …(TestStore)
/// testkit::store_tests!(async: pool_answers, pool_waits);                // async fn …(TestStore)
/// testkit::store_tests!(async(flavor = "multi_thread"): rotation);       // #[tokio::test(…)]
/// ```
///
/// makes `sqlite::NAME` and `postgres::NAME` for each.
#[macro_export]
macro_rules! store_tests {
    (async: $($name:ident),+ $(,)?) => {
        $crate::store_tests!(@async sqlite, Sqlite, tokio::test, $($name),+);
        $crate::store_tests!(@async postgres, Postgres, tokio::test, $($name),+);
    };
    (async $attrs:tt: $($name:ident),+ $(,)?) => {
        $crate::store_tests!(@async sqlite, Sqlite, tokio::test $attrs, $($name),+);
        $crate::store_tests!(@async postgres, Postgres, tokio::test $attrs, $($name),+);
    };
    (@async $module:ident, $backend:ident, $attr:meta, $($name:ident),+) => {
        mod $module {
            $(
                #[$attr]
                async fn $name() {
                    super::$name($crate::TestStore::new($crate::Backend::$backend)).await
                }
            )+
        }
    };
    (@sync $module:ident, $backend:ident, $($name:ident),+) => {
        mod $module {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::TestStore::new($crate::Backend::$backend))
                }
            )+
        }
    };
    ($($name:ident),+ $(,)?) => {
        $crate::store_tests!(@sync sqlite, Sqlite, $($name),+);
        $crate::store_tests!(@sync postgres, Postgres, $($name),+);
    };
}

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

//! The two backends of the store (a SQLite file, a PostgreSQL database) behind one small query
//! API, so that each store function is written once.
//!
//! Queries are written in the SQL both understand, with SQLite's numbered placeholders (`?1`);
//! [`postgres_query`] turns them into PostgreSQL's (`$1`). Migrations are written once, in
//! SQLite's DDL, and [`postgres_ddl`] maps its types to PostgreSQL's: `INTEGER` → `BIGINT`,
//! `BLOB` → `BYTEA`, `TEXT` → `TEXT COLLATE "C"` (byte order, as SQLite sorts), no `STRICT`,
//! and an explicit `rowid` identity column in each table (SQLite tables have an implicit one,
//! which queries use for insertion order). Values cross as [`Value`] (see [`super::value`]).
//!
//! A PostgreSQL connection is the synchronous `postgres` client, which blocks on a runtime of
//! its own and so must not run on a tokio worker thread: each connection lives on a thread of
//! its own and the caller hands it the work ([`PgWorker`]), so a [`super::Store`] is usable
//! from any thread, async tests included.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use postgres::types::ToSql as PgToSql;

pub use super::location::StoreLocation;
pub(crate) use super::pg_conn::PgWorker;
pub(crate) use super::value::{Row, Value, args};
use super::value::{pg_value, sqlite_value};
use crate::{IamError, Result};

/// A query in the shared dialect as PostgreSQL takes it: `?N` → `$N` outside string literals.
pub(crate) fn postgres_query(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

/// A migration (SQLite DDL) as PostgreSQL takes it (see the module's documentation).
pub(crate) fn postgres_ddl(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut word = String::new();
    let mut quoted = false;
    let mut after_create_table = 0u8; // 1 after CREATE, 2 after CREATE TABLE
    let flush = |word: &mut String, out: &mut String, state: &mut u8| {
        if word.is_empty() {
            return;
        }
        let w = word.as_str();
        *state = match (w, *state) {
            ("CREATE", _) => 1,
            ("TABLE", 1) => 2,
            (_, 2) => 2,
            _ => 0,
        };
        match w {
            "INTEGER" => out.push_str("BIGINT"),
            "BLOB" => out.push_str("BYTEA"),
            "TEXT" => out.push_str("TEXT COLLATE \"C\""),
            "STRICT" => {
                while out.ends_with(' ') {
                    out.pop();
                }
            }
            _ => out.push_str(w),
        }
        word.clear();
    };
    for c in sql.chars() {
        if quoted {
            out.push(c);
            if c == '\'' {
                quoted = false;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out, &mut after_create_table);
        match c {
            '\'' => {
                quoted = true;
                out.push(c);
            }
            '(' if after_create_table == 2 => {
                out.push_str("(\n        rowid BIGINT GENERATED ALWAYS AS IDENTITY,");
                after_create_table = 0;
            }
            _ => {
                if !c.is_whitespace() {
                    after_create_table = 0;
                }
                out.push(c);
            }
        }
    }
    flush(&mut word, &mut out, &mut after_create_table);
    out
}

/// How long a SQLite statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long connecting to PostgreSQL may take, unless the URL says (`connect_timeout=`).
pub(crate) const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL advisory lock every write transaction (and migration) takes first: writers
/// take turns, as SQLite's `BEGIN IMMEDIATE` makes them, so a read that decides a write sees
/// every earlier write. Readers are never blocked. (The number is "esprit-iam" in ASCII.)
pub(crate) const WRITE_LOCK: i64 = 0x0065_7370_7269_7469;

/// Whether a connection may write.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    ReadWrite,
    ReadOnly,
}

/// The two kinds of constraint violation the store tells apart.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Violation {
    /// A primary key or UNIQUE column already holds the value.
    Unique,
    /// A reference to a row that does not exist.
    ForeignKey,
    /// Another constraint (CHECK, NOT NULL).
    Other,
}

/// The constraint `err` violates, if it is a violation.
pub(crate) fn violation(err: &IamError) -> Option<Violation> {
    match err {
        IamError::Store(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Some(match e.extended_code {
                rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => Violation::Unique,
                rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Violation::ForeignKey,
                _ => Violation::Other,
            })
        }
        IamError::StorePostgres(e) => {
            let code = e.code()?;
            if *code == postgres::error::SqlState::UNIQUE_VIOLATION {
                Some(Violation::Unique)
            } else if *code == postgres::error::SqlState::FOREIGN_KEY_VIOLATION {
                Some(Violation::ForeignKey)
            } else if code.code().starts_with("23") {
                Some(Violation::Other)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// An open connection of either backend.
pub(crate) enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(PgWorker),
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Db::Sqlite(_) => f.write_str("Db::Sqlite"),
            Db::Postgres(_) => f.write_str("Db::Postgres"),
        }
    }
}

impl Db {
    /// Connects to `location`. A SQLite file is opened in WAL mode with foreign keys on (the
    /// file must exist or be creatable); a PostgreSQL connection gets `default_transaction_read_only`
    /// when `access` is read-only.
    pub(crate) fn connect(location: &StoreLocation, access: Access) -> Result<Db> {
        match location {
            StoreLocation::Sqlite(path) => sqlite_connect(path, access).map(Db::Sqlite),
            StoreLocation::Postgres(url) => PgWorker::connect(url, access).map(Db::Postgres),
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Runs a statement; the number of rows it changed.
    pub(crate) fn execute(&self, sql: &str, args: &[Value]) -> Result<u64> {
        match self {
            Db::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let changed = stmt.execute(rusqlite::params_from_iter(args.iter()))?;
                Ok(u64::try_from(changed).unwrap_or(u64::MAX))
            }
            Db::Postgres(worker) => {
                let (sql, args) = (sql.to_owned(), args.to_vec());
                worker.run(move |pg| {
                    let stmt = pg.prepare(&sql)?;
                    Ok(pg.client.execute(&stmt, &pg_params(&args))?)
                })
            }
        }
    }

    /// Runs a query; its rows.
    pub(crate) fn query(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        match self {
            Db::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let width = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let values = (0..width)
                        .map(|i| sqlite_value(row.get_ref(i)?))
                        .collect::<Result<Vec<_>>>()?;
                    out.push(Row(values));
                }
                Ok(out)
            }
            Db::Postgres(worker) => {
                let (sql, args) = (sql.to_owned(), args.to_vec());
                worker.run(move |pg| {
                    let stmt = pg.prepare(&sql)?;
                    let rows = pg.client.query(&stmt, &pg_params(&args))?;
                    rows.iter()
                        .map(|row| {
                            (0..row.len())
                                .map(|i| pg_value(row, i))
                                .collect::<Result<Vec<_>>>()
                                .map(Row)
                        })
                        .collect()
                })
            }
        }
    }

    /// The first row of a query, if any.
    pub(crate) fn query_opt(&self, sql: &str, args: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first row of a query that always has one (`count(*)`, `EXISTS`).
    pub(crate) fn query_one(&self, sql: &str, args: &[Value]) -> Result<Row> {
        self.query_opt(sql, args)?
            .ok_or_else(|| IamError::StoreCorrupt("a query that always answers did not".into()))
    }

    /// Runs statements without arguments, as they are (no dialect translation).
    pub(crate) fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Db::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Db::Postgres(worker) => {
                let sql = sql.to_owned();
                let (begins, ends) = (
                    sql.starts_with("BEGIN"),
                    sql == "COMMIT" || sql == "ROLLBACK",
                );
                worker.run(move |pg| {
                    if ends {
                        pg.in_transaction = false;
                    }
                    pg.client.batch_execute(&sql)?;
                    if begins {
                        pg.in_transaction = true;
                    }
                    Ok(())
                })
            }
        }
    }

    /// Starts a write transaction: `BEGIN IMMEDIATE` in SQLite (the file's write lock), `BEGIN`
    /// and the [`WRITE_LOCK`] advisory lock in PostgreSQL.
    pub(crate) fn begin_write(&self) -> Result<()> {
        match self {
            Db::Sqlite(_) => self.batch("BEGIN IMMEDIATE"),
            Db::Postgres(_) => {
                self.batch("BEGIN")?;
                let locked = self.execute("SELECT pg_advisory_xact_lock(?1)", args![WRITE_LOCK]);
                if let Err(err) = locked {
                    let _ = self.batch("ROLLBACK");
                    return Err(err);
                }
                Ok(())
            }
        }
    }

    /// Starts a read-only transaction that sees one snapshot of the store throughout.
    pub(crate) fn begin_read(&self) -> Result<()> {
        match self {
            Db::Sqlite(_) => self.batch("BEGIN DEFERRED"),
            Db::Postgres(_) => self.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
        }
    }

    /// The columns of `table` in order, without PostgreSQL's `rowid`.
    pub(crate) fn columns(&self, table: &str) -> Result<Vec<String>> {
        let rows = match self {
            Db::Sqlite(_) => self.query(
                "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
                args![table],
            )?,
            Db::Postgres(_) => self.query(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = ?1
                   AND column_name <> 'rowid'
                 ORDER BY ordinal_position",
                args![table],
            )?,
        };
        rows.iter().map(|row| row.text(0)).collect()
    }

    pub(crate) fn commit(&self) -> Result<()> {
        self.batch("COMMIT")
    }

    pub(crate) fn rollback(&self) -> Result<()> {
        self.batch("ROLLBACK")
    }
}

pub(crate) fn pg_params(args: &[Value]) -> Vec<&(dyn PgToSql + Sync)> {
    args.iter().map(|v| v as &(dyn PgToSql + Sync)).collect()
}

fn sqlite_connect(path: &Path, access: Access) -> Result<rusqlite::Connection> {
    let opened = || -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // journal_mode answers with the mode in force; WAL persists in the file.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        if access == Access::ReadOnly {
            conn.pragma_update(None, "query_only", true)?;
        }
        Ok(conn)
    };
    opened().map_err(|source| IamError::StoreOpen {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(
            postgres_query("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d IS ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d IS $12"
        );
    }

    #[test]
    fn ddl() {
        let sql = "CREATE TABLE t (
            id   INTEGER PRIMARY KEY CHECK (id = 1),
            name TEXT NOT NULL CHECK (name IN ('TEXT', 'BLOB')),
            data BLOB
        ) STRICT;
        CREATE INDEX t_by_name ON t(name);";
        assert_eq!(
            postgres_ddl(sql),
            "CREATE TABLE t (
        rowid BIGINT GENERATED ALWAYS AS IDENTITY,
            id   BIGINT PRIMARY KEY CHECK (id = 1),
            name TEXT COLLATE \"C\" NOT NULL CHECK (name IN ('TEXT', 'BLOB')),
            data BYTEA
        );
        CREATE INDEX t_by_name ON t(name);"
        );
    }
}

//! The two backends of the store (a SQLite file, a PostgreSQL database) behind one small query
//! API, so that each store function is written once.
//!
//! Queries are written in the SQL both understand, with SQLite's numbered placeholders (`?1`);
//! [`postgres_query`] turns them into PostgreSQL's (`$1`). Migrations are written once, in
//! SQLite's DDL, and [`postgres_ddl`] maps its types to PostgreSQL's: `INTEGER` → `BIGINT`,
//! `BLOB` → `BYTEA`, `TEXT` → `TEXT COLLATE "C"` (byte order, as SQLite sorts), no `STRICT`,
//! and an explicit `rowid` identity column in each table (SQLite tables have an implicit one,
//! which queries use for insertion order). Values cross as [`Value`]: integers, text, bytes or
//! NULL, booleans as 0/1 integers (as SQLite stores them).
//!
//! A PostgreSQL connection is the synchronous `postgres` client, which blocks on a runtime of
//! its own and so must not run on a tokio worker thread: each connection lives on a thread of
//! its own and the caller hands it the work ([`PgWorker`]), so a [`super::Store`] is usable
//! from any thread, async tests included.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql as PgToSql, Type, to_sql_checked};
use rusqlite::types::{ToSqlOutput, ValueRef};

pub use super::location::StoreLocation;
pub(crate) use super::pg_conn::PgWorker;
use crate::{IamError, Result};

/// A value passed to or read from a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}
impl From<&Vec<u8>> for Value {
    fn from(v: &Vec<u8>) -> Self {
        Value::Blob(v.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// `args![a, b]`: the values of a query's `?1`, `?2`.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        &[$($crate::store::db::Value::from($arg)),*][..]
    };
}
pub(crate) use args;

/// One result row.
#[derive(Debug)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    fn value(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| IamError::StoreCorrupt(format!("no column {i} in a result row")))
    }

    fn mismatch(&self, i: usize, wanted: &str) -> IamError {
        IamError::StoreCorrupt(format!("column {i} is not {wanted}"))
    }

    pub(crate) fn text(&self, i: usize) -> Result<String> {
        match self.value(i)? {
            Value::Text(t) => Ok(t.clone()),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.value(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64> {
        match self.value(i)? {
            Value::Int(v) => Ok(*v),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.value(i)? {
            Value::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    pub(crate) fn bool(&self, i: usize) -> Result<bool> {
        Ok(self.int(i)? != 0)
    }

    pub(crate) fn blob(&self, i: usize) -> Result<Vec<u8>> {
        match self.value(i)? {
            Value::Blob(b) => Ok(b.clone()),
            _ => Err(self.mismatch(i, "bytes")),
        }
    }

    pub(crate) fn into_values(self) -> Vec<Value> {
        self.0
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl PgToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => Err(format!("an integer given for a {ty} parameter").into()),
            },
            Value::Text(t) => t.to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn pg_value(row: &postgres::Row, i: usize) -> Result<Value> {
    let ty = row.columns().get(i).map(|c| c.type_().clone());
    let value = match ty {
        Some(Type::INT8) => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
        Some(Type::INT4) => row
            .try_get::<_, Option<i32>>(i)?
            .map(|v| Value::Int(v.into())),
        Some(Type::INT2) => row
            .try_get::<_, Option<i16>>(i)?
            .map(|v| Value::Int(v.into())),
        Some(Type::BOOL) => row
            .try_get::<_, Option<bool>>(i)?
            .map(|v| Value::Int(v.into())),
        Some(Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR) => {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        }
        Some(Type::BYTEA) => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
        other => {
            return Err(IamError::StoreCorrupt(format!(
                "column {i} has an unexpected type {other:?}"
            )));
        }
    };
    Ok(value.unwrap_or(Value::Null))
}

fn sqlite_value(value: ValueRef<'_>) -> Result<Value> {
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Text(t) => Value::Text(
            String::from_utf8(t.to_vec())
                .map_err(|_| IamError::StoreCorrupt("text that is not UTF-8".into()))?,
        ),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        ValueRef::Real(_) => return Err(IamError::StoreCorrupt("a floating-point value".into())),
    })
}

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

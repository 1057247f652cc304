//! The bookstore's storage: one SQLite connection behind a mutex.
//!
//! Id scheme: shelf ids come from an `AUTOINCREMENT` column, so a deleted shelf's id is never
//! handed out again. Book ids are per shelf, as in the ESP sample's seed data (both seeded shelves
//! hold a book 1): each shelf keeps a `next_book_id` counter, so a deleted book's id is not reused on
//! that shelf either. The id a caller puts in `CreateShelf`/`CreateBook` is ignored.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::pb::{Book, Shelf};

/// The schema version this code writes into `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE shelves (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    theme TEXT NOT NULL,
    next_book_id INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE books (
    shelf_id INTEGER NOT NULL REFERENCES shelves(id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    author TEXT NOT NULL,
    title TEXT NOT NULL,
    PRIMARY KEY (shelf_id, id)
);
-- The seed data of the ESP Bookstore sample.
INSERT INTO shelves (id, theme, next_book_id) VALUES (1, 'Fiction', 2), (2, 'Fantasy', 2);
INSERT INTO books (shelf_id, id, author, title) VALUES
    (1, 1, 'Neal Stephenson', 'README'),
    (2, 1, 'George R.R. Martin', 'A Game of Thrones');
";

/// Where the bookstore keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbLocation {
    /// A private in-memory database: seeded at start, gone at exit (`:memory:` on the command line).
    Memory,
    /// A SQLite file, created and seeded when it does not exist yet.
    File(PathBuf),
}

impl FromStr for DbLocation {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s == ":memory:" {
            Self::Memory
        } else {
            Self::File(PathBuf::from(s))
        })
    }
}

impl std::fmt::Display for DbLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str(":memory:"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Why a store operation failed. The `NotFound` messages reach gRPC callers as is.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Unable to find shelf {shelf}")]
    ShelfNotFound { shelf: i64 },
    #[error("Unable to find book {book} on shelf {shelf}")]
    BookNotFound { shelf: i64, book: i64 },
    #[error("database {location} has schema version {found}, expected {SCHEMA_VERSION}")]
    UnsupportedSchema { location: String, found: i64 },
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database lock poisoned by a panicked request")]
    Poisoned,
}

/// The shelves and books, in SQLite. Calls block: from async code use `spawn_blocking`.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (or creates and seeds) the database at `location`.
    pub fn open(location: &DbLocation) -> Result<Self, StoreError> {
        let conn = match location {
            DbLocation::Memory => Connection::open_in_memory()?,
            DbLocation::File(path) => Connection::open(path)?,
        };
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", true)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        match version {
            // A new database: create the schema and the seed data in one transaction, so a crash
            // half way leaves a database that is seeded again on the next start.
            0 => {
                conn.execute_batch(&format!(
                    "BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                ))?;
            }
            SCHEMA_VERSION => {}
            found => {
                return Err(StoreError::UnsupportedSchema {
                    location: location.to_string(),
                    found,
                });
            }
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// All shelves, by id.
    pub fn list_shelves(&self) -> Result<Vec<Shelf>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached("SELECT id, theme FROM shelves ORDER BY id")?;
        let rows = stmt.query_map([], |row| {
            Ok(Shelf {
                id: row.get(0)?,
                theme: row.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds a shelf with a new id.
    pub fn create_shelf(&self, theme: &str) -> Result<Shelf, StoreError> {
        let conn = self.conn()?;
        conn.execute("INSERT INTO shelves (theme) VALUES (?1)", params![theme])?;
        Ok(Shelf {
            id: conn.last_insert_rowid(),
            theme: theme.to_owned(),
        })
    }

    pub fn get_shelf(&self, shelf: i64) -> Result<Shelf, StoreError> {
        let conn = self.conn()?;
        find_shelf(&conn, shelf)
    }

    /// Deletes a shelf and every book on it.
    pub fn delete_shelf(&self, shelf: i64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM books WHERE shelf_id = ?1", params![shelf])?;
        let deleted = tx.execute("DELETE FROM shelves WHERE id = ?1", params![shelf])?;
        if deleted == 0 {
            return Err(StoreError::ShelfNotFound { shelf });
        }
        tx.commit()?;
        Ok(())
    }

    /// The books on a shelf, by id.
    pub fn list_books(&self, shelf: i64) -> Result<Vec<Book>, StoreError> {
        let conn = self.conn()?;
        find_shelf(&conn, shelf)?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, author, title FROM books WHERE shelf_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![shelf], book_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds a book to a shelf, with the shelf's next book id.
    pub fn create_book(&self, shelf: i64, author: &str, title: &str) -> Result<Book, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let id: i64 = tx
            .query_row(
                "UPDATE shelves SET next_book_id = next_book_id + 1 WHERE id = ?1 \
                 RETURNING next_book_id - 1",
                params![shelf],
                |row| row.get(0),
            )
            .optional()?
            .ok_or(StoreError::ShelfNotFound { shelf })?;
        tx.execute(
            "INSERT INTO books (shelf_id, id, author, title) VALUES (?1, ?2, ?3, ?4)",
            params![shelf, id, author, title],
        )?;
        tx.commit()?;
        Ok(Book {
            id,
            author: author.to_owned(),
            title: title.to_owned(),
        })
    }

    pub fn get_book(&self, shelf: i64, book: i64) -> Result<Book, StoreError> {
        let conn = self.conn()?;
        find_shelf(&conn, shelf)?;
        conn.query_row(
            "SELECT id, author, title FROM books WHERE shelf_id = ?1 AND id = ?2",
            params![shelf, book],
            book_from_row,
        )
        .optional()?
        .ok_or(StoreError::BookNotFound { shelf, book })
    }

    pub fn delete_book(&self, shelf: i64, book: i64) -> Result<(), StoreError> {
        let conn = self.conn()?;
        find_shelf(&conn, shelf)?;
        let deleted = conn.execute(
            "DELETE FROM books WHERE shelf_id = ?1 AND id = ?2",
            params![shelf, book],
        )?;
        if deleted == 0 {
            return Err(StoreError::BookNotFound { shelf, book });
        }
        Ok(())
    }
}

fn find_shelf(conn: &Connection, shelf: i64) -> Result<Shelf, StoreError> {
    conn.query_row(
        "SELECT id, theme FROM shelves WHERE id = ?1",
        params![shelf],
        |row| {
            Ok(Shelf {
                id: row.get(0)?,
                theme: row.get(1)?,
            })
        },
    )
    .optional()?
    .ok_or(StoreError::ShelfNotFound { shelf })
}

fn book_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Book> {
    Ok(Book {
        id: row.get(0)?,
        author: row.get(1)?,
        title: row.get(2)?,
    })
}

//! `esprit iam store copy`: every table of one store into another (SQLite into PostgreSQL, or
//! back), in one transaction on the target.

use super::db::{Row, args};
use super::{SCHEMA_VERSION, Store, StoreLocation, TABLES};
use crate::{IamError, Result};

/// What a copy copied: each table with its number of rows, in copy order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// `(table, rows)`.
    pub tables: Vec<(String, u64)>,
}

/// Copies every table of the store at `from` into the store at `to` (created and migrated if
/// new). The source must be at this build's schema version ([`IamError::StoreVersionMismatch`]:
/// migrate it first) and is read in one snapshot; the target must hold no rows
/// ([`IamError::StoreNotEmpty`]) and is written in one write transaction, so a failed copy
/// leaves it empty. Rows keep their insertion order.
pub fn copy_store(from: &StoreLocation, to: &StoreLocation) -> Result<CopyReport> {
    let source = Store::open_unmigrated(from)?;
    let found = source.schema_version()?;
    if found != SCHEMA_VERSION {
        return Err(IamError::StoreVersionMismatch {
            store: from.to_string(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let target = Store::open(to)?;
    source.db.begin_read()?;
    let copied = target.write(|tx| {
        for table in TABLES {
            let rows = tx
                .db
                .query_one(&format!("SELECT count(*) FROM {table}"), args![])?
                .int(0)?;
            if rows > 0 {
                return Err(IamError::StoreNotEmpty {
                    store: to.to_string(),
                    table: (*table).to_owned(),
                    rows,
                });
            }
        }
        let mut report = CopyReport { tables: Vec::new() };
        for table in TABLES {
            let columns = source.db.columns(table)?.join(", ");
            let rows = source.db.query(
                &format!("SELECT {columns} FROM {table} ORDER BY rowid"),
                args![],
            )?;
            let count = rows.len();
            let placeholders: Vec<String> = (1..=source.db.columns(table)?.len())
                .map(|i| format!("?{i}"))
                .collect();
            let insert = format!(
                "INSERT INTO {table} ({columns}) VALUES ({})",
                placeholders.join(", ")
            );
            for row in rows {
                tx.db.execute(&insert, &Row::into_values(row))?;
            }
            report.tables.push((
                (*table).to_owned(),
                u64::try_from(count).unwrap_or(u64::MAX),
            ));
        }
        Ok(report)
    });
    let _ = source.db.commit();
    copied
}

//! The embedded table store: `wenu_core::table` in one SQLite table.
//!
//! Expired items are invisible at once and removed by [`SqliteTable::sweep`],
//! which `wenu serve` runs periodically (DynamoDB's TTL deletion does the
//! same on AWS, lazily).

use std::ops::Range;
use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use wenu_core::clock::{self, SharedClock};
use wenu_core::table::{Expect, Item, ItemKey, Page, TableStore, Write};
use wenu_core::{Error, Result};

use crate::sqlite::{self, ReadConnections, SharedConnection, open_durable};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    partition  TEXT    NOT NULL,
    sort       INTEGER NOT NULL,
    value      BLOB    NOT NULL,
    version    INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (partition, sort)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_expiry ON items (expires_at) WHERE expires_at IS NOT NULL;
";

/// A table; cheap to clone.
#[derive(Clone)]
pub struct SqliteTable {
    /// Every write, and the reads inside a write's transaction.
    conn: SharedConnection,
    /// Queries and the reads before a conditional write.
    readers: ReadConnections,
    /// Decides which items have expired.
    clock: SharedClock,
}

impl SqliteTable {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = open_durable(path).map_err(table_error)?;
        conn.execute_batch(SCHEMA).map_err(table_error)?;
        let readers = ReadConnections::open(path).map_err(table_error)?;
        Ok(SqliteTable { conn: SharedConnection::new(conn), readers, clock: clock::system() })
    }

    /// The same table, deciding expiry by `clock` instead of the machine's.
    pub fn with_clock(self, clock: SharedClock) -> Self {
        SqliteTable { clock, ..self }
    }

    /// Deletes the items that expired before `now` (unix seconds); returns how many.
    pub async fn sweep(&self, now: i64) -> Result<u64> {
        self.with_conn(move |conn| {
            conn.execute("DELETE FROM items WHERE expires_at IS NOT NULL AND expires_at <= ?1", [now])
                .map(|n| n as u64)
                .map_err(table_error)
        })
        .await
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.conn.run(f, task_failed).await
    }

    /// Runs a read on one of the read connections.
    async fn reading<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.readers.run(f, task_failed).await
    }
}

#[async_trait]
impl TableStore for SqliteTable {
    async fn get(&self, key: &ItemKey) -> Result<Option<Item>> {
        Ok(self.get_many(std::slice::from_ref(key)).await?.pop().flatten())
    }

    async fn get_many(&self, keys: &[ItemKey]) -> Result<Vec<Option<Item>>> {
        let (keys, now) = (keys.to_vec(), self.clock.now_secs());
        self.reading(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT value, version, expires_at FROM items
                     WHERE partition = ?1 AND sort = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
                )
                .map_err(table_error)?;
            keys.into_iter()
                .map(|key| {
                    stmt.query_row(params![key.partition, key.sort, now], |r| {
                        Ok(Item {
                            value: r.get::<_, Vec<u8>>(0)?.into(),
                            version: r.get(1)?,
                            expires_at: r.get(2)?,
                            key: key.clone(),
                        })
                    })
                    .optional()
                    .map_err(table_error)
                })
                .collect()
        })
        .await
    }

    async fn put(&self, key: &ItemKey, value: Bytes, expires_at: Option<i64>, expect: Expect) -> Result<u64> {
        let write = Write { key: key.clone(), value, expires_at, expect };
        let now = self.clock.now_secs();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(table_error)?;
            let version = apply(&tx, &write, now)?;
            tx.commit().map_err(table_error)?;
            Ok(version)
        })
        .await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<()> {
        let now = self.clock.now_secs();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(table_error)?;
            for write in &writes {
                apply(&tx, write, now)?;
            }
            tx.commit().map_err(table_error)
        })
        .await
    }

    async fn delete(&self, key: &ItemKey) -> Result<()> {
        let key = key.clone();
        self.with_conn(move |conn| {
            conn.execute(
                "DELETE FROM items WHERE partition = ?1 AND sort = ?2",
                params![key.partition, key.sort],
            )
            .map(drop)
            .map_err(table_error)
        })
        .await
    }

    async fn query(&self, partition: &str, sort: Range<i64>, limit: usize) -> Result<Page> {
        let (partition, now) = (partition.to_owned(), self.clock.now_secs());
        self.reading(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT sort, value, version, expires_at FROM items
                     WHERE partition = ?1 AND sort >= ?2 AND sort < ?3 AND (expires_at IS NULL OR expires_at > ?4)
                     ORDER BY sort LIMIT ?5",
                )
                .map_err(table_error)?;
            let mut items = stmt
                .query_map(params![partition, sort.start, sort.end, now, limit as i64 + 1], |r| {
                    Ok(Item {
                        key: ItemKey { partition: partition.clone(), sort: r.get(0)? },
                        value: r.get::<_, Vec<u8>>(1)?.into(),
                        version: r.get(2)?,
                        expires_at: r.get(3)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(table_error)?;
            // One more than asked tells whether there is a next page, and where.
            let next = (items.len() > limit).then(|| items.pop().map(|i| i.key.sort)).flatten();
            Ok(Page { items, next })
        })
        .await
    }

    async fn last(&self, partition: &str, sort: Range<i64>) -> Result<Option<Item>> {
        let (partition, now) = (partition.to_owned(), self.clock.now_secs());
        self.reading(move |conn| {
            conn.prepare_cached(
                "SELECT sort, value, version, expires_at FROM items
                 WHERE partition = ?1 AND sort >= ?2 AND sort < ?3 AND (expires_at IS NULL OR expires_at > ?4)
                 ORDER BY sort DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![partition, sort.start, sort.end, now], |r| {
                    Ok(Item {
                        key: ItemKey { partition: partition.clone(), sort: r.get(0)? },
                        value: r.get::<_, Vec<u8>>(1)?.into(),
                        version: r.get(2)?,
                        expires_at: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(table_error)
        })
        .await
    }
}

/// One write inside a transaction; returns the item's new version.
fn apply(tx: &Transaction<'_>, write: &Write, now: i64) -> Result<u64> {
    let Write { key, value, expires_at, expect } = write;
    let current: Option<u64> = tx
        .prepare_cached(
            "SELECT version FROM items
             WHERE partition = ?1 AND sort = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
        )
        .and_then(|mut stmt| stmt.query_row(params![key.partition, key.sort, now], |r| r.get(0)).optional())
        .map_err(table_error)?;
    match (expect, current) {
        (Expect::Anything, _) | (Expect::Absent, None) => {}
        (Expect::Version(v), Some(c)) if *v == c => {}
        (expect, current) => {
            return Err(Error::ConditionFailed(format!(
                "{}/{}: expected {expect:?}, found version {current:?}",
                key.partition, key.sort
            )));
        }
    }
    let version = current.unwrap_or(0) + 1;
    tx.prepare_cached(
        "INSERT INTO items (partition, sort, value, version, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (partition, sort) DO UPDATE SET value = ?3, version = ?4, expires_at = ?5",
    )
    .and_then(|mut stmt| stmt.execute(params![key.partition, key.sort, value.as_ref(), version, expires_at]))
    .map_err(table_error)?;
    Ok(version)
}

fn task_failed(why: String) -> Error {
    Error::Table { message: format!("table task failed: {why}"), retryable: false }
}

fn table_error(err: rusqlite::Error) -> Error {
    let (message, retryable) = sqlite::classify(err);
    Error::Table { message, retryable }
}

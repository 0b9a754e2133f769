//! Where each consumer keeps its checkpoint, its stage state and the range it
//! is flushing: one row per consumer in `consumers.db`.
//!
//! The position and the state are written in one transaction, so after a crash
//! a stage restarts from a state that matches its checkpoint exactly. The
//! pending range is written before a flush and cleared with the checkpoint: a
//! restart re-processes exactly that range, so outputs named after it are
//! rewritten rather than duplicated under another name.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use wenu_core::stream::Position;
use wenu_runtime::{Checkpoints, SavedConsumer};

use crate::stream::log_position;
use wenu_core::{Error, Result};

use crate::sqlite::{SharedConnection, now_ms, open_durable, open_read_only, stream_error};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS consumers (
    name          TEXT    PRIMARY KEY,
    position      INTEGER,
    pending_first INTEGER,
    pending_last  INTEGER,
    state         BLOB,
    updated_at    INTEGER NOT NULL
);
";

/// The consumers' table, shared by all consumers of one process.
#[derive(Clone)]
pub struct ConsumerStore {
    conn: SharedConnection,
}

impl ConsumerStore {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = open_durable(path).map_err(stream_error)?;
        conn.execute_batch(SCHEMA).map_err(stream_error)?;
        Ok(ConsumerStore { conn: SharedConnection::new(conn) })
    }

    /// Every consumer's saved row, read-only: for `wenu status`, with or
    /// without a server running.
    pub fn inspect(path: &Path) -> Result<Vec<(String, SavedConsumer)>> {
        let conn = open_read_only(path).map_err(stream_error)?;
        let mut stmt = conn
            .prepare("SELECT name, position, pending_first, pending_last, state FROM consumers ORDER BY name")
            .map_err(stream_error)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, saved_from_row(r, 1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(stream_error)?;
        Ok(rows)
    }

    pub fn default_path(data_dir: &Path) -> PathBuf {
        data_dir.join("consumers.db")
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let task_failed =
            |why| Error::Stream { message: format!("consumer store task failed: {why}"), retryable: false };
        self.conn.run(move |conn| f(conn).map_err(stream_error), task_failed).await
    }
}

#[async_trait]
impl Checkpoints for ConsumerStore {
    async fn load(&self, name: &str) -> Result<SavedConsumer> {
        let name = name.to_owned();
        self.with_conn(move |conn| {
            conn.query_row(
                "SELECT position, pending_first, pending_last, state FROM consumers WHERE name = ?1",
                [&name],
                |r| saved_from_row(r, 0),
            )
            .optional()
            .map(Option::unwrap_or_default)
        })
        .await
    }

    async fn begin_flush(&self, name: &str, first: Position, last: Position) -> Result<()> {
        let name = name.to_owned();
        let (first, last) = (log_position(first)?, log_position(last)?);
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO consumers (name, pending_first, pending_last, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET pending_first = ?2, pending_last = ?3, updated_at = ?4",
                params![name, first, last, now_ms()],
            )
            .map(drop)
        })
        .await
    }

    async fn commit(&self, name: &str, position: Position, state: Vec<u8>) -> Result<()> {
        let name = name.to_owned();
        let position = log_position(position)?;
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO consumers (name, position, state, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET position = ?2, state = ?3, updated_at = ?4,
                     pending_first = NULL, pending_last = NULL",
                params![name, position, state, now_ms()],
            )
            .map(drop)
        })
        .await
    }
}

/// Reads `position, pending_first, pending_last, state` starting at column `at`.
fn saved_from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<SavedConsumer> {
    let position: Option<i64> = r.get(at)?;
    let first: Option<i64> = r.get(at + 1)?;
    let last: Option<i64> = r.get(at + 2)?;
    Ok(SavedConsumer {
        position: position.map(|p| Position::new(p as u64)),
        pending: first.zip(last).map(|(f, l)| (Position::new(f as u64), Position::new(l as u64))),
        state: r.get(at + 3)?,
    })
}

//! The embedded jobs queue: SQS's semantics (see `wenu_core::queue`) in one
//! SQLite table, `queue.db`.
//!
//! A message row is visible when `visible_at` has passed; receiving it sets
//! `visible_at` to the end of the visibility timeout and bumps its receive
//! count, which also names the delivery (`{id}:{count}` is the receipt), so
//! a receipt from an earlier delivery no longer acts on the message. Dead
//! letters stay in the table with `dead = 1`, in their original order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, params};
use wenu_core::queue::{NewMessage, Queue, QueueDepth, Received};
use wenu_core::{Error, Result};

use crate::sqlite::{self, SharedConnection, now_ms, open_durable};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    grp           TEXT    NOT NULL,
    body          BLOB    NOT NULL,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    dead          INTEGER NOT NULL DEFAULT 0
);
-- Receiving walks live messages in id order and stops after `max`: a
-- (dead, visible_at) index made it sort every visible message per receive.
DROP INDEX IF EXISTS messages_ready;
DROP INDEX IF EXISTS messages_group;
CREATE INDEX IF NOT EXISTS messages_live ON messages (dead, id);
CREATE INDEX IF NOT EXISTS messages_group_order ON messages (grp, dead, id);
";

/// Like SQS's RedrivePolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// Receives without a delete after which a message is dead.
    pub max_receive_count: u32,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions { max_receive_count: 5 }
    }
}

/// The queue; cheap to clone.
#[derive(Clone)]
pub struct SqliteQueue {
    conn: SharedConnection,
    options: QueueOptions,
}

impl SqliteQueue {
    pub fn open(path: &Path, options: QueueOptions) -> Result<Self> {
        let conn = open_durable(path).map_err(queue_error)?;
        conn.execute_batch(SCHEMA).map_err(queue_error)?;
        Ok(SqliteQueue { conn: SharedConnection::new(conn), options })
    }

    pub fn default_path(data_dir: &Path) -> PathBuf {
        data_dir.join("queue.db")
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.conn
            .run(f, |why| Error::Queue { message: format!("queue task failed: {why}"), retryable: false })
            .await
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send_batch(&self, messages: Vec<NewMessage>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(queue_error)?;
            {
                let now = now_ms();
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO messages (grp, body, sent_at, visible_at) VALUES (?1, ?2, ?3, ?3)",
                    )
                    .map_err(queue_error)?;
                for message in &messages {
                    insert
                        .execute(params![message.group, message.body.as_ref(), now])
                        .map_err(queue_error)?;
                }
            }
            tx.commit().map_err(queue_error)
        })
        .await
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>> {
        let max_receive_count = self.options.max_receive_count;
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(queue_error)?;
            let now = now_ms();
            let hidden_until = now.saturating_add(visibility.as_millis() as i64);
            let mut received = Vec::new();
            // Dead-lettering a group's head makes its next message the head:
            // look again, so the group does not wait a whole poll.
            let mut look_again = true;
            while look_again && received.len() < max {
                look_again = false;
                // Visible messages at the head of their group: a group's
                // next message waits until the one before it is deleted or
                // dead-lettered (first in, first out per group, as SQS FIFO).
                let mut ready = tx
                    .prepare_cached(
                        "SELECT id, grp, body, receive_count FROM messages m
                         WHERE dead = 0 AND visible_at <= ?1
                           AND NOT EXISTS (SELECT 1 FROM messages o
                                           WHERE o.grp = m.grp AND o.dead = 0 AND o.id < m.id)
                         ORDER BY id LIMIT ?2",
                    )
                    .map_err(queue_error)?;
                let rows = ready
                    .query_map(params![now, (max - received.len()) as i64], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Vec<u8>>(2)?, r.get::<_, u32>(3)?))
                    })
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(queue_error)?;
                for (id, group, body, count) in rows {
                    if count >= max_receive_count {
                        tx.execute("UPDATE messages SET dead = 1 WHERE id = ?1", [id]).map_err(queue_error)?;
                        tracing::warn!(message = id, group = %group, receives = count, "message moved to the dead-letter queue");
                        metrics::counter!("wenu_queue_dead_lettered_total").increment(1);
                        look_again = true;
                        continue;
                    }
                    tx.execute(
                        "UPDATE messages SET receive_count = receive_count + 1, visible_at = ?2 WHERE id = ?1",
                        params![id, hidden_until],
                    )
                    .map_err(queue_error)?;
                    received.push(Received {
                        id: id.to_string(),
                        receipt: format!("{id}:{}", count + 1),
                        group,
                        body: body.into(),
                        receive_count: count + 1,
                    });
                }
            }
            tx.commit().map_err(queue_error)?;
            Ok(received)
        })
        .await
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        let (id, count) = parse_receipt(receipt)?;
        // A stale receipt deletes nothing and is no error, as with SQS.
        self.with_conn(move |conn| {
            conn.execute(
                "DELETE FROM messages WHERE id = ?1 AND receive_count = ?2 AND dead = 0",
                params![id, count],
            )
            .map(drop)
            .map_err(queue_error)
        })
        .await
    }

    /// One transaction, so one fsync, for the whole batch.
    async fn delete_batch(&self, receipts: &[String]) -> Result<()> {
        let deliveries = receipts.iter().map(|r| parse_receipt(r)).collect::<Result<Vec<_>>>()?;
        if deliveries.is_empty() {
            return Ok(());
        }
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(queue_error)?;
            {
                let mut delete = tx
                    .prepare_cached("DELETE FROM messages WHERE id = ?1 AND receive_count = ?2 AND dead = 0")
                    .map_err(queue_error)?;
                for (id, count) in deliveries {
                    delete.execute(params![id, count]).map_err(queue_error)?;
                }
            }
            tx.commit().map_err(queue_error)
        })
        .await
    }

    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()> {
        let (id, count) = parse_receipt(receipt)?;
        let receipt = receipt.to_owned();
        self.with_conn(move |conn| {
            let now = now_ms();
            let changed = conn
                .execute(
                    "UPDATE messages SET visible_at = ?3
                     WHERE id = ?1 AND receive_count = ?2 AND dead = 0 AND visible_at > ?4",
                    params![id, count, now.saturating_add(visibility.as_millis() as i64), now],
                )
                .map_err(queue_error)?;
            if changed == 0 {
                return Err(Error::Queue {
                    message: format!("message of receipt {receipt} is not in flight"),
                    retryable: false,
                });
            }
            Ok(())
        })
        .await
    }

    async fn depth(&self) -> Result<QueueDepth> {
        self.with_conn(|conn| {
            conn.query_row(
                "SELECT COALESCE(SUM(dead = 0 AND visible_at <= ?1), 0),
                        COALESCE(SUM(dead = 0 AND visible_at > ?1), 0),
                        COALESCE(SUM(dead = 1), 0)
                 FROM messages",
                [now_ms()],
                |r| Ok(QueueDepth { visible: r.get(0)?, in_flight: r.get(1)?, dead: r.get(2)? }),
            )
            .map_err(queue_error)
        })
        .await
    }

    async fn redrive(&self, max: Option<usize>) -> Result<u64> {
        let limit = max.map_or(-1, |m| m as i64);
        self.with_conn(move |conn| {
            conn.execute(
                "UPDATE messages SET dead = 0, receive_count = 0, visible_at = ?1
                 WHERE id IN (SELECT id FROM messages WHERE dead = 1 ORDER BY id LIMIT ?2)",
                params![now_ms(), limit],
            )
            .map(|n| n as u64)
            .map_err(queue_error)
        })
        .await
    }
}

fn parse_receipt(receipt: &str) -> Result<(i64, u32)> {
    receipt
        .split_once(':')
        .and_then(|(id, count)| Some((id.parse().ok()?, count.parse().ok()?)))
        .ok_or_else(|| Error::Queue { message: format!("not a receipt: {receipt:?}"), retryable: false })
}

fn queue_error(err: rusqlite::Error) -> Error {
    let (message, retryable) = sqlite::classify(err);
    Error::Queue { message, retryable }
}

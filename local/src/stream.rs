//! The embedded durable stream: an append-only log in SQLite (WAL mode).
//!
//! One writer thread owns the write connection. Appends queue on a bounded
//! channel; the writer takes every append waiting at that moment and commits
//! them in one transaction, so many appends share one fsync (group commit)
//! and a full queue pushes back on the edge instead of growing memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot, watch};
use wenu_core::log_throttle::LogThrottle;
use wenu_core::stream::{NewRecord, Position, Record, Shard, ShardId, StartAt, Stream, StreamInfo};
use wenu_core::{Error, Result};

use crate::sqlite::{ReadConnections, open_durable, open_read_only, stream_error};

/// Tuning of the embedded stream.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Records older than this are deleted by [`SqliteStream::sweep_retention`],
    /// once every consumer has checkpointed past them.
    pub retention: Duration,
    /// The consumers whose unread records retention keeps, however old; one
    /// listed here that never checkpointed keeps everything. Empty: every
    /// consumer that ever checkpointed counts.
    pub consumers: Vec<String>,
    /// Appends waiting for the writer; beyond this, `append` waits (backpressure).
    pub queue_depth: usize,
    /// Most records committed in one transaction.
    pub max_group_records: usize,
    /// Cap on the log file's size. Appends beyond it fail as a full disk
    /// would (retryable, so the edge withholds acknowledgements), until a
    /// retention sweep frees space.
    pub max_bytes: Option<u64>,
    /// With `max_bytes`: once the log is above 90 % of it, the sweep deletes
    /// the oldest records down to 80 %, read or not, rather than refuse new
    /// ones. Off by default: unread records are deleted only by this
    /// explicit choice, and each such deletion is counted and logged.
    pub delete_unread_at_cap: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(24 * 3600),
            consumers: Vec::new(),
            queue_depth: 1024,
            max_group_records: 8192,
            max_bytes: None,
            delete_unread_at_cap: false,
        }
    }
}

/// What one retention sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub deleted: u64,
    /// Deleted records that some consumer had not yet checkpointed past:
    /// only ever under the disk cap with [`StreamOptions::delete_unread_at_cap`].
    pub deleted_unconsumed: u64,
}

/// What [`SqliteStream::inspect`] found.
#[derive(Debug, Clone, Default)]
pub struct LogInspection {
    pub info: StreamInfo,
    pub checkpoints: Vec<(String, Position)>,
    /// Retention sweeps' totals since the log was created.
    pub retention_totals: RetentionReport,
}

enum WriteJob {
    Append {
        records: Vec<NewRecord>,
        reply: oneshot::Sender<Result<Vec<Position>>>,
    },
    Checkpoint {
        consumer: String,
        position: i64,
        reply: oneshot::Sender<Result<()>>,
    },
    Sweep {
        plan: SweepPlan,
        reply: oneshot::Sender<Result<RetentionReport>>,
    },
    /// Answers once every job queued before it is committed.
    Flush {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// The embedded implementation of the [`Stream`] port.
#[derive(Clone)]
pub struct SqliteStream {
    writer: mpsc::Sender<WriteJob>,
    /// Consumers read on their own connections, beside the writer thread's.
    readers: ReadConnections,
    options: StreamOptions,
    commits: Arc<AtomicU64>,
    /// Moves after every commit that appended records.
    appends: watch::Receiver<u64>,
    /// The cap in pages, when there is one.
    max_pages: Option<i64>,
}

/// What a sweep job may delete.
#[derive(Debug, Clone)]
struct SweepPlan {
    cutoff: i64,
    consumers: Vec<String>,
    /// Above this many pages in use, the oldest records go, read or not.
    relieve_above_pages: Option<i64>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    payload     BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_received_at ON records (received_at);
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer   TEXT    PRIMARY KEY,
    position   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// Deleting in chunks keeps each sweep transaction short, so appends queued
/// behind it wait milliseconds, not seconds.
const SWEEP_CHUNK: i64 = 10_000;

impl SqliteStream {
    /// Opens (creating if needed) the log at `path` and starts its writer thread.
    pub fn open(path: &Path, options: StreamOptions) -> Result<Self> {
        let conn = open_durable(path).map_err(stream_error)?;
        conn.execute_batch(SCHEMA).map_err(stream_error)?;
        let mut max_pages = None;
        if let Some(max_bytes) = options.max_bytes {
            let page_size: u64 =
                conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(stream_error)?;
            let pages = (max_bytes / page_size).max(1);
            conn.pragma_update(None, "max_page_count", pages).map_err(stream_error)?;
            max_pages = Some(i64::try_from(pages).unwrap_or(i64::MAX));
        }
        let readers = ReadConnections::open(path).map_err(stream_error)?;
        let (writer, jobs) = mpsc::channel(options.queue_depth);
        let max_group = options.max_group_records;
        let commits = Arc::new(AtomicU64::new(0));
        let writer_commits = commits.clone();
        let (appended, appends) = watch::channel(0);
        std::thread::Builder::new()
            .name("wenu-stream-writer".into())
            .spawn(move || run_writer(conn, jobs, max_group, &writer_commits, &appended))
            .map_err(|source| Error::Io { path: path.to_owned(), source })?;
        Ok(Self { writer, readers, options, commits, appends, max_pages })
    }

    /// Reads what the log holds without starting a writer: for `wenu status`,
    /// which must work whether or not a server has the log open.
    pub fn inspect(path: &Path) -> Result<LogInspection> {
        let conn = open_read_only(path).map_err(stream_error)?;
        let info = query_info(&conn).map_err(stream_error)?;
        let checkpoints = query_checkpoints(&conn).map_err(stream_error)?;
        let totals = RetentionReport {
            deleted: read_counter(&conn, "retention_deleted").map_err(stream_error)?,
            deleted_unconsumed: read_counter(&conn, "retention_deleted_unconsumed").map_err(stream_error)?,
        };
        Ok(LogInspection { info, checkpoints, retention_totals: totals })
    }

    pub fn default_path(data_dir: &Path) -> PathBuf {
        data_dir.join("stream.db")
    }

    /// Deletes records received before `now - retention` that every consumer
    /// has checkpointed past, in chunks. Unread records stay, however old,
    /// unless the log is near its cap and [`StreamOptions::delete_unread_at_cap`]
    /// is set: then the oldest records go, counted in `deleted_unconsumed`, in
    /// `wenu_stream_retention_deleted_unconsumed_total` and logged as an error.
    ///
    /// `now_ms` is passed in so tests drive time without sleeping.
    pub async fn sweep_retention(&self, now_ms: i64) -> Result<RetentionReport> {
        let cutoff = now_ms.saturating_sub(self.options.retention.as_millis() as i64);
        let max_pages = self.max_pages.filter(|_| self.options.delete_unread_at_cap);
        let mut plan = SweepPlan {
            cutoff,
            consumers: self.options.consumers.clone(),
            // Start relieving above 90 % of the cap; once started, go down to 80 %.
            relieve_above_pages: max_pages.map(|max| max / 10 * 9),
        };
        let mut total = RetentionReport::default();
        loop {
            let (reply, answer) = oneshot::channel();
            self.send(WriteJob::Sweep { plan: plan.clone(), reply }).await?;
            let chunk = answer.await.map_err(|_| writer_gone())??;
            total.deleted += chunk.deleted;
            total.deleted_unconsumed += chunk.deleted_unconsumed;
            if chunk.deleted == 0 {
                break;
            }
            if chunk.deleted_unconsumed > 0 {
                plan.relieve_above_pages = max_pages.map(|max| max / 10 * 8);
            }
        }
        metrics::counter!("wenu_stream_retention_deleted_total").increment(total.deleted);
        metrics::counter!("wenu_stream_retention_deleted_unconsumed_total")
            .increment(total.deleted_unconsumed);
        if total.deleted_unconsumed > 0 {
            tracing::error!(
                records = total.deleted_unconsumed,
                "the log reached its size cap: deleted records a consumer had not processed (stream.delete_unread_at_cap)"
            );
        }
        Ok(total)
    }

    /// Transactions (hence fsyncs) committed since this handle opened the log.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Waits until every append queued so far is committed: for a clean shutdown.
    pub async fn flush(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(WriteJob::Flush { reply }).await?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Write jobs waiting for the writer: how far behind the disk is.
    pub fn queued(&self) -> usize {
        self.writer.max_capacity() - self.writer.capacity()
    }

    /// All named consumers and their checkpoints.
    pub async fn checkpoints(&self) -> Result<Vec<(String, Position)>> {
        self.with_reader(query_checkpoints).await
    }

    async fn send(&self, job: WriteJob) -> Result<()> {
        self.writer.send(job).await.map_err(|_| writer_gone())
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let task_failed =
            |why| Error::Stream { message: format!("reader task failed: {why}"), retryable: true };
        self.readers.run(move |conn| query(conn).map_err(stream_error), task_failed).await
    }
}

fn writer_gone() -> Error {
    Error::Stream { message: "stream writer has stopped".into(), retryable: false }
}

/// The log as one ordered sequence, which it is: the embedded runtime's
/// consumers, `wenu replay` and `wenu status` read it this way.
impl SqliteStream {
    /// Reads up to `max_records` records in position order.
    pub async fn read(&self, start: StartAt, max_records: usize) -> Result<Vec<Record>> {
        let from = match start {
            StartAt::Oldest | StartAt::Timestamp(_) => None,
            StartAt::Position(p) => Some(log_position(p)?),
            StartAt::After(p) => Some(log_position(p)?.saturating_add(1)),
        };
        self.with_reader(move |conn| {
            let from = match (from, start) {
                (Some(from), _) => from,
                (None, StartAt::Timestamp(ts)) => conn
                    .query_row("SELECT min(position) FROM records WHERE received_at >= ?1", [ts], |r| {
                        r.get::<_, Option<i64>>(0)
                    })?
                    .unwrap_or(i64::MAX),
                (None, _) => 0,
            };
            let mut stmt = conn.prepare_cached(
                "SELECT position, device_id, topic, received_at, payload FROM records
                 WHERE position >= ?1 ORDER BY position LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![from, max_records as i64], |r| {
                Ok(Record {
                    position: Position::new(r.get::<_, i64>(0)? as u64),
                    device_id: r.get(1)?,
                    topic: r.get(2)?,
                    received_at: r.get(3)?,
                    payload: Bytes::from(r.get::<_, Vec<u8>>(4)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// The last position `consumer` has fully processed, if it ever checkpointed.
    pub async fn consumer_checkpoint(&self, consumer: &str) -> Result<Option<Position>> {
        let consumer = consumer.to_owned();
        self.with_reader(move |conn| {
            conn.query_row("SELECT position FROM checkpoints WHERE consumer = ?1", [consumer], |r| {
                Ok(Position::new(r.get::<_, i64>(0)? as u64))
            })
            .optional()
        })
        .await
    }

    /// Records that `consumer` has processed everything up to `position`;
    /// retention keeps what some consumer has not.
    pub async fn commit_consumer_checkpoint(&self, consumer: &str, position: Position) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let position = log_position(position)?;
        self.send(WriteJob::Checkpoint { consumer: consumer.to_owned(), position, reply }).await?;
        answer.await.map_err(|_| writer_gone())?
    }

    pub async fn info(&self) -> Result<StreamInfo> {
        self.with_reader(query_info).await
    }
}

/// The embedded log is the stream's one shard, [`ShardId::log`].
#[async_trait]
impl Stream for SqliteStream {
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Position>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.send(WriteJob::Append { records, reply }).await?;
        answer.await.map_err(|_| writer_gone())?
    }

    async fn shards(&self) -> Result<Vec<Shard>> {
        Ok(vec![Shard { id: ShardId::log(), parents: Vec::new(), closed: false }])
    }

    async fn read_shard(&self, shard: &ShardId, start: StartAt, max_records: usize) -> Result<Vec<Record>> {
        only_shard(shard)?;
        self.read(start, max_records).await
    }

    async fn checkpoint(&self, consumer: &str, shard: &ShardId) -> Result<Option<Position>> {
        only_shard(shard)?;
        self.consumer_checkpoint(consumer).await
    }

    async fn commit_checkpoint(&self, consumer: &str, shard: &ShardId, position: Position) -> Result<()> {
        only_shard(shard)?;
        self.commit_consumer_checkpoint(consumer, position).await
    }

    async fn newest(&self, shard: &ShardId) -> Result<Option<Position>> {
        only_shard(shard)?;
        Ok(self.info().await?.newest)
    }

    fn appends(&self) -> Option<watch::Receiver<u64>> {
        Some(self.appends.clone())
    }
}

fn only_shard(shard: &ShardId) -> Result<()> {
    if *shard == ShardId::log() {
        Ok(())
    } else {
        Err(Error::Stream { message: format!("the embedded log has no shard {shard}"), retryable: false })
    }
}

/// A position of this log as SQLite stores it.
pub(crate) fn log_position(position: Position) -> Result<i64> {
    position.as_u64().and_then(|p| i64::try_from(p).ok()).ok_or_else(|| Error::Stream {
        message: format!("position {position} is not one of this log's"),
        retryable: false,
    })
}

/// The writer loop: one transaction (one fsync) per group of waiting jobs.
fn run_writer(
    mut conn: Connection,
    mut jobs: mpsc::Receiver<WriteJob>,
    max_group: usize,
    commits: &AtomicU64,
    appended: &watch::Sender<u64>,
) {
    while let Some(first) = jobs.blocking_recv() {
        let mut group = vec![first];
        let mut records = group_records(&group[0]);
        while records < max_group {
            match jobs.try_recv() {
                Ok(job) => {
                    records += group_records(&job);
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        if commit_group(&mut conn, group, commits) > 0 {
            appended.send_modify(|n| *n += 1);
        }
    }
    tracing::debug!("stream writer stopped: every handle dropped");
}

fn group_records(job: &WriteJob) -> usize {
    match job {
        WriteJob::Append { records, .. } => records.len(),
        _ => 1,
    }
}

/// Applies a group of jobs in one transaction and answers each. If the commit
/// fails, every job of the group gets the error: none of them is durable.
/// Returns how many records it appended.
fn commit_group(conn: &mut Connection, group: Vec<WriteJob>, commits: &AtomicU64) -> usize {
    let outcome = (|| {
        let tx = conn.transaction()?;
        let mut results = Vec::with_capacity(group.len());
        for job in &group {
            results.push(apply(&tx, job)?);
        }
        tx.commit()?;
        Ok::<_, rusqlite::Error>(results)
    })();
    // Counted before anyone is answered, so a caller that sees its append
    // done also sees the commit that made it durable.
    commits.fetch_add(1, Ordering::Relaxed);
    match outcome {
        Ok(results) => {
            let appended: usize = group.iter().map(group_records).sum();
            metrics::counter!("wenu_stream_commits_total").increment(1);
            metrics::histogram!("wenu_stream_commit_group_records").record(appended as f64);
            for (job, result) in group.into_iter().zip(results) {
                answer(job, result);
            }
            appended
        }
        Err(err) => {
            static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
            if let Some(suppressed) = THROTTLE.allow() {
                tracing::error!(error = %err, suppressed, "stream commit failed; nothing in this group is acknowledged");
            }
            metrics::counter!("wenu_stream_commit_failures_total").increment(1);
            let err = stream_error(err);
            for job in group {
                let err = clone_stream_error(&err);
                match job {
                    WriteJob::Append { reply, .. } => drop(reply.send(Err(err))),
                    WriteJob::Checkpoint { reply, .. } => drop(reply.send(Err(err))),
                    WriteJob::Sweep { reply, .. } => drop(reply.send(Err(err))),
                    WriteJob::Flush { reply } => drop(reply.send(Err(err))),
                }
            }
            0
        }
    }
}

fn clone_stream_error(err: &Error) -> Error {
    let retryable = matches!(err, Error::Stream { retryable: true, .. });
    Error::Stream { message: err.to_string(), retryable }
}

enum Applied {
    Appended(Vec<Position>),
    Checkpointed,
    Swept(RetentionReport),
    Flushed,
}

fn apply(tx: &rusqlite::Transaction<'_>, job: &WriteJob) -> rusqlite::Result<Applied> {
    match job {
        WriteJob::Append { records, .. } => {
            let mut insert = tx.prepare_cached(
                "INSERT INTO records (device_id, topic, received_at, payload) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut positions = Vec::with_capacity(records.len());
            for r in records {
                insert.execute(params![r.device_id, r.topic, r.received_at, &r.payload[..]])?;
                positions.push(Position::new(tx.last_insert_rowid() as u64));
            }
            Ok(Applied::Appended(positions))
        }
        WriteJob::Checkpoint { consumer, position, .. } => {
            tx.execute(
                "INSERT INTO checkpoints (consumer, position) VALUES (?1, ?2)
                 ON CONFLICT (consumer) DO UPDATE SET position = excluded.position",
                params![consumer, position],
            )?;
            Ok(Applied::Checkpointed)
        }
        WriteJob::Flush { .. } => Ok(Applied::Flushed),
        WriteJob::Sweep { plan, .. } => sweep_chunk(tx, plan).map(Applied::Swept),
    }
}

/// One chunk of a sweep: old records every consumer has read, or, above the
/// plan's page limit, the oldest records whatever was read.
fn sweep_chunk(tx: &rusqlite::Transaction<'_>, plan: &SweepPlan) -> rusqlite::Result<RetentionReport> {
    let read_by_all = slowest_checkpoint(tx, &plan.consumers)?;
    let old_and_read: Option<i64> = tx.query_row(
        "SELECT max(position) FROM (SELECT position FROM records WHERE received_at < ?1 AND position <= ?2
         ORDER BY position LIMIT ?3)",
        params![plan.cutoff, read_by_all, SWEEP_CHUNK],
        |r| r.get(0),
    )?;
    if let Some(last) = old_and_read {
        let deleted = tx.execute(
            "DELETE FROM records WHERE received_at < ?1 AND position <= ?2",
            params![plan.cutoff, last],
        )?;
        add_counter(tx, "retention_deleted", deleted as i64)?;
        return Ok(RetentionReport { deleted: deleted as u64, deleted_unconsumed: 0 });
    }
    let Some(limit) = plan.relieve_above_pages else { return Ok(RetentionReport::default()) };
    let pages: i64 = tx.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = tx.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    if pages - free <= limit {
        return Ok(RetentionReport::default());
    }
    // A twentieth of the log at a time, so it stops near the target rather than empty.
    let held: i64 = tx.query_row(INFO_QUERY, [], |r| r.get(0))?;
    let Some(last): Option<i64> = tx.query_row(
        "SELECT max(position) FROM (SELECT position FROM records ORDER BY position LIMIT ?1)",
        [(held / 20).clamp(1, SWEEP_CHUNK)],
        |r| r.get(0),
    )?
    else {
        return Ok(RetentionReport::default());
    };
    let unread: i64 = tx.query_row(
        "SELECT count(*) FROM records WHERE position <= ?1 AND position > ?2",
        params![last, read_by_all],
        |r| r.get(0),
    )?;
    let deleted = tx.execute("DELETE FROM records WHERE position <= ?1", [last])?;
    add_counter(tx, "retention_deleted", deleted as i64)?;
    add_counter(tx, "retention_deleted_unconsumed", unread)?;
    Ok(RetentionReport { deleted: deleted as u64, deleted_unconsumed: unread as u64 })
}

/// The last position every consumer has read: the listed ones (0 for one
/// that never checkpointed), or, with none listed, every one that ever
/// checkpointed (all of the log when none did).
fn slowest_checkpoint(tx: &rusqlite::Transaction<'_>, consumers: &[String]) -> rusqlite::Result<i64> {
    if consumers.is_empty() {
        let slowest: Option<i64> = tx.query_row("SELECT min(position) FROM checkpoints", [], |r| r.get(0))?;
        return Ok(slowest.unwrap_or(i64::MAX));
    }
    let mut lookup = tx.prepare_cached("SELECT position FROM checkpoints WHERE consumer = ?1")?;
    let mut slowest = i64::MAX;
    for consumer in consumers {
        let position: Option<i64> = lookup.query_row([consumer], |r| r.get(0)).optional()?;
        slowest = slowest.min(position.unwrap_or(0));
    }
    Ok(slowest)
}

fn answer(job: WriteJob, result: Applied) {
    // A caller that gave up waiting dropped its receiver; nothing to tell it.
    match (job, result) {
        (WriteJob::Append { reply, .. }, Applied::Appended(p)) => drop(reply.send(Ok(p))),
        (WriteJob::Checkpoint { reply, .. }, Applied::Checkpointed) => drop(reply.send(Ok(()))),
        (WriteJob::Sweep { reply, .. }, Applied::Swept(r)) => drop(reply.send(Ok(r))),
        (WriteJob::Flush { reply }, Applied::Flushed) => drop(reply.send(Ok(()))),
        _ => unreachable!("apply answers each job with its own kind"),
    }
}

fn add_counter(tx: &rusqlite::Transaction<'_>, name: &str, by: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        params![name, by],
    )?;
    Ok(())
}

fn read_counter(conn: &Connection, name: &str) -> rusqlite::Result<u64> {
    let value: Option<i64> =
        conn.query_row("SELECT value FROM counters WHERE name = ?1", [name], |r| r.get(0)).optional()?;
    Ok(value.unwrap_or(0) as u64)
}

/// Positions are contiguous (a failed group commit rolls back its positions
/// too, and retention deletes only from the old end), so the count is
/// `newest − oldest + 1`, read off the primary key instead of a full scan.
/// Each end is its own subquery: SQLite seeks the key for a lone `min()` or
/// `max()`, but scans every row for both in one select.
const INFO_QUERY: &str = "SELECT coalesce(newest - oldest + 1, 0), oldest, newest,
        (SELECT received_at FROM records WHERE position = oldest),
        (SELECT received_at FROM records WHERE position = newest)
    FROM (SELECT (SELECT min(position) FROM records) AS oldest,
                 (SELECT max(position) FROM records) AS newest)";

fn query_info(conn: &Connection) -> rusqlite::Result<StreamInfo> {
    conn.query_row(INFO_QUERY, [], |r| {
        Ok(StreamInfo {
            records: r.get::<_, i64>(0)? as u64,
            oldest: r.get::<_, Option<i64>>(1)?.map(|p| Position::new(p as u64)),
            newest: r.get::<_, Option<i64>>(2)?.map(|p| Position::new(p as u64)),
            oldest_received_at: r.get(3)?,
            newest_received_at: r.get(4)?,
        })
    })
}

fn query_checkpoints(conn: &Connection) -> rusqlite::Result<Vec<(String, Position)>> {
    let mut stmt = conn.prepare_cached("SELECT consumer, position FROM checkpoints ORDER BY consumer")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, Position::new(r.get::<_, i64>(1)? as u64))))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(records: i64) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        for i in 0..records {
            conn.execute(
                "INSERT INTO records (device_id, topic, received_at, payload) VALUES ('d', 't', ?1, x'00')",
                [1_000 + i],
            )
            .unwrap();
        }
        conn
    }

    /// Consumers measure their lag with `info` every second; a full scan of a
    /// day's log would hold a reader connection for seconds.
    #[test]
    fn info_seeks_the_ends_of_the_log_instead_of_scanning_it() {
        let conn = log_with(3);
        let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {INFO_QUERY}")).unwrap();
        let steps: Vec<String> =
            plan.query_map([], |r| r.get::<_, String>(3)).unwrap().collect::<Result<_, _>>().unwrap();
        assert!(steps.iter().any(|s| s.starts_with("SEARCH records")), "{steps:?}");
        assert!(!steps.iter().any(|s| s.starts_with("SCAN records")), "{steps:?}");
    }

    #[test]
    fn info_counts_from_the_oldest_to_the_newest_record() {
        let conn = log_with(5);
        conn.execute("DELETE FROM records WHERE position <= 2", []).unwrap();
        let info = query_info(&conn).unwrap();
        assert_eq!(info.records, 3);
        assert_eq!(info.oldest, Some(Position::new(3)));
        assert_eq!(info.newest, Some(Position::new(5)));
        assert_eq!((info.oldest_received_at, info.newest_received_at), (Some(1_002), Some(1_004)));

        let empty = query_info(&log_with(0)).unwrap();
        assert_eq!((empty.records, empty.oldest, empty.newest), (0, None, None));
        assert_eq!((empty.oldest_received_at, empty.newest_received_at), (None, None));
    }
}

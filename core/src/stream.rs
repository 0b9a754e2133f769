//! The stream port: a durable, replayable, ordered log of envelopes as the
//! edge received them.
//!
//! Kinesis Data Streams implements it on AWS, an embedded log on one machine
//! (`wenu-local`). Consumers read from a position or a point in time and keep
//! a named checkpoint, which makes every consumer at-least-once: after a crash
//! it resumes from its last checkpoint and sees some records again.

use async_trait::async_trait;
use bytes::Bytes;

use crate::Result;

/// Where a record sits in the stream. Positions only grow; a later append
/// always gets a larger position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Position(pub u64);

/// A record handed to the stream by the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    pub device_id: String,
    pub topic: String,
    /// When the edge received it, unix milliseconds.
    pub received_at: i64,
    /// The envelope exactly as the device sent it; the edge never decrypts.
    pub payload: Bytes,
}

/// A record as stored, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub position: Position,
    pub device_id: String,
    pub topic: String,
    pub received_at: i64,
    pub payload: Bytes,
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record still retained.
    Oldest,
    /// The first record at or after this position.
    Position(Position),
    /// The first record received at or after this time (unix ms).
    Timestamp(i64),
}

/// What the stream holds right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamInfo {
    pub records: u64,
    pub oldest: Option<Position>,
    pub newest: Option<Position>,
    pub oldest_received_at: Option<i64>,
    pub newest_received_at: Option<i64>,
}

#[async_trait]
pub trait Stream: Send + Sync + 'static {
    /// Appends records durably, in order, and returns their positions. When it
    /// returns `Ok`, the records survive a crash of the process or the machine.
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Position>>;

    /// Reads up to `max_records` records in position order.
    async fn read(&self, start: StartAt, max_records: usize) -> Result<Vec<Record>>;

    /// The last position `consumer` has fully processed, if it ever checkpointed.
    async fn checkpoint(&self, consumer: &str) -> Result<Option<Position>>;

    /// Records that `consumer` has processed everything up to and including `position`.
    async fn commit_checkpoint(&self, consumer: &str, position: Position) -> Result<()>;

    async fn info(&self) -> Result<StreamInfo>;

    /// A counter that moves each time records are appended, so a consumer
    /// can wake the moment something arrives rather than poll (what keeps
    /// alarms within milliseconds). `None`, the default, means the backend
    /// cannot tell and is polled (Kinesis).
    fn appends(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

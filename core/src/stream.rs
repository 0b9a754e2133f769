//! The stream port: a durable, replayable log of envelopes as the edge
//! received them, in shards.
//!
//! Kinesis Data Streams implements it on AWS (as many shards as the stream
//! has, records spread by device id), an embedded log on one machine
//! (`wenu-local`, one shard). Within a shard records are ordered; a device's
//! records all go to one shard, so they stay in order. Consumers read a
//! shard from a position or a point in time and keep a checkpoint per shard,
//! which makes every consumer at-least-once: after a crash it resumes from
//! its last checkpoint and sees some records again.

use async_trait::async_trait;
use bytes::Bytes;

use crate::Result;

/// Where a record sits in its shard. Positions only grow within a shard; a
/// later append to a shard always gets a larger position.
///
/// The embedded log numbers its records 1, 2, 3…; Kinesis gives sequence
/// numbers of some 56 decimal digits. Both are kept as one unsigned 256-bit
/// integer, so a position stays `Copy` and compares in numeric order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(ethnum::U256);

impl Position {
    pub const fn new(n: u64) -> Self {
        Position(ethnum::U256::new(n as u128))
    }

    /// The position as a `u64`, which every embedded log position is.
    pub fn as_u64(self) -> Option<u64> {
        u64::try_from(self.0).ok()
    }

    /// The position right after this one.
    pub fn next(self) -> Self {
        Position(self.0.saturating_add(ethnum::U256::ONE))
    }
}

impl From<u64> for Position {
    fn from(n: u64) -> Self {
        Position::new(n)
    }
}

/// Decimal, honouring width and zero padding (`{:020}`).
impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad_integral(true, "", &self.0.to_string())
    }
}

impl std::str::FromStr for Position {
    type Err = crate::Error;

    /// Decimal digits, as Kinesis writes sequence numbers.
    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(crate::Error::Stream {
                message: format!("not a stream position: {s:?}"),
                retryable: false,
            });
        }
        ethnum::U256::from_str_radix(s, 10).map(Position).map_err(|_| crate::Error::Stream {
            message: format!("stream position out of range: {s}"),
            retryable: false,
        })
    }
}

/// A number when it fits in a `u64` (every embedded log position), a
/// decimal string otherwise (a Kinesis sequence number).
impl serde::Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self.as_u64() {
            Some(n) => serializer.serialize_u64(n),
            None => serializer.collect_str(self),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(u64),
            Text(String),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(n) => Ok(Position::new(n)),
            Either::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// One shard of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ShardId(pub String);

impl ShardId {
    /// The embedded log's one shard.
    pub fn log() -> Self {
        ShardId("log".to_owned())
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A shard as the stream lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub id: ShardId,
    /// The shards this one was split or merged from (Kinesis resharding):
    /// a consumer finishes them before it starts this one, so a device's
    /// records stay in order.
    pub parents: Vec<ShardId>,
    /// A closed shard takes no more records; once read to its end it is done.
    pub closed: bool,
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StartAt {
    /// The oldest record still retained.
    Oldest,
    /// The first record at or after this position.
    Position(Position),
    /// The first record after this position: where a consumer resumes from
    /// its checkpoint.
    After(Position),
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
    /// Appends records durably and returns their positions, in order. When it
    /// returns `Ok`, the records survive a crash of the process or the
    /// machine. Each record goes to the shard its device id maps to.
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Position>>;

    /// The shards, open and closed (a closed shard is listed until its
    /// records pass the retention period).
    async fn shards(&self) -> Result<Vec<Shard>>;

    /// Reads up to `max_records` records of `shard` in position order. An
    /// empty answer means nothing more for now; for a closed shard, that
    /// it has been read to its end.
    async fn read_shard(&self, shard: &ShardId, start: StartAt, max_records: usize) -> Result<Vec<Record>>;

    /// The last position of `shard` that `consumer` has fully processed, if
    /// it ever checkpointed there.
    async fn checkpoint(&self, consumer: &str, shard: &ShardId) -> Result<Option<Position>>;

    /// Records that `consumer` has processed everything of `shard` up to and
    /// including `position`.
    async fn commit_checkpoint(&self, consumer: &str, shard: &ShardId, position: Position) -> Result<()>;

    /// The position of the newest record of `shard`, where the backend can
    /// tell cheaply: what a consumer's lag is measured against. `None`: the
    /// shard is empty, or the backend cannot tell (the default; on Kinesis,
    /// CloudWatch's iterator age tells the lag instead).
    async fn newest(&self, shard: &ShardId) -> Result<Option<Position>> {
        let _ = shard;
        Ok(None)
    }

    /// A counter that moves each time records are appended, so a consumer
    /// can wake the moment something arrives rather than poll (what keeps
    /// alarms within milliseconds). `None`, the default, means the backend
    /// cannot tell and is polled (Kinesis).
    fn appends(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_hold_kinesis_sequence_numbers_in_numeric_order() {
        let small: Position = "49546986683135544286507457936321625675700192471156785154".parse().unwrap();
        let large: Position = "49546986683135544286507457936321625675700192471156785155".parse().unwrap();
        assert!(small < large);
        assert_eq!(large.to_string(), "49546986683135544286507457936321625675700192471156785155");
        assert_eq!(small.next(), large);
        assert!(Position::new(u64::MAX) < small);
        assert_eq!(small.as_u64(), None);
        assert!("12a".parse::<Position>().is_err());
        assert!("".parse::<Position>().is_err());
        assert!("9".repeat(80).parse::<Position>().is_err(), "beyond 256 bits");
    }

    #[test]
    fn positions_print_padded_and_serialize_as_numbers_when_they_fit() {
        assert_eq!(format!("{:020}", Position::new(42)), "00000000000000000042");
        assert_eq!(serde_json::to_string(&Position::new(7)).unwrap(), "7");
        let big: Position = "123456789012345678901234567890".parse().unwrap();
        assert_eq!(serde_json::to_string(&big).unwrap(), "\"123456789012345678901234567890\"");
        for json in ["7", "\"123456789012345678901234567890\""] {
            let back: Position = serde_json::from_str(json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
        }
    }
}

//! Size-or-time batching, as Firehose buffers: a batch closes when it holds
//! `max_bytes` of payload or when its first record has waited `max_age`,
//! whichever comes first.

use std::time::Duration;

use tokio::time::Instant;
use wenu_core::stream::Record;
use wenu_core::{Error, Result};

/// Firehose accepts buffer sizes of 1–128 MiB and intervals of 0–900 s; so do we.
pub const MAX_BATCH_BYTES: usize = 128 * 1024 * 1024;
pub const MAX_BATCH_AGE: Duration = Duration::from_secs(900);

/// When a batch is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_bytes: usize,
    pub max_age: Duration,
}

impl Default for BatchLimits {
    /// Firehose's defaults: 128 MiB or 60 s.
    fn default() -> Self {
        BatchLimits { max_bytes: MAX_BATCH_BYTES, max_age: Duration::from_secs(60) }
    }
}

impl BatchLimits {
    /// Checks the limits against Firehose's accepted ranges.
    pub fn new(max_bytes: usize, max_age: Duration) -> Result<Self> {
        if !(1024 * 1024..=MAX_BATCH_BYTES).contains(&max_bytes) {
            return Err(Error::Config(format!("batch size {max_bytes} bytes is outside 1–128 MiB")));
        }
        if max_age > MAX_BATCH_AGE {
            return Err(Error::Config(format!("batch interval {} s is outside 0–900 s", max_age.as_secs())));
        }
        Ok(BatchLimits { max_bytes, max_age })
    }

    /// Any size, for tests and for stages that want every record at once.
    pub fn unchecked(max_bytes: usize, max_age: Duration) -> Self {
        BatchLimits { max_bytes, max_age }
    }
}

/// Records waiting to be flushed, in stream order.
#[derive(Debug)]
pub struct Batcher {
    limits: BatchLimits,
    records: Vec<Record>,
    bytes: usize,
    opened_at: Option<Instant>,
}

impl Batcher {
    pub fn new(limits: BatchLimits) -> Self {
        Batcher { limits, records: Vec::new(), bytes: 0, opened_at: None }
    }

    pub fn push(&mut self, record: Record) {
        self.opened_at.get_or_insert_with(Instant::now);
        self.bytes += record.payload.len();
        self.records.push(record);
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The batch has reached its size limit.
    pub fn is_full(&self) -> bool {
        self.bytes >= self.limits.max_bytes
    }

    /// When the open batch must be flushed at the latest; `None` while empty.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|at| at + self.limits.max_age)
    }

    /// The batch is due: full, or its deadline has passed.
    pub fn is_due(&self, now: Instant) -> bool {
        self.is_full() || self.deadline().is_some_and(|d| now >= d)
    }

    /// Takes the batch, leaving the batcher empty.
    pub fn take(&mut self) -> Vec<Record> {
        self.bytes = 0;
        self.opened_at = None;
        std::mem::take(&mut self.records)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use wenu_core::stream::Position;

    use super::*;

    fn record(position: u64, len: usize) -> Record {
        Record {
            position: Position::new(position),
            device_id: "d".into(),
            topic: "wenu/d/telemetry".into(),
            received_at: 0,
            payload: Bytes::from(vec![0; len]),
        }
    }

    #[test]
    fn limits_follow_firehose_ranges() {
        assert!(BatchLimits::new(1024 * 1024, Duration::ZERO).is_ok());
        assert!(BatchLimits::new(MAX_BATCH_BYTES, MAX_BATCH_AGE).is_ok());
        assert!(BatchLimits::new(1024, Duration::from_secs(60)).is_err());
        assert!(BatchLimits::new(MAX_BATCH_BYTES + 1, Duration::from_secs(60)).is_err());
        assert!(BatchLimits::new(MAX_BATCH_BYTES, Duration::from_secs(901)).is_err());
    }

    #[test]
    fn flushes_by_size() {
        let mut b = Batcher::new(BatchLimits::unchecked(100, Duration::from_secs(60)));
        b.push(record(1, 60));
        assert!(!b.is_full());
        b.push(record(2, 40));
        assert!(b.is_full());
        assert_eq!(b.take().len(), 2);
        assert!(b.is_empty() && b.deadline().is_none() && b.bytes() == 0);
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_by_time_counted_from_the_first_record() {
        let mut b = Batcher::new(BatchLimits::default());
        assert_eq!(b.deadline(), None);
        b.push(record(1, 10));
        let deadline = b.deadline().unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        b.push(record(2, 10));
        assert_eq!(b.deadline(), Some(deadline), "later records do not extend the wait");
        assert!(!b.is_due(Instant::now()));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(b.is_due(Instant::now()));
        assert_eq!(b.take().len(), 2);
    }
}

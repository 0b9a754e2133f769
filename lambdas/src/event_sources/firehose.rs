//! A Firehose delivery stream with the stream as its source and the decrypt
//! function as its processor: records of every shard are buffered until the
//! buffer holds `buffer_bytes` or is `buffer_interval` old, transformed in
//! one invocation, and then
//!
//! * the `Ok` records' JSON rows are written as one Parquet file per
//!   partition (`readings/company=…/date=…/hour=…/`), the file Firehose's
//!   record format conversion and dynamic partitioning write;
//! * the `ProcessingFailed` records are written as Firehose writes them,
//!   one JSON object per line with the raw data in base64, under
//!   `processing-failed/YYYY/MM/DD/HH/`;
//! * `Dropped` records are gone.
//!
//! Checkpoints move once the files are written; a crash in between writes
//! the buffer again (at least once, as Firehose).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::encodings::MillisecondTimestamp;
use aws_lambda_events::event::firehose::{
    KinesisFirehoseEvent, KinesisFirehoseEventRecord, KinesisFirehoseRecordMetadata, KinesisFirehoseResponse,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::watch;
use wenu_core::stream::{Position, Record, ShardId};
use wenu_lake::encode::{LakeRow, READINGS_SCHEMA, rows_batch, write};

use super::ShardReader;
use crate::firehose::{DecryptTransform, OK, PROCESSING_FAILED};

#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Firehose's buffering hints: size (1–128 MiB) and interval (0–900 s).
    pub buffer_bytes: usize,
    pub buffer_interval: Duration,
    /// Records per read of a shard.
    pub read_chunk: usize,
    pub poll_every: Duration,
    pub max_backoff: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            buffer_bytes: 64 << 20,
            buffer_interval: Duration::from_secs(60),
            read_chunk: 1_000,
            poll_every: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// What one flush wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub rows: u64,
    pub files: u64,
    pub failed_records: u64,
}

/// Buffered records and the last position of each shard among them.
#[derive(Default)]
struct Buffer {
    records: Vec<Record>,
    shards: BTreeMap<ShardId, Position>,
    bytes: usize,
    since: Option<Instant>,
}

/// Runs the delivery until `shutdown` turns true, then flushes what it
/// holds. `totals` is updated after every flush.
pub async fn run(
    mut reader: ShardReader,
    mut transform: DecryptTransform,
    lake: Arc<dyn ObjectStore>,
    options: DeliveryOptions,
    totals: watch::Sender<Delivered>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buffer = Buffer::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        let stopping = *shutdown.borrow();
        let due = buffer.since.is_some_and(|since| since.elapsed() >= options.buffer_interval);
        if !buffer.records.is_empty() && (stopping || due || buffer.bytes >= options.buffer_bytes) {
            match flush(&mut reader, &mut transform, lake.as_ref(), &buffer).await {
                Ok(delivered) => {
                    totals.send_modify(|t| {
                        t.rows += delivered.rows;
                        t.files += delivered.files;
                        t.failed_records += delivered.failed_records;
                    });
                    buffer = Buffer::default();
                    backoff = Duration::from_millis(100);
                }
                Err(error) => {
                    tracing::warn!(%error, records = buffer.records.len(), "delivery failed; trying the buffer again");
                    if stopping {
                        return; // the checkpoints did not move: the next start delivers it
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(options.max_backoff);
                    continue;
                }
            }
        }
        if stopping {
            return;
        }
        match reader.read(options.read_chunk).await {
            Ok(Some((shard, records))) => {
                buffer.since.get_or_insert_with(Instant::now);
                buffer.bytes += records.iter().map(|r| r.payload.len()).sum::<usize>();
                buffer.shards.insert(shard, records.last().expect("a read returns records").position);
                buffer.records.extend(records);
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "reading the stream failed; trying again");
                // Whatever was buffered stays; reading resumes after it.
            }
        }
        let deadline = buffer.since.map(|since| options.buffer_interval.saturating_sub(since.elapsed()));
        let wait = deadline.map_or(options.poll_every, |d| d.min(options.poll_every));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One invocation of the transformation over the buffer, its output
/// written, the checkpoints moved.
async fn flush(
    reader: &mut ShardReader,
    transform: &mut DecryptTransform,
    lake: &dyn ObjectStore,
    buffer: &Buffer,
) -> Result<Delivered, String> {
    let event = firehose_event(&buffer.records);
    let response = transform.handle(event).await?;
    let name = format!(
        "wenu-{}-{}",
        buffer.records.first().expect("a flushed buffer has records").position,
        buffer.records.last().expect("a flushed buffer has records").position
    );
    let delivered = write_output(lake, &buffer.records, &response, &name).await?;
    for (shard, position) in &buffer.shards {
        reader.commit(shard, *position).await.map_err(|e| e.to_string())?;
    }
    Ok(delivered)
}

/// The records as Firehose hands them to the transformation.
pub fn firehose_event(records: &[Record]) -> KinesisFirehoseEvent {
    let mut event = KinesisFirehoseEvent::default();
    event.invocation_id = records.first().map(|r| format!("wenu-{}", r.position));
    event.records = records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let arrival = MillisecondTimestamp(
                chrono::DateTime::from_timestamp_millis(record.received_at).unwrap_or_default(),
            );
            let mut metadata = KinesisFirehoseRecordMetadata::default();
            metadata.partition_key = Some(record.device_id.clone());
            metadata.sequence_number = Some(record.position.to_string());
            metadata.approximate_arrival_timestamp = arrival.clone();
            let mut input = KinesisFirehoseEventRecord::default();
            input.record_id = Some(index.to_string());
            input.data.0 = record.payload.to_vec();
            input.approximate_arrival_timestamp = arrival;
            input.kinesis_firehose_record_metadata = Some(metadata);
            input
        })
        .collect();
    event
}

async fn write_output(
    lake: &dyn ObjectStore,
    records: &[Record],
    response: &KinesisFirehoseResponse,
    name: &str,
) -> Result<Delivered, String> {
    let mut partitions: BTreeMap<(String, String, String), Vec<LakeRow>> = BTreeMap::new();
    let mut failed = Vec::new();
    let now = chrono::Utc::now();
    for answer in &response.records {
        let index: usize =
            answer.record_id.as_deref().and_then(|id| id.parse().ok()).ok_or("unknown record id")?;
        let record = records.get(index).ok_or("unknown record id")?;
        match answer.result.as_deref() {
            Some(OK) => {
                let keys = &answer.metadata.partition_keys;
                let key = |name: &str| keys.get(name).cloned().ok_or(format!("no partition key {name}"));
                let rows = partitions.entry((key("company")?, key("date")?, key("hour")?)).or_default();
                for line in answer.data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    rows.push(serde_json::from_slice(line).map_err(|e| format!("a row is not JSON: {e}"))?);
                }
            }
            Some(PROCESSING_FAILED) => {
                let line = serde_json::json!({
                    "attemptsMade": 1,
                    "arrivalTimestamp": record.received_at,
                    "errorCode": "Lambda.ProcessingFailed",
                    "errorMessage": "The record was marked ProcessingFailed by the transformation",
                    "attemptEndingTimestamp": now.timestamp_millis(),
                    "rawData": BASE64.encode(&record.payload),
                });
                failed.push(line.to_string());
            }
            _ => {} // Dropped
        }
    }
    let mut delivered = Delivered { failed_records: failed.len() as u64, ..Delivered::default() };
    for ((company, date, hour), mut rows) in partitions {
        let batch = rows_batch(&mut rows).map_err(|e| e.to_string())?;
        let file = write(&READINGS_SCHEMA, &batch).map_err(|e| e.to_string())?;
        let path = Path::from(format!("readings/company={company}/date={date}/hour={hour}/{name}.parquet"));
        lake.put(&path, PutPayload::from(file)).await.map_err(|e| e.to_string())?;
        delivered.rows += rows.len() as u64;
        delivered.files += 1;
    }
    if !failed.is_empty() {
        let path = Path::from(format!("processing-failed/{}/{name}.jsonl", now.format("%Y/%m/%d/%H")));
        let body = failed.join("\n") + "\n";
        lake.put(&path, PutPayload::from(body.into_bytes())).await.map_err(|e| e.to_string())?;
    }
    Ok(delivered)
}

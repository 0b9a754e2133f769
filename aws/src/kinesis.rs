//! The stream port on Kinesis Data Streams.
//!
//! A record is what IoT Core's topic rule puts on the stream: the envelope
//! as data, the device id as partition key, so a device's records share a
//! shard and stay in order. Its `received_at` is Kinesis' approximate
//! arrival time and its topic is the device's telemetry topic, whichever
//! path (IoT Core or `wenu serve --backend aws`) wrote it.
//!
//! Appends are `PutRecords` calls of up to 500 records and 5 MiB; the
//! records Kinesis refuses one by one (throttled shards) are sent again with
//! backoff. Reads keep the `NextShardIterator` of the previous read, so a
//! consumer reading on from where it stopped costs one `GetRecords`, not a
//! `GetShardIterator` as well. Checkpoints live in a table store (DynamoDB),
//! one item per consumer and shard, as the KCL's lease table keeps them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::SdkError;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use bytes::Bytes;
use wenu_core::stream::{NewRecord, Position, Record, Shard, ShardId, StartAt, Stream};
use wenu_core::table::{Expect, ItemKey, TableStore};
use wenu_core::topic::telemetry_topic;
use wenu_core::{Error, Result};

use crate::error::{classify, code};
use crate::retry::Backoff;

/// Kinesis' limits on one `PutRecords`.
const MAX_PUT_RECORDS: usize = 500;
const MAX_PUT_BYTES: usize = 5 * 1024 * 1024;
/// Most `GetRecords` calls one read makes through empty pages of a shard
/// that has records further on.
const MAX_EMPTY_PAGES: usize = 5;

/// A Kinesis data stream; cheap to clone.
#[derive(Clone)]
pub struct KinesisStream {
    client: Client,
    stream: String,
    checkpoints: Arc<dyn TableStore>,
    /// The iterator that continues each shard after a read, by where it starts.
    iterators: Arc<Mutex<HashMap<(ShardId, StartAt), String>>>,
}

impl KinesisStream {
    /// The stream `stream`, with consumers' checkpoints in `checkpoints`.
    pub fn new(client: Client, stream: impl Into<String>, checkpoints: Arc<dyn TableStore>) -> Self {
        KinesisStream { client, stream: stream.into(), checkpoints, iterators: Default::default() }
    }

    /// Creates the stream with `shards` shards if it does not exist and waits
    /// until it is active, as the deployment template does; for development
    /// and tests.
    pub async fn create(
        client: Client,
        stream: &str,
        shards: u32,
        checkpoints: Arc<dyn TableStore>,
    ) -> Result<Self> {
        match client.create_stream().stream_name(stream).shard_count(shards as i32).send().await {
            Ok(_) => {}
            Err(e) if code(&e) == Some("ResourceInUseException") => {}
            Err(e) => return Err(stream_error("CreateStream", &e)),
        }
        let kinesis = KinesisStream::new(client, stream, checkpoints);
        kinesis.wait_until_active().await?;
        Ok(kinesis)
    }

    /// Waits for the stream to be active (after a create or a reshard).
    pub async fn wait_until_active(&self) -> Result<()> {
        let mut backoff = Backoff::default();
        loop {
            let summary = self
                .client
                .describe_stream_summary()
                .stream_name(&self.stream)
                .send()
                .await
                .map_err(|e| stream_error("DescribeStreamSummary", &e))?;
            if summary.stream_description_summary().map(|s| s.stream_status()) == Some(&StreamStatus::Active)
            {
                return Ok(());
            }
            backoff
                .wait(
                    "DescribeStreamSummary",
                    Error::Stream {
                        message: format!("stream {} is not active", self.stream),
                        retryable: true,
                    },
                )
                .await?;
        }
    }

    pub fn name(&self) -> &str {
        &self.stream
    }

    async fn put_batch(&self, records: &[NewRecord]) -> Result<Vec<Position>> {
        let mut positions: Vec<Option<Position>> = vec![None; records.len()];
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut backoff = Backoff::default();
        while !pending.is_empty() {
            let entries = pending
                .iter()
                .map(|&i| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(records[i].payload.to_vec()))
                        .partition_key(&records[i].device_id)
                        .build()
                        .expect("data and partition key are set")
                })
                .collect();
            let output = self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(entries))
                .send()
                .await
                .map_err(|e| stream_error("PutRecords", &e))?;
            let mut failed = Vec::new();
            for (&i, result) in pending.iter().zip(output.records()) {
                match (result.sequence_number(), result.error_code()) {
                    (Some(sequence), None) => positions[i] = Some(sequence.parse()?),
                    (_, code) => {
                        let code = code.unwrap_or("no sequence number");
                        if !crate::error::is_retryable_code(code) {
                            return Err(Error::Stream {
                                message: format!(
                                    "Kinesis refused a record: {code} {}",
                                    result.error_message().unwrap_or_default()
                                ),
                                retryable: false,
                            });
                        }
                        failed.push(i);
                    }
                }
            }
            pending = failed;
            if !pending.is_empty() {
                metrics::counter!("wenu_aws_partial_failures_total", "call" => "PutRecords")
                    .increment(pending.len() as u64);
                backoff
                    .wait(
                        "PutRecords",
                        Error::Stream { message: "records kept being throttled".into(), retryable: true },
                    )
                    .await?;
            }
        }
        Ok(positions.into_iter().map(|p| p.expect("every record has its position")).collect())
    }

    async fn iterator(&self, shard: &ShardId, start: StartAt) -> Result<String> {
        if let Some(iterator) =
            self.iterators.lock().expect("iterator cache poisoned").remove(&(shard.clone(), start))
        {
            return Ok(iterator);
        }
        let mut request = self.client.get_shard_iterator().stream_name(&self.stream).shard_id(&shard.0);
        request = match start {
            StartAt::Oldest => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            StartAt::Position(p) => request
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(p.to_string()),
            StartAt::After(p) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(p.to_string()),
            StartAt::Timestamp(ms) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(ms)),
        };
        let output = request.send().await.map_err(|e| stream_error("GetShardIterator", &e))?;
        output.shard_iterator().map(str::to_owned).ok_or_else(|| Error::Stream {
            message: format!("no iterator for shard {shard}"),
            retryable: true,
        })
    }

    fn checkpoint_key(&self, consumer: &str, shard: &ShardId) -> Result<ItemKey> {
        Ok(ItemKey {
            partition: format!("checkpoint#{}#{consumer}", self.stream),
            sort: shard_number(shard)?,
        })
    }
}

#[async_trait]
impl Stream for KinesisStream {
    async fn append(&self, records: Vec<NewRecord>) -> Result<Vec<Position>> {
        let mut positions = Vec::with_capacity(records.len());
        let (mut start, mut bytes) = (0, 0);
        for (i, record) in records.iter().enumerate() {
            let size = record.payload.len() + record.device_id.len();
            if i > start && (i - start == MAX_PUT_RECORDS || bytes + size > MAX_PUT_BYTES) {
                positions.extend(self.put_batch(&records[start..i]).await?);
                (start, bytes) = (i, 0);
            }
            bytes += size;
        }
        if start < records.len() {
            positions.extend(self.put_batch(&records[start..]).await?);
        }
        Ok(positions)
    }

    async fn shards(&self) -> Result<Vec<Shard>> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let request = match &next_token {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let output = request.send().await.map_err(|e| stream_error("ListShards", &e))?;
            for shard in output.shards() {
                let parents = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                    .into_iter()
                    .flatten()
                    .map(|p| ShardId(p.to_owned()))
                    .collect();
                let closed = shard.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_some();
                shards.push(Shard { id: ShardId(shard.shard_id().to_owned()), parents, closed });
            }
            match output.next_token() {
                Some(token) => next_token = Some(token.to_owned()),
                None => return Ok(shards),
            }
        }
    }

    async fn read_shard(&self, shard: &ShardId, start: StartAt, max_records: usize) -> Result<Vec<Record>> {
        let mut iterator = self.iterator(shard, start).await?;
        let mut expired_once = false;
        for _ in 0..MAX_EMPTY_PAGES {
            let output = match self
                .client
                .get_records()
                .shard_iterator(&iterator)
                .limit(max_records.clamp(1, 10_000) as i32)
                .send()
                .await
            {
                Ok(output) => output,
                // A kept iterator lives five minutes; start again from `start`.
                Err(e) if code(&e) == Some("ExpiredIteratorException") && !expired_once => {
                    expired_once = true;
                    iterator = self.iterator(shard, start).await?;
                    continue;
                }
                Err(e) => return Err(stream_error("GetRecords", &e)),
            };
            let records = output
                .records()
                .iter()
                .map(|r| {
                    let device_id = r.partition_key().unwrap_or_default();
                    Ok(Record {
                        position: r.sequence_number().parse()?,
                        device_id: device_id.to_owned(),
                        topic: telemetry_topic(device_id),
                        received_at: r
                            .approximate_arrival_timestamp()
                            .map_or(0, |t| t.to_millis().unwrap_or(0)),
                        payload: Bytes::copy_from_slice(r.data().as_ref()),
                    })
                })
                .collect::<Result<Vec<Record>>>()?;
            let behind = output.millis_behind_latest().unwrap_or(0);
            let Some(next) = output.next_shard_iterator().map(str::to_owned) else {
                return Ok(records); // a closed shard, read to its end
            };
            let resume = records.last().map_or(start, |r| StartAt::After(r.position));
            if !records.is_empty() || behind == 0 {
                self.iterators.lock().expect("iterator cache poisoned").insert((shard.clone(), resume), next);
                return Ok(records);
            }
            iterator = next; // an empty page with records further on
        }
        Ok(Vec::new())
    }

    async fn checkpoint(&self, consumer: &str, shard: &ShardId) -> Result<Option<Position>> {
        let Some(item) = self.checkpoints.get(&self.checkpoint_key(consumer, shard)?).await? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&item.value)
            .map_err(|_| Error::Stream { message: "checkpoint is not text".into(), retryable: false })?;
        text.parse().map(Some)
    }

    async fn commit_checkpoint(&self, consumer: &str, shard: &ShardId, position: Position) -> Result<()> {
        let key = self.checkpoint_key(consumer, shard)?;
        self.checkpoints.put(&key, Bytes::from(position.to_string()), None, Expect::Anything).await.map(drop)
    }
}

/// The number in a Kinesis shard id (`shardId-000000000007` → 7), the
/// checkpoint's sort key.
fn shard_number(shard: &ShardId) -> Result<i64> {
    shard.0.rsplit('-').next().and_then(|n| n.parse().ok()).ok_or_else(|| Error::Stream {
        message: format!("not a Kinesis shard id: {shard}"),
        retryable: false,
    })
}

fn stream_error<E, R>(call: &str, err: &SdkError<E, R>) -> Error
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (message, retryable) = classify(err);
    Error::Stream { message: format!("Kinesis {call}: {message}"), retryable }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_numbers_come_from_kinesis_shard_ids() {
        assert_eq!(shard_number(&ShardId("shardId-000000000007".into())).unwrap(), 7);
        assert!(shard_number(&ShardId("log".into())).is_err());
    }
}

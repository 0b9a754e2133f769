//! An event source mapping on the stream: each batch is one shard's
//! records, in order; the checkpoint moves past the records before the
//! first one the function reports failed, and reading resumes there after
//! a backoff. Unlike Lambda's, it retries without limit rather than send a
//! batch to an on-failure destination: the stream keeps the records for
//! its retention period, and a stage that cannot go on is what an operator
//! must see.

use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::encodings::SecondTimestamp;
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord, KinesisRecord};
use aws_lambda_events::event::streams::KinesisEventResponse;
use tokio::sync::watch;
use wenu_core::stream::{Record, ShardId, StartAt};
use wenu_runtime::Stage;

use super::ShardReader;
use crate::alarms::AlarmsFunction;
use crate::kinesis::StageFunction;

/// A function the mapping calls.
#[async_trait]
pub trait StreamFunction: Send + 'static {
    async fn handle(&mut self, event: &KinesisEvent) -> KinesisEventResponse;
}

#[async_trait]
impl<S: Stage> StreamFunction for StageFunction<S> {
    async fn handle(&mut self, event: &KinesisEvent) -> KinesisEventResponse {
        StageFunction::handle(self, event).await
    }
}

#[async_trait]
impl StreamFunction for AlarmsFunction {
    async fn handle(&mut self, event: &KinesisEvent) -> KinesisEventResponse {
        AlarmsFunction::handle(self, event).await
    }
}

#[derive(Debug, Clone)]
pub struct MappingOptions {
    /// Records per invocation (Lambda's `BatchSize`).
    pub batch_size: usize,
    /// How long to wait before reading again when every shard was read up
    /// to now (Lambda polls each shard once a second).
    pub poll_every: Duration,
    pub max_backoff: Duration,
}

impl Default for MappingOptions {
    fn default() -> Self {
        MappingOptions {
            batch_size: 100,
            poll_every: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// One shard's records as the event Lambda sends.
pub fn kinesis_event(stream_arn: &str, shard: &ShardId, records: &[Record]) -> KinesisEvent {
    let mut event = KinesisEvent::default();
    event.records = records
        .iter()
        .map(|record| {
            let mut kinesis = KinesisRecord::default();
            kinesis.partition_key = record.device_id.clone();
            kinesis.sequence_number = record.position.to_string();
            kinesis.data.0 = record.payload.to_vec();
            kinesis.approximate_arrival_timestamp = SecondTimestamp(
                chrono::DateTime::from_timestamp_millis(record.received_at).unwrap_or_default(),
            );
            kinesis.kinesis_schema_version = Some("1.0".into());
            let mut wrapped = KinesisEventRecord::default();
            wrapped.kinesis = kinesis;
            wrapped.event_id = Some(format!("{shard}:{}", record.position));
            wrapped.event_name = Some("aws:kinesis:record".into());
            wrapped.event_source = Some("aws:kinesis".into());
            wrapped.event_source_arn = Some(stream_arn.to_owned());
            wrapped.event_version = Some("1.0".into());
            wrapped
        })
        .collect();
    event
}

/// Runs `function` on the stream until `shutdown` turns true (finishing the
/// batch in hand).
pub async fn run<F: StreamFunction>(
    mut reader: ShardReader,
    stream_arn: String,
    mut function: F,
    options: MappingOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let first_backoff = Duration::from_millis(100);
    let mut backoff = first_backoff;
    while !*shutdown.borrow() {
        let wait = match reader.read(options.batch_size).await {
            Ok(None) => options.poll_every,
            Ok(Some((shard, records))) => {
                let event = kinesis_event(&stream_arn, &shard, &records);
                let response = function.handle(&event).await;
                match settle(&mut reader, &shard, &records, &response).await {
                    Ok(true) => {
                        backoff = first_backoff;
                        continue;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(consumer = reader.consumer(), %error, "checkpoint not saved; reading again from the last one");
                        reader.reset();
                    }
                }
                backoff = (backoff * 2).min(options.max_backoff);
                backoff
            }
            Err(error) => {
                tracing::warn!(consumer = reader.consumer(), %error, "reading the stream failed; trying again");
                reader.reset();
                backoff = (backoff * 2).min(options.max_backoff);
                backoff
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Moves the checkpoint past what succeeded; `Ok(true)` if all of it did.
async fn settle(
    reader: &mut ShardReader,
    shard: &ShardId,
    records: &[Record],
    response: &KinesisEventResponse,
) -> wenu_core::Result<bool> {
    let failed: Vec<&str> =
        response.batch_item_failures.iter().filter_map(|f| f.item_identifier.as_deref()).collect();
    // The earliest failed record; one not in the batch fails it whole, as on Lambda.
    let first_failed = match failed.as_slice() {
        [] => None,
        ids => Some(records.iter().position(|r| ids.contains(&r.position.to_string().as_str())).unwrap_or(0)),
    };
    let done = &records[..first_failed.unwrap_or(records.len())];
    if let Some(last) = done.last() {
        reader.commit(shard, last.position).await?;
    }
    match first_failed {
        None => Ok(true),
        Some(index) => {
            reader.rewind(shard, StartAt::Position(records[index].position));
            Ok(false)
        }
    }
}

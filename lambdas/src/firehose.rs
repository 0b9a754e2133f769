//! The lake's Firehose transformation: the decrypt stage as Firehose calls
//! it, on batches of Kinesis records it buffered by size or time.
//!
//! Each input record is one envelope as IoT Core's topic rule put it on the
//! stream (partition key = device id). The answer, record by record:
//!
//! * `Ok`: its readings as newline-delimited JSON objects with the lake's
//!   columns (`device_id`, `site`, `sensor`, `kind`, `value`, `unit`,
//!   `raw_value`, `ts` and `received_at` in unix ms, `seq`, `key_id`), which
//!   Firehose's record format conversion turns into Parquet through the
//!   Glue table, and the partition keys `company`, `date`, `hour` for the
//!   prefix `readings/company=!{partitionKeyFromLambda:company}/…`;
//! * `Dropped`: a message the device delivered twice within the batch, or
//!   one with no readings;
//! * `ProcessingFailed`: a record that cannot be decrypted or attributed.
//!   Firehose writes it, unchanged, under the bucket's `processing-failed/`
//!   prefix; the reason goes to the function's log and metrics.

use std::collections::HashMap;

use aws_lambda_events::firehose::{
    KinesisFirehoseEvent, KinesisFirehoseEventRecord, KinesisFirehoseResponse, KinesisFirehoseResponseRecord,
    KinesisFirehoseResponseRecordMetadata,
};
use wenu_core::stream::{Position, Record};
use wenu_core::topic::telemetry_topic;
use wenu_decrypt::{DecodeLimits, DecodedMessage, Decoder, Directory, KeySource, Outcome, SequenceTracker};
use wenu_lake::encode::LakeRow;
use wenu_lake::layout::HourPartition;

/// Firehose's record results.
pub const OK: &str = "Ok";
pub const DROPPED: &str = "Dropped";
pub const PROCESSING_FAILED: &str = "ProcessingFailed";

/// The transformation's state, kept by the function instance between
/// invocations: the decoder (expanded keys, the devices' sequence state)
/// and where its keys come from.
pub struct DecryptTransform {
    decoder: Decoder,
    keys: Box<dyn KeySource>,
}

impl DecryptTransform {
    pub fn new(keys: Box<dyn KeySource>, limits: DecodeLimits) -> Self {
        let decoder =
            Decoder::new(Default::default(), Directory::default(), limits, SequenceTracker::default());
        DecryptTransform { decoder, keys }
    }

    /// Transforms one invocation's records. Fails whole (Firehose retries the
    /// batch) only when the keys cannot be loaded.
    pub async fn handle(&mut self, event: KinesisFirehoseEvent) -> Result<KinesisFirehoseResponse, String> {
        if let Some((keyring, directory)) = self.keys.refresh().await? {
            self.decoder.refresh(keyring, directory);
        }
        // Duplicates are dropped within a batch only. Firehose calls again
        // with the same records when an answer went missing; remembering the
        // first call would drop them all and lose the readings. So the lake
        // on AWS is at-least-once: readers dedupe on (device_id, seq, sensor).
        self.decoder.restore_sequences(SequenceTracker::default());
        let converted: Vec<Result<Record, String>> = event.records.iter().map(stream_record).collect();
        let usable: Vec<Record> = converted.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
        let mut outcomes = self.decoder.decode_all(&usable).into_iter();

        let mut results = Vec::with_capacity(event.records.len());
        for (input, converted) in event.records.iter().zip(converted) {
            let id = input.record_id.clone().unwrap_or_default();
            let record = match converted {
                Ok(record) => record,
                Err(why) => {
                    tracing::warn!(record = %id, reason = "not_from_the_stream", detail = %why, "record failed");
                    metrics::counter!("wenu_lake_quarantined_total", "reason" => "not_from_the_stream")
                        .increment(1);
                    results.push(answer(id, PROCESSING_FAILED, input.data.to_vec(), HashMap::new()));
                    continue;
                }
            };
            let outcome = outcomes.next().expect("an outcome per usable record");
            results.push(match outcome {
                Outcome::Accepted(message) if message.readings.is_empty() => answer(id, DROPPED, Vec::new(), HashMap::new()),
                Outcome::Accepted(message) => {
                    let partition = HourPartition::of(&message.company, message.ts);
                    let keys = HashMap::from([
                        ("company".to_owned(), partition.company),
                        ("date".to_owned(), partition.date),
                        ("hour".to_owned(), partition.hour),
                    ]);
                    metrics::counter!("wenu_lake_rows_total").increment(message.readings.len() as u64);
                    answer(id, OK, json_rows(&message), keys)
                }
                Outcome::Duplicate { device_id, seq } => {
                    tracing::debug!(record = %id, device = %device_id, seq, "duplicate dropped");
                    metrics::counter!("wenu_lake_duplicates_total").increment(1);
                    answer(id, DROPPED, Vec::new(), HashMap::new())
                }
                Outcome::Rejected(rejection) => {
                    let reason = rejection.reason.label();
                    tracing::warn!(record = %id, device = %record.device_id, position = %record.position, reason, detail = %rejection.detail, "record failed");
                    metrics::counter!("wenu_lake_quarantined_total", "reason" => reason).increment(1);
                    answer(id, PROCESSING_FAILED, record.payload.to_vec(), HashMap::new())
                }
            });
        }
        let mut response = KinesisFirehoseResponse::default();
        response.records = results;
        Ok(response)
    }
}

/// A Firehose record with its Kinesis source metadata, as a stream record.
fn stream_record(record: &KinesisFirehoseEventRecord) -> Result<Record, String> {
    let metadata =
        record.kinesis_firehose_record_metadata.as_ref().ok_or("no Kinesis metadata: not from the stream")?;
    let device_id = metadata.partition_key.clone().ok_or("no partition key")?;
    let position: Position = metadata
        .sequence_number
        .as_deref()
        .ok_or("no sequence number")?
        .parse()
        .map_err(|e: wenu_core::Error| e.to_string())?;
    Ok(Record {
        position,
        topic: telemetry_topic(&device_id),
        device_id,
        received_at: record.approximate_arrival_timestamp.0.timestamp_millis(),
        payload: record.data.0.clone().into(),
    })
}

/// One JSON object per reading, newline-separated.
fn json_rows(message: &DecodedMessage) -> Vec<u8> {
    let mut out = Vec::new();
    for row in LakeRow::of_message(message) {
        serde_json::to_writer(&mut out, &row).expect("a row serializes");
        out.push(b'\n');
    }
    out
}

fn answer(
    record_id: String,
    result: &str,
    data: Vec<u8>,
    partition_keys: HashMap<String, String>,
) -> KinesisFirehoseResponseRecord {
    let mut metadata = KinesisFirehoseResponseRecordMetadata::default();
    metadata.partition_keys = partition_keys;
    let mut answer = KinesisFirehoseResponseRecord::default();
    answer.record_id = Some(record_id);
    answer.result = Some(result.to_owned());
    *answer.data = data;
    answer.metadata = metadata;
    answer
}

//! Stages on the stream as Lambda runs them (enrich, alarms): the event
//! source mapping reads a shard, calls the function with a batch of its
//! records, and moves its checkpoint past every record before the first one
//! the function reports failed (`ReportBatchItemFailures`); with
//! bisect-on-error it then retries the rest in halves.
//!
//! The stages process a batch whole or not at all, so a failure is reported
//! at the batch's first record: the mapping retries all of it, and the
//! stage's state goes back to what it was after the last batch that
//! succeeded, as the embedded consumer's does after a failure.

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::KinesisEventResponse;
use wenu_core::stream::{Position, Record};
use wenu_core::topic::telemetry_topic;
use wenu_runtime::Stage;

/// A stage's records as the stream port's.
pub fn records_of(event: &KinesisEvent) -> Result<Vec<Record>, String> {
    event.records.iter().map(record_of).collect()
}

fn record_of(record: &KinesisEventRecord) -> Result<Record, String> {
    let kinesis = &record.kinesis;
    let position: Position = kinesis
        .sequence_number
        .parse()
        .map_err(|e| format!("sequence number {:?}: {e}", kinesis.sequence_number))?;
    Ok(Record {
        position,
        topic: telemetry_topic(&kinesis.partition_key),
        device_id: kinesis.partition_key.clone(),
        received_at: kinesis.approximate_arrival_timestamp.0.timestamp_millis(),
        payload: kinesis.data.0.clone().into(),
    })
}

/// One stage as a function on the stream, keeping the stage (its caches and
/// state) between invocations of the same instance.
pub struct StageFunction<S: Stage> {
    name: &'static str,
    stage: S,
    /// The stage's state after the last batch that succeeded.
    state: Option<Vec<u8>>,
}

impl<S: Stage> StageFunction<S> {
    pub fn new(name: &'static str, mut stage: S) -> Result<Self, S::Error> {
        stage.restore(None)?;
        Ok(StageFunction { name, stage, state: None })
    }

    /// Processes one batch and names the record to retry from, if any.
    pub async fn handle(&mut self, event: &KinesisEvent) -> KinesisEventResponse {
        let mut response = KinesisEventResponse::default();
        let Some(first) = event.records.first() else { return response };
        let outcome = match records_of(event) {
            Ok(records) => self.process(&records).await,
            Err(why) => Err(why),
        };
        match outcome {
            Ok(state) => {
                self.state = Some(state);
                metrics::counter!("wenu_function_batches_total", "function" => self.name, "outcome" => "ok")
                    .increment(1);
            }
            Err(error) => {
                tracing::warn!(function = self.name, records = event.records.len(), %error, "batch failed; the event source mapping retries it");
                metrics::counter!("wenu_function_batches_total", "function" => self.name, "outcome" => "failed")
                    .increment(1);
                if let Err(error) = self.stage.restore(self.state.as_deref()) {
                    tracing::error!(function = self.name, %error, "state cannot be restored; starting afresh");
                    // A state from nothing is always valid: the stages' outputs are idempotent.
                    let _ = self.stage.restore(None);
                    self.state = None;
                }
                response.add_failure(first.kinesis.sequence_number.clone());
            }
        }
        response
    }

    async fn process(&mut self, records: &[Record]) -> Result<Vec<u8>, String> {
        let state = self.stage.process(records).await.map_err(|e| e.to_string())?;
        // Timers (a silent device) run once per invocation; a failed one is tried at the next.
        if let Err(error) = self.stage.tick().await {
            tracing::warn!(function = self.name, %error, "timers failed; trying again at the next batch");
        }
        self.stage.before_checkpoint().await.map_err(|e| e.to_string())?;
        Ok(state)
    }

    /// Runs the stage's timers alone, for an invocation with no batch.
    pub async fn tick(&mut self) -> Result<(), String> {
        self.stage.tick().await.map_err(|e| e.to_string())?;
        self.stage.before_checkpoint().await.map_err(|e| e.to_string())
    }

    pub fn stage(&self) -> &S {
        &self.stage
    }
}

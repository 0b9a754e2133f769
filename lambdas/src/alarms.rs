//! The alarms function: the alarm stage on the stream, its own event source
//! mapping (so nothing else on the stream delays it), and the notifications
//! its batch raised delivered before it returns: a Lambda instance is frozen
//! between invocations, so nothing may be left running in the background.
//! What could not be delivered stays in the outbox (the alarms table) and
//! is tried again at the next invocation.
//!
//! The function is also invoked every minute by an EventBridge schedule:
//! missing-data rules must fire for a device that went silent even when no
//! batch comes (a quiet shard invokes nothing), and the outbox is emptied.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use serde_json::Value;
use wenu_alarms::{AlarmStage, Dispatcher};

use crate::kinesis::StageFunction;

pub struct AlarmsFunction {
    stage: StageFunction<AlarmStage>,
    dispatcher: Dispatcher,
}

impl AlarmsFunction {
    /// `stage` must have been built with `dispatcher.waker()`.
    pub fn new(stage: AlarmStage, dispatcher: Dispatcher) -> Result<Self, wenu_alarms::Error> {
        Ok(AlarmsFunction { stage: StageFunction::new("alarms", stage)?, dispatcher })
    }

    pub async fn handle(&mut self, event: &KinesisEvent) -> KinesisEventResponse {
        let response = self.stage.handle(event).await;
        if let Err(error) = self.dispatcher.deliver_due().await {
            tracing::warn!(%error, "alarm outbox unreadable; delivering at the next invocation");
        }
        response
    }

    /// A scheduled invocation: the timers, then delivery of what is due.
    pub async fn handle_schedule(&mut self) -> Result<(), String> {
        let timers = self.stage.tick().await;
        if let Err(error) = self.dispatcher.deliver_due().await {
            tracing::warn!(%error, "alarm outbox unreadable; delivering at the next invocation");
        }
        timers
    }

    /// Whichever event invoked the function: a batch of the stream's
    /// records (answered with the records to retry from) or EventBridge's
    /// scheduled event.
    pub async fn handle_any(&mut self, event: Value) -> Result<Value, String> {
        if event.get("Records").is_some() {
            let batch: KinesisEvent =
                serde_json::from_value(event).map_err(|e| format!("not a Kinesis event: {e}"))?;
            let response = self.handle(&batch).await;
            return serde_json::to_value(response).map_err(|e| e.to_string());
        }
        if event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
            self.handle_schedule().await?;
            return Ok(Value::Null);
        }
        Err("neither a Kinesis batch nor a scheduled event".into())
    }

    pub fn stage(&self) -> &AlarmStage {
        self.stage.stage()
    }
}

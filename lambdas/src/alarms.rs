//! The alarms function: the alarm stage on the stream, its own event source
//! mapping (so nothing else on the stream delays it), and the notifications
//! its batch raised delivered before it returns: a Lambda instance is frozen
//! between invocations, so nothing may be left running in the background.
//! What could not be delivered stays in the outbox (the alarms table) and
//! is tried again at the next invocation.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
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

    pub fn stage(&self) -> &AlarmStage {
        self.stage.stage()
    }
}

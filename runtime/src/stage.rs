//! The work a consumer does: the one trait every stage (lake, enrich,
//! alarms) implements, whichever backend feeds it.

use async_trait::async_trait;
use wenu_core::stream::Record;

/// The work a consumer does on each batch.
#[async_trait]
pub trait Stage: Send + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Sets the stage's state to the one saved with the checkpoint (`None`
    /// when the consumer never committed). Called at start and before a retry.
    fn restore(&mut self, state: Option<&[u8]>) -> Result<(), Self::Error>;

    /// Processes records in stream order and returns once their outputs are
    /// durable, with the state to save alongside the checkpoint.
    async fn process(&mut self, records: &[Record]) -> Result<Vec<u8>, Self::Error>;

    /// Called every [`ConsumerOptions::tick_every`](crate::ConsumerOptions::tick_every),
    /// records or not: for stages that act on the passing of time (a silent device).
    async fn tick(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Called before the checkpoint is committed: whatever the stage keeps
    /// outside the checkpoint and has not stored yet must be stored now.
    async fn before_checkpoint(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

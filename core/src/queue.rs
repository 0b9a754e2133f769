//! The queue port: jobs between stages, with at-least-once delivery.
//!
//! SQS implements it on AWS (a FIFO queue, so that a message group is worked
//! on by one consumer at a time), an embedded queue on one machine
//! (`wenu-local`). The semantics are SQS's:
//!
//! * a received message is invisible to other receivers for the visibility
//!   timeout; deleting it is the acknowledgement, and if it is not deleted in
//!   time it becomes visible again and its receive count grows;
//! * while a message of a group is in flight, no other message of that group
//!   is handed out, and a group's messages come out in the order they were
//!   sent: one series, one worker at a time, different series in parallel;
//! * a message received `max_receive_count` times without being deleted goes
//!   to the dead-letter queue instead of being delivered again; `redrive`
//!   moves dead letters back.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::Result;

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The ordering and exclusivity group (SQS `MessageGroupId`).
    pub group: String,
    pub body: Bytes,
}

/// A message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: String,
    /// Names this delivery; `delete` and `change_visibility` take it. A
    /// receipt of an earlier delivery may no longer act on the message.
    pub receipt: String,
    pub group: String,
    pub body: Bytes,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

/// How many messages are where, as `wenu queue status` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueDepth {
    /// Waiting to be received.
    pub visible: u64,
    /// Received and not yet deleted or timed out.
    pub in_flight: u64,
    /// In the dead-letter queue.
    pub dead: u64,
}

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Sends messages durably: when it returns `Ok` they survive a crash.
    async fn send_batch(&self, messages: Vec<NewMessage>) -> Result<()>;

    /// Up to `max` messages, hidden from other receivers for `visibility`.
    /// May return fewer than are waiting (or none); never blocks waiting.
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>>;

    /// Acknowledges a delivery: the message is gone.
    async fn delete(&self, receipt: &str) -> Result<()>;

    /// Acknowledges several deliveries at once: one durable write (or one
    /// SQS call per ten) instead of one each. Like [`delete`](Self::delete),
    /// a stale receipt deletes nothing and is no error. By default one by one.
    async fn delete_batch(&self, receipts: &[String]) -> Result<()> {
        for receipt in receipts {
            self.delete(receipt).await?;
        }
        Ok(())
    }

    /// Hides an in-flight message for `visibility` from now; zero makes it
    /// visible again at once (a worker giving a job back).
    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()>;

    async fn depth(&self) -> Result<QueueDepth>;

    /// Moves up to `max` dead letters (all with `None`) back to the queue,
    /// with their receive counts reset; returns how many moved.
    async fn redrive(&self, max: Option<usize>) -> Result<u64>;
}

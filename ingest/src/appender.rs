//! One device connection's publishes on their way into the stream, in the
//! order they arrived.
//!
//! The MQTT library hands a connection's publishes over concurrently (many
//! in flight, acknowledged in order). Each is queued here as it arrives, and
//! one task per connection appends whatever has queued as one batch: the
//! log keeps each device's order, a connection has one append in flight,
//! and the publishes that arrived meanwhile share the next group commit.
//! The queue holds at most the connection's receive maximum: past it the
//! library stops reading the socket.

use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::gate::{Gate, Publish};
use crate::policy::PublishRefusal;

/// Publishes appended in one batch, at most.
const MAX_BATCH: usize = 256;

pub(crate) type Outcome = Result<(), PublishRefusal>;

type Queued = (Publish, oneshot::Sender<Outcome>);

pub(crate) struct Appender {
    queue: mpsc::UnboundedSender<Queued>,
}

impl Appender {
    /// Starts the connection's append task on `runtime` (the server's, where
    /// the registry and the stream live).
    pub fn start(gate: Arc<Gate>, device_id: String, runtime: &Handle) -> Self {
        let (queue, publishes) = mpsc::unbounded_channel();
        runtime.spawn(run(gate, device_id, publishes));
        Self { queue }
    }

    /// Queues a publish; `answer` gets its outcome once it is durable or
    /// refused. Called in arrival order: that is what keeps the order.
    pub fn submit(&self, publish: Publish, answer: oneshot::Sender<Outcome>) {
        // The task ends only when every sender is gone.
        let _ = self.queue.send((publish, answer));
    }
}

async fn run(gate: Arc<Gate>, device_id: String, mut publishes: mpsc::UnboundedReceiver<Queued>) {
    let mut batch = Vec::new();
    while publishes.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (publishes, answers): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let outcomes = gate.publish(&device_id, &publishes).await;
        for (answer, outcome) in answers.into_iter().zip(outcomes) {
            let _ = answer.send(outcome);
        }
    }
}

//! An event source mapping on the jobs queue: up to `batch_size` messages
//! per invocation of the stats function; those it does not report failed
//! are deleted, the others come back once their visibility timeout passes,
//! and go to the dead-letter queue after the queue's max receive count.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::sync::watch;
use wenu_core::queue::{Queue, Received};
use wenu_stats::worker::Handler;

use crate::sqs::handle_jobs;

#[derive(Debug, Clone)]
pub struct QueueMappingOptions {
    /// Messages per invocation (10 at most on a FIFO queue).
    pub batch_size: usize,
    /// How long a received batch stays hidden from other pollers.
    pub visibility: Duration,
    pub poll_every: Duration,
    /// Pollers working at once (Lambda scales with the message groups).
    pub pollers: usize,
}

impl Default for QueueMappingOptions {
    fn default() -> Self {
        QueueMappingOptions {
            batch_size: 10,
            visibility: Duration::from_secs(30),
            poll_every: Duration::from_millis(500),
            pollers: 2,
        }
    }
}

/// Messages as the event Lambda sends: bodies that are not text go as
/// base64 with the `encoding` attribute, as `wenu_aws::SqsQueue` sends them.
pub fn sqs_event(queue_arn: &str, messages: &[Received]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|received| {
            let mut message = SqsMessage::default();
            message.message_id = Some(received.id.clone());
            message.receipt_handle = Some(received.receipt.clone());
            match std::str::from_utf8(&received.body) {
                Ok(text) => message.body = Some(text.to_owned()),
                Err(_) => {
                    message.body = Some(BASE64.encode(&received.body));
                    let mut encoding = SqsMessageAttribute::default();
                    encoding.data_type = Some("String".into());
                    encoding.string_value = Some("base64".into());
                    message.message_attributes.insert("encoding".into(), encoding);
                }
            }
            message.attributes.insert("MessageGroupId".into(), received.group.clone());
            message.attributes.insert("ApproximateReceiveCount".into(), received.receive_count.to_string());
            message.event_source = Some("aws:sqs".into());
            message.event_source_arn = Some(queue_arn.to_owned());
            message
        })
        .collect();
    event
}

/// Runs `options.pollers` pollers until `shutdown` turns true.
pub async fn run(
    queue: Arc<dyn Queue>,
    queue_arn: String,
    handler: Arc<dyn Handler>,
    options: QueueMappingOptions,
    shutdown: watch::Receiver<bool>,
) {
    let mut pollers = tokio::task::JoinSet::new();
    for _ in 0..options.pollers.max(1) {
        let (queue, arn, handler, options, shutdown) =
            (queue.clone(), queue_arn.clone(), handler.clone(), options.clone(), shutdown.clone());
        pollers.spawn(async move { poll(queue.as_ref(), &arn, handler.as_ref(), &options, shutdown).await });
    }
    pollers.join_all().await;
}

async fn poll(
    queue: &dyn Queue,
    queue_arn: &str,
    handler: &dyn Handler,
    options: &QueueMappingOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let received = match queue.receive(options.batch_size, options.visibility).await {
            Ok(received) if !received.is_empty() => received,
            Ok(_) => Vec::new(),
            Err(error) => {
                tracing::warn!(%error, "receiving from the jobs queue failed; trying again");
                Vec::new()
            }
        };
        if received.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(options.poll_every) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let response = handle_jobs(handler, sqs_event(queue_arn, &received)).await;
        let failed: HashSet<&str> =
            response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        for message in received.iter().filter(|m| !failed.contains(m.id.as_str())) {
            if let Err(error) = queue.delete(&message.receipt).await {
                // It comes back after its visibility timeout; applying it again counts nothing twice.
                tracing::warn!(%error, message = %message.id, "deleting a done job failed");
            }
        }
    }
}

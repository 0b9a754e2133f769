//! The queue port on SQS: a FIFO queue (one message of a group in flight at
//! a time, groups in order) with a FIFO dead-letter queue behind its
//! RedrivePolicy.
//!
//! Bodies are text on SQS; a body that is not valid SQS text goes as base64
//! with an `encoding` attribute. Every message gets its own deduplication
//! id, so a job sent twice on purpose (a redrive) is never dropped by SQS's
//! five-minute deduplication window. Redrive is receive → send → delete,
//! which works on every SQS (and emulator), unlike `StartMessageMoveTask`.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use wenu_core::queue::{NewMessage, Queue, QueueDepth, Received};
use wenu_core::{Error, Result};

use crate::error::classify;
use crate::retry::Backoff;

/// SQS's limits on one `SendMessageBatch`.
const MAX_BATCH_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// SQS's limit on one `ReceiveMessage`.
const MAX_RECEIVE: usize = 10;
/// The attribute that marks a base64 body.
const ENCODING: &str = "encoding";

/// A FIFO queue and its dead-letter queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dead_letter_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>, dead_letter_url: impl Into<String>) -> Self {
        SqsQueue { client, queue_url: queue_url.into(), dead_letter_url: dead_letter_url.into() }
    }

    /// The queue named `name` (`.fifo` is added if missing), its dead-letter
    /// queue found from its RedrivePolicy.
    pub async fn open(client: Client, name: &str) -> Result<Self> {
        let queue_url = url_of(&client, &fifo_name(name)).await?;
        let attributes = client
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| queue_error("GetQueueAttributes", &e))?;
        let policy = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
            .ok_or_else(|| permanent(format!("queue {name} has no RedrivePolicy (no dead-letter queue)")))?;
        let dead_letter_arn = serde_json_field(policy, "deadLetterTargetArn")
            .ok_or_else(|| permanent(format!("queue {name}: RedrivePolicy without deadLetterTargetArn")))?;
        let dead_letter_name = dead_letter_arn.rsplit(':').next().unwrap_or_default();
        let dead_letter_url = url_of(&client, dead_letter_name).await?;
        Ok(SqsQueue { client, queue_url, dead_letter_url })
    }

    /// Creates the queue `name` and `{name}-dlq` (both FIFO) if they do not
    /// exist, as the deployment template does; for development and tests.
    pub async fn create(client: Client, name: &str, max_receive_count: u32) -> Result<Self> {
        let base = name.trim_end_matches(".fifo");
        let dead_letter_url = create_fifo(&client, &format!("{base}-dlq"), None).await?;
        let dead_letter_arn = client
            .get_queue_attributes()
            .queue_url(&dead_letter_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| queue_error("GetQueueAttributes", &e))?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| permanent("dead-letter queue without an ARN"))?;
        let policy =
            format!(r#"{{"deadLetterTargetArn":"{dead_letter_arn}","maxReceiveCount":{max_receive_count}}}"#);
        let queue_url = create_fifo(&client, base, Some(policy)).await?;
        Ok(SqsQueue { client, queue_url, dead_letter_url })
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn dead_letter_url(&self) -> &str {
        &self.dead_letter_url
    }

    async fn send_to(&self, url: &str, messages: Vec<NewMessage>) -> Result<()> {
        for batch in batches(messages) {
            self.send_one_batch(url, batch).await?;
        }
        Ok(())
    }

    /// Sends one batch, sending again the entries SQS failed for a reason
    /// of its own (throttling, an internal error) until all are in.
    async fn send_one_batch(&self, url: &str, batch: Vec<NewMessage>) -> Result<()> {
        let mut pending: Vec<(String, SendMessageBatchRequestEntry)> =
            batch.into_iter().enumerate().map(|(i, message)| (i.to_string(), entry(i, message))).collect();
        let mut backoff = Backoff::default();
        while !pending.is_empty() {
            let output = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(pending.iter().map(|(_, e)| e.clone()).collect()))
                .send()
                .await
                .map_err(|e| queue_error("SendMessageBatch", &e))?;
            let failed = output.failed();
            refuse_if_refused("a message", failed)?;
            pending.retain(|(id, _)| failed.iter().any(|f| f.id() == id));
            wait_to_resend("SendMessageBatch", pending.len(), &mut backoff).await?;
        }
        Ok(())
    }

    async fn receive_from(&self, url: &str, max: usize, visibility: Duration) -> Result<Vec<Received>> {
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, MAX_RECEIVE) as i32)
            .visibility_timeout(visibility_secs(visibility))
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_attribute_names(ENCODING)
            .send()
            .await
            .map_err(|e| queue_error("ReceiveMessage", &e))?;
        output.messages().iter().map(received).collect()
    }

    async fn approximate_counts(&self, url: &str) -> Result<(u64, u64)> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| queue_error("GetQueueAttributes", &e))?;
        let count = |name: QueueAttributeName| {
            output.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        Ok((
            count(QueueAttributeName::ApproximateNumberOfMessages),
            count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_batch(&self, messages: Vec<NewMessage>) -> Result<()> {
        self.send_to(&self.queue_url, messages).await
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Received>> {
        self.receive_from(&self.queue_url, max, visibility).await
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(drop)
            .map_err(|e| queue_error("DeleteMessage", &e))
    }

    /// DeleteMessageBatch, ten receipts a call; entries SQS failed for a
    /// reason of its own are sent again, one it refused is an error.
    async fn delete_batch(&self, receipts: &[String]) -> Result<()> {
        for chunk in receipts.chunks(10) {
            let mut pending: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            let mut backoff = Backoff::default();
            while !pending.is_empty() {
                let output = self
                    .client
                    .delete_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|e| queue_error("DeleteMessageBatch", &e))?;
                let failed = output.failed();
                refuse_if_refused("a delete", failed)?;
                pending.retain(|entry| failed.iter().any(|f| f.id() == entry.id()));
                wait_to_resend("DeleteMessageBatch", pending.len(), &mut backoff).await?;
            }
        }
        Ok(())
    }

    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(visibility_secs(visibility))
            .send()
            .await
            .map(drop)
            .map_err(|e| queue_error("ChangeMessageVisibility", &e))
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let (visible, in_flight) = self.approximate_counts(&self.queue_url).await?;
        let (dead_visible, dead_in_flight) = self.approximate_counts(&self.dead_letter_url).await?;
        Ok(QueueDepth { visible, in_flight, dead: dead_visible + dead_in_flight })
    }

    async fn redrive(&self, max: Option<usize>) -> Result<u64> {
        let limit = max.unwrap_or(usize::MAX);
        let mut moved = 0usize;
        while moved < limit {
            // Hidden long enough to be sent on and deleted; if this process
            // dies in between, the dead letter reappears and may be sent twice,
            // which the stats jobs' (device, seq) dedupe absorbs.
            let dead =
                self.receive_from(&self.dead_letter_url, limit - moved, Duration::from_secs(60)).await?;
            if dead.is_empty() {
                break;
            }
            let messages =
                dead.iter().map(|d| NewMessage { group: d.group.clone(), body: d.body.clone() }).collect();
            self.send_to(&self.queue_url, messages).await?;
            for letter in &dead {
                self.client
                    .delete_message()
                    .queue_url(&self.dead_letter_url)
                    .receipt_handle(&letter.receipt)
                    .send()
                    .await
                    .map_err(|e| queue_error("DeleteMessage", &e))?;
            }
            moved += dead.len();
        }
        Ok(moved as u64)
    }
}

/// An entry of a batch call that SQS refused (the sender's fault: resending
/// would not help) fails the call.
fn refuse_if_refused(what: &str, failed: &[BatchResultErrorEntry]) -> Result<()> {
    match failed.iter().find(|f| f.sender_fault()) {
        Some(refused) => Err(permanent(format!(
            "SQS refused {what}: {} ({})",
            refused.message().unwrap_or_default(),
            refused.code()
        ))),
        None => Ok(()),
    }
}

/// Entries SQS failed for a reason of its own (throttling, an internal
/// error) are counted and sent again after a backoff.
async fn wait_to_resend(call: &'static str, pending: usize, backoff: &mut Backoff) -> Result<()> {
    if pending == 0 {
        return Ok(());
    }
    metrics::counter!("wenu_aws_partial_failures_total", "call" => call).increment(pending as u64);
    backoff.wait(call, Error::Queue { message: "entries kept failing".into(), retryable: true }).await
}

fn fifo_name(name: &str) -> String {
    if name.ends_with(".fifo") { name.to_owned() } else { format!("{name}.fifo") }
}

async fn url_of(client: &Client, name: &str) -> Result<String> {
    client
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| queue_error("GetQueueUrl", &e))?
        .queue_url()
        .map(str::to_owned)
        .ok_or_else(|| permanent(format!("no URL for queue {name}")))
}

async fn create_fifo(client: &Client, base: &str, redrive_policy: Option<String>) -> Result<String> {
    let mut request =
        client.create_queue().queue_name(fifo_name(base)).attributes(QueueAttributeName::FifoQueue, "true");
    if let Some(policy) = redrive_policy {
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    request
        .send()
        .await
        .map_err(|e| queue_error("CreateQueue", &e))?
        .queue_url()
        .map(str::to_owned)
        .ok_or_else(|| permanent(format!("no URL for queue {base}")))
}

/// Splits messages into batches within SQS's entry and size limits.
fn batches(messages: Vec<NewMessage>) -> Vec<Vec<NewMessage>> {
    let mut out: Vec<Vec<NewMessage>> = Vec::new();
    let mut bytes = 0;
    for message in messages {
        let size = encoded_len(&message.body) + message.group.len();
        let full = out.last().is_none_or(|b| b.len() == MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_BYTES);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        out.last_mut().expect("just pushed").push(message);
    }
    out
}

fn entry(index: usize, message: NewMessage) -> SendMessageBatchRequestEntry {
    let (body, base64) = match sqs_text(&message.body) {
        Some(text) => (text.to_owned(), false),
        None => (BASE64.encode(&message.body), true),
    };
    let mut entry = SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(body)
        .message_group_id(message.group)
        .message_deduplication_id(format!("{:032x}", rand::random::<u128>()));
    if base64 {
        let value = MessageAttributeValue::builder().data_type("String").string_value("base64").build();
        entry = entry.message_attributes(ENCODING, value.expect("data type is set"));
    }
    entry.build().expect("id and body are set")
}

/// The body as SQS text, if it is: UTF-8 with only the characters SQS allows.
fn sqs_text(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    (!text.is_empty() && text.chars().all(allowed)).then_some(text)
}

fn encoded_len(body: &[u8]) -> usize {
    if sqs_text(body).is_some() { body.len() } else { body.len().div_ceil(3) * 4 + 32 }
}

fn received(message: &aws_sdk_sqs::types::Message) -> Result<Received> {
    let attribute =
        |name: MessageSystemAttributeName| message.attributes().and_then(|a| a.get(&name)).cloned();
    let body = message.body().unwrap_or_default();
    let base64 = message.message_attributes().and_then(|a| a.get(ENCODING)).and_then(|v| v.string_value())
        == Some("base64");
    let body = if base64 {
        Bytes::from(BASE64.decode(body).map_err(|e| permanent(format!("message body is not base64: {e}")))?)
    } else {
        Bytes::copy_from_slice(body.as_bytes())
    };
    Ok(Received {
        id: message.message_id().unwrap_or_default().to_owned(),
        receipt: message.receipt_handle().unwrap_or_default().to_owned(),
        group: attribute(MessageSystemAttributeName::MessageGroupId).unwrap_or_default(),
        body,
        receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|c| c.parse().ok())
            .unwrap_or(1),
    })
}

/// SQS takes whole seconds, up to 12 hours.
fn visibility_secs(visibility: Duration) -> i32 {
    visibility.as_secs_f64().ceil().min(43_200.0) as i32
}

/// One field of a small JSON object such as a RedrivePolicy.
fn serde_json_field(json: &str, field: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value.get(field)?.as_str().map(str::to_owned)
}

fn permanent(message: impl Into<String>) -> Error {
    Error::Queue { message: message.into(), retryable: false }
}

fn queue_error<E, R>(call: &str, err: &aws_sdk_sqs::error::SdkError<E, R>) -> Error
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (message, retryable) = classify(err);
    Error::Queue { message: format!("SQS {call}: {message}"), retryable }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &[u8]) -> NewMessage {
        NewMessage { group: "g".into(), body: Bytes::copy_from_slice(body) }
    }

    #[test]
    fn batches_keep_within_ten_entries_and_256_kib() {
        let small: Vec<_> = (0..25).map(|_| message(b"job")).collect();
        assert_eq!(batches(small).iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        let big: Vec<_> = (0..3).map(|_| message(&vec![b'x'; 100 * 1024])).collect();
        assert_eq!(batches(big).iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        assert!(batches(Vec::new()).is_empty());
    }

    #[test]
    fn only_sqs_text_goes_as_is() {
        assert_eq!(sqs_text(br#"{"job":1}"#), Some(r#"{"job":1}"#));
        assert_eq!(sqs_text(b"\x00binary"), None, "NUL is not allowed");
        assert_eq!(sqs_text(&[0xff, 0xfe]), None, "not UTF-8");
        assert_eq!(sqs_text(b""), None, "SQS refuses an empty body");
    }

    #[test]
    fn visibility_rounds_up_to_seconds_within_12_hours() {
        assert_eq!(visibility_secs(Duration::ZERO), 0);
        assert_eq!(visibility_secs(Duration::from_millis(1500)), 2);
        assert_eq!(visibility_secs(Duration::from_secs(100_000)), 43_200);
    }
}

//! Webhooks: notifications POSTed as JSON to each of a company's
//! endpoints (Wenu's notification, or a Slack or Teams message: [`WebhookFormat`](crate::WebhookFormat)),
//! signed so the receiver can tell they come from Wenu.
//!
//! Headers: `X-Wenu-Delivery` (the notification id; the same on a resend),
//! `X-Wenu-Timestamp` (unix seconds) and `X-Wenu-Signature: sha256=<hex>`,
//! the HMAC-SHA256 under the webhook's secret of `"{timestamp}.{body}"` —
//! binding the time in lets receivers refuse old replays. A 2xx answer is a
//! delivery; 408, 429, 5xx and network errors are retried; any other answer
//! (a redirect included: they are not followed) is final and ends in a dead
//! letter. Where a webhook may connect is [`WebhookPolicy`]'s to say.

use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::channel::{Channel, ChannelDirectory, ChannelKind, ChannelNotifier, channel, routed};
use crate::egress::{WebhookPolicy, endpoint, refused_address};
use crate::notify::{Notifier, NotifyError};
use crate::store::Notification;

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct WebhookNotifier {
    client: reqwest::Client,
    policy: WebhookPolicy,
    directory: Arc<dyn ChannelDirectory>,
}

impl WebhookNotifier {
    /// Delivers to the webhook channels of `directory` as `policy` allows.
    pub fn new(directory: Arc<dyn ChannelDirectory>, policy: WebhookPolicy) -> Result<Self, String> {
        Ok(WebhookNotifier { client: policy.client()?, policy, directory })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn targets(&self, notification: &Notification) -> Result<Vec<String>, NotifyError> {
        let channels = routed(self.directory.as_ref(), ChannelKind::Webhook, notification).await?;
        Ok(channels.into_iter().map(|c| c.id).collect())
    }

    async fn send(&self, target: &str, notification: &Notification) -> Result<(), NotifyError> {
        let hook = channel(self.directory.as_ref(), &notification.transition.company, target).await?;
        self.deliver(&hook, notification).await
    }
}

#[async_trait]
impl ChannelNotifier for WebhookNotifier {
    fn channel_kind(&self) -> ChannelKind {
        ChannelKind::Webhook
    }

    async fn deliver(&self, hook: &Channel, notification: &Notification) -> Result<(), NotifyError> {
        let url = self.policy.check_url(&hook.url).map_err(NotifyError::permanent)?;
        let to = endpoint(&url);
        let body = serde_json::to_vec(&hook.format.body(notification)).expect("JSON serializes");
        let timestamp = notification_clock();
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("x-wenu-delivery", &notification.id)
            .header("x-wenu-timestamp", timestamp.to_string())
            .header("x-wenu-signature", signature(&hook.secret, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| {
                // Refused by policy: the same answer however often it is tried.
                let permanent = refused_address(&e);
                let error = format!("POST {to}: {}", without_url(e));
                if permanent { NotifyError::permanent(error) } else { NotifyError::retryable(error) }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(NotifyError::retryable(format!("POST {to}: {status}")))
        } else if status.is_redirection() {
            Err(NotifyError::permanent(format!("POST {to}: {status}; redirects are not followed")))
        } else {
            Err(NotifyError::permanent(format!("POST {to}: {status}")))
        }
    }
}

/// A request error and its causes, without the URL reqwest puts in it.
fn without_url(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn notification_clock() -> i64 {
    wenu_core::clock::now_ms().div_euclid(1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Checked against Python's hmac module:
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"key",b"1700000000.{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            super::signature("key", 1_700_000_000, b"{}"),
            "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}

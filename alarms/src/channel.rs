//! A company's notification channels for people and their systems, as the
//! registry keeps them: each is a URL — `https://…` (a signed webhook,
//! whose body may be a Slack or Teams message) or `mailto:…` (an e-mail) —
//! with a [`Route`] saying which alarms it hears.
//!
//! Both notifiers of such channels ([`crate::WebhookNotifier`],
//! [`crate::EmailNotifier`]) pick their targets here, through
//! [`routed`]: nothing while a [`Silence`] covers the alarm, otherwise the
//! channels of their kind whose route wants the notification.

use async_trait::async_trait;

use crate::chat::WebhookFormat;
use crate::notify::{Notifier, NotifyError};
use crate::route::Route;
use crate::silence::Silence;
use crate::store::Notification;

/// One channel of a company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: String,
    pub company: String,
    /// `https://…`, `http://…` or `mailto:…`.
    pub url: String,
    /// Signs webhook bodies; never logged.
    pub secret: String,
    /// What a webhook's body looks like (e-mails ignore it).
    pub format: WebhookFormat,
    pub route: Route,
}

/// What a channel's URL reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Webhook,
    Email,
}

impl ChannelKind {
    /// The kind of a channel URL, or why it is not one. E-mail channels are
    /// a bare `mailto:address`: no other recipients, headers or body.
    pub fn of_url(url: &str) -> Result<ChannelKind, String> {
        if url.len() > 2000 {
            return Err("a channel URL is at most 2000 characters".into());
        }
        if url.starts_with("https://") || url.starts_with("http://") {
            return Ok(ChannelKind::Webhook);
        }
        if let Some(address) = url.strip_prefix("mailto:") {
            if address.contains(['?', ',', '%']) {
                return Err(format!("{url:?}: one address, without headers or escapes"));
            }
            return match address.parse::<lettre::Address>() {
                Ok(_) => Ok(ChannelKind::Email),
                Err(err) => Err(format!("{address:?} is not an e-mail address: {err}")),
            };
        }
        Err(format!("channel URL {url:?} must be https://, http:// or mailto:"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Email => "email",
        }
    }
}

impl Channel {
    pub fn kind(&self) -> Option<ChannelKind> {
        ChannelKind::of_url(&self.url).ok()
    }
}

/// A notifier of companies' channels, which can also deliver to a channel
/// it is handed (a test message to a channel just created).
#[async_trait]
pub trait ChannelNotifier: Notifier {
    fn channel_kind(&self) -> ChannelKind;

    /// Sends `notification` to `channel` now, routing and silences aside.
    async fn deliver(&self, channel: &Channel, notification: &Notification) -> Result<(), NotifyError>;
}

/// Where channels and silences come from (the registry).
#[async_trait]
pub trait ChannelDirectory: Send + Sync + 'static {
    /// A company's channels, or every company's.
    async fn channels(&self, company: Option<&str>) -> Result<Vec<Channel>, String>;

    /// The silence that covers the notification's alarm at its time, if any.
    async fn silence(&self, notification: &Notification) -> Result<Option<Silence>, String>;
}

/// Channels and silences that never change: for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct FixedChannels {
    pub channels: Vec<Channel>,
    /// Taken to cover devices at no site.
    pub silences: Vec<Silence>,
}

impl FixedChannels {
    pub fn new(channels: Vec<Channel>) -> Self {
        FixedChannels { channels, silences: Vec::new() }
    }
}

#[async_trait]
impl ChannelDirectory for FixedChannels {
    async fn channels(&self, company: Option<&str>) -> Result<Vec<Channel>, String> {
        Ok(self
            .channels
            .iter()
            .filter(|c| company.is_none_or(|company| c.company == company))
            .cloned()
            .collect())
    }

    async fn silence(&self, notification: &Notification) -> Result<Option<Silence>, String> {
        Ok(self.silences.iter().find(|s| s.covers(&notification.transition, None)).cloned())
    }
}

/// The channels of `kind` that `notification` goes to: none while a
/// silence covers it (the transition is recorded all the same).
pub async fn routed(
    directory: &dyn ChannelDirectory,
    kind: ChannelKind,
    notification: &Notification,
) -> Result<Vec<Channel>, NotifyError> {
    if let Some(silence) = directory.silence(notification).await.map_err(NotifyError::retryable)? {
        tracing::info!(
            id = %notification.id, silence = %silence.id, channels = kind.as_str(),
            "notification silenced"
        );
        metrics::counter!("wenu_alarm_notifications_silenced_total", "channel" => kind.as_str()).increment(1);
        return Ok(Vec::new());
    }
    let company = &notification.transition.company;
    let channels = directory.channels(Some(company)).await.map_err(NotifyError::retryable)?;
    Ok(channels
        .into_iter()
        .filter(|c| &c.company == company && c.kind() == Some(kind) && c.route.wants(notification))
        .collect())
}

/// One of a company's channels by id, for a send.
pub async fn channel(
    directory: &dyn ChannelDirectory,
    company: &str,
    id: &str,
) -> Result<Channel, NotifyError> {
    let channels = directory.channels(Some(company)).await.map_err(NotifyError::retryable)?;
    channels
        .into_iter()
        .find(|c| c.id == id && c.company == company)
        .ok_or_else(|| NotifyError::permanent(format!("channel {id} was deleted")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_urls_are_webhooks_or_single_addresses() {
        assert_eq!(ChannelKind::of_url("https://hooks.example.com/x"), Ok(ChannelKind::Webhook));
        assert_eq!(ChannelKind::of_url("mailto:ops@example.com"), Ok(ChannelKind::Email));
        for bad in [
            "mailto:ops@example.com?bcc=all@example.com",
            "mailto:a@example.com,b@example.com",
            "mailto:ops@example.com%0D%0ABcc:x@example.com",
            "mailto:not an address",
            "mailto:ops@example.com\r\nBcc: x@example.com",
            "ftp://example.com",
            "javascript:alert(1)",
        ] {
            assert!(ChannelKind::of_url(bad).is_err(), "{bad} was taken");
        }
    }
}

//! Notifications: the notifier port, and the dispatcher that delivers the
//! outbox through every notifier once per transition.
//!
//! A notifier is one kind of channel (webhooks, the MQTT topic, the API's
//! live stream; SNS on AWS). For each notification it names its targets (a
//! company's webhooks, one topic) and sends to one target at a time; each
//! (notifier, target) is a *channel*. The dispatcher keeps, in the outbox
//! entry, each channel's progress: delivered, or attempts so far and when
//! to try again; after `max_attempts` a channel gives up on it and a dead
//! letter is written. Channels are independent — a webhook that is down
//! never delays the MQTT topic — and each delivers in transition order,
//! so a receiver never sees a clear before its raise.
//!
//! Delivery is at least once per channel, once in effect: progress is saved
//! right after each send, so only a crash between a send and that save
//! sends it again, with the same notification `id` for receivers to drop.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use wenu_core::table::ItemKey;

use crate::Result;
use crate::clock::Clock;
use crate::escalate::Escalator;
use crate::store::{AlarmStore, ChannelProgress, DeadLetter, Notification};

/// Longest the dispatcher goes without looking at the outbox.
const IDLE_LOOK: Duration = Duration::from_secs(5);

/// Each channel's progress on one notification.
type Channels = BTreeMap<String, ChannelProgress>;

/// Why a send failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NotifyError {
    pub message: String,
    pub retryable: bool,
}

impl NotifyError {
    pub fn retryable(message: impl Into<String>) -> Self {
        NotifyError { message: message.into(), retryable: true }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        NotifyError { message: message.into(), retryable: false }
    }
}

/// One kind of channel notifications go out on.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// `webhook`, `mqtt`, `live`, `sns`: the first part of its channels' names.
    fn kind(&self) -> &'static str;

    /// Where `notification` goes through this notifier (a company's
    /// webhooks; one topic). Asked once per notification.
    async fn targets(&self, notification: &Notification) -> Result<Vec<String>, NotifyError>;

    /// Sends `notification` to one target; `Ok` once the target accepted it.
    async fn send(&self, target: &str, notification: &Notification) -> Result<(), NotifyError>;
}

#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// Sends per channel before giving up and writing a dead letter.
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest a single send may take.
    pub send_timeout: Duration,
}

impl Default for DispatchOptions {
    fn default() -> Self {
        DispatchOptions {
            max_attempts: 10,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            send_timeout: Duration::from_secs(10),
        }
    }
}

impl DispatchOptions {
    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.first_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Delivers the outbox; wake it with [`Dispatcher::waker`] after recording
/// transitions.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: AlarmStore,
    notifiers: Vec<Arc<dyn Notifier>>,
    options: DispatchOptions,
    wake: Arc<Notify>,
    /// Channels with a delivery task running.
    busy: Mutex<HashSet<String>>,
    clock: Clock,
    escalator: Option<Escalator>,
}

impl Dispatcher {
    pub fn new(store: AlarmStore, notifiers: Vec<Arc<dyn Notifier>>, options: DispatchOptions) -> Self {
        let inner = Inner {
            store,
            notifiers,
            options,
            wake: Arc::new(Notify::new()),
            busy: Mutex::new(HashSet::new()),
            clock: Clock::start(),
            escalator: None,
        };
        Dispatcher { inner: Arc::new(inner) }
    }

    /// Also escalates unacknowledged alarms before each delivery pass.
    pub fn with_escalation(self, escalator: Escalator) -> Self {
        let mut inner = Arc::into_inner(self.inner).expect("set up before it is shared");
        inner.escalator = Some(escalator);
        Dispatcher { inner: Arc::new(inner) }
    }

    /// Notify it to look at the outbox now.
    pub fn waker(&self) -> Arc<Notify> {
        self.inner.wake.clone()
    }

    /// Delivers until `shutdown` turns true; what is left stays in the outbox.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let next = match self.pass().await {
                Ok(next) => next,
                Err(err) => {
                    tracing::warn!(error = %err, "alarm outbox unreadable; trying again");
                    Some(self.inner.clock.now_ms() + 1000)
                }
            };
            // Looks again every few seconds regardless: another process (the
            // CLI acknowledging an alarm) may have queued something.
            let wait = next.map_or(IDLE_LOOK, |at| {
                Duration::from_millis((at - self.inner.clock.now_ms()).max(0) as u64).min(IDLE_LOOK)
            });
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Starts a delivery task for every channel with something due; returns
    /// when the next retry is due, if one is waiting.
    pub async fn pass(&self) -> Result<Option<i64>> {
        self.pass_then(false).await
    }

    /// Delivers everything due now and returns once each channel has had
    /// its try: for a Lambda function, which is frozen when it returns.
    pub async fn deliver_due(&self) -> Result<Option<i64>> {
        self.pass_then(true).await
    }

    async fn pass_then(&self, wait: bool) -> Result<Option<i64>> {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        if let Some(escalator) = &inner.escalator
            && let Err(err) = escalator.sweep(now).await
        {
            tracing::warn!(error = %err, "escalations not checked; trying again");
        }
        let mut queues: BTreeMap<String, Vec<(ItemKey, Channels)>> = BTreeMap::new();
        let mut next_due: Option<i64> = None;
        for (key, entry, _) in inner.store.outbox().await? {
            let channels = match entry.channels {
                Some(channels) => channels,
                None => match self.resolve(&entry.notification).await {
                    Ok(channels) => channels,
                    Err(err) => {
                        tracing::warn!(error = %err, "notification channels unknown for now; trying again");
                        next_due = Some(next_due.map_or(now + 1000, |d| d.min(now + 1000)));
                        continue;
                    }
                },
            };
            if channels.is_empty() {
                inner.store.remove_outbox(&key).await?;
                continue;
            }
            for (channel, progress) in &channels {
                if !progress.is_done() {
                    queues.entry(channel.clone()).or_default().push((key.clone(), channels.clone()));
                }
            }
        }
        let mut deliveries = tokio::task::JoinSet::new();
        for (channel, items) in queues {
            let first_due =
                items.first().and_then(|(_, channels)| channels.get(&channel)).map_or(now, |p| p.next_at);
            if first_due > now {
                next_due = Some(next_due.map_or(first_due, |d| d.min(first_due)));
                continue;
            }
            if !inner.busy.lock().expect("busy set").insert(channel.clone()) {
                continue;
            }
            let this = self.clone();
            deliveries.spawn(async move {
                this.deliver_channel(&channel, items).await;
                this.inner.busy.lock().expect("busy set").remove(&channel);
                // Look again: more may have queued up, or a retry be due.
                this.inner.wake.notify_one();
            });
        }
        if wait {
            deliveries.join_all().await;
        } else {
            deliveries.detach_all();
        }
        Ok(next_due)
    }

    /// Every notifier's channels for a notification, none delivered yet.
    async fn resolve(&self, notification: &Notification) -> Result<Channels, NotifyError> {
        let mut channels = BTreeMap::new();
        for notifier in &self.inner.notifiers {
            for target in notifier.targets(notification).await? {
                channels.insert(format!("{}:{target}", notifier.kind()), ChannelProgress::default());
            }
        }
        Ok(channels)
    }

    /// Sends the channel's notifications in order until one fails.
    async fn deliver_channel(&self, channel: &str, items: Vec<(ItemKey, Channels)>) {
        let inner = &self.inner;
        let Some((kind, target)) = channel.split_once(':') else { return };
        let Some(notifier) = inner.notifiers.iter().find(|n| n.kind() == kind) else { return };
        let kind = notifier.kind();
        for (key, resolved) in items {
            let Ok(Some((entry, _))) = inner.store.outbox_entry(&key).await else { continue };
            let progress =
                entry.channels.as_ref().unwrap_or(&resolved).get(channel).cloned().unwrap_or_default();
            if progress.is_done() {
                continue;
            }
            let started = std::time::Instant::now();
            let sent =
                tokio::time::timeout(inner.options.send_timeout, notifier.send(target, &entry.notification))
                    .await
                    .unwrap_or_else(|_| Err(NotifyError::retryable("timed out")));
            metrics::histogram!("wenu_alarm_notify_seconds", "channel" => kind)
                .record(started.elapsed().as_secs_f64());
            let mut progress = progress;
            progress.attempts += 1;
            let outcome = match &sent {
                Ok(()) => {
                    progress.delivered = true;
                    "delivered"
                }
                Err(err) if !err.retryable || progress.attempts >= inner.options.max_attempts => {
                    progress.dead = true;
                    progress.last_error = Some(err.message.clone());
                    "dead"
                }
                Err(err) => {
                    progress.next_at =
                        inner.clock.now_ms() + inner.options.backoff(progress.attempts).as_millis() as i64;
                    progress.last_error = Some(err.message.clone());
                    "retry"
                }
            };
            metrics::counter!("wenu_alarm_notifications_total", "channel" => kind, "outcome" => outcome)
                .increment(1);
            if progress.dead {
                let letter = DeadLetter {
                    notification: entry.notification.clone(),
                    channel: channel.to_owned(),
                    attempts: progress.attempts,
                    error: progress.last_error.clone().unwrap_or_default(),
                };
                tracing::warn!(channel, id = %letter.notification.id, attempts = letter.attempts, error = %letter.error, "notification given up on; dead letter written");
                if let Err(err) = inner.store.dead_letter(&key, &letter, inner.clock.now_ms()).await {
                    tracing::error!(error = %err, "dead letter could not be written");
                }
            } else if let Err(err) = &sent {
                tracing::info!(channel, id = %entry.notification.id, attempts = progress.attempts, error = %err, "notification not accepted; will retry");
            }
            if let Err(err) = self.save_progress(&key, &resolved, channel, progress.clone()).await {
                tracing::warn!(channel, error = %err, "notification progress not saved; it may be sent again");
                return;
            }
            if !progress.is_done() {
                return; // keep the order: nothing later on this channel before this one
            }
        }
    }

    /// Records one channel's progress on an entry, removing the entry once
    /// every channel is done. Other channels write the same entry, so it is
    /// read, changed and written conditionally until no one interfered.
    async fn save_progress(
        &self,
        key: &ItemKey,
        resolved: &Channels,
        channel: &str,
        progress: ChannelProgress,
    ) -> Result<()> {
        let store = &self.inner.store;
        loop {
            let Some((mut entry, version)) = store.outbox_entry(key).await? else { return Ok(()) };
            let channels = entry.channels.get_or_insert_with(|| resolved.clone());
            channels.insert(channel.to_owned(), progress.clone());
            let result = if channels.values().all(ChannelProgress::is_done) {
                store.remove_outbox(key).await
            } else {
                store.update_outbox(key, &entry, version).await.map(drop)
            };
            match result {
                Err(crate::Error::Store(wenu_core::Error::ConditionFailed(_))) => continue,
                other => return other,
            }
        }
    }
}

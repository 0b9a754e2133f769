//! What each supervised consumer is doing, shared with `/health`, `wenu
//! status` and the metrics: running, or failing and why.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wenu_core::clock::now_ms;

/// Consecutive failed attempts after which a consumer counts as failing.
/// One or two failures are the ordinary life of a disk or a network; three
/// in a row (0.7 s of backoff at least) are worth an operator's look.
pub const FAILING_AFTER: u32 = 3;

/// The consumers of one process and how each is doing. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    consumers: Arc<Mutex<BTreeMap<String, ConsumerHealth>>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerState {
    #[default]
    Starting,
    Running,
    /// [`FAILING_AFTER`] or more attempts in a row failed; still retrying.
    Failing,
    /// Stopped at shutdown.
    Stopped,
}

/// One consumer's health.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsumerHealth {
    pub state: ConsumerState,
    /// Failed attempts in a row of the current batch (or of starting).
    pub failures: u32,
    /// Times the stage was built again after a panic or an error it could
    /// not retry, since the process started.
    pub restarts: u64,
    /// The last failure, as the stage described it.
    pub last_error: Option<String>,
    /// Since when (unix ms) the consumer has been failing.
    pub failing_since: Option<i64>,
    /// Records between its checkpoint and the newest record of the stream,
    /// measured on a timer; `None` until measured or where the stream cannot tell.
    pub lag: Option<u64>,
}

impl Health {
    /// Every consumer's health, by name.
    pub fn snapshot(&self) -> BTreeMap<String, ConsumerHealth> {
        self.lock().clone()
    }

    /// No consumer is failing.
    pub fn is_ok(&self) -> bool {
        self.lock().values().all(|c| c.state != ConsumerState::Failing)
    }

    /// The consumer has restored its checkpoint and reads: running, unless
    /// it is already failing.
    pub(crate) fn started(&self, consumer: &str) {
        self.update(consumer, |c| {
            if c.state != ConsumerState::Failing {
                c.state = ConsumerState::Running;
            }
        });
    }

    pub(crate) fn succeeded(&self, consumer: &str) {
        self.update(consumer, |c| {
            c.state = ConsumerState::Running;
            c.failures = 0;
            c.failing_since = None;
        });
    }

    pub(crate) fn failed(&self, consumer: &str, error: &str) {
        self.update(consumer, |c| {
            c.failures = c.failures.saturating_add(1);
            c.last_error = Some(error.to_owned());
            if c.failures >= FAILING_AFTER && c.state != ConsumerState::Failing {
                c.state = ConsumerState::Failing;
                c.failing_since = Some(now_ms());
                tracing::error!(
                    consumer,
                    failures = c.failures,
                    error,
                    "consumer is failing; still retrying"
                );
            }
        });
    }

    pub(crate) fn restarted(&self, consumer: &str) {
        self.update(consumer, |c| c.restarts += 1);
        metrics::counter!("wenu_consumer_stage_restarts_total", "consumer" => consumer.to_owned())
            .increment(1);
    }

    pub(crate) fn stopped(&self, consumer: &str) {
        self.update(consumer, |c| c.state = ConsumerState::Stopped);
    }

    pub(crate) fn set_lag(&self, consumer: &str, lag: u64) {
        self.update(consumer, |c| c.lag = Some(lag));
        metrics::gauge!("wenu_consumer_lag_records", "consumer" => consumer.to_owned()).set(lag as f64);
    }

    fn update(&self, consumer: &str, change: impl FnOnce(&mut ConsumerHealth)) {
        let mut consumers = self.lock();
        let entry = consumers.entry(consumer.to_owned()).or_default();
        change(entry);
        let failing = entry.state == ConsumerState::Failing;
        drop(consumers);
        metrics::gauge!("wenu_consumer_failing", "consumer" => consumer.to_owned()).set(if failing {
            1.0
        } else {
            0.0
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ConsumerHealth>> {
        // A panic while holding this lock leaves plain data behind; keep serving it.
        self.consumers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_is_failing_after_three_failures_in_a_row_and_running_after_a_success() {
        let health = Health::default();
        health.succeeded("lake");
        for _ in 1..FAILING_AFTER {
            health.failed("lake", "disk full");
        }
        assert!(health.is_ok(), "a couple of failures are ordinary");
        health.failed("lake", "disk full");
        let lake = &health.snapshot()["lake"];
        assert_eq!((lake.state, lake.failures), (ConsumerState::Failing, FAILING_AFTER));
        assert_eq!(lake.last_error.as_deref(), Some("disk full"));
        assert!(lake.failing_since.is_some());
        assert!(!health.is_ok());

        health.succeeded("lake");
        let lake = &health.snapshot()["lake"];
        assert_eq!((lake.state, lake.failures, lake.failing_since), (ConsumerState::Running, 0, None));
        assert_eq!(lake.last_error.as_deref(), Some("disk full"), "the last error stays visible");
        assert!(health.is_ok());
    }
}

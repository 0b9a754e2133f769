//! Escalation: a raised alarm nobody acknowledged within a channel's
//! `escalate_after_secs` is sent to that channel (see [`crate::route`]).
//!
//! The dispatcher sweeps before it delivers (at least every few seconds,
//! and on AWS on the alarms function's one-minute schedule): for each
//! company with escalating channels, its raised alarms whose delay has
//! passed. The alarm records each escalation in the transaction that queues
//! it, so a sweep repeated, or run by two processes, escalates once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::channel::ChannelDirectory;
use crate::lifecycle::Change;
use crate::store::{AlarmStore, Notification};
use crate::{Error, Result};

/// Sweeps closer together than this are skipped: the dispatcher passes on
/// every batch of transitions, and a storm must not turn into queries.
const MIN_SWEEP_GAP_MS: i64 = 1000;

pub struct Escalator {
    store: AlarmStore,
    directory: Arc<dyn ChannelDirectory>,
    last_sweep: Mutex<Option<i64>>,
}

impl Escalator {
    pub fn new(store: AlarmStore, directory: Arc<dyn ChannelDirectory>) -> Self {
        Escalator { store, directory, last_sweep: Mutex::new(None) }
    }

    /// Queues every escalation due at `now_ms` (unless the last sweep was
    /// less than a second ago); returns them.
    pub async fn sweep(&self, now_ms: i64) -> Result<Vec<Notification>> {
        {
            let mut last = self.last_sweep.lock().expect("sweep time");
            if last.is_some_and(|at| (at..at + MIN_SWEEP_GAP_MS).contains(&now_ms)) {
                return Ok(Vec::new());
            }
            *last = Some(now_ms);
        }
        let channels = self.directory.channels(None).await.map_err(Error::Registry)?;
        let mut delays: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for channel in channels {
            if let Some(after) = channel.route.escalate_after_secs {
                delays.entry(channel.company).or_default().insert(after);
            }
        }
        let mut queued = Vec::new();
        for (company, delays) in delays {
            for alarm in self.store.active(&company).await? {
                if alarm.status != Change::Raised {
                    continue;
                }
                for &after in &delays {
                    let due = alarm.raised_at.saturating_add(i64::from(after) * 1000) <= now_ms;
                    if due
                        && !alarm.escalated.contains(&after)
                        && let Some(notification) =
                            self.store.escalate(&company, &alarm.id, after, now_ms).await?
                    {
                        tracing::info!(alarm = %alarm.id, company, after_secs = after, "alarm escalated");
                        metrics::counter!("wenu_alarm_escalations_total").increment(1);
                        queued.push(notification);
                    }
                }
            }
        }
        Ok(queued)
    }
}

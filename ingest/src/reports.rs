//! What devices say about themselves, kept in the registry rather than the
//! log: their reports (firmware, boot, applied configuration), their
//! commands' results, and when each was last heard from.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use wenu_registry::{CommandResult, Registry, Report};

use crate::policy::{Destination, PublishRefusal};

/// How often the last-seen times are written: presence to within this, for
/// one registry write per interval however large the fleet.
pub const LAST_SEEN_FLUSH: Duration = Duration::from_secs(5);

/// Stores a report or a command result a device published.
pub(crate) async fn record(
    registry: &Registry,
    device_id: &str,
    destination: Destination,
    payload: &[u8],
) -> Result<(), PublishRefusal> {
    let unavailable = |err: wenu_registry::Error| {
        tracing::error!(error = %err, "registry write of a device report failed");
        PublishRefusal::RegistryUnavailable
    };
    match destination {
        Destination::Reported => {
            let report: Report =
                serde_json::from_slice(payload).map_err(|_| PublishRefusal::MalformedControl)?;
            registry.record_report(device_id, &report).await.map_err(unavailable)
        }
        Destination::Results => {
            let result: CommandResult =
                serde_json::from_slice(payload).map_err(|_| PublishRefusal::MalformedControl)?;
            match registry.record_command_result(device_id, &result).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(PublishRefusal::UnknownCommand),
                Err(wenu_registry::Error::Invalid(_)) => Err(PublishRefusal::MalformedControl),
                Err(err) => Err(unavailable(err)),
            }
        }
        Destination::Log => unreachable!("readings go to the log"),
    }
}

/// When each device last had a publish accepted, since the last flush.
#[derive(Default)]
pub(crate) struct LastSeen(Mutex<HashMap<String, i64>>);

impl LastSeen {
    pub fn note(&self, device_id: &str, at: i64) {
        let mut seen = self.0.lock().expect("last seen poisoned");
        match seen.get_mut(device_id) {
            Some(last) => *last = at,
            None => {
                seen.insert(device_id.to_owned(), at);
            }
        }
    }

    pub fn take(&self) -> Vec<(String, i64)> {
        std::mem::take(&mut *self.0.lock().expect("last seen poisoned")).into_iter().collect()
    }
}

/// Writes the last-seen times every [`LAST_SEEN_FLUSH`].
pub(crate) async fn flush_last_seen(registry: Registry, seen: std::sync::Arc<LastSeen>) {
    let mut every = tokio::time::interval(LAST_SEEN_FLUSH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let batch = seen.take();
        if batch.is_empty() {
            continue;
        }
        if let Err(err) = registry.record_last_seen(&batch).await {
            tracing::warn!(error = %err, devices = batch.len(), "could not record when devices were last seen");
        }
    }
}

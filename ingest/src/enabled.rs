//! Whether a connected device is still enabled, checked on every publish at
//! the cost of a map lookup.
//!
//! Flags are cached for the registry's current revision; the revision (one
//! small query) is looked at no more than once per [`REVISION_CHECK`], and
//! any change to the registry empties the cache. A device disabled while
//! connected is refused at its next publish.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wenu_registry::Registry;

/// How stale the cache may be: a disabled device gets at most this long of
/// further PUBACKs.
pub const REVISION_CHECK: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Cache {
    revision: Option<i64>,
    checked: Option<Instant>,
    enabled: HashMap<String, bool>,
}

pub(crate) struct EnabledDevices {
    registry: Registry,
    cache: Mutex<Cache>,
}

impl EnabledDevices {
    pub fn new(registry: Registry) -> Self {
        Self { registry, cache: Mutex::default() }
    }

    /// Unknown devices (deleted since they connected) count as disabled.
    pub async fn is_enabled(&self, device_id: &str) -> Result<bool, wenu_registry::Error> {
        let check_revision = {
            let mut cache = self.cache.lock().expect("enabled cache poisoned");
            let due = cache.checked.is_none_or(|at| at.elapsed() >= REVISION_CHECK);
            if due {
                // Claimed before the query, so concurrent publishes don't all ask.
                cache.checked = Some(Instant::now());
            }
            due
        };
        if check_revision {
            let revision = self.registry.revision().await?;
            let mut cache = self.cache.lock().expect("enabled cache poisoned");
            if cache.revision != Some(revision) {
                cache.enabled.clear();
                cache.revision = Some(revision);
            }
        }
        let revision = {
            let cache = self.cache.lock().expect("enabled cache poisoned");
            if let Some(&enabled) = cache.enabled.get(device_id) {
                return Ok(enabled);
            }
            cache.revision
        };
        let enabled = self.registry.device(device_id).await?.is_some_and(|d| d.enabled);
        let mut cache = self.cache.lock().expect("enabled cache poisoned");
        // A flag read across a revision change may be stale: not kept.
        if cache.revision == revision {
            cache.enabled.insert(device_id.to_owned(), enabled);
        }
        Ok(enabled)
    }
}

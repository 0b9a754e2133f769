//! What the registry says of a connected device on every publish (is it
//! still enabled, what is its quota) at the cost of a map lookup.
//!
//! Entries are cached for the registry's current revision; the revision (one
//! small query) is looked at no more than once per [`REVISION_CHECK`], and
//! any change to the registry empties the cache. A device disabled while
//! connected is refused at its next publish.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wenu_registry::{DeviceQuota, Registry};

/// How stale the cache may be: a disabled device gets at most this long of
/// further PUBACKs.
pub const REVISION_CHECK: Duration = Duration::from_secs(1);

/// What a publish needs to know of its device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CachedDevice {
    pub enabled: bool,
    pub quota: DeviceQuota,
}

#[derive(Default)]
struct Cache {
    revision: Option<i64>,
    checked: Option<Instant>,
    devices: HashMap<String, CachedDevice>,
}

pub(crate) struct DeviceCache {
    registry: Registry,
    cache: Mutex<Cache>,
}

impl DeviceCache {
    pub fn new(registry: Registry) -> Self {
        Self { registry, cache: Mutex::default() }
    }

    /// Unknown devices (deleted since they connected) count as disabled.
    pub async fn get(&self, device_id: &str) -> Result<CachedDevice, wenu_registry::Error> {
        let check_revision = {
            let mut cache = self.cache.lock().expect("device cache poisoned");
            let due = cache.checked.is_none_or(|at| at.elapsed() >= REVISION_CHECK);
            if due {
                // Claimed before the query, so concurrent publishes don't all ask.
                cache.checked = Some(Instant::now());
            }
            due
        };
        if check_revision {
            let revision = self.registry.revision().await?;
            let mut cache = self.cache.lock().expect("device cache poisoned");
            if cache.revision != Some(revision) {
                cache.devices.clear();
                cache.revision = Some(revision);
            }
        }
        let revision = {
            let cache = self.cache.lock().expect("device cache poisoned");
            if let Some(&device) = cache.devices.get(device_id) {
                return Ok(device);
            }
            cache.revision
        };
        let device = match self.registry.device(device_id).await? {
            Some(d) => CachedDevice { enabled: d.enabled, quota: d.quota },
            None => CachedDevice::default(),
        };
        let mut cache = self.cache.lock().expect("device cache poisoned");
        // An entry read across a revision change may be stale: not kept.
        if cache.revision == revision {
            cache.devices.insert(device_id.to_owned(), device);
        }
        Ok(device)
    }
}

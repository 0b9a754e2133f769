//! The devices the decoder knows: a read-only snapshot of the registry.

use std::collections::HashMap;

use wenu_core::keyring::Keyring;

/// What the decoder needs to know about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub company: String,
    /// When the device was provisioned, unix ms. Nothing it measured can be
    /// older than this (give or take clock skew).
    pub created_at: i64,
    pub enabled: bool,
    /// The site it is placed at, if any: a column of the lake.
    pub site: Option<String>,
    /// Records arriving from this time on (unix ms) start a fresh sequence
    /// window: the registry's answer to a device whose counter went back.
    pub seq_reset_at: Option<i64>,
}

/// Device id → entry.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    devices: HashMap<String, DeviceEntry>,
}

impl Directory {
    pub fn new(devices: impl IntoIterator<Item = (String, DeviceEntry)>) -> Self {
        Directory { devices: devices.into_iter().collect() }
    }

    pub fn get(&self, device_id: &str) -> Option<&DeviceEntry> {
        self.devices.get(device_id)
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &DeviceEntry)> {
        self.devices.iter().map(|(id, entry)| (id.as_str(), entry))
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

/// Where a stage gets its keyring and directory from, and learns that they
/// changed (a device provisioned, a key rotated or retired).
#[async_trait::async_trait]
pub trait KeySource: Send + Sync + 'static {
    /// New snapshots when something changed since the last call (always on
    /// the first call), `None` when nothing did.
    async fn refresh(&mut self) -> Result<Option<(Keyring, Directory)>, String>;
}

/// Snapshots that never change: for tests, benchmarks and replays.
pub struct FixedKeys(Option<(Keyring, Directory)>);

impl FixedKeys {
    pub fn new(keyring: Keyring, directory: Directory) -> Self {
        FixedKeys(Some((keyring, directory)))
    }
}

#[async_trait::async_trait]
impl KeySource for FixedKeys {
    async fn refresh(&mut self) -> Result<Option<(Keyring, Directory)>, String> {
        Ok(self.0.take())
    }
}

//! The devices the decoder knows: a read-only snapshot of the registry.

use std::collections::HashMap;

/// What the decoder needs to know about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub company: String,
    /// When the device was provisioned, unix ms. Nothing it measured can be
    /// older than this (give or take clock skew).
    pub created_at: i64,
    pub enabled: bool,
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

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

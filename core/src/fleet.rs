//! The fleet file: what a device holds after provisioning (its id, its MQTT
//! password and its current key), for the whole fleet at once. The simulator
//! reads it; it is written owner-only because it holds secrets.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::keyring::{SecretKey, write_private_file};
use crate::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetDevice {
    pub device_id: String,
    pub company: String,
    pub password: Secret,
    pub key_id: u32,
    pub key: SecretKey,
}

/// A password whose `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fleet {
    pub devices: Vec<FleetDevice>,
}

impl Fleet {
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::FileFormat { path: path.to_owned(), message: e.to_string() })
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        write_private_file(path, &serde_json::to_vec_pretty(self).expect("fleet serializes"))
    }

    /// Replaces the entry of a device (after a key rotation), or adds it.
    pub fn upsert(&mut self, device: FleetDevice) {
        match self.devices.iter_mut().find(|d| d.device_id == device.device_id) {
            Some(existing) => *existing = device,
            None => self.devices.push(device),
        }
    }
}

//! The keyring file and the registry as a [`KeySource`] for the stages that
//! decrypt: reloaded when either file changes, so provisioning, rotating or
//! disabling a device takes effect without a restart.

use std::path::PathBuf;
use std::time::SystemTime;

use wenu_core::keyring::Keyring;
use wenu_decrypt::{DeviceEntry, Directory, KeySource};
use wenu_registry::Registry;

pub struct RegistryKeys {
    keyring: PathBuf,
    registry: Registry,
    /// Files whose modification time says something changed.
    watched: Vec<PathBuf>,
    seen: Option<Vec<Option<SystemTime>>>,
}

impl RegistryKeys {
    pub fn new(keyring: PathBuf, registry_path: PathBuf, registry: Registry) -> Self {
        // SQLite in WAL mode writes to the `-wal` file first.
        let wal = PathBuf::from(format!("{}-wal", registry_path.display()));
        RegistryKeys { watched: vec![keyring.clone(), registry_path, wal], keyring, registry, seen: None }
    }
}

impl KeySource for RegistryKeys {
    fn refresh(&mut self) -> Result<Option<(Keyring, Directory)>, String> {
        let stamps: Vec<_> =
            self.watched.iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect();
        if self.seen.as_ref() == Some(&stamps) {
            return Ok(None);
        }
        let keyring = Keyring::load_or_default(&self.keyring).map_err(|e| e.to_string())?;
        let devices = self.registry.list_devices(None).map_err(|e| e.to_string())?;
        let directory = Directory::new(devices.into_iter().map(|d| {
            (d.id, DeviceEntry { company: d.company, created_at: d.created_at, enabled: d.enabled })
        }));
        tracing::debug!(devices = directory.len(), "keys and devices reloaded");
        self.seen = Some(stamps);
        Ok(Some((keyring, directory)))
    }
}

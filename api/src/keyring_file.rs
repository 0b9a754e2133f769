//! Device keys in the keyring file of the data directory: the
//! [`DeviceKeys`] port on one machine.

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::sync::Mutex;
use wenu_core::fleet::FleetDevice;
use wenu_core::keyring::Keyring;
use wenu_registry::{Registry, provision_fleet, rotate_key};

use crate::state::DeviceKeys;

/// Device keys in the keyring file, changed by one request at a time (the
/// stages reload it when its modification time changes).
pub struct KeyringFile {
    path: PathBuf,
    lock: Mutex<()>,
}

impl KeyringFile {
    pub fn new(path: PathBuf) -> Self {
        KeyringFile { path, lock: Mutex::new(()) }
    }
}

#[async_trait]
impl DeviceKeys for KeyringFile {
    async fn provision(
        &self,
        registry: &Registry,
        company: &str,
        count: usize,
    ) -> Result<Vec<FleetDevice>, String> {
        let _one_at_a_time = self.lock.lock().await;
        let mut keyring = Keyring::load_or_default(&self.path).map_err(|e| e.to_string())?;
        let devices =
            provision_fleet(registry, &mut keyring, company, count).await.map_err(|e| e.to_string())?;
        keyring.save(&self.path).map_err(|e| e.to_string())?;
        Ok(devices)
    }

    async fn rotate(&self, registry: &Registry, device: &str) -> Result<(u32, String), String> {
        let _one_at_a_time = self.lock.lock().await;
        let mut keyring = Keyring::load_or_default(&self.path).map_err(|e| e.to_string())?;
        let key_id = rotate_key(registry, &mut keyring, device).await.map_err(|e| e.to_string())?;
        keyring.save(&self.path).map_err(|e| e.to_string())?;
        let key = keyring.decryption_key(device, key_id).map_err(|e| e.to_string())?.to_base64();
        Ok((key_id, key))
    }
}

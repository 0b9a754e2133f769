//! The [`DeviceKeys`] port over any keyring store: the keyring file of the
//! data directory on one machine, Secrets Manager on AWS.

use async_trait::async_trait;
use tokio::sync::Mutex;
use wenu_core::fleet::FleetDevice;
use wenu_core::keyring::KeyringStore;
use wenu_registry::{Registry, Rotation, provision_into, rotate_key};

use crate::state::DeviceKeys;

/// Device keys in a keyring store, changed by one request at a time (the
/// stores have no compare-and-swap; the stages notice the change at their
/// next refresh).
pub struct StoredKeys {
    store: Mutex<Box<dyn KeyringStore>>,
}

impl StoredKeys {
    pub fn new(store: Box<dyn KeyringStore>) -> Self {
        StoredKeys { store: Mutex::new(store) }
    }
}

#[async_trait]
impl DeviceKeys for StoredKeys {
    async fn provision(
        &self,
        registry: &Registry,
        company: &str,
        count: usize,
    ) -> Result<Vec<FleetDevice>, String> {
        let mut store = self.store.lock().await;
        provision_into(registry, store.as_mut(), company, count).await.map_err(|e| e.to_string())
    }

    async fn rotate(
        &self,
        registry: &Registry,
        device: &str,
        retire_after_ms: Option<i64>,
    ) -> Result<Rotation, String> {
        let mut store = self.store.lock().await;
        rotate_key(registry, store.as_mut(), device, retire_after_ms).await.map_err(|e| e.to_string())
    }
}

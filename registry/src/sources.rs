//! The registry (and the keyring) as the snapshot sources of the stages
//! (keys, devices, sensors, alarm rules, channels and silences): reloaded when the
//! registry's revision or the keyring changes, so provisioning a device,
//! rotating a key or defining a sensor takes effect without a restart. The
//! same sources serve the embedded pipeline (SQLite registry, keyring file)
//! and the Lambdas (RDS PostgreSQL, Secrets Manager).

use std::time::Duration;

use crate::Registry;
use crate::store::now_ms;
use async_trait::async_trait;
use wenu_alarms::{Channel, ChannelDirectory, Notification, Rule, RuleSource, Silence};
use wenu_core::keyring::{Keyring, KeyringStore};
use wenu_decrypt::{DeviceEntry, Directory, KeySource};
use wenu_enrich::{Catalog, CatalogSource, DevicePlacement};

/// Keys and devices for the stages that decrypt.
pub struct RegistryKeys {
    keyring: Box<dyn KeyringStore>,
    registry: Registry,
    /// The keyring and the registry revision last handed out.
    keys: Keyring,
    revision: Option<i64>,
}

impl RegistryKeys {
    pub fn new(keyring: Box<dyn KeyringStore>, registry: Registry) -> Self {
        RegistryKeys { keyring, registry, keys: Keyring::default(), revision: None }
    }
}

#[async_trait]
impl KeySource for RegistryKeys {
    async fn refresh(&mut self) -> Result<Option<(Keyring, Directory)>, String> {
        let revision = self.registry.revision().await.map_err(|e| e.to_string())?;
        let keyring = self.keyring.changed().await.map_err(|e| e.to_string())?;
        if keyring.is_none() && self.revision == Some(revision) {
            return Ok(None);
        }
        if let Some(keyring) = keyring {
            self.keys = keyring;
        }
        // The registry decides when a key retires (by hand, on the device's
        // confirmation, after a grace period); the keyring holds the keys.
        let mut keys = self.keys.clone();
        for retirement in self.registry.key_retirements().await.map_err(|e| e.to_string())? {
            // A key the keyring does not hold decrypts nothing anyway.
            let _ = keys.retire(&retirement.device_id, retirement.key_id, retirement.at);
        }
        let devices = self.registry.list_devices(None).await.map_err(|e| e.to_string())?;
        let directory = Directory::new(devices.into_iter().map(|d| {
            (
                d.id,
                DeviceEntry {
                    company: d.company,
                    created_at: d.created_at,
                    enabled: d.enabled,
                    site: d.site,
                    seq_reset_at: d.seq_reset_at,
                },
            )
        }));
        tracing::debug!(devices = directory.len(), revision, "keys and devices reloaded");
        self.revision = Some(revision);
        Ok(Some((keys, directory)))
    }
}

/// Sites, sensors and settings for enrich.
pub struct RegistryCatalog {
    registry: Registry,
    seen: Option<i64>,
}

impl RegistryCatalog {
    pub fn new(registry: Registry) -> Self {
        RegistryCatalog { registry, seen: None }
    }
}

#[async_trait]
impl CatalogSource for RegistryCatalog {
    async fn refresh(&mut self) -> Result<Option<Catalog>, String> {
        let revision = self.registry.revision().await.map_err(|e| e.to_string())?;
        if self.seen == Some(revision) {
            return Ok(None);
        }
        let snapshot = self.registry.snapshot().await.map_err(|e| e.to_string())?;
        let devices = snapshot.devices.into_iter().map(|d| DevicePlacement {
            device: d.id,
            company: d.company,
            site: d.site,
        });
        self.seen = Some(snapshot.revision);
        Ok(Some(Catalog::new(
            snapshot.revision,
            devices,
            snapshot.sites,
            snapshot.sensors,
            snapshot.settings,
        )))
    }
}

/// Alarm rules for the alarms stage.
pub struct RegistryRules {
    registry: Registry,
    seen: Option<i64>,
}

impl RegistryRules {
    pub fn new(registry: Registry) -> Self {
        RegistryRules { registry, seen: None }
    }
}

#[async_trait]
impl RuleSource for RegistryRules {
    async fn refresh(&mut self) -> Result<Option<Vec<Rule>>, String> {
        let revision = self.registry.revision().await.map_err(|e| e.to_string())?;
        if self.seen == Some(revision) {
            return Ok(None);
        }
        let rules = self.registry.rules(None).await.map_err(|e| e.to_string())?;
        self.seen = Some(revision);
        Ok(Some(rules))
    }
}

/// Companies' channels and silences for the notifiers, reloaded when the
/// registry changes (looked at no more than once a second: a notification
/// must not wait on registry queries).
pub struct RegistryChannels {
    registry: Registry,
    cache: tokio::sync::Mutex<Option<ChannelCache>>,
}

struct ChannelCache {
    checked: std::time::Instant,
    revision: i64,
    channels: Vec<Channel>,
    /// Those not over when loaded; whether one is in force is asked per notification.
    silences: Vec<Silence>,
}

impl RegistryChannels {
    pub fn new(registry: Registry) -> Self {
        RegistryChannels { registry, cache: tokio::sync::Mutex::new(None) }
    }

    /// Runs `read` on a fresh enough copy.
    async fn with_cache<T>(&self, read: impl FnOnce(&ChannelCache) -> T) -> Result<T, String> {
        let mut cache = self.cache.lock().await;
        let fresh = cache.as_ref().is_some_and(|c| c.checked.elapsed() < Duration::from_secs(1));
        if !fresh {
            let revision = self.registry.revision().await.map_err(|e| e.to_string())?;
            let reloaded = match cache.take() {
                Some(c) if c.revision == revision => ChannelCache { checked: std::time::Instant::now(), ..c },
                _ => ChannelCache {
                    checked: std::time::Instant::now(),
                    revision,
                    channels: self
                        .registry
                        .channels(None)
                        .await
                        .map_err(|e| e.to_string())?
                        .into_iter()
                        .map(crate::Channel::target)
                        .collect(),
                    silences: self.registry.silences(None, now_ms()).await.map_err(|e| e.to_string())?,
                },
            };
            *cache = Some(reloaded);
        }
        Ok(read(cache.as_ref().expect("filled above")))
    }
}

#[async_trait]
impl ChannelDirectory for RegistryChannels {
    async fn channels(&self, company: Option<&str>) -> Result<Vec<Channel>, String> {
        self.with_cache(|c| {
            c.channels
                .iter()
                .filter(|ch| company.is_none_or(|company| ch.company == company))
                .cloned()
                .collect()
        })
        .await
    }

    async fn silence(&self, notification: &Notification) -> Result<Option<Silence>, String> {
        let transition = &notification.transition;
        // Everything but the site first (each taken at its own site)…
        let candidates: Vec<Silence> = self
            .with_cache(|c| {
                c.silences.iter().filter(|s| s.covers(transition, s.site.as_deref())).cloned().collect()
            })
            .await?;
        // …then the device's site, looked up only when a candidate names one.
        let site = if candidates.iter().any(|s| s.site.is_some()) {
            let device = self.registry.device(&transition.device).await.map_err(|e| e.to_string())?;
            device.and_then(|d| d.site)
        } else {
            None
        };
        Ok(candidates.into_iter().find(|s| s.covers(transition, site.as_deref())))
    }
}

#[cfg(test)]
mod tests {
    use wenu_core::catalog::SensorSpec;
    use wenu_local::KeyringFile;

    use crate::provision_fleet;

    use super::*;

    #[tokio::test]
    async fn snapshots_reload_only_after_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("registry.db")).await.unwrap();
        let keyring_path = dir.path().join("keyring.json");
        let mut keyring = Keyring::default();
        let fleet = provision_fleet(&registry, &mut keyring, "acme", 1).await.unwrap();
        keyring.save(&keyring_path).unwrap();
        let device = &fleet[0].device_id;

        let mut catalogs = RegistryCatalog::new(registry.clone());
        let mut keys = RegistryKeys::new(Box::new(KeyringFile::new(keyring_path)), registry.clone());
        assert!(catalogs.refresh().await.unwrap().unwrap().sensor(device, "temp-1").is_none());
        assert!(keys.refresh().await.unwrap().is_some());
        assert!(catalogs.refresh().await.unwrap().is_none(), "nothing changed");
        assert!(keys.refresh().await.unwrap().is_none(), "nothing changed");

        // Another process (`wenu sensors set`) defines a sensor.
        let other = Registry::open(&dir.path().join("registry.db")).await.unwrap();
        other.upsert_sensor(&SensorSpec::new(device, "temp-1", "temperature", "degF")).await.unwrap();
        let catalog = catalogs.refresh().await.unwrap().expect("reloaded");
        assert_eq!(catalog.sensor(device, "temp-1").unwrap().unit, "degF");
        other.set_enabled(device, false).await.unwrap();
        let (_, directory) = keys.refresh().await.unwrap().expect("reloaded");
        assert!(!directory.get(device).unwrap().enabled);
    }
}

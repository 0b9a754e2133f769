//! Per-device AES-256 keys, addressed by key id.
//!
//! Rotation adds a key id; older ids keep decrypting until they are retired.
//! On one machine the keyring is a JSON file that only its owner may read (the
//! loader refuses anything else; `wenu_local::KeyringFile`); on AWS it lives
//! in Secrets Manager (`wenu_aws::SecretsKeyring`). Both are a [`KeyringStore`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A 256-bit key. Its `Debug` never shows the bytes, so it can't leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn generate() -> Self {
        Self(rand::random())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    pub fn from_base64(text: &str) -> Option<Self> {
        BASE64.decode(text).ok()?.try_into().ok().map(Self)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Serialize for SecretKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for SecretKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SecretKey::from_base64(&text).ok_or_else(|| serde::de::Error::custom("a key is 32 bytes of base64"))
    }
}

/// One key of a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceKey {
    pub id: u32,
    pub key: SecretKey,
    /// From this arrival time on (unix ms) the key no longer decrypts; what
    /// arrived before still does, so retiring a key does not condemn the
    /// messages still on their way through the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
}

/// All devices' keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Keyring {
    devices: BTreeMap<String, Vec<DeviceKey>>,
}

impl Keyring {
    /// Loads a keyring file, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self> {
        let io_err = |source| Error::Io { path: path.to_owned(), source };
        let mode = std::fs::metadata(path).map_err(io_err)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(Error::KeyringPermissions { path: path.to_owned(), mode: mode & 0o777 });
        }
        let bytes = std::fs::read(path).map_err(io_err)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::FileFormat { path: path.to_owned(), message: e.to_string() })
    }

    /// Loads the keyring, or starts an empty one when the file doesn't exist yet.
    pub fn load_or_default(path: &Path) -> Result<Self> {
        if path.exists() { Self::load(path) } else { Ok(Self::default()) }
    }

    /// Writes the keyring atomically, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_private_file(path, &serde_json::to_vec_pretty(self).expect("keyring serializes"))
    }

    /// Adds a fresh key to `device_id` and returns its id: the rotation step.
    /// The first key of a device has id 1.
    pub fn add_key(&mut self, device_id: &str) -> (u32, SecretKey) {
        let keys = self.devices.entry(device_id.to_owned()).or_default();
        let id = keys.iter().map(|k| k.id).max().unwrap_or(0) + 1;
        let key = SecretKey::generate();
        keys.push(DeviceKey { id, key: key.clone(), retired_at: None });
        (id, key)
    }

    /// Puts a known key under `device_id` (replacing one with the same id):
    /// a device's own keyring, or a key received over the downlink.
    pub fn import_key(&mut self, device_id: &str, key_id: u32, key: SecretKey) {
        let keys = self.devices.entry(device_id.to_owned()).or_default();
        keys.retain(|k| k.id != key_id);
        keys.push(DeviceKey { id: key_id, key, retired_at: None });
    }

    /// Adds a fresh key to `device_id` and returns it with the key the device
    /// held until now (none for its first), which a new key is sealed under
    /// to reach the device over the downlink.
    pub fn rotate(&mut self, device_id: &str) -> AddedKey {
        let previous = self.current_key(device_id).map(|k| (k.id, k.key.clone()));
        let (id, key) = self.add_key(device_id);
        AddedKey { id, key, previous }
    }

    /// Stops a key from decrypting what arrives from `at` (unix ms) on; a
    /// key already retiring sooner keeps its time.
    pub fn retire(&mut self, device_id: &str, key_id: u32, at: i64) -> Result<()> {
        let key = self
            .devices
            .get_mut(device_id)
            .and_then(|keys| keys.iter_mut().find(|k| k.id == key_id))
            .ok_or_else(|| Error::UnknownKey { device_id: device_id.to_owned(), key_id })?;
        key.retired_at = Some(key.retired_at.map_or(at, |earlier| earlier.min(at)));
        Ok(())
    }

    /// The key to decrypt an envelope that names `key_id`, arriving now.
    pub fn decryption_key(&self, device_id: &str, key_id: u32) -> Result<&SecretKey> {
        self.decryption_key_at(device_id, key_id, i64::MAX)
    }

    /// The key to decrypt an envelope that names `key_id` and arrived at
    /// `received_at` (unix ms).
    pub fn decryption_key_at(&self, device_id: &str, key_id: u32, received_at: i64) -> Result<&SecretKey> {
        let keys = self.devices.get(device_id).ok_or_else(|| Error::UnknownDevice(device_id.to_owned()))?;
        let key = keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| Error::UnknownKey { device_id: device_id.to_owned(), key_id })?;
        if key.retired_at.is_some_and(|at| at <= received_at) {
            return Err(Error::RetiredKey { device_id: device_id.to_owned(), key_id });
        }
        Ok(&key.key)
    }

    /// The newest live key of a device: the one it should encrypt with.
    pub fn current_key(&self, device_id: &str) -> Option<&DeviceKey> {
        self.devices.get(device_id)?.iter().filter(|k| k.retired_at.is_none()).max_by_key(|k| k.id)
    }

    /// Takes every device of `other`; a device in both gets `other`'s keys.
    pub fn merge(&mut self, other: Keyring) {
        self.devices.extend(other.devices);
    }

    /// One keyring per device, to spread devices over several stores.
    pub fn into_devices(self) -> impl Iterator<Item = (String, Keyring)> {
        self.devices.into_iter().map(|(id, keys)| (id.clone(), Keyring { devices: [(id, keys)].into() }))
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    pub fn key_ids(&self, device_id: &str) -> Vec<u32> {
        self.devices.get(device_id).map(|keys| keys.iter().map(|k| k.id).collect()).unwrap_or_default()
    }
}

/// A key just added to a device.
#[derive(Debug, Clone)]
pub struct AddedKey {
    pub id: u32,
    pub key: SecretKey,
    /// The device's current key before this one: id and key.
    pub previous: Option<(u32, SecretKey)>,
}

/// The keyring port: where the stages get their keys and learn that they
/// changed, and where provisioning puts new ones.
#[async_trait::async_trait]
pub trait KeyringStore: Send + Sync + 'static {
    /// The whole keyring if it changed since the last call (always on the
    /// first), `None` if it did not.
    async fn changed(&mut self) -> Result<Option<Keyring>>;

    /// Adds a fresh key to `device_id` (its first, or a rotation), stores
    /// it, and returns it with the key it follows, read in the same write.
    async fn add_key(&mut self, device_id: &str) -> Result<AddedKey>;

    /// Stores every device of `keys` with its keys, replacing what the store
    /// held for those devices: a whole fleet provisioned at once, in as few
    /// writes as the store allows.
    async fn import(&mut self, keys: Keyring) -> Result<()>;
}

/// Writes `bytes` to `path` through a temporary file created with mode 0600,
/// then renames it into place, so readers never see a half-written secret and
/// the secret is never world-readable, not even for a moment.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_err = |source| Error::Io { path: path.to_owned(), source };
    // Unique per writer, so two writers never write into one file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{unique}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io_err)?;
    // The rename is durable once the directory is.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::Io { path: dir.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_old_keys_until_retired() {
        let mut ring = Keyring::default();
        let (first, _) = ring.add_key("dev-1");
        let (second, _) = ring.add_key("dev-1");
        assert_eq!((first, second), (1, 2));
        assert_eq!(ring.current_key("dev-1").unwrap().id, 2);
        assert!(ring.decryption_key("dev-1", 1).is_ok());
        ring.retire("dev-1", 1, 5_000).unwrap();
        assert!(matches!(ring.decryption_key("dev-1", 1), Err(Error::RetiredKey { .. })));
        assert!(matches!(ring.decryption_key_at("dev-1", 1, 5_000), Err(Error::RetiredKey { .. })));
        assert!(ring.decryption_key_at("dev-1", 1, 4_999).is_ok(), "what arrived before still opens");
        assert!(matches!(ring.decryption_key("dev-1", 3), Err(Error::UnknownKey { .. })));
        assert!(matches!(ring.decryption_key("dev-2", 1), Err(Error::UnknownDevice(_))));
    }

    #[test]
    fn file_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let mut ring = Keyring::default();
        let (id, key) = ring.add_key("dev-1");
        ring.save(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let loaded = Keyring::load(&path).unwrap();
        assert_eq!(loaded.decryption_key("dev-1", id).unwrap(), &key);
    }

    #[test]
    fn readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        Keyring::default().save(&path).unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = Keyring::load(&path).unwrap_err();
            assert!(matches!(err, Error::KeyringPermissions { .. }), "{err}");
            assert!(err.to_string().contains("chmod 600"));
        }
    }

    #[test]
    fn debug_output_hides_key_material() {
        let mut ring = Keyring::default();
        let (_, key) = ring.add_key("dev-1");
        let shown = format!("{ring:?}");
        assert!(!shown.contains(&key.to_base64()));
        assert!(shown.contains("redacted"));
    }
}

//! The keyring port on one machine: the keyring file of the data
//! directory, reloaded when it changes on disk and changed under a file lock.

use std::os::unix::fs::OpenOptionsExt;

use wenu_core::keyring::{AddedKey, Keyring, KeyringStore};
use wenu_core::{Error, Result};

/// The keyring file of one machine, reloaded when it changes on disk.
pub struct KeyringFile {
    path: std::path::PathBuf,
    /// Modification time and length last loaded.
    seen: Option<(Option<std::time::SystemTime>, u64)>,
}

impl KeyringFile {
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        KeyringFile { path: path.into(), seen: None }
    }

    fn stamp(&self) -> (Option<std::time::SystemTime>, u64) {
        match std::fs::metadata(&self.path) {
            Ok(meta) => (meta.modified().ok(), meta.len()),
            Err(_) => (None, 0),
        }
    }
}

#[async_trait::async_trait]
impl KeyringStore for KeyringFile {
    async fn changed(&mut self) -> Result<Option<Keyring>> {
        let stamp = self.stamp();
        if self.seen == Some(stamp) {
            return Ok(None);
        }
        let keyring = Keyring::load_or_default(&self.path)?;
        self.seen = Some(stamp);
        Ok(Some(keyring))
    }

    async fn add_key(&mut self, device_id: &str) -> Result<AddedKey> {
        let mut locked = self.lock()?;
        let added = locked.keyring.rotate(device_id);
        locked.save()?;
        Ok(added)
    }

    async fn import(&mut self, keys: Keyring) -> Result<()> {
        let mut locked = self.lock()?;
        locked.keyring.merge(keys);
        locked.save()
    }
}

impl KeyringFile {
    /// Loads the keyring for a change, holding an exclusive lock on
    /// `{path}.lock` until it is saved or dropped: concurrent changes (two
    /// `wenu devices rotate-key`, the API's provisioning) then follow one
    /// another instead of one overwriting the other. Blocks while another
    /// process holds the lock.
    pub fn lock(&self) -> Result<LockedKeyring> {
        let lock_path = self.path.with_extension("json.lock");
        let io_err = |source| Error::Io { path: lock_path.clone(), source };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err)?;
        lock.lock().map_err(io_err)?;
        let keyring = Keyring::load_or_default(&self.path)?;
        Ok(LockedKeyring { keyring, path: self.path.clone(), _lock: lock })
    }
}

/// The keyring loaded under [`KeyringFile::lock`]; the lock goes with it.
pub struct LockedKeyring {
    pub keyring: Keyring,
    path: std::path::PathBuf,
    _lock: std::fs::File,
}

impl LockedKeyring {
    /// Writes the changed keyring, then lets the lock go.
    pub fn save(self) -> Result<()> {
        self.keyring.save(&self.path)
    }
}

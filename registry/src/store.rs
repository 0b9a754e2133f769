//! The registry store on SQLite.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use wenu_core::topic::is_valid_device_id;

use crate::password::verify_password;
use crate::schema::migrations;
use crate::{Error, Result};

/// A device as the registry knows it. The password hash stays inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub id: String,
    pub company: String,
    pub enabled: bool,
    /// Unix ms.
    pub created_at: i64,
    /// Key ids that still decrypt, oldest first.
    pub live_key_ids: Vec<u32>,
}

/// Why a device may or may not connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Allowed(Device),
    UnknownDevice,
    Disabled,
    BadPassword,
}

/// Handle on the registry database; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    conn: Arc<Mutex<Connection>>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

impl Registry {
    /// Opens the registry, creating it or migrating it to the current schema.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations().to_latest(&mut conn)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    pub fn default_path(data_dir: &Path) -> PathBuf {
        data_dir.join("registry.db")
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("registry connection poisoned")
    }

    /// Creates the company if it doesn't exist yet.
    pub fn ensure_company(&self, company: &str) -> Result<()> {
        if !is_valid_device_id(company) {
            return Err(Error::InvalidId(company.to_owned()));
        }
        self.conn().execute(
            "INSERT INTO companies (id, created_at) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
            params![company, now_ms()],
        )?;
        Ok(())
    }

    /// Adds a device with an already hashed password.
    pub fn add_device(&self, company: &str, device_id: &str, password_hash: &str) -> Result<()> {
        if !is_valid_device_id(device_id) {
            return Err(Error::InvalidId(device_id.to_owned()));
        }
        let conn = self.conn();
        let company_exists: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM companies WHERE id = ?1)", [company], |r| r.get(0))?;
        if !company_exists {
            return Err(Error::UnknownCompany(company.to_owned()));
        }
        let inserted = conn.execute(
            "INSERT INTO devices (id, company_id, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO NOTHING",
            params![device_id, company, password_hash, now_ms()],
        )?;
        if inserted == 0 {
            return Err(Error::DeviceExists(device_id.to_owned()));
        }
        Ok(())
    }

    /// Records that a device has a key with this id (the key itself lives in the keyring).
    pub fn add_key(&self, device_id: &str, key_id: u32) -> Result<()> {
        self.conn().execute(
            "INSERT INTO device_keys (device_id, key_id, created_at) VALUES (?1, ?2, ?3)",
            params![device_id, key_id, now_ms()],
        )?;
        Ok(())
    }

    pub fn retire_key(&self, device_id: &str, key_id: u32) -> Result<()> {
        let changed = self.conn().execute(
            "UPDATE device_keys SET retired_at = ?3 WHERE device_id = ?1 AND key_id = ?2 AND retired_at IS NULL",
            params![device_id, key_id, now_ms()],
        )?;
        if changed == 0 {
            return Err(Error::Core(wenu_core::Error::UnknownKey {
                device_id: device_id.to_owned(),
                key_id,
            }));
        }
        Ok(())
    }

    pub fn set_enabled(&self, device_id: &str, enabled: bool) -> Result<()> {
        let changed = self
            .conn()
            .execute("UPDATE devices SET enabled = ?2 WHERE id = ?1", params![device_id, enabled])?;
        if changed == 0 {
            return Err(Error::UnknownDevice(device_id.to_owned()));
        }
        Ok(())
    }

    pub fn device(&self, device_id: &str) -> Result<Option<Device>> {
        Ok(self.devices_where("d.id = ?1", params![device_id])?.pop())
    }

    /// All devices, or a company's, ordered by id.
    pub fn list_devices(&self, company: Option<&str>) -> Result<Vec<Device>> {
        match company {
            Some(company) => self.devices_where("d.company_id = ?1", params![company]),
            None => self.devices_where("1", params![]),
        }
    }

    pub fn count_devices(&self) -> Result<u64> {
        Ok(self.conn().query_row("SELECT count(*) FROM devices", [], |r| r.get::<_, i64>(0))? as u64)
    }

    fn devices_where(&self, condition: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<Device>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT d.id, d.company_id, d.enabled, d.created_at,
                    (SELECT group_concat(k.key_id) FROM device_keys k
                     WHERE k.device_id = d.id AND k.retired_at IS NULL ORDER BY k.key_id)
             FROM devices d WHERE {condition} ORDER BY d.id"
        ))?;
        let rows = stmt.query_map(args, |r| {
            let keys: Option<String> = r.get(4)?;
            Ok(Device {
                id: r.get(0)?,
                company: r.get(1)?,
                enabled: r.get(2)?,
                created_at: r.get(3)?,
                live_key_ids: keys
                    .map(|k| k.split(',').filter_map(|id| id.parse().ok()).collect())
                    .unwrap_or_default(),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Decides whether `device_id` may connect with `password`.
    ///
    /// The Argon2 check runs without holding the database lock, so slow
    /// hashing doesn't stall other lookups.
    pub fn authenticate(&self, device_id: &str, password: &str) -> Result<AuthOutcome> {
        let row: Option<(String, bool)> = self
            .conn()
            .query_row("SELECT password_hash, enabled FROM devices WHERE id = ?1", [device_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((hash, enabled)) = row else {
            return Ok(AuthOutcome::UnknownDevice);
        };
        if !verify_password(password, &hash) {
            return Ok(AuthOutcome::BadPassword);
        }
        self.authorize(device_id, enabled)
    }

    /// Decides whether a device that proved its identity by a client
    /// certificate may connect.
    pub fn authenticate_by_certificate(&self, device_id: &str) -> Result<AuthOutcome> {
        let enabled: Option<bool> = self
            .conn()
            .query_row("SELECT enabled FROM devices WHERE id = ?1", [device_id], |r| r.get(0))
            .optional()?;
        match enabled {
            None => Ok(AuthOutcome::UnknownDevice),
            Some(enabled) => self.authorize(device_id, enabled),
        }
    }

    fn authorize(&self, device_id: &str, enabled: bool) -> Result<AuthOutcome> {
        if !enabled {
            return Ok(AuthOutcome::Disabled);
        }
        let device = self.device(device_id)?.ok_or_else(|| Error::UnknownDevice(device_id.to_owned()))?;
        Ok(AuthOutcome::Allowed(device))
    }
}

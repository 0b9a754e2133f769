//! Companies, devices and their keys: who may connect and publish.

use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use wenu_core::topic::is_valid_device_id;

use crate::password::{hash_password, is_slow_hash, verify_password};
use crate::store::{Change, now_ms, require_company};
use crate::{Error, Registry, Result};

/// What an unknown device's password is checked against, so that an unknown
/// id costs what a known one does.
const UNKNOWN_DEVICE_HASH: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// A device as the registry knows it. The password hash stays inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub id: String,
    pub company: String,
    pub site: Option<String>,
    pub enabled: bool,
    /// Unix ms.
    pub created_at: i64,
    /// Key ids that still decrypt, oldest first (those whose retirement
    /// is scheduled among them, until then).
    pub live_key_ids: Vec<u32>,
    /// What this device may publish, where it differs from the edge's defaults.
    pub quota: DeviceQuota,
    /// Records arriving from this time on (unix ms) start a fresh sequence
    /// window: set when the device's counter went back (factory reset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq_reset_at: Option<i64>,
}

/// A device's own publish quota; `None` keeps the edge's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeviceQuota {
    pub publishes_per_second: Option<u32>,
    pub bytes_per_second: Option<u32>,
}

/// Why a device may or may not connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Allowed,
    UnknownDevice,
    Disabled,
    BadPassword,
    /// The client certificate it presented was revoked.
    RevokedCertificate,
}

pub(crate) fn check_id(id: &str) -> Result<()> {
    if is_valid_device_id(id) { Ok(()) } else { Err(Error::InvalidId(id.to_owned())) }
}

// Booleans are selected as integers: SQLite has no boolean values, PostgreSQL does.
const DEVICE_COLUMNS: &str = "d.id, d.company_id, d.site_id, CASE WHEN d.enabled THEN 1 ELSE 0 END, \
     d.created_at, d.publishes_per_second, d.bytes_per_second, d.seq_reset_at";

impl Registry {
    /// Creates the company if it doesn't exist yet.
    pub async fn ensure_company(&self, company: &str) -> Result<()> {
        check_id(company)?;
        let mut tx = self.write_tx().await?;
        let inserted =
            sqlx::query("INSERT INTO companies (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
                .bind(company)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if inserted > 0 {
            let change =
                Change { action: "company.add", company: Some(company), target: company, detail: json!({}) };
            self.record_change(&mut tx, change).await?;
        }
        Ok(tx.commit().await?)
    }

    pub async fn list_companies(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM companies ORDER BY id").fetch_all(&self.pool).await?)
    }

    /// Adds a device with an already hashed password.
    pub async fn add_device(&self, company: &str, device_id: &str, password_hash: &str) -> Result<()> {
        check_id(device_id)?;
        let mut tx = self.write_tx().await?;
        require_company(&mut tx, company).await?;
        let inserted = sqlx::query(
            "INSERT INTO devices (id, company_id, password_hash, enabled, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(device_id)
        .bind(company)
        .bind(password_hash)
        .bind(true)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(Error::DeviceExists(device_id.to_owned()));
        }
        let change =
            Change { action: "device.add", company: Some(company), target: device_id, detail: json!({}) };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }

    /// Records that a device has a key with this id (the key itself lives in the keyring).
    pub async fn add_key(&self, device_id: &str, key_id: u32) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO device_keys (device_id, key_id, created_at) VALUES ($1, $2, $3)")
            .bind(device_id)
            .bind(i64::from(key_id))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        let company = device_company(&mut tx, device_id).await?;
        let change = Change {
            action: "key.add",
            company: Some(&company),
            target: device_id,
            detail: json!({ "key_id": key_id }),
        };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }

    pub async fn retire_key(&self, device_id: &str, key_id: u32) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let changed = sqlx::query(
            "UPDATE device_keys SET retired_at = $3
             WHERE device_id = $1 AND key_id = $2 AND (retired_at IS NULL OR retired_at > $3)",
        )
        .bind(device_id)
        .bind(i64::from(key_id))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(Error::Core(wenu_core::Error::UnknownKey {
                device_id: device_id.to_owned(),
                key_id,
            }));
        }
        let company = device_company(&mut tx, device_id).await?;
        let detail = json!({ "key_id": key_id });
        let change = Change { action: "key.retire", company: Some(&company), target: device_id, detail };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }

    pub async fn set_enabled(&self, device_id: &str, enabled: bool) -> Result<()> {
        let change = ("device.set_enabled", json!({ "enabled": enabled }));
        self.update_device(device_id, "UPDATE devices SET enabled = $2 WHERE id = $1", change, |q| {
            q.bind(enabled)
        })
        .await
    }

    /// Gives a device its own publish quota (`None`s: the edge's defaults).
    pub async fn set_device_quota(&self, device_id: &str, quota: DeviceQuota) -> Result<()> {
        if quota.publishes_per_second == Some(0) || quota.bytes_per_second == Some(0) {
            return Err(Error::Invalid(
                "a quota of 0 would refuse every publish: disable the device instead".into(),
            ));
        }
        let change = ("device.set_quota", json!(quota));
        let (publishes, bytes) =
            (quota.publishes_per_second.map(i64::from), quota.bytes_per_second.map(i64::from));
        self.update_device(
            device_id,
            "UPDATE devices SET publishes_per_second = $2, bytes_per_second = $3 WHERE id = $1",
            change,
            move |q| q.bind(publishes).bind(bytes),
        )
        .await
    }

    /// Places a device at one of its company's sites, or at none.
    pub async fn set_device_site(&self, device_id: &str, site: Option<&str>) -> Result<()> {
        if let Some(site) = site {
            let device =
                self.device(device_id).await?.ok_or_else(|| Error::UnknownDevice(device_id.to_owned()))?;
            if !self.sites(&device.company).await?.iter().any(|s| s.id == site) {
                return Err(Error::UnknownSite(site.to_owned()));
            }
        }
        let change = ("device.set_site", json!({ "site": site }));
        let site = site.map(str::to_owned);
        self.update_device(device_id, "UPDATE devices SET site_id = $2 WHERE id = $1", change, move |q| {
            q.bind(site)
        })
        .await
    }

    async fn update_device<'q>(
        &self,
        device_id: &'q str,
        sql: &'static str,
        (action, detail): (&'static str, serde_json::Value),
        bind: impl FnOnce(
            sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let changed = bind(sqlx::query(sql).bind(device_id)).execute(&mut *tx).await?.rows_affected();
        if changed == 0 {
            return Err(Error::UnknownDevice(device_id.to_owned()));
        }
        let company = device_company(&mut tx, device_id).await?;
        let change = Change { action, company: Some(&company), target: device_id, detail };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }

    pub async fn device(&self, device_id: &str) -> Result<Option<Device>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.id = $1"
        )))
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut device = device_from_row(&row)?;
        device.live_key_ids = sqlx::query_scalar::<_, i64>(
            "SELECT key_id FROM device_keys WHERE device_id = $1 AND (retired_at IS NULL OR retired_at > $2)
             ORDER BY key_id",
        )
        .bind(device_id)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|k| k as u32)
        .collect();
        Ok(Some(device))
    }

    /// All devices, or a company's, ordered by id.
    pub async fn list_devices(&self, company: Option<&str>) -> Result<Vec<Device>> {
        let (filter, key_filter, now) = match company {
            Some(_) => ("WHERE d.company_id = $1", "AND d.company_id = $1", "$2"),
            None => ("", "", "$1"),
        };
        let devices = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DEVICE_COLUMNS} FROM devices d {filter} ORDER BY d.id"
        )));
        let keys = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT k.device_id, k.key_id FROM device_keys k JOIN devices d ON d.id = k.device_id
             WHERE (k.retired_at IS NULL OR k.retired_at > {now}) {key_filter} ORDER BY k.key_id"
        )));
        let (devices, keys) = match company {
            Some(company) => (devices.bind(company), keys.bind(company).bind(now_ms())),
            None => (devices, keys.bind(now_ms())),
        };
        let mut devices =
            devices.fetch_all(&self.pool).await?.iter().map(device_from_row).collect::<Result<Vec<_>>>()?;
        let mut keys_of: std::collections::HashMap<String, Vec<u32>> = Default::default();
        for row in keys.fetch_all(&self.pool).await? {
            keys_of.entry(row.try_get(0)?).or_default().push(row.try_get::<i64, _>(1)? as u32);
        }
        for device in &mut devices {
            device.live_key_ids = keys_of.remove(&device.id).unwrap_or_default();
        }
        Ok(devices)
    }

    pub async fn count_devices(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM devices").fetch_one(&self.pool).await?;
        Ok(count as u64)
    }

    /// Decides whether `device_id` may connect with `password`.
    ///
    /// Costs a lookup and a SHA-256 whether or not the device exists, so the
    /// answer's timing does not tell which ids exist. A device still on an
    /// Argon2 hash from an older registry is checked on a blocking thread
    /// once, and its hash replaced by the fast form.
    pub async fn authenticate(&self, device_id: &str, password: String) -> Result<AuthOutcome> {
        let row = sqlx::query(
            "SELECT password_hash, CASE WHEN enabled THEN 1 ELSE 0 END FROM devices WHERE id = $1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            verify_password(&password, UNKNOWN_DEVICE_HASH);
            return Ok(AuthOutcome::UnknownDevice);
        };
        let hash: String = row.try_get(0)?;
        let enabled = row.try_get::<i64, _>(1)? != 0;
        let matches = if is_slow_hash(&hash) {
            self.verify_and_upgrade(device_id, password, hash).await?
        } else {
            verify_password(&password, &hash)
        };
        Ok(match (matches, enabled) {
            (false, _) => AuthOutcome::BadPassword,
            (true, false) => AuthOutcome::Disabled,
            (true, true) => AuthOutcome::Allowed,
        })
    }

    /// Checks a password against an Argon2 hash and, if it matches, stores
    /// the fast hash in its place (unless the hash changed meanwhile).
    async fn verify_and_upgrade(&self, device_id: &str, password: String, slow_hash: String) -> Result<bool> {
        let (matches, password, slow_hash) = tokio::task::spawn_blocking(move || {
            (verify_password(&password, &slow_hash), password, slow_hash)
        })
        .await
        .map_err(|e| Error::PasswordHash(e.to_string()))?;
        if matches {
            sqlx::query("UPDATE devices SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
                .bind(hash_password(&password))
                .bind(device_id)
                .bind(slow_hash)
                .execute(&self.pool)
                .await?;
            tracing::info!(device = %device_id, "password hash upgraded from Argon2 to SHA-256");
        }
        Ok(matches)
    }

    /// Decides whether a device that proved its identity by a client
    /// certificate (whose SHA-256 `fingerprint` is given, lowercase hex)
    /// may connect.
    pub async fn authenticate_by_certificate(
        &self,
        device_id: &str,
        fingerprint: &str,
    ) -> Result<AuthOutcome> {
        let enabled: Option<i64> =
            sqlx::query_scalar("SELECT CASE WHEN enabled THEN 1 ELSE 0 END FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match enabled {
            None => AuthOutcome::UnknownDevice,
            Some(_) if self.is_certificate_revoked(fingerprint).await? => AuthOutcome::RevokedCertificate,
            Some(0) => AuthOutcome::Disabled,
            Some(_) => AuthOutcome::Allowed,
        })
    }

    /// Starts a fresh sequence window for the device's records arriving
    /// from now on, for a device whose counter went back (factory reset,
    /// firmware that lost it); returns that time (unix ms). Without it such
    /// a device's messages are quarantined as replays until its counter
    /// passes the old highest number.
    pub async fn reset_sequence(&self, device_id: &str) -> Result<i64> {
        let at = now_ms();
        let change = ("device.reset_sequence", json!({ "at": at }));
        self.update_device(
            device_id,
            "UPDATE devices SET seq_reset_at = $2 WHERE id = $1",
            change,
            move |q| q.bind(at),
        )
        .await?;
        Ok(at)
    }
}

/// The company of a device, inside a transaction.
pub(crate) async fn device_company(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    device_id: &str,
) -> Result<String> {
    sqlx::query_scalar("SELECT company_id FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::UnknownDevice(device_id.to_owned()))
}

fn device_from_row(row: &AnyRow) -> Result<Device> {
    Ok(Device {
        id: row.try_get(0)?,
        company: row.try_get(1)?,
        site: row.try_get(2)?,
        enabled: row.try_get::<i64, _>(3)? != 0,
        created_at: row.try_get(4)?,
        live_key_ids: Vec::new(),
        quota: DeviceQuota {
            publishes_per_second: row
                .try_get::<Option<i64>, _>(5)?
                .map(|n| n.clamp(1, u32::MAX.into()) as u32),
            bytes_per_second: row.try_get::<Option<i64>, _>(6)?.map(|n| n.clamp(1, u32::MAX.into()) as u32),
        },
        seq_reset_at: row.try_get(7)?,
    })
}

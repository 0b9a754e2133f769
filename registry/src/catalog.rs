//! Sites, sensors and company settings: the business data enrich uses.

use sqlx::Row;
use sqlx::any::AnyRow;
use wenu_core::catalog::{CompanySettings, SensorSpec, Site, StatsRetentionDays};

use crate::devices::check_id;
use serde_json::json;

use crate::devices::device_company;
use crate::store::{Change, now_ms, require_company};
use crate::{Device, Error, Registry, Result};

/// Everything a stage needs from the registry at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: i64,
    pub devices: Vec<Device>,
    pub sites: Vec<Site>,
    pub sensors: Vec<SensorSpec>,
    pub settings: Vec<CompanySettings>,
}

const SENSOR_COLUMNS: &str = "device_id, name, kind, unit, scale, ofs, valid_min, valid_max";

impl Registry {
    /// Creates or renames a site of `company`.
    pub async fn upsert_site(&self, company: &str, site: &str, name: &str) -> Result<()> {
        check_id(site)?;
        let mut tx = self.write_tx().await?;
        require_company(&mut tx, company).await?;
        sqlx::query(
            "INSERT INTO sites (company_id, id, name, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (company_id, id) DO UPDATE SET name = excluded.name",
        )
        .bind(company)
        .bind(site)
        .bind(name)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let change = Change {
            action: "site.upsert",
            company: Some(company),
            target: site,
            detail: json!({ "name": name }),
        };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }

    pub async fn sites(&self, company: &str) -> Result<Vec<Site>> {
        let rows = sqlx::query("SELECT company_id, id, name FROM sites WHERE company_id = $1 ORDER BY id")
            .bind(company)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(site_from_row).collect()
    }

    /// Defines a sensor of a device, or changes its definition.
    pub async fn upsert_sensor(&self, spec: &SensorSpec) -> Result<()> {
        validate_sensor(spec)?;
        let mut tx = self.write_tx().await?;
        let company = device_company(&mut tx, &spec.device).await?;
        sqlx::query(
            "INSERT INTO sensors (device_id, name, kind, unit, scale, ofs, valid_min, valid_max, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS DOUBLE PRECISION), CAST($8 AS DOUBLE PRECISION), $9)
             ON CONFLICT (device_id, name) DO UPDATE SET kind = excluded.kind, unit = excluded.unit,
                 scale = excluded.scale, ofs = excluded.ofs, valid_min = excluded.valid_min,
                 valid_max = excluded.valid_max, updated_at = excluded.updated_at",
        )
        .bind(&spec.device)
        .bind(&spec.sensor)
        .bind(&spec.kind)
        .bind(&spec.unit)
        .bind(spec.scale)
        .bind(spec.offset)
        // Optional floats go as text: sqlx 0.9's Any driver declares a NULL
        // DOUBLE PRECISION as a 4-byte float, so a statement first prepared
        // with NULL refuses a value later on the same PostgreSQL connection
        // ("incorrect binary data format"). Rust prints f64s exactly.
        .bind(spec.valid_min.map(|v| v.to_string()))
        .bind(spec.valid_max.map(|v| v.to_string()))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let target = format!("{}/{}", spec.device, spec.sensor);
        let detail = serde_json::to_value(spec).expect("a sensor spec serializes");
        let change = Change { action: "sensor.upsert", company: Some(&company), target: &target, detail };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }

    /// Removes a sensor's definition; its readings are quarantined as unknown from then on.
    pub async fn delete_sensor(&self, device: &str, sensor: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let company = device_company(&mut tx, device).await?;
        let deleted = sqlx::query("DELETE FROM sensors WHERE device_id = $1 AND name = $2")
            .bind(device)
            .bind(sensor)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::UnknownSensor(format!("{device}/{sensor}")));
        }
        let target = format!("{device}/{sensor}");
        let change =
            Change { action: "sensor.delete", company: Some(&company), target: &target, detail: json!({}) };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }

    /// Removes a site that no device is placed at.
    pub async fn delete_site(&self, company: &str, site: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let in_use: i64 =
            sqlx::query_scalar("SELECT count(*) FROM devices WHERE company_id = $1 AND site_id = $2")
                .bind(company)
                .bind(site)
                .fetch_one(&mut *tx)
                .await?;
        if in_use > 0 {
            return Err(Error::Invalid(format!("site {site} still has {in_use} devices")));
        }
        let deleted = sqlx::query("DELETE FROM sites WHERE company_id = $1 AND id = $2")
            .bind(company)
            .bind(site)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::UnknownSite(site.to_owned()));
        }
        let change =
            Change { action: "site.delete", company: Some(company), target: site, detail: json!({}) };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }

    /// The sensors of one device, or of all devices.
    pub async fn sensors(&self, device: Option<&str>) -> Result<Vec<SensorSpec>> {
        let rows = match device {
            Some(device) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SENSOR_COLUMNS} FROM sensors WHERE device_id = $1 ORDER BY name"
                )))
                .bind(device)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SENSOR_COLUMNS} FROM sensors ORDER BY device_id, name"
                )))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(sensor_from_row).collect()
    }

    /// The sensors of a company's devices, by device and name.
    pub async fn company_sensors(&self, company: &str) -> Result<Vec<SensorSpec>> {
        let columns = SENSOR_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns} FROM sensors s JOIN devices d ON d.id = s.device_id
             WHERE d.company_id = $1 ORDER BY s.device_id, s.name"
        )))
        .bind(company)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(sensor_from_row)
        .collect()
    }

    pub async fn set_company_settings(&self, settings: &CompanySettings) -> Result<()> {
        let retention = settings.stats_retention;
        for days in [retention.minute, retention.hour, retention.day].into_iter().flatten() {
            if days == 0 {
                return Err(Error::Invalid("a stats retention is at least one day".into()));
            }
        }
        let mut tx = self.write_tx().await?;
        require_company(&mut tx, &settings.company).await?;
        let days = |d: Option<u32>| d.map(i64::from);
        sqlx::query(
            "INSERT INTO company_settings
                 (company_id, stats_retention_minute_days, stats_retention_hour_days, stats_retention_day_days)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (company_id) DO UPDATE SET
                 stats_retention_minute_days = excluded.stats_retention_minute_days,
                 stats_retention_hour_days = excluded.stats_retention_hour_days,
                 stats_retention_day_days = excluded.stats_retention_day_days",
        )
        .bind(&settings.company)
        .bind(days(retention.minute))
        .bind(days(retention.hour))
        .bind(days(retention.day))
        .execute(&mut *tx)
        .await?;
        let company = settings.company.as_str();
        let detail = serde_json::to_value(settings).expect("settings serialize");
        let change = Change { action: "company.settings", company: Some(company), target: company, detail };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }

    /// A company's settings; defaults where it has none.
    pub async fn company_settings(&self, company: &str) -> Result<CompanySettings> {
        Ok(self
            .all_company_settings()
            .await?
            .into_iter()
            .find(|s| s.company == company)
            .unwrap_or_else(|| CompanySettings { company: company.to_owned(), ..Default::default() }))
    }

    async fn all_company_settings(&self) -> Result<Vec<CompanySettings>> {
        let rows = sqlx::query(
            "SELECT company_id, stats_retention_minute_days, stats_retention_hour_days, stats_retention_day_days
             FROM company_settings ORDER BY company_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let days = |i: usize| -> Result<Option<u32>> {
                    Ok(row.try_get::<Option<i64>, _>(i)?.map(|d| d as u32))
                };
                Ok(CompanySettings {
                    company: row.try_get(0)?,
                    stats_retention: StatsRetentionDays { minute: days(1)?, hour: days(2)?, day: days(3)? },
                })
            })
            .collect()
    }

    /// Everything at once, for stages that keep a snapshot.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        // The revision is read first: a change racing with the reads below
        // bumps it again, so the next refresh reloads.
        let revision = self.revision().await?;
        let devices = self.list_devices(None).await?;
        let sites = sqlx::query("SELECT company_id, id, name FROM sites ORDER BY company_id, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(site_from_row)
            .collect::<Result<_>>()?;
        Ok(Snapshot {
            revision,
            devices,
            sites,
            sensors: self.sensors(None).await?,
            settings: self.all_company_settings().await?,
        })
    }
}

fn validate_sensor(spec: &SensorSpec) -> Result<()> {
    check_id(&spec.sensor)?;
    if spec.kind.is_empty() || spec.unit.is_empty() {
        return Err(Error::Invalid(format!("sensor {}: kind and unit are required", spec.sensor)));
    }
    if !spec.scale.is_finite() || spec.scale == 0.0 || !spec.offset.is_finite() {
        return Err(Error::Invalid(format!(
            "sensor {}: scale must be finite and non-zero, offset finite",
            spec.sensor
        )));
    }
    if let (Some(min), Some(max)) = (spec.valid_min, spec.valid_max)
        && min > max
    {
        return Err(Error::Invalid(format!("sensor {}: valid_min {min} > valid_max {max}", spec.sensor)));
    }
    Ok(())
}

fn site_from_row(row: &AnyRow) -> Result<Site> {
    Ok(Site { company: row.try_get(0)?, id: row.try_get(1)?, name: row.try_get(2)? })
}

fn sensor_from_row(row: &AnyRow) -> Result<SensorSpec> {
    Ok(SensorSpec {
        device: row.try_get(0)?,
        sensor: row.try_get(1)?,
        kind: row.try_get(2)?,
        unit: row.try_get(3)?,
        scale: row.try_get(4)?,
        offset: row.try_get(5)?,
        valid_min: row.try_get(6)?,
        valid_max: row.try_get(7)?,
    })
}

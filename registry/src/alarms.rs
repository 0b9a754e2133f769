//! Alarm rules: what the alarms stage watches. Rules are validated by `wenu_alarms` before they
//! are stored; a rule's version is the time of its last change, so the
//! alarms stage resets detectors built under an older definition.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use wenu_alarms::{Condition, Rule, Severity};

use crate::devices::device_company;
use crate::store::{Change, now_ms, require_company};
use crate::{Error, Registry, Result};

const RULE_COLUMNS: &str = "company_id, id, name, device_id, sensor, condition, severity, \
     CASE WHEN enabled THEN 1 ELSE 0 END, updated_at";

impl Registry {
    /// Creates or replaces a rule; `rule.version` is set to the time of
    /// the change. Returns the rule as stored.
    pub async fn put_rule(&self, rule: &Rule) -> Result<Rule> {
        rule.validate().map_err(Error::Invalid)?;
        let mut stored = rule.clone();
        stored.version = now_ms();
        let condition = serde_json::to_string(&rule.condition).expect("a condition serializes");
        let mut tx = self.write_tx().await?;
        require_company(&mut tx, &rule.company).await?;
        if let Some(device) = &rule.device
            && device_company(&mut tx, device).await? != rule.company
        {
            return Err(Error::UnknownDevice(device.clone()));
        }
        sqlx::query(
            "INSERT INTO alarm_rules (company_id, id, name, device_id, sensor, condition, severity, enabled, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (company_id, id) DO UPDATE SET name = excluded.name, device_id = excluded.device_id,
                 sensor = excluded.sensor, condition = excluded.condition, severity = excluded.severity,
                 enabled = excluded.enabled, updated_at = excluded.updated_at",
        )
        .bind(&rule.company)
        .bind(&rule.id)
        .bind(&rule.name)
        .bind(rule.device.as_deref())
        .bind(rule.sensor.as_deref())
        .bind(&condition)
        .bind(rule.severity.as_str())
        .bind(rule.enabled)
        .bind(stored.version)
        .execute(&mut *tx)
        .await?;
        let detail = json!({
            "name": rule.name, "device": rule.device, "sensor": rule.sensor,
            "condition": rule.condition, "severity": rule.severity, "enabled": rule.enabled,
        });
        let change = Change { action: "rule.put", company: Some(&rule.company), target: &rule.id, detail };
        self.record_change(&mut tx, change).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// A company's rules, or every company's.
    pub async fn rules(&self, company: Option<&str>) -> Result<Vec<Rule>> {
        let rows = match company {
            Some(company) => {
                let sql = format!("SELECT {RULE_COLUMNS} FROM alarm_rules WHERE company_id = $1 ORDER BY id");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(company).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {RULE_COLUMNS} FROM alarm_rules ORDER BY company_id, id");
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(rule_from_row).collect()
    }

    pub async fn rule(&self, company: &str, id: &str) -> Result<Option<Rule>> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM alarm_rules WHERE company_id = $1 AND id = $2");
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(company).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(rule_from_row).transpose()
    }

    pub async fn delete_rule(&self, company: &str, id: &str) -> Result<()> {
        self.delete_rule_of(company, id).await
    }

    /// Deletes one of a company's rules, audited; another company's is
    /// unknown, exactly like a missing one.
    async fn delete_rule_of(&self, company: &str, id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query("DELETE FROM alarm_rules WHERE company_id = $1 AND id = $2")
            .bind(company)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::UnknownRule(id.to_owned()));
        }
        let change = Change { action: "rule.delete", company: Some(company), target: id, detail: json!({}) };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }
}

fn rule_from_row(row: &AnyRow) -> Result<Rule> {
    let id: String = row.try_get(1)?;
    let condition: String = row.try_get(5)?;
    let condition: Condition = serde_json::from_str(&condition)
        .map_err(|e| Error::Invalid(format!("rule {id}: stored condition unreadable: {e}")))?;
    let severity: String = row.try_get(6)?;
    Ok(Rule {
        company: row.try_get(0)?,
        name: row.try_get(2)?,
        device: row.try_get(3)?,
        sensor: row.try_get(4)?,
        condition,
        severity: Severity::parse(&severity)
            .ok_or_else(|| Error::Invalid(format!("rule {id}: unknown severity {severity}")))?,
        enabled: row.try_get::<i64, _>(7)? != 0,
        version: row.try_get(8)?,
        id,
    })
}

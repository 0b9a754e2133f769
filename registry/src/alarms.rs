//! Alarm rules and webhooks: what the alarms stage watches and where it
//! sends notifications. Rules are validated by `wenu_alarms` before they
//! are stored; a rule's version is the time of its last change, so the
//! alarms stage resets detectors built under an older definition.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use wenu_alarms::{Condition, Rule, Severity, WebhookFormat};

use crate::devices::device_company;
use crate::store::{Change, now_ms, require_company};
use crate::{Error, Registry, Result};

/// An endpoint that receives a company's alarm notifications, signed with
/// HMAC-SHA256 under `secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub company: String,
    pub url: String,
    /// Shared with the receiver once, when the webhook is created; never logged.
    #[serde(skip_serializing)]
    pub secret: String,
    /// The body it receives: Wenu's notification, or a Slack or Teams message.
    pub format: WebhookFormat,
    pub created_at: i64,
}

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
        self.delete_owned(Owned::Rule, company, id).await
    }

    /// Adds a webhook for `company` receiving `format`; the returned
    /// webhook holds its new secret.
    pub async fn add_webhook(&self, company: &str, url: &str, format: WebhookFormat) -> Result<Webhook> {
        let valid = (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= 2000;
        if !valid {
            return Err(Error::Invalid(format!("webhook URL {url:?} must be http:// or https://")));
        }
        let mut bytes = [0u8; 40];
        rand::thread_rng().fill_bytes(&mut bytes);
        let webhook = Webhook {
            id: hex::encode(&bytes[..8]),
            company: company.to_owned(),
            url: url.to_owned(),
            secret: hex::encode(&bytes[8..]),
            format,
            created_at: now_ms(),
        };
        let mut tx = self.write_tx().await?;
        require_company(&mut tx, company).await?;
        sqlx::query(
            "INSERT INTO webhooks (id, company_id, url, secret, created_at, format)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&webhook.id)
        .bind(company)
        .bind(url)
        .bind(&webhook.secret)
        .bind(webhook.created_at)
        .bind(format.as_str())
        .execute(&mut *tx)
        .await?;
        let change = Change {
            action: "webhook.add",
            company: Some(company),
            target: &webhook.id,
            detail: json!({ "url": url, "format": format }),
        };
        self.record_change(&mut tx, change).await?;
        tx.commit().await?;
        Ok(webhook)
    }

    /// A company's webhooks, or every company's (for the notifier).
    pub async fn webhooks(&self, company: Option<&str>) -> Result<Vec<Webhook>> {
        let columns = "id, company_id, url, secret, created_at, format";
        let rows = match company {
            Some(company) => {
                let sql = format!("SELECT {columns} FROM webhooks WHERE company_id = $1 ORDER BY id");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(company).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {columns} FROM webhooks ORDER BY company_id, id");
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(Webhook {
                    id: row.try_get(0)?,
                    company: row.try_get(1)?,
                    url: row.try_get(2)?,
                    secret: row.try_get(3)?,
                    created_at: row.try_get(4)?,
                    format: WebhookFormat::parse(&row.try_get::<String, _>(5)?).unwrap_or_default(),
                })
            })
            .collect()
    }

    pub async fn delete_webhook(&self, company: &str, id: &str) -> Result<()> {
        self.delete_owned(Owned::Webhook, company, id).await
    }

    /// Deletes one of a company's rules or webhooks, audited; another
    /// company's is unknown, exactly like a missing one.
    async fn delete_owned(&self, what: Owned, company: &str, id: &str) -> Result<()> {
        let (sql, action) = match what {
            Owned::Rule => ("DELETE FROM alarm_rules WHERE company_id = $1 AND id = $2", "rule.delete"),
            Owned::Webhook => ("DELETE FROM webhooks WHERE company_id = $1 AND id = $2", "webhook.delete"),
        };
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query(sql).bind(company).bind(id).execute(&mut *tx).await?.rows_affected();
        if deleted == 0 {
            return Err(match what {
                Owned::Rule => Error::UnknownRule(id.to_owned()),
                Owned::Webhook => Error::UnknownWebhook(id.to_owned()),
            });
        }
        let change = Change { action, company: Some(company), target: id, detail: json!({}) };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }
}

/// What a company owns here.
#[derive(Clone, Copy)]
enum Owned {
    Rule,
    Webhook,
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

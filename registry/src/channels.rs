//! A company's notification channels (signed webhooks, chat webhooks,
//! e-mail addresses, each with its routing) and silences. Every change is
//! audited and bumps the revision, so the notifiers' cached copies follow.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use wenu_alarms::{ChannelKind, Route, Silence, WebhookFormat};

use crate::devices::device_company;
use crate::store::{Change, now_ms, require_company};
use crate::{Error, Registry, Result};

/// Most channels a company may have.
pub const MAX_CHANNELS_PER_COMPANY: usize = 50;

/// Where a company's alarm notifications go: a webhook (signed with
/// HMAC-SHA256 under `secret`) or an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: String,
    pub company: String,
    /// `https://…`, `http://…` or `mailto:…`.
    pub url: String,
    /// `webhook` or `email`.
    pub kind: String,
    /// Shared with the receiver once, when the channel is created; never logged.
    #[serde(skip_serializing)]
    pub secret: String,
    /// A webhook's body: Wenu's notification, or a Slack or Teams message.
    pub format: WebhookFormat,
    #[serde(flatten)]
    pub route: Route,
    pub created_at: i64,
}

impl Channel {
    /// The channel as the notifiers take it.
    pub fn target(self) -> wenu_alarms::Channel {
        wenu_alarms::Channel {
            id: self.id,
            company: self.company,
            url: self.url,
            secret: self.secret,
            format: self.format,
            route: self.route,
        }
    }
}

/// What a caller asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NewChannel {
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    #[serde(flatten)]
    pub route: Route,
}

impl NewChannel {
    pub fn url(url: &str) -> Self {
        NewChannel { url: url.to_owned(), ..NewChannel::default() }
    }
}

/// A silence a caller asks for; `by` is the registry's actor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NewSilence {
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub rule: Option<String>,
    /// Unix ms; now when absent.
    #[serde(default)]
    pub starts_at: Option<i64>,
    pub ends_at: i64,
    pub reason: String,
}

const CHANNEL_COLUMNS: &str = "id, company_id, url, secret, created_at, format, route";
const SILENCE_COLUMNS: &str =
    "id, company_id, device_id, site, rule_id, starts_at, ends_at, reason, created_by";

impl Registry {
    /// Adds a channel for `company`; the returned channel holds its new secret.
    pub async fn add_channel(&self, company: &str, new: &NewChannel) -> Result<Channel> {
        let kind = ChannelKind::of_url(&new.url).map_err(Error::Invalid)?;
        new.route.validate().map_err(Error::Invalid)?;
        if self.channels(Some(company)).await?.len() >= MAX_CHANNELS_PER_COMPANY {
            return Err(Error::Invalid(format!("at most {MAX_CHANNELS_PER_COMPANY} channels per company")));
        }
        let mut bytes = [0u8; 40];
        rand::thread_rng().fill_bytes(&mut bytes);
        let channel = Channel {
            id: hex::encode(&bytes[..8]),
            company: company.to_owned(),
            url: new.url.clone(),
            kind: kind.as_str().to_owned(),
            secret: hex::encode(&bytes[8..]),
            format: new.format,
            route: new.route.clone(),
            created_at: now_ms(),
        };
        let route = serde_json::to_string(&channel.route).expect("a route serializes");
        let mut tx = self.write_tx().await?;
        require_company(&mut tx, company).await?;
        for rule in &new.route.rules {
            require_own(&mut tx, Owned::Rule, company, rule).await?;
        }
        sqlx::query(
            "INSERT INTO channels (id, company_id, url, secret, created_at, format, route)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&channel.id)
        .bind(company)
        .bind(&channel.url)
        .bind(&channel.secret)
        .bind(channel.created_at)
        .bind(channel.format.as_str())
        .bind(&route)
        .execute(&mut *tx)
        .await?;
        let detail = json!({ "url": channel.url, "format": channel.format, "route": channel.route });
        let change = Change { action: "channel.add", company: Some(company), target: &channel.id, detail };
        self.record_change(&mut tx, change).await?;
        tx.commit().await?;
        Ok(channel)
    }

    /// A company's channels, or every company's (for the notifiers).
    pub async fn channels(&self, company: Option<&str>) -> Result<Vec<Channel>> {
        let rows = match company {
            Some(company) => {
                let sql = format!("SELECT {CHANNEL_COLUMNS} FROM channels WHERE company_id = $1 ORDER BY id");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(company).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {CHANNEL_COLUMNS} FROM channels ORDER BY company_id, id");
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(channel_from_row).collect()
    }

    /// Deletes one of a company's channels, audited; another company's is
    /// unknown, exactly like a missing one.
    pub async fn delete_channel(&self, company: &str, id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query("DELETE FROM channels WHERE company_id = $1 AND id = $2")
            .bind(company)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(Error::UnknownChannel(id.to_owned()));
        }
        let change =
            Change { action: "channel.delete", company: Some(company), target: id, detail: json!({}) };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }

    /// Silences a device, site or rule of `company` for a window, audited
    /// with its reason; `created_by` is the registry's actor.
    pub async fn add_silence(&self, company: &str, new: &NewSilence) -> Result<Silence> {
        let mut bytes = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut bytes);
        let silence = Silence {
            id: hex::encode(bytes),
            company: company.to_owned(),
            device: new.device.clone(),
            site: new.site.clone(),
            rule: new.rule.clone(),
            starts_at: new.starts_at.unwrap_or_else(now_ms),
            ends_at: new.ends_at,
            reason: new.reason.trim().to_owned(),
            created_by: self.actor().to_owned(),
        };
        silence.validate().map_err(Error::Invalid)?;
        let mut tx = self.write_tx().await?;
        require_company(&mut tx, company).await?;
        if let Some(device) = &silence.device
            && device_company(&mut tx, device).await? != company
        {
            return Err(Error::UnknownDevice(device.clone()));
        }
        if let Some(site) = &silence.site {
            require_own(&mut tx, Owned::Site, company, site).await?;
        }
        if let Some(rule) = &silence.rule {
            require_own(&mut tx, Owned::Rule, company, rule).await?;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO silences ({SILENCE_COLUMNS}, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(&silence.id)
        .bind(company)
        .bind(silence.device.as_deref())
        .bind(silence.site.as_deref())
        .bind(silence.rule.as_deref())
        .bind(silence.starts_at)
        .bind(silence.ends_at)
        .bind(&silence.reason)
        .bind(&silence.created_by)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::to_value(&silence).expect("a silence serializes");
        let change = Change { action: "silence.add", company: Some(company), target: &silence.id, detail };
        self.record_change(&mut tx, change).await?;
        tx.commit().await?;
        Ok(silence)
    }

    /// A company's silences (every company's with `None`) that end after
    /// `ending_after` (unix ms): the current and coming ones, or with 0 all.
    pub async fn silences(&self, company: Option<&str>, ending_after: i64) -> Result<Vec<Silence>> {
        let rows = match company {
            Some(company) => {
                let sql = format!(
                    "SELECT {SILENCE_COLUMNS} FROM silences WHERE company_id = $1 AND ends_at > $2 ORDER BY starts_at, id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(company)
                    .bind(ending_after)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {SILENCE_COLUMNS} FROM silences WHERE ends_at > $1 ORDER BY company_id, starts_at, id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ending_after).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(silence_from_row).collect()
    }

    /// Ends one of a company's silences now (it stays listed as ended),
    /// audited; returns it as it is now.
    pub async fn end_silence(&self, company: &str, id: &str) -> Result<Silence> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let sql = format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE company_id = $1 AND id = $2");
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(company).bind(id).fetch_optional(&mut *tx).await?;
        let mut silence = row
            .as_ref()
            .map(silence_from_row)
            .transpose()?
            .ok_or_else(|| Error::UnknownSilence(id.to_owned()))?;
        if silence.ends_at > now {
            silence.ends_at = now.max(silence.starts_at);
            sqlx::query("UPDATE silences SET ends_at = $1 WHERE company_id = $2 AND id = $3")
                .bind(silence.ends_at)
                .bind(company)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let change = Change {
            action: "silence.end",
            company: Some(company),
            target: id,
            detail: json!({ "ends_at": silence.ends_at }),
        };
        self.record_change(&mut tx, change).await?;
        tx.commit().await?;
        Ok(silence)
    }
}

/// What a channel or silence may name, which must be its company's.
#[derive(Clone, Copy)]
enum Owned {
    Site,
    Rule,
}

/// Fails with the "unknown" error of `what` unless `company` has `id`: another
/// company's looks exactly like a missing one.
async fn require_own(tx: &mut Transaction<'static, Any>, what: Owned, company: &str, id: &str) -> Result<()> {
    let (sql, unknown): (&str, fn(String) -> Error) = match what {
        Owned::Site => ("SELECT id FROM sites WHERE company_id = $1 AND id = $2", Error::UnknownSite),
        Owned::Rule => ("SELECT id FROM alarm_rules WHERE company_id = $1 AND id = $2", Error::UnknownRule),
    };
    let known: Option<String> =
        sqlx::query_scalar(sql).bind(company).bind(id).fetch_optional(&mut **tx).await?;
    known.map(drop).ok_or_else(|| unknown(id.to_owned()))
}

fn channel_from_row(row: &AnyRow) -> Result<Channel> {
    let id: String = row.try_get(0)?;
    let url: String = row.try_get(2)?;
    let route: String = row.try_get(6)?;
    let route: Route = serde_json::from_str(&route)
        .map_err(|e| Error::Invalid(format!("channel {id}: stored route unreadable: {e}")))?;
    Ok(Channel {
        company: row.try_get(1)?,
        kind: ChannelKind::of_url(&url).map_or("unknown", ChannelKind::as_str).to_owned(),
        url,
        secret: row.try_get(3)?,
        created_at: row.try_get(4)?,
        format: WebhookFormat::parse(&row.try_get::<String, _>(5)?).unwrap_or_default(),
        route,
        id,
    })
}

fn silence_from_row(row: &AnyRow) -> Result<Silence> {
    Ok(Silence {
        id: row.try_get(0)?,
        company: row.try_get(1)?,
        device: row.try_get(2)?,
        site: row.try_get(3)?,
        rule: row.try_get(4)?,
        starts_at: row.try_get(5)?,
        ends_at: row.try_get(6)?,
        reason: row.try_get(7)?,
        created_by: row.try_get(8)?,
    })
}

//! What Wenu sends to a device and what the device says back: its desired
//! configuration (a versioned JSON document kept while the device is
//! offline and delivered when it connects, the device reporting the version
//! it applied), commands (an id each, delivered at least once, acknowledged
//! by the device, expiring when not delivered in time) and the device's
//! state (presence from the edge; firmware, boot and applied configuration
//! version reported by the device).
//!
//! Operators' changes (a configuration, a command) are audited and bump the
//! revision: that is how the edge learns it has something to deliver. What
//! devices and the edge report (presence, results, last seen) does not:
//! in a fleet it changes every second, and stages must not reload for it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use wenu_core::key_transfer::ROTATE_KEY_COMMAND;

use crate::devices::{check_id, device_company};
use crate::store::{Change, now_ms};
use crate::{Error, Registry, Result};

/// The largest configuration document or command arguments, serialized.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// How long a command may wait for its device, at most.
pub const MAX_COMMAND_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// The configuration an operator wants a device to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredConfig {
    pub device_id: String,
    /// 1 for the first document, one more at every change.
    pub version: i64,
    /// A JSON object; its keys are the firmware's business.
    pub document: Value,
    pub updated_at: i64,
}

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandStatus {
    /// Waiting for its device to be connected and subscribed.
    Pending,
    /// The device acknowledged the MQTT message (PUBACK); no result yet.
    Delivered,
    Done,
    Failed,
    /// The device refused it (unknown command, bad arguments).
    Rejected,
    /// Not delivered before its deadline; never will be.
    Expired,
}

impl CommandStatus {
    fn label(self) -> &'static str {
        match self {
            CommandStatus::Pending => "pending",
            CommandStatus::Delivered => "delivered",
            CommandStatus::Done => "done",
            CommandStatus::Failed => "failed",
            CommandStatus::Rejected => "rejected",
            CommandStatus::Expired => "expired",
        }
    }

    fn parse(label: &str) -> Result<Self> {
        [Self::Pending, Self::Delivered, Self::Done, Self::Failed, Self::Rejected, Self::Expired]
            .into_iter()
            .find(|s| s.label() == label)
            .ok_or_else(|| Error::Invalid(format!("unknown command status {label:?}")))
    }
}

/// A command for one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub id: String,
    pub device_id: String,
    /// e.g. `reboot`, `sample_now`, `set_interval`, `firmware_available`.
    pub name: String,
    pub args: Value,
    pub created_at: i64,
    /// Not delivered by then (unix ms), it expires.
    pub expires_at: i64,
    pub status: CommandStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// What the device said with its result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl DesiredConfig {
    /// What the device receives on its configuration topic.
    pub fn message(&self) -> Value {
        json!({ "version": self.version, "config": self.document })
    }
}

impl Command {
    /// What the device receives on its command topic.
    pub fn message(&self) -> Value {
        json!({ "id": self.id, "name": self.name, "args": self.args, "expires_at": self.expires_at })
    }
}

/// What a device publishes on its `reported` topic; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The firmware version it runs.
    #[serde(default)]
    pub firmware: Option<String>,
    /// A number that changes at every boot (a boot counter).
    #[serde(default)]
    pub boot: Option<i64>,
    /// The desired configuration version it applied.
    #[serde(default)]
    pub config_version: Option<i64>,
}

/// What a device publishes on its `results` topic for a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    pub id: String,
    /// `done`, `failed` or `rejected`.
    pub status: CommandStatus,
    #[serde(default)]
    pub detail: Option<String>,
}

/// What the registry knows of a device's life.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    pub device_id: String,
    pub online: bool,
    pub connected_at: Option<i64>,
    pub disconnected_at: Option<i64>,
    /// Its last accepted publish, to within the edge's flush interval.
    pub last_seen_at: Option<i64>,
    pub firmware: Option<String>,
    pub boot: Option<i64>,
    pub applied_config_version: Option<i64>,
    pub desired_config_version: Option<i64>,
    pub reported_at: Option<i64>,
}

/// How a device looks to an operator at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Connected and heard from recently.
    Online,
    /// Connected, but nothing accepted from it for a while: hung firmware,
    /// a dead sensor bus, a stuck queue.
    Silent,
    /// Not connected.
    Offline,
    /// Never connected since it was provisioned.
    NeverSeen,
}

impl DeviceState {
    /// Its presence at `now`: silent when connected and nothing arrived for
    /// `silent_after_ms` (counted from the connection if nothing ever did).
    pub fn presence(&self, now: i64, silent_after_ms: i64) -> Presence {
        let heard = self.last_seen_at.max(self.connected_at);
        match (self.online, heard) {
            (true, Some(at)) if now - at >= silent_after_ms => Presence::Silent,
            (true, _) => Presence::Online,
            (false, None) if self.disconnected_at.is_none() => Presence::NeverSeen,
            (false, _) => Presence::Offline,
        }
    }

    /// It has a desired configuration newer than the one it reported applying.
    pub fn config_stale(&self) -> bool {
        self.desired_config_version
            .is_some_and(|desired| self.applied_config_version.is_none_or(|a| a < desired))
    }
}

fn check_document(what: &str, document: &Value) -> Result<String> {
    if !document.is_object() {
        return Err(Error::Invalid(format!("{what} must be a JSON object")));
    }
    let text = document.to_string();
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::Invalid(format!("{what} is {} bytes; at most {MAX_DOCUMENT_BYTES}", text.len())));
    }
    Ok(text)
}

fn check_command_name(name: &str) -> Result<()> {
    let valid = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid { Ok(()) } else { Err(Error::Invalid(format!("command name {name:?}: 1-64 of a-z 0-9 _ -"))) }
}

const COMMAND_COLUMNS: &str =
    "id, device_id, name, args, created_at, expires_at, status, delivered_at, finished_at, detail";

fn command_from_row(row: &AnyRow, now: i64) -> Result<Command> {
    let args: String = row.try_get(3)?;
    let mut status = CommandStatus::parse(&row.try_get::<String, _>(6)?)?;
    let expires_at: i64 = row.try_get(5)?;
    if status == CommandStatus::Pending && expires_at <= now {
        status = CommandStatus::Expired;
    }
    Ok(Command {
        id: row.try_get(0)?,
        device_id: row.try_get(1)?,
        name: row.try_get(2)?,
        args: serde_json::from_str(&args).map_err(|e| Error::Invalid(e.to_string()))?,
        created_at: row.try_get(4)?,
        expires_at,
        status,
        delivered_at: row.try_get(7)?,
        finished_at: row.try_get(8)?,
        detail: row.try_get(9)?,
    })
}

fn config_from_row(row: &AnyRow) -> Result<DesiredConfig> {
    let document: String = row.try_get(2)?;
    Ok(DesiredConfig {
        device_id: row.try_get(0)?,
        version: row.try_get(1)?,
        document: serde_json::from_str(&document).map_err(|e| Error::Invalid(e.to_string()))?,
        updated_at: row.try_get(3)?,
    })
}

impl Registry {
    /// Replaces a device's desired configuration; its version is one more
    /// than the last. Delivered at once if the device is connected, else
    /// when it next subscribes.
    pub async fn set_desired_config(&self, device_id: &str, document: &Value) -> Result<DesiredConfig> {
        let text = check_document("a configuration", document)?;
        let mut tx = self.write_tx().await?;
        let company = device_company(&mut tx, device_id).await?;
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM device_config WHERE device_id = $1",
        )
        .bind(device_id)
        .fetch_one(&mut *tx)
        .await?;
        let change = Change {
            action: "device.set_config",
            company: Some(&company),
            target: device_id,
            detail: json!({ "version": version }),
        };
        let revision = self.record_change(&mut tx, change).await?;
        let updated_at = now_ms();
        sqlx::query(
            "INSERT INTO device_config (device_id, version, document, updated_at, revision)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (device_id) DO UPDATE SET version = $2, document = $3, updated_at = $4, revision = $5",
        )
        .bind(device_id)
        .bind(version)
        .bind(&text)
        .bind(updated_at)
        .bind(revision)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DesiredConfig { device_id: device_id.to_owned(), version, document: document.clone(), updated_at })
    }

    pub async fn desired_config(&self, device_id: &str) -> Result<Option<DesiredConfig>> {
        sqlx::query("SELECT device_id, version, document, updated_at FROM device_config WHERE device_id = $1")
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| config_from_row(&row))
            .transpose()
    }

    /// Queues a command for a device; it expires `ttl_ms` from now unless
    /// delivered before. `rotate_key` is reserved to key rotations (its
    /// confirmation retires keys).
    pub async fn send_command(
        &self,
        device_id: &str,
        name: &str,
        args: &Value,
        ttl_ms: i64,
    ) -> Result<Command> {
        if name == ROTATE_KEY_COMMAND {
            return Err(Error::Invalid(format!(
                "{ROTATE_KEY_COMMAND} is sent by a key rotation (wenu devices rotate-key)"
            )));
        }
        self.queue_command(device_id, name, args, ttl_ms).await
    }

    pub(crate) async fn queue_command(
        &self,
        device_id: &str,
        name: &str,
        args: &Value,
        ttl_ms: i64,
    ) -> Result<Command> {
        check_command_name(name)?;
        let args_text = check_document("a command's arguments", args)?;
        if !(1000..=MAX_COMMAND_TTL_MS).contains(&ttl_ms) {
            return Err(Error::Invalid("a command lives from 1 s to 30 days".into()));
        }
        let id = hex::encode(rand::random::<[u8; 8]>());
        let created_at = now_ms();
        let mut tx = self.write_tx().await?;
        let company = device_company(&mut tx, device_id).await?;
        let change = Change {
            action: "device.command",
            company: Some(&company),
            target: device_id,
            detail: json!({ "id": id, "name": name }),
        };
        let revision = self.record_change(&mut tx, change).await?;
        sqlx::query(
            "INSERT INTO device_commands (id, device_id, name, args, created_at, expires_at, status, revision)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)",
        )
        .bind(&id)
        .bind(device_id)
        .bind(name)
        .bind(&args_text)
        .bind(created_at)
        .bind(created_at + ttl_ms)
        .bind(revision)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Command {
            id,
            device_id: device_id.to_owned(),
            name: name.to_owned(),
            args: args.clone(),
            created_at,
            expires_at: created_at + ttl_ms,
            status: CommandStatus::Pending,
            delivered_at: None,
            finished_at: None,
            detail: None,
        })
    }

    /// A device's commands, newest first.
    pub async fn commands(&self, device_id: &str, limit: u32) -> Result<Vec<Command>> {
        let now = now_ms();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COMMAND_COLUMNS} FROM device_commands WHERE device_id = $1
             ORDER BY revision DESC LIMIT $2"
        )))
        .bind(device_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| command_from_row(row, now))
        .collect()
    }

    /// What a device should receive when it subscribes: its desired
    /// configuration and its commands still pending, in the order they were made.
    pub async fn pending_downlink(&self, device_id: &str) -> Result<(Option<DesiredConfig>, Vec<Command>)> {
        Ok((self.desired_config(device_id).await?, self.pending_commands_of(device_id).await?))
    }

    /// A device's commands still pending, in the order they were made.
    pub async fn pending_commands_of(&self, device_id: &str) -> Result<Vec<Command>> {
        self.pending_commands("device_id = $1", |q| q.bind(device_id)).await
    }

    /// Configurations and pending commands that changed after `revision`:
    /// what the edge delivers to devices already connected.
    pub async fn downlink_since(&self, revision: i64) -> Result<(Vec<DesiredConfig>, Vec<Command>)> {
        let configs = sqlx::query(
            "SELECT device_id, version, document, updated_at FROM device_config WHERE revision > $1",
        )
        .bind(revision)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(config_from_row)
        .collect::<Result<_>>()?;
        let commands = self.pending_commands("revision > $1", |q| q.bind(revision)).await?;
        Ok((configs, commands))
    }

    /// Commands not delivered yet and not expired that meet `condition`
    /// (on `$1`, bound by `bind`), in the order they were made.
    async fn pending_commands<'q>(
        &self,
        condition: &str,
        bind: impl FnOnce(
            sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<Vec<Command>> {
        let now = now_ms();
        let query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COMMAND_COLUMNS} FROM device_commands
             WHERE {condition} AND status = 'pending' AND expires_at > $2 ORDER BY revision"
        )));
        bind(query)
            .bind(now)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| command_from_row(row, now))
            .collect()
    }

    /// The device acknowledged the command's message.
    pub async fn mark_delivered(&self, command_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE device_commands SET status = 'delivered', delivered_at = $2 WHERE id = $1 AND status = 'pending'",
        )
        .bind(command_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a device's result for one of its own commands; false if it
    /// has no such command (another device's, or unknown).
    pub async fn record_command_result(&self, device_id: &str, result: &CommandResult) -> Result<bool> {
        if !matches!(result.status, CommandStatus::Done | CommandStatus::Failed | CommandStatus::Rejected) {
            return Err(Error::Invalid("a result is done, failed or rejected".into()));
        }
        let detail = result.detail.as_deref().map(|d| d.chars().take(1024).collect::<String>());
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let updated = sqlx::query(
            "UPDATE device_commands SET status = $3, detail = $4, finished_at = $5,
                 delivered_at = COALESCE(delivered_at, $5)
             WHERE id = $1 AND device_id = $2 AND status IN ('pending', 'delivered')",
        )
        .bind(&result.id)
        .bind(device_id)
        .bind(result.status.label())
        .bind(detail)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 1 && result.status == CommandStatus::Done {
            self.on_command_done(&mut tx, device_id, &result.id).await?;
        }
        tx.commit().await?;
        Ok(updated == 1)
    }

    /// Stores what a device reported about itself (fields left out stay).
    pub async fn record_report(&self, device_id: &str, report: &Report) -> Result<()> {
        check_id(device_id)?;
        let firmware = report.firmware.as_deref().map(|f| f.chars().take(64).collect::<String>());
        sqlx::query(
            "INSERT INTO device_state (device_id, online, firmware, boot, applied_config_version, reported_at)
             VALUES ($1, FALSE, $2, $3, $4, $5)
             ON CONFLICT (device_id) DO UPDATE SET
                 firmware = COALESCE($2, device_state.firmware),
                 boot = COALESCE($3, device_state.boot),
                 applied_config_version = COALESCE($4, device_state.applied_config_version),
                 reported_at = $5",
        )
        .bind(device_id)
        .bind(firmware)
        .bind(report.boot)
        .bind(report.config_version)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The edge saw the device connect (`online`) or go at `at`. The
    /// writes may land out of order (a quick connect and disconnect): the
    /// later time wins, a departure over an arrival of the same millisecond.
    pub async fn record_presence(&self, device_id: &str, online: bool, at: i64) -> Result<()> {
        let sql = if online {
            "INSERT INTO device_state (device_id, online, connected_at) VALUES ($1, TRUE, $2)
             ON CONFLICT (device_id) DO UPDATE SET online = TRUE, connected_at = $2
             WHERE device_state.disconnected_at IS NULL OR device_state.disconnected_at < $2"
        } else {
            "INSERT INTO device_state (device_id, online, disconnected_at) VALUES ($1, FALSE, $2)
             ON CONFLICT (device_id) DO UPDATE SET online = FALSE, disconnected_at = $2
             WHERE device_state.connected_at IS NULL OR device_state.connected_at <= $2"
        };
        sqlx::query(sql).bind(device_id).bind(at).execute(&self.pool).await?;
        Ok(())
    }

    /// Every device offline: the edge starts, so no session survived.
    pub async fn record_all_offline(&self, at: i64) -> Result<()> {
        sqlx::query("UPDATE device_state SET online = FALSE, disconnected_at = $1 WHERE online")
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// When each device last had a publish accepted, in one write.
    pub async fn record_last_seen(&self, seen: &[(String, i64)]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for (device_id, at) in seen {
            sqlx::query(
                "INSERT INTO device_state (device_id, online, last_seen_at) VALUES ($1, TRUE, $2)
                 ON CONFLICT (device_id) DO UPDATE SET last_seen_at = $2",
            )
            .bind(device_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        Ok(tx.commit().await?)
    }

    /// The state of every device (of a company), ordered by id; devices
    /// never seen are there too, offline.
    pub async fn device_states(&self, company: Option<&str>) -> Result<Vec<DeviceState>> {
        let filter = if company.is_some() { "WHERE d.company_id = $1" } else { "" };
        let query = sqlx::query(sqlx::AssertSqlSafe(format!("{STATE_SELECT} {filter} ORDER BY d.id")));
        let query = match company {
            Some(company) => query.bind(company),
            None => query,
        };
        query.fetch_all(&self.pool).await?.iter().map(state_from_row).collect()
    }

    pub async fn device_state(&self, device_id: &str) -> Result<DeviceState> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{STATE_SELECT} WHERE d.id = $1")))
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::UnknownDevice(device_id.to_owned()))?;
        state_from_row(&row)
    }
}

// Booleans are selected as integers: SQLite has no boolean values, PostgreSQL does.
const STATE_SELECT: &str = "SELECT d.id, CASE WHEN s.online THEN 1 ELSE 0 END, s.connected_at,
        s.disconnected_at, s.last_seen_at, s.firmware, s.boot, s.applied_config_version, c.version,
        s.reported_at
     FROM devices d
     LEFT JOIN device_state s ON s.device_id = d.id
     LEFT JOIN device_config c ON c.device_id = d.id";

fn state_from_row(row: &AnyRow) -> Result<DeviceState> {
    Ok(DeviceState {
        device_id: row.try_get(0)?,
        online: row.try_get::<i64, _>(1)? == 1,
        connected_at: row.try_get(2)?,
        disconnected_at: row.try_get(3)?,
        last_seen_at: row.try_get(4)?,
        firmware: row.try_get(5)?,
        boot: row.try_get(6)?,
        applied_config_version: row.try_get(7)?,
        desired_config_version: row.try_get(8)?,
        reported_at: row.try_get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_follows_connection_and_silence() {
        let never = DeviceState::default();
        assert_eq!(never.presence(10_000, 1_000), Presence::NeverSeen);
        let online = DeviceState { online: true, connected_at: Some(1_000), ..Default::default() };
        assert_eq!(online.presence(1_500, 1_000), Presence::Online);
        assert_eq!(online.presence(2_000, 1_000), Presence::Silent, "connected, nothing sent");
        let heard = DeviceState { last_seen_at: Some(9_500), ..online.clone() };
        assert_eq!(heard.presence(10_000, 1_000), Presence::Online);
        assert_eq!(heard.presence(10_500, 1_000), Presence::Silent);
        let gone = DeviceState { online: false, disconnected_at: Some(11_000), ..heard };
        assert_eq!(gone.presence(12_000, 1_000), Presence::Offline);
    }

    #[test]
    fn a_configuration_is_stale_until_its_version_is_reported() {
        let mut state = DeviceState::default();
        assert!(!state.config_stale(), "nothing desired");
        state.desired_config_version = Some(2);
        assert!(state.config_stale());
        state.applied_config_version = Some(1);
        assert!(state.config_stale());
        state.applied_config_version = Some(2);
        assert!(!state.config_stale());
    }
}

//! When a device's older keys stop decrypting: at once by hand, when the
//! device confirms a key delivered over the downlink, or at the end of the
//! grace period the operator gave the rotation. A key's `retired_at` may lie
//! in the future: it decrypts what arrives before that time.

use serde_json::json;
use sqlx::{Any, Row, Transaction};
use wenu_core::key_transfer::{ROTATE_KEY_COMMAND, parse_command_args};

use crate::devices::device_company;
use crate::store::{Change, now_ms};
use crate::{Registry, Result};

/// One key's retirement: from `at` (unix ms) on it no longer decrypts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRetirement {
    pub device_id: String,
    pub key_id: u32,
    pub at: i64,
}

impl Registry {
    /// Retires `device_id`'s keys older than `below` from `at` on, unless
    /// they retire sooner already; `confirmed_by` names the command whose
    /// result set it off. Returns the key ids whose retirement moved.
    pub(crate) async fn retire_keys_below(
        &self,
        device_id: &str,
        below: u32,
        at: i64,
        confirmed_by: Option<&str>,
    ) -> Result<Vec<u32>> {
        let mut tx = self.write_tx().await?;
        let retired = self.retire_keys_below_in(&mut tx, device_id, below, at, confirmed_by).await?;
        tx.commit().await?;
        Ok(retired)
    }

    async fn retire_keys_below_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        device_id: &str,
        below: u32,
        at: i64,
        confirmed_by: Option<&str>,
    ) -> Result<Vec<u32>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE device_keys SET retired_at = $3
             WHERE device_id = $1 AND key_id < $2 AND (retired_at IS NULL OR retired_at > $3)
             RETURNING key_id",
        )
        .bind(device_id)
        .bind(i64::from(below))
        .bind(at)
        .fetch_all(&mut **tx)
        .await?;
        let mut ids: Vec<u32> = ids.into_iter().map(|id| id as u32).collect();
        ids.sort_unstable();
        if !ids.is_empty() {
            let company = device_company(tx, device_id).await?;
            let detail = json!({ "key_ids": ids, "at": at, "confirmed_by": confirmed_by });
            let change = Change { action: "key.retire", company: Some(&company), target: device_id, detail };
            self.record_change(tx, change).await?;
        }
        Ok(ids)
    }

    /// A device's `done` for one of its commands, inside the transaction
    /// that records it: a `rotate_key` confirmed retires the keys older than
    /// the one it carried, now.
    pub(crate) async fn on_command_done(
        &self,
        tx: &mut Transaction<'static, Any>,
        device_id: &str,
        command_id: &str,
    ) -> Result<()> {
        let row = sqlx::query("SELECT name, args FROM device_commands WHERE id = $1 AND device_id = $2")
            .bind(command_id)
            .bind(device_id)
            .fetch_one(&mut **tx)
            .await?;
        if row.try_get::<String, _>(0)? != ROTATE_KEY_COMMAND {
            return Ok(());
        }
        let args: serde_json::Value = serde_json::from_str(&row.try_get::<String, _>(1)?).unwrap_or_default();
        if let Ok((new_key, _)) = parse_command_args(&args) {
            let retired =
                self.retire_keys_below_in(tx, device_id, new_key, now_ms(), Some(command_id)).await?;
            tracing::info!(device = device_id, key_id = new_key, ?retired, "device confirmed its new key");
        }
        Ok(())
    }

    /// Every key with a retirement, past or to come: what the stages apply
    /// to the keyring they decrypt with.
    pub async fn key_retirements(&self) -> Result<Vec<KeyRetirement>> {
        sqlx::query("SELECT device_id, key_id, retired_at FROM device_keys WHERE retired_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(KeyRetirement {
                    device_id: row.try_get(0)?,
                    key_id: row.try_get::<i64, _>(1)? as u32,
                    at: row.try_get(2)?,
                })
            })
            .collect()
    }
}

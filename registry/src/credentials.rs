//! Credentials taken back: revoked device certificates, and what the edge
//! needs to end the sessions that revoked or disabled credentials opened.

use std::collections::HashSet;

use serde_json::json;

use crate::devices::device_company;
use crate::store::{Change, now_ms};
use crate::{Error, Registry, Result};

/// Everything whose open MQTT sessions must end: the edge closes a session
/// whose credential is in here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Ids of revoked API tokens (alarm readers log in with one).
    pub token_ids: HashSet<String>,
    /// SHA-256 fingerprints (lowercase hex) of revoked client certificates.
    pub certificates: HashSet<String>,
    /// Devices that may not connect.
    pub disabled_devices: HashSet<String>,
}

/// A certificate fingerprint as the registry stores it: 64 lowercase hex digits.
pub fn normalise_fingerprint(fingerprint: &str) -> Result<String> {
    let hex: String = fingerprint.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(Error::Invalid(format!("{fingerprint:?} is not a SHA-256 fingerprint (64 hex digits)")))
    }
}

impl Registry {
    /// Refuses the client certificate with this SHA-256 fingerprint from
    /// now on, at the next handshake, and ends the sessions it opened.
    /// Revoking twice is not an error. Returns the fingerprint as stored.
    pub async fn revoke_certificate(&self, device_id: &str, fingerprint: &str) -> Result<String> {
        let fingerprint = normalise_fingerprint(fingerprint)?;
        let mut tx = self.write_tx().await?;
        let company = device_company(&mut tx, device_id).await?;
        let inserted = sqlx::query(
            "INSERT INTO revoked_certificates (fingerprint, device_id, revoked_at) VALUES ($1, $2, $3)
             ON CONFLICT (fingerprint) DO NOTHING",
        )
        .bind(&fingerprint)
        .bind(device_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted > 0 {
            let detail = json!({ "fingerprint": fingerprint });
            let change = Change {
                action: "device.revoke_certificate",
                company: Some(&company),
                target: device_id,
                detail,
            };
            self.record_change(&mut tx, change).await?;
        }
        tx.commit().await?;
        Ok(fingerprint)
    }

    pub async fn is_certificate_revoked(&self, fingerprint: &str) -> Result<bool> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT fingerprint FROM revoked_certificates WHERE fingerprint = $1")
                .bind(fingerprint.to_ascii_lowercase())
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// Every revoked token and certificate and every disabled device.
    pub async fn revoked(&self) -> Result<Revoked> {
        let token_ids = sqlx::query_scalar("SELECT id FROM api_tokens WHERE revoked_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        let certificates =
            sqlx::query_scalar("SELECT fingerprint FROM revoked_certificates").fetch_all(&self.pool).await?;
        let disabled_devices =
            sqlx::query_scalar("SELECT id FROM devices WHERE NOT enabled").fetch_all(&self.pool).await?;
        Ok(Revoked {
            token_ids: token_ids.into_iter().collect(),
            certificates: certificates.into_iter().collect(),
            disabled_devices: disabled_devices.into_iter().collect(),
        })
    }
}

/// The SHA-256 fingerprint of a DER certificate, as the registry stores it.
pub fn certificate_fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

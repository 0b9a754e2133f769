//! The registry handle: one connection pool on SQLite or PostgreSQL, chosen
//! by the URL, and the revision counter that tells readers something changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Connection, Executor, Transaction};

use crate::schema::migrator;
use crate::{Error, Result};

/// Handle on the registry database; cheap to clone.
///
/// Every change is written to the audit log in the transaction that makes
/// it, in the name of the handle's actor (`local` unless [`Registry::acting_as`]
/// says who).
#[derive(Clone)]
pub struct Registry {
    pub(crate) pool: AnyPool,
    actor: Arc<str>,
    sqlite: bool,
}

/// One change, as the audit log records it.
pub(crate) struct Change<'a> {
    /// e.g. `device.add`, `sensor.upsert`.
    pub action: &'static str,
    /// The company the change belongs to; `None` for platform-wide changes.
    pub company: Option<&'a str>,
    /// What was changed (a device id, `device/sensor`, a token id…).
    pub target: &'a str,
    /// The new values, never a secret.
    pub detail: serde_json::Value,
}

pub(crate) use wenu_core::clock::now_ms;

impl Registry {
    /// Connects to the registry at `url` (`sqlite:/path/registry.db` or
    /// `postgres://user@host/db`), creating an SQLite file if needed and
    /// migrating the schema to the current version.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let options: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            // SQLite serialises writers anyway; a few readers are plenty.
            .max_connections(if sqlite { 4 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL lets readers (the decrypt and enrich stages) run beside a writer.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        migrator().run(&pool).await?;
        Ok(Registry { pool, actor: Arc::from("local"), sqlite })
    }

    /// Who this handle's changes are recorded as made by.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The same registry, recording changes in the audit log as made by `actor`
    /// (an API token id, `cli`, …).
    pub fn acting_as(&self, actor: &str) -> Registry {
        Registry { pool: self.pool.clone(), actor: Arc::from(actor), sqlite: self.sqlite }
    }

    /// Opens (or creates) the SQLite registry file at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::connect(&format!("sqlite:{}?mode=rwc", path.display())).await
    }

    pub fn default_path(data_dir: &Path) -> PathBuf {
        data_dir.join("registry.db")
    }

    /// A number that grows with every change made through this API, so that
    /// snapshot holders (decrypt, enrich) reload only when something changed.
    pub async fn revision(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT value FROM revision WHERE id = 1").fetch_one(&self.pool).await?)
    }

    /// A transaction that writes. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so it waits its turn (`busy_timeout`) behind
    /// another writer; a deferred one that read first fails at once with
    /// "database is locked" when it tries to write while another connection
    /// holds the lock (seen with a rolled-back transaction still releasing it).
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        if self.sqlite {
            Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
        } else {
            Ok(self.pool.begin().await?)
        }
    }

    /// Closes the pool's connections (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        self.pool.close().await
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        Ok(self.pool.acquire().await?.ping().await?)
    }
}

impl Registry {
    /// Bumps the revision and writes the audit entry, inside the transaction
    /// that makes the change: a change is never without its entry. Returns
    /// the new revision.
    pub(crate) async fn record_change(
        &self,
        tx: &mut Transaction<'static, Any>,
        change: Change<'_>,
    ) -> Result<i64> {
        let revision: i64 =
            sqlx::query_scalar("UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value")
                .fetch_one(&mut **tx)
                .await?;
        sqlx::query(
            "INSERT INTO audit_log (revision, at, actor, action, company_id, target, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(revision)
        .bind(now_ms())
        .bind(&*self.actor)
        .bind(change.action)
        .bind(change.company)
        .bind(change.target)
        .bind(change.detail.to_string())
        .execute(&mut **tx)
        .await?;
        Ok(revision)
    }
}

/// Fails with [`Error::UnknownCompany`] unless `company` exists.
pub(crate) async fn require_company(tx: &mut Transaction<'static, Any>, company: &str) -> Result<()> {
    let exists =
        sqlx::query("SELECT 1 FROM companies WHERE id = $1").bind(company).fetch_optional(&mut **tx).await?;
    match exists {
        Some(_) => Ok(()),
        None => Err(Error::UnknownCompany(company.to_owned())),
    }
}

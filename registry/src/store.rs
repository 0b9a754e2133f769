//! The registry handle: one connection pool on SQLite or PostgreSQL, chosen
//! by the URL, and the revision counter that tells readers something changed.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Connection, Executor, Transaction};

use crate::Result;
use crate::schema::migrator;

/// Handle on the registry database; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    pub(crate) pool: AnyPool,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

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
        Ok(Registry { pool })
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

    /// Closes the pool's connections (SQLite checkpoints its WAL).
    pub async fn close(&self) {
        self.pool.close().await
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        Ok(self.pool.acquire().await?.ping().await?)
    }
}

/// Bumps the revision inside the transaction that makes the change.
pub(crate) async fn bump_revision(tx: &mut Transaction<'static, Any>) -> Result<()> {
    sqlx::query("UPDATE revision SET value = value + 1 WHERE id = 1").execute(&mut **tx).await?;
    Ok(())
}

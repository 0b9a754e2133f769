//! The audit log: who changed what in the registry, and when. Written by
//! [`Registry::record_change`] in the transaction of each change; read here.

use serde::Serialize;
use sqlx::Row;

use crate::{Registry, Result};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// The registry revision the change made; entries are ordered by it.
    pub revision: i64,
    /// Unix ms.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub company: Option<String>,
    pub target: String,
    pub detail: serde_json::Value,
}

impl Registry {
    /// The newest entries first, `limit` of them, older than revision
    /// `before` when given (the previous page's last revision); only one
    /// company's when `company` is given.
    pub async fn audit_log(
        &self,
        company: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let before = before.unwrap_or(i64::MAX);
        let sql = match company {
            Some(_) => {
                "SELECT revision, at, actor, action, company_id, target, detail FROM audit_log
                 WHERE revision < $1 AND company_id = $3 ORDER BY revision DESC LIMIT $2"
            }
            None => {
                "SELECT revision, at, actor, action, company_id, target, detail FROM audit_log
                 WHERE revision < $1 ORDER BY revision DESC LIMIT $2"
            }
        };
        let mut query = sqlx::query(sql).bind(before).bind(i64::from(limit));
        if let Some(company) = company {
            query = query.bind(company);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let detail: String = row.try_get(6)?;
                Ok(AuditEntry {
                    revision: row.try_get(0)?,
                    at: row.try_get(1)?,
                    actor: row.try_get(2)?,
                    action: row.try_get(3)?,
                    company: row.try_get(4)?,
                    target: row.try_get(5)?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
                })
            })
            .collect()
    }
}

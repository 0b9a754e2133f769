//! API tokens: bearer secrets for the dashboards and registry API, each
//! scoped to one company (or, for the platform's operators, to none).
//!
//! A token reads `wenu_{id}_{secret}`. Only the SHA-256 of the secret is
//! stored: the secret is 256 random bits, so a fast hash is as good as a slow
//! one against guessing, and verifying costs microseconds per request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{Change, now_ms, require_company};

/// The highest request rate a token may be given: each token has a bucket
/// of its own, so this and [`MAX_TOKENS_PER_COMPANY`] bound what one
/// company's tokens can ask of the server.
pub const MAX_RATE_PER_SECOND: u32 = 1_000;

/// Live (unrevoked) tokens a company may hold.
pub const MAX_TOKENS_PER_COMPANY: i64 = 100;
use crate::{Error, Registry, Result};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads its company's data.
    Viewer,
    /// Reads its company's data and manages its sites, devices, sensors and tokens.
    Admin,
    /// The platform's operator: every company, and companies themselves.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

/// A token as the registry knows it; the secret is not in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: String,
    /// `None` exactly for operator tokens.
    pub company: Option<String>,
    pub role: Role,
    pub name: String,
    /// Requests per second this token may make; the server's default when `None`.
    pub rate_per_second: Option<u32>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// What [`Registry::create_token`] gives back: the only time the bearer
/// string exists outside its holder.
pub struct NewToken {
    pub token: ApiToken,
    pub bearer: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken").field("token", &self.token).finish_non_exhaustive()
    }
}

const TOKEN_COLUMNS: &str = "id, company_id, role, name, rate_per_second, created_at, revoked_at";

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Registry {
    /// Creates a token for `company` with `role`; operators have no company,
    /// everyone else exactly one.
    pub async fn create_token(
        &self,
        company: Option<&str>,
        role: Role,
        name: &str,
        rate_per_second: Option<u32>,
    ) -> Result<NewToken> {
        match (company, role) {
            (None, Role::Operator) | (Some(_), Role::Viewer | Role::Admin) => {}
            (Some(_), Role::Operator) => {
                return Err(Error::Invalid("an operator token has no company".into()));
            }
            (None, _) => return Err(Error::Invalid(format!("a {} token needs a company", role.as_str()))),
        }
        if name.is_empty() || name.len() > 100 {
            return Err(Error::Invalid("a token name is 1 to 100 characters".into()));
        }
        if let Some(rate) = rate_per_second
            && !(1..=MAX_RATE_PER_SECOND).contains(&rate)
        {
            return Err(Error::Invalid(format!(
                "a token's rate limit is 1 to {MAX_RATE_PER_SECOND} requests per second, not {rate}"
            )));
        }
        let mut bytes = [0u8; 40];
        rand::thread_rng().fill_bytes(&mut bytes);
        let id = hex::encode(&bytes[..8]);
        let secret = URL_SAFE_NO_PAD.encode(&bytes[8..]);
        let token = ApiToken {
            id: id.clone(),
            company: company.map(str::to_owned),
            role,
            name: name.to_owned(),
            rate_per_second,
            created_at: now_ms(),
            revoked_at: None,
        };
        let mut tx = self.write_tx().await?;
        if let Some(company) = company {
            require_company(&mut tx, company).await?;
            let live: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM api_tokens WHERE company_id = $1 AND revoked_at IS NULL",
            )
            .bind(company)
            .fetch_one(&mut *tx)
            .await?;
            if live >= MAX_TOKENS_PER_COMPANY {
                return Err(Error::Invalid(format!(
                    "{company} has {live} live tokens, the most a company may have; revoke one first"
                )));
            }
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, company_id, role, name, secret_sha256, rate_per_second, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(company)
        .bind(role.as_str())
        .bind(name)
        .bind(sha256_hex(&secret))
        .bind(rate_per_second.map(i64::from))
        .bind(token.created_at)
        .execute(&mut *tx)
        .await?;
        let detail = json!({ "role": role, "name": name, "rate_per_second": rate_per_second });
        let change = Change { action: "token.create", company, target: &id, detail };
        self.record_change(&mut tx, change).await?;
        tx.commit().await?;
        Ok(NewToken { token, bearer: format!("wenu_{id}_{secret}") })
    }

    /// The live token that `bearer` is, or `None` (malformed, unknown,
    /// wrong secret or revoked: the caller learns no more than that).
    pub async fn verify_token(&self, bearer: &str) -> Result<Option<ApiToken>> {
        let Some((id, secret)) = bearer.strip_prefix("wenu_").and_then(|rest| rest.split_once('_')) else {
            return Ok(None);
        };
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS}, secret_sha256 FROM api_tokens WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get(7)?;
        let token = token_from_row(&row)?;
        // Both sides are digests: comparing them leaks nothing about the secret.
        Ok((stored == sha256_hex(secret) && token.revoked_at.is_none()).then_some(token))
    }

    /// A company's tokens, or every token; revoked ones included.
    pub async fn list_tokens(&self, company: Option<&str>) -> Result<Vec<ApiToken>> {
        let rows = match company {
            Some(company) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE company_id = $1 ORDER BY created_at, id"
                )))
                .bind(company)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
                )))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(token_from_row).collect()
    }

    pub async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Revokes a token for good.
    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let company: Option<Option<String>> =
            sqlx::query_scalar("SELECT company_id FROM api_tokens WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(company) = company else { return Err(Error::UnknownToken(id.to_owned())) };
        sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        let change =
            Change { action: "token.revoke", company: company.as_deref(), target: id, detail: json!({}) };
        self.record_change(&mut tx, change).await?;
        Ok(tx.commit().await?)
    }
}

fn token_from_row(row: &AnyRow) -> Result<ApiToken> {
    let role: String = row.try_get(2)?;
    Ok(ApiToken {
        id: row.try_get(0)?,
        company: row.try_get(1)?,
        role: Role::parse(&role).ok_or_else(|| Error::Invalid(format!("stored token role {role:?}")))?,
        name: row.try_get(3)?,
        rate_per_second: row.try_get::<Option<i64>, _>(4)?.map(|r| r as u32),
        created_at: row.try_get(5)?,
        revoked_at: row.try_get(6)?,
    })
}

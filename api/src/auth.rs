//! Who is calling: the bearer token, verified against the registry and
//! rate-limited, and what its role lets it see.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use wenu_registry::{ApiToken, Role};

use crate::error::{ApiError, Result};
use crate::state::ApiState;

/// The verified token of a request. Every handler that takes one is
/// authenticated and rate-limited.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: ApiToken,
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self> {
        let bearer = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let token = match state.0.recent.token(bearer) {
            Some(token) => token,
            None => {
                let token = state.0.registry.verify_token(bearer).await?.ok_or(ApiError::Unauthorized)?;
                state.0.recent.remember_token(bearer, &token);
                token
            }
        };
        state
            .0
            .rate_limits
            .check(&token.id, token.rate_per_second)
            .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
        Ok(Caller { token })
    }
}

/// The bearer token of a request's `Authorization` header.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())?;
    header.strip_prefix("Bearer ").map(str::trim)
}

impl Caller {
    pub fn is_operator(&self) -> bool {
        self.token.role == Role::Operator
    }

    /// The company a request acts on: the token's own, or for an operator
    /// the one it names. Naming another company than one's own is refused.
    pub fn company(&self, requested: Option<&str>) -> Result<String> {
        match (&self.token.company, requested) {
            (Some(own), None) => Ok(own.clone()),
            (Some(own), Some(requested)) if own == requested => Ok(own.clone()),
            (Some(_), Some(_)) => Err(ApiError::Forbidden("this token is scoped to another company".into())),
            (None, Some(requested)) => Ok(requested.to_owned()),
            (None, None) => Err(ApiError::bad("an operator token must name the company (?company=…)")),
        }
    }

    /// Like [`Caller::company`], for changes: admins of the company and operators only.
    pub fn company_to_manage(&self, requested: Option<&str>) -> Result<String> {
        if self.token.role == Role::Viewer {
            return Err(ApiError::Forbidden("a viewer token cannot change the registry".into()));
        }
        self.company(requested)
    }

    /// The company, for what only its admins may read (delivery errors of
    /// its webhooks, for one).
    pub fn company_to_administer(&self, requested: Option<&str>) -> Result<String> {
        if self.token.role == Role::Viewer {
            return Err(ApiError::Forbidden("only an admin token can read this".into()));
        }
        self.company(requested)
    }

    pub fn require_operator(&self) -> Result<()> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("only an operator token can do this".into()))
        }
    }

    /// The audit log's name for this caller.
    pub fn actor(&self) -> String {
        format!("token:{} ({})", self.token.id, self.token.name)
    }
}

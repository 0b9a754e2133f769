//! The one error type of the API, and its JSON form:
//! `{"error": {"code": "bad_request", "message": "…"}}`. Codes are stable;
//! messages are for people.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter is missing, malformed or out of its limits.
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The token is valid but its role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Also what another company's resources look like: no existence leaks.
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The server's or this token's live streams are all open.
    #[error("too many live streams are open; close one or try later")]
    TooManyStreams,
    #[error("{0} is not available on this server")]
    Unavailable(&'static str),
    /// Something broke on our side; details go to the log, not the client.
    #[error("internal error")]
    Internal(String),
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::TooManyStreams => "too_many_streams",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } | ApiError::TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn bad(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "API request failed");
        }
        let body = Json(json!({ "error": { "code": self.code(), "message": self.to_string() } }));
        let mut response = (self.status(), body).into_response();
        match self {
            ApiError::RateLimited { retry_after_secs } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::Unauthorized => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<wenu_registry::Error> for ApiError {
    fn from(err: wenu_registry::Error) -> Self {
        use wenu_registry::Error as E;
        match err {
            E::UnknownCompany(id) => ApiError::NotFound(format!("company {id}")),
            E::UnknownDevice(id) => ApiError::NotFound(format!("device {id}")),
            E::UnknownSite(id) => ApiError::NotFound(format!("site {id}")),
            E::UnknownSensor(id) => ApiError::NotFound(format!("sensor {id}")),
            E::UnknownToken(id) => ApiError::NotFound(format!("token {id}")),
            E::UnknownRule(id) => ApiError::NotFound(format!("rule {id}")),
            E::UnknownChannel(id) => ApiError::NotFound(format!("channel {id}")),
            E::UnknownSilence(id) => ApiError::NotFound(format!("silence {id}")),
            E::DeviceExists(id) => ApiError::Conflict(format!("device {id} already exists")),
            E::Invalid(_) | E::InvalidId(_) => ApiError::BadRequest(err.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<wenu_alarms::Error> for ApiError {
    fn from(err: wenu_alarms::Error) -> Self {
        ApiError::Internal(err.to_string())
    }
}

impl From<wenu_stats::Error> for ApiError {
    fn from(err: wenu_stats::Error) -> Self {
        ApiError::Internal(err.to_string())
    }
}

impl From<wenu_core::Error> for ApiError {
    fn from(err: wenu_core::Error) -> Self {
        ApiError::Internal(err.to_string())
    }
}

//! The one error type of the registry.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("registry database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("registry schema migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unknown company {0}")]
    UnknownCompany(String),
    #[error("unknown device {0}")]
    UnknownDevice(String),
    #[error("unknown sensor {0}")]
    UnknownSensor(String),
    #[error("unknown token {0}")]
    UnknownToken(String),
    #[error("unknown rule {0}")]
    UnknownRule(String),
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    #[error("unknown silence {0}")]
    UnknownSilence(String),
    #[error("unknown site {0}")]
    UnknownSite(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("device {0} already exists")]
    DeviceExists(String),
    #[error("invalid id {0:?}: use 1-64 ASCII letters, digits, '-' or '_'")]
    InvalidId(String),
    #[error("password hashing: {0}")]
    PasswordHash(String),
    #[error(transparent)]
    Core(#[from] wenu_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The one error type of the alarms crate.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid rule: {0}")]
    InvalidRule(String),
    /// A stored alarm item does not parse.
    #[error("alarm store item unreadable: {0}")]
    Corrupt(String),
    #[error("registry snapshot could not be loaded: {0}")]
    Registry(String),
    #[error("background task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Store(#[from] wenu_core::Error),
}

impl Error {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store(err) => err.is_retryable(),
            Error::Registry(_) | Error::Task(_) => true,
            Error::InvalidRule(_) | Error::Corrupt(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

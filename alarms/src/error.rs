//! The one error type of the alarms crate.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid rule: {0}")]
    InvalidRule(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The one error type of the stats crate.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("stored rollup is unreadable: {0}")]
    Corrupt(String),
    #[error("job is unreadable: {0}")]
    BadJob(String),
    #[error(transparent)]
    Store(#[from] wenu_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The one error type of the enrich crate.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("registry snapshot could not be loaded: {0}")]
    Registry(String),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("saved enrich state is unreadable: {0}")]
    State(String),
    #[error("background task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Core(#[from] wenu_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

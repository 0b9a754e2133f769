//! The one error type of the lake crate.

/// What can go wrong writing or reading the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[cfg(feature = "sql")]
    #[error(transparent)]
    Sql(#[from] datafusion::error::DataFusionError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("saved lake state is unreadable: {0}")]
    State(#[from] serde_json::Error),
    #[error("keys and devices could not be loaded: {0}")]
    Keys(String),
    #[error("background task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Core(#[from] wenu_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The one error type of the edge.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("MQTT listener on {addr}: {message}")]
    Listener { addr: String, message: String },
    #[error("edge counters file {path}: {source}")]
    Counters {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

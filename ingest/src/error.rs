//! The one error type of the edge.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("MQTT listener on {addr}: {message}")]
    Listener { addr: String, message: String },
    #[error("edge counters file {path}: {source}")]
    Counters {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    #[error("certificate file {path}: {source}")]
    CertificateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS setup from {path}: {message}")]
    Tls { path: PathBuf, message: String },
    #[error("registry: {0}")]
    Registry(#[from] wenu_registry::Error),
    #[error(transparent)]
    Core(#[from] wenu_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! The one error type of the simulator.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("report file {path}: {source}")]
    Report {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("client certificate of {device}: {source}")]
    ClientCertificate {
        device: String,
        #[source]
        source: std::io::Error,
    },
    #[error("load connection of {device}: {source}")]
    Load {
        device: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{device}: the server answered {reply}")]
    Refused { device: String, reply: String },
    #[error(transparent)]
    Core(#[from] wenu_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

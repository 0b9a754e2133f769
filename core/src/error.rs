//! The one error type of the core crate.

use std::path::PathBuf;

/// Everything that can go wrong in the shared domain.
///
/// Envelope variants are *rejection reasons*: later stages count and quarantine
/// records by them, so each names one cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("envelope truncated: {len} bytes, at least {min} expected")]
    Truncated { len: usize, min: usize },
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    #[error("no key {key_id} for device {device_id}")]
    UnknownKey { device_id: String, key_id: u32 },
    #[error("key {key_id} of device {device_id} is retired")]
    RetiredKey { device_id: String, key_id: u32 },
    #[error("unknown device {0}")]
    UnknownDevice(String),
    /// The GCM tag did not verify: the ciphertext, header or device id was
    /// altered, or the wrong key was used.
    #[error("envelope failed authentication (tampered, or sealed for another device or key)")]
    Tampered,
    #[error("this key has sealed its 2^32 messages; rotate the key")]
    NonceExhausted,
    #[error("malformed plaintext: {0}")]
    MalformedPlaintext(String),

    #[error("keyring {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    KeyringPermissions { path: PathBuf, mode: u32 },
    #[error("{path}: {message}")]
    FileFormat { path: PathBuf, message: String },

    #[error("invalid setting: {0}")]
    Config(String),

    #[error("invalid topic {0:?}: expected wenu/{{device_id}}/telemetry")]
    InvalidTopic(String),

    /// A stream backend failed. `retryable` says whether the same call may
    /// succeed later (throttling, a full disk that may drain, a lost
    /// connection) or will keep failing (corruption, bad arguments).
    #[error("stream backend: {message}")]
    Stream { message: String, retryable: bool },
    /// A queue backend failed; `retryable` as for `Stream`.
    #[error("queue backend: {message}")]
    Queue { message: String, retryable: bool },
    /// A table store backend failed; `retryable` as for `Stream`.
    #[error("table store: {message}")]
    Table { message: String, retryable: bool },
    /// The keyring's store failed (Secrets Manager on AWS); `retryable` as
    /// for `Stream`. The message names secrets, never their contents.
    #[error("keyring store: {message}")]
    Keyring { message: String, retryable: bool },
    /// Registering a device with the cloud's device registry (AWS IoT Core:
    /// thing, certificate, policy) failed.
    #[error("device registration: {message}")]
    Provisioning { message: String, retryable: bool },
    /// Publishing to a device's downlink topic (IoT Core's data plane on
    /// AWS) failed; `retryable` as for `Stream`.
    #[error("downlink: {message}")]
    Downlink { message: String, retryable: bool },
    /// A conditional write found the item not in the expected state: someone
    /// else wrote it first. Read it again and retry.
    #[error("condition failed: {0}")]
    ConditionFailed(String),

    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Short, stable label for metrics and quarantine partitions.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::UnsupportedVersion(_) => "unsupported_version",
            Error::UnknownKey { .. } => "unknown_key",
            Error::RetiredKey { .. } => "retired_key",
            Error::UnknownDevice(_) => "unknown_device",
            Error::Tampered => "tampered",
            Error::NonceExhausted => "nonce_exhausted",
            Error::MalformedPlaintext(_) => "malformed_plaintext",
            Error::KeyringPermissions { .. } => "keyring_permissions",
            Error::FileFormat { .. } => "file_format",
            Error::Config(_) => "config",
            Error::InvalidTopic(_) => "invalid_topic",
            Error::Stream { .. } => "stream",
            Error::Queue { .. } => "queue",
            Error::Table { .. } => "table",
            Error::Keyring { .. } => "keyring",
            Error::Provisioning { .. } => "provisioning",
            Error::Downlink { .. } => "downlink",
            Error::ConditionFailed(_) => "condition_failed",
            Error::Io { .. } => "io",
        }
    }
}

impl Error {
    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Stream { retryable, .. }
            | Error::Queue { retryable, .. }
            | Error::Table { retryable, .. }
            | Error::Keyring { retryable, .. }
            | Error::Provisioning { retryable, .. }
            | Error::Downlink { retryable, .. } => *retryable,
            Error::ConditionFailed(_) => true,
            _ => false,
        }
    }
}

//! Why a record was not turned into readings.

use wenu_core::Error;

/// The reason a record was rejected. Each has a stable label, used as the
/// quarantine partition (`quarantine/reason={label}/…`) and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    Truncated,
    UnsupportedVersion,
    UnknownKey,
    RetiredKey,
    UnknownDevice,
    DisabledDevice,
    /// The GCM tag did not verify: altered bytes, or sealed for another device or key.
    Tampered,
    MalformedPlaintext,
    /// A reading's value is NaN or infinite.
    NonFiniteValue,
    /// The event time is further ahead of the arrival time than clocks drift.
    TimestampInFuture,
    /// The event time is before the device was provisioned.
    TimestampBeforeDevice,
    /// The sequence number is older than the device's dedupe window: a replay
    /// of an old message, or a device whose counter went backwards.
    ReplayedSeq,
}

impl RejectReason {
    pub const ALL: [RejectReason; 12] = [
        RejectReason::Truncated,
        RejectReason::UnsupportedVersion,
        RejectReason::UnknownKey,
        RejectReason::RetiredKey,
        RejectReason::UnknownDevice,
        RejectReason::DisabledDevice,
        RejectReason::Tampered,
        RejectReason::MalformedPlaintext,
        RejectReason::NonFiniteValue,
        RejectReason::TimestampInFuture,
        RejectReason::TimestampBeforeDevice,
        RejectReason::ReplayedSeq,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RejectReason::Truncated => "truncated",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::UnknownKey => "unknown_key",
            RejectReason::RetiredKey => "retired_key",
            RejectReason::UnknownDevice => "unknown_device",
            RejectReason::DisabledDevice => "disabled_device",
            RejectReason::Tampered => "tampered",
            RejectReason::MalformedPlaintext => "malformed_plaintext",
            RejectReason::NonFiniteValue => "non_finite_value",
            RejectReason::TimestampInFuture => "timestamp_in_future",
            RejectReason::TimestampBeforeDevice => "timestamp_before_device",
            RejectReason::ReplayedSeq => "replayed_seq",
        }
    }

    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.label() == label)
    }
}

/// A rejected record: the reason and a human-readable detail (never a key).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection { reason, detail: detail.into() }
    }
}

impl From<Error> for Rejection {
    fn from(err: Error) -> Self {
        let reason = match &err {
            Error::Truncated { .. } => RejectReason::Truncated,
            Error::UnsupportedVersion(_) => RejectReason::UnsupportedVersion,
            Error::UnknownKey { .. } => RejectReason::UnknownKey,
            Error::RetiredKey { .. } => RejectReason::RetiredKey,
            Error::UnknownDevice(_) => RejectReason::UnknownDevice,
            Error::MalformedPlaintext(_) => RejectReason::MalformedPlaintext,
            // Everything else the envelope code returns means the bytes did not authenticate.
            _ => RejectReason::Tampered,
        };
        Rejection::new(reason, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_are_unique() {
        let mut labels: Vec<_> = RejectReason::ALL.iter().map(|r| r.label()).collect();
        for reason in RejectReason::ALL {
            assert_eq!(RejectReason::from_label(reason.label()), Some(reason));
        }
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), RejectReason::ALL.len());
    }
}

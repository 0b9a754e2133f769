//! The three resolutions of the stats and their buckets.

use std::time::Duration;

/// A bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    Minute,
    Hour,
    Day,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

    /// `1m`, `1h`, `1d`: in keys, on the command line and in the API.
    pub fn label(self) -> &'static str {
        match self {
            Resolution::Minute => "1m",
            Resolution::Hour => "1h",
            Resolution::Day => "1d",
        }
    }

    pub fn parse(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.label() == label)
    }

    pub fn width_ms(self) -> i64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
            Resolution::Day => 86_400_000,
        }
    }

    /// Start (unix ms, UTC) of the bucket holding `ts_ms`.
    pub fn bucket_start(self, ts_ms: i64) -> i64 {
        ts_ms - ts_ms.rem_euclid(self.width_ms())
    }

    /// How long buckets are kept unless a company says otherwise:
    /// 7 days of minutes, 90 days of hours, 2 years of days.
    pub fn default_retention(self) -> Duration {
        const DAY: u64 = 86_400;
        Duration::from_secs(match self {
            Resolution::Minute => 7 * DAY,
            Resolution::Hour => 90 * DAY,
            Resolution::Day => 730 * DAY,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_align_to_utc_and_labels_round_trip() {
        let ts = 1_795_714_234_567; // 2026-11-26T17:30:34.567Z
        assert_eq!(Resolution::Minute.bucket_start(ts), 1_795_714_200_000);
        assert_eq!(Resolution::Hour.bucket_start(ts), 1_795_712_400_000);
        assert_eq!(Resolution::Day.bucket_start(ts), 1_795_651_200_000);
        assert_eq!(Resolution::Minute.bucket_start(-1), -60_000);
        for r in Resolution::ALL {
            assert_eq!(Resolution::parse(r.label()), Some(r));
        }
    }
}

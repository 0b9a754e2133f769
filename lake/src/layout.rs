//! Where things live in the lake:
//!
//! ```text
//! readings/company={c}/date={yyyy-mm-dd}/hour={hh}/part-{first}-{last}.parquet
//! quarantine/reason={r}/date={yyyy-mm-dd}/part-{first}-{last}.parquet
//! ```
//!
//! `first` and `last` are the stream positions the flush covered, zero-padded
//! so names sort by position. Writing the same range again yields the same
//! names, which is what makes a redo after a crash overwrite instead of add.

use chrono::{DateTime, Utc};
use object_store::path::Path;

/// The hour partition of an event time (unix ms, UTC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourPartition {
    pub company: String,
    /// `yyyy-mm-dd`
    pub date: String,
    /// `00`–`23`
    pub hour: String,
}

impl HourPartition {
    pub fn of(company: &str, ts_ms: i64) -> Self {
        let at = utc(ts_ms);
        HourPartition {
            company: company.to_owned(),
            date: at.format("%Y-%m-%d").to_string(),
            hour: at.format("%H").to_string(),
        }
    }

    pub fn dir(&self) -> Path {
        Path::from(format!("readings/company={}/date={}/hour={}", self.company, self.date, self.hour))
    }

    /// The partition a directory path names, if it is one.
    pub fn parse(dir: &Path) -> Option<Self> {
        let parts: Vec<_> = dir.parts().collect();
        match parts.as_slice() {
            [root, company, date, hour] if root.as_ref() == "readings" => Some(HourPartition {
                company: company.as_ref().strip_prefix("company=")?.to_owned(),
                date: date.as_ref().strip_prefix("date=")?.to_owned(),
                hour: hour.as_ref().strip_prefix("hour=")?.to_owned(),
            }),
            _ => None,
        }
    }
}

/// `quarantine/reason={reason}/date={yyyy-mm-dd}`, dated by arrival.
pub fn quarantine_dir(reason: &str, received_at_ms: i64) -> Path {
    Path::from(format!("quarantine/reason={reason}/date={}", utc(received_at_ms).format("%Y-%m-%d")))
}

/// `part-{first}-{last}.parquet`
pub fn part_name(first: u64, last: u64) -> String {
    format!("part-{first:020}-{last:020}.parquet")
}

/// The stream range a part file covers, from its name.
pub fn parse_part_name(name: &str) -> Option<(u64, u64)> {
    let range = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (first, last) = range.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

fn utc(ts_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ts_ms).unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_by_event_hour_in_utc() {
        // 2026-11-26T17:59:59.999Z and one millisecond later
        let p = HourPartition::of("acme", 1_795_715_999_999);
        assert_eq!(p.dir().as_ref(), "readings/company=acme/date=2026-11-26/hour=17");
        assert_eq!(HourPartition::of("acme", 1_795_716_000_000).hour, "18");
        assert_eq!(HourPartition::parse(&p.dir()), Some(p));
        assert_eq!(HourPartition::parse(&Path::from("quarantine/reason=x/date=y")), None);
    }

    #[test]
    fn part_names_sort_by_position_and_parse_back() {
        assert_eq!(part_name(7, 1234), "part-00000000000000000007-00000000000000001234.parquet");
        assert!(part_name(9, 10) < part_name(10, 11));
        assert_eq!(parse_part_name(&part_name(7, 1234)), Some((7, 1234)));
        assert_eq!(parse_part_name("part-x.parquet"), None);
    }

    #[test]
    fn quarantine_is_dated_by_arrival() {
        assert_eq!(quarantine_dir("tampered", 0).as_ref(), "quarantine/reason=tampered/date=1970-01-01");
    }
}

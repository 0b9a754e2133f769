//! Stats jobs: what enrich queues per series, and the worker's handler that
//! folds a job into the table store.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wenu_core::table::{Expect, ItemKey, TableStore, Write, query_all};

use crate::resolution::Resolution;
use crate::rollup::{Rollup, Summary};
use crate::{Error, Result};

/// One time series: a sensor of a device of a company.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    pub company: String,
    pub device: String,
    pub sensor: String,
}

impl SeriesKey {
    /// The table partition of this series at `resolution`.
    pub fn partition(&self, resolution: Resolution) -> String {
        format!("{}#{}#{}#{}", self.company, self.device, self.sensor, resolution.label())
    }

    /// The queue group: one worker at a time per series.
    pub fn group(&self) -> String {
        format!("{}#{}#{}", self.company, self.device, self.sensor)
    }
}

/// One normalised reading of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The device's message sequence number: the reading's identity in its series.
    pub seq: u64,
    /// Event time, unix ms.
    pub ts: i64,
    pub value: f64,
}

/// Readings of one series, as enrich queues them, with how long their
/// company keeps stats: the worker needs nothing else (no registry lookup
/// in the stats Lambda).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub series: SeriesKey,
    pub points: Vec<Point>,
    #[serde(default)]
    pub retention: Retention,
}

impl Job {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a job always serializes")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::BadJob(e.to_string()))
    }
}

/// How long each resolution's buckets are kept (a company's setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    #[serde(with = "seconds", rename = "minute_s")]
    pub minute: Duration,
    #[serde(with = "seconds", rename = "hour_s")]
    pub hour: Duration,
    #[serde(with = "seconds", rename = "day_s")]
    pub day: Duration,
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            minute: Resolution::Minute.default_retention(),
            hour: Resolution::Hour.default_retention(),
            day: Resolution::Day.default_retention(),
        }
    }
}

impl Retention {
    /// A company's retention in days per resolution; `None`s take the defaults.
    pub fn from_days(minute: Option<u32>, hour: Option<u32>, day: Option<u32>) -> Self {
        let days = |d: Option<u32>, default: Duration| {
            d.map_or(default, |d| Duration::from_secs(u64::from(d) * 86_400))
        };
        let defaults = Retention::default();
        Retention {
            minute: days(minute, defaults.minute),
            hour: days(hour, defaults.hour),
            day: days(day, defaults.day),
        }
    }

    pub fn of(&self, resolution: Resolution) -> Duration {
        match resolution {
            Resolution::Minute => self.minute,
            Resolution::Hour => self.hour,
            Resolution::Day => self.day,
        }
    }

    /// When the bucket starting at `bucket_start` (unix ms) expires, unix seconds.
    pub fn expires_at(&self, resolution: Resolution, bucket_start: i64) -> i64 {
        (bucket_start + resolution.width_ms()) / 1000 + self.of(resolution).as_secs() as i64
    }
}

/// What applying a job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobReport {
    /// Readings counted for the first time (per resolution, so up to 3 per point).
    pub counted: u64,
    /// Readings counted for the first time in the finest rollup: each reading once.
    pub new_readings: u64,
    /// Readings the buckets already had: redelivered.
    pub already_counted: u64,
    pub buckets_written: u64,
}

/// How often a job is re-read and retried when another writer got to a
/// bucket first (only possible when the queue redelivered a job that was
/// still being worked on).
const MAX_ATTEMPTS: usize = 8;

/// Folds `job` into its buckets: the stats worker's handler, the same on one
/// machine and in the stats Lambda. Idempotent: applying a job again, or
/// after a partial application, counts nothing twice.
pub async fn apply_job(table: &dyn TableStore, job: &Job) -> Result<JobReport> {
    Ok(apply_jobs(table, &[job]).await?.pop().unwrap_or_default())
}

/// The buckets one job touches, with its points in each.
type Plan<'a> = BTreeMap<(Resolution, i64), Vec<&'a Point>>;

/// Folds several jobs of *different* series in one read and one
/// transaction: one commit for all of them instead of one each (group
/// commit). All or nothing, like [`apply_job`], and as idempotent.
pub async fn apply_jobs(table: &dyn TableStore, jobs: &[&Job]) -> Result<Vec<JobReport>> {
    let mut seen = std::collections::HashSet::new();
    if !jobs.iter().all(|job| seen.insert(&job.series)) {
        return Err(Error::BadJob("one call may hold only one job per series".into()));
    }
    let plans: Vec<Plan> = jobs
        .iter()
        .map(|job| {
            let mut plan = Plan::new();
            for resolution in Resolution::ALL {
                for point in &job.points {
                    plan.entry((resolution, resolution.bucket_start(point.ts))).or_default().push(point);
                }
            }
            plan
        })
        .collect();
    let keys: Vec<ItemKey> = jobs
        .iter()
        .zip(&plans)
        .flat_map(|(job, plan)| {
            plan.keys().map(|&(resolution, start)| ItemKey {
                partition: job.series.partition(resolution),
                sort: start,
            })
        })
        .collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut stored = table.get_many(&keys).await?.into_iter();
        let mut keys = keys.iter();
        let mut writes = Vec::new();
        let mut reports = Vec::with_capacity(jobs.len());
        for (job, plan) in jobs.iter().zip(&plans) {
            let mut report = JobReport::default();
            for (&(resolution, start), points) in plan {
                let (key, item) = (keys.next().expect("a key per bucket"), stored.next().flatten());
                let (mut rollup, expect) = match item {
                    Some(item) => (Rollup::from_bytes(&item.value)?, Expect::Version(item.version)),
                    None => (Rollup::default(), Expect::Absent),
                };
                let before = rollup.count;
                for point in points {
                    if !rollup.add(point.seq, point.ts, point.value) {
                        report.already_counted += 1;
                    }
                }
                if rollup.count == before {
                    continue;
                }
                report.counted += rollup.count - before;
                if resolution == Resolution::Minute {
                    report.new_readings += rollup.count - before;
                }
                report.buckets_written += 1;
                let expires_at = Some(job.retention.expires_at(resolution, start));
                writes.push(Write { key: key.clone(), value: rollup.to_bytes().into(), expires_at, expect });
            }
            reports.push(report);
        }
        if writes.is_empty() {
            return Ok(reports);
        }
        match table.transact(writes).await {
            Ok(()) => return Ok(reports),
            Err(wenu_core::Error::ConditionFailed(_)) if attempt < MAX_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What a query shows of the buckets of a series at `resolution` that
/// start in `from..to` (unix ms): their summaries, read without decoding
/// the sketches and sequence numbers stored behind them.
pub async fn read_summaries(
    table: &dyn TableStore,
    series: &SeriesKey,
    resolution: Resolution,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, Summary)>> {
    read_buckets(table, &series.partition(resolution), from..to, Summary::from_bytes).await
}

/// The buckets of a series at `resolution` that start in `from..to` (unix ms).
pub async fn read_series(
    table: &dyn TableStore,
    series: &SeriesKey,
    resolution: Resolution,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, Rollup)>> {
    read_buckets(table, &series.partition(resolution), from..to, Rollup::from_bytes).await
}

async fn read_buckets<T>(
    table: &dyn TableStore,
    partition: &str,
    range: std::ops::Range<i64>,
    decode: fn(&[u8]) -> Result<T>,
) -> Result<Vec<(i64, T)>> {
    query_all(table, partition, range)
        .await?
        .into_iter()
        .map(|item| Ok((item.key.sort, decode(&item.value)?)))
        .collect()
}

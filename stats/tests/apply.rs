//! The stats handler against the embedded table store: redelivered,
//! duplicated and reordered jobs count every reading once; buckets expire.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use wenu_core::clock::ManualClock;
use wenu_local::SqliteTable;
use wenu_stats::{Job, Point, Resolution, Retention, SeriesKey, apply_job, read_series};

/// 2026-11-26T17:30:00Z, which the table takes for now: the readings'
/// buckets expire after their retention, whatever today is.
const NOW: i64 = 1_795_714_200_000;

fn series() -> SeriesKey {
    SeriesKey { company: "acme".into(), device: "dev-1".into(), sensor: "temp-1".into() }
}

/// The reading of message `seq`: the same every time it is sent.
fn point(seq: u64) -> Point {
    Point { seq, ts: NOW + seq as i64 * 7_000, value: ((seq * 37) % 101) as f64 - 50.0 }
}

fn table() -> (tempfile::TempDir, SqliteTable) {
    let dir = tempfile::tempdir().unwrap();
    let table = SqliteTable::open(&dir.path().join("stats.db")).unwrap().with_clock(ManualClock::at(NOW));
    (dir, table)
}

/// count, min, max, sum and last per bucket, computed directly from distinct readings.
fn expected(
    seqs: impl IntoIterator<Item = u64>,
    resolution: Resolution,
) -> BTreeMap<i64, (u64, f64, f64, f64, f64)> {
    let mut buckets: BTreeMap<i64, Vec<Point>> = BTreeMap::new();
    let distinct: std::collections::BTreeSet<u64> = seqs.into_iter().collect();
    for p in distinct.into_iter().map(point) {
        buckets.entry(resolution.bucket_start(p.ts)).or_default().push(p);
    }
    buckets
        .into_iter()
        .map(|(start, points)| {
            let values = points.iter().map(|p| p.value);
            let last = points.iter().max_by_key(|p| (p.ts, p.seq)).unwrap().value;
            let min = values.clone().fold(f64::INFINITY, f64::min);
            let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
            (start, (points.len() as u64, min, max, values.sum(), last))
        })
        .collect()
}

async fn stored(table: &SqliteTable, resolution: Resolution) -> BTreeMap<i64, (u64, f64, f64, f64, f64)> {
    read_series(table, &series(), resolution, NOW - 86_400_000, NOW + 10 * 86_400_000)
        .await
        .unwrap()
        .into_iter()
        .map(|(start, r)| (start, (r.count, r.min, r.max, r.sum, r.last.unwrap().value)))
        .collect()
}

fn assert_same(
    got: &BTreeMap<i64, (u64, f64, f64, f64, f64)>,
    want: &BTreeMap<i64, (u64, f64, f64, f64, f64)>,
) {
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (start, (count, min, max, sum, last)) in got {
        let (w_count, w_min, w_max, w_sum, w_last) = want[start];
        assert_eq!((*count, *min, *max, *last), (w_count, w_min, w_max, w_last), "bucket {start}");
        // Sums of floats depend on the order of addition, only in the last bits.
        assert!((sum - w_sum).abs() <= 1e-9 * w_sum.abs().max(1.0), "bucket {start}: {sum} vs {w_sum}");
    }
}

#[tokio::test]
async fn a_redelivered_job_counts_nothing_twice() {
    let (_dir, table) = table();
    let job =
        Job { series: series(), points: (1..=200).map(point).collect(), retention: Retention::default() };
    let first = apply_job(&table, &job).await.unwrap();
    assert_eq!((first.counted, first.already_counted), (600, 0));
    let again = apply_job(&table, &job).await.unwrap();
    assert_eq!((again.counted, again.already_counted, again.buckets_written), (0, 600, 0));
    // A job overlapping the first: only its new readings count.
    let overlap =
        Job { series: series(), points: (150..=250).map(point).collect(), retention: Retention::default() };
    let report = apply_job(&table, &overlap).await.unwrap();
    assert_eq!((report.counted, report.already_counted), (150, 153));
    for resolution in Resolution::ALL {
        assert_same(&stored(&table, resolution).await, &expected(1..=250, resolution));
    }
}

#[tokio::test]
async fn late_readings_update_their_old_bucket_and_buckets_expire() {
    let (_dir, table) = table();
    apply_job(
        &table,
        &Job { series: series(), points: (100..=120).map(point).collect(), retention: Retention::default() },
    )
    .await
    .unwrap();
    let late = Job { series: series(), points: vec![point(3)], retention: Retention::default() };
    apply_job(&table, &late).await.unwrap();
    let minutes = stored(&table, Resolution::Minute).await;
    assert_eq!(minutes[&Resolution::Minute.bucket_start(point(3).ts)].0, 1);
    assert_same(&minutes, &expected((100..=120).chain([3]), Resolution::Minute));

    // Minute buckets kept for no time at all are gone; hours and days stay.
    let (_dir2, short) = self::table();
    let retention = Retention { minute: Duration::ZERO, ..Retention::default() };
    let two_hours_ago =
        Job { series: series(), points: vec![Point { seq: 1, ts: NOW - 7_200_000, value: 1.0 }], retention };
    apply_job(&short, &two_hours_ago).await.unwrap();
    let key = series();
    let all = |r| read_series(&short, &key, r, 0, i64::MAX);
    assert!(all(Resolution::Minute).await.unwrap().is_empty());
    assert_eq!(all(Resolution::Hour).await.unwrap().len(), 1);
    assert_eq!(all(Resolution::Day).await.unwrap().len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Jobs in any order, with any duplication and any split, leave the
    /// buckets of the distinct readings.
    #[test]
    fn any_delivery_order_and_duplication_gives_the_distinct_rollup(
        deliveries in proptest::collection::vec(proptest::collection::vec(0u64..400, 1..40), 1..12)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (_dir, table) = table();
            for seqs in &deliveries {
                let job = Job { series: series(), points: seqs.iter().copied().map(point).collect(), retention: Retention::default() };
                apply_job(&table, &job).await.unwrap();
            }
            let all = deliveries.iter().flatten().copied();
            for resolution in Resolution::ALL {
                assert_same(&stored(&table, resolution).await, &expected(all.clone(), resolution));
            }
        });
    }
}

/// Jobs of several series in one transaction count exactly what they would
/// one by one, and again nothing twice.
#[tokio::test]
async fn jobs_of_several_series_commit_together() {
    let (_dir, together) = table();
    let (_dir2, one_by_one) = table();
    let of = |device: &str, seqs: std::ops::RangeInclusive<u64>| Job {
        series: SeriesKey { device: device.into(), ..series() },
        points: seqs.map(point).collect(),
        retention: Retention::default(),
    };
    let jobs = [of("dev-1", 1..=300), of("dev-2", 50..=120), of("dev-3", 7..=7)];
    let refs: Vec<&Job> = jobs.iter().collect();
    let reports = wenu_stats::apply_jobs(&together, &refs).await.unwrap();
    for (job, report) in jobs.iter().zip(&reports) {
        assert_eq!(*report, apply_job(&one_by_one, job).await.unwrap());
        for resolution in Resolution::ALL {
            let read = |t| read_series(t, &job.series, resolution, 0, i64::MAX);
            let (a, b) = (read(&together).await.unwrap(), read(&one_by_one).await.unwrap());
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
    }
    let again = wenu_stats::apply_jobs(&together, &refs).await.unwrap();
    assert!(again.iter().all(|r| r.counted == 0 && r.buckets_written == 0));
    // Two jobs of one series in one call would race on their buckets: refused.
    let twice = [&jobs[0], &jobs[0]];
    assert!(wenu_stats::apply_jobs(&together, &twice).await.is_err());
}

//! The worker pool on the embedded queue and table: jobs of many series in
//! parallel, one worker per series at a time, and a poison job that ends in
//! the dead-letter queue and is redriven once fixed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use wenu_core::clock::ManualClock;
use wenu_core::queue::{NewMessage, Queue, QueueDepth};
use wenu_local::{QueueOptions, SqliteQueue, SqliteTable};
use wenu_stats::worker::{Handler, TableHandler, WorkerOptions, WorkerTotals, run_workers};
use wenu_stats::{Error, Job, JobReport, Point, Resolution, Retention, SeriesKey, read_series};

/// 2026-11-26T17:30:00Z, which the stats table takes for now: the
/// readings' buckets expire after their retention, whatever today is.
const NOW: i64 = 1_795_714_200_000;

/// The real handler, failing for one series while `poisoned`, and checking
/// that no series is ever worked on by two workers at once.
struct TestHook {
    inner: TableHandler,
    poison: SeriesKey,
    poisoned: AtomicBool,
    busy: Mutex<HashMap<SeriesKey, bool>>,
}

#[async_trait]
impl Handler for TestHook {
    async fn handle(&self, job: &Job) -> wenu_stats::Result<JobReport> {
        if job.series == self.poison && self.poisoned.load(Ordering::SeqCst) {
            return Err(Error::BadJob("injected failure".into()));
        }
        let was_busy = self.busy.lock().unwrap().insert(job.series.clone(), true);
        assert_ne!(was_busy, Some(true), "two workers on {:?}", job.series);
        tokio::task::yield_now().await;
        let report = self.inner.handle(job).await;
        self.busy.lock().unwrap().insert(job.series.clone(), false);
        report
    }
}

fn series(i: usize) -> SeriesKey {
    SeriesKey { company: "acme".into(), device: format!("dev-{i}"), sensor: "temp-1".into() }
}

async fn wait_for(queue: &SqliteQueue, want: QueueDepth) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while queue.depth().await.unwrap() != want {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "queue never reached {want:?}: {:?}", queue.depth().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_applied_in_parallel_and_a_poison_job_is_dead_lettered_then_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let queue =
        SqliteQueue::open(&dir.path().join("queue.db"), QueueOptions { max_receive_count: 3 }).unwrap();
    let table = Arc::new(
        SqliteTable::open(&dir.path().join("stats.db")).unwrap().with_clock(ManualClock::at(NOW + 60_000)),
    );
    let hook = Arc::new(TestHook {
        inner: TableHandler { table: table.clone() },
        poison: series(7),
        poisoned: AtomicBool::new(true),
        busy: Mutex::default(),
    });

    // 20 series, 5 jobs each of 10 readings, every job sent twice (a redelivery).
    let mut messages = Vec::new();
    for round in 0..5u64 {
        for i in 0..20 {
            let points = (0..10)
                .map(|k| round * 10 + k)
                .map(|seq| Point { seq, ts: NOW + seq as i64 * 1000, value: seq as f64 })
                .collect();
            let job = Job { series: series(i), points, retention: Retention::default() };
            let message = NewMessage { group: job.series.group(), body: job.to_bytes().into() };
            messages.push(message.clone());
            messages.push(message);
        }
    }
    queue.send_batch(messages).await.unwrap();

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let options = WorkerOptions {
        workers: 4,
        retry_backoff: Duration::ZERO,
        idle_poll: Duration::from_millis(5),
        ..Default::default()
    };
    let totals = Arc::new(WorkerTotals::default());
    let pool =
        tokio::spawn(run_workers(Arc::new(queue.clone()), hook.clone(), options, totals.clone(), shutdown));

    // The poison series' first job dies; the rest of that group follows it
    // (each fails too while poisoned), everything else is applied.
    wait_for(&queue, QueueDepth { visible: 0, in_flight: 0, dead: 10 }).await;
    let minutes = |i| {
        let table = table.clone();
        async move { read_series(table.as_ref(), &series(i), Resolution::Minute, 0, i64::MAX).await.unwrap() }
    };
    for i in (0..20).filter(|&i| i != 7) {
        let buckets = minutes(i).await;
        assert_eq!(buckets.iter().map(|(_, r)| r.count).sum::<u64>(), 50, "series {i}: each reading once");
        assert_eq!(buckets.iter().map(|(_, r)| r.sum).sum::<f64>(), (0..50).sum::<u64>() as f64);
    }
    assert!(minutes(7).await.is_empty());

    // Fixed, redriven: the poison series is counted, once.
    hook.poisoned.store(false, Ordering::SeqCst);
    assert_eq!(queue.redrive(None).await.unwrap(), 10);
    wait_for(&queue, QueueDepth::default()).await;
    assert_eq!(minutes(7).await.iter().map(|(_, r)| r.count).sum::<u64>(), 50);
    assert_eq!(totals.readings_counted.load(Ordering::SeqCst), 20 * 50, "the pool's own count agrees");

    stop.send(true).unwrap();
    pool.await.unwrap();
}

//! The embedded runtime's stats workers: a pool of tasks that receive jobs
//! from the queue and apply them. (On AWS the stats Lambda is the pool: it
//! calls the same [`apply_job`] for each SQS message.)
//!
//! A job is deleted from the queue only after it is applied. One that
//! fails is given back after a backoff and, after the queue's max receive
//! count, lands in the dead-letter queue, where `wenu queue redrive` finds it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinSet;
use wenu_core::queue::{Queue, Received};
use wenu_core::table::TableStore;

use crate::Result;
use crate::job::{Job, JobReport, apply_job, apply_jobs};

/// What a worker does with a job.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, job: &Job) -> Result<JobReport>;

    /// Several jobs of different series, one result each. By default one
    /// at a time; a handler may do them together.
    async fn handle_many(&self, jobs: &[&Job]) -> Vec<Result<JobReport>> {
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(self.handle(job).await);
        }
        results
    }
}

/// The real handler: fold the job into the table store.
pub struct TableHandler {
    pub table: Arc<dyn TableStore>,
}

#[async_trait]
impl Handler for TableHandler {
    async fn handle(&self, job: &Job) -> Result<JobReport> {
        apply_job(self.table.as_ref(), job).await
    }

    /// All in one transaction (one commit instead of one per job); if that
    /// fails, one by one, so that a bad job fails alone.
    async fn handle_many(&self, jobs: &[&Job]) -> Vec<Result<JobReport>> {
        if jobs.len() > 1
            && let Ok(reports) = apply_jobs(self.table.as_ref(), jobs).await
        {
            return reports.into_iter().map(Ok).collect();
        }
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(apply_job(self.table.as_ref(), job).await);
        }
        results
    }
}

#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// Concurrent workers; each series is on one worker at a time.
    pub workers: usize,
    /// Messages per receive (SQS allows up to 10).
    pub batch: usize,
    /// How long a received job stays hidden while it is worked on.
    pub visibility: Duration,
    /// Wait before a failed job is tried again; doubles per receive, up to a minute.
    pub retry_backoff: Duration,
    /// Pause when the queue is empty.
    pub idle_poll: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            workers: 2,
            batch: 10,
            visibility: Duration::from_secs(30),
            retry_backoff: Duration::from_secs(1),
            idle_poll: Duration::from_millis(50),
        }
    }
}

/// What the pool has done since it started (the same figures as the
/// `wenu_stats_*` metrics, for a caller that shows them).
#[derive(Debug, Default)]
pub struct WorkerTotals {
    pub jobs_applied: AtomicU64,
    /// Readings counted for the first time (each once, whatever the resolutions).
    pub readings_counted: AtomicU64,
}

/// Runs the pool until `shutdown` turns true; jobs in hand are finished first.
pub async fn run_workers(
    queue: Arc<dyn Queue>,
    handler: Arc<dyn Handler>,
    options: WorkerOptions,
    totals: Arc<WorkerTotals>,
    shutdown: watch::Receiver<bool>,
) {
    let mut workers = JoinSet::new();
    for _ in 0..options.workers.max(1) {
        let (queue, handler, totals, mut shutdown) =
            (queue.clone(), handler.clone(), totals.clone(), shutdown.clone());
        workers.spawn(async move {
            while !*shutdown.borrow() {
                let received = match queue.receive(options.batch, options.visibility).await {
                    Ok(received) => received,
                    Err(e) => {
                        tracing::warn!(error = %e, "stats worker cannot receive; trying again in a second");
                        tokio::select! {
                            _ = tokio::time::sleep(options.retry_backoff.max(options.idle_poll)) => {}
                            _ = shutdown.changed() => {}
                        }
                        continue;
                    }
                };
                if received.is_empty() {
                    tokio::select! {
                        _ = tokio::time::sleep(options.idle_poll) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                work_on(queue.as_ref(), handler.as_ref(), &received, &options, &totals).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

/// Applies a received batch, then gives back, after a backoff, what failed
/// and deletes what was applied.
async fn work_on(
    queue: &dyn Queue,
    handler: &dyn Handler,
    received: &[Received],
    options: &WorkerOptions,
    totals: &WorkerTotals,
) {
    let parsed: Vec<Result<Job>> = received.iter().map(|m| Job::from_bytes(&m.body)).collect();
    let jobs: Vec<&Job> = parsed.iter().filter_map(|p| p.as_ref().ok()).collect();
    let started = std::time::Instant::now();
    let mut applied = handler.handle_many(&jobs).await.into_iter();
    metrics::histogram!("wenu_stats_apply_seconds").record(started.elapsed().as_secs_f64());
    // Rollups written, jobs not yet deleted: the crash tests stop here.
    wenu_core::failpoint::hit("stats.after_apply").await;
    let mut done = Vec::with_capacity(received.len());
    for (message, job) in received.iter().zip(&parsed) {
        let outcome = match job {
            Ok(_) => applied.next().expect("a result per job"),
            Err(e) => Err(crate::Error::BadJob(e.to_string())),
        };
        match outcome {
            Ok(report) => {
                metrics::counter!("wenu_stats_jobs_total", "outcome" => "applied").increment(1);
                totals.jobs_applied.fetch_add(1, Ordering::Relaxed);
                totals.readings_counted.fetch_add(report.new_readings, Ordering::Relaxed);
                metrics::counter!("wenu_stats_readings_counted_total").increment(report.counted);
                metrics::counter!("wenu_stats_readings_already_counted_total")
                    .increment(report.already_counted);
                done.push(message.receipt.clone());
            }
            Err(e) => {
                metrics::counter!("wenu_stats_jobs_total", "outcome" => "failed").increment(1);
                tracing::warn!(error = %e, message = %message.id, group = %message.group, receives = message.receive_count, "stats job failed; it will be retried");
                let backoff = (options.retry_backoff * (1 << message.receive_count.min(6)))
                    .min(Duration::from_secs(60));
                if let Err(e) = queue.change_visibility(&message.receipt, backoff).await {
                    tracing::warn!(error = %e, message = %message.id, "failed job could not be given back; it returns after its visibility timeout");
                }
            }
        }
    }
    // One delete for the batch: each is a durable write (an fsync, or an SQS call).
    if let Err(e) = queue.delete_batch(&done).await {
        // The jobs will come back and count nothing twice.
        tracing::warn!(error = %e, jobs = done.len(), "applied jobs could not be deleted");
    }
}

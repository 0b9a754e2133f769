//! The consumer runtime: reads the stream from a named checkpoint, batches by
//! size or time, hands each batch to a [`Stage`], and moves the checkpoint
//! only once the stage says its output is durable. At-least-once, like a
//! Kinesis consumer; stages make their outputs idempotent.
//!
//! Each consumer is its own task with its own checkpoint, so a slow stage
//! (the lake writing Parquet) never holds back another (the alarms).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use wenu_core::stream::{Position, Record, ShardId, StartAt, Stream};
use wenu_core::{Error, Result};

use crate::batcher::{BatchLimits, Batcher};
use crate::checkpoint::Checkpoints;
use crate::health::Health;
use crate::stage::Stage;

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Checkpoint name; also the `consumer` label of the metrics.
    pub name: String,
    /// The shard it reads: the embedded log's one shard unless told.
    pub shard: ShardId,
    pub batch: BatchLimits,
    /// Records per read from the stream.
    pub read_chunk: usize,
    /// How long to wait before reading again when the stream had nothing new.
    pub idle_poll: Duration,
    /// Longest wait between retries of a failing batch.
    pub max_backoff: Duration,
    /// How often [`Stage::tick`] runs; never when `None`.
    pub tick_every: Option<Duration>,
    /// Record each batch's range before processing it, so a restart redoes
    /// exactly that range (outputs named by it are rewritten, not doubled).
    /// Stages whose outputs are keyed otherwise skip this write.
    pub redo_same_range: bool,
    /// Commit the checkpoint at most this often (and at shutdown) rather
    /// than after every batch: for stages that keep their state elsewhere
    /// and may redo records (the alarms), so a live trickle of small
    /// batches does not pay two fsyncs each. A crash redoes at most this
    /// much more.
    pub checkpoint_every: Duration,
}

impl ConsumerOptions {
    pub fn new(name: impl Into<String>, batch: BatchLimits) -> Self {
        ConsumerOptions {
            name: name.into(),
            shard: ShardId::log(),
            batch,
            read_chunk: 5_000,
            idle_poll: Duration::from_millis(20),
            max_backoff: Duration::from_secs(30),
            tick_every: None,
            redo_same_range: true,
            checkpoint_every: Duration::ZERO,
        }
    }
}

/// One named consumer of the stream running one stage.
pub struct Consumer<S: Stage> {
    stream: Arc<dyn Stream>,
    store: Arc<dyn Checkpoints>,
    options: ConsumerOptions,
    stage: S,
    health: Health,
    /// Processed, not yet committed: the last position and the state.
    uncommitted: Option<(Position, Vec<u8>)>,
    committed_at: Instant,
}

impl<S: Stage> Consumer<S> {
    pub fn new(
        stream: Arc<dyn Stream>,
        checkpoints: Arc<dyn Checkpoints>,
        options: ConsumerOptions,
        stage: S,
    ) -> Self {
        Consumer {
            stream,
            store: checkpoints,
            options,
            stage,
            health: Health::default(),
            uncommitted: None,
            committed_at: Instant::now(),
        }
    }

    /// Reports successes and failures to `health` (a private one otherwise).
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Runs until `shutdown` turns true, then flushes what it holds and
    /// returns the stage. A failure that may go away (a full disk, a busy
    /// database) starts it again from its checkpoint after a backoff, as a
    /// restart of the process would; only a state it cannot restore, or a
    /// failure during shutdown, ends it.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<S> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.run_from_checkpoint(&mut shutdown).await {
                Ok(()) => return Ok(self.stage),
                Err(err) if *shutdown.borrow() || !err.is_retryable() => return Err(err),
                Err(err) => {
                    let name = self.options.name.clone();
                    metrics::counter!("wenu_consumer_restarts_total", "consumer" => name.clone())
                        .increment(1);
                    self.health.failed(&name, &err.to_string());
                    tracing::warn!(consumer = %name, error = %err, retry_in_ms = backoff.as_millis() as u64, "consumer failed; starting again from its checkpoint");
                    self.uncommitted = None;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
    }

    async fn run_from_checkpoint(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<()> {
        let name = self.options.name.clone();
        let saved = self.store.load(&name).await?;
        self.restore(saved.state.as_deref())?;
        let mut next = saved.position.map_or(StartAt::Oldest, StartAt::After);
        self.health.started(&name);

        // A flush that was under way when the process died is redone over
        // exactly the same range, so its outputs get the same names.
        if let Some((first, last)) = saved.pending {
            let records = self.read_range(first, last).await?;
            tracing::info!(consumer = %name, first = %first, last = %last, records = records.len(), "redoing an interrupted flush");
            if !records.is_empty() {
                self.flush(records, shutdown).await?;
            }
            next = StartAt::After(last);
        }

        let mut batcher = Batcher::new(self.options.batch);
        let mut appends = self.stream.appends();
        let mut next_tick = self.options.tick_every.map(|every| Instant::now() + every);
        loop {
            if let (Some(due), Some(every)) = (next_tick, self.options.tick_every)
                && Instant::now() >= due
            {
                if let Err(err) = self.stage.tick().await {
                    tracing::warn!(consumer = %name, error = %err, "tick failed; trying again at the next");
                }
                next_tick = Some(Instant::now() + every);
            }
            if batcher.is_due(Instant::now()) {
                let records = batcher.take();
                self.flush(records, shutdown).await?;
            }
            // Marked seen before the read: an append after it wakes the wait below.
            if let Some(appends) = appends.as_mut() {
                appends.borrow_and_update();
            }
            let records = self.stream.read_shard(&self.options.shard, next, self.options.read_chunk).await?;
            if let Some(last) = records.last() {
                next = StartAt::After(last.position);
                records.into_iter().for_each(|r| batcher.push(r));
            } else {
                // Nothing new: wait for an append, the next poll, the batch's
                // deadline, the next tick, or shutdown.
                let poll = Instant::now() + self.options.idle_poll;
                self.commit_if_due(false).await?;
                let wake = [batcher.deadline(), next_tick].into_iter().flatten().fold(poll, Instant::min);
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    _ = appended(&mut appends) => {}
                    _ = shutdown.changed() => {}
                }
            }
            if *shutdown.borrow() {
                break;
            }
        }
        if !batcher.is_empty() {
            let records = batcher.take();
            self.flush(records, shutdown).await?;
        }
        self.commit_if_due(true).await
    }

    fn restore(&mut self, state: Option<&[u8]>) -> Result<()> {
        self.stage.restore(state).map_err(|e| Error::Stream {
            message: format!("consumer {} cannot restore its state: {e}", self.options.name),
            retryable: false,
        })
    }

    /// Processes one batch until it succeeds, then commits it. Under shutdown
    /// a failing batch is left pending, to be redone at the next start.
    async fn flush(&mut self, records: Vec<Record>, shutdown: &mut watch::Receiver<bool>) -> Result<()> {
        let (first, last) = match (records.first(), records.last()) {
            (Some(f), Some(l)) => (f.position, l.position),
            _ => return Ok(()),
        };
        let name = self.options.name.clone();
        if self.options.redo_same_range {
            self.store.begin_flush(&name, first, last).await?;
        }
        let mut backoff = Duration::from_millis(100);
        let state = loop {
            let started = std::time::Instant::now();
            match self.stage.process(&records).await {
                Ok(state) => {
                    metrics::histogram!("wenu_consumer_batch_seconds", "consumer" => name.clone())
                        .record(started.elapsed().as_secs_f64());
                    self.health.succeeded(&name);
                    break state;
                }
                Err(err) => {
                    metrics::counter!("wenu_consumer_retries_total", "consumer" => name.clone()).increment(1);
                    self.health.failed(&name, &err.to_string());
                    tracing::warn!(consumer = %name, error = %err, retry_in_ms = backoff.as_millis() as u64, "batch failed; retrying");
                    if *shutdown.borrow() {
                        return Ok(());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(self.options.max_backoff);
                    // The failed attempt may have moved the stage's state on.
                    let saved = self.store.load(&name).await?;
                    self.restore(saved.state.as_deref())?;
                }
            }
        };
        metrics::counter!("wenu_consumer_records_total", "consumer" => name.clone())
            .increment(records.len() as u64);
        self.uncommitted = Some((last, state));
        self.commit_if_due(false).await
    }

    /// Commits what was processed, if `checkpoint_every` has passed (or `now`).
    async fn commit_if_due(&mut self, now: bool) -> Result<()> {
        if !now && self.committed_at.elapsed() < self.options.checkpoint_every {
            return Ok(());
        }
        let Some((last, state)) = self.uncommitted.take() else { return Ok(()) };
        let name = self.options.name.clone();
        if let Err(err) = self.stage.before_checkpoint().await {
            tracing::warn!(consumer = %name, error = %err, "checkpoint put off: the stage could not store its state");
            self.uncommitted = Some((last, state));
            return Ok(());
        }
        self.store.commit(&name, last, state).await?;
        // Mirrored into the stream so retention and `wenu status` see it.
        self.stream.commit_checkpoint(&name, &self.options.shard, last).await?;
        self.committed_at = Instant::now();
        // The backlog without what a stage holds on purpose (the lake's
        // buffer): a consumer that keeps up commits close to the log's end.
        if let Ok(Some(newest)) = self.stream.newest(&self.options.shard).await {
            let behind = newest.as_u64().zip(last.as_u64()).map_or(0, |(n, l)| n.saturating_sub(l));
            metrics::gauge!("wenu_consumer_lag_after_commit_records", "consumer" => name).set(behind as f64);
        }
        Ok(())
    }

    async fn read_range(&mut self, first: Position, last: Position) -> Result<Vec<Record>> {
        // `&mut self`: the stage need only be `Send`, not `Sync`.
        let (stream, shard, chunk) = (&self.stream, &self.options.shard, self.options.read_chunk);
        let mut out = Vec::new();
        let mut next = first;
        while next <= last {
            let chunk = stream.read_shard(shard, StartAt::Position(next), chunk).await?;
            let Some(end) = chunk.last().map(|r| r.position) else { break };
            out.extend(chunk.into_iter().filter(|r| r.position <= last));
            next = end.next();
        }
        Ok(out)
    }
}

/// Resolves when the stream appended something; never for a stream that cannot tell.
async fn appended(appends: &mut Option<watch::Receiver<u64>>) {
    let open = match appends {
        Some(appends) => appends.changed().await.is_ok(),
        None => false,
    };
    if !open {
        std::future::pending::<()>().await;
    }
}

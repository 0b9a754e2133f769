//! Supervision: every consumer runs under a loop that builds its stage,
//! runs it, and builds it again when it panics or meets an error it cannot
//! retry, from the checkpoint, after a backoff. A consumer is never silently
//! gone: each failure is logged, counted and shown in [`Health`], and its lag
//! is measured on a timer whether or not it commits.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use wenu_core::stream::{Position, Stream};

use crate::checkpoint::SavedConsumer;

use crate::checkpoint::Checkpoints;
use crate::consumer::{Consumer, ConsumerOptions};
use crate::health::Health;
use crate::stage::Stage;

/// Runs consumers over one stream and one checkpoint store. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    stream: Arc<dyn Stream>,
    checkpoints: Arc<dyn Checkpoints>,
    health: Health,
    /// How often each consumer's lag is measured.
    pub lag_every: Duration,
    /// First wait before a stage is built again; doubles up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Supervisor {
    pub fn new(stream: Arc<dyn Stream>, checkpoints: Arc<dyn Checkpoints>) -> Self {
        Supervisor {
            stream,
            checkpoints,
            health: Health::default(),
            lag_every: Duration::from_secs(1),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// The health of every consumer this supervisor runs.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Runs the stage that `build` makes until `shutdown` turns true: a
    /// panic, an error the consumer cannot retry or a failed `build` builds
    /// the stage again (from its checkpoint) after a backoff. Returns once the
    /// consumer has flushed and committed at shutdown.
    pub async fn run<S, E, F>(
        self,
        options: ConsumerOptions,
        mut shutdown: watch::Receiver<bool>,
        mut build: F,
    ) where
        S: Stage,
        E: Display,
        F: FnMut() -> Result<S, E> + Send + 'static,
    {
        let name = options.name.clone();
        let lag =
            tokio::spawn(self.clone().measure_lag(name.clone(), options.shard.clone(), shutdown.clone()));
        let mut backoff = self.first_backoff;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let failure = match build() {
                Err(err) => format!("the stage could not be built: {err}"),
                Ok(stage) => {
                    let consumer =
                        Consumer::new(self.stream.clone(), self.checkpoints.clone(), options.clone(), stage)
                            .with_health(self.health.clone());
                    let started = tokio::time::Instant::now();
                    // Its own task, so that a panic ends only this attempt.
                    let outcome = tokio::spawn(consumer.run(shutdown.clone())).await;
                    // A stage that ran a good while before failing starts over gently.
                    if started.elapsed() > self.max_backoff * 2 {
                        backoff = self.first_backoff;
                    }
                    match outcome {
                        Ok(Ok(_stage)) => break,
                        Ok(Err(err)) if *shutdown.borrow() => {
                            tracing::error!(consumer = %name, error = %err, "consumer failed while stopping; it resumes from its checkpoint at the next start");
                            break;
                        }
                        Ok(Err(err)) => format!("stopped on an error it cannot retry: {err}"),
                        Err(join) if join.is_panic() => {
                            metrics::counter!("wenu_consumer_panics_total", "consumer" => name.clone())
                                .increment(1);
                            format!("panicked: {}", panic_message(join.into_panic()))
                        }
                        Err(_cancelled) => break,
                    }
                }
            };
            self.health.failed(&name, &failure);
            self.health.restarted(&name);
            tracing::error!(consumer = %name, failure = %failure, retry_in_ms = backoff.as_millis() as u64, "consumer stage restarts from its checkpoint");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => {}
            }
            backoff = (backoff * 2).min(self.max_backoff);
        }
        self.health.stopped(&name);
        lag.abort();
    }

    /// Every `lag_every`: records between the consumer's checkpoint and the
    /// newest record of its shard.
    async fn measure_lag(
        self,
        name: String,
        shard: wenu_core::stream::ShardId,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut every = tokio::time::interval(self.lag_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.changed() => return,
            }
            let newest = match self.stream.newest(&shard).await {
                Ok(newest) => newest,
                Err(err) => {
                    tracing::debug!(consumer = %name, error = %err, "lag not measured");
                    continue;
                }
            };
            match self.checkpoints.load(&name).await {
                Ok(saved) => self.health.set_lag(&name, records_between(&saved, newest)),
                Err(err) => tracing::debug!(consumer = %name, error = %err, "lag not measured"),
            }
        }
    }
}

/// A `build` for [`Supervisor::run`] that hands out `first` (a stage built
/// ahead, so that one that cannot start fails the caller at once) before it
/// calls `build`.
pub fn starting_with<S, E>(
    first: S,
    mut build: impl FnMut() -> Result<S, E> + Send + 'static,
) -> impl FnMut() -> Result<S, E> + Send + 'static
where
    S: Send + 'static,
{
    let mut first = Some(first);
    move || first.take().map_or_else(&mut build, Ok)
}

/// Records not yet done, up to `newest`: after the checkpoint, or from the
/// first record of a flush that has not finished (its output is not written
/// yet either). For positions that count records (the embedded log); 0
/// where they do not, or with nothing to read.
fn records_between(saved: &SavedConsumer, newest: Option<Position>) -> u64 {
    let newest = newest.and_then(Position::as_u64).unwrap_or(0);
    let done = match saved.pending {
        Some((first, _)) => first.as_u64().map(|first| first.saturating_sub(1)),
        None => saved.position.and_then(Position::as_u64),
    };
    newest.saturating_sub(done.unwrap_or(0))
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

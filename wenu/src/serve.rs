//! `wenu serve`: the embedded pipeline in one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use object_store::local::LocalFileSystem;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wenu_enrich::{EnrichStage, EnrichTotals};
use wenu_ingest::Edge;
use wenu_lake::{LakeStage, LakeTotals};
use wenu_local::{
    Consumer, ConsumerOptions, ConsumerStore, QueueOptions, SqliteQueue, SqliteStream, SqliteTable,
    StreamOptions,
};
use wenu_registry::Registry;
use wenu_stats::worker::{TableHandler, WorkerOptions, WorkerTotals, run_workers};

use wenu_api::{ApiState, LiveHub, StoredKeys};

use wenu_alarms::{AlarmStore, AlarmTotals};
use wenu_core::stream::Position;

use crate::alarms::{ALARMS_CONSUMER, Alarms};
use crate::api_ports::LocalLake;
use crate::config::{Backend, Config};
use crate::http;
use wenu_registry::{RegistryCatalog, RegistryKeys};

#[derive(Args)]
pub struct ServeArgs {
    /// Where the stream, lake, queue and tables live; overrides `backend` of the config.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
}

pub async fn run(mut config: Config, args: ServeArgs) -> anyhow::Result<()> {
    config.backend = args.backend.unwrap_or(config.backend);
    if config.backend == Backend::Aws {
        #[cfg(feature = "aws")]
        return crate::serve_aws::run(config).await;
        #[cfg(not(feature = "aws"))]
        anyhow::bail!(
            "backend = \"aws\" needs a wenu built with the `aws` feature (cargo build -p wenu --features aws)"
        );
    }
    let server = Server::start(&config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight appends");
    server.stop().await
}

/// The running pipeline.
pub struct Server {
    pub edge: Edge,
    pub stream: SqliteStream,
    pub http_addr: Option<SocketAddr>,
    pub lake: Arc<LakeTotals>,
    pub enrich: Arc<EnrichTotals>,
    pub alarms: Arc<AlarmTotals>,
    pub alarm_store: AlarmStore,
    pub stats: Arc<WorkerTotals>,
    /// The stats jobs queue.
    pub queue: SqliteQueue,
    consumer_store: ConsumerStore,
    tasks: Vec<JoinHandle<()>>,
    /// Consumers finish their batch and commit when this turns true.
    stop_consumers: watch::Sender<bool>,
    consumers: Vec<JoinHandle<()>>,
}

pub use wenu_core::clock::now_ms;

impl Server {
    pub async fn start(config: &Config) -> anyhow::Result<Server> {
        config.ensure_data_dir()?;
        let metrics = http::install_metrics_recorder();
        let options = StreamOptions {
            retention: config.retention(),
            queue_depth: config.stream.queue_depth,
            max_bytes: config.stream.max_bytes,
            ..StreamOptions::default()
        };
        let stream = SqliteStream::open(&SqliteStream::default_path(&config.data_dir), options)?;
        let registry = config.registry().await?;
        let edge = Edge::start(config.edge(), Arc::new(stream.clone()), registry.clone()).await?;

        let (stop_consumers, consumers_stopped) = watch::channel(false);
        let consumer_store = ConsumerStore::open(&ConsumerStore::default_path(&config.data_dir))?;
        let (lake, lake_task) =
            start_lake(config, &registry, &stream, consumer_store.clone(), consumers_stopped.clone())?;
        let queue = SqliteQueue::open(
            &SqliteQueue::default_path(&config.data_dir),
            QueueOptions { max_receive_count: config.stats.max_receive_count },
        )?;
        let stats = SqliteTable::open(&config.stats_path())?;
        let live = LiveHub::default();
        let (enrich, enrich_task) = start_enrich(
            config,
            &registry,
            &stream,
            &queue,
            &live,
            consumer_store.clone(),
            consumers_stopped.clone(),
        )?;
        let options = WorkerOptions { workers: config.stats.workers, ..WorkerOptions::default() };
        let handler = Arc::new(TableHandler { table: Arc::new(stats.clone()) });
        let worker_totals = Arc::new(WorkerTotals::default());
        let workers = tokio::spawn(run_workers(
            Arc::new(queue.clone()),
            handler,
            options,
            worker_totals.clone(),
            consumers_stopped.clone(),
        ));
        let mut alarms = Alarms::open(config, &registry, edge.publisher(), &live)?;
        let mut consumers = vec![lake_task, enrich_task, workers];
        consumers.push(alarms.start(
            config,
            &registry,
            &stream,
            consumer_store.clone(),
            consumers_stopped,
        )?);

        let mut tasks = Vec::new();
        let every = Duration::from_secs(config.stats.sweep_interval_secs.max(1));
        for (what, table) in [("stats", stats.clone()), ("alarms", alarms.table.clone())] {
            tasks.push(tokio::spawn(async move {
                let mut interval = tokio::time::interval(every);
                loop {
                    interval.tick().await;
                    match table.sweep(now_ms() / 1000).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(items = n, table = what, "expired items swept"),
                        Err(err) => {
                            tracing::warn!(error = %err, table = what, "sweep of expired items failed")
                        }
                    }
                }
            }));
        }
        let sweeper = stream.clone();
        let every = Duration::from_secs(config.stream.sweep_interval_secs.max(1));
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            loop {
                interval.tick().await;
                if let Err(err) = sweeper.sweep_retention(now_ms()).await {
                    tracing::warn!(error = %err, "retention sweep failed");
                }
            }
        }));
        let http_addr = match config.http.listen {
            Some(addr) => {
                let api = ApiState::new(registry.clone(), Arc::new(stats.clone()), live, config.api_limits())
                    .with_lake(Arc::new(LocalLake::open(&config.lake_dir()).await?))
                    .with_device_keys(Arc::new(StoredKeys::new(Box::new(
                        wenu_core::keyring::KeyringFile::new(config.keyring_path()),
                    ))))
                    .with_alarms(alarms.store.clone(), alarms.dispatcher.waker());
                let (addr, task) = http::serve(addr, metrics, api).await?;
                tasks.push(task);
                Some(addr)
            }
            None => None,
        };
        announce(&edge, http_addr);
        Ok(Server {
            edge,
            stream,
            http_addr,
            lake,
            enrich,
            alarms: alarms.totals,
            alarm_store: alarms.store,
            stats: worker_totals,
            queue,
            consumer_store,
            tasks,
            stop_consumers,
            consumers,
        })
    }

    /// How far each consumer is behind the newest record in the log.
    pub async fn consumer_lag(&self) -> anyhow::Result<Vec<(&'static str, u64)>> {
        let newest = self.stream.info().await?.newest.and_then(Position::as_u64).unwrap_or(0);
        let mut lag = Vec::new();
        for name in [LAKE_CONSUMER, ENRICH_CONSUMER, ALARMS_CONSUMER] {
            let position =
                self.consumer_store.load(name).await?.position.and_then(Position::as_u64).unwrap_or(0);
            lag.push((name, newest.saturating_sub(position)));
        }
        Ok(lag)
    }

    /// Stops taking connections, waits until every append already queued is
    /// on disk, then lets each consumer flush and commit what it holds.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.edge.stop().await?;
        for task in &self.tasks {
            task.abort();
        }
        self.stream.flush().await?;
        self.stop_consumers.send_replace(true);
        for consumer in self.consumers {
            consumer.await.context("consumer task panicked")?;
        }
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

/// The lake consumer: the stream to Parquet under `lake_dir`, in batches
/// closed by size or time.
fn start_lake(
    config: &Config,
    registry: &Registry,
    stream: &SqliteStream,
    store: ConsumerStore,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<LakeTotals>, JoinHandle<()>)> {
    let lake_dir = config.lake_dir();
    std::fs::create_dir_all(&lake_dir).with_context(|| format!("creating lake {}", lake_dir.display()))?;
    let objects = Arc::new(LocalFileSystem::new_with_prefix(&lake_dir)?);
    let keys = RegistryKeys::new(
        Box::new(wenu_core::keyring::KeyringFile::new(config.keyring_path())),
        registry.clone(),
    );
    let stage = LakeStage::new(objects, Box::new(keys), config.decode_limits()).with_local_dir(&lake_dir)?;
    let totals = stage.totals();
    let options = ConsumerOptions::new(LAKE_CONSUMER, config.lake_batch()?);
    let consumer = Consumer::new(stream.clone(), store, options, stage);
    let task = tokio::spawn(async move {
        if let Err(err) = consumer.run(stopped).await {
            tracing::error!(error = %err, "lake consumer stopped; the stream keeps the records for a restart");
        }
    });
    Ok((totals, task))
}

/// The enrich consumer: the stream to stats jobs on the queue, quarantining
/// into the lake's directory what it cannot normalise.
fn start_enrich(
    config: &Config,
    registry: &Registry,
    stream: &SqliteStream,
    queue: &SqliteQueue,
    live: &LiveHub,
    store: ConsumerStore,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<EnrichTotals>, JoinHandle<()>)> {
    let quarantine = Arc::new(LocalFileSystem::new_with_prefix(config.lake_dir())?);
    let stage = EnrichStage::new(
        Box::new(RegistryKeys::new(
            Box::new(wenu_core::keyring::KeyringFile::new(config.keyring_path())),
            registry.clone(),
        )),
        Box::new(RegistryCatalog::new(registry.clone())),
        Arc::new(queue.clone()),
        quarantine,
        config.decode_limits(),
    )
    .with_live(live.sender());
    let totals = stage.totals();
    let options = ConsumerOptions::new(ENRICH_CONSUMER, config.enrich_batch());
    let consumer = Consumer::new(stream.clone(), store, options, stage);
    let task = tokio::spawn(async move {
        if let Err(err) = consumer.run(stopped).await {
            tracing::error!(error = %err, "enrich consumer stopped; the stream keeps the records for a restart");
        }
    });
    Ok((totals, task))
}

/// Prints where the server listens, as one JSON line: tests and scripts read
/// it to learn the OS-chosen ports.
pub(crate) fn announce(edge: &Edge, http: Option<SocketAddr>) {
    println!(
        "{}",
        serde_json::json!({ "event": "listening", "mqtt": edge.tcp_addr(), "mqtts": edge.tls_addr(), "http": http })
    );
}

/// The consumers' checkpoint names.
pub const LAKE_CONSUMER: &str = "lake";
pub const ENRICH_CONSUMER: &str = "enrich";

pub(crate) async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

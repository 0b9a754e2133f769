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
use wenu_local::{ConsumerStore, QueueOptions, SqliteQueue, SqliteStream, SqliteTable, StreamOptions};
use wenu_registry::Registry;
use wenu_runtime::{Checkpoints, ConsumerOptions, Health, Supervisor, starting_with};
use wenu_stats::worker::{TableHandler, WorkerOptions, WorkerTotals, run_workers};

use wenu_api::{ApiState, LiveHub, StoredKeys};

use wenu_alarms::{AlarmStore, AlarmTotals};
use wenu_core::stream::Position;

use crate::alarms::{ALARMS_CONSUMER, Alarms};
use crate::api_ports::LocalLake;
use crate::config::{Backend, Config};
use crate::http;
use wenu_local::KeyringFile;
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
            consumers: [LAKE_CONSUMER, ENRICH_CONSUMER, ALARMS_CONSUMER].map(String::from).to_vec(),
            queue_depth: config.stream.queue_depth,
            max_bytes: config.stream.max_bytes,
            delete_unread_at_cap: config.stream.delete_unread_at_cap,
            ..StreamOptions::default()
        };
        let stream = SqliteStream::open(&SqliteStream::default_path(&config.data_dir), options)?;
        let registry = config.registry().await?;
        let edge = Edge::start(config.edge(), Arc::new(stream.clone()), registry.clone()).await?;

        let (stop_consumers, consumers_stopped) = watch::channel(false);
        let consumer_store = ConsumerStore::open(&ConsumerStore::default_path(&config.data_dir))?;
        let supervisor = Supervisor::new(Arc::new(stream.clone()), Arc::new(consumer_store.clone()));
        let health = supervisor.health();
        let (lake, lake_task) = start_lake(config, &registry, &supervisor, consumers_stopped.clone())?;
        let queue = SqliteQueue::open(
            &SqliteQueue::default_path(&config.data_dir),
            QueueOptions { max_receive_count: config.stats.max_receive_count },
        )?;
        let stats = SqliteTable::open(&config.stats_path())?;
        let live = LiveHub::default();
        let (enrich, enrich_task) =
            start_enrich(config, &registry, &queue, &live, &supervisor, consumers_stopped.clone())?;
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
        let alarms = Alarms::open(config, &registry, edge.publisher(), &live)?;
        let mut consumers = vec![lake_task, enrich_task, workers];
        consumers.push(alarms.start(config, &registry, &supervisor, consumers_stopped)?);

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
        tasks.push(tokio::spawn(write_health_every_second(health_path(&config.data_dir), health.clone())));
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
                    .with_device_keys(Arc::new(StoredKeys::new(Box::new(wenu_local::KeyringFile::new(
                        config.keyring_path(),
                    )))))
                    .with_alarms(alarms.store.clone(), alarms.dispatcher.waker())
                    .with_channel_notifiers(alarms.channel_notifiers.clone())
                    .with_consumer_health(health.clone());
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
    supervisor: &Supervisor,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<LakeTotals>, JoinHandle<()>)> {
    let lake_dir = config.lake_dir();
    std::fs::create_dir_all(&lake_dir).with_context(|| format!("creating lake {}", lake_dir.display()))?;
    let objects = Arc::new(LocalFileSystem::new_with_prefix(&lake_dir)?);
    let (keyring, registry, limits) = (config.keyring_path(), registry.clone(), config.decode_limits());
    let totals = Arc::new(LakeTotals::default());
    let counted = totals.clone();
    let build = move || {
        let keys = RegistryKeys::new(Box::new(KeyringFile::new(keyring.clone())), registry.clone());
        LakeStage::new(objects.clone(), Box::new(keys), limits)
            .with_local_dir(&lake_dir)
            .map(|stage| stage.with_totals(counted.clone()))
    };
    // Built once here, so that a stage that cannot start stops `wenu serve` at once.
    let first = build()?;
    let options = ConsumerOptions::new(LAKE_CONSUMER, config.lake_batch()?);
    let task = tokio::spawn(supervisor.clone().run(options, stopped, starting_with(first, build)));
    Ok((totals, task))
}

/// The enrich consumer: the stream to stats jobs on the queue, quarantining
/// into the lake's directory what it cannot normalise.
fn start_enrich(
    config: &Config,
    registry: &Registry,
    queue: &SqliteQueue,
    live: &LiveHub,
    supervisor: &Supervisor,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<EnrichTotals>, JoinHandle<()>)> {
    let lake_dir = config.lake_dir();
    let quarantine = Arc::new(LocalFileSystem::new_with_prefix(&lake_dir)?);
    let (keyring, registry, limits) = (config.keyring_path(), registry.clone(), config.decode_limits());
    let (queue, live) = (Arc::new(queue.clone()), live.sender());
    let totals = Arc::new(EnrichTotals::default());
    let counted = totals.clone();
    let build = move || {
        let stage = EnrichStage::new(
            Box::new(RegistryKeys::new(Box::new(KeyringFile::new(keyring.clone())), registry.clone())),
            Box::new(RegistryCatalog::new(registry.clone())),
            queue.clone(),
            quarantine.clone(),
            limits,
        )
        .with_live(live.clone())
        .with_local_dir(&lake_dir)
        .with_totals(counted.clone());
        Ok::<_, std::convert::Infallible>(stage)
    };
    let options = ConsumerOptions::new(ENRICH_CONSUMER, config.enrich_batch());
    let task = tokio::spawn(supervisor.clone().run(options, stopped, build));
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

/// Where `wenu serve` keeps its consumers' health for `wenu status`.
pub fn health_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("health.json")
}

async fn write_health_every_second(path: std::path::PathBuf, health: Health) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let staging = path.with_extension("json.tmp");
    loop {
        every.tick().await;
        let snapshot = serde_json::to_vec_pretty(&health.snapshot()).expect("health serializes");
        // Informational: replaced whole, not synced.
        if let Err(err) = std::fs::write(&staging, snapshot).and_then(|()| std::fs::rename(&staging, &path)) {
            tracing::debug!(error = %err, "could not write the consumers' health");
        }
    }
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

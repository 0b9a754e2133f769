//! `wenu serve --backend aws`: the same stages as long-lived processes
//! against AWS services (on ECS or EC2, and in the tests against an
//! emulator). The embedded MQTT edge appends to Kinesis; where AWS itself
//! glues services together in production (Kinesis → Firehose → the decrypt
//! function → S3, Kinesis → the enrich and alarms functions, SQS → the stats
//! function), `wenu_lambdas::event_sources` plays that part and calls the
//! same function handlers with the same event shapes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use object_store::ObjectStore;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wenu_alarms::{AlarmStage, AlarmStore, Notifier};
use wenu_api::{ApiState, LiveHub};
use wenu_aws::{DynamoTable, KinesisStream, SecretsKeyring, SnsNotifier, SqsQueue};
use wenu_core::queue::Queue;
use wenu_core::stream::Stream;
use wenu_enrich::EnrichStage;
use wenu_ingest::Edge;
use wenu_lambdas::alarms::AlarmsFunction;
use wenu_lambdas::event_sources::ShardReader;
use wenu_lambdas::event_sources::firehose::{self, Delivered, DeliveryOptions};
use wenu_lambdas::event_sources::kinesis::{self as mapping, MappingOptions};
use wenu_lambdas::event_sources::sqs::{self as queue_mapping, QueueMappingOptions};
use wenu_lambdas::firehose::DecryptTransform;
use wenu_lambdas::kinesis::StageFunction;
use wenu_registry::{Registry, RegistryCatalog, RegistryKeys, RegistryRules};
use wenu_stats::worker::TableHandler;

use crate::alarms::MqttNotifier;
use crate::config::{AwsConfig, Config};
use crate::http;

/// The consumers' names in the checkpoints table.
const FIREHOSE: &str = "firehose";
const ENRICH: &str = "enrich";
const ALARMS: &str = "alarms";

pub async fn run(config: Config) -> anyhow::Result<()> {
    let server = AwsServer::start(&config).await?;
    crate::serve::shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight appends");
    server.stop().await
}

/// The AWS resources named by `[aws]`.
pub struct Resources {
    pub stream: KinesisStream,
    pub lake: Arc<dyn ObjectStore>,
    pub stats: DynamoTable,
    pub alarms: DynamoTable,
    pub jobs: SqsQueue,
    pub topic: SnsNotifier,
    pub keys_prefix: String,
    pub keys_kms_key: String,
    pub sdk: aws_config::SdkConfig,
}

impl Resources {
    /// Opens them, creating those that are missing when `create_missing`.
    pub async fn open(aws: &AwsConfig, max_receive_count: u32) -> anyhow::Result<Resources> {
        let sdk = wenu_aws::config::load().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let sns = aws_sdk_sns::Client::new(&sdk);
        let table = |name: &str| {
            let (client, name) = (dynamodb.clone(), name.to_owned());
            async move {
                match aws.create_missing {
                    true => DynamoTable::create(client, &name).await.with_context(|| format!("table {name}")),
                    false => Ok(DynamoTable::new(client, name)),
                }
            }
        };
        let checkpoints: Arc<dyn wenu_core::table::TableStore> =
            Arc::new(table(&aws.checkpoints_table).await?);
        let stream = if aws.create_missing {
            KinesisStream::create(kinesis, &aws.stream, aws.shards, checkpoints).await
        } else {
            Ok(KinesisStream::new(kinesis, &aws.stream, checkpoints))
        }
        .with_context(|| format!("stream {}", aws.stream))?;
        let jobs = if aws.create_missing {
            SqsQueue::create(sqs, &aws.jobs_queue, max_receive_count).await
        } else {
            SqsQueue::open(sqs, &aws.jobs_queue).await
        }
        .with_context(|| format!("queue {}", aws.jobs_queue))?;
        let topic = if aws.alarms_topic.starts_with("arn:") {
            SnsNotifier::new(sns, &aws.alarms_topic)
        } else {
            SnsNotifier::create(sns, &aws.alarms_topic).await.map_err(|e| anyhow::anyhow!("topic: {e}"))?
        };
        let lake = Arc::new(wenu_aws::s3_store(&sdk, &aws.lake_bucket).context("the lake bucket")?);
        Ok(Resources {
            stream,
            lake,
            stats: table(&aws.stats_table).await?,
            alarms: table(&aws.alarms_table).await?,
            jobs,
            topic,
            keys_prefix: aws.keys_secret_prefix.clone(),
            keys_kms_key: aws.keys_kms_key.clone(),
            sdk,
        })
    }

    /// The device keys, looked at again at most every `refresh`.
    pub fn keyring(&self, refresh: Duration) -> SecretsKeyring {
        let client = aws_sdk_secretsmanager::Client::new(&self.sdk);
        SecretsKeyring::new(client, &self.keys_prefix, refresh).with_kms_key(Some(self.keys_kms_key.clone()))
    }

    fn keys(&self, registry: &Registry) -> Box<RegistryKeys> {
        Box::new(RegistryKeys::new(Box::new(self.keyring(Duration::from_secs(1))), registry.clone()))
    }
}

/// The running pipeline on AWS.
pub struct AwsServer {
    edge: Edge,
    /// What the Firehose delivery has written so far.
    lake: watch::Receiver<Delivered>,
    stop_workers: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl AwsServer {
    pub async fn start(config: &Config) -> anyhow::Result<AwsServer> {
        config.ensure_data_dir()?;
        let metrics = http::install_metrics_recorder();
        let aws = Resources::open(&config.aws, config.stats.max_receive_count).await?;
        let registry = config.registry().await?;
        let stream: Arc<dyn Stream> = Arc::new(aws.stream.clone());
        let edge = Edge::start(config.edge(), stream.clone(), registry.clone()).await?;
        let stream_arn = format!("arn:aws:kinesis:::stream/{}", config.aws.stream);
        let (stop_workers, stopped) = watch::channel(false);
        let poll_every = Duration::from_millis(config.aws.poll_millis.max(10));
        let mut workers = Vec::new();

        // Kinesis → Firehose (decrypt) → S3.
        let delivery = DeliveryOptions {
            buffer_bytes: config.lake.buffer_mib.clamp(1, 128) << 20,
            buffer_interval: Duration::from_secs(config.lake.buffer_secs.min(900)),
            poll_every,
            ..DeliveryOptions::default()
        };
        let transform = DecryptTransform::new(aws.keys(&registry), config.decode_limits());
        let (delivered, lake) = watch::channel(Delivered::default());
        workers.push(tokio::spawn(firehose::run(
            ShardReader::new(stream.clone(), FIREHOSE),
            transform,
            aws.lake.clone(),
            delivery,
            delivered,
            stopped.clone(),
        )));

        // Kinesis → enrich → SQS.
        let options = MappingOptions { poll_every, ..MappingOptions::default() };
        let live = LiveHub::default();
        let enrich = EnrichStage::new(
            aws.keys(&registry),
            Box::new(RegistryCatalog::new(registry.clone())),
            Arc::new(aws.jobs.clone()),
            aws.lake.clone(),
            config.decode_limits(),
        )
        .with_live(live.sender());
        workers.push(tokio::spawn(mapping::run(
            ShardReader::new(stream.clone(), ENRICH),
            stream_arn.clone(),
            StageFunction::new("enrich", enrich)?,
            options.clone(),
            stopped.clone(),
        )));

        // Kinesis → alarms → SNS (and webhooks, MQTT, the live stream).
        let store = AlarmStore::new(Arc::new(aws.alarms.clone()), config.alarms.history_days);
        let channel_notifiers = crate::alarms::channel_notifiers(config, &registry)?;
        let mut notifiers: Vec<Arc<dyn Notifier>> = vec![Arc::new(aws.topic.clone())];
        notifiers.extend(channel_notifiers.iter().map(|n| n.clone() as Arc<dyn Notifier>));
        notifiers.push(Arc::new(MqttNotifier(edge.publisher())));
        notifiers.push(Arc::new(live.clone()));
        let dispatcher = crate::alarms::dispatcher(config, &registry, &store, notifiers);
        let stage = AlarmStage::new(
            aws.keys(&registry),
            Box::new(RegistryCatalog::new(registry.clone())),
            Box::new(RegistryRules::new(registry.clone())),
            store.clone(),
            dispatcher.waker(),
            config.decode_limits(),
        );
        workers.push(tokio::spawn(mapping::run(
            ShardReader::new(stream.clone(), ALARMS),
            stream_arn,
            AlarmsFunction::new(stage, dispatcher.clone())?,
            options,
            stopped.clone(),
        )));
        // Retries due later than the batch that queued them.
        workers.push(tokio::spawn(dispatcher.clone().run(stopped.clone())));

        // SQS → stats → DynamoDB.
        let jobs: Arc<dyn Queue> = Arc::new(aws.jobs.clone());
        let queue_options = QueueMappingOptions {
            pollers: config.stats.workers.max(1),
            poll_every,
            ..QueueMappingOptions::default()
        };
        workers.push(tokio::spawn(queue_mapping::run(
            jobs,
            format!("arn:aws:sqs:::{}", config.aws.jobs_queue),
            Arc::new(TableHandler { table: Arc::new(aws.stats.clone()) }),
            queue_options,
            stopped,
        )));

        let mut tasks = Vec::new();
        let http_addr = match config.http.listen {
            Some(addr) => {
                let api =
                    ApiState::new(registry.clone(), Arc::new(aws.stats.clone()), live, config.api_limits())
                        .with_alarms(store, dispatcher.waker())
                        .with_channel_notifiers(channel_notifiers);
                let (addr, task) = http::serve(addr, metrics, api).await?;
                tasks.push(task);
                Some(addr)
            }
            None => None,
        };
        crate::serve::announce(&edge, http_addr);
        Ok(AwsServer { edge, lake, stop_workers, workers, tasks })
    }

    /// Stops taking connections (every acknowledged reading is in Kinesis),
    /// then lets each worker finish its batch; the Firehose buffer is
    /// delivered before it stops.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.edge.stop().await?;
        for task in &self.tasks {
            task.abort();
        }
        self.stop_workers.send_replace(true);
        for worker in self.workers {
            worker.await.context("a worker panicked")?;
        }
        let lake = *self.lake.borrow();
        tracing::info!(
            lake_rows = lake.rows,
            lake_files = lake.files,
            processing_failed = lake.failed_records,
            "stopped cleanly"
        );
        Ok(())
    }
}

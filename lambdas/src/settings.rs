//! What a function reads from its environment (set by the deployment
//! template), and the ports it builds from it:
//!
//! | variable | used by | what |
//! |---|---|---|
//! | `WENU_REGISTRY_URL` | all but stats | the registry (RDS PostgreSQL) |
//! | `WENU_KEYS_SECRET_PREFIX` | decrypt, enrich, alarms, api | device keys in Secrets Manager (the API provisions and rotates them) |
//! | `WENU_KEYS_REFRESH_SECS` | decrypt, enrich, alarms | how often keys are looked at again (60) |
//! | `WENU_STATS_TABLE` | stats, api | the stats table (DynamoDB) |
//! | `WENU_ALARMS_TABLE` | alarms, api | alarm states, history and outbox (DynamoDB) |
//! | `WENU_ALARMS_HISTORY_DAYS` | alarms, api | how long closed alarms are kept (90) |
//! | `WENU_ALARMS_TOPIC_ARN` | alarms | the SNS topic notifications go to |
//! | `WENU_JOBS_QUEUE_URL`, `WENU_JOBS_DLQ_URL` | enrich | the stats jobs queue and its dead-letter queue |
//! | `WENU_LAKE_BUCKET` | enrich | where unnormalisable readings are quarantined |

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_config::SdkConfig;
use object_store::ObjectStore;
use wenu_alarms::AlarmStore;
use wenu_aws::{DynamoTable, SecretsKeyring, SnsNotifier, SqsQueue};
use wenu_registry::{Registry, RegistryKeys};

/// A required environment variable.
pub fn required(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

fn number_or(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(text) => text.parse().with_context(|| format!("{name}={text:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

/// The registry (RDS PostgreSQL) named by `WENU_REGISTRY_URL`.
pub async fn registry() -> anyhow::Result<Registry> {
    let url = required("WENU_REGISTRY_URL")?;
    Registry::connect(&url).await.context("connecting to the registry")
}

/// Device keys from Secrets Manager under `WENU_KEYS_SECRET_PREFIX`, looked
/// at again every `WENU_KEYS_REFRESH_SECS`, with the devices from `registry`.
pub fn registry_keys(config: &SdkConfig, registry: &Registry) -> anyhow::Result<RegistryKeys> {
    Ok(RegistryKeys::new(Box::new(registry_keys_store(config)?), registry.clone()))
}

fn registry_keys_store(config: &SdkConfig) -> anyhow::Result<SecretsKeyring> {
    let prefix = required("WENU_KEYS_SECRET_PREFIX")?;
    let refresh = number_or("WENU_KEYS_REFRESH_SECS", 60)?;
    let client = aws_sdk_secretsmanager::Client::new(config);
    Ok(SecretsKeyring::new(client, prefix, Duration::from_secs(refresh)))
}

pub fn stats_table(config: &SdkConfig) -> anyhow::Result<DynamoTable> {
    Ok(DynamoTable::new(aws_sdk_dynamodb::Client::new(config), required("WENU_STATS_TABLE")?))
}

pub fn alarm_store(config: &SdkConfig) -> anyhow::Result<AlarmStore> {
    let table = DynamoTable::new(aws_sdk_dynamodb::Client::new(config), required("WENU_ALARMS_TABLE")?);
    let history_days = number_or("WENU_ALARMS_HISTORY_DAYS", 90)?;
    Ok(AlarmStore::new(Arc::new(table), history_days.try_into().context("WENU_ALARMS_HISTORY_DAYS")?))
}

pub fn alarm_topic(config: &SdkConfig) -> anyhow::Result<SnsNotifier> {
    Ok(SnsNotifier::new(aws_sdk_sns::Client::new(config), required("WENU_ALARMS_TOPIC_ARN")?))
}

pub fn jobs_queue(config: &SdkConfig) -> anyhow::Result<SqsQueue> {
    let client = aws_sdk_sqs::Client::new(config);
    Ok(SqsQueue::new(client, required("WENU_JOBS_QUEUE_URL")?, required("WENU_JOBS_DLQ_URL")?))
}

pub fn lake_store(config: &SdkConfig) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let bucket = required("WENU_LAKE_BUCKET")?;
    Ok(Arc::new(wenu_aws::s3_store(config, &bucket).context("the lake bucket")?))
}

/// The API's state on AWS: the registry, stats and alarms in DynamoDB,
/// device keys provisioned and rotated in Secrets Manager.
/// Raw readings are read from the lake with Athena, not through the API,
/// and a function has no live stream to offer; acknowledging an alarm
/// queues its notification, which the alarms function delivers.
pub async fn api_state(config: &SdkConfig) -> anyhow::Result<wenu_api::ApiState> {
    let stats = Arc::new(stats_table(config)?);
    let registry = registry().await?;
    let keys = registry_keys_store(config)?;
    let state = wenu_api::ApiState::new(registry, stats, Default::default(), Default::default())
        .with_alarms(alarm_store(config)?, Default::default())
        .with_device_keys(Arc::new(wenu_api::StoredKeys::new(Box::new(keys))));
    Ok(state)
}

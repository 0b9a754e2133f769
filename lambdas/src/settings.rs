//! What a function reads from its environment (set by the deployment
//! template), and the ports it builds from it:
//!
//! | variable | used by | what |
//! |---|---|---|
//! | `WENU_REGISTRY_URL` | all but stats | the registry (RDS PostgreSQL), without credentials when the next is set |
//! | `WENU_REGISTRY_SECRET_ARN` | all but stats | the secret RDS keeps the registry's credentials in (`{"username", "password"}`) |
//! | `WENU_KEYS_SECRET_PREFIX` | decrypt, enrich, alarms, api | device keys in Secrets Manager (the API provisions and rotates them) |
//! | `WENU_KEYS_KMS_KEY` | api | the KMS key new device-key secrets are encrypted with (its policy says who reads them) |
//! | `WENU_KEYS_REFRESH_SECS` | decrypt, enrich, alarms | how often keys are looked at again (60) |
//! | `WENU_STATS_TABLE` | stats, api | the stats table (DynamoDB) |
//! | `WENU_ALARMS_TABLE` | alarms, api | alarm states, history and outbox (DynamoDB) |
//! | `WENU_ALARMS_HISTORY_DAYS` | alarms, api | how long closed alarms are kept (90) |
//! | `WENU_ALARMS_TOPIC_ARN` | alarms | the SNS topic notifications go to |
//! | `WENU_SMTP_URL`, `WENU_EMAIL_FROM` | alarms | the SMTP relay and sender of e-mail channels |
//! | `WENU_JOBS_QUEUE_URL`, `WENU_JOBS_DLQ_URL` | enrich | the stats jobs queue and its dead-letter queue |
//! | `WENU_LAKE_BUCKET` | enrich | where unnormalisable readings are quarantined |
//! | `WENU_TOPIC_PREFIX` | devices | what comes before `wenu/{device}/…` on this stage (none in production) |

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_config::SdkConfig;
use object_store::ObjectStore;
use wenu_alarms::email::NoRelay;
use wenu_alarms::{AlarmStore, EmailNotifier, MailSender, SmtpSender, WebhookNotifier, WebhookPolicy};
use wenu_aws::{DynamoTable, SecretsKeyring, SnsNotifier, SqsQueue};
use wenu_registry::{Registry, RegistryChannels, RegistryKeys};

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

/// The registry (RDS PostgreSQL) named by `WENU_REGISTRY_URL`, with the
/// credentials of `WENU_REGISTRY_SECRET_ARN` if set.
pub async fn registry(config: &SdkConfig) -> anyhow::Result<Registry> {
    let mut url = required("WENU_REGISTRY_URL")?;
    if let Ok(secret) = std::env::var("WENU_REGISTRY_SECRET_ARN") {
        url = with_credentials(&aws_sdk_secretsmanager::Client::new(config), &url, &secret).await?;
    }
    // Not the URL in the error: it holds the password.
    Registry::connect(&url).await.context("connecting to the registry")
}

/// `url` with the user name and password of the secret `secret_id`, in the
/// JSON shape RDS keeps (and rotates) a database's master credentials in.
pub async fn with_credentials(
    client: &aws_sdk_secretsmanager::Client,
    url: &str,
    secret_id: &str,
) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct Credentials {
        username: String,
        password: String,
    }
    let secret = client.get_secret_value().secret_id(secret_id).send().await.map_err(|e| {
        let e = aws_sdk_secretsmanager::error::DisplayErrorContext(e);
        anyhow::anyhow!("reading the registry credentials from {secret_id}: {e}")
    })?;
    let text = secret.secret_string().with_context(|| format!("{secret_id} holds no text"))?;
    // serde_json's message names a line and column, never the text.
    let credentials: Credentials = serde_json::from_str(text)
        .with_context(|| format!("{secret_id} is not {{\"username\", \"password\"}} JSON"))?;
    let mut url = url::Url::parse(url).context("WENU_REGISTRY_URL is not a URL")?;
    let refused = || anyhow::anyhow!("WENU_REGISTRY_URL cannot take credentials");
    url.set_username(&percent_encoded(&credentials.username)).map_err(|()| refused())?;
    url.set_password(Some(&percent_encoded(&credentials.password))).map_err(|()| refused())?;
    Ok(url.into())
}

/// Every byte but RFC 3986's unreserved characters as `%XX`. `Url` leaves
/// `%` itself alone in userinfo (WHATWG's encode set), so a password with a
/// `%` would otherwise reach the database decoded into something else.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
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
    Ok(SecretsKeyring::new(client, prefix, Duration::from_secs(refresh))
        .with_kms_key(std::env::var("WENU_KEYS_KMS_KEY").ok()))
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

/// The notifiers of companies' channels: webhooks, and e-mail through the
/// SMTP relay `WENU_SMTP_URL` (SES's SMTP interface, say) from
/// `WENU_EMAIL_FROM`; without a relay e-mails end as dead letters saying so.
pub fn channel_notifiers(registry: &Registry) -> anyhow::Result<Vec<Arc<dyn wenu_alarms::ChannelNotifier>>> {
    let directory = Arc::new(RegistryChannels::new(registry.clone()));
    let webhooks =
        WebhookNotifier::new(directory.clone(), WebhookPolicy::default()).map_err(anyhow::Error::msg)?;
    let sender: Arc<dyn MailSender> = match std::env::var("WENU_SMTP_URL") {
        Ok(url) => {
            Arc::new(SmtpSender::new(&url, None, Duration::from_secs(20)).map_err(anyhow::Error::msg)?)
        }
        Err(_) => Arc::new(NoRelay("WENU_SMTP_URL is not set")),
    };
    let from = std::env::var("WENU_EMAIL_FROM").unwrap_or_else(|_| "Wenu alarms <wenu@localhost>".into());
    let from = from.parse().map_err(|e| anyhow::anyhow!("WENU_EMAIL_FROM: {e}"))?;
    Ok(vec![Arc::new(webhooks), Arc::new(EmailNotifier::new(directory, sender, from))])
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
    let registry = registry(config).await?;
    let keys = registry_keys_store(config)?;
    let state = wenu_api::ApiState::new(registry, stats, Default::default(), Default::default())
        .with_alarms(alarm_store(config)?, Default::default())
        .with_device_keys(Arc::new(wenu_api::StoredKeys::new(Box::new(keys))));
    Ok(state)
}

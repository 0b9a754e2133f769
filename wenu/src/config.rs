//! `wenu.toml` and its `WENU_*` environment overrides.
//!
//! Every key can be set in the file or by an environment variable named after
//! its path: `mqtt.listen` ↔ `WENU_MQTT_LISTEN`, `mqtt.tls.cert` ↔
//! `WENU_MQTT_TLS_CERT`, `data_dir` ↔ `WENU_DATA_DIR`. The environment wins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use wenu_decrypt::DecodeLimits;
use wenu_ingest::{EdgeConfig, QuotaConfig, ThrottleConfig, TlsConfig};
use wenu_registry::Registry;
use wenu_runtime::BatchLimits;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the stream, lake, queue and tables live: `embedded` (files in
    /// `data_dir`) or `aws` (the services named in `[aws]`; a binary built
    /// with the `aws` feature).
    pub backend: Backend,
    pub data_dir: PathBuf,
    pub mqtt: MqttConfig,
    pub stream: StreamConfig,
    pub lake: LakeConfig,
    pub registry: RegistryConfig,
    pub stats: StatsConfig,
    pub http: HttpConfig,
    pub alarms: AlarmsConfig,
    pub aws: AwsConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Embedded,
    Aws,
}

/// The AWS services of `backend = "aws"`, reached with aws-config's standard
/// settings (`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`, …). The
/// deployment template creates them; `create_missing` creates all but the
/// bucket, for development against an emulator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// The Kinesis stream the edge appends to.
    pub stream: String,
    /// DynamoDB table of the consumers' checkpoints (like the KCL's lease table).
    pub checkpoints_table: String,
    /// S3 bucket of the lake (`readings/`, `processing-failed/`, `enrich-quarantine/`).
    pub lake_bucket: String,
    pub stats_table: String,
    pub alarms_table: String,
    /// SQS FIFO queue of the stats jobs (`.fifo` added), with its `-dlq`.
    pub jobs_queue: String,
    /// SNS topic of the alarm notifications: an ARN, or a name to create.
    pub alarms_topic: String,
    /// Device keys: Secrets Manager secrets `{prefix}/keys-NNNN`.
    pub keys_secret_prefix: String,
    /// KMS key new device-key secrets are encrypted with (empty: Secrets
    /// Manager's own); a deployed stage's `DeviceKeysKeyArn` output.
    pub keys_kms_key: String,
    /// IoT policy attached to device certificates (`wenu-{stage}-device`
    /// from the deployment template; created if missing).
    pub device_policy: String,
    pub create_missing: bool,
    /// Shards of a stream it creates.
    pub shards: u32,
    /// How long each consumer waits before reading the stream again when it
    /// is caught up (Kinesis allows 5 reads a second per shard, all
    /// consumers together).
    pub poll_millis: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Plain MQTT; `""` in the environment or no key in the file disables it.
    pub listen: Option<SocketAddr>,
    pub max_payload_bytes: usize,
    pub max_connections: usize,
    /// Failed logins from one source address per minute (and at once)
    /// before its CONNECTs are refused without a look at their credentials.
    pub failed_logins_per_address_per_minute: u32,
    /// Failed logins for one device id per minute, from any address; the
    /// device itself still gets in from the address of its last good login.
    pub failed_logins_per_device_per_minute: u32,
    /// What one device may publish: messages per second...
    pub device_publishes_per_second: u32,
    /// ...and at once above that rate...
    pub device_publish_burst: u32,
    /// ...payload bytes per second...
    pub device_bytes_per_second: u32,
    /// ...and at once. Beyond them a publish is refused (`quota_exceeded`).
    pub device_byte_burst: u32,
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub retention_hours: f64,
    /// How often the retention sweep runs.
    pub sweep_interval_secs: u64,
    /// Appends queued for the log writer before the edge waits.
    pub queue_depth: usize,
    /// Cap on the log's size (16 GiB unless set); publishes beyond it are
    /// refused (not acknowledged) until retention frees space, so one
    /// flooding client cannot fill the disk the other stores share.
    pub max_bytes: Option<u64>,
    /// At the cap, delete the oldest records even if a consumer has not read
    /// them, rather than refuse new ones. Off unless set: retention otherwise
    /// never deletes what a consumer has not checkpointed past.
    #[serde(default)]
    pub delete_unread_at_cap: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// Where the Parquet lake lives; `<data_dir>/lake` when unset.
    pub dir: Option<PathBuf>,
    /// Flush a batch at this many MiB of envelopes (Firehose: 1–128)...
    pub buffer_mib: usize,
    /// ...or this many seconds after its first record (Firehose: 0–900).
    pub buffer_secs: u64,
    /// Readings claiming to be further ahead of their arrival are quarantined.
    pub max_future_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `sqlite:/path/registry.db` or `postgres://user:password@host/db`;
    /// `<data_dir>/registry.db` when unset.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatsConfig {
    /// Enrich hands a batch to the queue at this many MiB of envelopes...
    pub batch_mib: usize,
    /// ...or this many milliseconds after its first record (a Lambda's batching window).
    pub batch_millis: u64,
    /// Stats workers: each series is on one worker at a time.
    pub workers: usize,
    /// Receives before a failing job goes to the dead-letter queue (SQS maxReceiveCount).
    pub max_receive_count: u32,
    /// How often expired stats are swept from the table.
    pub sweep_interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Serves the API (`/api/v1`), the dashboard and backoffice pages, and
    /// `/metrics` (Prometheus).
    pub listen: Option<SocketAddr>,
    /// Requests per second of an API token without its own limit...
    pub rate_per_second: u32,
    /// ...and how many it may make at once above that rate.
    pub burst: u32,
    /// A connected device that had nothing accepted for this long shows as
    /// silent in the fleet view.
    pub silent_after_secs: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlarmsConfig {
    /// How long alarm transitions and dead letters are kept.
    pub history_days: u32,
    /// Sends of one notification to one channel (a webhook) before it is
    /// given up on and kept as a dead letter...
    pub max_attempts: u32,
    /// ...with backoff doubling from this many milliseconds...
    pub first_backoff_millis: u64,
    /// ...up to this many seconds.
    pub max_backoff_secs: u64,
    /// How often devices are checked for silence (missing-data rules).
    pub timer_millis: u64,
    /// Let webhooks reach private networks (10/8, 172.16/12, 192.168/16,
    /// loopback, unique-local IPv6): for receivers on the premises. Off:
    /// public addresses only. Link-local addresses (cloud metadata) are
    /// refused either way.
    #[serde(default)]
    pub webhook_private_networks: bool,
    /// A PEM file of CA certificates trusted for HTTPS webhooks besides the
    /// public roots (a private CA's receivers).
    #[serde(default)]
    pub webhook_ca: Option<PathBuf>,
    /// The SMTP relay e-mail channels go through:
    /// `smtps://user:password@host:465`, `smtp://user:password@host:587?tls=required`
    /// (STARTTLS), or `smtp://host:25` on a trusted network. Unset: e-mails
    /// are retried, then kept as dead letters naming this setting. The
    /// password is never shown or logged.
    #[serde(default)]
    pub smtp_url: Option<String>,
    /// The sender of alarm e-mails and reports.
    #[serde(default = "default_email_from")]
    pub email_from: String,
    /// A PEM file of a CA trusted for the SMTP relay besides the system's.
    #[serde(default)]
    pub smtp_ca: Option<PathBuf>,
}

fn default_email_from() -> String {
    "Wenu alarms <wenu@localhost>".into()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            data_dir: PathBuf::from("data"),
            mqtt: MqttConfig {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
                max_payload_bytes: 64 * 1024,
                max_connections: 100_000,
                failed_logins_per_address_per_minute: 60,
                failed_logins_per_device_per_minute: 10,
                device_publishes_per_second: QuotaConfig::default().publishes_per_second,
                device_publish_burst: QuotaConfig::default().publish_burst,
                device_bytes_per_second: QuotaConfig::default().bytes_per_second,
                device_byte_burst: QuotaConfig::default().byte_burst,
                tls: None,
            },
            stream: StreamConfig {
                retention_hours: 24.0,
                sweep_interval_secs: 60,
                queue_depth: 1024,
                max_bytes: Some(16 << 30),
                delete_unread_at_cap: false,
            },
            lake: LakeConfig { dir: None, buffer_mib: 16, buffer_secs: 60, max_future_secs: 600 },
            registry: RegistryConfig { url: None },
            stats: StatsConfig {
                batch_mib: 4,
                batch_millis: 500,
                workers: 2,
                max_receive_count: 5,
                sweep_interval_secs: 600,
            },
            http: HttpConfig {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
                rate_per_second: 50,
                burst: 100,
                silent_after_secs: 300,
            },
            alarms: AlarmsConfig {
                history_days: 90,
                max_attempts: 10,
                first_backoff_millis: 500,
                max_backoff_secs: 60,
                timer_millis: 1000,
                webhook_private_networks: false,
                webhook_ca: None,
                smtp_url: None,
                email_from: default_email_from(),
                smtp_ca: None,
            },
            aws: AwsConfig {
                stream: "wenu-readings".into(),
                checkpoints_table: "wenu-checkpoints".into(),
                lake_bucket: "wenu-lake".into(),
                stats_table: "wenu-stats".into(),
                alarms_table: "wenu-alarms".into(),
                jobs_queue: "wenu-jobs".into(),
                alarms_topic: "wenu-alarms".into(),
                keys_secret_prefix: "wenu/device-keys".into(),
                keys_kms_key: String::new(),
                device_policy: "wenu-device".into(),
                create_missing: false,
                shards: 1,
                poll_millis: 1000,
            },
        }
    }
}

/// Sections whose keys may themselves contain `_`, longest first, so that
/// `WENU_MQTT_TLS_CLIENT_CA` becomes `mqtt.tls.client_ca`.
const SECTIONS: [&str; 9] =
    ["mqtt_tls", "mqtt", "stream", "lake", "registry", "stats", "http", "alarms", "aws"];

fn env_key_to_path(key: &str) -> String {
    let key = key.to_ascii_lowercase();
    for section in SECTIONS {
        if let Some(rest) = key.strip_prefix(section).and_then(|r| r.strip_prefix('_')) {
            return format!("{}.{rest}", section.replace('_', "."));
        }
    }
    key
}

/// The command-line options that choose the configuration, shared by every
/// command (and by `wenu-bench`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file; every key can also be set as WENU_<SECTION>_<KEY>.
    #[arg(long = "config", short = 'c', global = true, env = "WENU_CONFIG")]
    pub file: Option<PathBuf>,
    /// Data directory (stream, registry, keyring); overrides `data_dir` of the config.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// The configuration these options choose.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.file.as_deref())?;
        if let Some(data_dir) = &self.data_dir {
            config.data_dir = data_dir.clone();
        }
        Ok(config)
    }
}

impl Config {
    /// Defaults, then the TOML file (if given), then `WENU_*` variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            anyhow::ensure!(file.exists(), "config file {} does not exist", file.display());
            figment = figment.merge(Toml::file(file));
        }
        // Not settings: the config file's path (a CLI option) and test fault injection.
        let env = Env::prefixed("WENU_")
            .ignore(&["CONFIG", "FAILPOINTS"])
            .map(|key| env_key_to_path(key.as_str()).into())
            .lowercase(false);
        Self::extract(figment.merge(env))
    }

    /// The configuration as a `wenu.toml` would hold it; a password in
    /// `registry.url` or `alarms.smtp_url` is masked.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        for url in [&mut shown.registry.url, &mut shown.alarms.smtp_url].into_iter().flatten() {
            if let Some((scheme_user, rest)) = url.split_once("://")
                && let Some((credentials, host)) = rest.rsplit_once('@')
                && let Some((user, _password)) = credentials.split_once(':')
            {
                *url = format!("{scheme_user}://{user}:***@{host}");
            }
        }
        Ok(toml::to_string(&shown)?)
    }

    fn extract(figment: Figment) -> anyhow::Result<Config> {
        let config: Config = figment.extract().context("invalid configuration")?;
        config.validate().context("invalid configuration")?;
        Ok(config)
    }

    /// Rejects values that parse but cannot work, naming the key, so that a
    /// typo fails at start-up rather than as a panic or a stall later.
    fn validate(&self) -> anyhow::Result<()> {
        fn check<T: PartialOrd + std::fmt::Display>(
            key: &str,
            value: T,
            min: T,
            max: T,
            why: &str,
        ) -> anyhow::Result<()> {
            anyhow::ensure!(
                value >= min && value <= max,
                "{key} = {value} is out of range: {min}..={max} ({why})"
            );
            Ok(())
        }
        let hours = self.stream.retention_hours;
        anyhow::ensure!(
            hours.is_finite() && hours > 0.0 && hours <= 8760.0,
            "stream.retention_hours = {hours} is out of range: more than 0, at most 8760 (a year, Kinesis' longest)"
        );
        check(
            "stream.queue_depth",
            self.stream.queue_depth,
            1,
            1 << 20,
            "appends waiting for the log writer",
        )?;
        check(
            "mqtt.max_payload_bytes",
            self.mqtt.max_payload_bytes,
            64,
            256 << 20,
            "MQTT's limit is 256 MiB",
        )?;
        check("lake.buffer_mib", self.lake.buffer_mib, 1, 128, "Firehose's buffering size")?;
        check("lake.buffer_secs", self.lake.buffer_secs, 0, 900, "Firehose's buffering interval")?;
        check("lake.max_future_secs", self.lake.max_future_secs, 0, 366 * 86_400, "at most a year")?;
        check("stats.batch_mib", self.stats.batch_mib, 1, 1024, "enrich's batch size")?;
        check("stats.batch_millis", self.stats.batch_millis, 0, 3_600_000, "at most an hour")?;
        check("stats.max_receive_count", self.stats.max_receive_count, 1, 1000, "SQS allows 1–1000")?;
        check(
            "http.rate_per_second",
            self.http.rate_per_second,
            1,
            1_000_000,
            "requests per second per token",
        )?;
        check("http.burst", self.http.burst, 1, 1_000_000, "requests at once per token")?;
        // The edge records when a device was last heard from every 5 s.
        check("http.silent_after_secs", self.http.silent_after_secs, 10, 30 * 86_400, "10 s to 30 days")?;
        check("alarms.max_attempts", self.alarms.max_attempts, 1, 1000, "sends per notification")?;
        check("alarms.max_backoff_secs", self.alarms.max_backoff_secs, 1, 86_400, "at most a day")?;
        check(
            "alarms.first_backoff_millis",
            self.alarms.first_backoff_millis,
            1,
            3_600_000,
            "at most an hour",
        )?;
        check("alarms.timer_millis", self.alarms.timer_millis, 10, 3_600_000, "silence checks")?;
        Ok(())
    }

    pub fn edge(&self) -> EdgeConfig {
        EdgeConfig {
            listen: self.mqtt.listen,
            tls: self.mqtt.tls.clone(),
            max_payload_bytes: self.mqtt.max_payload_bytes,
            max_connections: self.mqtt.max_connections,
            login_throttle: ThrottleConfig {
                failures_per_address_per_minute: self.mqtt.failed_logins_per_address_per_minute,
                failures_per_device_per_minute: self.mqtt.failed_logins_per_device_per_minute,
            },
            device_quota: QuotaConfig {
                publishes_per_second: self.mqtt.device_publishes_per_second,
                publish_burst: self.mqtt.device_publish_burst,
                bytes_per_second: self.mqtt.device_bytes_per_second,
                byte_burst: self.mqtt.device_byte_burst,
            },
            counters_file: Some(self.data_dir.join("edge.json")),
        }
    }

    /// Creates the data directory, owner-only: it holds the registry's
    /// password and token hashes, webhook secrets and the encrypted log.
    /// An existing directory keeps its mode.
    pub fn ensure_data_dir(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        if !self.data_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.data_dir)
                .with_context(|| format!("creating data directory {}", self.data_dir.display()))?;
        }
        Ok(())
    }

    pub fn keyring_path(&self) -> PathBuf {
        self.data_dir.join("keyring.json")
    }

    pub fn lake_dir(&self) -> PathBuf {
        self.lake.dir.clone().unwrap_or_else(|| self.data_dir.join("lake"))
    }

    /// The lake's batching, checked against Firehose's ranges.
    pub fn lake_batch(&self) -> anyhow::Result<BatchLimits> {
        Ok(BatchLimits::new(
            self.lake.buffer_mib.saturating_mul(1 << 20),
            Duration::from_secs(self.lake.buffer_secs),
        )?)
    }

    /// Enrich's batching.
    pub fn enrich_batch(&self) -> BatchLimits {
        BatchLimits::unchecked(
            self.stats.batch_mib.clamp(1, 1024) << 20,
            Duration::from_millis(self.stats.batch_millis),
        )
    }

    /// Connects to the registry (and migrates it).
    pub async fn registry(&self) -> anyhow::Result<Registry> {
        Ok(match &self.registry.url {
            // The URL may hold a password: it is never logged or shown.
            Some(url) => {
                Registry::connect(url).await.context("connecting to the registry at registry.url")?
            }
            None => Registry::open(&Registry::default_path(&self.data_dir)).await?,
        })
    }

    pub fn stats_path(&self) -> PathBuf {
        self.data_dir.join("stats.db")
    }

    pub fn alarms_path(&self) -> PathBuf {
        self.data_dir.join("alarms.db")
    }

    /// The API's request limits.
    pub fn api_limits(&self) -> wenu_api::ApiLimits {
        wenu_api::ApiLimits {
            rate_per_second: self.http.rate_per_second,
            burst: self.http.burst,
            silent_after: Duration::from_secs(self.http.silent_after_secs.into()),
            ..wenu_api::ApiLimits::default()
        }
    }

    /// How the alarm dispatcher retries a notification.
    pub fn dispatch_options(&self) -> wenu_alarms::DispatchOptions {
        wenu_alarms::DispatchOptions {
            max_attempts: self.alarms.max_attempts.max(1),
            first_backoff: Duration::from_millis(self.alarms.first_backoff_millis),
            max_backoff: Duration::from_secs(self.alarms.max_backoff_secs),
            ..wenu_alarms::DispatchOptions::default()
        }
    }

    /// Where webhooks may connect, and the extra CAs they trust.
    pub fn webhook_policy(&self) -> anyhow::Result<wenu_alarms::WebhookPolicy> {
        let mut policy = wenu_alarms::WebhookPolicy {
            allow_private: self.alarms.webhook_private_networks,
            ..wenu_alarms::WebhookPolicy::default()
        };
        if let Some(path) = &self.alarms.webhook_ca {
            policy = policy.trusting_ca_file(path).map_err(|e| anyhow::anyhow!("alarms.webhook_ca: {e}"))?;
        }
        Ok(policy)
    }

    /// The SMTP relay of e-mail channels.
    pub fn mail_sender(&self) -> anyhow::Result<Arc<dyn wenu_alarms::MailSender>> {
        let Some(url) = &self.alarms.smtp_url else {
            return Ok(Arc::new(wenu_alarms::email::NoRelay("alarms.smtp_url is not set")));
        };
        let ca = match &self.alarms.smtp_ca {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("alarms.smtp_ca {}", path.display()))?)
            }
            None => None,
        };
        let sender = wenu_alarms::SmtpSender::new(url, ca.as_deref(), Duration::from_secs(30))
            .map_err(|e| anyhow::anyhow!("alarms.smtp_url: {e}"))?;
        Ok(Arc::new(sender))
    }

    /// The sender of alarm e-mails.
    pub fn email_from(&self) -> anyhow::Result<wenu_alarms::Mailbox> {
        self.alarms.email_from.parse().map_err(|e| anyhow::anyhow!("alarms.email_from: {e}"))
    }

    pub fn decode_limits(&self) -> DecodeLimits {
        let max_future_ms = (self.lake.max_future_secs as i64).saturating_mul(1000);
        DecodeLimits { max_future_ms, ..DecodeLimits::default() }
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs_f64(self.stream.retention_hours * 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn env_names_map_to_nested_keys() {
        assert_eq!(env_key_to_path("MQTT_LISTEN"), "mqtt.listen");
        assert_eq!(env_key_to_path("MQTT_MAX_PAYLOAD_BYTES"), "mqtt.max_payload_bytes");
        assert_eq!(env_key_to_path("MQTT_TLS_CLIENT_CA"), "mqtt.tls.client_ca");
        assert_eq!(env_key_to_path("HTTP_LISTEN"), "http.listen");
        assert_eq!(env_key_to_path("DATA_DIR"), "data_dir");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("wenu.toml", "data_dir = \"/var/wenu\"\n[mqtt]\nmax_payload_bytes = 1000\n")?;
            jail.set_env("WENU_MQTT_LISTEN", "127.0.0.1:1999");
            jail.set_env("WENU_STREAM_RETENTION_HOURS", "2");
            let config = Config::load(Some(Path::new("wenu.toml"))).unwrap();
            assert_eq!(config.data_dir, PathBuf::from("/var/wenu"));
            assert_eq!(config.mqtt.max_payload_bytes, 1000);
            assert_eq!(config.mqtt.listen, Some("127.0.0.1:1999".parse().unwrap()));
            assert_eq!(config.retention(), Duration::from_secs(7200));
            jail.set_env("WENU_CONFIG", "wenu.toml");
            jail.set_env("WENU_FAILPOINTS", "x=abort");
            assert!(Config::load(None).is_ok(), "WENU_CONFIG and WENU_FAILPOINTS are not settings");
            jail.set_env("WENU_MQTT_BOGUS", "1");
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }

    /// Every key of the file, as `section.key`.
    const KEYS: [&str; 57] = [
        "backend",
        "data_dir",
        "mqtt.listen",
        "mqtt.max_payload_bytes",
        "mqtt.max_connections",
        "mqtt.failed_logins_per_address_per_minute",
        "mqtt.failed_logins_per_device_per_minute",
        "mqtt.device_publishes_per_second",
        "mqtt.device_publish_burst",
        "mqtt.device_bytes_per_second",
        "mqtt.device_byte_burst",
        "mqtt.tls.listen",
        "mqtt.tls.cert",
        "mqtt.tls.key",
        "mqtt.tls.client_ca",
        "stream.retention_hours",
        "stream.sweep_interval_secs",
        "stream.queue_depth",
        "stream.max_bytes",
        "stream.delete_unread_at_cap",
        "lake.dir",
        "lake.buffer_mib",
        "lake.buffer_secs",
        "lake.max_future_secs",
        "registry.url",
        "stats.batch_mib",
        "stats.batch_millis",
        "stats.workers",
        "stats.max_receive_count",
        "stats.sweep_interval_secs",
        "http.listen",
        "http.rate_per_second",
        "http.burst",
        "http.silent_after_secs",
        "alarms.history_days",
        "alarms.max_attempts",
        "alarms.first_backoff_millis",
        "alarms.max_backoff_secs",
        "alarms.timer_millis",
        "alarms.webhook_private_networks",
        "alarms.webhook_ca",
        "alarms.smtp_url",
        "alarms.email_from",
        "alarms.smtp_ca",
        "aws.stream",
        "aws.checkpoints_table",
        "aws.lake_bucket",
        "aws.stats_table",
        "aws.alarms_table",
        "aws.jobs_queue",
        "aws.alarms_topic",
        "aws.keys_secret_prefix",
        "aws.keys_kms_key",
        "aws.device_policy",
        "aws.create_missing",
        "aws.shards",
        "aws.poll_millis",
    ];

    fn cases() -> u32 {
        std::env::var("WENU_GENERATED_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(3_000)
    }

    /// A TOML value: of the right type and range, or not.
    fn toml_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            (0..2000u64).prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            Just("nan".to_owned()),
            Just("-inf".to_owned()),
            Just("1e400".to_owned()),
            Just("18446744073709551616".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            "[ -~]{0,16}".prop_map(|t| format!("{t:?}")),
            Just("\"127.0.0.1:0\"".to_owned()),
            Just("\"[::1]:8883\"".to_owned()),
            Just("\"sqlite:/nonexistent/r.db\"".to_owned()),
            Just("[1, 2]".to_owned()),
            Just("{ a = 1 }".to_owned()),
            Just("1979-05-27T07:32:00Z".to_owned()),
        ]
    }

    /// A `wenu.toml`: known keys (some twice), unknown ones, broken lines.
    fn toml_document() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            8 => (proptest::sample::select(KEYS.to_vec()), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
            1 => ("[a-z_.]{1,20}", toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
            1 => "[ -~]{0,30}",
        ];
        proptest::collection::vec(line, 0..8).prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the file says, loading it either fails with a message or
        /// gives a configuration whose every derived setting can be built.
        #[test]
        fn generated_config_files_load_or_fail_with_a_message(document in toml_document()) {
            let figment = Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(&document));
            match Config::extract(figment) {
                Ok(config) => {
                    prop_assert!(config.stream.retention_hours.is_finite());
                    let _ = (config.edge(), config.enrich_batch(), config.decode_limits(), config.retention());
                    prop_assert!(config.lake_batch().is_ok(), "validated ranges are Firehose's");
                }
                Err(error) => {
                    let message = format!("{error:#}");
                    prop_assert!(message.starts_with("invalid configuration: "), "{message}");
                }
            }
        }
    }

    /// `docs/operations.md` documents every key, and `KEYS` is every key.
    #[test]
    fn every_key_is_in_the_operations_guide() {
        fn leaves(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
            match value {
                toml::Value::Table(table) => {
                    for (key, value) in table {
                        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                        leaves(&path, value, out);
                    }
                }
                _ => out.push(prefix.to_owned()),
            }
        }
        let mut config = Config::default();
        // Every optional key set, so that it shows.
        config.mqtt.tls = Some(TlsConfig {
            listen: "127.0.0.1:8883".parse().unwrap(),
            cert: "c".into(),
            key: "k".into(),
            client_ca: Some("ca".into()),
        });
        config.stream.max_bytes = Some(1);
        config.lake.dir = Some("l".into());
        config.registry.url = Some("sqlite:r".into());
        config.alarms.webhook_ca = Some("ca.pem".into());
        config.alarms.smtp_url = Some("smtp://relay".into());
        config.alarms.smtp_ca = Some("ca.pem".into());
        let mut keys = Vec::new();
        leaves("", &toml::Value::try_from(&config).unwrap(), &mut keys);
        keys.sort();
        let mut listed: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
        listed.sort();
        assert_eq!(keys, listed, "KEYS lists every key of the configuration");
        let guide =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md")).unwrap();
        for key in KEYS {
            assert!(guide.contains(&format!("| `{key}` |")), "docs/operations.md does not document {key}");
        }
    }

    #[test]
    fn passwords_in_urls_are_masked_when_shown() {
        let mut config = Config::default();
        config.registry.url = Some("postgres://wenu:db-secret@db.internal/wenu".into());
        config.alarms.smtp_url = Some("smtp://alarms:mail-secret@smtp.example.com:587?tls=required".into());
        let shown = config.to_toml().unwrap();
        assert!(!shown.contains("db-secret") && !shown.contains("mail-secret"), "{shown}");
        assert!(shown.contains("smtp://alarms:***@smtp.example.com:587?tls=required"), "{shown}");
    }

    #[test]
    fn values_that_cannot_work_are_refused_by_name() {
        for (document, key) in [
            ("stream.retention_hours = nan", "stream.retention_hours"),
            ("stream.retention_hours = -1.0", "stream.retention_hours"),
            ("lake.buffer_mib = 0", "lake.buffer_mib"),
            ("lake.buffer_secs = 901", "lake.buffer_secs"),
            ("stream.queue_depth = 0", "stream.queue_depth"),
            ("alarms.timer_millis = 0", "alarms.timer_millis"),
            ("http.rate_per_second = 0", "http.rate_per_second"),
        ] {
            let figment =
                Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(document));
            let error = format!("{:#}", Config::extract(figment).unwrap_err());
            assert!(error.contains(key), "{document}: {error}");
        }
    }
}

//! `wenu.toml` and its `WENU_*` environment overrides.
//!
//! Every key can be set in the file or by an environment variable named after
//! its path: `mqtt.listen` ↔ `WENU_MQTT_LISTEN`, `mqtt.tls.cert` ↔
//! `WENU_MQTT_TLS_CERT`, `data_dir` ↔ `WENU_DATA_DIR`. The environment wins.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use wenu_decrypt::DecodeLimits;
use wenu_ingest::{EdgeConfig, TlsConfig};
use wenu_local::BatchLimits;
use wenu_registry::Registry;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub mqtt: MqttConfig,
    pub stream: StreamConfig,
    pub lake: LakeConfig,
    pub registry: RegistryConfig,
    pub stats: StatsConfig,
    pub http: HttpConfig,
    pub alarms: AlarmsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Plain MQTT; `""` in the environment or no key in the file disables it.
    pub listen: Option<SocketAddr>,
    pub max_payload_bytes: usize,
    pub max_connections: usize,
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
    /// Cap on the log's size; publishes beyond it are refused (not
    /// acknowledged) until retention frees space.
    pub max_bytes: Option<u64>,
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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            mqtt: MqttConfig {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
                max_payload_bytes: 64 * 1024,
                max_connections: 100_000,
                tls: None,
            },
            stream: StreamConfig {
                retention_hours: 24.0,
                sweep_interval_secs: 60,
                queue_depth: 1024,
                max_bytes: None,
            },
            lake: LakeConfig { dir: None, buffer_mib: 128, buffer_secs: 60, max_future_secs: 600 },
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
            },
            alarms: AlarmsConfig {
                history_days: 90,
                max_attempts: 10,
                first_backoff_millis: 500,
                max_backoff_secs: 60,
                timer_millis: 1000,
            },
        }
    }
}

/// Sections whose keys may themselves contain `_`, longest first, so that
/// `WENU_MQTT_TLS_CLIENT_CA` becomes `mqtt.tls.client_ca`.
const SECTIONS: [&str; 8] = ["mqtt_tls", "mqtt", "stream", "lake", "registry", "stats", "http", "alarms"];

fn env_key_to_path(key: &str) -> String {
    let key = key.to_ascii_lowercase();
    for section in SECTIONS {
        if let Some(rest) = key.strip_prefix(section).and_then(|r| r.strip_prefix('_')) {
            return format!("{}.{rest}", section.replace('_', "."));
        }
    }
    key
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
        figment.merge(env).extract().context("invalid configuration")
    }

    pub fn edge(&self) -> EdgeConfig {
        EdgeConfig {
            listen: self.mqtt.listen,
            tls: self.mqtt.tls.clone(),
            max_payload_bytes: self.mqtt.max_payload_bytes,
            max_connections: self.mqtt.max_connections,
            counters_file: Some(self.data_dir.join("edge.json")),
        }
    }

    pub fn keyring_path(&self) -> PathBuf {
        self.data_dir.join("keyring.json")
    }

    pub fn lake_dir(&self) -> PathBuf {
        self.lake.dir.clone().unwrap_or_else(|| self.data_dir.join("lake"))
    }

    /// The lake's batching, checked against Firehose's ranges.
    pub fn lake_batch(&self) -> anyhow::Result<BatchLimits> {
        Ok(BatchLimits::new(self.lake.buffer_mib * 1024 * 1024, Duration::from_secs(self.lake.buffer_secs))?)
    }

    /// Enrich's batching.
    pub fn enrich_batch(&self) -> BatchLimits {
        BatchLimits::unchecked(
            self.stats.batch_mib.max(1) * 1024 * 1024,
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

    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits { max_future_ms: self.lake.max_future_secs as i64 * 1000, ..DecodeLimits::default() }
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs_f64(self.stream.retention_hours * 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! What the handlers share, and the ports behind it: the registry, the stats
//! table, the lake and the device key store are each one implementation on
//! one machine and another on AWS.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::Notify;
use wenu_alarms::{AlarmStore, ChannelNotifier};
use wenu_core::fleet::FleetDevice;
use wenu_core::table::TableStore;
use wenu_registry::{Registry, Rotation};
use wenu_runtime::Health;

use crate::live::{LiveHub, LiveSlots};
use crate::rate_limit::RateLimits;
use crate::recent::Recent;

/// Raw readings from the lake.
#[async_trait]
pub trait LakeReader: Send + Sync + 'static {
    /// The readings of one device (one sensor if given) with event time in
    /// `from..to`, oldest first, at most `limit` after skipping `offset`.
    async fn readings(&self, query: &ReadingsQuery) -> Result<Vec<RawReading>, String>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReadingsQuery {
    pub company: String,
    pub device: String,
    pub sensor: Option<String>,
    /// Unix ms, inclusive.
    pub from: i64,
    /// Unix ms, exclusive.
    pub to: i64,
    pub limit: usize,
    pub offset: usize,
}

/// One row of the lake's `readings` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RawReading {
    pub device: String,
    pub sensor: String,
    pub ts: i64,
    pub seq: i64,
    pub value: f64,
    pub unit: String,
    pub raw_value: f64,
    pub received_at: i64,
}

/// Where device keys live (a keyring file here, Secrets Manager on AWS):
/// provisioning and rotation touch it and the registry together.
#[async_trait]
pub trait DeviceKeys: Send + Sync + 'static {
    /// Creates `count` devices of `company` with passwords and keys.
    async fn provision(
        &self,
        registry: &Registry,
        company: &str,
        count: usize,
    ) -> Result<Vec<FleetDevice>, String>;
    /// Gives a device a new key and sends it over the downlink, sealed
    /// under its current one; older keys retire when the device confirms,
    /// or `retire_after_ms` from now.
    async fn rotate(
        &self,
        registry: &Registry,
        device: &str,
        retire_after_ms: Option<i64>,
    ) -> Result<Rotation, String>;
}

/// Limits on what one request may ask for.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Requests per second of a token without its own limit.
    pub rate_per_second: u32,
    /// How many requests a token may make at once above its rate.
    pub burst: u32,
    /// Most rows per page.
    pub max_page: usize,
    /// Widest range of raw readings, ms.
    pub max_readings_range_ms: i64,
    /// Most buckets one stats query may span.
    pub max_buckets: i64,
    /// Open live streams (`/api/v1/live`) at most...
    pub max_live_streams: usize,
    /// ...and of one token.
    pub max_live_streams_per_token: usize,
    /// How often an open live stream checks that its token is still valid;
    /// a revoked token's streams end at the next check.
    pub live_token_check: std::time::Duration,
    /// A connected device that had nothing accepted for this long is
    /// `silent` in the fleet view (unless a request asks otherwise).
    pub silent_after: std::time::Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            rate_per_second: 50,
            burst: 100,
            max_page: 5_000,
            max_readings_range_ms: 6 * 3_600_000,
            max_buckets: 20_000,
            max_live_streams: 256,
            max_live_streams_per_token: 4,
            live_token_check: std::time::Duration::from_secs(5),
            silent_after: std::time::Duration::from_secs(300),
        }
    }
}

/// The handlers' shared state; cheap to clone.
#[derive(Clone)]
pub struct ApiState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub registry: Registry,
    pub stats: Arc<dyn TableStore>,
    pub lake: Option<Arc<dyn LakeReader>>,
    pub keys: Option<Arc<dyn DeviceKeys>>,
    pub live: LiveHub,
    pub alarms: Option<AlarmStore>,
    /// Wakes the alarm notifier after an acknowledgement.
    pub alarm_wake: Option<Arc<Notify>>,
    /// The notifiers of companies' channels, for test messages.
    pub channel_notifiers: Vec<Arc<dyn ChannelNotifier>>,
    pub limits: ApiLimits,
    pub rate_limits: RateLimits,
    pub live_slots: Arc<LiveSlots>,
    /// The pipeline's consumers, where this process runs them.
    pub consumers: Option<Health>,
    /// Registry answers kept for a second.
    pub recent: Recent,
    /// When each channel last got a test message: one per channel per
    /// [`crate::channels::TEST_GAP`], so the button cannot be a spam cannon.
    pub channel_tests: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl ApiState {
    pub fn new(registry: Registry, stats: Arc<dyn TableStore>, live: LiveHub, limits: ApiLimits) -> Self {
        ApiState(Arc::new(Inner {
            registry,
            stats,
            lake: None,
            keys: None,
            live,
            alarms: None,
            alarm_wake: None,
            channel_notifiers: Vec::new(),
            limits,
            rate_limits: RateLimits::new(limits.rate_per_second, limits.burst),
            live_slots: Arc::new(LiveSlots::new(limits.max_live_streams, limits.max_live_streams_per_token)),
            consumers: None,
            recent: Recent::default(),
            channel_tests: Default::default(),
        }))
    }

    /// Serves raw readings from this lake.
    pub fn with_lake(self, lake: Arc<dyn LakeReader>) -> Self {
        self.map(|inner| inner.lake = Some(lake))
    }

    /// Provisions devices and rotates keys in this key store.
    pub fn with_device_keys(self, keys: Arc<dyn DeviceKeys>) -> Self {
        self.map(|inner| inner.keys = Some(keys))
    }

    /// Serves alarms from this store; `wake` is the notifier's, so an
    /// acknowledgement is notified at once.
    pub fn with_alarms(self, store: AlarmStore, wake: Arc<Notify>) -> Self {
        self.map(|inner| {
            inner.alarms = Some(store);
            inner.alarm_wake = Some(wake);
        })
    }

    /// Sends channels' test messages through these notifiers.
    pub fn with_channel_notifiers(self, notifiers: Vec<Arc<dyn ChannelNotifier>>) -> Self {
        self.map(|inner| inner.channel_notifiers = notifiers)
    }

    /// Reports these consumers in `/health`, which is not ok while one fails.
    pub fn with_consumer_health(self, health: Health) -> Self {
        self.map(|inner| inner.consumers = Some(health))
    }

    fn map(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::into_inner(self.0).expect("configured before the router is built");
        change(&mut inner);
        ApiState(Arc::new(inner))
    }
}

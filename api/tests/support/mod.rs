//! One helper starts the real router on 127.0.0.1:0 over a real registry
//! (SQLite), a real stats table and a keyring file, seeded with two
//! companies; tests talk to it with a real HTTP client.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use wenu_alarms::{AlarmStore, Condition, Direction, Rule, SeriesState, Severity, apply_reading};
use wenu_api::{ApiLimits, ApiState, DeviceKeys, LiveHub, StoredKeys};
use wenu_core::catalog::SensorSpec;
use wenu_local::SqliteTable;
use wenu_registry::{Registry, Role};
use wenu_stats::{Job, Point, Retention, SeriesKey, apply_job};

pub struct Server {
    pub addr: SocketAddr,
    pub registry: Registry,
    pub alarms: AlarmStore,
    /// A raised alarm of globex's, the id of globex's webhook, and of its silence.
    pub globex_alarm: String,
    pub globex_webhook: String,
    pub globex_silence: String,
    pub live: LiveHub,
    /// The stats table the API reads.
    pub stats: Arc<SqliteTable>,
    pub client: reqwest::Client,
    pub tokens: Tokens,
    /// Unix ms of the newest seeded reading.
    pub seeded_until: i64,
    _dir: tempfile::TempDir,
}

/// Bearer strings of the seeded tokens.
pub struct Tokens {
    pub acme_viewer: String,
    pub acme_admin: String,
    pub globex_viewer: String,
    pub globex_admin: String,
    pub operator: String,
}

pub const ACME_DEVICES: [&str; 2] = ["acme-00001", "acme-00002"];
pub const GLOBEX_DEVICE: &str = "globex-00001";

/// Points of one reading a minute for `minutes` minutes up to `end`, with
/// value = minute index, seq = minute index + 1.
pub fn minute_points(end: i64, minutes: i64) -> Vec<Point> {
    (0..minutes)
        .map(|i| Point { seq: i as u64 + 1, ts: end - (minutes - i) * 60_000, value: i as f64 })
        .collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

impl Server {
    pub async fn start(limits: ApiLimits) -> Server {
        Self::start_with_relay(limits, None).await
    }

    /// Sends channels' test e-mails through the SMTP relay at `smtp_url`
    /// (none: e-mails fail, saying so); webhooks may reach loopback.
    pub async fn start_with_relay(limits: ApiLimits, smtp_url: Option<String>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("registry.db")).await.unwrap();
        let table = Arc::new(SqliteTable::open(&dir.path().join("stats.db")).unwrap());
        let keyring = wenu_local::KeyringFile::new(dir.path().join("keyring.json"));
        let keys = Arc::new(StoredKeys::new(Box::new(keyring)));
        keys.provision(&registry, "acme", 2).await.unwrap();
        keys.provision(&registry, "globex", 1).await.unwrap();
        registry.upsert_site("acme", "north", "North plant").await.unwrap();
        registry.upsert_site("globex", "east", "East yard").await.unwrap();
        registry.set_device_site("acme-00001", Some("north")).await.unwrap();
        registry.set_device_site(GLOBEX_DEVICE, Some("east")).await.unwrap();
        for device in ACME_DEVICES.iter().chain([&GLOBEX_DEVICE]) {
            let mut spec = SensorSpec::new(device, "temp-1", "temperature", "degC");
            spec.valid_min = Some(-40.0);
            registry.upsert_sensor(&spec).await.unwrap();
        }
        // Two hours of one reading a minute for acme-00001 and globex-00001;
        // acme-00002 lost its 5th and 6th messages.
        let end = Resolution::Minute.bucket_start(now_ms());
        for (company, device) in [("acme", "acme-00001"), ("globex", GLOBEX_DEVICE), ("acme", "acme-00002")] {
            let mut points = minute_points(end, 120);
            if device == "acme-00002" {
                points.retain(|p| p.seq != 5 && p.seq != 6);
            }
            let series =
                SeriesKey { company: company.into(), device: device.into(), sensor: "temp-1".into() };
            apply_job(table.as_ref(), &Job { series, points, retention: Retention::default() })
                .await
                .unwrap();
        }
        let token = |company: Option<&'static str>, role| {
            let registry = registry.clone();
            async move { registry.create_token(company, role, "test", None).await.unwrap().bearer }
        };
        let tokens = Tokens {
            acme_viewer: token(Some("acme"), Role::Viewer).await,
            acme_admin: token(Some("acme"), Role::Admin).await,
            globex_viewer: token(Some("globex"), Role::Viewer).await,
            globex_admin: token(Some("globex"), Role::Admin).await,
            operator: token(None, Role::Operator).await,
        };
        // Globex has a rule that raised an alarm, and a webhook.
        let alarms = AlarmStore::new(Arc::new(SqliteTable::open(&dir.path().join("alarms.db")).unwrap()), 90);
        let rule = Rule {
            company: "globex".into(),
            id: "boiler".into(),
            name: "Globex boiler".into(),
            device: Some(GLOBEX_DEVICE.into()),
            sensor: Some("temp-1".into()),
            condition: Condition::Threshold {
                direction: Direction::Above,
                limit: 90.0,
                hysteresis: 0.0,
                for_ms: 0,
            },
            severity: Severity::Critical,
            enabled: true,
            version: 0,
        };
        registry.put_rule(&rule).await.unwrap();
        let mut state = SeriesState::default();
        let raised = apply_reading(&rule, &mut state, GLOBEX_DEVICE, "temp-1", end, 95.0).unwrap();
        let notified = alarms.record(&[raised], &[], end).await.unwrap();
        let globex_alarm = notified[0].alarm.clone();
        let globex_webhook = registry
            .add_channel("globex", &wenu_registry::NewChannel::url("https://globex.example/hook"))
            .await
            .unwrap()
            .id;
        let silence = wenu_registry::NewSilence {
            device: Some(GLOBEX_DEVICE.into()),
            ends_at: now_ms() + 3_600_000,
            reason: "Globex boiler service".into(),
            ..Default::default()
        };
        let globex_silence = registry.add_silence("globex", &silence).await.unwrap().id;
        let directory = Arc::new(wenu_registry::RegistryChannels::new(registry.clone()));
        let sender: Arc<dyn wenu_alarms::MailSender> = match smtp_url {
            Some(url) => Arc::new(
                wenu_alarms::SmtpSender::new(&url, None, std::time::Duration::from_secs(10)).unwrap(),
            ),
            None => Arc::new(wenu_alarms::email::NoRelay("no relay in this test")),
        };
        let notifiers: Vec<Arc<dyn wenu_alarms::ChannelNotifier>> = vec![
            Arc::new(
                wenu_alarms::WebhookNotifier::new(
                    directory.clone(),
                    wenu_alarms::WebhookPolicy::private_networks(),
                )
                .unwrap(),
            ),
            Arc::new(wenu_alarms::EmailNotifier::new(
                directory,
                sender,
                "Wenu <wenu@test.example>".parse().unwrap(),
            )),
        ];
        let live = LiveHub::default();
        let state = ApiState::new(registry.clone(), table.clone(), live.clone(), limits)
            .with_device_keys(keys)
            .with_alarms(alarms.clone(), Arc::new(tokio::sync::Notify::new()))
            .with_channel_notifiers(notifiers);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, wenu_api::router(state)).await.unwrap() });
        Server {
            addr,
            registry,
            alarms,
            globex_alarm,
            globex_webhook,
            globex_silence,
            live,
            stats: table,
            client: reqwest::Client::new(),
            tokens,
            seeded_until: end,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A request with an optional bearer and JSON body; the status and the
    /// body as JSON (`Null` when it is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }
}

use wenu_stats::Resolution;

/// The stable error code of an error response.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

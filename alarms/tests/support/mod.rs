//! What the alarms tests share: sealed device messages, a real table
//! store, and a webhook receiver on 127.0.0.1.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use tokio::sync::Notify;
use wenu_alarms::webhook::signature;
use wenu_alarms::{AlarmStage, AlarmStore, FixedRules, Notification, Rule, WebhookDirectory, WebhookTarget};
use wenu_core::catalog::SensorSpec;
use wenu_core::envelope::seal;
use wenu_core::keyring::Keyring;
use wenu_core::reading::{Reading, ReadingBatch};
use wenu_core::stream::{Position, Record};
use wenu_decrypt::{DecodeLimits, DeviceEntry, Directory, FixedKeys};
use wenu_enrich::{Catalog, DevicePlacement, FixedCatalog};
use wenu_local::SqliteTable;

/// 2026-11-26T17:30:00Z
pub const T0: i64 = 1_795_714_200_000;

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub keyring: Keyring,
    pub directory: Directory,
    pub catalog: Catalog,
    pub table: SqliteTable,
}

impl Fleet {
    /// `devices` of company acme, each with a `temp-1` sensor in degC.
    pub fn new(devices: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let mut keyring = Keyring::default();
        let mut entries = Vec::new();
        for device in devices {
            keyring.add_key(device);
            let entry = DeviceEntry { company: "acme".into(), created_at: T0 - 3_600_000, enabled: true };
            entries.push((device.to_string(), entry));
        }
        let placements = devices.iter().map(|d| DevicePlacement {
            device: d.to_string(),
            company: "acme".into(),
            site: None,
        });
        let sensors = devices.iter().map(|d| SensorSpec::new(d, "temp-1", "temperature", "degC"));
        let catalog = Catalog::new(1, placements, [], sensors, []);
        let table = SqliteTable::open(&dir.path().join("alarms.db")).unwrap();
        Fleet { dir, keyring, directory: Directory::new(entries), catalog, table }
    }

    pub fn store(&self) -> AlarmStore {
        AlarmStore::new(Arc::new(self.table.clone()), 90)
    }

    /// A stage over this fleet's table, as after a fresh start.
    pub fn stage(&self, rules: Vec<Rule>, wake: Arc<Notify>) -> AlarmStage {
        AlarmStage::new(
            Box::new(FixedKeys::new(self.keyring.clone(), self.directory.clone())),
            Box::new(FixedCatalog::new(self.catalog.clone())),
            Box::new(FixedRules::new(rules)),
            self.store(),
            wake,
            DecodeLimits { max_future_ms: i64::MAX / 4, max_before_created_ms: i64::MAX / 4 },
        )
    }

    /// A message of `device` with one `temp-1` reading.
    pub fn record(&self, position: u64, device: &str, seq: u64, ts: i64, value: f64) -> Record {
        let key = self.keyring.current_key(device).unwrap();
        let batch = ReadingBatch {
            seq,
            ts,
            readings: vec![Reading {
                sensor: "temp-1".into(),
                kind: "temperature".into(),
                value,
                unit: "degC".into(),
            }],
        };
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&seq.to_be_bytes());
        Record {
            position: Position(position),
            device_id: device.into(),
            topic: format!("wenu/{device}/telemetry"),
            received_at: ts,
            payload: Bytes::from(seal(device, key.id, &key.key, nonce, &batch.to_json())),
        }
    }
}

/// What a webhook receiver got: the notification, and whether its signature verified.
#[derive(Debug, Clone)]
pub struct Received {
    pub delivery: String,
    pub notification: Notification,
    pub signed: bool,
}

/// An HTTP server on 127.0.0.1 that records webhook deliveries; it answers
/// 503 to the first `fail_first` requests.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub secret: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub requests: Arc<AtomicU32>,
    pub fail_first: Arc<AtomicU32>,
    pub arrived: Arc<Notify>,
}

impl Receiver {
    pub async fn start(secret: &str) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
            secret: secret.to_owned(),
            received: Arc::default(),
            requests: Arc::default(),
            fail_first: Arc::default(),
            arrived: Arc::default(),
        };
        let app =
            axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    pub fn target(&self, id: &str) -> WebhookTarget {
        WebhookTarget {
            id: id.into(),
            company: "acme".into(),
            url: self.url.clone(),
            secret: self.secret.clone(),
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `n` deliveries were received.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        loop {
            let arrived = self.arrived.notified();
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            tokio::time::timeout(std::time::Duration::from_secs(20), arrived)
                .await
                .unwrap_or_else(|_| panic!("{} of {n} deliveries after 20 s", received.len()));
        }
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    receiver.requests.fetch_add(1, Ordering::SeqCst);
    if receiver.fail_first.load(Ordering::SeqCst) > 0 {
        receiver.fail_first.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let timestamp: i64 = header("x-wenu-timestamp").parse().unwrap_or_default();
    let signed = header("x-wenu-signature") == signature(&receiver.secret, timestamp, &body);
    let notification: Notification = serde_json::from_slice(&body).expect("a notification");
    receiver.received.lock().unwrap().push(Received {
        delivery: header("x-wenu-delivery"),
        notification,
        signed,
    });
    receiver.arrived.notify_waiters();
    StatusCode::NO_CONTENT
}

/// Webhooks that never change.
pub struct FixedWebhooks(pub Vec<WebhookTarget>);

#[async_trait]
impl WebhookDirectory for FixedWebhooks {
    async fn webhooks(&self, company: &str) -> Result<Vec<WebhookTarget>, String> {
        Ok(self.0.iter().filter(|h| h.company == company).cloned().collect())
    }
}

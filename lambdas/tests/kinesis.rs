//! The enrich and alarms functions, fed the event a Kinesis event source
//! mapping sends (`fixtures/kinesis-event.json`, AWS's sample, its records
//! replaced by envelopes sealed as devices seal them), over the local
//! implementations of the ports and a real registry (SQLite).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use object_store::local::LocalFileSystem;
use serde_json::Value;
use tokio::sync::mpsc;
use wenu_alarms::{
    AlarmStage, AlarmStore, Condition, Direction, DispatchOptions, Dispatcher, Rule, Severity,
};
use wenu_alarms::{Notifier, WebhookNotifier, WebhookPolicy};
use wenu_api::DeviceKeys;
use wenu_core::catalog::SensorSpec;
use wenu_core::envelope::seal;
use wenu_core::fleet::FleetDevice;
use wenu_core::queue::Queue;
use wenu_core::reading::{Reading, ReadingBatch};
use wenu_decrypt::DecodeLimits;
use wenu_enrich::EnrichStage;
use wenu_lambdas::alarms::AlarmsFunction;
use wenu_lambdas::kinesis::StageFunction;
use wenu_local::{QueueOptions, SqliteQueue, SqliteTable};
use wenu_registry::{Registry, RegistryCatalog, RegistryChannels, RegistryKeys, RegistryRules};
use wenu_stats::Job;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A registry with two provisioned acme devices, each with a `temp-1`
/// sensor in degC, and their keys in a keyring file.
struct Fleet {
    dir: tempfile::TempDir,
    registry: Registry,
    devices: Vec<FleetDevice>,
}

impl Fleet {
    async fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("registry.db")).await.unwrap();
        let keys = wenu_api::StoredKeys::new(Box::new(wenu_local::KeyringFile::new(
            dir.path().join("keyring.json"),
        )));
        let devices = keys.provision(&registry, "acme", 2).await.unwrap();
        for device in &devices {
            registry
                .upsert_sensor(&SensorSpec::new(&device.device_id, "temp-1", "temperature", "degC"))
                .await
                .unwrap();
        }
        Fleet { dir, registry, devices }
    }

    fn keys(&self) -> Box<RegistryKeys> {
        let keyring = wenu_local::KeyringFile::new(self.dir.path().join("keyring.json"));
        Box::new(RegistryKeys::new(Box::new(keyring), self.registry.clone()))
    }

    /// Device `index`'s message `seq`: `temp-1` at `value`, and `extra_sensor` if given.
    fn sealed(&self, index: usize, seq: u64, value: f64, extra_sensor: Option<&str>) -> Vec<u8> {
        let device = &self.devices[index];
        let mut readings =
            vec![Reading { sensor: "temp-1".into(), kind: "temperature".into(), value, unit: "degC".into() }];
        if let Some(sensor) = extra_sensor {
            readings.push(Reading {
                sensor: sensor.into(),
                kind: "humidity".into(),
                value: 40.0,
                unit: "%".into(),
            });
        }
        // A device's later message is a later reading (the rules skip readings not newer).
        let batch = ReadingBatch { seq, ts: now_ms() - 1_000 + seq as i64, readings };
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&(seq * 10 + index as u64).to_be_bytes());
        seal(&device.device_id, device.key_id, &device.key, nonce, &batch.to_json())
    }

    /// The fixture with its records set to `(device index, envelope)`.
    fn event(&self, records: &[(usize, Vec<u8>)]) -> KinesisEvent {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kinesis-event.json"
        ))
        .unwrap();
        let mut json: Value = serde_json::from_str(&text).unwrap();
        let fixture = json["Records"].as_array().unwrap().clone();
        assert!(records.len() <= fixture.len());
        let arrival = now_ms() as f64 / 1000.0;
        let mut out = Vec::new();
        for ((index, envelope), template) in records.iter().zip(fixture) {
            let mut record = template;
            record["kinesis"]["partitionKey"] = Value::String(self.devices[*index].device_id.clone());
            record["kinesis"]["data"] = Value::String(BASE64.encode(envelope));
            record["kinesis"]["approximateArrivalTimestamp"] = arrival.into();
            out.push(record);
        }
        json["Records"] = Value::Array(out);
        serde_json::from_value(json).unwrap()
    }
}

fn failed_items(response: &aws_lambda_events::event::streams::KinesisEventResponse) -> Vec<String> {
    response.batch_item_failures.iter().map(|f| f.item_identifier.clone().unwrap()).collect()
}

async fn queued_jobs(queue: &SqliteQueue) -> Vec<Job> {
    let received = queue.receive(100, Duration::from_secs(30)).await.unwrap();
    received.iter().map(|m| Job::from_bytes(&m.body).unwrap()).collect()
}

#[tokio::test]
async fn enrich_queues_a_job_per_series_and_a_failed_batch_is_retried_whole() {
    let fleet = Fleet::new().await;
    let queue = SqliteQueue::open(&fleet.dir.path().join("jobs.db"), QueueOptions::default()).unwrap();
    // The quarantine's directory is a file at first: writing there fails, as
    // an S3 outage would, after the batch has been decrypted.
    let lake = fleet.dir.path().join("lake");
    std::fs::write(&lake, b"not a directory").unwrap();
    let quarantine = Arc::new(LocalFileSystem::new_with_prefix(&lake).unwrap());
    let stage = EnrichStage::new(
        fleet.keys(),
        Box::new(RegistryCatalog::new(fleet.registry.clone())),
        Arc::new(queue.clone()),
        quarantine,
        DecodeLimits::default(),
    );
    let mut function = StageFunction::new("enrich", stage).unwrap();
    let event = fleet.event(&[
        (0, fleet.sealed(0, 1, 20.0, Some("hum-9"))), // hum-9 is not in the registry: quarantined
        (0, fleet.sealed(0, 2, 21.0, None)),
        (1, fleet.sealed(1, 1, 22.0, None)),
    ]);
    let first = event.records[0].kinesis.sequence_number.clone();

    let response = function.handle(&event).await;
    assert_eq!(failed_items(&response), [first], "a failure names the batch's first record");
    assert!(queued_jobs(&queue).await.is_empty(), "nothing queued by the failed attempt");

    // The store is back; the mapping retries the same batch.
    std::fs::remove_file(&lake).unwrap();
    std::fs::create_dir(&lake).unwrap();
    let response = function.handle(&event).await;
    assert!(failed_items(&response).is_empty());
    let mut jobs = queued_jobs(&queue).await;
    jobs.sort_by(|a, b| a.series.device.cmp(&b.series.device));
    let points: Vec<(String, Vec<u64>)> = jobs
        .iter()
        .map(|j| (j.series.device.to_string(), j.points.iter().map(|p| p.seq).collect()))
        .collect();
    assert_eq!(
        points,
        [(fleet.devices[0].device_id.clone(), vec![1, 2]), (fleet.devices[1].device_id.clone(), vec![1])],
        "the retry is not taken for duplicates of the failed attempt"
    );
    let quarantined = std::fs::read_dir(lake.join("enrich-quarantine")).unwrap().count();
    assert_eq!(quarantined, 1, "one reason directory: unknown sensor");
}

/// Webhook deliveries received on 127.0.0.1.
async fn webhook_receiver() -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                tx.send(body.0).unwrap();
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), rx)
}

#[tokio::test]
async fn alarms_function_delivers_what_a_batch_raised_before_it_returns() {
    let fleet = Fleet::new().await;
    let rule = Rule {
        company: "acme".into(),
        id: "too-hot".into(),
        name: "Too hot".into(),
        device: None,
        sensor: Some("temp-1".into()),
        condition: Condition::Threshold {
            direction: Direction::Above,
            limit: 30.0,
            hysteresis: 1.0,
            for_ms: 0,
        },
        severity: Severity::Critical,
        enabled: true,
        version: 0,
    };
    fleet.registry.put_rule(&rule).await.unwrap();
    let (url, mut deliveries) = webhook_receiver().await;
    fleet.registry.add_channel("acme", &wenu_registry::NewChannel::url(&url)).await.unwrap();

    let table = SqliteTable::open(&fleet.dir.path().join("alarms.db")).unwrap();
    let store = AlarmStore::new(Arc::new(table), 90);
    let webhooks: Arc<dyn Notifier> = Arc::new(
        WebhookNotifier::new(
            Arc::new(RegistryChannels::new(fleet.registry.clone())),
            WebhookPolicy::private_networks(),
        )
        .unwrap(),
    );
    let dispatcher = Dispatcher::new(store.clone(), vec![webhooks], DispatchOptions::default());
    let stage = AlarmStage::new(
        fleet.keys(),
        Box::new(RegistryCatalog::new(fleet.registry.clone())),
        Box::new(RegistryRules::new(fleet.registry.clone())),
        store.clone(),
        dispatcher.waker(),
        DecodeLimits::default(),
    );
    let mut function = AlarmsFunction::new(stage, dispatcher).unwrap();

    let event = fleet.event(&[(0, fleet.sealed(0, 1, 25.0, None)), (0, fleet.sealed(0, 2, 45.0, None))]);
    let response = function.handle(&event).await;
    assert!(failed_items(&response).is_empty());
    let outbox = store.outbox().await.unwrap();
    let delivered = deliveries.try_recv().unwrap_or_else(|e| {
        panic!("the webhook was not called before the function returned ({e}): {outbox:?}")
    });
    assert_eq!(delivered["rule"], "too-hot");
    assert_eq!(delivered["device"], fleet.devices[0].device_id.as_str());
    let active = store.active("acme").await.unwrap();
    assert_eq!(active.len(), 1);

    // The mapping delivers the batch again (an answer lost): nothing new.
    let response = function.handle(&event).await;
    assert!(failed_items(&response).is_empty());
    assert!(deliveries.try_recv().is_err(), "no second notification");
    assert_eq!(store.active("acme").await.unwrap().len(), 1);
    assert!(store.outbox().await.unwrap().is_empty(), "nothing left to deliver");
}

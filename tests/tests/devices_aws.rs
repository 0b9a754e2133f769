//! The devices function, as IoT Core's rules, its lifecycle events and the
//! schedule invoke it on AWS, over a real registry (SQLite) and IoT Core's
//! data plane on moto (whose request recorder shows what was published):
//! presence, reports and results (a confirmed key rotation retires the old
//! key), and each device's configuration and commands published when it
//! subscribes and by the sweep.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};
use wenu_aws::IotDataPublisher;
use wenu_lambdas::devices::DevicesFunction;
use wenu_local::KeyringFile;
use wenu_registry::{CommandStatus, Registry, provision_into, rotate_key};
use wenu_tests::moto::moto;

/// What the function published since the recording started: (topic, payload).
async fn published() -> Vec<(String, Value)> {
    let url = format!("{}/moto-api/recorder/download-recording", moto().endpoint);
    let recording = reqwest::get(url).await.unwrap().text().await.unwrap();
    recording
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["method"] == "POST" && entry["url"].as_str().unwrap_or("").contains("/topics/"))
        .map(|entry| {
            let url = entry["url"].as_str().unwrap();
            let topic = url.split("/topics/").nth(1).unwrap().split('?').next().unwrap().replace("%2F", "/");
            let body = entry["body"].as_str().unwrap_or_default();
            let bytes = if entry["body_encoded"] == true {
                base64::engine::general_purpose::STANDARD.decode(body).unwrap()
            } else {
                body.as_bytes().to_vec()
            };
            (topic, serde_json::from_slice(&bytes).unwrap())
        })
        .collect()
}

fn lifecycle(kind: &str, device: &str, at: i64) -> Value {
    json!({ "clientId": device, "timestamp": at, "eventType": kind, "sessionIdentifier": "s", "principalIdentifier": "p" })
}

/// What the `reported` and `results` rules send: the payload base64, the device from the topic.
fn report(kind: &str, device: &str, payload: &Value) -> Value {
    let payload = base64::engine::general_purpose::STANDARD.encode(payload.to_string());
    json!({ "kind": kind, "device_id": device, "payload": payload })
}

#[tokio::test]
async fn the_devices_function_records_what_devices_say_and_sends_what_waits_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&dir.path().join("registry.db")).await.unwrap();
    let mut keys = KeyringFile::new(dir.path().join("keyring.json"));
    let fleet = provision_into(&registry, &mut keys, "acme", 2).await.unwrap();
    let (d1, d2) = (fleet[0].device_id.as_str(), fleet[1].device_id.as_str());
    let recorder = format!("{}/moto-api/recorder", moto().endpoint);
    let client = reqwest::Client::new();
    client.post(format!("{recorder}/reset-recording")).send().await.unwrap();
    client.post(format!("{recorder}/start-recording")).send().await.unwrap();
    let publisher = Arc::new(IotDataPublisher::discover(&moto().sdk_config().await).await.unwrap());
    let function = DevicesFunction::new(registry.clone(), publisher, Some("dev".into()));

    // While d1 is away: a configuration, a command and a new key wait for it.
    registry.set_desired_config(d1, &json!({ "interval_s": 30 })).await.unwrap();
    let reboot = registry.send_command(d1, "reboot", &json!({}), 600_000).await.unwrap();
    let rotation = rotate_key(&registry, &mut keys, d1, None).await.unwrap();
    let rotation_command = rotation.command.unwrap();

    // It connects and subscribes: what waits is published to its own topics.
    function.handle(&lifecycle("connected", d1, 1_000)).await.unwrap();
    assert!(registry.device_state(d1).await.unwrap().online);
    let mut subscribed = lifecycle("subscribed", d1, 1_001);
    subscribed["topics"] = json!([format!("dev/wenu/{d1}/config"), format!("dev/wenu/{d1}/commands")]);
    function.handle(&subscribed).await.unwrap();
    let sent = published().await;
    let config_topic = format!("dev/wenu/{d1}/config");
    let commands_topic = format!("dev/wenu/{d1}/commands");
    assert_eq!(sent[0], (config_topic.clone(), json!({ "version": 1, "config": { "interval_s": 30 } })));
    let commands: Vec<&Value> = sent.iter().filter(|(t, _)| *t == commands_topic).map(|(_, m)| m).collect();
    assert_eq!(
        commands.iter().map(|c| c["id"].as_str().unwrap()).collect::<Vec<_>>(),
        [reboot.id.as_str(), rotation_command.id.as_str()]
    );
    assert!(sent.iter().all(|(topic, _)| topic.starts_with(&format!("dev/wenu/{d1}/"))), "{sent:?}");
    let statuses: Vec<CommandStatus> =
        registry.commands(d1, 10).await.unwrap().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [CommandStatus::Delivered, CommandStatus::Delivered]);

    // It reports, and confirms its new key: the old one retires.
    let reported = json!({ "firmware": "2.0.1", "boot": 4, "config_version": 1 });
    function.handle(&report("reported", d1, &reported)).await.unwrap();
    let state = registry.device_state(d1).await.unwrap();
    assert_eq!(
        (state.firmware.as_deref(), state.boot, state.config_stale()),
        (Some("2.0.1"), Some(4), false)
    );
    // Fields a device adds of its own are refused, not recorded.
    let forged = json!({ "firmware": "evil", "device_id": d2 });
    function.handle(&report("reported", d1, &forged)).await.unwrap();
    assert_eq!(registry.device_state(d1).await.unwrap().firmware.as_deref(), Some("2.0.1"));
    // Another device cannot answer d1's command.
    let done = json!({ "id": rotation_command.id, "status": "done" });
    function.handle(&report("results", d2, &done)).await.unwrap();
    assert_eq!(registry.device(d1).await.unwrap().unwrap().live_key_ids, [1, 2]);
    function.handle(&report("results", d1, &done)).await.unwrap();
    assert_eq!(registry.device(d1).await.unwrap().unwrap().live_key_ids, [2]);
    function.handle(&report("results", d1, &json!("not an object"))).await.unwrap();

    // While d2 is connected, a configuration and a command reach it at the next sweep;
    // d1's applied configuration is not sent again.
    function.handle(&lifecycle("connected", d2, 2_000)).await.unwrap();
    registry.set_desired_config(d2, &json!({ "interval_s": 5 })).await.unwrap();
    let sample = registry.send_command(d2, "sample_now", &json!({}), 600_000).await.unwrap();
    let before = published().await.len();
    function.handle(&json!({ "detail-type": "Scheduled Event", "source": "aws.events" })).await.unwrap();
    let swept: Vec<(String, Value)> = published().await.into_iter().skip(before).collect();
    assert_eq!(
        swept,
        [
            (format!("dev/wenu/{d2}/config"), json!({ "version": 1, "config": { "interval_s": 5 } })),
            (format!("dev/wenu/{d2}/commands"), sample.message()),
        ]
    );
    // Nothing new: the next sweep sends d2's unapplied configuration again, nothing else.
    function.handle(&json!({ "detail-type": "Scheduled Event" })).await.unwrap();
    let again: Vec<String> = published().await.into_iter().skip(before + 2).map(|(t, _)| t).collect();
    assert_eq!(again, [format!("dev/wenu/{d2}/config")]);

    // Lifecycle events arrive out of order; the later one wins. Unknown clients are ignored.
    function.handle(&lifecycle("disconnected", d2, 1_500)).await.unwrap();
    assert!(registry.device_state(d2).await.unwrap().online, "an older disconnect does not win");
    function.handle(&lifecycle("disconnected", d2, 2_500)).await.unwrap();
    assert!(!registry.device_state(d2).await.unwrap().online);
    function.handle(&lifecycle("connected", "prod-device-of-another-stage", 3_000)).await.unwrap();
    function.handle(&json!({ "something": "else" })).await.unwrap();
    client.post(format!("{recorder}/stop-recording")).send().await.unwrap();
}

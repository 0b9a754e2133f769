//! The pipeline end to end with `backend = "aws"` against the AWS emulator
//! (moto on 127.0.0.1): simulator → `wenu serve --backend aws` → Kinesis →
//!
//! * Firehose's part (buffer, the decrypt function, Parquet by partition) →
//!   S3, read back from S3 with pyarrow and queried with DuckDB: exactly the
//!   acknowledged readings;
//! * the enrich function → SQS → the stats function → DynamoDB, read back
//!   through the API: every reading counted once;
//! * the alarms function → SNS → an SQS queue subscribed to the topic: the
//!   spike alarm, with its attributes.
//!
//! Device keys are provisioned into Secrets Manager by `wenu devices
//! provision` with the same settings.
#![cfg(feature = "aws")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{
    ServeProcess, acked_lines, free_loopback_port, lake_messages, ok, provisioned_with, python, wenu,
};
use tokio::sync::watch;
use wenu_firmware_sim::{Fault, SimConfig, run_fleet};
use wenu_tests::moto::{create_bucket, moto, unique_name};

const DEVICES: usize = 4;
const PER_DEVICE: u64 = 150;
/// Long enough for a slow machine; the test fails rather than hang.
const PATIENCE: Duration = Duration::from_secs(180);

/// The settings of every `wenu` command of the test.
fn aws_env(name: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", moto().endpoint.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("WENU_BACKEND", "aws".into()),
        ("WENU_AWS_CREATE_MISSING", "true".into()),
        ("WENU_AWS_STREAM", format!("{name}-readings")),
        ("WENU_AWS_SHARDS", "2".into()),
        ("WENU_AWS_CHECKPOINTS_TABLE", format!("{name}-checkpoints")),
        ("WENU_AWS_LAKE_BUCKET", format!("{name}-lake")),
        ("WENU_AWS_STATS_TABLE", format!("{name}-stats")),
        ("WENU_AWS_ALARMS_TABLE", format!("{name}-alarms")),
        ("WENU_AWS_JOBS_QUEUE", format!("{name}-jobs")),
        ("WENU_AWS_ALARMS_TOPIC", format!("{name}-alarms")),
        ("WENU_AWS_KEYS_SECRET_PREFIX", format!("wenu/{name}/device-keys")),
        ("WENU_AWS_POLL_MILLIS", "100".into()),
        ("WENU_LAKE_BUFFER_SECS", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// An SQS queue subscribed to the alarms topic (created as the server would).
async fn operators_queue(topic_name: &str) -> (aws_sdk_sqs::Client, String) {
    let config = moto().sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = sns.create_topic().name(topic_name).send().await.unwrap().topic_arn.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url =
        sqs.create_queue().queue_name(unique_name("operators")).send().await.unwrap().queue_url.unwrap();
    let arn_attribute = aws_sdk_sqs::types::QueueAttributeName::QueueArn;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(arn_attribute.clone())
        .send()
        .await
        .unwrap();
    let arn = attributes.attributes.unwrap()[&arn_attribute].clone();
    sns.subscribe().topic_arn(topic).protocol("sqs").endpoint(arn).send().await.unwrap();
    (sqs, url)
}

/// What `read_s3_lake.py` sees in the bucket.
fn read_lake(bucket: &str) -> Value {
    let out = python().arg("tests/py/read_s3_lake.py").arg(&moto().endpoint).arg(bucket).output().unwrap();
    assert!(out.status.success(), "read_s3_lake.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn api_get(server: &ServeProcess, bearer: &str, path: &str) -> Value {
    let url = format!("http://{}/api/v1{path}", server.http);
    let response = reqwest::Client::new().get(url).bearer_auth(bearer).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// Readings counted in the minute stats of one series.
async fn counted(server: &ServeProcess, bearer: &str, device: &str, sensor: &str) -> u64 {
    let page =
        api_get(server, bearer, &format!("/stats?device={device}&sensor={sensor}&res=1m&from=-2h")).await;
    page["items"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum()
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_every_acknowledged_reading_reaches_the_s3_lake_and_dynamodb_and_alarms_reach_sns() {
    let name = unique_name("e2e");
    let env = aws_env(&name);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let bucket = format!("{name}-lake");
    create_bucket(&bucket).await;
    let (sqs, operators) = operators_queue(&format!("{name}-alarms")).await;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fleet_path = dir.path().join("fleet.json");
    let fleet = provisioned_with(&data, DEVICES, &fleet_path, &env_refs);
    assert!(!data.join("keyring.json").exists(), "keys go to Secrets Manager, not the data directory");
    let device = |i: usize| fleet.devices[i].device_id.clone();
    let bearer =
        ok(wenu(&data).args(["tokens", "create", "--company", "acme", "--role", "admin"]).output().unwrap())
            .trim()
            .to_owned();

    let port = free_loopback_port();
    let server = ServeProcess::start_with(&data, &format!("127.0.0.1:{port}"), &env_refs);
    let rule = json!({"name": "Temperature spike", "device": device(0), "sensor": "temp-1", "severity": "critical",
        "condition": {"kind": "threshold", "direction": "above", "limit": 100, "hysteresis": 5}});
    let response = reqwest::Client::new()
        .put(format!("http://{}/api/v1/rules/spike", server.http))
        .bearer_auth(&bearer)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let report = dir.path().join("acked.jsonl");
    let sim = SimConfig {
        port,
        rate_per_device: 0.0,
        per_device: Some(PER_DEVICE),
        window: 8,
        faults: vec![Fault::Spike],
        report: Some(report.clone()),
        ..SimConfig::default()
    };
    let (_stop, stop) = watch::channel(false);
    let outcome = run_fleet(&fleet, sim, stop).await.unwrap();
    assert_eq!(outcome.unacked_at_exit, 0);
    let acked: BTreeSet<(String, u64)> = acked_lines(&report).into_iter().collect();
    assert_eq!(acked.len(), DEVICES * PER_DEVICE as usize);

    // The lake in S3: every acknowledged message, each reading once.
    let lake = eventually("the lake", async || {
        let lake = read_lake(&bucket);
        let messages = lake["duckdb"]["messages"].as_array().map_or(0, Vec::len);
        (messages >= acked.len()).then_some(lake)
    })
    .await;
    let duck = &lake["duckdb"];
    let in_lake = lake_messages(duck);
    assert_eq!(in_lake, acked, "the lake holds exactly the acknowledged messages");
    assert_eq!(duck["rows"], duck["distinct_readings"], "no reading twice");
    assert_eq!(lake["pyarrow"]["rows"], duck["rows"], "pyarrow and DuckDB agree");
    assert_eq!(duck["rows_outside_their_partition"], 0);
    assert_eq!(duck["companies"], json!(["acme"]));
    assert_eq!(lake["pyarrow"]["schema"]["ts"], "timestamp[ms, tz=UTC]");

    // The stats in DynamoDB, through the API: each healthy series' readings counted once.
    let per_series: BTreeMap<(String, String), u64> = duck["per_series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            ((s[0].as_str().unwrap().to_owned(), s[1].as_str().unwrap().to_owned()), s[2].as_u64().unwrap())
        })
        .collect();
    for ((device_id, sensor), rows) in per_series.iter().filter(|((d, _), _)| *d != device(0)) {
        let stats = eventually("the stats", async || {
            let n = counted(&server, &bearer, device_id, sensor).await;
            (n >= *rows).then_some(n)
        })
        .await;
        assert_eq!(stats, *rows, "{device_id}/{sensor}: stats count what the lake holds");
    }

    // The spike alarm on SNS, received by the operators' queue.
    let alarm = eventually("the alarm on SNS", async || {
        let received =
            sqs.receive_message().queue_url(&operators).max_number_of_messages(10).send().await.unwrap();
        received.messages().iter().find_map(|m| {
            let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let notification: Value = serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
            (notification["rule"] == "spike" && notification["change"] == "raised")
                .then_some((envelope, notification))
        })
    })
    .await;
    let (alarm, notification) = alarm;
    assert_eq!(alarm["MessageAttributes"]["company"]["Value"], "acme");
    assert_eq!(alarm["MessageAttributes"]["severity"]["Value"], "critical");
    // The alarm's state is in DynamoDB, where the API reads it.
    let id = notification["alarm"].as_str().unwrap();
    let stored =
        api_get(&server, &bearer, &format!("/alarms/{}", id.replace(':', "%3A").replace('#', "%23"))).await;
    assert_eq!(stored["rule"], "spike", "{stored}");

    println!(
        "aws e2e: acked={} lake_rows={} lake_files={} series_checked={}",
        acked.len(),
        duck["rows"],
        lake["files"],
        per_series.len()
    );
    server.terminate();
}

/// `wenu devices provision --aws`: a thing per device with a certificate
/// carrying the device policy (connect as itself, publish to its own
/// telemetry topic), the certificate and private key written owner-only for
/// the simulator, and the payload keys in Secrets Manager.
#[tokio::test]
async fn devices_provisioned_for_iot_core_get_a_thing_a_certificate_and_their_keys_in_secrets_manager() {
    use std::os::unix::fs::PermissionsExt;
    use wenu_core::keyring::KeyringStore;

    let name = unique_name("iot");
    let env = aws_env(&name);
    let dir = tempfile::tempdir().unwrap();
    let (data, fleet_path, certs) =
        (dir.path().join("data"), dir.path().join("fleet.json"), dir.path().join("certs"));
    let out = wenu(&data)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(["devices", "provision", "--company", "acme", "--count", "2", "--aws", "--out"])
        .arg(&fleet_path)
        .arg("--certs")
        .arg(&certs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--port 8883"), "says how to connect");
    let fleet = wenu_core::fleet::Fleet::load(&fleet_path).unwrap();

    let config = moto().sdk_config().await;
    let iot = aws_sdk_iot::Client::new(&config);
    for device in &fleet.devices {
        let id = &device.device_id;
        let certificate = std::fs::read_to_string(certs.join(format!("{id}.crt"))).unwrap();
        assert!(certificate.starts_with("-----BEGIN CERTIFICATE-----"), "{certificate}");
        let key = certs.join(format!("{id}.key"));
        assert!(std::fs::read_to_string(&key).unwrap().contains("PRIVATE KEY"));
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o077, 0, "the key is owner-only");

        let principals = iot.list_thing_principals().thing_name(id).send().await.unwrap();
        let principals = principals.principals();
        assert_eq!(principals.len(), 1, "{id}: one certificate");
        let policies = iot.list_attached_policies().target(&principals[0]).send().await.unwrap();
        let names: Vec<&str> = policies.policies().iter().filter_map(|p| p.policy_name()).collect();
        assert_eq!(names, [wenu_aws::DEVICE_POLICY]);
    }
    let policy = iot.get_policy().policy_name(wenu_aws::DEVICE_POLICY).send().await.unwrap();
    let document = policy.policy_document().unwrap();
    assert!(document.contains("topic/wenu/${iot:Connection.Thing.ThingName}/telemetry"), "{document}");

    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let prefix = format!("wenu/{name}/device-keys");
    let mut keys = wenu_aws::SecretsKeyring::new(secrets, &prefix, Duration::ZERO);
    let keyring = keys.changed().await.unwrap().unwrap();
    for device in &fleet.devices {
        assert_eq!(keyring.decryption_key(&device.device_id, device.key_id).unwrap(), &device.key);
    }
}

//! The lake's Firehose transformation, fed the event Firehose sends when its
//! source is the Kinesis stream (`fixtures/firehose-transformation-event.json`,
//! its data replaced by envelopes sealed as devices seal them).

use aws_lambda_events::firehose::{KinesisFirehoseEvent, KinesisFirehoseResponse};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use wenu_core::envelope::seal;
use wenu_core::keyring::Keyring;
use wenu_core::reading::{Reading, ReadingBatch};
use wenu_decrypt::{DecodeLimits, DeviceEntry, Directory, FixedKeys};
use wenu_lambdas::firehose::{DROPPED, DecryptTransform, OK, PROCESSING_FAILED};

const ARRIVAL: i64 = 1_800_000_000_000;

fn keys() -> (Keyring, Directory) {
    let mut keyring = Keyring::default();
    keyring.add_key("dev-1");
    keyring.add_key("dev-2");
    let entry = || DeviceEntry {
        company: "acme".into(),
        created_at: ARRIVAL - 86_400_000,
        enabled: true,
        site: Some("plant-7".into()),
        seq_reset_at: None,
    };
    (keyring, Directory::new([("dev-1".to_string(), entry()), ("dev-2".to_string(), entry())]))
}

fn sealed(keyring: &Keyring, device: &str, seq: u64, counter: u64) -> Vec<u8> {
    let batch = ReadingBatch {
        seq,
        ts: ARRIVAL - 1_000,
        readings: vec![
            Reading { sensor: "temp-1".into(), kind: "temperature".into(), value: 21.5, unit: "degC".into() },
            Reading { sensor: "hum-1".into(), kind: "humidity".into(), value: 40.0, unit: "%".into() },
        ],
    };
    let key = keyring.current_key(device).unwrap();
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    seal(device, key.id, &key.key, nonce, &batch.to_json())
}

/// The fixture with each record's data set to `payloads[i]`.
fn event(payloads: &[Vec<u8>]) -> KinesisFirehoseEvent {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/firehose-transformation-event.json"
    ))
    .unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    for (record, payload) in json["records"].as_array_mut().unwrap().iter_mut().zip(payloads) {
        record["data"] = Value::String(BASE64.encode(payload));
    }
    serde_json::from_value(json).unwrap()
}

fn payloads(keyring: &Keyring) -> Vec<Vec<u8>> {
    let mut tampered = sealed(keyring, "dev-2", 1, 3);
    *tampered.last_mut().unwrap() ^= 1;
    vec![
        sealed(keyring, "dev-1", 1, 1),
        sealed(keyring, "dev-1", 1, 2), // the device sent it again
        tampered,
        sealed(keyring, "dev-1", 2, 4), // partition key says dev-unknown
        sealed(keyring, "dev-2", 2, 5), // no Kinesis metadata
    ]
}

#[tokio::test]
async fn each_record_is_answered_ok_dropped_or_processing_failed() {
    let (keyring, directory) = keys();
    let mut transform =
        DecryptTransform::new(Box::new(FixedKeys::new(keyring.clone(), directory)), DecodeLimits::default());
    let input = event(&payloads(&keyring));
    let ids: Vec<String> = input.records.iter().map(|r| r.record_id.clone().unwrap()).collect();
    let response = transform.handle(input).await.unwrap();

    let results: Vec<(&str, &str)> = response
        .records
        .iter()
        .map(|r| (r.record_id.as_deref().unwrap(), r.result.as_deref().unwrap()))
        .collect();
    let want = [OK, DROPPED, PROCESSING_FAILED, PROCESSING_FAILED, PROCESSING_FAILED];
    assert_eq!(
        results,
        ids.iter().map(String::as_str).zip(want).collect::<Vec<_>>(),
        "every record answered once, in order"
    );

    // The accepted record: one JSON row per reading, and its partition keys.
    let ok = &response.records[0];
    let rows: Vec<Value> =
        std::str::from_utf8(&ok.data).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["device_id"], "dev-1");
    assert_eq!(rows[0]["site"], "plant-7");
    assert_eq!(rows[0]["sensor"], "temp-1");
    assert_eq!(rows[0]["value"], 21.5);
    assert_eq!(rows[0]["raw_value"], 21.5);
    assert_eq!(rows[0]["unit"], "degC");
    assert_eq!(rows[0]["ts"], ARRIVAL - 1_000);
    assert_eq!(rows[0]["received_at"], ARRIVAL);
    assert_eq!((rows[0]["seq"].as_u64(), rows[0]["key_id"].as_u64()), (Some(1), Some(1)));
    assert_eq!(rows[1]["sensor"], "hum-1");
    let keys = &ok.metadata.partition_keys;
    assert_eq!(
        (keys["company"].as_str(), keys["date"].as_str(), keys["hour"].as_str()),
        ("acme", "2027-01-15", "07")
    );

    // A failed record keeps its data, for processing-failed/.
    assert!(!response.records[2].data.is_empty());

    // The answer has the shape Firehose reads.
    let json = serde_json::to_value(&response).unwrap();
    let first = &json["records"][0];
    assert_eq!(first["result"], "Ok");
    assert_eq!(first["metadata"]["partitionKeys"]["company"], "acme");
    assert_eq!(BASE64.decode(first["data"].as_str().unwrap()).unwrap(), ok.data.to_vec());
    let back: KinesisFirehoseResponse = serde_json::from_value(json).unwrap();
    assert_eq!(back.records.len(), 5);
}

#[tokio::test]
async fn a_batch_firehose_sends_again_gets_the_same_answer() {
    let (keyring, directory) = keys();
    let mut transform =
        DecryptTransform::new(Box::new(FixedKeys::new(keyring.clone(), directory)), DecodeLimits::default());
    let payloads = payloads(&keyring);
    let first = transform.handle(event(&payloads)).await.unwrap();
    let again = transform.handle(event(&payloads)).await.unwrap();
    assert_eq!(first, again, "a retried batch is not dropped as duplicates of itself");
}

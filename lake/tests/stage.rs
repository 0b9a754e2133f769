//! The lake stage writing through object_store's local filesystem: partitions
//! by event hour, quarantine by reason, and a redo of a range that rewrites
//! the same files byte for byte.

use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt};
use wenu_core::envelope::seal;
use wenu_core::keyring::Keyring;
use wenu_core::reading::{Reading, ReadingBatch};
use wenu_core::stream::{Position, Record};
use wenu_decrypt::{DecodeLimits, DeviceEntry, Directory, FixedKeys};
use wenu_lake::encode;
use wenu_lake::{LakeStage, layout};
use wenu_runtime::Stage;

/// 2026-11-26T17:30:00Z
const NOW: i64 = 1_795_714_200_000;
const HOUR: i64 = 3_600_000;

fn keys() -> (Keyring, Directory) {
    let mut keyring = Keyring::default();
    keyring.add_key("dev-1");
    keyring.add_key("dev-2");
    let entry = DeviceEntry {
        company: "acme".into(),
        created_at: NOW - 48 * HOUR,
        enabled: true,
        site: None,
        seq_reset_at: None,
    };
    let placed = DeviceEntry { site: Some("north".into()), ..entry.clone() };
    let directory = Directory::new([("dev-1".to_string(), placed), ("dev-2".to_string(), entry)]);
    (keyring, directory)
}

fn sealed(keyring: &Keyring, device_id: &str, seq: u64, ts: i64) -> Bytes {
    let key = keyring.current_key(device_id).unwrap();
    let readings = ["temp-1", "hum-1"]
        .map(|sensor| Reading {
            sensor: sensor.into(),
            kind: "k".into(),
            value: seq as f64,
            unit: "u".into(),
        })
        .to_vec();
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    Bytes::from(seal(device_id, key.id, &key.key, nonce, &ReadingBatch { seq, ts, readings }.to_json()))
}

fn record(position: u64, device_id: &str, payload: Bytes) -> Record {
    Record {
        position: Position::new(position),
        device_id: device_id.into(),
        topic: format!("wenu/{device_id}/telemetry"),
        received_at: NOW,
        payload,
    }
}

fn records(keyring: &Keyring) -> Vec<Record> {
    let mut tampered = sealed(keyring, "dev-2", 9, NOW).to_vec();
    tampered[20] ^= 0xff;
    vec![
        record(1, "dev-1", sealed(keyring, "dev-1", 1, NOW)),
        record(2, "dev-2", sealed(keyring, "dev-2", 1, NOW)),
        record(3, "dev-1", sealed(keyring, "dev-1", 2, NOW - 2 * HOUR)), // late: an older partition
        record(4, "dev-1", sealed(keyring, "dev-1", 1, NOW)),            // duplicate
        record(5, "dev-2", Bytes::from(tampered)),
        record(6, "ghost", sealed(keyring, "dev-1", 3, NOW)),
    ]
}

async fn listing(store: &LocalFileSystem) -> Vec<String> {
    use futures::TryStreamExt;
    let mut paths: Vec<String> =
        store.list(None).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
    paths.sort();
    paths
}

#[tokio::test]
async fn partitions_quarantines_and_rewrites_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let (keyring, directory) = keys();
    let batch = records(&keyring);
    let new_stage = || {
        LakeStage::new(
            store.clone(),
            Box::new(FixedKeys::new(keyring.clone(), directory.clone())),
            DecodeLimits::default(),
        )
    };

    let mut stage = new_stage();
    stage.restore(None).unwrap();
    let report = stage.write_batch(&batch).await.unwrap();
    assert_eq!((report.rows, report.duplicates, report.files), (6, 1, 4));
    assert_eq!(report.quarantined.get("tampered"), Some(&1));
    assert_eq!(report.quarantined.get("unknown_device"), Some(&1));

    let name = layout::part_name(1, 6);
    let expected = vec![
        format!("quarantine/reason=tampered/date=2026-11-26/{name}"),
        format!("quarantine/reason=unknown_device/date=2026-11-26/{name}"),
        format!("readings/company=acme/date=2026-11-26/hour=15/{name}"),
        format!("readings/company=acme/date=2026-11-26/hour=17/{name}"),
    ];
    let files = listing(&store).await;
    assert_eq!(files, expected);

    let current_hour = store.get(&expected[3].as_str().into()).await.unwrap().bytes().await.unwrap();
    let rows = encode::read(current_hour.clone()).unwrap();
    let rows = arrow::compute::concat_batches(&rows[0].schema(), &rows).unwrap();
    assert_eq!(rows.num_rows(), 4, "dev-1 seq 1 and dev-2 seq 1, two sensors each, the duplicate dropped");
    assert_eq!(rows.schema(), *encode::READINGS_SCHEMA);
    let (devices, sites) = (rows.column_by_name("device_id").unwrap(), rows.column_by_name("site").unwrap());
    let devices = devices.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
    let sites = sites.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
    for i in 0..rows.num_rows() {
        let site = arrow::array::Array::is_valid(sites, i).then(|| sites.value(i));
        let expected = if devices.value(i) == "dev-1" { Some("north") } else { None };
        assert_eq!(site, expected, "the registry's site of the device, or none");
    }

    let quarantined = store.get(&expected[0].as_str().into()).await.unwrap().bytes().await.unwrap();
    let q = &encode::read(quarantined).unwrap()[0];
    assert_eq!(q.num_rows(), 1);
    let payload =
        q.column_by_name("payload").unwrap().as_any().downcast_ref::<arrow::array::BinaryArray>().unwrap();
    assert_eq!(payload.value(0), batch[4].payload.as_ref(), "the raw envelope is kept for inspection");

    // A redo of the same range from the same saved state: same names, same bytes.
    let mut again = new_stage();
    again.restore(None).unwrap();
    again.write_batch(&batch).await.unwrap();
    assert_eq!(listing(&store).await, expected);
    let rewritten = store.get(&expected[3].as_str().into()).await.unwrap().bytes().await.unwrap();
    assert_eq!(rewritten, current_hour);
}

#[tokio::test]
async fn state_saved_with_the_checkpoint_keeps_duplicates_out_of_later_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let (keyring, directory) = keys();
    let fixed = || Box::new(FixedKeys::new(keyring.clone(), directory.clone()));

    let mut stage = LakeStage::new(store.clone(), fixed(), DecodeLimits::default());
    stage.restore(None).unwrap();
    let state = stage.process(&[record(1, "dev-1", sealed(&keyring, "dev-1", 1, NOW))]).await.unwrap();

    // After a restart the device resends seq 1 with seq 2.
    let mut restarted = LakeStage::new(store.clone(), fixed(), DecodeLimits::default());
    restarted.restore(Some(&state)).unwrap();
    let resent = [
        record(2, "dev-1", sealed(&keyring, "dev-1", 1, NOW)),
        record(3, "dev-1", sealed(&keyring, "dev-1", 2, NOW)),
    ];
    let report = restarted.write_batch(&resent).await.unwrap();
    assert_eq!((report.rows, report.duplicates), (2, 1));
    let completeness = restarted.sequences().unwrap().completeness("dev-1").unwrap();
    assert_eq!((completeness.received, completeness.expected), (2, 2));
}

/// Keys whose second refresh fails, as a keyring file caught mid-rewrite
/// or with unsafe permissions does; later refreshes work again.
struct FailsOnce {
    keys: Option<(Keyring, Directory)>,
    calls: usize,
}

#[async_trait::async_trait]
impl wenu_decrypt::KeySource for FailsOnce {
    async fn refresh(&mut self) -> Result<Option<(Keyring, Directory)>, String> {
        self.calls += 1;
        match self.calls {
            2 => Err("keyring.json: others may read it".into()),
            _ => Ok(self.keys.take()),
        }
    }
}

#[tokio::test]
async fn a_failed_key_refresh_fails_the_batch_and_its_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let (keyring, directory) = keys();
    let keys = FailsOnce { keys: Some((keyring.clone(), directory)), calls: 0 };
    let mut stage = LakeStage::new(store.clone(), Box::new(keys), DecodeLimits::default());
    stage.restore(None).unwrap();
    let first = vec![record(1, "dev-1", sealed(&keyring, "dev-1", 1, NOW))];
    assert_eq!(stage.write_batch(&first).await.unwrap().rows, 2);

    let second = vec![record(2, "dev-1", sealed(&keyring, "dev-1", 2, NOW))];
    assert!(stage.write_batch(&second).await.is_err(), "the refresh failed");
    let retried = stage.write_batch(&second).await.unwrap();
    assert_eq!((retried.rows, retried.duplicates), (2, 0), "the retry decodes with the keys it had");
}

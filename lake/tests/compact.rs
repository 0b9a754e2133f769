//! Compaction of a local lake: one file per closed partition, same rows,
//! idempotent, leftovers of an interrupted run cleared, files written after
//! the plan kept.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use wenu_core::envelope::seal;
use wenu_core::keyring::Keyring;
use wenu_core::reading::{Reading, ReadingBatch};
use wenu_core::stream::{Position, Record};
use wenu_decrypt::{DecodeLimits, DeviceEntry, Directory, FixedKeys};
use wenu_lake::compact::{self, CompactOptions, LakeLock};
use wenu_lake::inventory::{parquet_files, scan_local};
use wenu_lake::{LakeStage, encode};

/// 2026-11-26T17:30:00Z
const NOW: i64 = 1_795_714_200_000;
const HOUR: i64 = 3_600_000;

fn batch(keyring: &Keyring, positions: std::ops::RangeInclusive<u64>, ts: i64) -> Vec<Record> {
    let key = keyring.current_key("dev-1").unwrap();
    positions
        .map(|p| {
            let readings =
                vec![Reading { sensor: "s".into(), kind: "k".into(), value: p as f64, unit: "u".into() }];
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&p.to_be_bytes());
            let plaintext = ReadingBatch { seq: p, ts, readings }.to_json();
            Record {
                position: Position::new(p),
                device_id: "dev-1".into(),
                topic: "wenu/dev-1/telemetry".into(),
                received_at: NOW,
                payload: Bytes::from(seal("dev-1", key.id, &key.key, nonce, &plaintext)),
            }
        })
        .collect()
}

async fn lake_with_small_files(dir: &Path) -> Keyring {
    let mut keyring = Keyring::default();
    keyring.add_key("dev-1");
    let entry = DeviceEntry {
        company: "acme".into(),
        created_at: NOW - 48 * HOUR,
        enabled: true,
        site: None,
        seq_reset_at: None,
    };
    let keys = FixedKeys::new(keyring.clone(), Directory::new([("dev-1".to_string(), entry)]));
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap());
    let mut stage = LakeStage::new(store, Box::new(keys), DecodeLimits::default());
    // Three flushes into 14:00 (closed), one into 17:00 (open).
    for (range, ts) in
        [(1..=10, NOW - 3 * HOUR), (11..=20, NOW - 3 * HOUR), (21..=30, NOW - 3 * HOUR), (31..=40, NOW)]
    {
        stage.write_batch(&batch(&keyring, range, ts)).await.unwrap();
    }
    keyring
}

fn options(committed_up_to: Option<u64>) -> CompactOptions {
    CompactOptions { closed_before_ms: NOW, committed_up_to }
}

#[tokio::test]
async fn merges_closed_partitions_once_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    lake_with_small_files(dir.path()).await;
    let before = scan_local(dir.path()).unwrap();
    assert_eq!((before.reading_files, before.reading_rows), (4, 40));

    let lock = LakeLock::open(dir.path()).unwrap();
    let plans = compact::plan(dir.path(), options(Some(40))).unwrap();
    assert_eq!(plans.len(), 1, "only the closed hour");
    assert_eq!(plans[0].files.len(), 3);
    assert_eq!(compact::compact_partition(dir.path(), &plans[0], &lock).unwrap(), 30);

    let after = scan_local(dir.path()).unwrap();
    assert_eq!((after.reading_files, after.reading_rows), (2, 40));
    let closed = parquet_files(&plans[0].dir).unwrap();
    assert_eq!(closed.len(), 1);
    assert!(closed[0].ends_with("part-00000000000000000001-00000000000000000030.parquet"));
    let merged = &encode::read(std::fs::read(&closed[0]).unwrap().into()).unwrap()[0];
    let seqs =
        merged.column_by_name("seq").unwrap().as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
    assert_eq!(seqs.values().to_vec(), (1..=30).collect::<Vec<i64>>(), "sorted, nothing lost or doubled");

    assert!(
        compact::plan(dir.path(), options(Some(40))).unwrap().is_empty(),
        "a second run has nothing to do"
    );
    assert!(parquet_files(&dir.path().join("_compaction")).unwrap().is_empty(), "the old files are gone");
}

#[tokio::test]
async fn files_beyond_the_checkpoint_and_files_written_after_the_plan_stay() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = lake_with_small_files(dir.path()).await;
    let lock = LakeLock::open(dir.path()).unwrap();
    let plans = compact::plan(dir.path(), options(Some(20))).unwrap();
    assert_eq!(plans[0].files.len(), 2, "21..=30 is not committed yet");

    // A late reading lands in the partition between plan and swap.
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let entry = DeviceEntry {
        company: "acme".into(),
        created_at: NOW - 48 * HOUR,
        enabled: true,
        site: None,
        seq_reset_at: None,
    };
    let keys = FixedKeys::new(keyring.clone(), Directory::new([("dev-1".to_string(), entry)]));
    let mut stage = LakeStage::new(store, Box::new(keys), DecodeLimits::default());
    stage.write_batch(&batch(&keyring, 41..=41, NOW - 3 * HOUR)).await.unwrap();

    compact::compact_partition(dir.path(), &plans[0], &lock).unwrap();
    let names: Vec<String> = parquet_files(&plans[0].dir)
        .unwrap()
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "part-00000000000000000001-00000000000000000020.parquet",
            "part-00000000000000000021-00000000000000000030.parquet",
            "part-00000000000000000041-00000000000000000041.parquet",
        ]
    );
    assert_eq!(scan_local(dir.path()).unwrap().reading_rows, 41);
}

#[tokio::test]
async fn leftovers_of_an_interrupted_run_are_cleared_and_never_visible() {
    let dir = tempfile::tempdir().unwrap();
    lake_with_small_files(dir.path()).await;
    // A run died after building its merged file, before the swap.
    let staged = dir.path().join("_compaction/readings/company=acme/date=2026-11-26/hour=14");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("part-00000000000000000001-00000000000000000030.parquet"), b"half").unwrap();
    assert_eq!(scan_local(dir.path()).unwrap().reading_rows, 40, "readers list readings/ only");
    compact::clear_leftovers(dir.path()).unwrap();
    assert!(!dir.path().join("_compaction").exists());
}

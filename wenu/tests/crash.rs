//! Once a device has its PUBACK, the reading is never lost: a simulated fleet
//! publishes continuously while `wenu serve` is killed with SIGKILL and
//! restarted several times; afterwards every acknowledged (device, seq) is in
//! the log, in the lake exactly once, and counted exactly once in the stats.
//! The lake and enrich flush after every read here, so kills land during
//! batching, file writes, job queueing and stats writes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arrow::array::{Int64Array, StringArray};
use support::{ServeProcess, acked_lines, drain, free_loopback_port, provision, wenu};
use tokio::sync::watch;
use wenu_core::fleet::Fleet;
use wenu_core::keyring::Keyring;
use wenu_core::stream::{StartAt, Stream};
use wenu_firmware_sim::{SimConfig, run_fleet};
use wenu_local::{SqliteStream, SqliteTable, StreamOptions};
use wenu_stats::{Resolution, SeriesKey, read_series};

const KILLS: usize = 8;
const DEVICES: usize = 20;

/// Polls until the simulator has at least `count` acks on file.
async fn wait_for_acks(path: &std::path::Path, count: usize) {
    while acked_lines(path).len() < count {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_readings_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fleet_path = dir.path().join("fleet.json");
    let out = provision(&data, DEVICES, &fleet_path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let port = free_loopback_port();
    let mqtt = format!("127.0.0.1:{port}");
    let acked_path = dir.path().join("acked.jsonl");
    // Both consumers flush after every read, so kills land mid-batch, mid-file and mid-job.
    let env = [("WENU_LAKE_BUFFER_SECS", "0"), ("WENU_STATS_BATCH_MILLIS", "0")];
    let start = || ServeProcess::start_with(&data, &mqtt, &env);
    let mut server = start();

    let fleet = Fleet::load(&fleet_path).unwrap();
    let sim = SimConfig {
        port,
        rate_per_device: 100.0,
        window: 8,
        reconnect_delay: Duration::from_millis(50),
        drain_timeout: Duration::from_secs(60),
        report: Some(acked_path.clone()),
        ..SimConfig::default()
    };
    let (stop_tx, stop) = watch::channel(false);
    let fleet_run = tokio::spawn(async move { run_fleet(&fleet, sim, stop).await.unwrap() });

    for kill in 1..=KILLS {
        // Let acknowledgements flow, then pull the plug mid-stream.
        wait_for_acks(&acked_path, kill * 300).await;
        server.kill_9();
        server = start();
    }
    wait_for_acks(&acked_path, (KILLS + 1) * 300).await;
    stop_tx.send(true).unwrap();
    let report = fleet_run.await.unwrap();
    assert_eq!(report.unacked_at_exit, 0, "the fleet drained its offline buffers");
    server.terminate();

    let acked: BTreeSet<(String, u64)> = acked_lines(&acked_path).into_iter().collect();
    let keyring = Keyring::load(&data.join("keyring.json")).unwrap();
    let stream = SqliteStream::open(&data.join("stream.db"), StreamOptions::default()).unwrap();
    let records = stream.read(StartAt::Oldest, usize::MAX >> 1).await.unwrap();
    let mut in_log: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for record in &records {
        let plaintext =
            wenu_core::envelope::open_with_keyring(&record.device_id, &record.payload, &keyring).unwrap();
        let batch = wenu_core::reading::ReadingBatch::from_json(&plaintext).unwrap();
        *in_log.entry((record.device_id.clone(), batch.seq)).or_default() += 1;
    }
    let missing: Vec<_> = acked.iter().filter(|k| !in_log.contains_key(*k)).collect();
    let duplicate_records: usize = in_log.values().map(|n| n - 1).sum();
    println!(
        "crash test: kills={KILLS} acked={} found={} missing={} log_records={} duplicate_records={} resent={} reconnects={}",
        acked.len(),
        acked.len() - missing.len(),
        missing.len(),
        records.len(),
        duplicate_records,
        report.resent,
        report.connection_errors
    );
    assert!(missing.is_empty(), "acknowledged but not in the log: {missing:?}");
    assert!(acked.len() >= (KILLS + 1) * 300);
    // Records without an ack (PUBACK lost in the kill) may be in the log too;
    // after dedupe on (device, seq) each acknowledged reading counts once.
    assert!(in_log.len() >= acked.len());

    // The lake: every reading of the log once, whatever the kills interrupted.
    drain(&data, &mqtt).await;
    let mut in_lake: BTreeMap<(String, u64, String), usize> = BTreeMap::new();
    for file in wenu_lake::inventory::parquet_files(&data.join("lake/readings")).unwrap() {
        for batch in wenu_lake::encode::read(std::fs::read(&file).unwrap().into()).unwrap() {
            let column = |name| batch.column_by_name(name).unwrap().clone();
            let (devices, seqs, sensors) = (column("device_id"), column("seq"), column("sensor"));
            let devices = devices.as_any().downcast_ref::<StringArray>().unwrap();
            let seqs = seqs.as_any().downcast_ref::<Int64Array>().unwrap();
            let sensors = sensors.as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..batch.num_rows() {
                let key = (devices.value(i).to_owned(), seqs.value(i) as u64, sensors.value(i).to_owned());
                *in_lake.entry(key).or_default() += 1;
            }
        }
    }
    let lake_messages: BTreeSet<(String, u64)> = in_lake.keys().map(|(d, s, _)| (d.clone(), *s)).collect();
    let doubled = in_lake.values().filter(|n| **n > 1).count();
    let lake_missing = acked.iter().filter(|k| !lake_messages.contains(*k)).count();
    println!(
        "crash test lake: rows={} messages={} acked_missing={lake_missing} doubled={doubled}",
        in_lake.len(),
        lake_messages.len()
    );
    assert_eq!(lake_missing, 0, "acknowledged but not in the lake");
    assert_eq!(doubled, 0, "a reading is in the lake twice");
    assert_eq!(lake_messages, in_log.keys().cloned().collect(), "the lake holds exactly the log's messages");

    // `wenu status` reads the same log without a server.
    let out = wenu(&data).args(["status", "--json"]).output().unwrap();
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["log"]["records"], records.len() as u64);
    assert_eq!(status["server_running"], false);
    assert_eq!(status["devices"], DEVICES as u64);

    // The stats: each series counted every lake reading once, at every resolution.
    let table = SqliteTable::open(&data.join("stats.db")).unwrap();
    let mut per_series: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (device, _, sensor) in in_lake.keys() {
        *per_series.entry((device.clone(), sensor.clone())).or_default() += 1;
    }
    let mut stats_total = 0;
    for ((device, sensor), lake_count) in &per_series {
        let series = SeriesKey { company: "acme".into(), device: device.clone(), sensor: sensor.clone() };
        for resolution in Resolution::ALL {
            let buckets = read_series(&table, &series, resolution, 0, i64::MAX).await.unwrap();
            let counted: u64 = buckets.iter().map(|(_, rollup)| rollup.count).sum();
            assert_eq!(counted, *lake_count, "{device} {sensor} at {}", resolution.label());
            if resolution == Resolution::Minute {
                stats_total += counted;
            }
        }
    }
    println!(
        "crash test stats: series={} counted={stats_total} lake_rows={}",
        per_series.len(),
        in_lake.len()
    );
    assert_eq!(stats_total, in_lake.len() as u64);
    assert_eq!(support::queue_status(&data)["dead"], 0);
}

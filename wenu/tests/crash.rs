//! Once a device has its PUBACK, the reading is never lost: a simulated fleet
//! publishes continuously while `wenu serve` is killed with SIGKILL and
//! restarted several times; afterwards every acknowledged (device, seq) is in
//! the log.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::{ServeProcess, free_loopback_port, wenu};
use tokio::sync::watch;
use wenu_core::fleet::Fleet;
use wenu_core::keyring::Keyring;
use wenu_core::stream::{StartAt, Stream};
use wenu_firmware_sim::{SimConfig, run_fleet};
use wenu_local::{SqliteStream, StreamOptions};

const KILLS: usize = 8;
const DEVICES: usize = 20;

fn acked_lines(path: &std::path::Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|v| (v["device"].as_str().unwrap().to_owned(), v["seq"].as_u64().unwrap()))
        .collect()
}

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
    let status = wenu(&data)
        .args(["devices", "provision", "--company", "acme", "--count", &DEVICES.to_string(), "--out"])
        .arg(&fleet_path)
        .status()
        .unwrap();
    assert!(status.success());

    let port = free_loopback_port();
    let mqtt = format!("127.0.0.1:{port}");
    let acked_path = dir.path().join("acked.jsonl");
    let mut server = ServeProcess::start(&data, &mqtt);

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
        server = ServeProcess::start(&data, &mqtt);
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

    // `wenu status` reads the same log without a server.
    let out = wenu(&data).args(["status", "--json"]).output().unwrap();
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["log"]["records"], records.len() as u64);
    assert_eq!(status["server_running"], false);
    assert_eq!(status["devices"], DEVICES as u64);
}

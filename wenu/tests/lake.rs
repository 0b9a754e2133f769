//! Simulator → `wenu serve` → Parquet lake, read back with DuckDB and pyarrow:
//! the lake holds exactly the acknowledged readings of the healthy devices,
//! once each, and the faulty device's bad messages are quarantined by reason
//! and counted, while the pipeline keeps going.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use support::{
    ServeProcess, acked_lines, free_loopback_port, lake_messages, provisioned, python, status, wait_for_lake,
    wenu,
};
use tokio::sync::watch;
use wenu_core::fleet::Fleet;
use wenu_firmware_sim::{Fault, SimConfig, run_fleet};

const DEVICES: usize = 6;
const PER_RUN: u64 = 300;

async fn run(fleet: &Fleet, port: u16, fault: Fault, first_seq: u64, report: &Path) {
    let sim = SimConfig {
        port,
        rate_per_device: 0.0,
        per_device: Some(PER_RUN),
        window: 8,
        first_seq,
        faults: vec![fault],
        report: Some(report.to_owned()),
        ..SimConfig::default()
    };
    let (_stop_tx, stop) = watch::channel(false);
    let report = run_fleet(fleet, sim, stop).await.unwrap();
    assert_eq!(report.unacked_at_exit, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_holds_every_acknowledged_reading_once_and_quarantines_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fleet_path = dir.path().join("fleet.json");
    let fleet = provisioned(&data, DEVICES, &fleet_path);
    let faulty = fleet.devices[0].device_id.clone();

    let port = free_loopback_port();
    let mqtt = format!("127.0.0.1:{port}");
    let server = ServeProcess::start_with(&data, &mqtt, &[("WENU_LAKE_BUFFER_SECS", "1")]);
    let reports: Vec<_> = (0..3).map(|i| dir.path().join(format!("acked-{i}.jsonl"))).collect();
    // Each run continues the sequence numbers; the first device misbehaves.
    run(&fleet, port, Fault::Tamper, 1, &reports[0]).await;
    run(&fleet, port, Fault::WrongKey, 1 + PER_RUN, &reports[1]).await;
    run(&fleet, port, Fault::Replay, 1 + 2 * PER_RUN, &reports[2]).await;
    wait_for_lake(&data).await;
    let metrics = server.http_get("/metrics");
    server.terminate();

    let acked: Vec<(String, u64)> = reports.iter().flat_map(|r| acked_lines(r)).collect();
    let healthy_acked: BTreeSet<(String, u64)> =
        acked.iter().filter(|(d, _)| *d != faulty).cloned().collect();
    assert_eq!(healthy_acked.len(), (DEVICES - 1) * 3 * PER_RUN as usize);

    let out = python().arg("tests/py/read_lake.py").arg(data.join("lake")).output().unwrap();
    assert!(out.status.success(), "read_lake.py: {}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let duck = &seen["duckdb"];
    let in_lake = lake_messages(duck);
    let healthy_in_lake: BTreeSet<_> = in_lake.iter().filter(|(d, _)| *d != faulty).cloned().collect();
    println!(
        "lake test: acked={} healthy_acked={} lake_rows={} lake_messages={} quarantine={}",
        acked.len(),
        healthy_acked.len(),
        duck["rows"],
        in_lake.len(),
        duck["quarantine"]
    );

    // Exactly the acknowledged readings of healthy devices, each once.
    assert_eq!(healthy_in_lake, healthy_acked);
    assert_eq!(duck["rows"], duck["distinct_readings"], "no reading twice");
    assert_eq!(duck["rows_outside_their_partition"], 0);
    assert_eq!(duck["companies"], serde_json::json!(["acme"]));
    // The faulty device: what reached the lake was acknowledged; what was
    // tampered with, sealed with a wrong key or replayed from long ago did not.
    let faulty_acked: BTreeSet<_> = acked.iter().filter(|(d, _)| *d == faulty).map(|(_, s)| *s).collect();
    let faulty_in_lake: BTreeSet<_> = in_lake.iter().filter(|(d, _)| *d == faulty).map(|(_, s)| *s).collect();
    assert!(faulty_in_lake.is_subset(&faulty_acked));
    assert!(
        faulty_in_lake.iter().all(|s| !(PER_RUN + 1..=2 * PER_RUN).contains(s)),
        "nothing of the wrong key"
    );
    let quarantine = &duck["quarantine"];
    assert!(quarantine["tampered"].as_u64().unwrap() >= PER_RUN, "wrong-key run plus tampered messages");
    assert!(quarantine["replayed_seq"].as_u64().unwrap() > 0);

    // `wenu sql` (DataFusion) sees the same rows and messages.
    let sql = |query: &str| -> Vec<serde_json::Value> {
        let out = wenu(&data).args(["sql", "--format", "json", query]).output().unwrap();
        assert!(out.status.success(), "wenu sql: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let counts = &sql("SELECT count(*) AS n FROM readings WHERE company = 'acme'")[0];
    assert_eq!(counts["n"], duck["rows"]);
    let sql_messages: BTreeSet<(String, u64)> = sql("SELECT DISTINCT device_id, seq FROM readings")
        .iter()
        .map(|m| (m["device_id"].as_str().unwrap().to_owned(), m["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(sql_messages, in_lake);
    let quarantined = &sql("SELECT count(*) AS n FROM quarantine WHERE reason = 'replayed_seq'")[0];
    assert_eq!(quarantined["n"], quarantine["replayed_seq"]);

    // A replay of the whole stream into another lake has the same rows, and
    // replaying again writes the same files byte for byte.
    let replayed = |into: &Path| {
        let out =
            wenu(&data).args(["replay", "--batch-records", "700", "--into"]).arg(into).output().unwrap();
        assert!(out.status.success(), "wenu replay: {}", String::from_utf8_lossy(&out.stderr));
        let files = wenu_lake::inventory::parquet_files(into).unwrap();
        files
            .iter()
            .map(|f| (f.strip_prefix(into).unwrap().to_owned(), std::fs::read(f).unwrap()))
            .collect::<Vec<_>>()
    };
    let (first, second) = (dir.path().join("replay-1"), dir.path().join("replay-2"));
    let first_files = replayed(&first);
    assert_eq!(first_files, replayed(&second));
    let out = wenu(&data)
        .env("WENU_LAKE_DIR", &first)
        .args([
            "sql",
            "--format",
            "json",
            "SELECT count(*) AS n, count(DISTINCT device_id) AS d FROM readings",
        ])
        .output()
        .unwrap();
    let replay_counts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(replay_counts["n"], duck["rows"]);

    // The hour is still open: compaction leaves it alone and says so.
    let out = wenu(&data).args(["lake", "compact"]).output().unwrap();
    assert!(out.status.success(), "wenu lake compact: {}", String::from_utf8_lossy(&out.stderr));
    let compacted: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(compacted["rows"], 0);

    // Standard types, whichever reader.
    let types = &duck["types"];
    assert_eq!(types["ts"], "TIMESTAMP WITH TIME ZONE");
    assert_eq!(types["value"], "DOUBLE");
    assert_eq!(types["seq"], "BIGINT");
    let arrow = &seen["pyarrow"];
    assert_eq!(arrow["rows"], duck["rows"]);
    assert_eq!(arrow["schema"]["ts"], "timestamp[ms, tz=UTC]");
    assert_eq!(arrow["schema"]["company"], "string");

    // Counted in metrics and in `wenu status`.
    assert!(metrics.contains("wenu_decrypt_rejected_total{reason=\"tampered\"}"), "{metrics}");
    assert!(metrics.contains("wenu_lake_rows_total"));
    let s = status(&data);
    assert_eq!(s["lake"]["reading_rows"], duck["rows"]);
    assert_eq!(s["lake"]["quarantined"], *quarantine);
    let completeness = &s["completeness"]["fleet"];
    assert!(completeness["duplicates"].as_u64().unwrap() > 0, "replays of the previous message dropped");
    assert!(completeness["replayed"].as_u64().unwrap() > 0);
}

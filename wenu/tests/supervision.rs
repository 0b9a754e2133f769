//! Consumers are never silently gone. A stage that panics is built again
//! from its checkpoint; one whose keyring becomes unreadable under traffic
//! keeps retrying, shows as failing in `/health` and `wenu status`, and
//! recovers once the file is fixed; so does a lake whose storage fails.
//! Either way every acknowledged reading reaches the lake once.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use support::{
    ServeProcess, acked_lines, free_loopback_port, provisioned, sql_rows, status, wait_for_consumer,
    wait_for_lake,
};
use tokio::sync::watch;
use wenu_core::fleet::Fleet;
use wenu_firmware_sim::{SimConfig, run_fleet};

const PER_RUN: u64 = 100;

async fn send(fleet: &Fleet, port: u16, first_seq: u64, report: &Path) {
    let sim = SimConfig {
        port,
        rate_per_device: 0.0,
        per_device: Some(PER_RUN),
        window: 8,
        first_seq,
        report: Some(report.to_owned()),
        ..SimConfig::default()
    };
    let (_stop, stop) = watch::channel(false);
    assert_eq!(run_fleet(fleet, sim, stop).await.unwrap().unacked_at_exit, 0);
}

fn health(server: &ServeProcess) -> serde_json::Value {
    serde_json::from_str(&server.http_get("/health")).unwrap()
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    // A later modification time, so the stages see a changed file.
    let later = SystemTime::now() + Duration::from_secs(1);
    std::fs::File::options().append(true).open(path).unwrap().set_modified(later).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_and_an_unreadable_keyring_lose_no_acknowledged_reading() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fleet = provisioned(&data, 3, &dir.path().join("fleet.json"));
    let port = free_loopback_port();
    let server = ServeProcess::start_with(
        &data,
        &format!("127.0.0.1:{port}"),
        &[
            ("WENU_LAKE_BUFFER_SECS", "0"),
            ("WENU_FAILPOINTS", "lake.process=panic-once,enrich.after_send=panic-once"),
        ],
    );
    let reports = [dir.path().join("acked-1.jsonl"), dir.path().join("acked-2.jsonl")];
    send(&fleet, port, 1, &reports[0]).await;
    wait_for_lake(&data).await;
    wait_for_consumer(&data, "enrich").await;

    // The keyring turns group-readable (refused: it holds device keys) while devices publish.
    let keyring = data.join("keyring.json");
    set_mode(&keyring, 0o644);
    send(&fleet, port, 1 + PER_RUN, &reports[1]).await;
    let failing = loop {
        let h = health(&server);
        if h["consumers"]["lake"]["state"] == "failing" {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failing["status"], "degraded", "{failing}");
    assert!(failing["consumers"]["lake"]["last_error"].as_str().unwrap().contains("keyring"), "{failing}");
    let lake_row = |s: &serde_json::Value| {
        s["consumers"].as_array().unwrap().iter().find(|c| c["consumer"] == "lake").cloned().unwrap()
    };
    // `wenu status` reads what the server writes every second.
    while lake_row(&status(&data))["state"] != "failing" {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    set_mode(&keyring, 0o600);
    wait_for_lake(&data).await;
    wait_for_consumer(&data, "enrich").await;
    wait_for_consumer(&data, "alarms").await;
    let recovered = health(&server);
    assert_eq!(recovered["status"], "ok", "{recovered}");
    assert_eq!(recovered["consumers"]["lake"]["restarts"], 1, "the panic: {recovered}");
    assert_eq!(recovered["consumers"]["enrich"]["restarts"], 1, "the panic: {recovered}");
    server.terminate();

    let acked: BTreeSet<(String, u64)> = reports.iter().flat_map(|r| acked_lines(r)).collect();
    assert_eq!(acked.len(), 3 * 2 * PER_RUN as usize);
    assert_lake_holds_exactly_once(&data, &acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_lake_store_holds_the_readings_back_until_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fleet = provisioned(&data, 3, &dir.path().join("fleet.json"));
    let port = free_loopback_port();
    let server =
        ServeProcess::start_with(&data, &format!("127.0.0.1:{port}"), &[("WENU_LAKE_BUFFER_SECS", "0")]);
    let reports = [dir.path().join("acked-1.jsonl"), dir.path().join("acked-2.jsonl")];
    send(&fleet, port, 1, &reports[0]).await;
    wait_for_lake(&data).await;

    // The lake's directory is replaced by a file: every write fails (as a
    // full or read-only volume would, and whoever runs the test).
    let (lake, away) = (data.join("lake"), data.join("lake.away"));
    std::fs::rename(&lake, &away).unwrap();
    std::fs::write(&lake, b"not a directory").unwrap();
    send(&fleet, port, 1 + PER_RUN, &reports[1]).await;
    // Failing, and what it could not write shows as lag.
    let failing = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let h = health(&server);
            if h["consumers"]["lake"]["state"] == "failing"
                && h["consumers"]["lake"]["lag"].as_u64() > Some(0)
            {
                break h;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the lake shows as failing, with lag");
    assert_eq!(failing["status"], "degraded", "{failing}");
    assert_eq!(failing["consumers"]["alarms"]["state"], "running", "the other consumers go on: {failing}");

    std::fs::remove_file(&lake).unwrap();
    std::fs::rename(&away, &lake).unwrap();
    wait_for_lake(&data).await;
    assert_eq!(health(&server)["status"], "ok");
    server.terminate();

    let acked: BTreeSet<(String, u64)> = reports.iter().flat_map(|r| acked_lines(r)).collect();
    assert_eq!(acked.len(), 3 * 2 * PER_RUN as usize);
    assert_lake_holds_exactly_once(&data, &acked);
}

/// Every acknowledged message is in the lake, and no reading twice.
fn assert_lake_holds_exactly_once(data: &Path, acked: &BTreeSet<(String, u64)>) {
    let sql = |query: &str| sql_rows(data, query);
    let in_lake: BTreeSet<(String, u64)> = sql("SELECT DISTINCT device_id, seq FROM readings")
        .iter()
        .map(|m| (m["device_id"].as_str().unwrap().to_owned(), m["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(&in_lake, acked, "every acknowledged message in the lake");
    let counts = &sql("SELECT count(*) AS n, count(DISTINCT (device_id, seq, sensor)) AS d FROM readings")[0];
    assert_eq!(counts["n"], counts["d"], "no reading twice");
}

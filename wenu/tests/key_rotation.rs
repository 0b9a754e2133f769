//! A key rotated while the fleet is sending reaches the simulated devices
//! over the downlink, sealed under their current key; each switches to it,
//! confirms once what it sealed under the old key is acknowledged, and the
//! old key retires on that confirmation (or stays for the grace period the
//! operator gave). Nothing is quarantined and every acknowledged reading is
//! in the lake once.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{acked_lines, drain, ok, sql_rows, start_pipeline, wenu};
use tokio::sync::watch;
use wenu_core::fleet::Fleet;
use wenu_firmware_sim::{SimConfig, run_fleet};

fn device_show(data: &std::path::Path, device: &str) -> serde_json::Value {
    serde_json::from_str(&ok(wenu(data).args(["devices", "show", device]).output().unwrap())).unwrap()
}

fn live_keys(data: &std::path::Path, device: &str) -> serde_json::Value {
    let listed: serde_json::Value =
        serde_json::from_str(&ok(wenu(data).args(["devices", "list", "--json"]).output().unwrap())).unwrap();
    listed.as_array().unwrap().iter().find(|d| d["id"] == device).unwrap()["live_key_ids"].clone()
}

/// Polls `check` every 50 ms for up to a minute.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within a minute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_over_the_downlink_is_taken_and_the_old_key_retires_on_confirmation() {
    let pipeline = start_pipeline(2);
    let (data, port) = (pipeline.data.clone(), pipeline.port);
    let fleet_path = pipeline.dir.path().join("fleet.json");
    let report = pipeline.dir.path().join("acked.jsonl");
    let (confirming, graced) =
        (pipeline.fleet.devices[0].device_id.clone(), pipeline.fleet.devices[1].device_id.clone());
    let sim = SimConfig {
        port,
        rate_per_device: 50.0,
        window: 8,
        report: Some(report.clone()),
        fleet_file: Some(fleet_path.clone()),
        ..SimConfig::default()
    };
    let (stop_tx, stop) = watch::channel(false);
    let fleet = pipeline.fleet.clone();
    let running = tokio::spawn(async move { run_fleet(&fleet, sim, stop).await });
    eventually("the first acknowledgements", || acked_lines(&report).len() >= 20).await;

    ok(wenu(&data).args(["devices", "rotate-key", &confirming]).output().unwrap());
    ok(wenu(&data).args(["devices", "rotate-key", &graced, "--retire-after-secs", "3600"]).output().unwrap());
    for device in [&confirming, &graced] {
        eventually("the device's confirmation", || {
            let command = &device_show(&data, device)["commands"][0];
            command["name"] == "rotate_key" && command["status"] == "done"
        })
        .await;
    }
    // A confirmation retires the older keys at once, grace period or not.
    assert_eq!(live_keys(&data, &confirming), serde_json::json!([2]));
    assert_eq!(live_keys(&data, &graced), serde_json::json!([2]));
    let after_rotation = acked_lines(&report).len();
    eventually("readings under the new key", || acked_lines(&report).len() >= after_rotation + 40).await;
    stop_tx.send_replace(true);
    let sent = running.await.unwrap().unwrap();
    assert_eq!(sent.unacked_at_exit, 0);
    pipeline.server.terminate();
    drain(&data, &format!("127.0.0.1:{port}")).await;

    let quarantined = sql_rows(&data, "SELECT reason, count(*) AS n FROM quarantine GROUP BY reason");
    assert!(quarantined.is_empty(), "nothing sealed under either key is refused: {quarantined:?}");
    let acked: BTreeSet<(String, u64)> = acked_lines(&report).into_iter().collect();
    let rows = sql_rows(
        &data,
        "SELECT device_id, seq, count(DISTINCT sensor) AS n FROM readings GROUP BY device_id, seq",
    );
    let in_lake: BTreeSet<(String, u64)> = rows
        .iter()
        .map(|r| (r["device_id"].as_str().unwrap().to_owned(), r["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(in_lake, acked, "every acknowledged message is in the lake");
    let doubled = sql_rows(
        &data,
        "SELECT count(*) AS n FROM (SELECT device_id, seq, sensor FROM readings GROUP BY 1, 2, 3 HAVING count(*) > 1)",
    );
    assert_eq!(doubled[0]["n"], 0, "and only once");

    // The simulator kept the new keys, as firmware keeps them in flash.
    let kept = Fleet::load(&fleet_path).unwrap();
    assert!(
        kept.devices.iter().all(|d| d.key_id == 2),
        "{:?}",
        kept.devices.iter().map(|d| d.key_id).collect::<Vec<_>>()
    );
    // The device reported itself, and the command's result is recorded.
    let state = &device_show(&data, &confirming)["state"];
    assert!(state["firmware"].as_str().is_some_and(|f| f.starts_with("wenu-sim/")), "{state}");
}

//! The fleet view through a device's life: one sending (online), one
//! connected and quiet (silent, its configuration waiting: stale), one gone
//! (offline) and one never connected, in the API and in the dashboard as
//! headless Chromium renders it; then the quiet one disconnects.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{ok, start_pipeline_with, wenu};
use tokio::sync::watch;
use wenu_core::fleet::Fleet;
use wenu_firmware_sim::{SimConfig, run_fleet};

async fn fleet_of(base: &str, token: &str) -> Value {
    let response = reqwest::Client::new().get(format!("{base}/api/v1/fleet")).bearer_auth(token).send().await;
    response.unwrap().error_for_status().unwrap().json().await.unwrap()
}

fn presence(fleet: &Value, device: &str) -> String {
    let entry = fleet["items"].as_array().unwrap().iter().find(|d| d["device_id"] == device).unwrap();
    entry["presence"].as_str().unwrap().to_owned()
}

/// Polls the fleet until `check` holds, for up to a minute.
async fn eventually_fleet(base: &str, token: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let fleet = fleet_of(base, token).await;
        if check(&fleet) {
            return fleet;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within a minute; the fleet is {}", fleet_of(base, token).await);
}

/// A client process that a failing test must not leave behind.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn only(fleet: &Fleet, index: usize) -> Fleet {
    Fleet { devices: vec![fleet.devices[index].clone()] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_view_follows_connects_silences_and_disconnects() {
    let pipeline = start_pipeline_with(4, &[("WENU_HTTP_SILENT_AFTER_SECS", "10")]);
    let (data, port) = (pipeline.data.clone(), pipeline.port);
    let base = format!("http://{}", pipeline.server.http);
    let token =
        ok(wenu(&data).args(["tokens", "create", "--company", "acme", "--role", "viewer"]).output().unwrap());
    let token = token.trim();
    let ids: Vec<String> = pipeline.fleet.devices.iter().map(|d| d.device_id.clone()).collect();
    let (sending, quiet, gone, never) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    for device in [sending, quiet] {
        ok(wenu(&data).args(["devices", "config", device, "--set", r#"{"interval_s":1}"#]).output().unwrap());
    }

    // One device sends a few readings and leaves.
    let (_keep, stop) = watch::channel(false);
    let brief = SimConfig { port, rate_per_device: 0.0, per_device: Some(3), ..SimConfig::default() };
    assert_eq!(run_fleet(&only(&pipeline.fleet, 2), brief, stop.clone()).await.unwrap().unacked_at_exit, 0);
    // One keeps sending and follows its configuration.
    let (stop_sending, stop_rx) = watch::channel(false);
    let steady = SimConfig { port, rate_per_device: 5.0, ..SimConfig::default() };
    let sending_fleet = only(&pipeline.fleet, 0);
    let sender = tokio::spawn(async move { run_fleet(&sending_fleet, steady, stop_rx).await });
    // One connects, subscribes to its configuration, and says nothing.
    let quiet_device = &pipeline.fleet.devices[1];
    let listener = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-i", quiet, "-u", quiet])
        .args(["-P", &quiet_device.password.0, "-q", "1", "-t", &format!("wenu/{quiet}/config")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut listener = KillOnDrop(Some(listener));

    let fleet = eventually_fleet(&base, token, "online, silent, offline, never seen", |f| {
        presence(f, sending) == "online"
            && presence(f, quiet) == "silent"
            && presence(f, gone) == "offline"
            && presence(f, never) == "never_seen"
            && f["items"][0]["applied_config_version"] == 1
    })
    .await;
    assert_eq!(
        fleet["counts"],
        serde_json::json!({ "devices": 4, "online": 1, "silent": 1, "offline": 1, "never_seen": 1, "config_stale": 1 }),
        "the quiet device has not applied its configuration: {fleet}"
    );

    // So does `wenu devices list`.
    let listed = wenu(&data)
        .args(["devices", "list", "--json"])
        .env("WENU_HTTP_SILENT_AFTER_SECS", "10")
        .output()
        .unwrap();
    let listed: Value = serde_json::from_str(&ok(listed)).unwrap();
    let listed_presence = |device: &str| {
        listed.as_array().unwrap().iter().find(|d| d["id"] == device).unwrap()["presence"].clone()
    };
    assert_eq!(listed_presence(quiet), "silent");
    assert_eq!(listed_presence(gone), "offline");
    assert_eq!(listed_presence(never), "never_seen");
    let table = ok(wenu(&data).args(["devices", "list"]).output().unwrap());
    assert!(table.lines().any(|l| l.starts_with(quiet.as_str()) && l.contains("none→v1")), "{table}");

    // The dashboard shows the same.
    let out_dir = pipeline.dir.path().join("screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let browser = Command::new("node")
        .arg("tests/js/fleet.cjs")
        .env(
            "PLAYWRIGHT_CORE",
            std::env::var("PLAYWRIGHT_CORE").expect("PLAYWRIGHT_CORE: run scripts/test.sh"),
        )
        .env("WENU_URL", &base)
        .env("VIEWER_TOKEN", token)
        .env("DEVICES", "4")
        .env("OUT_DIR", &out_dir)
        .output()
        .unwrap();
    let seen: Value = serde_json::from_str(&ok(browser)).unwrap();
    println!("browser saw {seen}; screenshot in {}", out_dir.display());
    let row = |device: &str| {
        seen["rows"].as_array().unwrap().iter().find(|r| r["device"] == device).unwrap().clone()
    };
    for (device, expected) in
        [(sending, "online"), (quiet, "silent"), (gone, "offline"), (never, "never_seen")]
    {
        assert_eq!(row(device)["presence"], expected, "{seen}");
        assert_eq!(seen["tree"][device], expected, "the tree marks {device}");
    }
    assert_eq!(seen["rows"][0]["presence"], "silent", "problems first: {seen}");
    assert_eq!(row(quiet)["config"], "none (wants v1)");
    assert_eq!(row(sending)["config"], "v1");
    assert!(row(sending)["firmware"].as_str().unwrap().starts_with("wenu-sim/"), "{seen}");
    assert_eq!(
        seen["counts"],
        serde_json::json!({ "online": 1, "silent": 1, "offline": 1, "never_seen": 1, "config_stale": 1 })
    );
    assert_eq!(seen["consoleErrors"], Value::Array(vec![]));

    // The quiet one got its configuration on connect; when it leaves, it is offline.
    let mut quiet_client = listener.0.take().unwrap();
    quiet_client.kill().unwrap();
    let received = quiet_client.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&received.stdout).contains(r#""version":1"#), "delivered on connect");
    eventually_fleet(&base, token, "the quiet device offline", |f| presence(f, quiet) == "offline").await;
    stop_sending.send_replace(true);
    assert_eq!(sender.await.unwrap().unwrap().unacked_at_exit, 0);
    eventually_fleet(&base, token, "the sender offline after it stops", |f| {
        presence(f, sending) == "offline"
    })
    .await;
    pipeline.server.terminate();
}

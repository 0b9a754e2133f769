//! The reference devices under `devices/` (Python: paho-mqtt and
//! `cryptography`; C: libmosquitto and OpenSSL) implement docs/devices.md
//! with no code of Wenu's. Their envelopes must be the test vectors', and
//! what they send through a running `wenu serve`, killed -9 in the middle,
//! must reach the lake and the stats exactly once, as the simulator's does.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use support::{ServeProcess, ok, python, sql_rows, start_pipeline, wait_for_lake, wait_for_stats, wenu};
use wenu_core::fleet::FleetDevice;

const VECTORS: &str = include_str!("../../docs/test-vectors.json");

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn vectors() -> Vec<serde_json::Value> {
    let parsed: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    parsed["vectors"].as_array().unwrap().clone()
}

/// The C device, compiled once per test run as a firmware developer would.
fn c_device() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wenu_device");
        let built = Command::new("cc")
            .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&out)
            .arg(repository("devices/c/wenu_device.c"))
            .args(["-lmosquitto", "-lcrypto"])
            .output()
            .expect("a C compiler (cc); ./scripts/test.sh installs it with libmosquitto-dev and libssl-dev");
        assert!(built.status.success(), "cc: {}", String::from_utf8_lossy(&built.stderr));
        out
    })
}

#[test]
fn the_python_device_seals_the_test_vectors() {
    let out = python()
        .arg(repository("devices/python/wenu_device.py"))
        .arg("--check-vectors")
        .arg(repository("docs/test-vectors.json"))
        .output()
        .unwrap();
    let said = ok(out);
    assert!(said.contains(&format!("{} vectors and 1 key transfers match", vectors().len())), "{said}");
}

#[test]
fn the_c_device_seals_the_test_vectors() {
    for v in vectors() {
        let out = Command::new(c_device())
            .args(["--seal", "--device", v["device_id"].as_str().unwrap()])
            .args(["--key-id", &v["key_id"].to_string(), "--key", v["key_base64"].as_str().unwrap()])
            .args(["--nonce", v["nonce_hex"].as_str().unwrap(), v["plaintext"].as_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(ok(out).trim(), v["envelope_hex"].as_str().unwrap(), "{}", v["name"]);
    }
}

/// What both devices send for `seq`, as their sources say.
fn expected_values(seq: u64) -> [(&'static str, f64); 2] {
    [("temp-1", 20.0 + (seq % 10) as f64 / 4.0), ("hum-1", 40.0 + (seq % 7) as f64)]
}

fn start_python(device: &FleetDevice, fleet: &Path, port: u16, count: u64, seq_file: &Path) -> Child {
    python()
        .arg(repository("devices/python/wenu_device.py"))
        .arg("--fleet")
        .arg(fleet)
        .args(["--device", &device.device_id, "--port", &port.to_string()])
        .args(["--count", &count.to_string(), "--interval", "0.02", "--seq-file"])
        .arg(seq_file)
        .arg("--key-file")
        .arg(seq_file.with_extension("key"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn start_c(device: &FleetDevice, port: u16, count: u64, seq_file: &Path) -> Child {
    Command::new(c_device())
        .args(["--device", &device.device_id, "--password", &device.password.0])
        .args(["--key-id", &device.key_id.to_string(), "--key", &device.key.to_base64()])
        .args(["--port", &port.to_string(), "--count", &count.to_string(), "--interval-ms", "20"])
        .arg("--seq-file")
        .arg(seq_file)
        .arg("--key-file")
        .arg(seq_file.with_extension("key"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a device process; its closing report line.
fn finished(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "a reference device failed: {report}");
    serde_json::from_str(report.trim().lines().last().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_reference_devices_send_reaches_the_lake_and_the_stats_once_across_a_kill_9() {
    let pipeline = start_pipeline(2);
    let (data, port) = (pipeline.data.clone(), pipeline.port);
    let fleet_path = pipeline.dir.path().join("fleet.json");
    let (py, c) = (&pipeline.fleet.devices[0], &pipeline.fleet.devices[1]);
    let (py_seq, c_seq) = (pipeline.dir.path().join("py.seq"), pipeline.dir.path().join("c.seq"));

    // A first run each, then a second that goes on from the kept sequence number.
    assert_eq!(
        finished(start_python(py, &fleet_path, port, 10, &py_seq))["seqs"],
        serde_json::json!([1, 10])
    );
    assert_eq!(finished(start_c(c, port, 10, &c_seq))["seqs"], serde_json::json!([1, 10]));
    // Both follow the downlink too: a configuration (whose keys the device
    // must not take for the message's own), a command and a new key wait for
    // them, the key sealed under the one each holds. Without a grace period
    // the old key retires only when the device confirms.
    let mut samples = Vec::new();
    for device in [py, c] {
        let config = r#"{"interval_s":30,"version":"not the message's","id":"nor this"}"#;
        ok(wenu(&data).args(["devices", "config", &device.device_id, "--set", config]).output().unwrap());
        let sample =
            ok(wenu(&data).args(["devices", "command", &device.device_id, "sample_now"]).output().unwrap());
        samples.push(sample.trim().to_owned());
        ok(wenu(&data).args(["devices", "rotate-key", &device.device_id]).output().unwrap());
    }
    let python_run = start_python(py, &fleet_path, port, 150, &py_seq);
    let c_run = start_c(c, port, 150, &c_seq);

    // Kill the server while both are sending; they reconnect and resend.
    let accepted = |server: &ServeProcess| {
        server.metrics().get("wenu_edge_publishes_total{outcome=\"accepted\"}").copied().unwrap_or(0.0)
    };
    while accepted(&pipeline.server) < 60.0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pipeline.server.kill_9();
    let server = ServeProcess::start_with(
        &data,
        &format!("127.0.0.1:{port}"),
        &[("WENU_LAKE_BUFFER_SECS", "1"), ("WENU_STATS_BATCH_MILLIS", "100")],
    );
    for (run, device) in [(python_run, py), (c_run, c)] {
        let report = finished(run);
        assert_eq!(report["seqs"], serde_json::json!([11, 160]), "{}", device.device_id);
        assert_eq!(report["unacked"], 0);
    }
    assert!(accepted(&server) > 0.0, "the devices were still sending when the server was killed");
    wait_for_lake(&data).await;
    wait_for_stats(&data).await;

    let listed: serde_json::Value =
        serde_json::from_str(&ok(wenu(&data).args(["devices", "list", "--json"]).output().unwrap())).unwrap();
    for ((device, firmware), sample) in
        [(py, "reference-python/1.0"), (c, "reference-c/1.0")].into_iter().zip(&samples)
    {
        let id = &device.device_id;
        let shown: serde_json::Value =
            serde_json::from_str(&ok(wenu(&data).args(["devices", "show", id]).output().unwrap())).unwrap();
        assert_eq!(shown["state"]["applied_config_version"], 1, "{shown}");
        assert_eq!(shown["state"]["firmware"], firmware);
        let command = |name: &str| {
            shown["commands"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap()
        };
        assert_eq!(
            (command("sample_now")["id"].as_str(), command("sample_now")["status"].as_str()),
            (Some(sample.as_str()), Some("done")),
            "{shown}"
        );
        assert_eq!(command("rotate_key")["status"], "done", "{shown}");
        let entry = listed.as_array().unwrap().iter().find(|d| d["id"] == id.as_str()).unwrap();
        assert_eq!(entry["live_key_ids"], serde_json::json!([2]), "{id}: confirmed, the old key is retired");
    }

    for device in [py, c] {
        let id = &device.device_id;
        let rows = sql_rows(
            &data,
            &format!(
                "SELECT seq, sensor, value, unit FROM readings WHERE device_id = '{id}' ORDER BY seq, sensor"
            ),
        );
        assert_eq!(rows.len(), 2 * 160, "{id}: every reading once");
        for row in &rows {
            let seq = row["seq"].as_u64().unwrap();
            let sensor = row["sensor"].as_str().unwrap();
            let (_, value) = expected_values(seq).into_iter().find(|(s, _)| *s == sensor).unwrap();
            assert_eq!(row["value"].as_f64().unwrap(), value, "{id} seq {seq} {sensor}");
        }
        let quarantined =
            sql_rows(&data, &format!("SELECT count(*) AS n FROM quarantine WHERE device_id = '{id}'"));
        assert_eq!(quarantined[0]["n"], 0, "{id}: nothing quarantined");

        for (sensor, index) in [("temp-1", 0), ("hum-1", 1)] {
            let out = wenu(&data)
                .args(["stats", "query", "--device", id, "--sensor", sensor, "--res", "1d"])
                .args(["--from", "0", "--to", "now", "--json"])
                .output()
                .unwrap();
            let buckets: Vec<serde_json::Value> = serde_json::from_slice(ok(out).as_bytes()).unwrap();
            let count: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
            let sum: f64 = buckets.iter().map(|b| b["sum"].as_f64().unwrap()).sum();
            let expected: f64 = (1..=160).map(|seq| expected_values(seq)[index].1).sum();
            assert_eq!(count, 160, "{id} {sensor}: every reading counted once");
            assert!((sum - expected).abs() < 1e-6, "{id} {sensor}: sum {sum}, expected {expected}");
        }
    }
    server.terminate();
}

/// The README's smoke test: `wenu devices seal … | mosquitto_pub -s`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_sealed_by_wenu_devices_seal_and_sent_by_mosquitto_pub_reaches_the_lake() {
    use std::io::Write;

    let pipeline = start_pipeline(1);
    let data = &pipeline.data;
    let fleet = pipeline.dir.path().join("fleet.json");
    let device = &pipeline.fleet.devices[0];
    let seal = |body: &str, hex: bool| {
        let mut command = wenu(data);
        command.args(["devices", "seal", &device.device_id, body, "--fleet"]).arg(&fleet);
        if hex {
            command.arg("--hex");
        }
        command.output().unwrap()
    };

    let refused = seal(r#"{"seq":1,"readings":[]}"#, false);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a reading batch"));

    let body = |seq: u64| {
        format!(
            r#"{{"seq":{seq},"ts":{},"readings":[{{"sensor":"temp-1","kind":"temperature","value":21.5,"unit":"degC"}}]}}"#,
            wenu_core::clock::now_ms()
        )
    };
    let hex = ok(seal(&body(1), true));
    assert_eq!(hex.trim().len(), 2 * (17 + body(1).len() + 16), "header, ciphertext and tag, in hex");

    for seq in [2, 3] {
        let envelope = seal(&body(seq), false);
        assert!(envelope.status.success(), "{}", String::from_utf8_lossy(&envelope.stderr));
        let mut publish = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &pipeline.port.to_string(), "-V", "mqttv311", "-q", "1"])
            .args(["-i", &device.device_id, "-u", &device.device_id, "-P", &device.password.0])
            .args(["-t", &format!("wenu/{}/telemetry", device.device_id), "-s"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub (mosquitto-clients)");
        publish.stdin.take().unwrap().write_all(&envelope.stdout).unwrap();
        assert!(publish.wait().unwrap().success());
    }
    wait_for_lake(data).await;
    let rows = sql_rows(data, "SELECT seq, value FROM readings ORDER BY seq");
    assert_eq!(
        rows,
        [serde_json::json!({"seq": 2, "value": 21.5}), serde_json::json!({"seq": 3, "value": 21.5})]
    );
    assert_eq!(sql_rows(data, "SELECT count(*) AS n FROM quarantine")[0]["n"], 0);
}

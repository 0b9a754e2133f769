//! The dashboards API, the web pages and `/metrics` of a real `wenu serve`
//! with simulated data: raw readings agree with DuckDB over the lake, stats
//! agree with them, `/metrics` parses with Prometheus' own client parser,
//! and headless Chromium sees charts with data points and the active alarm,
//! creates a silence and an e-mail channel (whose test message a real SMTP
//! server receives) in the alarm panel, and creates a sensor through the
//! backoffice form.

mod support;

use std::process::Command;

use serde_json::Value;
use support::{Pipeline, ok, python, start_pipeline_with, wait_for_lake, wait_for_stats, wenu};
use tokio::sync::watch;
use wenu_core::catalog::SensorSpec;
use wenu_firmware_sim::{SimConfig, run_fleet};

const DEVICES: usize = 3;
const PER_DEVICE: u64 = 40;

fn token(data: &std::path::Path, role: &str) -> String {
    ok(wenu(data).args(["tokens", "create", "--company", "acme", "--role", role]).output().unwrap())
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_api_pages_and_metrics_of_a_running_server() {
    // A real SMTP server for the alarm panel's channel test.
    let smtp = wenu_tests::smtp_server::SmtpServer::start(Default::default());
    let relay = format!("smtp://127.0.0.1:{}", smtp.port);
    let Pipeline { dir, data, fleet, port, server } =
        start_pipeline_with(DEVICES, &[("WENU_ALARMS_SMTP_URL", &relay)]);
    let sim = SimConfig {
        port,
        rate_per_device: 0.0,
        per_device: Some(PER_DEVICE),
        window: 8,
        ..SimConfig::default()
    };
    // An alarm for the dashboard to list: any temperature of the first device.
    ok(wenu(&data)
        .args(["rules", "put", "--company", "acme", "--id", "any-temp", "--name", "Any temperature"])
        .args(["--device", &fleet.devices[0].device_id, "--sensor", "temp-1", "--severity", "critical"])
        .args(["--condition", r#"{"kind":"threshold","direction":"above","limit":-1000}"#])
        .output()
        .unwrap());
    let (_stop_tx, stop) = watch::channel(false);
    assert_eq!(run_fleet(&fleet, sim, stop).await.unwrap().unacked_at_exit, 0);
    wait_for_lake(&data).await;
    wait_for_stats(&data).await;

    let (viewer, admin) = (token(&data, "viewer"), token(&data, "admin"));
    let base = format!("http://{}", server.http);
    let client = reqwest::Client::new();
    let get = |path: String| {
        let request = client.get(format!("{base}{path}")).bearer_auth(&viewer);
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{path}: {}", response.status());
            response.json::<Value>().await.unwrap()
        }
    };

    // Raw readings from the lake, against DuckDB reading the same files.
    let device = fleet.devices[0].device_id.clone();
    let readings = get(format!("/api/v1/readings?device={device}&from=-1h&limit=5000")).await;
    let rows = readings["items"].as_array().unwrap();
    let sql = format!("SELECT count(*), sum(value) FROM {{readings}} WHERE device_id = '{device}'");
    let duck: Value = serde_json::from_str(&ok(python()
        .arg("tests/py/query_lake.py")
        .arg(data.join("lake"))
        .arg(sql)
        .output()
        .unwrap()))
    .unwrap();
    assert_eq!(rows.len() as u64, duck[0][0].as_u64().unwrap());
    let sum: f64 = rows.iter().map(|r| r["value"].as_f64().unwrap()).sum();
    assert!((sum - duck[0][1].as_f64().unwrap()).abs() < 1e-6 * sum.abs().max(1.0));
    assert!(rows.windows(2).all(|w| w[0]["ts"].as_i64() <= w[1]["ts"].as_i64()), "oldest first");

    // Stats of each of its sensors count every reading.
    let series = get(format!("/api/v1/series?device={device}")).await;
    for s in series["items"].as_array().unwrap() {
        let sensor = s["sensor"].as_str().unwrap();
        let stats = get(format!("/api/v1/stats?device={device}&sensor={sensor}&res=1m&from=-1h")).await;
        let counted: u64 =
            stats["items"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert_eq!(counted, PER_DEVICE, "{sensor}");
    }
    // The threads that serve HTTP yield to the edge's: they run at a lower
    // priority (nice 19) than the rest of the process.
    let mut niceness = std::collections::BTreeMap::<String, std::collections::BTreeSet<i64>>::new();
    for task in std::fs::read_dir(format!("/proc/{}/task", server.child.id())).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
        let Some((name, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") ")) else {
            continue;
        };
        // nice is field 19 of stat(5); `rest` starts at field 3.
        let nice: i64 = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        let kind = if name.starts_with("wenu-http") { "http" } else { "other" };
        niceness.entry(kind.into()).or_default().insert(nice);
    }
    assert_eq!(niceness["http"], [19].into(), "{niceness:?}");
    assert!(niceness["other"].contains(&0), "{niceness:?}");

    // Compressed as the client asks: the same JSON, in fewer bytes.
    let sensor = series["items"][0]["sensor"].as_str().unwrap();
    let day = format!("{base}/api/v1/stats?device={device}&sensor={sensor}&res=1m&from=-1h");
    let raw = reqwest::Client::builder().no_gzip().no_brotli().build().unwrap();
    let plain = raw.get(&day).bearer_auth(&viewer).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    for encoding in ["gzip", "br"] {
        let response =
            raw.get(&day).bearer_auth(&viewer).header("accept-encoding", encoding).send().await.unwrap();
        assert_eq!(response.headers()["content-encoding"], encoding);
        assert!(response.bytes().await.unwrap().len() < plain.len(), "{encoding}");
    }
    let decoded: Value = client.get(&day).bearer_auth(&viewer).send().await.unwrap().json().await.unwrap();
    assert_eq!(decoded, serde_json::from_slice::<Value>(&plain).unwrap());

    let completeness = get("/api/v1/completeness".into()).await;
    for c in completeness["items"].as_array().unwrap() {
        assert_eq!(
            (c["received"].as_u64(), c["expected"].as_u64()),
            (Some(PER_DEVICE), Some(PER_DEVICE)),
            "{c}"
        );
    }

    // /metrics in the exposition format, parsed by Prometheus' Python client.
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let mut parse = python()
        .arg("tests/py/parse_metrics.py")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(parse.stdin.as_mut().unwrap(), metrics.as_bytes()).unwrap();
    let families: Value = serde_json::from_str(&ok(parse.wait_with_output().unwrap())).unwrap();
    for (name, kind) in [
        ("wenu_api_requests", "counter"),
        ("wenu_api_request_duration_seconds", "histogram"),
        ("wenu_enrich_readings", "counter"),
        ("wenu_consumer_batch_seconds", "histogram"),
        ("wenu_consumer_lag_records", "gauge"),
        ("wenu_stats_apply_seconds", "histogram"),
        ("wenu_edge_append_seconds", "histogram"),
    ] {
        assert_eq!(families[name]["type"], kind, "{name} in {families}");
    }

    // Headless Chromium: charts with points on the dashboard, a sensor made in the backoffice.
    let out_dir = dir.path().join("screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let playwright = std::env::var("PLAYWRIGHT_CORE").expect(
        "PLAYWRIGHT_CORE is not set: run the tests with scripts/test.sh, which installs playwright-core",
    );
    let browser = Command::new("node")
        .arg("tests/js/browser.cjs")
        .env("PLAYWRIGHT_CORE", playwright)
        .env("WENU_URL", &base)
        .env("VIEWER_TOKEN", &viewer)
        .env("ADMIN_TOKEN", &admin)
        .env("DEVICE", &device)
        .env("SENSOR", "co2-1")
        .env("OUT_DIR", &out_dir)
        .output()
        .unwrap();
    let seen: Value = serde_json::from_str(&ok(browser)).unwrap();
    println!("browser saw {seen}; screenshots in {}", out_dir.display());
    let charts = seen["charts"].as_array().unwrap();
    assert_eq!(charts.len(), series["items"].as_array().unwrap().len());
    for chart in charts {
        assert!(chart["points"].as_u64().unwrap() >= 1 && chart["canvas"] == true, "{chart}");
        assert_ne!(chart["latest"], "–", "latest value shown: {chart}");
    }
    assert_eq!(seen["devicesInTree"], DEVICES);
    assert!(seen["completeness"].as_array().unwrap().iter().all(|c| c == "100%"), "{seen}");
    assert_eq!(seen["live"], true);
    assert_eq!(seen["alarms"], serde_json::json!(["Any temperature"]), "the active alarm is listed");
    assert_eq!(seen["sensorFormResult"]["ok"], true, "{seen}");
    assert_eq!(seen["sensorRowShown"], true);
    assert_eq!(seen["auditFirstAction"], "sensor.upsert");
    // The devices sent and left: offline; a configuration and a command wait for them.
    assert_eq!(seen["presenceColumn"], "offline", "{seen}");
    assert!(seen["configResult"].as_str().unwrap().starts_with("Configuration v1 of"), "{seen}");
    assert_eq!(seen["commands"], serde_json::json!(["sample_now"]), "{seen}");
    assert!(
        seen["downlinkState"].as_str().unwrap().contains("desired configuration v1, applied none"),
        "{seen}"
    );
    // The alarm panel of an admin: a silence and an e-mail channel made in
    // the forms, and the channel's test message received by the relay.
    assert_eq!(seen["silences"], serde_json::json!([format!("device {device}")]), "{seen}");
    assert_eq!(seen["channels"], serde_json::json!(["mailto:ops@acme.example"]), "{seen}");
    assert_eq!(seen["testOutcome"], "delivered", "{seen}");
    assert_eq!(seen["backofficeChannels"], serde_json::json!(["mailto:ops@acme.example"]), "{seen}");
    assert_eq!(seen["backofficeSilences"], serde_json::json!(["true"]), "{seen}");
    let mail = smtp.wait_for(1).await.remove(0);
    assert_eq!(mail.to, ["ops@acme.example"]);
    assert!(mail.header("Subject").unwrap().contains("Test message"), "{:?}", mail.headers);
    assert_eq!(seen["consoleErrors"], Value::Array(vec![]), "no errors in the pages");
    assert_eq!(seen["externalRequests"], Value::Array(vec![]), "the pages need no external network");
    assert!(out_dir.join("dashboard.png").exists() && out_dir.join("backoffice.png").exists());
    server.terminate();

    let specs: Vec<SensorSpec> = serde_json::from_str(&ok(wenu(&data)
        .args(["sensors", "list", "--device", &device, "--json"])
        .output()
        .unwrap()))
    .unwrap();
    let created = specs.iter().find(|s| s.sensor == "co2-1").expect("the backoffice form created the sensor");
    assert_eq!((created.unit.as_str(), created.valid_max), ("ppm", Some(5000.0)));
    let shown: Value =
        serde_json::from_str(&ok(wenu(&data).args(["devices", "show", &device]).output().unwrap())).unwrap();
    assert_eq!(shown["desired_config"]["document"], serde_json::json!({ "interval_s": 15 }), "{shown}");
    assert_eq!(shown["commands"][0]["name"], "sample_now");
}

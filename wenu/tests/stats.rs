//! Simulator → `wenu serve` → enrich → jobs queue → stats workers → stats
//! table, checked against DuckDB over the lake: for every series and every
//! 1-minute bucket, count, min, max and sum agree. One sensor is redefined
//! (another unit, a calibration) while the server runs, so the check also
//! covers unit conversion, calibration and the registry refresh; one device
//! sends spikes, which must be kept out of the stats and quarantined.

mod support;

use std::collections::BTreeMap;
use std::process::Output;

use support::{Pipeline, python, start_pipeline, wait_for_lake, wait_for_stats, wenu};
use tokio::sync::watch;
use wenu_core::catalog::SensorSpec;
use wenu_firmware_sim::{Fault, SimConfig, run_fleet};

const DEVICES: usize = 4;
const PER_DEVICE: u64 = 400;

fn ok(out: Output) -> Vec<u8> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// (count, min, max, sum) per bucket start.
type Buckets = BTreeMap<i64, (u64, f64, f64, f64)>;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_agree_with_duckdb_over_the_lake() {
    let Pipeline { dir: _dir, data, fleet, port, server } = start_pipeline(DEVICES);
    // `_dir` holds the data directory until the test ends.

    // While it runs: the second device's temperature is to be kept in °F, calibrated.
    let calibrated = fleet.devices[1].device_id.clone();
    ok(wenu(&data)
        .args(["sensors", "set", "--device", &calibrated, "--sensor", "temp-1", "--kind", "temperature"])
        .args(["--unit", "degF", "--scale", "1.01", "--offset", "-0.5", "--min", "-40", "--max", "185"])
        .output()
        .unwrap());

    let sim = SimConfig {
        port,
        rate_per_device: 0.0,
        per_device: Some(PER_DEVICE),
        window: 8,
        faults: vec![Fault::Spike],
        ..SimConfig::default()
    };
    let (_stop_tx, stop) = watch::channel(false);
    let report = run_fleet(&fleet, sim, stop).await.unwrap();
    assert_eq!(report.unacked_at_exit, 0);
    wait_for_lake(&data).await;
    wait_for_stats(&data).await;
    let metrics = server.http_get("/metrics");
    server.terminate();

    let specs: Vec<SensorSpec> =
        serde_json::from_slice(&ok(wenu(&data).args(["sensors", "list", "--json"]).output().unwrap()))
            .unwrap();
    assert!(specs.len() >= DEVICES * 2);

    // DuckDB: the same normalisation written independently in SQL (the
    // simulator sends °C; the one sensor kept in °F converts by 1.8 and 32).
    let values: Vec<String> = specs
        .iter()
        .map(|s| {
            let (to_scale, to_offset) = if s.unit == "degF" { (1.8, 32.0) } else { (1.0, 0.0) };
            format!(
                "('{}', '{}', {:?}, {:?}, {:?}, {:?}, {:?}, {:?})",
                s.device,
                s.sensor,
                to_scale,
                to_offset,
                s.scale,
                s.offset,
                s.valid_min.unwrap(),
                s.valid_max.unwrap()
            )
        })
        .collect();
    let sql = format!(
        "WITH spec (device_id, sensor, to_scale, to_offset, scale, ofs, lo, hi) AS (VALUES {}),
              r AS (SELECT device_id, sensor, epoch_ms(date_trunc('minute', ts)) AS bucket,
                           (value * to_scale + to_offset) * scale + ofs AS v, lo, hi
                    FROM {{readings}} JOIN spec USING (device_id, sensor))
         SELECT device_id, sensor, bucket, count(*), min(v), max(v), sum(v), 'in'
         FROM r WHERE v BETWEEN lo AND hi GROUP BY ALL
         UNION ALL
         SELECT device_id, sensor, 0, count(*), 0, 0, 0, 'out'
         FROM r WHERE NOT (v BETWEEN lo AND hi) GROUP BY ALL",
        values.join(", ")
    );
    let out = ok(python().arg("tests/py/query_lake.py").arg(data.join("lake")).arg(&sql).output().unwrap());
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
    let mut duck: BTreeMap<(String, String), Buckets> = BTreeMap::new();
    let mut out_of_range = 0;
    for row in &rows {
        let series = (row[0].as_str().unwrap().to_owned(), row[1].as_str().unwrap().to_owned());
        let count = row[3].as_u64().unwrap();
        if row[7] == "out" {
            out_of_range += count;
            continue;
        }
        let stats = (count, row[4].as_f64().unwrap(), row[5].as_f64().unwrap(), row[6].as_f64().unwrap());
        duck.entry(series).or_default().insert(row[2].as_i64().unwrap(), stats);
    }

    // Wenu's stats, through `wenu stats query --json`.
    let mut compared = 0;
    let mut readings = 0;
    for spec in &specs {
        let stats_query = |res: &str| -> Vec<serde_json::Value> {
            let out = wenu(&data)
                .args(["stats", "query", "--device", &spec.device, "--sensor", &spec.sensor, "--res", res])
                .args(["--from", "0", "--to", "now", "--json"])
                .output()
                .unwrap();
            serde_json::from_slice(&ok(out)).unwrap()
        };
        let ours: Buckets = stats_query("1m")
            .iter()
            .map(|b| {
                let stats = (
                    b["count"].as_u64().unwrap(),
                    b["min"].as_f64().unwrap(),
                    b["max"].as_f64().unwrap(),
                    b["sum"].as_f64().unwrap(),
                );
                (b["bucket_ms"].as_i64().unwrap(), stats)
            })
            .collect();
        let theirs = duck.remove(&(spec.device.clone(), spec.sensor.clone())).unwrap_or_default();
        assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "{spec:?}");
        for (bucket, (count, min, max, sum)) in &ours {
            let (d_count, d_min, d_max, d_sum) = theirs[bucket];
            assert_eq!(*count, d_count, "{} {} at {bucket}", spec.device, spec.sensor);
            assert!(close(*min, d_min) && close(*max, d_max), "{spec:?} at {bucket}: min/max differ");
            assert!(close(*sum, d_sum), "{spec:?} at {bucket}: sum {sum} vs {d_sum}");
            compared += 1;
            readings += count;
        }
        // The hour buckets hold the same readings.
        let hourly: u64 = stats_query("1h").iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert_eq!(hourly, ours.values().map(|b| b.0).sum::<u64>());
    }
    assert!(duck.is_empty(), "series in the lake without stats: {:?}", duck.keys());
    println!(
        "stats test: series={} buckets={compared} readings={readings} out_of_range={out_of_range}",
        specs.len()
    );
    assert!(readings > 0);

    // The spikes: kept out of the stats, quarantined with their reason, counted.
    assert!(out_of_range > 0, "the spiking device produced out-of-range values");
    let quarantined: usize = walk(&data.join("lake/enrich-quarantine/reason=out_of_range"))
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    assert_eq!(quarantined as u64, out_of_range);
    assert!(metrics.contains("wenu_enrich_quarantined_total{reason=\"out_of_range\"}"), "{metrics}");
    // The calibrated sensor really is in °F now (about 70, not 21).
    let calibrated_stats = ok(wenu(&data)
        .args(["stats", "query", "--device", &calibrated, "--sensor", "temp-1", "--from", "0", "--json"])
        .output()
        .unwrap());
    let buckets: Vec<serde_json::Value> = serde_json::from_slice(&calibrated_stats).unwrap();
    assert!(buckets.iter().all(|b| b["min"].as_f64().unwrap() > 50.0), "{buckets:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

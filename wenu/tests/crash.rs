//! Chaos: once a device has its PUBACK, the reading is never lost or
//! counted twice, and no alarm transition is recorded twice or left
//! unnotified. A simulated fleet publishes continuously while `wenu serve`
//! is killed 20 times and restarted each time: mostly `kill -9` at a random
//! moment, and in every fifth round at a chosen point by a failpoint that
//! aborts the process there (after a stats flush wrote its rollups and
//! before the jobs were deleted; after enrich queued jobs and before its
//! checkpoint; after an alarm transition was recorded and before it was
//! sent), while `wenu lake compact` is also killed half-way (before and
//! after its swap). Afterwards every acknowledged (device, seq) is in the
//! log, in the lake exactly once and in the stats exactly once, and every
//! recorded transition reached the webhook.
//!
//! The lake and enrich flush after every read, so the random kills land
//! during batching, file writes, job queueing and stats writes. The seed of
//! the random moments is printed; `CHAOS_SEED` replays one.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, StringArray};
use rand::{Rng, SeedableRng};
use support::{
    ServeProcess, acked_lines, free_loopback_port, ok, provisioned, wait_for_consumer, wait_for_lake,
    wait_for_stats, wenu,
};
use tokio::sync::watch;
use wenu_core::keyring::Keyring;
use wenu_core::stream::StartAt;
use wenu_firmware_sim::{Fault, SimConfig, run_fleet};
use wenu_local::{SqliteStream, SqliteTable, StreamOptions};
use wenu_stats::{Resolution, SeriesKey, read_series};
use wenu_tests::webhook_receiver::Receiver;

const KILLS: usize = 20;
/// Device 0 spikes now and then (its alarm rule raises and clears); the rest are healthy.
const DEVICES: usize = 20;

/// How a round ends.
#[derive(Debug, Clone, Copy)]
enum Death {
    /// `kill -9` after a random number of new acknowledgements.
    Kill9,
    /// The server aborts itself at this failpoint.
    Failpoint(&'static str),
}

fn round_death(round: usize) -> Death {
    match round % 5 {
        1 => Death::Failpoint("stats.after_apply"),
        2 => Death::Failpoint("enrich.after_send"),
        3 => Death::Failpoint("alarms.after_record"),
        _ => Death::Kill9,
    }
}

/// Polls until the simulator has at least `count` acks on file.
async fn wait_for_acks(path: &std::path::Path, count: usize) {
    let started = Instant::now();
    while acked_lines(path).len() < count {
        assert!(started.elapsed() < Duration::from_secs(120), "acks stopped short of {count}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for a server that is to abort at a failpoint; fails after a minute.
async fn wait_for_abort(mut server: ServeProcess, failpoint: &str) {
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(!status.success(), "{failpoint}: the server exited cleanly instead of aborting");
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{failpoint} was never reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `wenu lake compact --all-hours`, aborted at `failpoint`.
fn interrupted_compaction(data: &std::path::Path, failpoint: &str) -> bool {
    let out = wenu(data)
        .args(["lake", "compact", "--all-hours"])
        .env("WENU_FAILPOINTS", format!("{failpoint}=abort"))
        .output()
        .unwrap();
    // Nothing to merge yet is fine too; an abort is what we are after.
    !out.status.success()
}

/// Device 0's spikes are a hundred times the usual values: its sensors get
/// no valid range, so the stats count them like the lake does.
fn accept_any_value(data: &std::path::Path, device: &str) {
    let sensors: serde_json::Value = serde_json::from_str(&ok(wenu(data)
        .args(["sensors", "list", "--device", device, "--json"])
        .output()
        .unwrap()))
    .unwrap();
    for s in sensors.as_array().unwrap() {
        let field = |name: &str| s[name].as_str().unwrap().to_owned();
        ok(wenu(data)
            .args([
                "sensors",
                "set",
                "--device",
                device,
                "--sensor",
                &field("sensor"),
                "--kind",
                &field("kind"),
            ])
            .args(["--unit", &field("unit")])
            .output()
            .unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kills_lose_nothing_and_count_nothing_twice() {
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("chaos seed {seed} (CHAOS_SEED={seed} replays it)");
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fleet_path = dir.path().join("fleet.json");
    let fleet = provisioned(&data, DEVICES, &fleet_path);
    let spiky = fleet.devices[0].device_id.clone();
    accept_any_value(&data, &spiky);
    let condition = r#"{"kind":"threshold","direction":"above","limit":60,"hysteresis":2,"for_ms":0}"#;
    ok(wenu(&data)
        .args(["rules", "put", "--company", "acme", "--id", "spike", "--name", "Spike", "--device", &spiky])
        .args(["--sensor", "temp-1", "--severity", "critical", "--condition", condition])
        .output()
        .unwrap());
    let receiver = Receiver::start("unset").await;
    let hook: serde_json::Value = serde_json::from_str(&ok(wenu(&data)
        .args(["webhooks", "add", "--company", "acme", &receiver.url])
        .output()
        .unwrap()))
    .unwrap();
    receiver.set_secret(hook["secret"].as_str().unwrap());

    let port = free_loopback_port();
    let mqtt = format!("127.0.0.1:{port}");
    let acked_path = dir.path().join("acked.jsonl");
    // Both consumers flush after every read, so kills land mid-batch, mid-file and mid-job.
    // A server that is to abort at a failpoint may do so while starting (a
    // job left from the last kill): then there is no server to wait for.
    let start = |death: Death| {
        let mut env = vec![("WENU_LAKE_BUFFER_SECS", "0"), ("WENU_STATS_BATCH_MILLIS", "0")];
        let failpoint;
        if let Death::Failpoint(name) = death {
            failpoint = format!("{name}=abort");
            env.push(("WENU_FAILPOINTS", failpoint.as_str()));
        }
        match ServeProcess::try_start_with(&data, &mqtt, &env) {
            Ok(server) => Some(server),
            Err(status) => {
                use std::os::unix::process::ExitStatusExt;
                assert!(
                    matches!(death, Death::Failpoint(_)) && status.signal() == Some(6),
                    "wenu serve ended while starting: {status}"
                );
                None
            }
        }
    };
    let mut server = start(round_death(1));

    let sim = SimConfig {
        port,
        rate_per_device: 100.0,
        window: 8,
        reconnect_delay: Duration::from_millis(50),
        drain_timeout: Duration::from_secs(60),
        report: Some(acked_path.clone()),
        faults: vec![Fault::Spike],
        ..SimConfig::default()
    };
    let (stop_tx, stop) = watch::channel(false);
    let fleet_run = tokio::spawn(async move { run_fleet(&fleet, sim, stop).await.unwrap() });

    let mut compactions_interrupted = 0;
    for round in 1..=KILLS {
        eprintln!("round {round}: {:?}, {} acks so far", round_death(round), acked_lines(&acked_path).len());
        match round_death(round) {
            Death::Failpoint(name) => {
                if let Some(server) = server.take() {
                    wait_for_abort(server, name).await
                }
            }
            Death::Kill9 => {
                let acked = acked_lines(&acked_path).len();
                wait_for_acks(&acked_path, acked + rng.gen_range(50..600)).await;
                if round % 5 == 4 {
                    // Compaction, run beside the server, dies half-way too.
                    let failpoint =
                        if round % 10 == 4 { "lake.compact.before_swap" } else { "lake.compact.after_swap" };
                    let data = data.clone();
                    let interrupted =
                        tokio::task::spawn_blocking(move || interrupted_compaction(&data, failpoint))
                            .await
                            .unwrap();
                    compactions_interrupted += usize::from(interrupted);
                }
                server.take().expect("a plain server started").kill_9();
            }
        }
        let acked = acked_lines(&acked_path).len();
        let next = if round < KILLS { round_death(round + 1) } else { Death::Kill9 };
        server = start(next);
        if let Death::Kill9 = next {
            // Let the restarted server take some load before it is killed.
            wait_for_acks(&acked_path, acked + 100).await;
        }
    }
    stop_tx.send(true).unwrap();
    let report = fleet_run.await.unwrap();
    assert_eq!(report.unacked_at_exit, 0, "the fleet drained its offline buffers");
    server.expect("the last server runs").terminate();
    assert!(compactions_interrupted >= 2, "compaction was interrupted: {compactions_interrupted}");

    let acked: BTreeSet<(String, u64)> = acked_lines(&acked_path).into_iter().collect();
    let keyring = Keyring::load(&data.join("keyring.json")).unwrap();
    let stream = SqliteStream::open(&data.join("stream.db"), StreamOptions::default()).unwrap();
    let records = stream.read(StartAt::Oldest, usize::MAX >> 1).await.unwrap();
    let mut in_log: BTreeMap<(String, u64), usize> = BTreeMap::new();
    // Each device's seqs in the order they first reached the log.
    let mut first_seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for record in &records {
        let plaintext =
            wenu_core::envelope::open_with_keyring(&record.device_id, &record.payload, &keyring).unwrap();
        let batch = wenu_core::reading::ReadingBatch::from_json(&plaintext).unwrap();
        let count = in_log.entry((record.device_id.clone(), batch.seq)).or_default();
        if *count == 0 {
            first_seen.entry(record.device_id.clone()).or_default().push(batch.seq);
        }
        *count += 1;
    }
    // Pipelined publishes (8 in flight per device) are stored in the order
    // sent, kills or not: a resend after a kill repeats, never reorders.
    for (device, seqs) in &first_seen {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{device}'s readings out of order in the log");
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
    assert!(acked.len() >= KILLS * 100);
    // Records without an ack (PUBACK lost in the kill) may be in the log too;
    // after dedupe on (device, seq) each acknowledged reading counts once.
    assert!(in_log.len() >= acked.len());

    // The lake: every reading of the log once, whatever the kills interrupted.
    // A last server without load lets every consumer, the stats workers and
    // the alarm dispatcher catch up; then a compaction that runs to the end.
    let server = ServeProcess::start_with(
        &data,
        &mqtt,
        &[("WENU_LAKE_BUFFER_SECS", "0"), ("WENU_STATS_BATCH_MILLIS", "0")],
    );
    wait_for_lake(&data).await;
    wait_for_stats(&data).await;
    wait_for_consumer(&data, "alarms").await;
    let started = Instant::now();
    while !ok(wenu(&data).args(["alarms", "outbox"]).output().unwrap()).trim().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "the alarm outbox never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.terminate();
    let compacted: serde_json::Value =
        serde_json::from_str(&ok(wenu(&data).args(["lake", "compact", "--all-hours"]).output().unwrap()))
            .unwrap();
    println!("crash test compaction: {compacted}");
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

    // Alarms: no transition recorded twice, every one delivered. A webhook is
    // at-least-once (a kill between the send and saving that it was sent
    // repeats it), and a repeat carries the same X-Wenu-Delivery id, which
    // receivers deduplicate on; the count of repeats is printed.
    let history: Vec<serde_json::Value> =
        ok(wenu(&data).args(["alarms", "history", "--company", "acme"]).output().unwrap())
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
    let ids: BTreeSet<String> = history.iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect();
    let distinct: BTreeSet<String> = history
        .iter()
        .map(|t| format!("{}|{}|{}|{}|{}", t["rule"], t["device"], t["sensor"], t["change"], t["ts"]))
        .collect();
    assert_eq!(ids.len(), history.len());
    assert_eq!(distinct.len(), history.len(), "a transition was recorded twice");
    assert!(history.len() >= 4, "the spikes raised and cleared alarms: {}", history.len());
    let mut deliveries: BTreeMap<String, usize> = BTreeMap::new();
    for received in receiver.received() {
        assert!(received.signed, "every delivery is signed");
        *deliveries.entry(received.delivery).or_default() += 1;
    }
    let delivered: BTreeSet<String> = deliveries.keys().cloned().collect();
    assert_eq!(delivered, ids, "each recorded transition was delivered, and nothing else");
    let repeated: usize = deliveries.values().map(|n| n - 1).sum();
    println!(
        "crash test alarms: transitions={} delivered={} repeated_deliveries={repeated}",
        ids.len(),
        delivered.len()
    );
}

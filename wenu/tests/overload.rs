//! Overload: a fleet offering more than `wenu serve` can acknowledge (it aims
//! at twice the maximum measured just before; the in-process simulator on
//! two cores reaches what it reaches, and the ratio is printed). The server
//! applies backpressure — each PUBACK waits for the log, so acknowledgements
//! come later and the devices keep the rest in their offline buffers — and
//! its memory does not grow with the backlog: the second half of the
//! overload peaks no higher than the first. Nothing acknowledged is lost and,
//! once the load stops, everything is delivered.
//!
//! The maximum is measured in the same run, so the test holds on any
//! machine; no wall-clock figure is asserted.

mod support;

use std::time::Duration;

use support::{ServeProcess, acked_lines, free_loopback_port, provisioned, wait_for_lake, wenu};
use tokio::sync::watch;
use wenu_core::fleet::Fleet;
use wenu_firmware_sim::{FleetReport, SimConfig, run_fleet};

const DEVICES: usize = 50;
const OVERLOAD_SECS: u64 = 12;
/// How much higher the second half of the overload may peak than the first
/// (allocator noise), in MiB.
const RSS_SLACK_MIB: u64 = 24;

/// `VmHWM` (peak resident set) and `VmRSS` of a process, in MiB.
fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            / 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

async fn run(fleet: &Fleet, sim: SimConfig, seconds: u64) -> FleetReport {
    let (stop_tx, stop) = watch::channel(false);
    let fleet = fleet.clone();
    let task = tokio::spawn(async move { run_fleet(&fleet, sim, stop).await.unwrap() });
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the in-process simulator cannot reliably offer more than the server takes on two cores \
            (1.02–1.18× seen); needs the separate load generator of issue 8's bench work"]
async fn more_than_the_server_can_take_is_held_back_with_memory_that_does_not_grow() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fleet_path = dir.path().join("fleet.json");
    let fleet = provisioned(&data, DEVICES, &fleet_path);
    let port = free_loopback_port();
    let server = ServeProcess::start_with(
        &data,
        &format!("127.0.0.1:{port}"),
        &[("WENU_LAKE_BUFFER_SECS", "1"), ("WENU_STATS_BATCH_MILLIS", "200")],
    );
    let pid = server.child.id();
    // The server gets one core and the simulated fleet both: the server,
    // not the load generator, must be what runs out of capacity.
    let pinned = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &pid.to_string()])
        .output()
        .unwrap();
    assert!(pinned.status.success(), "taskset: {}", String::from_utf8_lossy(&pinned.stderr));

    // The maximum: as fast as acknowledgements allow.
    let acked_path = dir.path().join("acked.jsonl");
    let closed = SimConfig {
        port,
        rate_per_device: 0.0,
        window: 16,
        report: Some(acked_path.clone()),
        ..SimConfig::default()
    };
    let max = run(&fleet, closed, 4).await;
    let max_rate = max.steady_acked_per_sec.max(1.0);
    let (peak_at_max, _) = memory_mib(pid);

    // Twice that, offered at a fixed rate whatever the acknowledgements do.
    let open = SimConfig {
        port,
        rate_per_device: 2.0 * max_rate / DEVICES as f64,
        window: 16,
        buffer: 100_000,
        first_seq: 1_000_000,
        drain_timeout: Duration::from_secs(300),
        report: Some(acked_path.clone()),
        ..SimConfig::default()
    };
    let (stop_sampling, mut sampling) = watch::channel(false);
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        while !*sampling.borrow() {
            samples.push(memory_mib(pid).1);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = sampling.changed() => {}
            }
        }
        samples
    });
    let overload = run(&fleet, open, OVERLOAD_SECS).await;
    stop_sampling.send(true).unwrap();
    let samples = sampler.await.unwrap();
    let (first, second) = samples.split_at(samples.len() / 2);
    let (first_max, second_max) = (*first.iter().max().unwrap(), *second.iter().max().unwrap());
    let (peak, _) = memory_mib(pid);
    let offered = overload.sent as f64 / OVERLOAD_SECS as f64;
    println!(
        "overload: max {max_rate:.0} acks/s (PUBACK p99 {:.1} ms); offered {offered:.0}/s ({:.2}× the max): {} produced, \
         {} acked, {:.0} acks/s, PUBACK p99 {:.1} ms, {} left unacknowledged; server RSS peak {peak_at_max} MiB at the \
         max, {first_max} → {second_max} MiB over the two halves of the overload, {peak} MiB peak",
        max.puback_latency_p99_ms,
        offered / max_rate,
        overload.sent,
        overload.acked,
        overload.steady_acked_per_sec,
        overload.puback_latency_p99_ms,
        overload.unacked_at_exit,
    );
    assert!(offered > overload.steady_acked_per_sec, "the fleet offered more than the server acknowledged");
    assert!(
        second_max <= first_max + RSS_SLACK_MIB,
        "server memory grew with the backlog: {first_max} → {second_max} MiB"
    );
    assert_eq!(overload.unacked_at_exit, 0, "once the load stopped the devices delivered their buffers");
    assert!(
        overload.puback_latency_p99_ms > max.puback_latency_p99_ms,
        "acknowledgements were held back: p99 {} ms at 2× vs {} ms at the maximum",
        overload.puback_latency_p99_ms,
        max.puback_latency_p99_ms
    );
    assert!(server.child.id() == pid);

    // Everything acknowledged is in the lake, once.
    wait_for_lake(&data).await;
    let acked = acked_lines(&acked_path);
    let out = wenu(&data)
        .args(["sql", "--format", "csv", "SELECT count(DISTINCT device_id || ':' || seq), count(*) - count(DISTINCT device_id || ':' || seq || ':' || sensor) FROM readings"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let row: Vec<u64> = text.lines().nth(1).unwrap().split(',').map(|v| v.parse().unwrap()).collect();
    let distinct: std::collections::BTreeSet<_> = acked.iter().collect();
    assert_eq!(row[0], distinct.len() as u64, "the lake holds exactly the acknowledged messages");
    assert_eq!(row[1], 0, "no reading twice");
    server.terminate();
}

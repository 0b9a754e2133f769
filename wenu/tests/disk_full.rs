//! A full disk: the data directory is a small tmpfs; while a fleet publishes,
//! a filler file takes the last free byte. The edge stops acknowledging
//! (devices keep their readings), nothing crashes, and once the filler is
//! deleted the pipeline resumes by itself: every acknowledged reading ends
//! up in the lake and the stats exactly once.
//!
//! Mounting a tmpfs needs root or password-less sudo (CI has either);
//! elsewhere the test says so and fails rather than pass without checking
//! anything.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{
    ServeProcess, acked_lines, free_loopback_port, provisioned, wait_for_lake, wait_for_stats, wenu,
};
use tokio::sync::watch;
use wenu_firmware_sim::{SimConfig, run_fleet};
use wenu_local::SqliteTable;
use wenu_stats::{Resolution, SeriesKey, read_series};

const DEVICES: usize = 5;
const TMPFS_MIB: u64 = 64;

/// A tmpfs mounted for the test's lifetime, owned by the test's user.
struct Tmpfs(PathBuf);

/// `id -u` or `id -g`: the test's user and group.
fn id(which: &str) -> String {
    let out = Command::new("id").arg(which).output().expect("id runs");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `mount`/`umount` as root: directly when the test runs as root (CI),
/// else through `sudo -n`.
fn as_root(program: &str) -> Command {
    if id("-u") == "0" {
        Command::new(program)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", program]);
        sudo
    }
}

impl Tmpfs {
    fn mount(at: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let (uid, gid) = (id("-u"), id("-g"));
        let out = as_root("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,uid={uid},gid={gid},mode=0700"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mounting a {mib} MiB tmpfs needs root or password-less sudo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = as_root("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros until the file system refuses; the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 256 * 1024];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    // Whatever a smaller write can still take.
    while let Ok(n) = file.write(&chunk[..512]) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    written
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(120), "{what}: not within 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_withholds_acks_and_the_pipeline_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _tmpfs = Tmpfs::mount(&data, TMPFS_MIB);
    let fleet_path = dir.path().join("fleet.json");
    let fleet = provisioned(&data, DEVICES, &fleet_path);

    let port = free_loopback_port();
    let mqtt = format!("127.0.0.1:{port}");
    let env = [("WENU_LAKE_BUFFER_SECS", "1"), ("WENU_STATS_BATCH_MILLIS", "100")];
    let mut server = ServeProcess::start_with(&data, &mqtt, &env);
    let acked_path = dir.path().join("acked.jsonl");
    let sim = SimConfig {
        port,
        rate_per_device: 100.0,
        reconnect_delay: Duration::from_millis(100),
        drain_timeout: Duration::from_secs(120),
        report: Some(acked_path.clone()),
        ..SimConfig::default()
    };
    let (stop_tx, stop) = watch::channel(false);
    let fleet_run = tokio::spawn(async move { run_fleet(&fleet, sim, stop).await.unwrap() });
    wait_until("first acks", || acked_lines(&acked_path).len() > 500).await;

    // The disk fills up.
    let filler = data.join("filler.bin");
    let filled = tokio::task::spawn_blocking({
        let filler = filler.clone();
        move || fill(&filler)
    })
    .await
    .unwrap();
    // Acks stop: what was committed before the disk filled may still be
    // acknowledged, then nothing more while the disk stays full.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked_when_full = acked_lines(&acked_path).len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let acked_later = acked_lines(&acked_path).len();
    assert!(server.child.try_wait().unwrap().is_none(), "the server survives a full disk");
    let refused = server
        .metrics()
        .iter()
        .filter(|(name, _)| name.starts_with("wenu_edge_publishes_total{outcome=\"refused\""))
        .map(|(_, n)| *n)
        .sum::<f64>();
    println!(
        "disk full: filler {} MiB; acks {acked_when_full} → {acked_later} in 3 s; {refused} publishes refused",
        filled >> 20
    );
    assert_eq!(acked_later, acked_when_full, "nothing is acknowledged while the disk is full");
    assert!(refused > 0.0, "the edge refused publishes it could not store");

    // Space returns: the pipeline resumes by itself.
    std::fs::remove_file(&filler).unwrap();
    wait_until("acks resume", || acked_lines(&acked_path).len() > acked_later + 500).await;
    stop_tx.send(true).unwrap();
    let report = fleet_run.await.unwrap();
    assert_eq!(report.unacked_at_exit, 0, "the devices delivered what they buffered");
    wait_for_lake(&data).await;
    wait_for_stats(&data).await;
    server.terminate();

    // Every acknowledged reading in the lake and the stats, once.
    let acked = acked_lines(&acked_path);
    let out = wenu(&data)
        .args([
            "sql",
            "--format",
            "csv",
            "SELECT device_id, seq, count(*) - count(DISTINCT sensor) FROM readings GROUP BY 1, 2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stored: BTreeMap<(String, u64), u64> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            ((f[0].to_owned(), f[1].parse().unwrap()), f[2].parse().unwrap())
        })
        .collect();
    for (device, seq) in &acked {
        assert_eq!(stored.get(&(device.clone(), *seq)), Some(&0), "{device} seq {seq}: in the lake once");
    }
    // The stats count every lake row once.
    let out = wenu(&data)
        .args(["sql", "--format", "csv", "SELECT device_id, sensor, count(*) FROM readings GROUP BY 1, 2"])
        .output()
        .unwrap();
    let table = SqliteTable::open(&data.join("stats.db")).unwrap();
    let (mut lake_rows, mut counted) = (0, 0);
    for line in String::from_utf8(out.stdout).unwrap().lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let series = SeriesKey { company: "acme".into(), device: f[0].into(), sensor: f[1].into() };
        let rows: u64 = f[2].parse().unwrap();
        let buckets = read_series(&table, &series, Resolution::Minute, 0, i64::MAX).await.unwrap();
        let in_stats: u64 = buckets.iter().map(|(_, rollup)| rollup.count).sum();
        assert_eq!(in_stats, rows, "{series:?}");
        (lake_rows, counted) = (lake_rows + rows, counted + in_stats);
    }
    let out = wenu(&data).args(["queue", "status", "--json"]).output().unwrap();
    let queue: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!(
        "disk full: {} acknowledged, {} stored messages, {lake_rows} lake rows, {counted} counted in the stats",
        acked.len(),
        stored.len()
    );
    assert_eq!(queue["dead"], 0, "no stats job was given up on");
}

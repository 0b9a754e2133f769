//! `wenu bench connections`: throughput, PUBACK latency and the server's
//! memory as the number of connected devices grows (100 → 10 000), for
//! `wenu serve` and for Mosquitto, each a separate process measured from
//! outside; draws the plot of docs/benchmarks.md.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use std::time::Duration;

use wenu_core::fleet::Fleet;
use wenu_core::keyring::Keyring;
use wenu_firmware_sim::{LoadConfig, run_load};
use wenu_registry::{Registry, provision_fleet};

use crate::process::{Memory, Scratch, ServerProcess};

#[derive(Args, Clone)]
pub struct ConnectionsArgs {
    /// Fleet sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,3000,10000")]
    pub devices: Vec<usize>,
    /// Seconds of load per fleet size, once all its devices are connected.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Publishes in flight across the fleet: each device keeps
    /// ceil(this / devices) in flight, between 1 and 32.
    #[arg(long, default_value_t = 3_200)]
    pub in_flight: usize,
    /// Skip the Mosquitto baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Mosquitto binary for the baseline.
    #[arg(long, default_value = "mosquitto")]
    pub mosquitto: String,
    /// Where to draw throughput and PUBACK p99 against devices (SVG).
    #[arg(long, default_value = "bench-connections.svg")]
    pub plot: PathBuf,
}

/// One fleet size against one server.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub devices: usize,
    pub window: usize,
    pub acked: u64,
    /// From the fleet's start (all connected) to the last PUBACK.
    pub acked_per_sec: f64,
    pub puback_p50_ms: f64,
    pub puback_p99_ms: f64,
    /// Time for the whole fleet to connect (a password check per device for Wenu).
    pub connect_secs: f64,
    /// Handshakes the server dropped (not authenticated within its 30 s
    /// handshake timeout while a connect storm queued) that devices retried.
    pub reconnects: u64,
    /// The server's memory when the fleet is done: resident then, and the
    /// peak over the whole run (connect storm and load).
    pub server_memory: Memory,
}

#[derive(Debug, Serialize)]
pub struct Sweep {
    pub wenu: Vec<Point>,
    pub mosquitto: Vec<Point>,
}

pub async fn run(args: ConnectionsArgs) -> anyhow::Result<serde_json::Value> {
    let sweep = sweep(&args).await?;
    crate::plot::connections(&sweep, &args.plot)?;
    eprintln!("plot written to {}", args.plot.display());
    Ok(serde_json::json!({
        "in_flight": args.in_flight,
        "seconds": args.seconds,
        "wenu": sweep.wenu,
        "mosquitto": sweep.mosquitto,
        "plot": args.plot,
    }))
}

pub async fn sweep(args: &ConnectionsArgs) -> anyhow::Result<Sweep> {
    let largest = args.devices.iter().copied().max().context("no fleet size given")?;
    let scratch = Scratch::new("connections")?;
    let base = scratch.join("base");
    std::fs::create_dir_all(&base)?;
    eprintln!("provisioning {largest} devices…");
    let fleet = provision(&base, largest).await?;

    let mut sweep = Sweep { wenu: Vec::new(), mosquitto: Vec::new() };
    for &devices in &args.devices {
        let fleet = Fleet { devices: fleet.devices[..devices].to_vec() };
        let data_dir = scratch.join(&format!("wenu-{devices}"));
        copy_files(&base, &data_dir)?;
        let server = ServerProcess::wenu(&data_dir, &[])?;
        sweep.wenu.push(measure("wenu", &server, &fleet, args).await?);
        drop(server);
        std::fs::remove_dir_all(&data_dir).ok();

        if !args.no_baseline {
            let broker = ServerProcess::mosquitto(&args.mosquitto)?;
            sweep.mosquitto.push(measure("mosquitto", &broker, &fleet, args).await?);
        }
    }
    Ok(sweep)
}

/// A registry and keyring with `count` devices in `data_dir`.
pub(crate) async fn provision(data_dir: &Path, count: usize) -> anyhow::Result<Fleet> {
    let registry = Registry::open(&Registry::default_path(data_dir)).await?;
    let mut keyring = Keyring::default();
    let fleet = Fleet { devices: provision_fleet(&registry, &mut keyring, "bench", count).await? };
    keyring.save(&data_dir.join("keyring.json"))?;
    registry.close().await;
    Ok(fleet)
}

/// Copies the files of a data directory (registry, keyring) into a fresh one.
pub(crate) fn copy_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// The fleet's load against `server`, reported on stderr as it ends.
async fn measure(
    name: &str,
    server: &ServerProcess,
    fleet: &Fleet,
    args: &ConnectionsArgs,
) -> anyhow::Result<Point> {
    let devices = fleet.devices.len();
    eprintln!("{name}: {devices} devices…");
    let window = args.in_flight.div_ceil(devices).clamp(1, 32);
    let load = LoadConfig {
        host: "127.0.0.1".into(),
        port: server.port,
        rate_per_device: 0.0,
        window,
        duration: Duration::from_secs(args.seconds),
        first_seq: 1,
        drain_timeout: Duration::from_secs(120),
    };
    let report = run_load(fleet, load).await?;
    anyhow::ensure!(
        report.unacked_at_exit == 0,
        "{} messages were never acknowledged",
        report.unacked_at_exit
    );
    let point = Point {
        devices,
        window,
        acked: report.acked,
        acked_per_sec: report.acked_per_sec.round(),
        puback_p50_ms: report.puback_p50_ms,
        puback_p99_ms: report.puback_p99_ms,
        connect_secs: report.connect_secs,
        reconnects: report.reconnects,
        server_memory: server.memory()?,
    };
    eprintln!(
        "  {:.0} acks/s, PUBACK p99 {:.1} ms, RSS {:.0} MiB",
        point.acked_per_sec, point.puback_p99_ms, point.server_memory.rss_mib
    );
    Ok(point)
}

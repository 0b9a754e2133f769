//! `wenu bench overload`: `wenu serve` confined to one core, the load
//! generator (this process) to the others. A closed loop measures the most
//! the server acknowledges; then the fleet offers twice that at a fixed rate.
//! Reports what was offered and acknowledged, the PUBACK latency, the
//! server's memory over the overload, and whether every reading produced was
//! delivered once the load stopped.

use std::time::Duration;

use clap::Args;
use serde_json::json;
use tokio::sync::watch;
use wenu_firmware_sim::{LoadConfig, run_load};

use crate::process::{OneCoreServer, memory_of_pid, pin_to_cpus};

#[derive(Args, Clone)]
pub struct OverloadArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 200)]
    pub devices: usize,
    /// Seconds of the closed loop that measures the maximum.
    #[arg(long, default_value_t = 10)]
    pub max_seconds: u64,
    /// Seconds of the overload.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// The offered rate, as a multiple of the measured maximum.
    #[arg(long, default_value_t = 2.0)]
    pub factor: f64,
}

pub async fn run(args: OverloadArgs) -> anyhow::Result<serde_json::Value> {
    let setup = OneCoreServer::start("overload", args.devices, &[]).await?;
    let (server, fleet, cores) = (&setup.server, &setup.fleet, setup.cores);
    eprintln!("closed loop for {} s: the server's maximum on one core…", args.max_seconds);
    let closed = LoadConfig {
        host: "127.0.0.1".into(),
        port: server.port,
        rate_per_device: 0.0,
        window: 16,
        duration: Duration::from_secs(args.max_seconds),
        first_seq: 1,
        drain_timeout: Duration::from_secs(60),
    };
    let max = run_load(fleet, closed.clone()).await?;
    anyhow::ensure!(max.unacked_at_exit == 0, "{} readings were never acknowledged", max.unacked_at_exit);
    let max_rate = max.acked_per_sec.max(1.0);
    let memory_at_max = server.memory()?;
    eprintln!("  {max_rate:.0} acks/s; now offering {:.0}/s for {} s…", args.factor * max_rate, args.seconds);

    let open = LoadConfig {
        rate_per_device: args.factor * max_rate / args.devices as f64,
        duration: Duration::from_secs(args.seconds),
        first_seq: 1_000_000_000,
        drain_timeout: Duration::from_secs(600),
        ..closed
    };
    let (stop_sampling, mut sampling) = watch::channel(false);
    let pid = server.pid();
    let sampler = tokio::spawn(async move {
        let mut rss = Vec::new();
        while !*sampling.borrow() {
            if let Ok(memory) = memory_of_pid(pid) {
                rss.push(memory.rss_mib);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = sampling.changed() => {}
            }
        }
        rss
    });
    let overload = run_load(fleet, open).await?;
    stop_sampling.send_replace(true);
    pin_to_cpus(std::process::id(), &format!("0-{}", cores - 1))?;
    let rss = sampler.await?;
    let (first, second) = rss.split_at(rss.len() / 2);
    let max_of = |s: &[f64]| s.iter().copied().fold(0.0f64, f64::max).round();
    let memory = server.memory()?;
    eprintln!(
        "  offered {:.0}/s ({:.2}×), acked {:.0}/s, PUBACK p99 {:.0} ms, drained in {:.1} s, {} left unacknowledged",
        overload.offered_per_sec,
        overload.offered_per_sec / max_rate,
        overload.acked_per_sec,
        overload.puback_p99_ms,
        overload.drain_secs,
        overload.unacked_at_exit
    );
    anyhow::ensure!(
        overload.unacked_at_exit == 0,
        "{} readings were never acknowledged",
        overload.unacked_at_exit
    );
    Ok(json!({
        "devices": args.devices,
        "server_cpus": 1,
        "max": {
            "acked_per_sec": max_rate.round(),
            "puback_p50_ms": max.puback_p50_ms,
            "puback_p99_ms": max.puback_p99_ms,
            "server_rss_mib": memory_at_max.rss_mib.round(),
        },
        "overload": {
            "seconds": args.seconds,
            "offered_per_sec": overload.offered_per_sec.round(),
            "offered_vs_max": overload.offered_per_sec / max_rate,
            "produced": overload.produced,
            "acked": overload.acked,
            "acked_per_sec": overload.acked_per_sec.round(),
            "drain_secs": overload.drain_secs,
            "puback_p50_ms": overload.puback_p50_ms,
            "puback_p99_ms": overload.puback_p99_ms,
            "unacked_at_exit": overload.unacked_at_exit,
            "server_rss_mib_first_half_max": max_of(first),
            "server_rss_mib_second_half_max": max_of(second),
            "server_peak_rss_mib": memory.peak_rss_mib.round(),
        },
    }))
}

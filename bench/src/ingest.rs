//! `wenu bench ingest`: the same simulated load against Wenu's edge (durable
//! group commit before every PUBACK) and against Mosquitto (default settings,
//! no persistence), one after the other on this machine. By default the
//! whole pipeline runs behind the edge, as in `wenu serve`; `--edge-only`
//! measures the edge and its log without the consumers that share the cores.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use serde_json::json;
use tokio::sync::watch;
use wenu_core::fleet::Fleet;
use wenu_core::keyring::Keyring;
use wenu_firmware_sim::{FleetReport, SimConfig, run_fleet};
use wenu_ingest::Edge;
use wenu_local::{SqliteStream, StreamOptions};
use wenu_registry::{Registry, provision_fleet};

use crate::process::{Scratch, ServerProcess};
use wenu::config::Config;
use wenu::serve::Server;

#[derive(Args)]
pub struct IngestArgs {
    /// Connections (one simulated device each).
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// QoS 1 messages per connection.
    #[arg(long, default_value_t = 500)]
    messages: u64,
    /// Publishes in flight per connection.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Skip the Mosquitto baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Mosquitto binary for the baseline.
    #[arg(long, default_value = "mosquitto")]
    mosquitto: String,
    /// Only the edge and its durable log: no lake, enrich, stats or alarm
    /// consumers on the same cores.
    #[arg(long)]
    edge_only: bool,
}

pub async fn run(mut config: Config, args: IngestArgs) -> anyhow::Result<serde_json::Value> {
    let scratch = Scratch::new("ingest")?;
    let scratch = scratch.path();
    config.data_dir = scratch.to_owned();
    config.mqtt.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.mqtt.tls = None;
    config.http.listen = None;

    eprintln!("provisioning {} devices…", args.connections);
    let registry = Registry::open(&Registry::default_path(scratch)).await?;
    let mut keyring = Keyring::default();
    let fleet = Fleet { devices: provision_fleet(&registry, &mut keyring, "bench", args.connections).await? };
    keyring.save(&scratch.join("keyring.json"))?;

    let (wenu, commits) = if args.edge_only {
        let stream = SqliteStream::open(&SqliteStream::default_path(scratch), StreamOptions::default())?;
        let edge = Edge::start(config.edge(), Arc::new(stream.clone()), registry.clone()).await?;
        let port = edge.tcp_addr().expect("listening").port();
        eprintln!("wenu (edge only): {} connections × {} messages…", args.connections, args.messages);
        let report = load(&fleet, port, &args).await?;
        edge.stop().await?;
        (report, stream.commits())
    } else {
        let server = Server::start(&config).await?;
        let port = server.edge.tcp_addr().expect("listening").port();
        eprintln!("wenu: {} connections × {} messages…", args.connections, args.messages);
        let report = load(&fleet, port, &args).await?;
        let commits = server.stream.commits();
        server.stop().await?;
        (report, commits)
    };

    let mosquitto = if args.no_baseline {
        None
    } else {
        let broker = ServerProcess::mosquitto(&args.mosquitto)?;
        eprintln!("mosquitto: same load…");
        let report = load(&fleet, broker.port, &args).await?;
        drop(broker);
        Some(report)
    };

    let ratio = mosquitto.as_ref().map(|m| wenu.acked_per_sec / m.acked_per_sec);
    let result = json!({
        "connections": args.connections,
        "messages_per_connection": args.messages,
        "window": args.window,
        "edge_only": args.edge_only,
        "wenu": summary(&wenu),
        "wenu_commits": commits,
        "wenu_records_per_commit": wenu.acked as f64 / commits.max(1) as f64,
        "mosquitto": mosquitto.as_ref().map(summary),
        "wenu_vs_mosquitto": ratio,
    });
    Ok(result)
}

fn summary(report: &FleetReport) -> serde_json::Value {
    json!({
        "acked": report.acked,
        "acked_per_sec": report.acked_per_sec.round(),
        "steady_acked_per_sec": report.steady_acked_per_sec.round(),
        "puback_p50_ms": report.puback_latency_p50_ms,
        "puback_p99_ms": report.puback_latency_p99_ms,
        "elapsed_secs": report.elapsed_secs,
    })
}

async fn load(fleet: &Fleet, port: u16, args: &IngestArgs) -> anyhow::Result<FleetReport> {
    let config = SimConfig {
        port,
        rate_per_device: 0.0,
        per_device: Some(args.messages),
        window: args.window,
        ..SimConfig::default()
    };
    let (_stop_tx, stop) = watch::channel(false);
    let report = run_fleet(fleet, config, stop).await?;
    anyhow::ensure!(
        report.unacked_at_exit == 0,
        "{} messages were never acknowledged",
        report.unacked_at_exit
    );
    Ok(report)
}

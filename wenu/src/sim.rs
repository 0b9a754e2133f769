//! `wenu sim`: a simulated fleet against a running server.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;
use wenu_core::fleet::Fleet;
use wenu_firmware_sim::{Fault, SimConfig, SimTls, run_fleet};

#[derive(Args)]
pub struct SimArgs {
    /// Fleet file written by `wenu devices provision`.
    #[arg(long)]
    fleet: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// CA certificate of the server: connect with TLS.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Directory of {device}.crt/.key client certificates (mutual TLS).
    #[arg(long, requires = "tls_ca")]
    client_certs: Option<PathBuf>,
    /// Messages per second per device; 0 = as fast as acknowledgements allow.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Stop after this many messages per device.
    #[arg(long)]
    messages: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Publishes in flight per connection.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Unacknowledged messages a device buffers while offline.
    #[arg(long, default_value_t = 10_000)]
    buffer: usize,
    /// First sequence number (continue after an earlier run).
    #[arg(long, default_value_t = 1)]
    first_seq: u64,
    /// Misbehave: stuck, spike, gap, replay, tamper or wrong-key.
    #[arg(long)]
    fault: Option<Fault>,
    /// How many devices (the first ones) have the fault.
    #[arg(long, default_value_t = 1)]
    faulty: usize,
    /// Append one JSON line {"device", "seq"} per PUBACK received.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Publish to `{prefix}/wenu/{device}/telemetry`: a stage other than
    /// production on AWS IoT Core (see the template's `TelemetryTopic` output).
    #[arg(long)]
    topic_prefix: Option<String>,
    /// Seconds to wait for outstanding acknowledgements at the end.
    #[arg(long, default_value_t = 30.0)]
    drain_timeout: f64,
}

pub async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    let fleet = Fleet::load(&args.fleet)?;
    let tls = match &args.tls_ca {
        Some(ca) => Some(SimTls { ca_pem: std::fs::read(ca)?, client_cert_dir: args.client_certs.clone() }),
        None => None,
    };
    let config = SimConfig {
        host: args.host,
        port: args.port,
        tls,
        rate_per_device: args.rate,
        per_device: args.messages,
        window: args.window,
        buffer: args.buffer,
        first_seq: args.first_seq,
        faults: args.fault.map(|fault| vec![fault; args.faulty]).unwrap_or_default(),
        drain_timeout: Duration::from_secs_f64(args.drain_timeout),
        report: args.report,
        topic_prefix: args.topic_prefix,
        ..SimConfig::default()
    };
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(stop_after(args.duration, stop_tx));
    let report = run_fleet(&fleet, config, stop).await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Flips `stop` after `seconds` (if set) or on Ctrl-C.
pub async fn stop_after(seconds: Option<f64>, stop: watch::Sender<bool>) {
    let timer = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = timer => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = stop.send(true);
}

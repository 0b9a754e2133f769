//! `wenu sim` (a simulated fleet against a running server) and `wenu demo`
//! (server and fleet together, with live counts).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use wenu_alarms::{Condition, Direction, Rule, Severity};
use wenu_core::fleet::Fleet;
use wenu_core::keyring::Keyring;
use wenu_firmware_sim::{Fault, SimConfig, SimTls, run_fleet};
use wenu_registry::{Role, provision_fleet};

use crate::config::Config;
use crate::serve::Server;

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
        fault: args.fault,
        faulty_devices: if args.fault.is_some() { args.faulty } else { 0 },
        drain_timeout: Duration::from_secs_f64(args.drain_timeout),
        report: args.report,
        ..SimConfig::default()
    };
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(stop_after(args.duration, stop_tx));
    let report = run_fleet(&fleet, config, stop).await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Flips `stop` after `seconds` (if set) or on Ctrl-C.
async fn stop_after(seconds: Option<f64>, stop: watch::Sender<bool>) {
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

#[derive(Args)]
pub struct DemoArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Messages per second per device.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    /// Lake flush interval for the demo, so rows show up within seconds
    /// (`wenu serve` uses `lake.buffer_secs`, 60 s by default, like Firehose).
    #[arg(long, default_value_t = 5)]
    lake_flush_secs: u64,
}

pub async fn run_demo(mut config: Config, args: DemoArgs) -> anyhow::Result<()> {
    config.lake.buffer_secs = args.lake_flush_secs;
    std::fs::create_dir_all(&config.data_dir)?;
    let fleet_path = config.data_dir.join("demo-fleet.json");
    let fleet = demo_fleet(&config, &fleet_path, args.devices).await?;
    let registry = config.registry().await?.acting_as("demo");
    for rule in demo_rules() {
        if registry.rule(&rule.company, &rule.id).await?.is_none() {
            registry.put_rule(&rule).await?;
        }
    }
    let server = Server::start(&config).await?;
    let mqtt = server.edge.tcp_addr().ok_or_else(|| anyhow::anyhow!("the demo needs mqtt.listen set"))?;
    eprintln!(
        "Wenu demo: MQTT on {mqtt}, API and metrics on http://{}, Parquet lake in {}",
        server.http_addr.map_or("-".into(), |a| a.to_string()),
        config.lake_dir().display()
    );
    if let Some(http) = server.http_addr {
        // Tokens travel in the URL fragment, which the browser never sends to the server.
        let company = fleet.devices.first().map_or("demo", |d| d.company.as_str());
        let viewer = registry.create_token(Some(company), Role::Viewer, "demo dashboard", None).await?;
        let admin = registry.create_token(Some(company), Role::Admin, "demo backoffice", None).await?;
        eprintln!("Dashboard:  http://{http}/dashboard#token={}", viewer.bearer);
        eprintln!("Backoffice: http://{http}/backoffice#token={}", admin.bearer);
    }
    eprintln!("{} simulated devices at {}/s each; Ctrl-C to stop.", fleet.devices.len(), args.rate);

    // Two devices have a stuck sensor: the flatline rule raises within a minute.
    let sim = SimConfig {
        port: mqtt.port(),
        rate_per_device: args.rate,
        first_seq: next_seq_for_demo(),
        fault: Some(Fault::Stuck),
        faulty_devices: 2.min(fleet.devices.len()),
        ..SimConfig::default()
    };
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(stop_after(args.duration, stop_tx));
    let fleet_task = tokio::spawn(async move { run_fleet(&fleet, sim, stop).await });

    let progress = ProgressBar::new_spinner();
    progress.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"));
    let mut last = 0u64;
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    while !fleet_task.is_finished() {
        every_second.tick().await;
        let snapshot = server.edge.counters().snapshot(0);
        let info = wenu_core::stream::Stream::info(&server.stream).await?;
        let jobs = wenu_core::queue::Queue::depth(&server.queue).await?;
        progress.set_message(format!(
            "connections {} | accepted {} ({}/s) | refused {} | log {} records | lake {} rows in {} files, {} quarantined \
             | stats {} readings enriched, {} set aside, {} jobs queued, {} dead | alarms {} raised, {} transitions",
            snapshot.connections,
            snapshot.publishes_accepted,
            snapshot.publishes_accepted - last,
            snapshot.publishes_refused.values().sum::<u64>(),
            info.records,
            server.lake.rows.load(Ordering::Relaxed),
            server.lake.files.load(Ordering::Relaxed),
            server.lake.quarantined.load(Ordering::Relaxed),
            server.enrich.readings.load(Ordering::Relaxed),
            server.enrich.quarantined.load(Ordering::Relaxed),
            jobs.visible + jobs.in_flight,
            jobs.dead,
            server.alarms.raised.load(Ordering::Relaxed),
            server.alarms.transitions.load(Ordering::Relaxed),
        ));
        progress.tick();
        last = snapshot.publishes_accepted;
    }
    progress.finish();
    let report = fleet_task.await??;
    eprintln!("fleet: {}", serde_json::to_string(&report)?);
    server.stop().await
}

/// Provisions the demo company on first run, with three sites and the
/// simulator's sensors defined in the registry; later runs reuse its fleet.
async fn demo_fleet(config: &Config, fleet_path: &std::path::Path, devices: usize) -> anyhow::Result<Fleet> {
    let mut fleet = if fleet_path.exists() { Fleet::load(fleet_path)? } else { Fleet::default() };
    if fleet.devices.len() >= devices {
        fleet.devices.truncate(devices);
        return Ok(fleet);
    }
    let registry = config.registry().await?;
    let keyring_path = config.keyring_path();
    let mut keyring = Keyring::load_or_default(&keyring_path)?;
    let have = registry.list_devices(Some("demo")).await?.len();
    for device in provision_fleet(&registry, &mut keyring, "demo", devices.saturating_sub(have)).await? {
        fleet.upsert(device);
    }
    keyring.save(&keyring_path)?;
    const SITES: [(&str, &str); 3] =
        [("north", "North plant"), ("south", "South depot"), ("harbour", "Harbour")];
    for (id, name) in SITES {
        registry.upsert_site("demo", id, name).await?;
    }
    for (index, device) in fleet.devices.iter().enumerate() {
        registry.set_device_site(&device.device_id, Some(SITES[index % SITES.len()].0)).await?;
    }
    crate::devices::define_simulated_sensors(&registry, &fleet).await?;
    fleet.save(fleet_path)?;
    Ok(fleet)
}

/// Alarm rules on every demo device: a stuck temperature, an implausible
/// one, a device gone quiet.
fn demo_rules() -> Vec<Rule> {
    let rule = |id: &str, name: &str, sensor: Option<&str>, severity, condition| Rule {
        company: "demo".into(),
        id: id.into(),
        name: name.into(),
        device: None,
        sensor: sensor.map(Into::into),
        condition,
        severity,
        enabled: true,
        version: 0,
    };
    vec![
        rule(
            "stuck-temperature",
            "Temperature sensor stuck",
            Some("temp-1"),
            Severity::Warning,
            Condition::Flatline { window_ms: 30_000, tolerance: 0.0 },
        ),
        rule(
            "too-hot",
            "Temperature above 60 °C",
            Some("temp-1"),
            Severity::Critical,
            Condition::Threshold { direction: Direction::Above, limit: 60.0, hysteresis: 2.0, for_ms: 0 },
        ),
        rule(
            "silent-device",
            "Device silent for a minute",
            None,
            Severity::Critical,
            Condition::MissingData { silence_ms: 60_000, max_gap: Some(20) },
        ),
    ]
}

/// Sequence numbers must keep growing across demo runs; the wall clock in
/// seconds does that without keeping state.
fn next_seq_for_demo() -> u64 {
    (crate::serve::now_ms() / 1000) as u64 * 1000
}

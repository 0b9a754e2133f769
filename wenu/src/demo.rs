//! `wenu demo`: the whole pipeline on embedded defaults with a simulated
//! fleet — a demo company with three sites and 200 devices, a few of them
//! faulty — and a live view of every stage in the terminal.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::watch;
use wenu_alarms::{Condition, Direction, Rule, Severity};
use wenu_core::fleet::Fleet;
use wenu_core::keyring::Keyring;
use wenu_core::queue::Queue;
use wenu_firmware_sim::{Fault, SimConfig, run_fleet};
use wenu_registry::{Role, provision_fleet};

use crate::config::Config;
use crate::serve::Server;
use crate::sim::stop_after;

const COMPANY: &str = "demo";

/// What the first devices of the demo fleet get wrong, and what shows it:
/// stuck sensors (the flatline rule, ~30 s), spikes (the "too hot" rule at
/// once; enrich sets the out-of-range values aside), lost messages (gaps in
/// the lake's completeness), flipped ciphertext bytes and a key the cloud
/// does not know (quarantined), resent envelopes (dropped as duplicates).
/// The fleet's last device never comes online: the silent-device rule
/// raises after a minute.
const FAULTS: [Fault; 8] = [
    Fault::Stuck,
    Fault::Stuck,
    Fault::Spike,
    Fault::Spike,
    Fault::Gap,
    Fault::Tamper,
    Fault::Replay,
    Fault::WrongKey,
];

#[derive(Args)]
pub struct DemoArgs {
    /// Simulated devices (the last one stays switched off).
    #[arg(long, default_value_t = 200)]
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
    anyhow::ensure!(args.devices >= 2, "the demo needs at least two devices");
    config.lake.buffer_secs = args.lake_flush_secs;
    config.ensure_data_dir()?;
    let fleet_path = config.data_dir.join("demo-fleet.json");
    let mut fleet = demo_fleet(&config, &fleet_path, args.devices).await?;
    let registry = config.registry().await?.acting_as("demo");
    for rule in demo_rules() {
        if registry.rule(&rule.company, &rule.id).await?.is_none() {
            registry.put_rule(&rule).await?;
        }
    }
    let switched_off = fleet.devices.pop().expect("at least two devices");

    let server = Server::start(&config).await?;
    let mqtt = server.edge.tcp_addr().ok_or_else(|| anyhow::anyhow!("the demo needs mqtt.listen set"))?;
    eprintln!(
        "Wenu demo: MQTT on {mqtt}, API and metrics on http://{}, data in {}",
        server.http_addr.map_or("-".into(), |a| a.to_string()),
        config.data_dir.display()
    );
    if let Some(http) = server.http_addr {
        // Tokens travel in the URL fragment, which the browser never sends to the server.
        let viewer = registry.create_token(Some(COMPANY), Role::Viewer, "demo dashboard", None).await?;
        let admin = registry.create_token(Some(COMPANY), Role::Admin, "demo backoffice", None).await?;
        eprintln!("Dashboard:  http://{http}/dashboard#token={}", viewer.bearer);
        eprintln!("Backoffice: http://{http}/backoffice#token={}", admin.bearer);
    }
    let faulty = FAULTS.len().min(fleet.devices.len());
    eprintln!(
        "{} simulated devices at {}/s each; {faulty} of them faulty ({}), {} switched off. Ctrl-C to stop.",
        fleet.devices.len(),
        args.rate,
        FAULTS[..faulty].iter().map(|f| format!("{f:?}").to_lowercase()).collect::<Vec<_>>().join(", "),
        switched_off.device_id,
    );

    let sim = SimConfig {
        port: mqtt.port(),
        rate_per_device: args.rate,
        first_seq: next_seq_for_demo(),
        faults: FAULTS[..faulty].to_vec(),
        ..SimConfig::default()
    };
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(stop_after(args.duration, stop_tx));
    let fleet_task = tokio::spawn(async move { run_fleet(&fleet, sim, stop).await });

    let mut view = LiveView::new();
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    while !fleet_task.is_finished() {
        every_second.tick().await;
        view.show(Figures::of(&server).await?);
    }
    let last = Figures::of(&server).await?;
    view.finish(&last);
    let report = fleet_task.await??;
    eprintln!(
        "fleet: {} messages sent, {} acknowledged, PUBACK p50 {:.2} ms, p99 {:.2} ms",
        report.sent, report.acked, report.puback_latency_p50_ms, report.puback_latency_p99_ms
    );
    server.stop().await?;
    eprintln!("stopped. Look at what the demo left in {}:", config.data_dir.display());
    eprintln!("  wenu status");
    eprintln!(
        "  wenu sql \"SELECT site, sensor, count(*), avg(value) FROM readings GROUP BY 1, 2 ORDER BY 1, 2\""
    );
    eprintln!("  wenu sql \"SELECT reason, count(*) FROM quarantine GROUP BY reason\"");
    eprintln!("  wenu alarms history --company {COMPANY}");
    Ok(())
}

/// Every stage's running totals at one moment.
#[derive(Debug, Clone, Default)]
struct Figures {
    connections: i64,
    accepted: u64,
    refused: u64,
    log_records: u64,
    lag: Vec<(&'static str, u64)>,
    lake_rows: u64,
    lake_files: u64,
    lake_quarantined: u64,
    duplicates: u64,
    enriched: u64,
    set_aside: u64,
    jobs_queued: u64,
    jobs_dead: u64,
    stats_counted: u64,
    alarm_readings: u64,
    active_alarms: usize,
    critical_alarms: usize,
    transitions: u64,
}

impl Figures {
    async fn of(server: &Server) -> anyhow::Result<Figures> {
        let edge = server.edge.counters().snapshot(0);
        let jobs = server.queue.depth().await?;
        let active = server.alarm_store.active(COMPANY).await?;
        Ok(Figures {
            connections: edge.connections,
            accepted: edge.publishes_accepted,
            refused: edge.publishes_refused.values().sum(),
            log_records: server.stream.info().await?.records,
            lag: server.consumer_lag().await?,
            lake_rows: server.lake.rows.load(Ordering::Relaxed),
            lake_files: server.lake.files.load(Ordering::Relaxed),
            lake_quarantined: server.lake.quarantined.load(Ordering::Relaxed),
            duplicates: server.lake.duplicates.load(Ordering::Relaxed),
            enriched: server.enrich.readings.load(Ordering::Relaxed),
            set_aside: server.enrich.quarantined.load(Ordering::Relaxed),
            jobs_queued: jobs.visible + jobs.in_flight,
            jobs_dead: jobs.dead,
            stats_counted: server.stats.readings_counted.load(Ordering::Relaxed),
            alarm_readings: server.alarms.readings.load(Ordering::Relaxed),
            critical_alarms: active.iter().filter(|a| a.severity == Severity::Critical).count(),
            active_alarms: active.len(),
            transitions: server.alarms.transitions.load(Ordering::Relaxed),
        })
    }

    /// One line per stage; rates are per second since `earlier`. Alarm
    /// checks are (rule, reading) pairs evaluated.
    fn lines(&self, earlier: Option<&(Instant, Figures)>) -> [String; 5] {
        let rate = |now: u64, then: fn(&Figures) -> u64| match earlier {
            Some((at, old)) => {
                let secs = at.elapsed().as_secs_f64().max(1e-3);
                format!("{:>7.0}/s", now.saturating_sub(then(old)) as f64 / secs)
            }
            None => format!("{:>7}/s", "-"),
        };
        let lag = self.lag.iter().map(|(name, lag)| format!("{name} {lag}")).collect::<Vec<_>>().join(", ");
        [
            format!(
                "edge    {} messages | {} connected, {} accepted, {} refused",
                rate(self.accepted, |f| f.accepted),
                self.connections,
                self.accepted,
                self.refused
            ),
            format!("log     {} records | consumer lag: {lag}", self.log_records),
            format!(
                "lake    {} readings | {} rows in {} files, {} quarantined, {} duplicates dropped",
                rate(self.lake_rows, |f| f.lake_rows),
                self.lake_rows,
                self.lake_files,
                self.lake_quarantined,
                self.duplicates
            ),
            format!(
                "stats   {} readings | {} enriched, {} set aside, {} counted, {} jobs queued, {} dead",
                rate(self.stats_counted, |f| f.stats_counted),
                self.enriched,
                self.set_aside,
                self.stats_counted,
                self.jobs_queued,
                self.jobs_dead
            ),
            format!(
                "alarms  {} checks   | {} active ({} critical), {} transitions",
                rate(self.alarm_readings, |f| f.alarm_readings),
                self.active_alarms,
                self.critical_alarms,
                self.transitions
            ),
        ]
    }
}

/// Live lines on a terminal; a plain report every ten seconds otherwise
/// (a log file, a CI job).
struct LiveView {
    started: Instant,
    bars: Option<Vec<ProgressBar>>,
    /// Recent figures, for rates over the last few seconds.
    recent: VecDeque<(Instant, Figures)>,
    last_printed: Instant,
}

/// Longer than the demo's lake flush interval, so the lake's rate is smooth.
const RATE_WINDOW: Duration = Duration::from_secs(10);
const PLAIN_EVERY: Duration = Duration::from_secs(10);

impl LiveView {
    fn new() -> LiveView {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::new();
            let style = ProgressStyle::with_template("{msg}").expect("valid template");
            (0..6).map(|_| multi.add(ProgressBar::new_spinner().with_style(style.clone()))).collect()
        });
        LiveView { started: Instant::now(), bars, recent: VecDeque::new(), last_printed: Instant::now() }
    }

    fn show(&mut self, now: Figures) {
        while self.recent.len() > 1 && self.recent[0].0.elapsed() > RATE_WINDOW {
            self.recent.pop_front();
        }
        let lines = now.lines(self.recent.front());
        let header = format!("── {:>4} s ──", self.started.elapsed().as_secs());
        match &self.bars {
            Some(bars) => {
                bars[0].set_message(header);
                for (bar, line) in bars[1..].iter().zip(lines) {
                    bar.set_message(line);
                }
            }
            None if self.last_printed.elapsed() >= PLAIN_EVERY => {
                eprintln!("{header}\n{}", lines.join("\n"));
                self.last_printed = Instant::now();
            }
            None => {}
        }
        self.recent.push_back((Instant::now(), now));
    }

    fn finish(&mut self, last: &Figures) {
        if let Some(bars) = self.bars.take() {
            for bar in bars {
                bar.finish_and_clear();
            }
        }
        // Rates averaged over the whole run.
        let lines = last.lines(Some(&(self.started, Figures::default())));
        eprintln!(
            "── after {} s (rates are averages) ──\n{}",
            self.started.elapsed().as_secs(),
            lines.join("\n")
        );
    }
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
    let have = registry.list_devices(Some(COMPANY)).await?.len();
    for device in provision_fleet(&registry, &mut keyring, COMPANY, devices.saturating_sub(have)).await? {
        fleet.upsert(device);
    }
    keyring.save(&keyring_path)?;
    const SITES: [(&str, &str); 3] =
        [("north", "North plant"), ("south", "South depot"), ("harbour", "Harbour")];
    for (id, name) in SITES {
        registry.upsert_site(COMPANY, id, name).await?;
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
        company: COMPANY.into(),
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

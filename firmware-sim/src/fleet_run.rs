//! Running a whole fleet and reporting what the cloud acknowledged.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rumqttc::TlsConfiguration;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use wenu_core::fleet::Fleet;
use wenu_core::topic::telemetry_topic;

use crate::device::Device;
use crate::signal::Fault;
use crate::{Error, Result};

/// TLS for the simulated devices.
#[derive(Debug, Clone)]
pub struct SimTls {
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: Vec<u8>,
    /// Directory of `{device_id}.crt` / `{device_id}.key` client certificates,
    /// for mutual TLS.
    pub client_cert_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub host: String,
    pub port: u16,
    pub tls: Option<SimTls>,
    /// Messages per second per device; 0 means as fast as acks allow.
    pub rate_per_device: f64,
    /// Stop producing after this many messages per device.
    pub per_device: Option<u64>,
    /// Publishes in flight per connection.
    pub window: usize,
    /// Offline buffer: unacknowledged messages a device keeps; beyond it the
    /// oldest-first firmware drops new readings (counted).
    pub buffer: usize,
    /// Readings repeated in one message, to vary the payload size.
    pub readings_per_message: usize,
    pub first_seq: u64,
    /// The fault of each of the first `faults.len()` devices; the rest are healthy.
    pub faults: Vec<Fault>,
    pub reconnect_delay: Duration,
    /// After production stops, how long devices wait for outstanding acks.
    pub drain_timeout: Duration,
    /// `(device, seq)` per PUBACK, one JSON object per line.
    pub report: Option<PathBuf>,
    pub seed: u64,
    /// No device produces until every device has connected once, so a
    /// benchmark measures the fleet at full size rather than a connect storm
    /// with early devices already done.
    pub start_together: bool,
    /// What comes before `wenu/{device}/telemetry`: a deployment stage other
    /// than production on AWS IoT Core (`dev/wenu/…`), whose topics are
    /// account-wide.
    pub topic_prefix: Option<String>,
    /// Subscribe to the device's configuration and commands and follow
    /// them, reporting firmware, boot and applied configuration.
    pub follow_downlink: bool,
    /// The fleet file to keep keys received over the downlink in.
    pub fleet_file: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 1883,
            tls: None,
            rate_per_device: 1.0,
            per_device: None,
            window: 16,
            buffer: 10_000,
            readings_per_message: 1,
            first_seq: 1,
            faults: Vec::new(),
            reconnect_delay: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(30),
            report: None,
            seed: 0x5eed,
            start_together: false,
            topic_prefix: None,
            follow_downlink: true,
            fleet_file: None,
        }
    }
}

impl SimConfig {
    /// The topic a device publishes its telemetry to.
    pub fn topic(&self, device_id: &str) -> String {
        self.prefixed(telemetry_topic(device_id))
    }

    /// One of a device's topics under the deployment's prefix.
    pub(crate) fn prefixed(&self, topic: String) -> String {
        match &self.topic_prefix {
            Some(prefix) => format!("{prefix}/{topic}"),
            None => topic,
        }
    }

    pub(crate) fn interval(&self) -> Duration {
        if self.rate_per_device > 0.0 {
            Duration::from_secs_f64(1.0 / self.rate_per_device)
        } else {
            Duration::from_micros(1)
        }
    }
}

/// Opens when the last device of the fleet has connected (or at once).
#[derive(Clone)]
pub(crate) struct StartGate {
    connected: Arc<AtomicUsize>,
    fleet_size: usize,
    open_tx: Arc<watch::Sender<bool>>,
    pub open: watch::Receiver<bool>,
}

impl StartGate {
    pub(crate) fn new(fleet_size: usize, open: bool) -> StartGate {
        let (open_tx, open_rx) = watch::channel(open || fleet_size == 0);
        StartGate {
            connected: Arc::new(AtomicUsize::new(0)),
            fleet_size,
            open_tx: Arc::new(open_tx),
            open: open_rx,
        }
    }

    /// A device's first CONNACK.
    pub(crate) fn device_connected(&self) {
        if self.connected.fetch_add(1, Ordering::SeqCst) + 1 == self.fleet_size {
            self.open_tx.send_replace(true);
        }
    }
}

/// One PUBACK received.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Acked {
    pub device: String,
    pub seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct DeviceTotals {
    pub sent: u64,
    pub acked: u64,
    pub resent: u64,
    pub dropped_buffer_full: u64,
    pub connects: u64,
    pub connection_errors: u64,
    pub unacked_at_exit: u64,
    pub latency_us: Vec<u64>,
    pub first_connected: Option<Instant>,
    pub ack_times: Vec<Instant>,
}

/// What a fleet run did.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub devices: usize,
    pub sent: u64,
    pub acked: u64,
    pub resent: u64,
    pub dropped_buffer_full: u64,
    pub unacked_at_exit: u64,
    pub connects: u64,
    pub connection_errors: u64,
    pub elapsed_secs: f64,
    /// From the start to the last device's first CONNACK.
    pub connected_after_secs: Option<f64>,
    pub acked_per_sec: f64,
    /// Acks per second once every device had connected (device
    /// authentication excluded), to the last ack.
    pub steady_acked_per_sec: f64,
    pub puback_latency_p50_ms: f64,
    pub puback_latency_p99_ms: f64,
}

/// Runs every device of `fleet` until each has sent `per_device` messages (and
/// seen them acknowledged) or `stop` turns true.
pub async fn run_fleet(fleet: &Fleet, config: SimConfig, stop: watch::Receiver<bool>) -> Result<FleetReport> {
    let config = Arc::new(config);
    let (acked_tx, acked_rx) = mpsc::unbounded_channel();
    let report_writer = match &config.report {
        Some(path) => Some(spawn_report_writer(path.clone(), acked_rx)?),
        None => {
            drop(acked_rx);
            None
        }
    };
    let started = Instant::now();
    let gate = StartGate::new(fleet.devices.len(), !config.start_together);
    let mut devices = Vec::with_capacity(fleet.devices.len());
    for (index, identity) in fleet.devices.iter().enumerate() {
        let tls = match &config.tls {
            Some(tls) => Some(device_tls(tls, &identity.device_id)?),
            None => None,
        };
        let fault = config.faults.get(index).copied();
        let device = Device { index, identity: identity.clone(), fault, tls, gate: gate.clone() };
        devices.push(tokio::spawn(device.run(config.clone(), acked_tx.clone(), stop.clone())));
    }
    drop(acked_tx);

    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
    let mut report = FleetReport {
        devices: devices.len(),
        sent: 0,
        acked: 0,
        resent: 0,
        dropped_buffer_full: 0,
        unacked_at_exit: 0,
        connects: 0,
        connection_errors: 0,
        elapsed_secs: 0.0,
        connected_after_secs: None,
        acked_per_sec: 0.0,
        steady_acked_per_sec: 0.0,
        puback_latency_p50_ms: 0.0,
        puback_latency_p99_ms: 0.0,
    };
    let mut all_connected: Option<Instant> = None;
    let mut ack_times = Vec::new();
    for device in devices {
        let totals = device.await.expect("device task panicked");
        all_connected = all_connected.max(totals.first_connected);
        ack_times.extend(totals.ack_times);
        report.sent += totals.sent;
        report.acked += totals.acked;
        report.resent += totals.resent;
        report.dropped_buffer_full += totals.dropped_buffer_full;
        report.unacked_at_exit += totals.unacked_at_exit;
        report.connects += totals.connects;
        report.connection_errors += totals.connection_errors;
        for us in totals.latency_us {
            latency.saturating_record(us.max(1));
        }
    }
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report.acked_per_sec = report.acked as f64 / report.elapsed_secs.max(1e-9);
    report.connected_after_secs = all_connected.map(|at| at.duration_since(started).as_secs_f64());
    if let (Some(start), Some(end)) = (all_connected, ack_times.iter().max()) {
        let steady = ack_times.iter().filter(|t| **t > start).count();
        report.steady_acked_per_sec = steady as f64 / end.duration_since(start).as_secs_f64().max(1e-9);
    }
    report.puback_latency_p50_ms = latency.value_at_quantile(0.50) as f64 / 1000.0;
    report.puback_latency_p99_ms = latency.value_at_quantile(0.99) as f64 / 1000.0;
    if let Some(writer) = report_writer {
        writer.await.expect("report writer panicked")?;
    }
    Ok(report)
}

fn device_tls(tls: &SimTls, device_id: &str) -> Result<TlsConfiguration> {
    // rumqttc's dependencies enable two rustls crypto backends, so rustls
    // cannot pick one by itself; use the one the server side uses. Installing
    // twice is harmless (the second call reports the first provider).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client_auth = match &tls.client_cert_dir {
        Some(dir) => {
            let read = |ext: &str| {
                std::fs::read(dir.join(format!("{device_id}.{ext}")))
                    .map_err(|source| Error::ClientCertificate { device: device_id.to_owned(), source })
            };
            Some((read("crt")?, read("key")?))
        }
        None => None,
    };
    Ok(TlsConfiguration::Simple { ca: tls.ca_pem.clone(), alpn: None, client_auth })
}

/// Appends one line per PUBACK and flushes often, so the file is complete up
/// to the last ack even if the simulator itself is killed.
fn spawn_report_writer(
    path: PathBuf,
    mut acked: mpsc::UnboundedReceiver<Acked>,
) -> Result<tokio::task::JoinHandle<Result<()>>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| Error::Report { path: path.clone(), source })?;
    Ok(tokio::spawn(async move {
        let mut out = std::io::BufWriter::new(file);
        let io_err = |source| Error::Report { path: path.clone(), source };
        while let Some(first) = acked.recv().await {
            let mut line = serde_json::to_vec(&first).expect("ack serializes");
            line.push(b'\n');
            out.write_all(&line).map_err(io_err)?;
            while let Ok(more) = acked.try_recv() {
                let mut line = serde_json::to_vec(&more).expect("ack serializes");
                line.push(b'\n');
                out.write_all(&line).map_err(io_err)?;
            }
            out.flush().map_err(io_err)?;
        }
        Ok(())
    }))
}

#[cfg(test)]
mod topic_tests {
    use super::*;

    #[test]
    fn a_stage_prefix_goes_before_the_telemetry_topic() {
        let production = SimConfig::default();
        assert_eq!(production.topic("acme-0001"), "wenu/acme-0001/telemetry");
        let dev = SimConfig { topic_prefix: Some("dev".into()), ..SimConfig::default() };
        assert_eq!(dev.topic("acme-0001"), "dev/wenu/acme-0001/telemetry");
    }
}

//! `wenu bench alarms`: how long an operator waits. A probe device
//! publishes readings that raise and clear an alarm while a simulated
//! fleet publishes at a steady rate (by default half the ingest maximum of
//! docs/benchmarks.md) and 1 000 rules are active; the time from the
//! probe's PUBACK to the webhook receiving the notification is recorded.
//! Baseline in the same run: a Mosquitto publish → subscribe round trip
//! under the same fleet load.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use wenu_alarms::{Condition, Direction, Rule, Severity};
use wenu_core::catalog::SensorSpec;
use wenu_core::envelope::{NonceSequence, seal};
use wenu_core::fleet::{Fleet, FleetDevice};
use wenu_core::keyring::Keyring;
use wenu_core::reading::{Reading, ReadingBatch};
use wenu_firmware_sim::{FleetReport, SimConfig, run_fleet};
use wenu_registry::{Registry, provision_fleet};

use crate::process::{Scratch, ServerProcess};
use wenu::config::Config;
use wenu::serve::Server;
use wenu_core::clock::now_ms;

#[derive(Args)]
pub struct AlarmsArgs {
    /// Active rules (one of them the probe's).
    #[arg(long, default_value_t = 1000)]
    rules: usize,
    /// Simulated devices publishing in the background.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// QoS 1 messages per second from all devices.
    #[arg(long, default_value_t = 27_000.0)]
    ingest_rate: f64,
    /// Alarm transitions measured (each probe reading raises or clears).
    #[arg(long, default_value_t = 300)]
    probes: usize,
    /// Mosquitto binary for the baseline; `none` to skip it.
    #[arg(long, default_value = "mosquitto")]
    mosquitto: String,
}

const PROBE_RULE: &str = "probe";

pub async fn run(mut config: Config, args: AlarmsArgs) -> anyhow::Result<serde_json::Value> {
    let scratch = Scratch::new("alarms")?;
    let scratch = scratch.path();
    config.data_dir = scratch.to_owned();
    config.mqtt.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.mqtt.tls = None;
    config.http.listen = None;
    // The webhook receiver listens on loopback, which is refused by default.
    config.alarms.webhook_private_networks = true;

    eprintln!("provisioning {} devices, a probe and {} rules…", args.devices, args.rules);
    let registry = Registry::open(&Registry::default_path(scratch)).await?;
    let mut keyring = Keyring::default();
    let fleet = Fleet { devices: provision_fleet(&registry, &mut keyring, "bench", args.devices).await? };
    let probe = provision_fleet(&registry, &mut keyring, "bench", 1).await?.remove(0);
    keyring.save(&config.keyring_path())?;
    wenu::devices::define_simulated_sensors(&registry, &fleet).await?;
    registry.upsert_sensor(&SensorSpec::new(&probe.device_id, "temp-1", "temperature", "degC")).await?;
    for rule in rules(&fleet, &probe, args.rules) {
        registry.put_rule(&rule).await?;
    }
    let (webhook_url, mut hooks) = webhook_receiver().await?;
    registry.add_channel("bench", &wenu_registry::NewChannel::url(&webhook_url)).await?;

    let server = Server::start(&config).await?;
    let port = server.edge.tcp_addr().expect("listening").port();
    eprintln!("wenu: fleet at {} msg/s, {} probe transitions…", args.ingest_rate, args.probes);
    let (load, wenu) = under_load(&fleet, port, args.ingest_rate, async {
        probe_alarms(&probe, port, args.probes, &mut hooks).await
    })
    .await?;
    let (from_puback, from_publish) = wenu?;
    server.stop().await?;

    let baseline = if args.mosquitto == "none" {
        None
    } else {
        let broker = ServerProcess::mosquitto(&args.mosquitto)?;
        eprintln!("mosquitto: same fleet load, {} publish → subscribe round trips…", args.probes);
        let (load, round_trips) =
            under_load(&fleet, broker.port, args.ingest_rate, round_trips(broker.port, args.probes)).await?;
        Some((load, round_trips?))
    };

    let ms = |h: &Histogram<u64>, q: f64| (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0;
    let result = json!({
        "rules": args.rules,
        "devices": args.devices,
        "transitions": from_puback.len(),
        "wenu": {
            "ingest": ingest_summary(&load, args.ingest_rate),
            "puback_to_webhook_p50_ms": ms(&from_puback, 0.5),
            "puback_to_webhook_p99_ms": ms(&from_puback, 0.99),
            "puback_to_webhook_max_ms": ms(&from_puback, 1.0),
            "publish_to_webhook_p50_ms": ms(&from_publish, 0.5),
            "publish_to_webhook_p99_ms": ms(&from_publish, 0.99),
        },
        "mosquitto": baseline.as_ref().map(|(load, rt)| json!({
            "ingest": ingest_summary(load, args.ingest_rate),
            "publish_to_subscriber_p50_ms": ms(rt, 0.5),
            "publish_to_subscriber_p99_ms": ms(rt, 0.99),
        })),
        "alarm_p99_vs_mosquitto_round_trip_p99": baseline.as_ref().map(|(_, rt)| ms(&from_puback, 0.99) / ms(rt, 0.99).max(0.01)),
    });
    Ok(result)
}

fn ingest_summary(load: &FleetReport, target: f64) -> serde_json::Value {
    json!({
        "target_per_sec": target,
        "acked_per_sec": load.acked_per_sec.round(),
        "puback_p99_ms": load.puback_latency_p99_ms,
    })
}

/// The probe's rule, and rules on the fleet's temperatures that stay quiet.
fn rules(fleet: &Fleet, probe: &FleetDevice, count: usize) -> Vec<Rule> {
    let probe_rule =
        Condition::Threshold { direction: Direction::Above, limit: 50.0, hysteresis: 0.0, for_ms: 0 };
    let mut rules = vec![rule(PROBE_RULE.into(), &probe.device_id, probe_rule)];
    rules.extend(quiet_rules(fleet, count.saturating_sub(1)));
    rules
}

/// `count` rules on the fleet's temperatures that never fire, of every kind,
/// so that each reading is evaluated by several detectors.
pub(crate) fn quiet_rules(fleet: &Fleet, count: usize) -> Vec<Rule> {
    (0..count)
        .map(|i| {
            let condition = match i % 4 {
                0 => Condition::Threshold {
                    direction: Direction::Above,
                    limit: 1e9,
                    hysteresis: 1.0,
                    for_ms: 5_000,
                },
                1 => Condition::RateOfChange { max_per_second: 1e9, for_ms: 0 },
                2 => Condition::ZScore { threshold: 1e6, alpha: 0.05, warmup: 30, for_ms: 0 },
                _ => Condition::Threshold {
                    direction: Direction::Below,
                    limit: -1e9,
                    hysteresis: 1.0,
                    for_ms: 0,
                },
            };
            rule(format!("quiet-{i}"), &fleet.devices[i % fleet.devices.len()].device_id, condition)
        })
        .collect()
}

fn rule(id: String, device: &str, condition: Condition) -> Rule {
    Rule {
        company: "bench".into(),
        id,
        name: "bench".into(),
        device: Some(device.to_owned()),
        sensor: Some("temp-1".into()),
        condition,
        severity: Severity::Warning,
        enabled: true,
        version: 0,
    }
}

/// Runs `work` while the fleet publishes at `rate`; returns both outcomes.
async fn under_load<T>(
    fleet: &Fleet,
    port: u16,
    rate: f64,
    work: impl Future<Output = T>,
) -> anyhow::Result<(FleetReport, T)> {
    let (stop_tx, stop) = watch::channel(false);
    let sim = SimConfig {
        port,
        rate_per_device: rate / fleet.devices.len().max(1) as f64,
        window: 64,
        buffer: 1_000_000,
        ..SimConfig::default()
    };
    let load = {
        let fleet = fleet.clone();
        tokio::spawn(async move { run_fleet(&fleet, sim, stop).await })
    };
    // Let the fleet connect and reach its rate before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcome = work.await;
    stop_tx.send_replace(true);
    Ok((load.await??, outcome))
}

/// An HTTP endpoint on loopback that reports when each webhook POST arrived.
async fn webhook_receiver() -> anyhow::Result<(String, mpsc::UnboundedReceiver<Instant>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let _ = tx.send(Instant::now());
            async { axum::http::StatusCode::NO_CONTENT }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, rx))
}

/// A rumqttc client whose PUBACKs and incoming publishes are timestamped.
fn client(
    id: &str,
    port: u16,
    user: &str,
    password: &str,
) -> (AsyncClient, mpsc::UnboundedReceiver<(bool, Instant)>) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_credentials(user, password);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 16);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                // `true`: our publish was acknowledged; `false`: a message arrived.
                Ok(Event::Incoming(Incoming::PubAck(_))) => drop(tx.send((true, Instant::now()))),
                Ok(Event::Incoming(Incoming::Publish(_))) => drop(tx.send((false, Instant::now()))),
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "bench client connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    (client, rx)
}

/// Each probe reading crosses the threshold one way or the other: one
/// transition, one webhook. Returns PUBACK → webhook and publish → webhook.
async fn probe_alarms(
    probe: &FleetDevice,
    port: u16,
    probes: usize,
    hooks: &mut mpsc::UnboundedReceiver<Instant>,
) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
    let (client, mut acks) = client(&probe.device_id, port, &probe.device_id, &probe.password.0);
    let topic = wenu_core::topic::telemetry_topic(&probe.device_id);
    let mut nonces = NonceSequence::new();
    let (mut from_puback, mut from_publish) = (Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?);
    let mut ts = now_ms();
    for seq in 1..=probes as u64 {
        ts = (ts + 1).max(now_ms());
        let value = if seq % 2 == 1 { 100.0 } else { 0.0 };
        let reading =
            Reading { sensor: "temp-1".into(), kind: "temperature".into(), value, unit: "degC".into() };
        let plaintext = ReadingBatch { seq, ts, readings: vec![reading] }.to_json();
        let envelope = seal(&probe.device_id, probe.key_id, &probe.key, nonces.next_nonce()?, &plaintext);
        let sent = Instant::now();
        client.publish(&topic, QoS::AtLeastOnce, false, envelope).await?;
        let acked = wait_for(&mut acks, true).await?;
        let hooked = tokio::time::timeout(Duration::from_secs(30), hooks.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no webhook within 30 s of probe {seq}"))?
            .ok_or_else(|| anyhow::anyhow!("webhook receiver stopped"))?;
        // The webhook may even beat the PUBACK to the client: count that as 0.
        from_puback.record(hooked.saturating_duration_since(acked).as_micros() as u64)?;
        from_publish.record(hooked.duration_since(sent).as_micros() as u64)?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = client.disconnect().await;
    Ok((from_puback, from_publish))
}

/// Mosquitto: QoS 1 publish on one client, received by another's subscription.
async fn round_trips(port: u16, probes: usize) -> anyhow::Result<Histogram<u64>> {
    let (subscriber, mut received) = client("bench-sub", port, "sub", "sub");
    subscriber.subscribe("bench/round-trip", QoS::AtLeastOnce).await?;
    let (publisher, mut acks) = client("bench-pub", port, "pub", "pub");
    tokio::time::sleep(Duration::from_millis(500)).await; // the SUBACK, before the first probe
    let mut latencies = Histogram::<u64>::new(3)?;
    for n in 0..probes {
        let sent = Instant::now();
        publisher.publish("bench/round-trip", QoS::AtLeastOnce, false, n.to_string()).await?;
        let arrived = wait_for(&mut received, false).await?;
        latencies.record(arrived.duration_since(sent).as_micros() as u64)?;
        wait_for(&mut acks, true).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(latencies)
}

async fn wait_for(
    events: &mut mpsc::UnboundedReceiver<(bool, Instant)>,
    puback: bool,
) -> anyhow::Result<Instant> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), events.recv()).await;
        match next {
            Ok(Some((kind, at))) if kind == puback => return Ok(at),
            Ok(Some(_)) => continue,
            _ => anyhow::bail!("no {} within 30 s", if puback { "PUBACK" } else { "message" }),
        }
    }
}

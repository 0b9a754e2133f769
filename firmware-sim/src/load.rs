//! A lean load generator for benchmarks: each device is one task on a plain
//! TCP socket that writes QoS 1 publishes with rumqttc's packet codec and
//! reads back the PUBACKs, with no client event loop, fault modes or
//! reconnection in between. It costs a fraction of [`crate::run_fleet`] per
//! message, so one core can offer a server confined to another core more
//! than it can take.
//!
//! A device produces at its rate from the moment the whole fleet is
//! connected; what the window does not let out yet waits on the device (its
//! offline buffer, as the firmware's) and is sent when acknowledgements make
//! room, also after production stops. Any connection failure fails the run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rumqttc::mqttbytes::v4::{self, Connect, Login, Packet, Publish};
use rumqttc::mqttbytes::{self, QoS};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wenu_core::envelope::{NonceSequence, seal};
use wenu_core::fleet::{Fleet, FleetDevice};
use wenu_core::reading::ReadingBatch;
use wenu_core::topic::telemetry_topic;

use crate::fleet_run::StartGate;
use crate::signal::{SensorSignal, take_readings};
use crate::{Error, Result};

const MAX_PACKET: usize = 1 << 20;
const KEEP_ALIVE_SECS: u16 = 60;
const PINGREQ: [u8; 2] = [0xC0, 0x00];
const DISCONNECT: [u8; 2] = [0xE0, 0x00];
/// How long a device keeps trying to connect before the run fails.
const CONNECT_PATIENCE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub host: String,
    pub port: u16,
    /// Messages per second per device; 0 means as fast as acks allow.
    pub rate_per_device: f64,
    /// Publishes in flight per connection.
    pub window: usize,
    /// How long devices produce, from the moment all are connected.
    pub duration: Duration,
    pub first_seq: u64,
    /// After production stops, how long devices may take to deliver what they hold.
    pub drain_timeout: Duration,
}

/// What a load run did.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub devices: usize,
    /// Seconds from the start until every device had its CONNACK.
    pub connect_secs: f64,
    /// Connection attempts beyond one per device (the server dropped a
    /// handshake it could not complete in time, and the device tried again).
    pub reconnects: u64,
    pub produced: u64,
    pub acked: u64,
    /// Produced per second of production.
    pub offered_per_sec: f64,
    /// Acknowledged per second, from the fleet's start to the last PUBACK.
    pub acked_per_sec: f64,
    /// Seconds from the end of production to the last PUBACK.
    pub drain_secs: f64,
    pub puback_p50_ms: f64,
    pub puback_p99_ms: f64,
    /// Produced and never acknowledged within the drain timeout.
    pub unacked_at_exit: u64,
}

/// Connects every device of `fleet`, then runs them together.
pub async fn run_load(fleet: &Fleet, config: LoadConfig) -> Result<LoadReport> {
    let started = Instant::now();
    let gate = StartGate::new(fleet.devices.len(), false);
    let config = Arc::new(config);
    let tasks: Vec<_> = fleet
        .devices
        .iter()
        .enumerate()
        .map(|(index, device)| tokio::spawn(run_device(index, device.clone(), config.clone(), gate.clone())))
        .collect();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
    let (mut produced, mut acked, mut unacked, mut reconnects) = (0, 0, 0, 0);
    let (mut first_start, mut last_ack) = (None::<Instant>, None::<Instant>);
    let mut connected = started;
    for task in tasks {
        let device = task.await.expect("device task panicked")?;
        produced += device.produced;
        acked += device.acked;
        unacked += device.produced - device.acked;
        reconnects += u64::from(device.attempts - 1);
        connected = connected.max(device.connected);
        first_start = Some(first_start.map_or(device.started, |t: Instant| t.min(device.started)));
        last_ack = last_ack.max(device.last_ack);
        latency.add(&device.latency).expect("same bounds");
    }
    let start = first_start.unwrap_or(connected);
    let end = last_ack.unwrap_or(start);
    let production_end = start + config.duration;
    Ok(LoadReport {
        devices: fleet.devices.len(),
        connect_secs: connected.duration_since(started).as_secs_f64(),
        reconnects,
        produced,
        acked,
        offered_per_sec: produced as f64 / config.duration.as_secs_f64().max(1e-9),
        acked_per_sec: acked as f64 / end.duration_since(start).as_secs_f64().max(1e-9),
        drain_secs: end.saturating_duration_since(production_end).as_secs_f64(),
        puback_p50_ms: latency.value_at_quantile(0.50) as f64 / 1000.0,
        puback_p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
        unacked_at_exit: unacked,
    })
}

struct DeviceRun {
    produced: u64,
    acked: u64,
    connected: Instant,
    started: Instant,
    last_ack: Option<Instant>,
    latency: Histogram<u64>,
    attempts: u32,
}

async fn run_device(
    index: usize,
    device: FleetDevice,
    config: Arc<LoadConfig>,
    gate: StartGate,
) -> Result<DeviceRun> {
    let io = |source| Error::Load { device: device.device_id.clone(), source };
    // A server admitting a connect storm may drop connections it could not
    // authenticate in time; like firmware, a device tries again.
    let give_up_connecting = Instant::now() + CONNECT_PATIENCE;
    let mut attempts = 0;
    let (mut socket, mut input) = loop {
        attempts += 1;
        match connect(&device, &config).await {
            Ok(connected) => break connected,
            Err(_) if Instant::now() < give_up_connecting => {
                tokio::time::sleep(Duration::from_millis(500 + (index % 1000) as u64)).await;
            }
            Err(error) => {
                gate.device_connected(); // the others must not wait for it
                return Err(error);
            }
        }
    };
    let connected = Instant::now();
    gate.device_connected();
    // Waiting for the rest of the fleet can take longer than the keep-alive.
    let mut open = gate.open.clone();
    while !*open.borrow_and_update() {
        tokio::select! {
            _ = open.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(KEEP_ALIVE_SECS as u64 / 2)) => {
                socket.write_all(&PINGREQ).await.map_err(io)?;
            }
        }
    }
    let mut out = BytesMut::with_capacity(16 * 1024);

    let mut firmware = LeanFirmware::new(index, &device, config.first_seq);
    let topic = telemetry_topic(&device.device_id);
    let started = Instant::now();
    let stop_producing = started + config.duration;
    let give_up = stop_producing + config.drain_timeout;
    let interval =
        (config.rate_per_device > 0.0).then(|| Duration::from_secs_f64(1.0 / config.rate_per_device));
    let mut in_flight: HashMap<u16, Instant> = HashMap::with_capacity(config.window);
    let mut next_pkid: u16 = 1;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
    let (mut produced, mut acked, mut last_ack) = (0u64, 0u64, None);
    loop {
        let now = Instant::now();
        // Everything due by now (or by the end of production) has been produced.
        let due = match interval {
            Some(every) => {
                (now.min(stop_producing).duration_since(started).as_secs_f64() / every.as_secs_f64()) as u64
                    + 1
            }
            None if now < stop_producing => firmware.sent + (config.window - in_flight.len()) as u64,
            None => firmware.sent,
        };
        produced = produced.max(due);
        while firmware.sent < produced && in_flight.len() < config.window {
            while in_flight.contains_key(&next_pkid) {
                next_pkid = next_pkid.checked_add(1).unwrap_or(1);
            }
            let mut publish = Publish::new(&topic, QoS::AtLeastOnce, firmware.next_envelope()?);
            publish.pkid = next_pkid;
            publish.write(&mut out).map_err(|e| protocol(&device, e))?;
            in_flight.insert(next_pkid, Instant::now());
        }
        if !out.is_empty() {
            socket.write_all(&out).await.map_err(io)?;
            out.clear();
        }
        if now >= stop_producing && firmware.sent == produced && in_flight.is_empty() || now >= give_up {
            break;
        }
        // Wait for acknowledgements, or until the next message is due.
        let wake = match interval {
            Some(every) if firmware.sent == produced && now < stop_producing => {
                (started + every.mul_f64(produced as f64)).min(stop_producing)
            }
            _ => give_up,
        };
        let read = tokio::time::timeout_at(wake.into(), socket.read_buf(&mut input)).await;
        match read {
            Err(_elapsed) => continue,
            Ok(Ok(0)) => {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                )));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(io(e)),
        }
        loop {
            match Packet::read(&mut input, MAX_PACKET) {
                Ok(Packet::PubAck(ack)) => {
                    if let Some(sent) = in_flight.remove(&ack.pkid) {
                        latency.saturating_record(sent.elapsed().as_micros().max(1) as u64);
                        acked += 1;
                        last_ack = Some(Instant::now());
                    }
                }
                Ok(_) => {}
                Err(mqttbytes::Error::InsufficientBytes(_)) => break,
                Err(e) => return Err(protocol(&device, e)),
            }
        }
    }
    let _ = socket.write_all(&DISCONNECT).await;
    Ok(DeviceRun { produced, acked, connected, started, last_ack, latency, attempts })
}

/// Opens the socket and completes the MQTT handshake.
async fn connect(device: &FleetDevice, config: &LoadConfig) -> Result<(TcpStream, BytesMut)> {
    let io = |source| Error::Load { device: device.device_id.clone(), source };
    let mut socket = TcpStream::connect((config.host.as_str(), config.port)).await.map_err(io)?;
    socket.set_nodelay(true).map_err(io)?;
    let mut out = BytesMut::with_capacity(256);
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut connect = Connect::new(device.device_id.clone());
    connect.keep_alive = KEEP_ALIVE_SECS;
    connect.login = Some(Login::new(device.device_id.clone(), device.password.0.clone()));
    connect.write(&mut out).map_err(|e| protocol(device, e))?;
    socket.write_all(&out).await.map_err(io)?;
    match next_packet(&mut socket, &mut input, device).await? {
        Packet::ConnAck(ack) if ack.code == v4::ConnectReturnCode::Success => Ok((socket, input)),
        other => Err(Error::Refused { device: device.device_id.clone(), reply: format!("{other:?}") }),
    }
}

async fn next_packet(socket: &mut TcpStream, input: &mut BytesMut, device: &FleetDevice) -> Result<Packet> {
    loop {
        match Packet::read(input, MAX_PACKET) {
            Ok(packet) => return Ok(packet),
            Err(mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(protocol(device, e)),
        }
        let read = socket
            .read_buf(input)
            .await
            .map_err(|source| Error::Load { device: device.device_id.clone(), source })?;
        if read == 0 {
            return Err(Error::Refused {
                device: device.device_id.clone(),
                reply: "connection closed".into(),
            });
        }
    }
}

fn protocol(device: &FleetDevice, error: mqttbytes::Error) -> Error {
    Error::Refused { device: device.device_id.clone(), reply: error.to_string() }
}

/// The readings and envelopes of one device, as the firmware makes them.
struct LeanFirmware {
    device: FleetDevice,
    nonces: NonceSequence,
    sensors: Vec<SensorSignal>,
    rng: SmallRng,
    first_seq: u64,
    sent: u64,
}

impl LeanFirmware {
    fn new(index: usize, device: &FleetDevice, first_seq: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(index as u64);
        let sensors = SensorSignal::for_device(index, &mut rng);
        LeanFirmware {
            device: device.clone(),
            nonces: NonceSequence::new(),
            sensors,
            rng,
            first_seq,
            sent: 0,
        }
    }

    fn next_envelope(&mut self) -> Result<Vec<u8>> {
        let seq = self.first_seq + self.sent;
        self.sent += 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        let readings = take_readings(&self.sensors, now, None, &mut self.rng);
        let plaintext = ReadingBatch { seq, ts: now, readings }.to_json();
        let nonce = self.nonces.next_nonce()?;
        Ok(seal(&self.device.device_id, self.device.key_id, &self.device.key, nonce, &plaintext))
    }
}

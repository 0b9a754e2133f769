//! One simulated device: its MQTT connection and its offline buffer.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};
use wenu_core::envelope::{NonceSequence, seal};
use wenu_core::fleet::Fleet;
use wenu_core::fleet::FleetDevice;
use wenu_core::keyring::SecretKey;
use wenu_core::reading::ReadingBatch;
use wenu_core::topic::DeviceTopic;

use crate::downlink::{Downlink, Effect};
use crate::fleet_run::{Acked, DeviceTotals, SimConfig, StartGate};
use crate::signal::{Fault, SensorSignal, take_readings};

/// A message the device has produced and not yet seen acknowledged.
struct Pending {
    envelope: Bytes,
    /// When a session first took it: PUBACK latency counts from here, so
    /// time spent waiting for a connection is not counted.
    first_sent: Option<Instant>,
}

pub(crate) struct Device {
    pub index: usize,
    pub identity: FleetDevice,
    pub fault: Option<Fault>,
    pub tls: Option<TlsConfiguration>,
    pub gate: StartGate,
}

impl Device {
    pub(crate) async fn run(
        self,
        config: Arc<SimConfig>,
        acked: mpsc::UnboundedSender<Acked>,
        mut stop: watch::Receiver<bool>,
    ) -> DeviceTotals {
        let id = self.identity.device_id.clone();
        let mut options = MqttOptions::new(&id, config.host.clone(), config.port);
        // A device with a client certificate is identified by it alone, as
        // AWS IoT Core expects: its CONNECT carries no username or password.
        let has_certificate =
            matches!(&self.tls, Some(TlsConfiguration::Simple { client_auth: Some(_), .. }));
        if !has_certificate {
            options.set_credentials(id.clone(), self.identity.password.0.clone());
        }
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_inflight(config.window.max(1) as u16)
            .set_max_packet_size(1 << 20, 1 << 20);
        if let Some(tls) = self.tls.clone() {
            options.set_transport(Transport::tls_with_config(tls));
        }
        let mut firmware = Firmware::boot(self.index, &self.identity, self.fault, &config);
        let mut totals = DeviceTotals::default();
        let topic = config.topic(&id);
        let window = config.window.max(1);
        let mut session = Some(Session::open(options.clone(), window));
        let mut reconnect_at: Option<tokio::time::Instant> = None;
        // Offline buffer: every message produced and not yet acknowledged, and
        // the order in which those not handed to a session go out.
        let mut unacked: BTreeMap<u64, Pending> = BTreeMap::new();
        let mut unsent: VecDeque<u64> = VecDeque::new();
        let rate_limited = config.rate_per_device > 0.0;
        let mut tick = tokio::time::interval(config.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut producing = true;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        let mut gate_open = self.gate.open.clone();
        let topics = DeviceTopics::new(&config, &id);
        let mut downlink = Downlink::new(&id, self.identity.key_id, self.identity.key.clone());
        // Results given and not yet acknowledged: sent again after a reconnection.
        let mut unanswered: Vec<(String, serde_json::Value)> = Vec::new();
        // Results not given yet: (the key below which nothing may be unacknowledged, result).
        let mut held: Vec<(u32, serde_json::Value)> = Vec::new();
        let mut sample_now = false;

        loop {
            if producing && (*stop.borrow() || config.per_device.is_some_and(|n| firmware.produced >= n)) {
                producing = false;
                drain_deadline = Some(tokio::time::Instant::now() + config.drain_timeout);
            }
            if !producing
                && (unacked.is_empty() || drain_deadline.is_some_and(|d| tokio::time::Instant::now() >= d))
            {
                break;
            }
            // A result waits until nothing sealed under a key it retires is unacknowledged.
            let oldest_key = unacked.values().map(|p| key_id_of(&p.envelope)).min().unwrap_or(u32::MAX);
            for (_, result) in held.extract_if(.., |(below, _)| oldest_key >= *below) {
                let result_id = result["id"].as_str().unwrap_or_default().to_owned();
                if let Some(session) = session.as_mut() {
                    session.publish_control(&topics.results, &result, Some(result_id.clone()));
                }
                if !unanswered.iter().any(|(known, _)| *known == result_id) {
                    unanswered.push((result_id, result));
                }
            }
            if let Some(session) = session.as_mut() {
                session.pump(&topic, &mut unsent, &mut unacked);
            }
            // At full speed a device produces only as fast as acks come back;
            // at a set rate it keeps measuring while offline and buffers.
            let started = *gate_open.borrow();
            let can_produce = started && producing && (rate_limited || unacked.len() < window);
            let reconnect = async {
                match reconnect_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let event = async {
                match session.as_mut() {
                    Some(session) => session.events.recv().await,
                    None => std::future::pending().await,
                }
            };
            // `sample_now` produces at once instead of at the next tick.
            let sample_requested = sample_now;
            let next_tick = async {
                if !sample_requested {
                    tick.tick().await;
                }
            };
            tokio::select! {
                _ = next_tick, if can_produce => {
                    sample_now = false;
                    for (seq, envelope) in firmware.next_messages() {
                        if unacked.len() >= config.buffer && !unacked.contains_key(&seq) {
                            totals.dropped_buffer_full += 1;
                            continue;
                        }
                        // A replay of a message still in flight keeps the original's send time.
                        unacked.entry(seq).or_insert(Pending { envelope, first_sent: None });
                        unsent.push_back(seq);
                        totals.sent += 1;
                    }
                }
                _ = reconnect => {
                    reconnect_at = None;
                    session = Some(Session::open(options.clone(), window));
                }
                event = event => match event {
                    Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        totals.connects += 1;
                        if totals.first_connected.is_none() {
                            totals.first_connected = Some(Instant::now());
                            self.gate.device_connected();
                        }
                        if let Some(session) = session.as_mut() {
                            session.connected = true;
                            if config.follow_downlink {
                                for topic in [&topics.config, &topics.commands] {
                                    let _ = session.client.try_subscribe(topic.as_str(), QoS::AtLeastOnce);
                                }
                                session.publish_control(&topics.reported, &downlink.report(), None);
                                for (id, result) in &unanswered {
                                    session.publish_control(&topics.results, result, Some(id.clone()));
                                }
                            }
                        }
                    }
                    Some(Ok(Event::Incoming(Packet::Publish(message)))) => {
                        let kind = topics.downlink_kind(&message.topic);
                        let effects = kind.map(|kind| downlink.on_message(kind, &message.payload)).unwrap_or_default();
                        for effect in effects {
                            match effect {
                                Effect::Report(report) => {
                                    if let Some(session) = session.as_mut() {
                                        session.publish_control(&topics.reported, &report, None);
                                    }
                                }
                                Effect::Answer { result, after_keys_below } => {
                                    held.push((after_keys_below.unwrap_or(0), result));
                                }
                                Effect::SampleNow => sample_now = true,
                                Effect::Interval(every) if rate_limited => {
                                    tick = tokio::time::interval(every);
                                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                                }
                                Effect::Interval(_) => {}
                                Effect::NewKey(key_id, key) => {
                                    firmware.key_id = key_id;
                                    firmware.key = key.clone();
                                    if let Some(path) = &config.fleet_file {
                                        keep_new_key(path, &id, key_id, key);
                                    }
                                    tracing::info!(device = %id, key_id, "took a new key from the downlink");
                                }
                            }
                        }
                    }
                    Some(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                        session.as_mut().expect("events come from a session").sent(pkid);
                    }
                    Some(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                        let seq = match session.as_mut().and_then(|s| s.acked(ack.pkid)) {
                            Some(Slot::Reading(seq)) => Some(seq),
                            Some(Slot::Control(Some(result_of))) => {
                                unanswered.retain(|(id, _)| *id != result_of);
                                None
                            }
                            _ => None,
                        };
                        // The PUBACK of an earlier copy of a replayed seq does not settle
                        // a copy that is queued and not yet sent.
                        let sent_copy = seq.filter(|seq| unacked.get(seq).is_some_and(|p| p.first_sent.is_some()));
                        if let Some(p) = sent_copy.and_then(|seq| unacked.remove(&seq).map(|p| (seq, p))) {
                            totals.acked += 1;
                            let sent = p.1.first_sent.expect("only sent copies are settled");
                            totals.latency_us.push(sent.elapsed().as_micros() as u64);
                            totals.ack_times.push(Instant::now());
                            let _ = acked.send(Acked { device: id.clone(), seq: p.0 });
                        }
                    }
                    Some(Ok(_)) => {}
                    failed => {
                        if let Some(Err(err)) = failed {
                            tracing::debug!(device = %id, error = %err, "connection lost; reconnecting");
                        }
                        totals.connection_errors += 1;
                        // Whatever the session held unacknowledged goes back
                        // to the buffer, in order, for a fresh session.
                        let lost = session.take().map(Session::close).unwrap_or_default();
                        totals.resent += lost.len() as u64;
                        for seq in lost.into_iter().rev() {
                            if unacked.contains_key(&seq) && !unsent.contains(&seq) {
                                unsent.push_front(seq);
                            }
                        }
                        reconnect_at = Some(tokio::time::Instant::now() + config.reconnect_delay);
                    }
                },
                _ = stop.changed(), if producing => {}
                _ = gate_open.changed(), if !started => {}
            }
        }
        totals.unacked_at_exit = unacked.len() as u64;
        if let Some(session) = session {
            let _ = session.client.try_disconnect();
            session.close();
        }
        totals
    }
}

/// What one publish of the device carries.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    /// The reading message with this seq.
    Reading(u64),
    /// A report, or the result of the command with this id.
    Control(Option<String>),
}

/// One MQTT connection attempt and its bookkeeping. A new session (and a new
/// client) is made after every connection failure, so packet ids and queued
/// requests of a dead connection can never be confused with live ones.
struct Session {
    client: AsyncClient,
    events: mpsc::Receiver<Result<Event, rumqttc::ConnectionError>>,
    driver: tokio::task::JoinHandle<()>,
    /// Packet id → what a publish written to the connection carries.
    inflight: HashMap<u16, Slot>,
    /// Publishes handed to the client, in order, not yet written.
    submitted: VecDeque<Slot>,
    /// Packet id → a publish written under a packet id whose previous
    /// PUBACK is about to be reported.
    reusing: HashMap<u16, Slot>,
    window: usize,
    /// CONNACK received: only then are messages handed to the client.
    connected: bool,
}

impl Session {
    fn open(options: MqttOptions, window: usize) -> Session {
        let (client, eventloop) = AsyncClient::new(options, window * 2);
        let (tx, events) = mpsc::channel(256);
        // `EventLoop::poll` must not be cancelled mid-connect, so it runs in a
        // task of its own; it stops at the first error.
        let driver = tokio::spawn(drive(eventloop, tx));
        Session {
            client,
            events,
            driver,
            inflight: HashMap::new(),
            submitted: VecDeque::new(),
            reusing: HashMap::new(),
            window,
            connected: false,
        }
    }

    /// Hands buffered messages to the client while the window has room.
    fn pump(&mut self, topic: &str, unsent: &mut VecDeque<u64>, unacked: &mut BTreeMap<u64, Pending>) {
        while self.connected && self.inflight.len() + self.submitted.len() < self.window {
            let Some(seq) = unsent.pop_front() else { break };
            let Some(pending) = unacked.get_mut(&seq) else {
                continue;
            };
            let envelope = pending.envelope.clone();
            if self.client.try_publish(topic, QoS::AtLeastOnce, false, envelope).is_err() {
                unsent.push_front(seq);
                break;
            }
            pending.first_sent.get_or_insert_with(Instant::now);
            self.submitted.push_back(Slot::Reading(seq));
        }
    }

    /// Publishes a report or a command's result (QoS 1, like readings);
    /// false if the client's queue is full.
    fn publish_control(
        &mut self,
        topic: &str,
        payload: &serde_json::Value,
        result_of: Option<String>,
    ) -> bool {
        let payload = payload.to_string().into_bytes();
        if !self.connected || self.client.try_publish(topic, QoS::AtLeastOnce, false, payload).is_err() {
            return false;
        }
        self.submitted.push_back(Slot::Control(result_of));
        true
    }

    /// The client wrote a publish. Within one session publishes are written in
    /// the order they were handed over, so it is the next submitted seq.
    ///
    /// rumqttc reuses a packet id the moment its PUBACK arrives and reports
    /// the new publish *before* that PUBACK; such a seq waits in `reusing`
    /// until the PUBACK has settled the old one.
    fn sent(&mut self, pkid: u16) {
        let Some(seq) = self.submitted.pop_front() else {
            return;
        };
        match self.inflight.entry(pkid) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.reusing.insert(pkid, seq);
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(seq);
            }
        }
    }

    /// A PUBACK arrived: what it acknowledges.
    fn acked(&mut self, pkid: u16) -> Option<Slot> {
        let slot = self.inflight.remove(&pkid);
        if let Some(next) = self.reusing.remove(&pkid) {
            self.inflight.insert(pkid, next);
        }
        slot
    }

    /// Ends the session and returns the seqs it held unacknowledged, oldest
    /// first. Reports are made again at the next connection and results
    /// stay with the device until acknowledged.
    fn close(self) -> Vec<u64> {
        self.driver.abort();
        let mut held: Vec<u64> = (self.inflight.into_values().chain(self.reusing.into_values()))
            .chain(self.submitted)
            .filter_map(|slot| match slot {
                Slot::Reading(seq) => Some(seq),
                Slot::Control(_) => None,
            })
            .collect();
        held.sort_unstable();
        held.dedup();
        held
    }
}

/// The key id an envelope names (bytes 1..5).
fn key_id_of(envelope: &[u8]) -> u32 {
    envelope.get(1..5).and_then(|b| b.try_into().ok()).map_or(0, u32::from_be_bytes)
}

/// A device's own topics, with the deployment's prefix.
struct DeviceTopics {
    config: String,
    commands: String,
    reported: String,
    results: String,
}

impl DeviceTopics {
    fn new(config: &SimConfig, device_id: &str) -> Self {
        let topic = |kind: DeviceTopic| config.prefixed(kind.of(device_id));
        DeviceTopics {
            config: topic(DeviceTopic::Config),
            commands: topic(DeviceTopic::Commands),
            reported: topic(DeviceTopic::Reported),
            results: topic(DeviceTopic::Results),
        }
    }

    fn downlink_kind(&self, topic: &str) -> Option<DeviceTopic> {
        if topic == self.config {
            Some(DeviceTopic::Config)
        } else if topic == self.commands {
            Some(DeviceTopic::Commands)
        } else {
            None
        }
    }
}

/// Writes a key taken from the downlink into the fleet file, as firmware
/// keeps it in flash: a restarted simulator seals with it.
fn keep_new_key(path: &std::path::Path, device_id: &str, key_id: u32, key: SecretKey) {
    // One writer at a time across the fleet's devices.
    static FLEET_FILE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _writing = FLEET_FILE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let kept = Fleet::load(path).and_then(|mut fleet| {
        let Some(entry) = fleet.devices.iter().find(|d| d.device_id == device_id).cloned() else {
            return Ok(());
        };
        fleet.upsert(FleetDevice { key_id, key, ..entry });
        fleet.save(path)
    });
    if let Err(err) = kept {
        tracing::warn!(device = device_id, error = %err, "could not keep the new key in the fleet file");
    }
}

/// Polls the MQTT event loop until the connection fails.
async fn drive(mut eventloop: EventLoop, events: mpsc::Sender<Result<Event, rumqttc::ConnectionError>>) {
    loop {
        let event = eventloop.poll().await;
        let failed = event.is_err();
        if events.send(event).await.is_err() || failed {
            return;
        }
    }
}

/// What the device's firmware computes: readings, sequence numbers, sealing.
struct Firmware {
    device_id: String,
    key_id: u32,
    key: SecretKey,
    nonces: NonceSequence,
    sensors: Vec<SensorSignal>,
    fault: Option<Fault>,
    rng: SmallRng,
    next_seq: u64,
    produced: u64,
    readings_per_message: usize,
    last_envelope: Option<(u64, Bytes)>,
    /// The boot's first envelope, which the replay fault sends again much later,
    /// as an attacker replaying a captured message would.
    first_envelope: Option<(u64, Bytes)>,
}

impl Firmware {
    fn boot(index: usize, identity: &FleetDevice, fault: Option<Fault>, config: &SimConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed ^ index as u64);
        let key = match fault {
            Some(Fault::WrongKey) => SecretKey::generate(),
            _ => identity.key.clone(),
        };
        Firmware {
            device_id: identity.device_id.clone(),
            key_id: identity.key_id,
            key,
            nonces: NonceSequence::new(),
            sensors: SensorSignal::for_device(index, &mut rng),
            fault,
            rng,
            next_seq: config.first_seq,
            produced: 0,
            readings_per_message: config.readings_per_message.max(1),
            last_envelope: None,
            first_envelope: None,
        }
    }

    /// The messages to publish at this tick: usually one, two when a replay
    /// fault resends an earlier envelope (the previous one, or the boot's first).
    fn next_messages(&mut self) -> Vec<(u64, Bytes)> {
        let mut out = Vec::with_capacity(2);
        if self.fault == Some(Fault::Replay) {
            let replayed = if self.rng.gen_ratio(1, 10) {
                self.last_envelope.clone()
            } else if self.rng.gen_ratio(1, 20) {
                self.first_envelope.clone()
            } else {
                None
            };
            out.extend(replayed);
        }
        if self.fault == Some(Fault::Gap) && self.rng.gen_ratio(1, 20) {
            self.next_seq += self.rng.gen_range(1..5);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.produced += 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        let mut readings = Vec::new();
        for _ in 0..self.readings_per_message {
            readings.extend(take_readings(&self.sensors, now, self.fault, &mut self.rng));
        }
        let plaintext = ReadingBatch { seq, ts: now, readings }.to_json();
        let nonce = self.nonces.next_nonce().expect("2^64 messages per boot");
        let mut envelope = seal(&self.device_id, self.key_id, &self.key, nonce, &plaintext);
        if self.fault == Some(Fault::Tamper) && self.rng.gen_ratio(1, 5) {
            let at = self.rng.gen_range(0..envelope.len());
            envelope[at] ^= 0x01;
        }
        let envelope = Bytes::from(envelope);
        self.last_envelope = Some((seq, envelope.clone()));
        self.first_envelope.get_or_insert_with(|| (seq, envelope.clone()));
        out.push((seq, envelope));
        out
    }
}

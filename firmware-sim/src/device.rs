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
use wenu_core::fleet::FleetDevice;
use wenu_core::keyring::SecretKey;
use wenu_core::reading::ReadingBatch;

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
            tokio::select! {
                _ = tick.tick(), if can_produce => {
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
                        }
                    }
                    Some(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                        session.as_mut().expect("events come from a session").sent(pkid);
                    }
                    Some(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                        let seq = session.as_mut().and_then(|s| s.acked(ack.pkid));
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

/// One MQTT connection attempt and its bookkeeping. A new session (and a new
/// client) is made after every connection failure, so packet ids and queued
/// requests of a dead connection can never be confused with live ones.
struct Session {
    client: AsyncClient,
    events: mpsc::Receiver<Result<Event, rumqttc::ConnectionError>>,
    driver: tokio::task::JoinHandle<()>,
    /// Packet id → seq of publishes written to the connection.
    inflight: HashMap<u16, u64>,
    /// Seqs handed to the client, in order, not yet written.
    submitted: VecDeque<u64>,
    /// Packet id → seq of a publish written under a packet id whose previous
    /// PUBACK is about to be reported.
    reusing: HashMap<u16, u64>,
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
            self.submitted.push_back(seq);
        }
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

    /// A PUBACK arrived: the seq it acknowledges.
    fn acked(&mut self, pkid: u16) -> Option<u64> {
        let seq = self.inflight.remove(&pkid);
        if let Some(next) = self.reusing.remove(&pkid) {
            self.inflight.insert(pkid, next);
        }
        seq
    }

    /// Ends the session and returns the seqs it held unacknowledged, oldest first.
    fn close(self) -> Vec<u64> {
        self.driver.abort();
        let mut held: Vec<u64> =
            self.inflight.into_values().chain(self.reusing.into_values()).chain(self.submitted).collect();
        held.sort_unstable();
        held.dedup();
        held
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

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
use wenu_core::topic::telemetry_topic;

use crate::fleet_run::{Acked, DeviceTotals, SimConfig};
use crate::signal::{Fault, SensorSignal, take_readings};

/// A message the device has produced and not yet seen acknowledged.
struct Pending {
    envelope: Bytes,
    first_sent: Instant,
}

pub(crate) struct Device {
    pub index: usize,
    pub identity: FleetDevice,
    pub fault: Option<Fault>,
    pub tls: Option<TlsConfiguration>,
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
        options
            .set_credentials(id.clone(), self.identity.password.0.clone())
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_inflight(config.window.max(1) as u16)
            .set_max_packet_size(1 << 20, 1 << 20);
        if let Some(tls) = self.tls.clone() {
            options.set_transport(Transport::tls_with_config(tls));
        }
        let (client, eventloop) = AsyncClient::new(options, config.window.max(1) * 2);
        let mut firmware = Firmware::boot(self.index, &self.identity, self.fault, &config);
        let mut totals = DeviceTotals::default();
        let topic = telemetry_topic(&id);
        let (events, mut event_rx) = mpsc::channel(256);
        let reconnect_delay = config.reconnect_delay;
        // `EventLoop::poll` must not be cancelled mid-connect, so it runs in a
        // task of its own and the device loop selects on its events.
        let driver = tokio::spawn(drive(eventloop, events, reconnect_delay));
        let mut link = Link {
            client,
            inflight: HashMap::new(),
            submitted: VecDeque::new(),
            unsent: VecDeque::new(),
            window: config.window.max(1),
        };
        let mut unacked: BTreeMap<u64, Pending> = BTreeMap::new();
        let rate_limited = config.rate_per_device > 0.0;
        let mut tick = tokio::time::interval(config.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut producing = true;
        let mut drain_deadline: Option<tokio::time::Instant> = None;

        loop {
            if producing
                && (*stop.borrow() || config.per_device.is_some_and(|n| firmware.produced >= n))
            {
                producing = false;
                drain_deadline = Some(tokio::time::Instant::now() + config.drain_timeout);
            }
            if !producing
                && (unacked.is_empty()
                    || drain_deadline.is_some_and(|d| tokio::time::Instant::now() >= d))
            {
                break;
            }
            link.pump(&topic, &unacked);
            // At full speed a device produces only as fast as acks come back;
            // at a set rate it keeps measuring while offline and buffers.
            let can_produce = producing && (rate_limited || unacked.len() < link.window);
            tokio::select! {
                _ = tick.tick(), if can_produce => {
                    for (seq, envelope) in firmware.next_messages() {
                        if unacked.len() >= config.buffer && !unacked.contains_key(&seq) {
                            totals.dropped_buffer_full += 1;
                            continue;
                        }
                        unacked.insert(seq, Pending { envelope, first_sent: Instant::now() });
                        link.unsent.push_back(seq);
                        totals.sent += 1;
                    }
                }
                Some(event) = event_rx.recv() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                        totals.connects += 1;
                        if !connack.session_present {
                            // The client library dropped what was in flight: send it again first.
                            let mut lost: Vec<u64> = link.inflight.drain().map(|(_, seq)| seq).collect();
                            lost.sort_unstable();
                            totals.resent += lost.len() as u64;
                            for seq in lost.into_iter().rev() {
                                link.unsent.push_front(seq);
                            }
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => link.sent(pkid),
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(seq) = link.inflight.remove(&ack.pkid) {
                            if let Some(p) = unacked.remove(&seq) {
                                totals.acked += 1;
                                totals.latency_us.push(p.first_sent.elapsed().as_micros() as u64);
                                let _ = acked.send(Acked { device: id.clone(), seq });
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        totals.connection_errors += 1;
                        tracing::debug!(device = %id, error = %err, "connection lost; reconnecting");
                    }
                },
                _ = stop.changed(), if producing => {}
                else => break,
            }
        }
        totals.unacked_at_exit = unacked.len() as u64;
        let _ = link.client.try_disconnect();
        driver.abort();
        totals
    }
}

/// The MQTT client with the bookkeeping that maps packet ids to sequence numbers.
struct Link {
    client: AsyncClient,
    /// Packet id → seq of publishes written to the connection.
    inflight: HashMap<u16, u64>,
    /// Seqs handed to the client, in order, not yet written.
    submitted: VecDeque<u64>,
    /// Seqs waiting in the offline buffer to be handed to the client.
    unsent: VecDeque<u64>,
    /// Most publishes handed to the client and not yet acknowledged.
    window: usize,
}

impl Link {
    /// Hands buffered messages to the client while the window has room.
    fn pump(&mut self, topic: &str, unacked: &BTreeMap<u64, Pending>) {
        while self.inflight.len() + self.submitted.len() < self.window {
            let Some(seq) = self.unsent.pop_front() else {
                break;
            };
            let Some(pending) = unacked.get(&seq) else {
                continue;
            };
            if self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, pending.envelope.clone())
                .is_err()
            {
                self.unsent.push_front(seq);
                break;
            }
            self.submitted.push_back(seq);
        }
    }

    /// The client wrote a publish: a new one takes the next submitted seq, a
    /// retransmission keeps its packet id.
    fn sent(&mut self, pkid: u16) {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.inflight.entry(pkid) {
            if let Some(seq) = self.submitted.pop_front() {
                slot.insert(seq);
            }
        }
    }
}

/// Polls the MQTT event loop, reconnecting after a pause when the connection fails.
async fn drive(
    mut eventloop: EventLoop,
    events: mpsc::Sender<Result<Event, rumqttc::ConnectionError>>,
    reconnect_delay: Duration,
) {
    loop {
        let event = eventloop.poll().await;
        let failed = event.is_err();
        if events.send(event).await.is_err() {
            return;
        }
        if failed {
            tokio::time::sleep(reconnect_delay).await;
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
}

impl Firmware {
    fn boot(
        index: usize,
        identity: &FleetDevice,
        fault: Option<Fault>,
        config: &SimConfig,
    ) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed ^ index as u64);
        let key = match fault {
            Some(Fault::WrongKey) => SecretKey::generate(),
            _ => identity.key.clone(),
        };
        Firmware {
            device_id: identity.device_id.clone(),
            key_id: identity.key_id,
            key,
            nonces: NonceSequence::new_boot(),
            sensors: SensorSignal::for_device(index, &mut rng),
            fault,
            rng,
            next_seq: config.first_seq,
            produced: 0,
            readings_per_message: config.readings_per_message.max(1),
            last_envelope: None,
        }
    }

    /// The messages to publish at this tick: usually one, two when a replay
    /// fault resends an earlier envelope.
    fn next_messages(&mut self) -> Vec<(u64, Bytes)> {
        let mut out = Vec::with_capacity(2);
        if self.fault == Some(Fault::Replay) && self.rng.gen_ratio(1, 10) {
            if let Some(previous) = self.last_envelope.clone() {
                out.push(previous);
            }
        }
        if self.fault == Some(Fault::Gap) && self.rng.gen_ratio(1, 20) {
            self.next_seq += self.rng.gen_range(1..5);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.produced += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        let mut readings = Vec::new();
        for _ in 0..self.readings_per_message {
            readings.extend(take_readings(&self.sensors, now, self.fault, &mut self.rng));
        }
        let plaintext = ReadingBatch {
            seq,
            ts: now,
            readings,
        }
        .to_json();
        let nonce = self.nonces.next_nonce().expect("2^64 messages per boot");
        let mut envelope = seal(&self.device_id, self.key_id, &self.key, nonce, &plaintext);
        if self.fault == Some(Fault::Tamper) && self.rng.gen_ratio(1, 5) {
            let at = self.rng.gen_range(0..envelope.len());
            envelope[at] ^= 0x01;
        }
        let envelope = Bytes::from(envelope);
        self.last_envelope = Some((seq, envelope.clone()));
        out.push((seq, envelope));
        out
    }
}

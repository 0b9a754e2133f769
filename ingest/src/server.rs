//! Starting and stopping the embedded MQTT server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ntex_io::IoConfig;
use ntex_mqtt::{MqttError, MqttServiceConfig};
use ntex_service::cfg::SharedCfg;
use ntex_service::chain_factory;
use ntex_tls::rustls::TlsAcceptor;
use ntex_util::time::Seconds;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wenu_core::stream::Stream;
use wenu_registry::Registry;

use crate::device_cache::{DeviceCache, REVISION_CHECK};
use crate::downlink::SUBSCRIPTION_QUEUE;
use crate::gate::{Gate, now_ms};
use crate::links::Links;
use crate::mqtt::{Closed, Shared};
use crate::quota::{PublishQuotas, QuotaConfig};
use crate::reports::{LastSeen, flush_last_seen};
use crate::throttle::{LoginThrottle, ThrottleConfig};
use crate::{EdgeCounters, EdgeSnapshot, Error, Result};

/// Publishes one connection may have in flight: announced to MQTT 5 clients
/// as the receive maximum; from 3.1.1 clients, reading pauses past it.
pub const RECEIVE_MAXIMUM: u16 = 64;
/// A client that has not sent its CONNECT by then is disconnected.
const CONNECT_TIMEOUT: Seconds = Seconds(10);
/// Write buffers of each connection (ntex's default is 16 KiB): what a
/// device gets back is PUBACKs, and at 10 000 connections each KiB is 10 MiB.
/// Read buffers keep ntex's defaults: at 4 KiB, a connection whose publish
/// arrived split over reads with many more behind it stalled until the
/// client's keep-alive gave up.
const WRITE_BUFFER_HIGH: usize = 4 * 1024;
const WRITE_BUFFER_LOW: usize = 512;

/// A TLS listener. With `client_ca`, it is mutual TLS: every client must
/// present a certificate signed by that CA whose common name is its device id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EdgeConfig {
    /// Plain MQTT listener (1883), for loopback and trusted networks.
    pub listen: Option<SocketAddr>,
    /// MQTT over TLS (8883), for devices on the internet.
    pub tls: Option<TlsConfig>,
    /// Publishes with a larger payload are refused.
    pub max_payload_bytes: usize,
    pub max_connections: usize,
    /// Failed logins tolerated per source address and per device id.
    #[serde(default)]
    pub login_throttle: ThrottleConfig,
    /// What one device may publish, per second and at once.
    #[serde(default)]
    pub device_quota: QuotaConfig,
    /// Where the counters snapshot is kept, for `wenu status`.
    pub counters_file: Option<PathBuf>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 1883))),
            tls: None,
            max_payload_bytes: 64 * 1024,
            max_connections: 100_000,
            login_throttle: ThrottleConfig::default(),
            device_quota: QuotaConfig::default(),
            counters_file: None,
        }
    }
}

/// A running edge.
pub struct Edge {
    tcp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    counters: Arc<EdgeCounters>,
    counters_file: Option<PathBuf>,
    tasks: Vec<JoinHandle<()>>,
    links: Arc<Links>,
    server: ntex_server::Server<ntex_server::net::Connection>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Publishes messages from the server itself (alarm notifications) to the
/// clients subscribed to their topic; cheap to clone.
#[derive(Clone)]
pub struct EdgePublisher {
    links: Arc<Links>,
}

impl EdgePublisher {
    /// Queues `payload` for delivery at QoS 1 to the current subscribers of
    /// `topic` and returns how many there are (none is not an error: MQTT
    /// keeps no messages for absent readers). A reader too far behind misses
    /// it; that is counted and logged.
    pub fn publish(&self, topic: &str, payload: bytes::Bytes) -> usize {
        let (delivered, behind) = self.links.deliver(topic, &payload);
        if behind > 0 {
            metrics::counter!("wenu_edge_deliveries_dropped_total").increment(behind as u64);
            tracing::warn!(topic = ?topic, readers = behind, "alarm readers too far behind; message not queued for them");
        }
        delivered
    }
}

impl Edge {
    /// Binds the listeners and starts serving. Ports may be 0: ask
    /// [`Edge::tcp_addr`] / [`Edge::tls_addr`] which ones the OS chose.
    pub async fn start(config: EdgeConfig, stream: Arc<dyn Stream>, registry: Registry) -> Result<Edge> {
        let previous = match &config.counters_file {
            Some(path) => EdgeSnapshot::load(path)?.unwrap_or_default(),
            None => EdgeSnapshot::default(),
        };
        let counters = Arc::new(EdgeCounters::resume(&previous));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let registry_for_sweep = registry.clone();
        // No session outlives a restart of the edge.
        registry.record_all_offline(now_ms()).await?;
        let last_seen = Arc::new(LastSeen::default());
        let gate = Arc::new(Gate {
            stream,
            devices: DeviceCache::new(registry.clone()),
            registry,
            counters: counters.clone(),
            max_payload_bytes: config.max_payload_bytes,
            password_checks: tokio::sync::Semaphore::new(cores),
            throttle: LoginThrottle::new(config.login_throttle),
            quotas: PublishQuotas::new(config.device_quota),
            last_seen: last_seen.clone(),
        });
        let links = Arc::new(Links::default());
        let (downlink, subscribed) = mpsc::channel(SUBSCRIPTION_QUEUE);
        let shared =
            Shared { gate, links: links.clone(), downlink, runtime: tokio::runtime::Handle::current() };

        let tcp = config.listen.map(bind).transpose()?;
        let tls = match &config.tls {
            Some(tls) => Some((bind(tls.listen)?, crate::tls::server_config(tls)?)),
            None => None,
        };
        let tcp_addr = tcp.as_ref().map(|(_, addr)| *addr);
        let tls_addr = tls.as_ref().map(|((_, addr), _)| *addr);
        let (server, thread) = run_server(config.clone(), cores, shared, tcp, tls).await?;

        let mut tasks = vec![
            tokio::spawn(end_revoked_sessions(registry_for_sweep.clone(), links.clone())),
            tokio::spawn(crate::downlink::run(registry_for_sweep.clone(), links.clone(), subscribed)),
            tokio::spawn(flush_last_seen(registry_for_sweep, last_seen)),
        ];
        if let Some(path) = config.counters_file.clone() {
            let counters = counters.clone();
            tasks.push(tokio::spawn(async move {
                let mut every_second = tokio::time::interval(Duration::from_secs(1));
                loop {
                    every_second.tick().await;
                    if let Err(err) = counters.snapshot(now_ms()).save(&path) {
                        tracing::warn!(error = %err, "could not save edge counters");
                    }
                }
            }));
        }
        tracing::info!(tcp = ?tcp_addr, tls = ?tls_addr, "MQTT edge listening");
        Ok(Edge {
            tcp_addr,
            tls_addr,
            counters,
            counters_file: config.counters_file,
            tasks,
            links,
            server,
            thread: Some(thread),
        })
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    pub fn publisher(&self) -> EdgePublisher {
        EdgePublisher { links: self.links.clone() }
    }

    pub fn counters(&self) -> &EdgeCounters {
        &self.counters
    }

    /// Closes the listeners and every connection, and saves the counters.
    /// Appends already handed to the stream complete there; their PUBACKs
    /// may not go out, so devices resend them (a duplicate, never a loss).
    pub async fn stop(mut self) -> Result<()> {
        self.server.stop(false).await;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        for task in std::mem::take(&mut self.tasks) {
            task.abort();
            // Wait until it is gone: a counters save in progress must not
            // race with the final one below.
            let _ = task.await;
        }
        if let Some(path) = &self.counters_file {
            let mut snapshot = self.counters.snapshot(now_ms());
            snapshot.connections = 0;
            snapshot.running = false;
            snapshot.save(path)?;
        }
        Ok(())
    }
}

type Bound = (std::net::TcpListener, SocketAddr);

fn bind(addr: SocketAddr) -> Result<Bound> {
    // A fleet reconnecting at once after a restart overflows a small accept
    // backlog and waits out SYN retries; 4096 is Linux's default cap
    // (net.core.somaxconn).
    let listener = ntex_server::net::create_tcp_listener(addr, 4096)
        .map_err(|e| Error::Listener { addr: addr.to_string(), message: e.to_string() })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Listener { addr: addr.to_string(), message: e.to_string() })?;
    Ok((listener, local))
}

/// Starts ntex's server (an accept thread and one worker thread per core,
/// each a single-threaded runtime) in its own system thread; returns its
/// handle once it runs.
async fn run_server(
    config: EdgeConfig,
    workers: usize,
    shared: Shared,
    tcp: Option<Bound>,
    tls: Option<(Bound, Arc<rustls::ServerConfig>)>,
) -> Result<(ntex_server::Server<ntex_server::net::Connection>, std::thread::JoinHandle<()>)> {
    let (started, server) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("wenu-mqtt".into())
        .spawn(move || {
            ntex_rt::System::build().name("wenu-mqtt").build(ntex_net::DefaultRuntime).block_on(async move {
                let server = match build_server(&config, workers, shared, tcp, tls) {
                    Ok(builder) => builder.run(),
                    Err(err) => {
                        let _ = started.send(Err(err));
                        return;
                    }
                };
                if started.send(Ok(server.clone())).is_ok() {
                    let _ = server.await;
                }
            })
        })
        .map_err(|e| Error::Listener { addr: "MQTT server thread".into(), message: e.to_string() })?;
    let server = server.await.map_err(|_| Error::Listener {
        addr: "MQTT server thread".into(),
        message: "stopped while starting".into(),
    })??;
    Ok((server, thread))
}

fn build_server(
    config: &EdgeConfig,
    workers: usize,
    shared: Shared,
    tcp: Option<Bound>,
    tls: Option<(Bound, Arc<rustls::ServerConfig>)>,
) -> Result<ntex_server::net::ServerBuilder> {
    let listen_error = |addr: SocketAddr, e: std::io::Error| Error::Listener {
        addr: addr.to_string(),
        message: e.to_string(),
    };
    let mut builder = ntex_server::net::ServerBuilder::new()
        .name("wenu-mqtt")
        .workers(workers)
        .backlog(4096)
        .maxconn(config.max_connections)
        .disable_signals();
    if let Some((listener, addr)) = tcp {
        let shared = shared.clone();
        builder = builder
            .listen("wenu/tcp", listener, async move |_| crate::mqtt::server(shared.clone()))
            .map_err(|e| listen_error(addr, e))?
            .config("wenu/tcp", service_config(config));
    }
    if let Some(((listener, addr), tls)) = tls {
        builder = builder
            .listen("wenu/tls", listener, async move |_| {
                chain_factory(TlsAcceptor::new(tls.clone()))
                    .map_err(|_| MqttError::Service(Closed::Unavailable))
                    .and_then(crate::mqtt::server(shared.clone()))
            })
            .map_err(|e| listen_error(addr, e))?
            .config("wenu/tls", service_config(config));
    }
    Ok(builder)
}

fn service_config(config: &EdgeConfig) -> SharedCfg {
    // Packets a little over the payload limit still reach the gate, which
    // refuses and counts them; far larger ones are cut off by the codec.
    let max_packet = (config.max_payload_bytes * 2 + 4096) as u32;
    let mqtt = MqttServiceConfig::new()
        .set_max_size(max_packet)
        // A payload split over reads is gathered whole by the sequencer;
        // ntex's own copy of it is never read, so it must not stall on a bound.
        .set_max_payload_buffer_size(max_packet as usize)
        .set_max_receive(RECEIVE_MAXIMUM)
        // No topic aliases: the sequencer reads each publish's topic as sent.
        .set_max_topic_alias(0)
        .set_max_receive_size(RECEIVE_MAXIMUM as usize * config.max_payload_bytes.max(1024))
        // QoS 2 publishes reach the gate to be refused and counted; MQTT 5
        // clients are told the maximum is 1 in the CONNACK.
        .set_max_qos(ntex_mqtt::QoS::ExactlyOnce)
        // A QoS 0 publish followed at once by DISCONNECT (mosquitto_pub does
        // that) is still stored: it has no other chance.
        .set_handle_qos_after_disconnect(Some(ntex_mqtt::QoS::AtLeastOnce))
        .set_connect_timeout(CONNECT_TIMEOUT);
    let io = IoConfig::new()
        .set_write_buf(WRITE_BUFFER_HIGH, WRITE_BUFFER_LOW, 1024)
        .set_write_page_size(ntex_bytes::BytePageSize::Size4);
    SharedCfg::new("wenu-mqtt").add(mqtt).add(io).into()
}

/// Ends the sessions of revoked tokens and certificates and of disabled
/// devices, within [`REVISION_CHECK`] of the change. The registry is asked
/// only when its revision moved; the last answer is applied every time, so
/// a login that raced a revocation is still caught.
async fn end_revoked_sessions(registry: Registry, links: Arc<Links>) {
    let mut every_check = tokio::time::interval(REVISION_CHECK);
    every_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut seen, mut revoked) = (None, wenu_registry::Revoked::default());
    loop {
        every_check.tick().await;
        let refreshed = async {
            let revision = registry.revision().await?;
            if seen != Some(revision) {
                revoked = registry.revoked().await?;
                seen = Some(revision);
            }
            Ok::<_, wenu_registry::Error>(())
        };
        if let Err(err) = refreshed.await {
            tracing::warn!(error = %err, "could not read revocations from the registry");
            continue;
        }
        let ended = links.close_revoked(&revoked);
        if ended > 0 {
            metrics::counter!("wenu_edge_sessions_revoked_total").increment(ended as u64);
            tracing::info!(sessions = ended, "closed sessions of revoked or disabled credentials");
        }
    }
}

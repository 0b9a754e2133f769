//! Starting and stopping the embedded MQTT server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rmqtt::codec::types::QoS;
use rmqtt::codec::v5::PublishProperties;
use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::{Builder, Listener};
use rmqtt::server::MqttServer;
use rmqtt::session::SessionState;
use rmqtt::types::{CodecPublish, From, Id, Publish};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use wenu_core::stream::Stream;
use wenu_registry::Registry;

use crate::device_cache::DeviceCache;
use crate::hooks::{EdgeHooks, now_ms};
use crate::quota::{PublishQuotas, QuotaConfig};
use crate::throttle::{LoginThrottle, ThrottleConfig};
use crate::{EdgeCounters, EdgeSnapshot, Error, Result};

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
    scx: ServerContext,
}

/// Publishes messages from the server itself (alarm notifications) to the
/// clients subscribed to their topic; cheap to clone.
#[derive(Clone)]
pub struct EdgePublisher {
    scx: ServerContext,
}

impl EdgePublisher {
    /// Delivers `payload` at QoS 1 to the current subscribers of `topic`
    /// (none is not an error: MQTT keeps no messages for absent readers).
    pub async fn publish(&self, topic: &str, payload: bytes::Bytes) -> Result<()> {
        let id = Id::new(self.scx.node.id(), 0, None, None, "wenu-server".into(), None);
        let packet = CodecPublish {
            dup: false,
            retain: false,
            qos: QoS::AtLeastOnce,
            topic: topic.into(),
            packet_id: None,
            payload,
            properties: Some(PublishProperties::default()),
        };
        let publish = Publish::from(packet).create_time(now_ms());
        SessionState::forwards(&self.scx, From::from_system(id), publish, false, None)
            .await
            .map_err(|e| Error::Publish(e.to_string()))
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
        let scx = ServerContext::new().build().await;
        let register = scx.extends.hook_mgr().register();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let password_checks = Arc::new(tokio::sync::Semaphore::new(cores));
        let throttle = Arc::new(LoginThrottle::new(config.login_throttle));
        let devices = Arc::new(DeviceCache::new(registry.clone()));
        let quotas = Arc::new(PublishQuotas::new(config.device_quota));
        for hook in [
            Type::ClientAuthenticate,
            Type::MessagePublishCheckAcl,
            Type::ClientSubscribeCheckAcl,
            Type::ClientConnected,
            Type::ClientDisconnected,
        ] {
            let handler = EdgeHooks {
                stream: stream.clone(),
                registry: registry.clone(),
                counters: counters.clone(),
                max_payload_bytes: config.max_payload_bytes,
                password_checks: password_checks.clone(),
                throttle: throttle.clone(),
                devices: devices.clone(),
                quotas: quotas.clone(),
            };
            register.add_priority(hook, 0, Box::new(handler)).await;
        }
        register.start().await;

        // Packets a little over the payload limit still reach the hook, which
        // refuses and counts them; far larger ones are cut off by the codec.
        let max_packet = (config.max_payload_bytes * 2 + 4096) as u32;
        let mut server = MqttServer::new(scx.clone());
        let mut tcp_addr = None;
        if let Some(addr) = config.listen {
            let listener = bind(listener_builder(addr, &config, max_packet).name("wenu/tcp"), |b| b.tcp())?;
            tcp_addr = Some(local_addr(&listener, addr)?);
            server = server.listener_by_id(listener, tcp_addr.unwrap().port());
        }
        let mut tls_addr = None;
        if let Some(tls) = &config.tls {
            let builder = listener_builder(tls.listen, &config, max_packet)
                .name("wenu/tls")
                .tls_cert(Some(tls.cert.display().to_string()))
                .tls_key(Some(tls.key.display().to_string()))
                .tls_client_ca_certs(tls.client_ca.as_ref().map(|p| p.display().to_string()))
                .tls_cross_certificate(tls.client_ca.is_some())
                .collect_cert_info(tls.client_ca.is_some());
            let listener = bind(builder, |b| b.tls())?;
            tls_addr = Some(local_addr(&listener, tls.listen)?);
            server = server.listener_by_id(listener, tls_addr.unwrap().port());
        }
        let server = server.build();
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(err) = server.run().await {
                tracing::error!(error = %err, "MQTT server stopped");
            }
        })];
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
        Ok(Edge { tcp_addr, tls_addr, counters, counters_file: config.counters_file, tasks, scx })
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    pub fn publisher(&self) -> EdgePublisher {
        EdgePublisher { scx: self.scx.clone() }
    }

    pub fn counters(&self) -> &EdgeCounters {
        &self.counters
    }

    /// Stops accepting connections and saves the counters. Appends already
    /// handed to the stream complete there; their PUBACKs may not go out, so
    /// devices resend them (a duplicate, never a loss).
    pub async fn stop(self) -> Result<()> {
        for task in self.tasks {
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

fn listener_builder(addr: SocketAddr, config: &EdgeConfig, max_packet: u32) -> Builder {
    Builder::new()
        .laddr(addr)
        .reuseaddr(Some(true))
        .allow_anonymous(false)
        // A fleet reconnecting at once after a restart overflows rmqtt's
        // default accept backlog (512) and waits out SYN retries; 4096 is
        // Linux's default cap (net.core.somaxconn).
        .backlog(4096)
        // Announced in MQTT 5 CONNACKs; QoS 2 publishes are refused anyway.
        .max_qos_allowed(QoS::AtLeastOnce)
        .max_packet_size(max_packet)
        .max_connections(config.max_connections)
}

fn bind(builder: Builder, finish: impl FnOnce(Listener) -> rmqtt::Result<Listener>) -> Result<Listener> {
    let addr = builder.laddr;
    builder
        .bind()
        .and_then(finish)
        .map_err(|e| Error::Listener { addr: addr.to_string(), message: e.to_string() })
}

fn local_addr(listener: &Listener, requested: SocketAddr) -> Result<SocketAddr> {
    listener.local_addr().map_err(|e| Error::Listener { addr: requested.to_string(), message: e.to_string() })
}

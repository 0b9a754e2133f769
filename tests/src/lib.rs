//! Helpers for Wenu's cross-crate tests: start the real edge on the real
//! stream and registry on `127.0.0.1:0`, drive it with real MQTT clients,
//! and read back what the log holds; and the ports' conformance suites,
//! which every backend of a port must pass; the moto server the AWS
//! backends run against, and a proxy in front of it that throttles (what
//! moto cannot); a webhook receiver and an SMTP server for the alarm tests.

pub mod alarm_fleet;
pub mod keyring_conformance;
pub mod moto;
pub mod queue_conformance;
pub mod smtp_server;
pub mod stream_conformance;
pub mod table_conformance;
pub mod throttling_proxy;
pub mod webhook_receiver;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use wenu_core::envelope::open_with_keyring;
use wenu_core::fleet::{Fleet, FleetDevice};
use wenu_core::keyring::Keyring;
use wenu_core::reading::ReadingBatch;
use wenu_core::stream::{Record, StartAt};
use wenu_ingest::{Edge, EdgeConfig, TlsConfig};
use wenu_local::{SqliteStream, StreamOptions};
use wenu_registry::{Registry, provision_fleet};

/// How a test edge listens.
pub enum Listen {
    Tcp,
    /// TLS with password authentication.
    Tls,
    /// Mutual TLS: client certificates required.
    MutualTls,
}

/// A running edge with its data directory, devices and certificates.
pub struct TestEdge {
    pub dir: tempfile::TempDir,
    pub edge: Edge,
    pub stream: SqliteStream,
    pub registry: Registry,
    pub keyring: Keyring,
    pub fleet: Fleet,
    pub certs: PathBuf,
}

impl TestEdge {
    /// Provisions `devices` devices of company `acme` and starts an edge.
    pub async fn start(listen: Listen, devices: usize) -> TestEdge {
        Self::start_with(listen, devices, StreamOptions::default(), |_| {}).await
    }

    pub async fn start_with(
        listen: Listen,
        devices: usize,
        stream_options: StreamOptions,
        adjust: impl FnOnce(&mut EdgeConfig),
    ) -> TestEdge {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("registry.db")).await.unwrap();
        let mut keyring = Keyring::default();
        let fleet =
            Fleet { devices: provision_fleet(&registry, &mut keyring, "acme", devices).await.unwrap() };
        let certs = dir.path().join("certs");
        let ids: Vec<String> = fleet.devices.iter().map(|d| d.device_id.clone()).collect();
        wenu_ingest::certs::init_local_ca(
            &certs,
            &["localhost".into(), "127.0.0.1".into()],
            &ids,
            wenu_ingest::certs::DEFAULT_DAYS,
        )
        .unwrap();
        let stream = SqliteStream::open(&dir.path().join("stream.db"), stream_options).unwrap();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let tls = |client_ca: Option<PathBuf>| TlsConfig {
            listen: loopback,
            cert: certs.join("server.crt"),
            key: certs.join("server.key"),
            client_ca,
        };
        let mut config = EdgeConfig { listen: None, tls: None, counters_file: None, ..EdgeConfig::default() };
        match listen {
            Listen::Tcp => config.listen = Some(loopback),
            Listen::Tls => config.tls = Some(tls(None)),
            Listen::MutualTls => config.tls = Some(tls(Some(certs.join("ca.crt")))),
        }
        adjust(&mut config);
        let edge = Edge::start(config, Arc::new(stream.clone()), registry.clone()).await.unwrap();
        TestEdge { dir, edge, stream, registry, keyring, fleet, certs }
    }

    pub fn port(&self) -> u16 {
        self.edge.tcp_addr().or(self.edge.tls_addr()).unwrap().port()
    }

    pub fn device(&self, n: usize) -> &FleetDevice {
        &self.fleet.devices[n]
    }

    pub async fn records(&self) -> Vec<Record> {
        self.stream.read(StartAt::Oldest, 1_000_000).await.unwrap()
    }

    /// Every (device, seq) the log holds, with how often it is there.
    pub async fn decoded_seqs(&self) -> BTreeMap<(String, u64), usize> {
        decode_seqs(&self.records().await, &self.keyring)
    }
}

/// Decrypts records and counts each (device, seq); records that don't
/// decrypt are skipped (the lake stage quarantines them).
pub fn decode_seqs(records: &[Record], keyring: &Keyring) -> BTreeMap<(String, u64), usize> {
    let mut seen = BTreeMap::new();
    for record in records {
        if let Ok(plaintext) = open_with_keyring(&record.device_id, &record.payload, keyring)
            && let Ok(batch) = ReadingBatch::from_json(&plaintext)
        {
            *seen.entry((record.device_id.clone(), batch.seq)).or_default() += 1;
        }
    }
    seen
}

/// Runs `mosquitto_pub` (Debian's mosquitto-clients) with these arguments,
/// off the async runtime.
pub async fn mosquitto_pub(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("mosquitto_pub")
            .args(&args)
            .output()
            .expect("mosquitto_pub runs (apt install mosquitto-clients)")
    })
    .await
    .unwrap()
}

pub fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

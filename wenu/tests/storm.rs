//! A connect storm: a whole fleet connecting at once to `wenu serve`, as
//! after a restart, while clients from another address hammer it with bad
//! passwords. Every device gets in at its first attempt and is acknowledged.
//! (How long it takes is a benchmark figure: `wenu bench connections`.) The
//! server is its own process: 10 000 connections need 10 000 descriptors
//! on each side.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Login, Packet};
use support::start_pipeline;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use wenu_firmware_sim::{LoadConfig, run_load};

const DEVICES: usize = 10_000;
const ATTACKERS: usize = 200;

/// One bad-password CONNECT from `source`, encoded by rumqttc; whether the
/// edge answered it (with a refusal) before closing.
async fn bad_login(source: [u8; 4], port: u16, device_id: &str) -> bool {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    let Ok(mut stream) = socket.connect(([127, 0, 0, 1], port).into()).await else { return false };
    let mut connect = Connect::new(device_id);
    connect.login = Some(Login::new(device_id, "not-the-password"));
    let mut out = BytesMut::new();
    connect.write(&mut out).unwrap();
    if stream.write_all(&out).await.is_err() {
        return false;
    }
    let mut input = BytesMut::new();
    loop {
        match Packet::read(&mut input, 1024) {
            Ok(Packet::ConnAck(ack)) => {
                return ack.code != rumqttc::mqttbytes::v4::ConnectReturnCode::Success;
            }
            Ok(_) => return false,
            Err(_) => {}
        }
        match stream.read_buf(&mut input).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_connects_at_once_while_bad_password_clients_hammer() {
    let pipeline = start_pipeline(DEVICES);
    let port = pipeline.port;
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let mut attackers = tokio::task::JoinSet::new();
    for n in 0..ATTACKERS {
        let (stop, refused) = (stop.clone(), refused.clone());
        // Guessing the fleet's own ids, from 127.0.0.2.
        let target = pipeline.fleet.devices[n % DEVICES].device_id.clone();
        attackers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let attempt =
                    tokio::time::timeout(Duration::from_secs(5), bad_login([127, 0, 0, 2], port, &target));
                if attempt.await == Ok(true) {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    // Hammering before the fleet starts.
    while refused.load(Ordering::Relaxed) < ATTACKERS as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let load = LoadConfig {
        host: "127.0.0.1".into(),
        port,
        rate_per_device: 0.0,
        window: 1,
        duration: Duration::from_secs(1),
        first_seq: 1,
        drain_timeout: Duration::from_secs(120),
    };
    let report = run_load(&pipeline.fleet, load).await.expect("every device connected");
    stop.store(true, Ordering::Relaxed);
    while attackers.join_next().await.is_some() {}

    assert_eq!(report.reconnects, 0, "every device got in at its first attempt: {report:?}");
    let metrics = pipeline.server.metrics();
    assert_eq!(report.unacked_at_exit, 0);
    assert!(report.acked >= DEVICES as u64, "every device was acknowledged: {report:?}");
    let metric = |name: &str| metrics.get(name).copied().unwrap_or(0.0) as u64;
    assert_eq!(metric("wenu_edge_connects_total{outcome=\"accepted\"}"), DEVICES as u64);
    // The attackers' address spent its failure budget and was refused unseen.
    assert!(metric("wenu_edge_connects_total{outcome=\"refused\",reason=\"throttled\"}") > 0, "{metrics:#?}");
    eprintln!(
        "{DEVICES} devices connected in {:.1} s beside {} refused bad logins",
        report.connect_secs,
        refused.load(Ordering::Relaxed),
    );
}

//! `wenu bench logins`: MQTT logins per second that `wenu serve`, confined
//! to one core, answers: good ones (CONNACK accepted) and bad ones (a wrong
//! password for a real device id), each client connecting, reading its
//! CONNACK and disconnecting in a loop. The failed-login throttle is lifted
//! for the run, so bad logins are checked, not refused unseen.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::Args;
use hdrhistogram::Histogram;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Login, Packet};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wenu_core::fleet::Fleet;

use crate::process::OneCoreServer;

#[derive(Args)]
pub struct LoginsArgs {
    /// Devices provisioned (logins go round them).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Clients logging in at once.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of good logins, then as many of bad ones.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

pub async fn run(args: LoginsArgs) -> anyhow::Result<serde_json::Value> {
    let unlimited = u32::MAX.to_string();
    let setup = OneCoreServer::start(
        "logins",
        args.devices,
        &[
            ("WENU_MQTT_FAILED_LOGINS_PER_ADDRESS_PER_MINUTE", &unlimited),
            ("WENU_MQTT_FAILED_LOGINS_PER_DEVICE_PER_MINUTE", &unlimited),
        ],
    )
    .await?;
    let (fleet, server) = (&setup.fleet, &setup.server);

    let mut report = serde_json::Map::new();
    for good in [true, false] {
        let name = if good { "good" } else { "bad" };
        eprintln!("{name} logins for {} s…", args.seconds);
        let (logins, latency, elapsed) = hammer(fleet, server.port, &args, good).await?;
        report.insert(
            name.into(),
            json!({
                "logins": logins,
                "logins_per_sec": (logins as f64 / elapsed).round(),
                "connack_p50_ms": latency.value_at_quantile(0.5) as f64 / 1000.0,
                "connack_p99_ms": latency.value_at_quantile(0.99) as f64 / 1000.0,
            }),
        );
    }
    report.insert("clients".into(), json!(args.clients));
    report.insert("server_cores".into(), json!(1));
    Ok(serde_json::Value::Object(report))
}

/// `clients` loops of connect → CONNACK → disconnect for `seconds`; the
/// logins answered as expected, their latency (µs) and the elapsed seconds.
async fn hammer(
    fleet: &Fleet,
    port: u16,
    args: &LoginsArgs,
    good: bool,
) -> anyhow::Result<(u64, Histogram<u64>, f64)> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..args.clients {
        let devices: Vec<_> = fleet.devices.iter().skip(client).step_by(args.clients).cloned().collect();
        clients.spawn(async move {
            let mut latency = Histogram::<u64>::new(3).expect("histogram");
            let mut logins = 0u64;
            for device in devices.iter().cycle() {
                if Instant::now() >= deadline {
                    break;
                }
                let password = if good { device.password.0.clone() } else { "not-the-password".into() };
                let sent = Instant::now();
                let accepted = login(port, &device.device_id, &password).await?;
                anyhow::ensure!(accepted == good, "{}: CONNACK accepted = {accepted}", device.device_id);
                latency.record(sent.elapsed().as_micros() as u64).ok();
                logins += 1;
            }
            Ok((logins, latency))
        });
    }
    let mut total = 0;
    let mut latency = Histogram::<u64>::new(3)?;
    while let Some(done) = clients.join_next().await {
        let (logins, client_latency) = done??;
        total += logins;
        latency.add(client_latency)?;
    }
    Ok((total, latency, started.elapsed().as_secs_f64()))
}

/// One MQTT 3.1.1 login; whether the CONNACK accepted it.
async fn login(port: u16, device_id: &str, password: &str) -> anyhow::Result<bool> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let mut connect = rumqttc::mqttbytes::v4::Connect::new(device_id);
    connect.login = Some(Login::new(device_id, password));
    let mut buffer = BytesMut::new();
    connect.write(&mut buffer)?;
    stream.write_all(&buffer).await?;
    buffer.clear();
    loop {
        match Packet::read(&mut buffer, 1024) {
            Ok(Packet::ConnAck(ack)) => {
                let accepted = ack.code == ConnectReturnCode::Success;
                if accepted {
                    let _ = stream.write_all(&[0xe0, 0x00]).await; // DISCONNECT
                }
                return Ok(accepted);
            }
            Ok(other) => anyhow::bail!("expected a CONNACK, got {other:?}"),
            Err(_) => {}
        }
        anyhow::ensure!(stream.read_buf(&mut buffer).await? > 0, "connection closed before the CONNACK");
    }
}

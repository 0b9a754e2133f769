//! `wenu bench idle`: what idle connections cost a server's memory. N
//! devices log in (MQTT 3.1.1 CONNECT, rumqttc's encoder) and then only hold
//! their connection, against `wenu serve` and against Mosquitto, each a
//! separate process measured from outside. Connections come from several
//! loopback source addresses, 25 000 each, so the ports of one do not run out.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bytes::BytesMut;
use clap::Args;
use indicatif::ProgressBar;
use rumqttc::mqttbytes::v4::Connect;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use crate::process::{Memory, Scratch, ServerProcess};

#[derive(Args, Clone)]
pub struct IdleArgs {
    /// Connections to open and hold. Each side needs as many open files:
    /// raise the limit first (`ulimit -n 250000` as root).
    #[arg(long, default_value_t = 100_000)]
    pub connections: usize,
    /// CONNECTs in progress at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Skip the Mosquitto baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Mosquitto binary for the baseline.
    #[arg(long, default_value = "mosquitto")]
    pub mosquitto: String,
}

/// Connections per loopback source address.
const PER_SOURCE: usize = 25_000;
/// Keep-alive asked for in the CONNECT: long enough to hold without pings.
const KEEP_ALIVE_SECS: u16 = 900;

#[derive(Debug, Serialize)]
pub struct Held {
    pub connections: usize,
    pub connect_secs: f64,
    /// The server's memory before the first connection and with all held.
    pub before: Memory,
    pub held: Memory,
    /// (held RSS − RSS before) ÷ connections.
    pub kib_per_connection: f64,
}

pub async fn run(args: IdleArgs) -> anyhow::Result<serde_json::Value> {
    let limit = open_files_limit()?;
    anyhow::ensure!(
        limit >= args.connections as u64 + 1_000,
        "{} connections need as many open files on each side; the limit is {limit}: raise it first (ulimit -n {})",
        args.connections,
        args.connections + 10_000
    );
    let scratch = Scratch::new("bench-idle")?;
    eprintln!("provisioning {} devices…", args.connections);
    let fleet = crate::connections::provision(scratch.path(), args.connections).await?;
    let logins: Vec<(String, String)> =
        fleet.devices.iter().map(|d| (d.device_id.clone(), d.password.0.clone())).collect();

    let server = ServerProcess::wenu(scratch.path(), &[])?;
    let wenu = hold(&server, &logins, &args, 0).await.context("wenu serve")?;
    drop(server);
    eprintln!("wenu: {wenu:?}");
    let mosquitto = if args.no_baseline {
        None
    } else {
        let broker = ServerProcess::mosquitto(&args.mosquitto)?;
        // Anonymous, with the same client ids.
        let anonymous: Vec<(String, String)> =
            logins.iter().map(|(id, _)| (id.clone(), String::new())).collect();
        // Other source addresses: the ports of the first run are in TIME_WAIT.
        let held = hold(&broker, &anonymous, &args, 100).await.context("mosquitto")?;
        eprintln!("mosquitto: {held:?}");
        Some(held)
    };
    Ok(serde_json::json!({ "wenu": wenu, "mosquitto": mosquitto }))
}

/// Opens one connection per login against `server` (from loopback sources
/// numbered from `first_source`), holds them all, and reads the server's memory.
async fn hold(
    server: &ServerProcess,
    logins: &[(String, String)],
    args: &IdleArgs,
    first_source: usize,
) -> anyhow::Result<Held> {
    let before = server.memory()?;
    let address = SocketAddr::from(([127, 0, 0, 1], server.port));
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let progress = ProgressBar::new(logins.len() as u64);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(logins.len());
    for (n, (client_id, password)) in logins.iter().enumerate() {
        let permit = permits.clone().acquire_owned().await?;
        let source_index = first_source + n / PER_SOURCE;
        let source = Ipv4Addr::new(127, 0, (source_index / 250) as u8, (1 + source_index % 250) as u8);
        let (client_id, password) = (client_id.clone(), password.clone());
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let held = connect(address, source, &client_id, &password).await;
            drop(permit);
            progress.inc(1);
            held
        }));
    }
    let mut streams = Vec::with_capacity(tasks.len());
    for task in tasks {
        streams.push(task.await??);
    }
    progress.finish_and_clear();
    let connect_secs = started.elapsed().as_secs_f64();
    let held = server.memory()?;
    let kib_per_connection = (held.rss_mib - before.rss_mib) * 1024.0 / streams.len() as f64;
    Ok(Held { connections: streams.len(), connect_secs, before, held, kib_per_connection })
}

/// One MQTT 3.1.1 login from `source`; the connection once the CONNACK accepted it.
async fn connect(
    address: SocketAddr,
    source: Ipv4Addr,
    client_id: &str,
    password: &str,
) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let mut stream = socket.connect(address).await?;
    let mut connect = Connect::new(client_id);
    connect.keep_alive = KEEP_ALIVE_SECS;
    if !password.is_empty() {
        connect.set_login(client_id, password);
    }
    let mut packet = BytesMut::new();
    connect.write(&mut packet).map_err(|e| anyhow::anyhow!("encoding CONNECT: {e:?}"))?;
    stream.write_all(&packet).await?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).await?;
    anyhow::ensure!(connack[0] == 0x20 && connack[3] == 0, "CONNECT of {client_id} refused: {connack:?}");
    Ok(stream)
}

/// The soft limit on open files of this process (its children inherit it).
fn open_files_limit() -> anyhow::Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
        .context("no open-file limit in /proc/self/limits")
}

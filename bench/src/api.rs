//! `wenu bench api`: the dashboard's heaviest common request, a day of
//! 1-minute stats of one sensor (1 440 buckets), over HTTP from many
//! concurrent clients: first on an idle server, then while simulated devices
//! publish at a steady rate, whose acknowledgements are compared with the
//! same fleet publishing alone. The server is a child process, so its CPU
//! per request is its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::watch;
use wenu_core::fleet::Fleet;
use wenu_core::keyring::Keyring;
use wenu_firmware_sim::{FleetReport, SimConfig, run_fleet};
use wenu_local::SqliteTable;
use wenu_registry::{Registry, Role, provision_fleet};
use wenu_stats::{Job, Point, Resolution, Retention, SeriesKey, apply_job};

use crate::process::{Scratch, ServerProcess};
use anyhow::Context;
use wenu::config::Config;
use wenu_core::clock::now_ms;

#[derive(Args)]
pub struct ApiArgs {
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Seconds of queries in each phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Devices: each has a day of 1-minute stats for `temp-1`, and publishes
    /// during the second phase.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// QoS 1 messages per second from all devices during the second phase.
    #[arg(long, default_value_t = 27_000.0)]
    ingest_rate: f64,
}

pub async fn run(mut config: Config, args: ApiArgs) -> anyhow::Result<serde_json::Value> {
    let scratch = Scratch::new("api")?;
    let scratch = scratch.path();
    config.data_dir = scratch.to_owned();

    eprintln!("provisioning {} devices and a day of 1-minute stats each…", args.devices);
    let registry = Registry::open(&Registry::default_path(scratch)).await?;
    let mut keyring = Keyring::default();
    let fleet = Fleet { devices: provision_fleet(&registry, &mut keyring, "bench", args.devices).await? };
    keyring.save(&config.keyring_path())?;
    wenu::devices::define_simulated_sensors(&registry, &fleet).await?;
    seed_day_of_stats(&config, &fleet).await?;
    let token = registry.create_token(Some("bench"), Role::Viewer, "bench", None).await?.bearer;
    registry.close().await;

    // A process of its own, so that its CPU per request is its own. The
    // server's rate limit is not what is measured: lifted for tokens
    // without a rate of their own (a token's own rate is capped lower).
    let server = ServerProcess::wenu(
        scratch,
        &[("WENU_HTTP_RATE_PER_SECOND", "1000000"), ("WENU_HTTP_BURST", "1000000")],
    )?;
    let base = format!("http://{}", server.http.context("wenu serve printed no HTTP address")?);
    let devices: Arc<Vec<String>> = Arc::new(fleet.devices.iter().map(|d| d.device_id.clone()).collect());

    eprintln!(
        "baseline, idle server: {} clients asking /api/v1/health for {} s…",
        args.clients, args.seconds
    );
    let baseline = query_load(&base, &token, &devices, &args, Query::Health, &server).await?;
    eprintln!("idle server: {} clients for {} s…", args.clients, args.seconds);
    let idle = query_load(&base, &token, &devices, &args, Query::DayOfMinutes, &server).await?;

    eprintln!("ingest alone at {} msg/s for {} s…", args.ingest_rate, args.seconds);
    let alone = publish_while(&fleet, server.port, &args, async {
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        Ok(serde_json::Value::Null)
    })
    .await?
    .1;
    eprintln!("with ingest at {} msg/s: {} clients for {} s…", args.ingest_rate, args.clients, args.seconds);
    let (loaded, ingest) = publish_while(
        &fleet,
        server.port,
        &args,
        query_load(&base, &token, &devices, &args, Query::DayOfMinutes, &server),
    )
    .await?;
    // With the fleet publishing, the server's CPU is mostly the pipeline's.
    let mut loaded = loaded;
    if let Some(figures) = loaded.as_object_mut() {
        figures.remove("server_cpu_ms_per_request");
    }

    let ingest_figures = |report: &FleetReport| {
        json!({
            "target_per_sec": args.ingest_rate,
            "acked_per_sec": report.steady_acked_per_sec.round(),
            "puback_p50_ms": report.puback_latency_p50_ms,
            "puback_p99_ms": report.puback_latency_p99_ms,
        })
    };
    let result = json!({
        "query": "GET /api/v1/stats?res=1m&from=-24h (1440 buckets)",
        "clients": args.clients,
        "baseline_health": baseline,
        "idle": idle,
        "with_ingest": loaded,
        "ingest_alone": ingest_figures(&alone),
        "ingest": ingest_figures(&ingest),
        "ingest_kept": (ingest.steady_acked_per_sec / alone.steady_acked_per_sec.max(1.0) * 1000.0).round() / 1000.0,
    });
    Ok(result)
}

/// The fleet publishes at `--ingest-rate` while `work` runs (after two
/// seconds to connect and reach the rate); what `work` returned and what
/// the fleet saw.
async fn publish_while(
    fleet: &Fleet,
    port: u16,
    args: &ApiArgs,
    work: impl Future<Output = anyhow::Result<serde_json::Value>>,
) -> anyhow::Result<(serde_json::Value, FleetReport)> {
    let (stop_tx, stop) = watch::channel(false);
    let sim = SimConfig {
        port,
        rate_per_device: args.ingest_rate / args.devices as f64,
        window: 64,
        buffer: 1_000_000,
        ..SimConfig::default()
    };
    let ingest = {
        let fleet = fleet.clone();
        tokio::spawn(async move { run_fleet(&fleet, sim, stop).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let done = work.await;
    stop_tx.send_replace(true);
    let report = ingest.await??;
    Ok((done?, report))
}

/// Minutes of stats seeded around now: the last day, half an hour before
/// it, and the half hour ahead, so that a query for the last 24 hours finds
/// 1 440 buckets (the current minute's included) however many minute
/// boundaries the benchmark crosses.
const SEEDED_MINUTES: u64 = 1_500;
const SEEDED_AHEAD_MINUTES: u64 = 30;

/// One reading a minute for the last day, for every device's `temp-1`.
async fn seed_day_of_stats(config: &Config, fleet: &Fleet) -> anyhow::Result<()> {
    let table = SqliteTable::open(&config.stats_path())?;
    let first =
        Resolution::Minute.bucket_start(now_ms()) - (SEEDED_MINUTES - SEEDED_AHEAD_MINUTES) as i64 * 60_000;
    for device in &fleet.devices {
        let points = (0..SEEDED_MINUTES)
            .map(|i| Point {
                seq: i + 1,
                ts: first + i as i64 * 60_000,
                value: 20.0 + (i % 60) as f64 / 10.0,
            })
            .collect();
        let series = SeriesKey {
            company: device.company.clone(),
            device: device.device_id.clone(),
            sensor: "temp-1".into(),
        };
        apply_job(&table, &Job { series, points, retention: Retention::default() }).await?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Query {
    /// A day of one device's 1-minute stats: what a dashboard chart asks.
    DayOfMinutes,
    /// `/api/v1/health`: the same server, clients and HTTP round trip with
    /// next to no work behind it, the baseline of the figure above.
    Health,
}

/// `clients` tasks, each querying a device after another for `seconds`.
async fn query_load(
    base: &str,
    token: &str,
    devices: &Arc<Vec<String>>,
    args: &ApiArgs,
    query: Query,
    server: &ServerProcess,
) -> anyhow::Result<serde_json::Value> {
    // The clients stand for dashboards on other machines: on the query
    // threads' low priority, so that on this one they take the CPU left
    // over rather than the load generator's (the server's own HTTP threads
    // are at that priority too).
    let runtime = wenu::priority::query_runtime()?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let server_cpu = server.cpu_seconds()?;
    let mut tasks = Vec::new();
    for n in 0..args.clients {
        let (client, base, token, devices) =
            (client.clone(), base.to_owned(), token.to_owned(), devices.clone());
        tasks.push(runtime.spawn(async move {
            let mut latencies = Histogram::<u64>::new(3).expect("valid histogram");
            let mut i = n;
            while Instant::now() < deadline {
                let device = &devices[i % devices.len()];
                i += stride(devices.len());
                let url = match query {
                    Query::DayOfMinutes => {
                        format!("{base}/api/v1/stats?device={device}&sensor=temp-1&res=1m&from=-24h")
                    }
                    Query::Health => format!("{base}/api/v1/health"),
                };
                let sent = Instant::now();
                let response = client.get(url).bearer_auth(&token).send().await?;
                anyhow::ensure!(response.status().is_success(), "HTTP {}", response.status());
                let body = response.bytes().await?;
                latencies.record(sent.elapsed().as_micros() as u64)?;
                if let Query::DayOfMinutes = query {
                    // Counted, not parsed into values: the clients share the server's cores.
                    let page: Page = serde_json::from_slice(&body)?;
                    anyhow::ensure!(
                        page.items.len() >= 1440,
                        "{} buckets, expected a day's 1440",
                        page.items.len()
                    );
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Histogram::<u64>::new(3)?;
    for task in tasks {
        all.add(task.await??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = server.cpu_seconds()? - server_cpu;
    let ms = |q: f64| (all.value_at_quantile(q) as f64 / 1000.0 * 100.0).round() / 100.0;
    Ok(json!({
        "requests": all.len(),
        "requests_per_sec": (all.len() as f64 / elapsed).round(),
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "max_ms": (all.max() as f64 / 10.0).round() / 100.0,
        "server_cores": (server_cpu / elapsed * 100.0).round() / 100.0,
        "server_cpu_ms_per_request": (server_cpu * 1000.0 / all.len().max(1) as f64 * 1000.0).round() / 1000.0,
    }))
}

/// A page of the stats response, its rows skipped unread.
#[derive(serde::Deserialize)]
struct Page {
    items: Vec<serde::de::IgnoredAny>,
}

/// Clients walk the devices with a stride so they rarely ask for the same one at once.
fn stride(devices: usize) -> usize {
    if devices > 7 { 7 } else { 1 }
}

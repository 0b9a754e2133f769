//! `wenu bench stats`: readings per second through enrich → jobs queue →
//! stats workers → stats table over a prepared stream, and the latency of a
//! dashboard's 1-day query of 1-minute stats (1,440 buckets) against DuckDB
//! computing the same buckets from the Parquet lake of the same readings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use object_store::local::LocalFileSystem;
use serde_json::json;
use tokio::sync::watch;
use wenu_core::catalog::SensorSpec;
use wenu_core::keyring::Keyring;
use wenu_core::queue::Queue;
use wenu_core::stream::{NewRecord, StartAt, Stream};
use wenu_decrypt::{DecodeLimits, Directory, FixedKeys};
use wenu_enrich::{Catalog, DevicePlacement, EnrichStage, FixedCatalog};
use wenu_lake::LakeStage;
use wenu_local::{QueueOptions, SqliteQueue, SqliteStream, SqliteTable, StreamOptions};
use wenu_stats::worker::{TableHandler, WorkerOptions, run_workers};
use wenu_stats::{Resolution, SeriesKey, read_summaries};

use crate::lake::{bench_message, fleet, read_batch};
use crate::process::{Scratch, own_memory};
use wenu_core::clock::now_ms;

#[derive(Args)]
pub struct StatsArgs {
    #[arg(long, default_value_t = 250)]
    devices: u64,
    /// Sensors per device (readings per message); series = devices × sensors.
    #[arg(long, default_value_t = 4)]
    sensors: u64,
    /// Messages per device.
    #[arg(long, default_value_t = 1_440)]
    per_device: u64,
    /// The event times of each device's messages are spread evenly over this
    /// many minutes: 1,440 gives one reading per series and minute over a day
    /// (every reading opens a new minute bucket: the heaviest case for the
    /// stats workers); fewer minutes put more readings in each bucket.
    #[arg(long, default_value_t = 1_440)]
    span_minutes: u64,
    /// Stats workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Enrich batch size in MiB of envelopes.
    #[arg(long, default_value_t = 4)]
    batch_mib: usize,
    /// Repetitions of the 1-day query.
    #[arg(long, default_value_t = 500)]
    queries: u64,
    /// Python with the `duckdb` module, for the baseline (the test command's venv).
    #[arg(long, env = "DUCKDB_PYTHON")]
    python: Option<String>,
    /// Skip the DuckDB baseline.
    #[arg(long)]
    no_baseline: bool,
}

pub async fn run(args: StatsArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(args.devices > 0 && args.sensors > 0 && args.per_device > 0, "counts must be positive");
    let scratch = Scratch::new("stats")?;
    let scratch = scratch.path();
    let (keyring, directory) = fleet(args.devices);
    let stream = SqliteStream::open(&scratch.join("stream.db"), StreamOptions::default())?;
    let day_start = prepare(&stream, &keyring, &args).await?;

    let queue = SqliteQueue::open(&scratch.join("queue.db"), QueueOptions::default())?;
    let table = SqliteTable::open(&scratch.join("stats.db"))?;
    let throughput = enrich_and_count(&args, &stream, &keyring, &directory, &queue, &table, scratch).await?;

    let series = SeriesKey { company: "bench".into(), device: "bench-00000".into(), sensor: "s-0".into() };
    let (from, to) = (day_start, day_start + 86_400_000);
    let query = query_latency(&table, &series, from, to, args.queries).await?;

    let duckdb = if args.no_baseline {
        None
    } else {
        Some(duckdb_baseline(&args, &stream, keyring, directory, scratch, &series, from, to).await?)
    };
    let speedup = duckdb.as_ref().and_then(|d| Some(d["p50_ms"].as_f64()? / query["p50_ms"].as_f64()?));
    let report = json!({
        "series": args.devices * args.sensors,
        "readings": args.devices * args.sensors * args.per_device,
        "span_minutes": args.span_minutes,
        "workers": args.workers,
        "throughput": throughput,
        "query_1d_of_1m": query,
        "duckdb_same_buckets_from_lake": duckdb,
        "query_speedup_vs_duckdb_p50": speedup,
        "peak_rss_mib": own_memory()?.peak_rss_mib.round(),
    });
    Ok(report)
}

/// Seals every device's messages into the stream in time order; returns the
/// start of the span (unix ms, a minute boundary).
async fn prepare(stream: &SqliteStream, keyring: &Keyring, args: &StatsArgs) -> anyhow::Result<i64> {
    let span_ms = args.span_minutes as i64 * 60_000;
    let start = Resolution::Minute.bucket_start(now_ms() - span_ms - 120_000);
    let messages = args.devices * args.per_device;
    eprintln!("preparing {messages} messages of {} readings…", args.sensors);
    let progress = ProgressBar::new(messages);
    let mut m = 0;
    while m < messages {
        let chunk: Vec<NewRecord> = (m..messages.min(m + 10_000))
            .map(|m| {
                let (device, k) = (m % args.devices, m / args.devices);
                let ts = start + (k as i64 * span_ms) / args.per_device as i64;
                bench_message(keyring, m, device, k + 1, ts, args.sensors).1
            })
            .collect();
        let n = chunk.len() as u64;
        stream.append(chunk).await?;
        progress.inc(n);
        m += n;
    }
    progress.finish_and_clear();
    Ok(start)
}

fn catalog(args: &StatsArgs) -> Catalog {
    let devices: Vec<_> = (0..args.devices).map(|d| format!("bench-{d:05}")).collect();
    let sensors = devices.iter().flat_map(|device| {
        (0..args.sensors).map(move |s| SensorSpec {
            valid_min: Some(-50.0),
            valid_max: Some(150.0),
            ..SensorSpec::new(device, &format!("s-{s}"), "temperature", "degC")
        })
    });
    let placements =
        devices.iter().map(|d| DevicePlacement { device: d.clone(), company: "bench".into(), site: None });
    Catalog::new(1, placements, [], sensors.collect::<Vec<_>>(), [])
}

/// Enrich over the whole stream while the workers apply jobs; done when the
/// queue is empty.
async fn enrich_and_count(
    args: &StatsArgs,
    stream: &SqliteStream,
    keyring: &Keyring,
    directory: &Directory,
    queue: &SqliteQueue,
    table: &SqliteTable,
    scratch: &std::path::Path,
) -> anyhow::Result<serde_json::Value> {
    std::fs::create_dir_all(scratch.join("quarantine"))?;
    let mut stage = EnrichStage::new(
        Box::new(FixedKeys::new(keyring.clone(), directory.clone())),
        Box::new(FixedCatalog::new(catalog(args))),
        Arc::new(queue.clone()),
        Arc::new(LocalFileSystem::new_with_prefix(scratch.join("quarantine"))?),
        DecodeLimits::default(),
    );
    let (stop_tx, stop) = watch::channel(false);
    let options =
        WorkerOptions { workers: args.workers, idle_poll: Duration::from_millis(5), ..Default::default() };
    let handler = Arc::new(TableHandler { table: Arc::new(table.clone()) });
    let workers = tokio::spawn(run_workers(Arc::new(queue.clone()), handler, options, Arc::default(), stop));

    eprintln!("enrich → queue → stats…");
    let total = args.devices * args.sensors * args.per_device;
    let progress = ProgressBar::new(total);
    let started = Instant::now();
    let (mut readings, mut jobs, mut next) = (0u64, 0u64, StartAt::Oldest);
    loop {
        let batch = read_batch(stream, &mut next, args.batch_mib * 1024 * 1024).await?;
        if batch.is_empty() {
            break;
        }
        let enriched = stage.enrich(&batch).await?;
        readings += enriched.normalised;
        jobs += enriched.jobs.len() as u64;
        progress.inc(enriched.normalised);
    }
    let enrich_secs = started.elapsed().as_secs_f64();
    loop {
        let depth = queue.depth().await?;
        anyhow::ensure!(depth.dead == 0, "stats jobs failed: {} dead-lettered", depth.dead);
        if depth.visible + depth.in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    stop_tx.send_replace(true);
    workers.await.context("stats workers")?;
    anyhow::ensure!(readings == total, "enriched {readings} of {total} readings");
    Ok(json!({
        "readings": readings,
        "jobs": jobs,
        "secs": secs,
        "readings_per_sec": (readings as f64 / secs).round(),
        "enrich_only_secs": enrich_secs,
    }))
}

async fn query_latency(
    table: &SqliteTable,
    series: &SeriesKey,
    from: i64,
    to: i64,
    queries: u64,
) -> anyhow::Result<serde_json::Value> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut points = 0;
    for _ in 0..queries.max(1) {
        let started = Instant::now();
        points = read_summaries(table, series, Resolution::Minute, from, to).await?.len();
        latency.record(started.elapsed().as_micros().max(1) as u64)?;
    }
    let ms = |q| latency.value_at_quantile(q) as f64 / 1000.0;
    Ok(json!({ "points": points, "queries": queries, "p50_ms": ms(0.5), "p99_ms": ms(0.99) }))
}

/// Writes the lake of the same stream, then has DuckDB compute the series'
/// 1-minute buckets (count, min, max, sum) for the same day, repeatedly.
#[allow(clippy::too_many_arguments)]
async fn duckdb_baseline(
    args: &StatsArgs,
    stream: &SqliteStream,
    keyring: Keyring,
    directory: Directory,
    scratch: &std::path::Path,
    series: &SeriesKey,
    from: i64,
    to: i64,
) -> anyhow::Result<serde_json::Value> {
    let python = args.python.clone().context("the DuckDB baseline needs --python (or DUCKDB_PYTHON)")?;
    eprintln!("writing the lake for the baseline…");
    let lake = scratch.join("lake");
    std::fs::create_dir_all(&lake)?;
    let objects = Arc::new(LocalFileSystem::new_with_prefix(&lake)?);
    let mut stage =
        LakeStage::new(objects, Box::new(FixedKeys::new(keyring, directory)), DecodeLimits::default());
    let mut next = StartAt::Oldest;
    loop {
        let batch = read_batch(stream, &mut next, 128 * 1024 * 1024).await?;
        if batch.is_empty() {
            break;
        }
        stage.write_batch(&batch).await?;
    }
    eprintln!("duckdb: the same buckets from the lake…");
    let script = r#"
import json, sys, time, duckdb
lake, device, sensor, start, end, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
sql = f"""SELECT epoch_ms(date_trunc('minute', ts)) AS bucket, count(*), min(value), max(value), sum(value)
          FROM read_parquet('{lake}/readings/**/*.parquet', hive_partitioning = true)
          WHERE company = 'bench' AND device_id = ? AND sensor = ?
            AND ts >= make_timestamp(? * 1000) AND ts < make_timestamp(? * 1000)
          GROUP BY ALL"""
times = []
for _ in range(reps + 1):
    started = time.perf_counter()
    rows = con.execute(sql, [device, sensor, start, end]).fetchall()
    times.append(time.perf_counter() - started)
times = sorted(times[1:])
pick = lambda q: round(times[min(len(times) - 1, int(q * len(times)))] * 1000, 3)
print(json.dumps({"points": len(rows), "queries": reps, "p50_ms": pick(0.5), "p99_ms": pick(0.99)}))
"#;
    let out = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(&lake)
        .args([&series.device, &series.sensor, &from.to_string(), &to.to_string(), "20"])
        .output()
        .with_context(|| format!("running {python}"))?;
    anyhow::ensure!(out.status.success(), "duckdb baseline: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

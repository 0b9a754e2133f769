//! `wenu bench all`: every benchmark of docs/benchmarks.md in one run, each
//! figure beside its baseline measured in the same run, with the machine it
//! ran on; writes `report.json`, `summary.md` and the connections plot.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, FromArgMatches};
use serde_json::{Value, json};

use wenu::config::Config;

#[derive(Args)]
pub struct AllArgs {
    /// Directory for report.json, summary.md and connections.svg.
    #[arg(long, default_value = "bench-report")]
    out: PathBuf,
    /// Small runs of every benchmark (a few minutes in all): checks that the
    /// command works; the figures are not the documented ones.
    #[arg(long)]
    quick: bool,
}

/// One line of the summary: Wenu's figure, the baseline's, and their ratio.
struct Line {
    what: &'static str,
    wenu: Option<f64>,
    baseline: Option<f64>,
    unit: &'static str,
    baseline_name: &'static str,
    /// How the ratio reads: `wenu / baseline` unless the lower figure is
    /// better, where it is `baseline / wenu` so that > 1 always favours Wenu.
    higher_is_better: bool,
}

pub async fn run(config: Config, args: AllArgs) -> anyhow::Result<Value> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let plot = args.out.join("connections.svg");
    let plot_arg = plot.to_string_lossy().into_owned();
    let quick = args.quick;
    let pick =
        |full: &'static [&'static str], small: &'static [&'static str]| if quick { small } else { full };
    let started = Instant::now();
    let mut report = serde_json::Map::new();
    // Read before the overload benchmark narrows this process to fewer cores.
    let machine = machine();
    report.insert("machine".into(), machine.clone());

    let pipeline = step(
        "pipeline",
        crate::pipeline::run(parse(pick(
            &[],
            &[
                "--devices",
                "20",
                "--rules",
                "20",
                "--start-rate",
                "1000",
                "--max-rate",
                "3000",
                "--step-seconds",
                "4",
                "--refine",
                "0",
            ],
        ))?),
    )
    .await?;
    let ingest = step(
        "ingest",
        crate::ingest::run(config.clone(), parse(pick(&["--messages", "2000"], &["--messages", "200"]))?),
    )
    .await?;
    let lake =
        step("lake", crate::lake::run(parse(pick(&[], &["--readings", "400000", "--devices", "100"]))?))
            .await?;
    let stats = step(
        "stats",
        crate::stats::run(parse(pick(
            &[],
            &["--devices", "20", "--per-device", "200", "--span-minutes", "200", "--queries", "50"],
        ))?),
    )
    .await?;
    let api = step(
        "api",
        crate::api::run(
            config.clone(),
            parse(pick(&[], &["--seconds", "2", "--devices", "20", "--ingest-rate", "2000"]))?,
        ),
    )
    .await?;
    let alarms = step(
        "alarms",
        crate::alarms::run(
            config.clone(),
            parse(pick(
                &["--ingest-rate", "5000"],
                &["--ingest-rate", "1000", "--probes", "30", "--rules", "100"],
            ))?,
        ),
    )
    .await?;
    let mut connections_args: Vec<&str> = vec!["--plot", &plot_arg];
    connections_args.extend(pick(&[], &["--devices", "10,100,300", "--seconds", "3"]));
    let connections = step("connections", crate::connections::run(parse(&connections_args)?)).await?;
    let overload = step(
        "overload",
        crate::overload::run(parse(pick(&[], &["--devices", "20", "--max-seconds", "3", "--seconds", "4"]))?),
    )
    .await?;

    let last = |v: &Value, server: &str, field: &str| {
        v[server].as_array().and_then(|p| p.last()).and_then(|p| p.pointer(field)).and_then(Value::as_f64)
    };
    // A table: (figure, Wenu's, the baseline's, unit, the baseline, higher is better).
    #[rustfmt::skip]
    let rows = [
        ("pipeline, sustained msgs/s (every stage keeping up)", num(&pipeline, "/sustained_msgs_per_sec"), num(&ingest, "/wenu/steady_acked_per_sec"), "msgs/s", "the edge alone", true),
        ("ingest, QoS 1 acks/s (100 connections)", num(&ingest, "/wenu/steady_acked_per_sec"), num(&ingest, "/mosquitto/steady_acked_per_sec"), "msgs/s", "Mosquitto (in memory)", true),
        ("ingest, PUBACK p99", num(&ingest, "/wenu/puback_p99_ms"), num(&ingest, "/mosquitto/puback_p99_ms"), "ms", "Mosquitto", false),
        ("lake, decrypt + Parquet rows/s", num(&lake, "/wenu/rows_per_sec"), num(&lake, "/duckdb/rows_per_sec"), "rows/s", "DuckDB read_json → Parquet", true),
        ("stats query, 1 day of 1-min buckets, p50", num(&stats, "/query_1d_of_1m/p50_ms"), num(&stats, "/duckdb_same_buckets_from_lake/p50_ms"), "ms", "DuckDB over the lake", false),
        ("dashboard API, 1-day stats requests/s (50 clients, idle)", num(&api, "/idle/requests_per_sec"), num(&api, "/baseline_health/requests_per_sec"), "req/s", "same server and clients, /health", true),
        ("dashboard API, 1-day stats request p50 (idle)", num(&api, "/idle/p50_ms"), num(&api, "/baseline_health/p50_ms"), "ms", "same server and clients, /health", false),
        ("ingest acks/s while 50 dashboards query", num(&api, "/ingest/acked_per_sec"), num(&api, "/ingest_alone/acked_per_sec"), "msgs/s", "the same fleet, no dashboards", true),
        ("ingest PUBACK p99 while 50 dashboards query", num(&api, "/ingest/puback_p99_ms"), num(&api, "/ingest_alone/puback_p99_ms"), "ms", "the same fleet, no dashboards", false),
        ("alarm, PUBACK → webhook p99", num(&alarms, "/wenu/puback_to_webhook_p99_ms"), num(&alarms, "/mosquitto/publish_to_subscriber_p99_ms"), "ms", "Mosquitto publish → subscriber", false),
        ("most devices: acks/s", last(&connections, "wenu", "/acked_per_sec"), last(&connections, "mosquitto", "/acked_per_sec"), "msgs/s", "Mosquitto", true),
        ("most devices: server resident memory", last(&connections, "wenu", "/server_memory/rss_mib"), last(&connections, "mosquitto", "/server_memory/rss_mib"), "MiB", "Mosquitto", false),
        ("most devices: server peak resident memory", last(&connections, "wenu", "/server_memory/peak_rss_mib"), last(&connections, "mosquitto", "/server_memory/peak_rss_mib"), "MiB", "Mosquitto", false),
    ];
    let lines = rows.map(|(what, wenu, baseline, unit, baseline_name, higher_is_better)| Line {
        what,
        wenu,
        baseline,
        unit,
        baseline_name,
        higher_is_better,
    });
    let most_devices = connections["wenu"].as_array().and_then(|p| p.last()).map(|p| p["devices"].clone());
    let summary = summary_markdown(
        &lines,
        &pipeline,
        &overload,
        most_devices.as_ref(),
        &machine,
        started.elapsed().as_secs_f64(),
    );
    for (name, value) in [
        ("pipeline", pipeline),
        ("ingest", ingest),
        ("lake", lake),
        ("stats", stats),
        ("api", api),
        ("alarms", alarms),
        ("connections", connections),
        ("overload", overload),
    ] {
        report.insert(name.into(), value);
    }
    report.insert("elapsed_secs".into(), json!(started.elapsed().as_secs_f64().round()));
    let report = Value::Object(report);
    std::fs::write(args.out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(args.out.join("summary.md"), &summary)?;
    eprintln!("\n{summary}\nwritten to {}", args.out.display());
    Ok(report)
}

/// A benchmark's arguments from the command line it would be given.
fn parse<T: Args + FromArgMatches>(argv: &[&str]) -> anyhow::Result<T> {
    let command = T::augment_args(clap::Command::new("bench"));
    let matches = command.try_get_matches_from(std::iter::once("bench").chain(argv.iter().copied()))?;
    Ok(T::from_arg_matches(&matches)?)
}

async fn step(name: &str, bench: impl Future<Output = anyhow::Result<Value>>) -> anyhow::Result<Value> {
    eprintln!("\n== wenu bench {name}");
    let started = Instant::now();
    let mut result = bench.await.with_context(|| format!("wenu bench {name}"))?;
    result["bench_secs"] = json!(started.elapsed().as_secs_f64().round());
    Ok(result)
}

fn num(value: &Value, pointer: &str) -> Option<f64> {
    value.pointer(pointer).and_then(Value::as_f64)
}

fn summary_markdown(
    lines: &[Line],
    pipeline: &Value,
    overload: &Value,
    most_devices: Option<&Value>,
    machine: &Value,
    secs: f64,
) -> String {
    let figure = |v: Option<f64>, unit: &str| v.map_or("—".to_owned(), |v| format!("{} {unit}", round(v)));
    let mut out = String::from(
        "| figure | Wenu | baseline | baseline is | Wenu's advantage (> 1 favours Wenu) |\n|---|---:|---:|---|---:|\n",
    );
    for line in lines {
        let ratio = match (line.wenu, line.baseline) {
            (Some(w), Some(b)) if w > 0.0 && b > 0.0 => {
                format!("{:.2}×", if line.higher_is_better { w / b } else { b / w })
            }
            _ => "—".into(),
        };
        out += &format!(
            "| {} | {} | {} | {} | {ratio} |\n",
            line.what,
            figure(line.wenu, line.unit),
            figure(line.baseline, line.unit),
            line.baseline_name
        );
    }
    out += &format!(
        "\nPipeline: sustained {} msgs/s ({} readings/s) with every stage keeping up; the next rate tried, {} msgs/s, \
         was limited by {}.\n",
        pipeline["sustained_msgs_per_sec"],
        pipeline["sustained_readings_per_sec"],
        pipeline["first_failed_rate"]["offered_per_sec"],
        pipeline["limited_by"].as_str().unwrap_or("nothing (the ramp reached its maximum)"),
    );
    if let Some(devices) = most_devices {
        out += &format!("\n\"most devices\" is {devices} connected devices.\n");
    }
    let o = |field: &str| overload["overload"][field].as_f64().unwrap_or(f64::NAN);
    out += &format!(
        "\nOverload (server on one core): maximum {:.0} acks/s; offered {:.0} msgs/s ({:.2}×) for {:.0} s; acknowledged \
         {:.0} msgs/s, PUBACK p99 {:.0} ms; server RSS {:.0} → {:.0} MiB over the two halves; {:.0} unacknowledged at the end.\n",
        overload["max"]["acked_per_sec"].as_f64().unwrap_or(f64::NAN),
        o("offered_per_sec"),
        o("offered_vs_max"),
        o("seconds"),
        o("acked_per_sec"),
        o("puback_p99_ms"),
        o("server_rss_mib_first_half_max"),
        o("server_rss_mib_second_half_max"),
        o("unacked_at_exit"),
    );
    out += &format!("\nMachine: {}. All benchmarks took {:.0} s.\n", machine_line(machine), secs);
    out
}

fn round(v: f64) -> String {
    if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

fn machine() -> Value {
    json!({
        "cpu": cpu_model(),
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "memory_gib": mem_total_gib(),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "wenu_version": env!("CARGO_PKG_VERSION"),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "date": chrono::Utc::now().to_rfc3339(),
    })
}

fn machine_line(m: &Value) -> String {
    format!(
        "{} × {}, {:.0} GiB, Linux {}, {} build, {}",
        m["cpus"],
        m["cpu"].as_str().unwrap_or("?"),
        m["memory_gib"].as_f64().unwrap_or(0.0),
        m["kernel"].as_str().unwrap_or("?"),
        m["profile"].as_str().unwrap_or("?"),
        m["date"].as_str().unwrap_or("?").get(..10).unwrap_or("?"),
    )
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn mem_total_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok()
            })
        })
        .map_or(0.0, |kib| (kib / 1_048_576.0 * 10.0).round() / 10.0)
}

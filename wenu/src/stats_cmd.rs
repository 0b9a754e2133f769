//! `wenu stats query` and `wenu queue status|redrive`: the stats path from
//! the command line.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use wenu_api::{StatsBucket, parse_time};
use wenu_core::queue::Queue;
use wenu_local::{QueueOptions, SqliteQueue, SqliteTable};
use wenu_stats::{Resolution, SeriesKey, read_summaries};

use crate::config::Config;
use crate::serve::now_ms;

#[derive(Subcommand)]
pub enum StatsCommand {
    /// Rollups of one sensor over a time range.
    Query(QueryArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Args)]
pub struct QueryArgs {
    #[arg(long)]
    device: String,
    #[arg(long)]
    sensor: String,
    /// Bucket width: 1m, 1h or 1d.
    #[arg(long, default_value = "1m", value_parser = parse_resolution)]
    res: Resolution,
    /// Start: RFC 3339, unix ms, `now`, or relative like `-1h`, `-30m`, `-7d`.
    #[arg(long, default_value = "-1h", allow_hyphen_values = true)]
    from: String,
    /// End (exclusive), in the same forms.
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    to: String,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Same as `--format json`.
    #[arg(long)]
    json: bool,
    /// Same as `--format csv`.
    #[arg(long)]
    csv: bool,
}

fn parse_resolution(label: &str) -> Result<Resolution, String> {
    Resolution::parse(label).ok_or_else(|| format!("{label:?}: expected 1m, 1h or 1d"))
}

pub async fn run(config: Config, command: StatsCommand) -> anyhow::Result<()> {
    let StatsCommand::Query(args) = command;
    let now = now_ms();
    let parse = |flag: &str, text: &str| parse_time(text, now).map_err(|e| anyhow::anyhow!("--{flag}: {e}"));
    let (from, to) = (parse("from", &args.from)?, parse("to", &args.to)?);
    anyhow::ensure!(from < to, "--from must be before --to");
    let registry = config.registry().await?;
    let device =
        registry.device(&args.device).await?.with_context(|| format!("unknown device {}", args.device))?;
    let path = config.stats_path();
    anyhow::ensure!(
        path.exists(),
        "no stats at {} (is `wenu serve` running on this data directory?)",
        path.display()
    );
    let table = SqliteTable::open(&path)?;
    let series = SeriesKey { company: device.company, device: device.id, sensor: args.sensor };
    // The bucket that contains `from` counts too: `--from -5m --res 1h` shows the current hour.
    let buckets = read_summaries(&table, &series, args.res, args.res.bucket_start(from), to).await?;
    let rows: Vec<StatsBucket> =
        buckets.iter().map(|(start, summary)| StatsBucket::new(*start, summary)).collect();
    let format = match (args.json, args.csv) {
        (true, _) => Format::Json,
        (_, true) => Format::Csv,
        _ => args.format,
    };
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Csv => {
            println!("bucket,bucket_ms,count,min,max,sum,mean,last,p50,p95,p99");
            for r in &rows {
                println!(
                    "{},{},{},{},{},{},{},{},{},{},{}",
                    r.bucket,
                    r.bucket_ms,
                    r.count,
                    r.min,
                    r.max,
                    r.sum,
                    opt(r.mean),
                    opt(r.last),
                    opt(r.p50),
                    opt(r.p95),
                    opt(r.p99)
                );
            }
        }
        Format::Table => {
            println!(
                "{:<21} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
                "bucket", "count", "min", "max", "mean", "last", "p50", "p95", "p99"
            );
            for r in &rows {
                println!(
                    "{:<21} {:>7} {:>10.3} {:>10.3} {:>10} {:>10} {:>10} {:>10} {:>10}",
                    r.bucket,
                    r.count,
                    r.min,
                    r.max,
                    opt(r.mean),
                    opt(r.last),
                    opt(r.p50),
                    opt(r.p95),
                    opt(r.p99)
                );
            }
            eprintln!("{} buckets of {}", rows.len(), series.group());
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Messages waiting, in flight and dead-lettered.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Move dead-lettered jobs back to the queue, to be tried again.
    Redrive {
        /// At most this many (all when absent).
        #[arg(long)]
        max: Option<usize>,
    },
}

pub async fn run_queue(config: Config, command: QueueCommand) -> anyhow::Result<()> {
    let path = SqliteQueue::default_path(&config.data_dir);
    anyhow::ensure!(path.exists(), "no queue at {}", path.display());
    let queue = SqliteQueue::open(&path, QueueOptions { max_receive_count: config.stats.max_receive_count })?;
    match command {
        QueueCommand::Status { json } => {
            let depth = queue.depth().await?;
            if json {
                let value = serde_json::json!({
                    "visible": depth.visible, "in_flight": depth.in_flight, "dead": depth.dead,
                });
                println!("{value}");
            } else {
                println!(
                    "visible {}  in flight {}  dead-lettered {}",
                    depth.visible, depth.in_flight, depth.dead
                );
            }
        }
        QueueCommand::Redrive { max } => {
            let moved = queue.redrive(max).await?;
            eprintln!("{moved} dead-lettered jobs moved back to the queue");
        }
    }
    Ok(())
}

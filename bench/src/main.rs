//! `wenu-bench`: Wenu's measurements, each beside the baseline a user would
//! compare it with, reported as JSON (see docs/benchmarks.md).
//!
//! `wenu bench …` runs this binary, which is kept out of the production
//! `wenu` so that its load generators, histograms and plots do not ship
//! there. Benchmarks that measure a server from outside start the `wenu`
//! binary built beside this one.

mod alarms;
mod all;
mod api;
mod connections;
mod idle;
mod ingest;
mod lake;
mod logins;
mod overload;
mod pipeline;
mod plot;
mod process;
mod stats;

use clap::{Parser, Subcommand};
use wenu::config::{Config, ConfigArgs};

#[derive(Parser)]
#[command(
    name = "wenu bench",
    version,
    about = "Measure the Wenu pipeline against the baselines a user would pick"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: BenchCommand,
}

fn main() -> std::process::ExitCode {
    wenu::allocator::return_freed_memory_soon();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = cli.config.load().and_then(|config| {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let result = runtime.block_on(run(config, cli.command));
        runtime.shutdown_timeout(std::time::Duration::from_secs(10));
        result
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Subcommand)]
enum BenchCommand {
    /// QoS 1 ingest throughput and PUBACK latency, against Mosquitto as baseline.
    Ingest(crate::ingest::IngestArgs),
    /// Decrypt + parse + Parquet rows/s over a prepared stream, against DuckDB
    /// writing Parquet from the same plaintext.
    Lake(crate::lake::LakeArgs),
    /// Readings/s through enrich → queue → stats, and a 1-day query of 1-minute
    /// stats against DuckDB computing the same buckets from the lake.
    Stats(crate::stats::StatsArgs),
    /// Requests/s and latency of a day of 1-minute stats over HTTP from
    /// concurrent clients, idle and while devices publish.
    Api(crate::api::ApiArgs),
    /// PUBACK → webhook latency of alarm notifications with 1 000 rules under
    /// load, against a Mosquitto publish → subscribe round trip.
    Alarms(crate::alarms::AlarmsArgs),
    /// Throughput, PUBACK latency and server memory from 100 to 10 000
    /// connected devices, `wenu serve` and Mosquitto as separate processes;
    /// draws the plot (SVG).
    Connections(crate::connections::ConnectionsArgs),
    /// Server memory with many idle connections (100 000 by default),
    /// `wenu serve` and Mosquitto as separate processes.
    Idle(crate::idle::IdleArgs),
    /// MQTT logins per second (good and bad passwords) that a server
    /// confined to one core answers.
    Logins(crate::logins::LoginsArgs),
    /// Twice the maximum rate offered to a server confined to one core:
    /// backpressure, memory and delivery under overload.
    Overload(crate::overload::OverloadArgs),
    /// The highest rate the whole pipeline sustains (every stage keeping
    /// up), each stage's busy time and CPU, and the backlog curve.
    Pipeline(crate::pipeline::PipelineArgs),
    /// Every benchmark above in one run, with the machine, each figure's
    /// ratio to its baseline, a summary table and the plot.
    All(crate::all::AllArgs),
}

async fn run(config: Config, command: BenchCommand) -> anyhow::Result<()> {
    let report = match command {
        BenchCommand::Ingest(args) => crate::ingest::run(config, args).await,
        BenchCommand::Lake(args) => crate::lake::run(args).await,
        BenchCommand::Stats(args) => crate::stats::run(args).await,
        BenchCommand::Api(args) => crate::api::run(config, args).await,
        BenchCommand::Alarms(args) => crate::alarms::run(config, args).await,
        BenchCommand::Connections(args) => crate::connections::run(args).await,
        BenchCommand::Idle(args) => crate::idle::run(args).await,
        BenchCommand::Logins(args) => crate::logins::run(args).await,
        BenchCommand::Overload(args) => crate::overload::run(args).await,
        BenchCommand::Pipeline(args) => crate::pipeline::run(args).await,
        BenchCommand::All(args) => crate::all::run(config, args).await,
    }?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

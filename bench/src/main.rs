//! `wenu bench`: measurements, reported as JSON (see docs/benchmarks.md).

use clap::Subcommand;

use crate::config::Config;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// QoS 1 ingest throughput and PUBACK latency, against Mosquitto as baseline.
    Ingest(crate::bench_ingest::IngestArgs),
    /// Decrypt + parse + Parquet rows/s over a prepared stream, against DuckDB
    /// writing Parquet from the same plaintext.
    Lake(crate::bench_lake::LakeArgs),
    /// Readings/s through enrich → queue → stats, and a 1-day query of 1-minute
    /// stats against DuckDB computing the same buckets from the lake.
    Stats(crate::bench_stats::StatsArgs),
    /// Requests/s and latency of a day of 1-minute stats over HTTP from
    /// concurrent clients, idle and while devices publish.
    Api(crate::bench_api::ApiArgs),
    /// PUBACK → webhook latency of alarm notifications with 1 000 rules under
    /// load, against a Mosquitto publish → subscribe round trip.
    Alarms(crate::bench_alarms::AlarmsArgs),
    /// Throughput, PUBACK latency and server memory from 100 to 10 000
    /// connected devices, `wenu serve` and Mosquitto as separate processes;
    /// draws the plot (SVG).
    Connections(crate::bench_connections::ConnectionsArgs),
    /// Server memory with many idle connections (100 000 by default),
    /// `wenu serve` and Mosquitto as separate processes.
    Idle(crate::bench_idle::IdleArgs),
    /// MQTT logins per second (good and bad passwords) that a server
    /// confined to one core answers.
    Logins(crate::bench_logins::LoginsArgs),
    /// Twice the maximum rate offered to a server confined to one core:
    /// backpressure, memory and delivery under overload.
    Overload(crate::bench_overload::OverloadArgs),
    /// Every benchmark above in one run, with the machine, each figure's
    /// ratio to its baseline, a summary table and the plot.
    All(crate::bench_all::AllArgs),
}

pub async fn run(config: Config, command: BenchCommand) -> anyhow::Result<()> {
    let report = match command {
        BenchCommand::Ingest(args) => crate::bench_ingest::run(config, args).await,
        BenchCommand::Lake(args) => crate::bench_lake::run(args).await,
        BenchCommand::Stats(args) => crate::bench_stats::run(args).await,
        BenchCommand::Api(args) => crate::bench_api::run(config, args).await,
        BenchCommand::Alarms(args) => crate::bench_alarms::run(config, args).await,
        BenchCommand::Connections(args) => crate::bench_connections::run(args).await,
        BenchCommand::Idle(args) => crate::bench_idle::run(args).await,
        BenchCommand::Logins(args) => crate::bench_logins::run(args).await,
        BenchCommand::Overload(args) => crate::bench_overload::run(args).await,
        BenchCommand::All(args) => crate::bench_all::run(config, args).await,
    }?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

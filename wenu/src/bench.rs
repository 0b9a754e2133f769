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
}

pub async fn run(config: Config, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => crate::bench_ingest::run(config, args).await,
        BenchCommand::Lake(args) => crate::bench_lake::run(args).await,
    }
}

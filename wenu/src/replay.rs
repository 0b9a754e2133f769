//! `wenu replay`: rebuild a lake from the stream, within its retention.
//!
//! The records are cut into batches of a fixed number of records, counted
//! from the first one, so replaying the same range again writes the same
//! files with the same rows.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use object_store::local::LocalFileSystem;
use wenu_core::stream::{Position, StartAt};
use wenu_lake::LakeStage;
use wenu_local::{SqliteStream, StreamOptions};

use crate::config::Config;
use wenu_local::KeyringFile;
use wenu_registry::RegistryKeys;

#[derive(Args)]
pub struct ReplayArgs {
    /// Where to start: `oldest`, a stream position (`12345`) or an RFC 3339
    /// time of arrival (`2026-11-26T17:00:00Z`).
    #[arg(long, default_value = "oldest")]
    from: String,
    /// The last stream position to replay (default: the newest).
    #[arg(long)]
    to: Option<u64>,
    /// The lake directory to write (created if needed).
    #[arg(long)]
    into: PathBuf,
    /// Records per Parquet batch.
    #[arg(long, default_value_t = 100_000)]
    batch_records: usize,
}

fn parse_start(from: &str) -> anyhow::Result<StartAt> {
    if from == "oldest" {
        return Ok(StartAt::Oldest);
    }
    if let Ok(position) = from.parse::<u64>() {
        return Ok(StartAt::Position(Position::new(position)));
    }
    let at = chrono::DateTime::parse_from_rfc3339(from)
        .with_context(|| format!("--from {from:?}: expected `oldest`, a position or an RFC 3339 time"))?;
    Ok(StartAt::Timestamp(at.timestamp_millis()))
}

pub async fn run(config: Config, args: ReplayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch_records > 0, "--batch-records must be at least 1");
    let stream_path = SqliteStream::default_path(&config.data_dir);
    anyhow::ensure!(stream_path.exists(), "no stream at {}", stream_path.display());
    // Another process may be appending; this one only reads.
    let stream = SqliteStream::open(&stream_path, StreamOptions::default())?;
    let info = stream.info().await?;
    let last = Position::new(args.to.or(info.newest.and_then(Position::as_u64)).unwrap_or(0));
    let mut next = parse_start(&args.from)?;

    std::fs::create_dir_all(&args.into).with_context(|| format!("creating {}", args.into.display()))?;
    let objects = Arc::new(LocalFileSystem::new_with_prefix(&args.into)?);
    let registry = config.registry().await?;
    let keys = RegistryKeys::new(Box::new(KeyringFile::new(config.keyring_path())), registry);
    let mut stage =
        LakeStage::new(objects, Box::new(keys), config.decode_limits()).with_local_dir(&args.into)?;

    let first = info.oldest.and_then(Position::as_u64).unwrap_or(0);
    let progress = ProgressBar::new(last.as_u64().unwrap_or(0).saturating_sub(first) + 1);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records {per_sec} eta {eta} {msg}")
            .expect("valid template"),
    );
    let (mut rows, mut files, mut quarantined) = (0u64, 0u64, 0u64);
    loop {
        let mut batch = stream.read(next, args.batch_records).await?;
        batch.retain(|r| r.position <= last);
        let Some(end) = batch.last().map(|r| r.position) else { break };
        if progress.position() == 0 {
            progress.set_length(
                last.as_u64().unwrap_or(0).saturating_sub(batch[0].position.as_u64().unwrap_or(0)) + 1,
            );
        }
        let report = stage.write_batch(&batch).await?;
        rows += report.rows;
        files += report.files;
        quarantined += report.quarantined.values().sum::<u64>();
        progress.inc(batch.len() as u64);
        progress.set_message(format!("{rows} rows, {files} files, {quarantined} quarantined"));
        next = StartAt::After(end);
        if end >= last {
            break;
        }
    }
    progress.finish();
    println!(
        "{}",
        serde_json::json!({"into": args.into, "rows": rows, "files": files, "quarantined": quarantined, "last_position": last})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_from_oldest_a_position_or_a_time() {
        assert_eq!(parse_start("oldest").unwrap(), StartAt::Oldest);
        assert_eq!(parse_start("42").unwrap(), StartAt::Position(Position::new(42)));
        assert_eq!(parse_start("1970-01-01T00:00:01Z").unwrap(), StartAt::Timestamp(1000));
        assert!(parse_start("yesterday").is_err());
    }
}

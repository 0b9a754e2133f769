//! `wenu status`: what the data directory holds, whether or not a server runs.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::json;
use wenu_core::stream::Position;
use wenu_decrypt::SequenceTracker;
use wenu_ingest::EdgeSnapshot;
use wenu_lake::inventory;
use wenu_local::{ConsumerStore, SqliteStream};
use wenu_runtime::ConsumerHealth;

use crate::config::Config;
use crate::serve::{LAKE_CONSUMER, health_path, now_ms};

#[derive(Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// A server refreshes `edge.json` every second; older than this, it isn't running.
const RUNNING_IF_FRESHER_THAN_MS: i64 = 5_000;

pub async fn run(config: Config, args: StatusArgs) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    anyhow::ensure!(
        dir.exists(),
        "data directory {} does not exist (run `wenu serve` or `wenu devices provision` first)",
        dir.display()
    );
    let edge = EdgeSnapshot::load(&dir.join("edge.json"))?.unwrap_or_default();
    let running = edge.running && now_ms() - edge.updated_at < RUNNING_IF_FRESHER_THAN_MS;
    let stream_path = SqliteStream::default_path(dir);
    let inspection =
        if stream_path.exists() { SqliteStream::inspect(&stream_path)? } else { Default::default() };
    let (log, checkpoints, retention) =
        (inspection.info, inspection.checkpoints, inspection.retention_totals);
    let devices = config.registry().await?.count_devices().await?;
    let consumers_path = ConsumerStore::default_path(dir);
    let consumers = if consumers_path.exists() { ConsumerStore::inspect(&consumers_path)? } else { vec![] };
    let newest = log.newest.and_then(Position::as_u64).unwrap_or(0);
    let health = if running { read_health(&health_path(dir)) } else { Default::default() };
    let consumer_rows: Vec<_> = consumers
        .iter()
        .map(|(name, saved)| {
            let position = saved.position.and_then(Position::as_u64).unwrap_or(0);
            let health = health.get(name);
            json!({"consumer": name, "position": position, "lag": newest.saturating_sub(position),
                   "flush_in_progress": saved.pending.is_some(),
                   "state": health.map(|h| h.state), "restarts": health.map(|h| h.restarts),
                   "last_error": health.and_then(|h| h.last_error.clone())})
        })
        .collect();
    let completeness = consumers
        .iter()
        .find(|(name, _)| name == LAKE_CONSUMER)
        .and_then(|(_, saved)| saved.state.as_deref())
        .map(serde_json::from_slice::<SequenceTracker>)
        .transpose()?
        .map(|tracker| completeness_report(&tracker));
    let lake = inventory::scan_local(&config.lake_dir())?;
    let report = json!({
        "data_dir": dir,
        "server_running": running,
        "devices": devices,
        "connections": if running { edge.connections } else { 0 },
        "connects_accepted": edge.connects_accepted,
        "connects_refused": edge.connects_refused,
        "publishes_accepted": edge.publishes_accepted,
        "publishes_refused": edge.publishes_refused,
        "payload_bytes_accepted": edge.payload_bytes_accepted,
        "log": log,
        "checkpoints": checkpoints.iter().map(|(name, p)| json!({"consumer": name, "position": p})).collect::<Vec<_>>(),
        "consumers": consumer_rows,
        "lake": lake,
        "completeness": completeness,
        "retention_deleted": retention.deleted,
        "retention_deleted_unconsumed": retention.deleted_unconsumed,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("data directory   {}", dir.display());
        println!("server           {}", if running { "running" } else { "not running" });
        println!("devices          {devices}");
        println!("connections      {}", report["connections"]);
        println!(
            "connects         {} accepted, refused {}",
            edge.connects_accepted,
            json!(edge.connects_refused)
        );
        println!(
            "publishes        {} accepted, refused {}",
            edge.publishes_accepted,
            json!(edge.publishes_refused)
        );
        println!(
            "log              {} records, positions {} … {}",
            log.records,
            log.oldest.map_or("-".into(), |p| p.to_string()),
            log.newest.map_or("-".into(), |p| p.to_string())
        );
        println!(
            "retention        {} deleted ({} before every consumer read them)",
            retention.deleted, retention.deleted_unconsumed
        );
        for row in &consumer_rows {
            let name = row["consumer"].as_str().unwrap_or_default();
            let state = row["state"].as_str().map(|s| format!(", {s}")).unwrap_or_default();
            println!("consumer         {name} at {}, lag {} records{state}", row["position"], row["lag"]);
            if row["state"] == "failing" {
                println!("                 last error: {}", row["last_error"].as_str().unwrap_or("-"));
            }
        }
        println!(
            "lake             {} rows in {} files, {} hour partitions; quarantined {}",
            lake.reading_rows,
            lake.reading_files,
            lake.partitions,
            json!(lake.quarantined)
        );
        if let Some(c) = &completeness {
            let fleet = &c["fleet"];
            println!(
                "completeness     {:.4} ({} of {} expected messages; {} duplicates dropped, {} replays)",
                fleet["ratio"].as_f64().unwrap_or(1.0),
                fleet["received"],
                fleet["expected"],
                fleet["duplicates"],
                fleet["replayed"]
            );
        }
    }
    Ok(())
}

/// The consumers' health as the running server last wrote it; none when unreadable.
fn read_health(path: &std::path::Path) -> BTreeMap<String, ConsumerHealth> {
    std::fs::read(path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

/// Received over expected messages, for the fleet and per device, as the lake
/// consumer counted them up to its checkpoint.
fn completeness_report(tracker: &SequenceTracker) -> serde_json::Value {
    let devices: Vec<_> = tracker.all().collect();
    let sum = |f: fn(&wenu_decrypt::DeviceCompleteness) -> u64| devices.iter().map(f).sum::<u64>();
    let (received, expected) = (sum(|d| d.received), sum(|d| d.expected));
    json!({
        "fleet": {
            "devices": devices.len(),
            "received": received,
            "expected": expected,
            "missing": sum(|d| d.missing),
            "duplicates": sum(|d| d.duplicates),
            "replayed": sum(|d| d.replayed),
            "ratio": if expected == 0 { 1.0 } else { received as f64 / expected as f64 },
        },
        "devices": devices.iter().map(|d| json!({
            "device_id": d.device_id, "received": d.received, "expected": d.expected,
            "missing": d.missing, "ratio": d.ratio(),
        })).collect::<Vec<_>>(),
    })
}

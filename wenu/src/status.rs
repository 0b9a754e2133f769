//! `wenu status`: what the data directory holds, whether or not a server runs.

use clap::Args;
use serde_json::json;
use wenu_ingest::EdgeSnapshot;
use wenu_local::SqliteStream;
use wenu_registry::Registry;

use crate::config::Config;
use crate::serve::now_ms;

#[derive(Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// A server refreshes `edge.json` every second; older than this, it isn't running.
const RUNNING_IF_FRESHER_THAN_MS: i64 = 5_000;

pub fn run(config: Config, args: StatusArgs) -> anyhow::Result<()> {
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
    let devices = Registry::open(&Registry::default_path(dir))?.count_devices()?;
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
            log.oldest.map_or("-".into(), |p| p.0.to_string()),
            log.newest.map_or("-".into(), |p| p.0.to_string())
        );
        println!(
            "retention        {} deleted ({} before every consumer read them)",
            retention.deleted, retention.deleted_unconsumed
        );
    }
    Ok(())
}

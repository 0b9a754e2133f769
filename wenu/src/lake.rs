//! `wenu lake …`: maintenance of the local Parquet lake.

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use wenu_core::stream::Position;
use wenu_lake::compact::{self, CompactOptions, CompactReport, LakeLock};
use wenu_local::ConsumerStore;

use crate::config::Config;
use crate::serve::{LAKE_CONSUMER, now_ms};

#[derive(Subcommand)]
pub enum LakeCommand {
    /// Merge the small files of each closed hour partition into one file,
    /// atomically; safe to run while `wenu serve` writes, and to run again.
    Compact(CompactArgs),
}

#[derive(Args)]
pub struct CompactArgs {
    /// An hour partition is closed this many minutes after its hour ends
    /// (later readings still land in it, and are merged at the next run).
    #[arg(long, default_value_t = 10)]
    grace_minutes: u64,
    /// Also the hours still open, the current one included (before a backup,
    /// or to see the effect at once); what lands in them later is merged at
    /// the next run.
    #[arg(long)]
    all_hours: bool,
}

pub fn run(config: Config, command: LakeCommand) -> anyhow::Result<()> {
    match command {
        LakeCommand::Compact(args) => run_compact(&config, args),
    }
}

fn run_compact(config: &Config, args: CompactArgs) -> anyhow::Result<()> {
    let lake_dir = config.lake_dir();
    let lock = LakeLock::open(&lake_dir)?;
    compact::clear_leftovers(&lake_dir)?;
    let consumers = ConsumerStore::default_path(&config.data_dir);
    let committed_up_to = if consumers.exists() {
        ConsumerStore::inspect(&consumers)?
            .into_iter()
            .find(|(name, _)| name == LAKE_CONSUMER)
            .and_then(|(_, saved)| saved.position)
            .and_then(Position::as_u64)
    } else {
        None
    };
    let closed_before_ms =
        if args.all_hours { i64::MAX } else { now_ms() - args.grace_minutes as i64 * 60_000 };
    let options = CompactOptions { closed_before_ms, committed_up_to };
    let plans = compact::plan(&lake_dir, options)?;
    let progress = ProgressBar::new(plans.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} partitions {msg}").expect("valid template"),
    );
    let mut report = CompactReport::default();
    for plan in &plans {
        progress.set_message(plan.dir.strip_prefix(&lake_dir).unwrap_or(&plan.dir).display().to_string());
        report.rows += compact::compact_partition(&lake_dir, plan, &lock)
            .with_context(|| format!("compacting {}", plan.dir.display()))?;
        report.files_merged += plan.files.len() as u64;
        report.partitions += 1;
        progress.inc(1);
    }
    progress.finish_and_clear();
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

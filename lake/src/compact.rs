//! Compaction of a local lake: the small files of each closed hour partition
//! become one file, sorted by (device, seq, sensor).
//!
//! **How a reader never sees both the old files and the new one.** The new
//! partition is built aside, in `_compaction/…/hour=hh/`: the merged file plus
//! hard links to any file of the partition that is not merged. Then one
//! `renameat2(RENAME_EXCHANGE)` swaps that directory with the live one. A
//! directory listing (DuckDB, pyarrow, DataFusion all list directories) sees
//! the old set or the new set, never a mix. The old files, now in
//! `_compaction/`, are deleted afterwards. A crash at any point leaves the
//! live partition consistent; whatever is left under `_compaction/` is stale
//! by construction and deleted at the next run. (A query that listed the old
//! set just before the swap may fail to open a deleted file; rerun it.)
//!
//! Writers and the compactor share `lake/.lock`: writers hold it shared while
//! they put files, the compactor exclusively while it links and swaps, so a
//! file written at that moment is never swapped out of view.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use rustix::fs::{CWD, RenameFlags, renameat_with};

use crate::encode::{self, READINGS_SCHEMA};
use crate::inventory::parquet_files;
use crate::layout::{HourPartition, parse_part_name, part_name};
use crate::{Error, Result};

const STAGING: &str = "_compaction";

/// The lake's advisory lock between writers and the compactor.
pub struct LakeLock(File);

impl LakeLock {
    pub fn open(lake_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(lake_dir).map_err(|e| io(lake_dir, e))?;
        let path = lake_dir.join(".lock");
        let file =
            File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| io(&path, e))?;
        Ok(LakeLock(file))
    }

    /// Held while writing files; many writers at once.
    pub fn shared(&self) -> Result<LockGuard<'_>> {
        self.0.lock_shared().map_err(|e| io(Path::new(".lock"), e))?;
        Ok(LockGuard(&self.0))
    }

    fn exclusive(&self) -> Result<LockGuard<'_>> {
        self.0.lock().map_err(|e| io(Path::new(".lock"), e))?;
        Ok(LockGuard(&self.0))
    }
}

pub struct LockGuard<'a>(&'a File);

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Which partitions to compact.
#[derive(Debug, Clone, Copy)]
pub struct CompactOptions {
    /// Only hours that ended before this time (unix ms) are closed.
    pub closed_before_ms: i64,
    /// Only files whose whole range the lake consumer has committed: a file
    /// beyond its checkpoint may still be rewritten by a redo.
    pub committed_up_to: Option<u64>,
}

/// One partition's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlan {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CompactReport {
    pub partitions: u64,
    pub files_merged: u64,
    pub rows: u64,
}

/// Deletes what an interrupted run left under `_compaction/`.
pub fn clear_leftovers(lake_dir: &Path) -> Result<()> {
    let staging = lake_dir.join(STAGING);
    match std::fs::remove_dir_all(&staging) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&staging, e)),
        _ => Ok(()),
    }
}

/// The closed partitions holding two or more committed files.
pub fn plan(lake_dir: &Path, options: CompactOptions) -> Result<Vec<PartitionPlan>> {
    let mut by_dir: std::collections::BTreeMap<PathBuf, Vec<PathBuf>> = Default::default();
    for file in parquet_files(&lake_dir.join("readings"))? {
        let Some(dir) = file.parent() else { continue };
        let Some(partition) = relative(lake_dir, dir).and_then(|p| HourPartition::parse(&p)) else {
            continue;
        };
        if hour_end_ms(&partition).is_none_or(|end| end > options.closed_before_ms) {
            continue;
        }
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some((_, last)) = parse_part_name(name) else { continue };
        if options.committed_up_to.is_some_and(|committed| last > committed) {
            continue;
        }
        by_dir.entry(dir.to_path_buf()).or_default().push(file);
    }
    Ok(by_dir
        .into_iter()
        .filter(|(_, files)| files.len() > 1)
        .map(|(dir, files)| PartitionPlan { dir, files })
        .collect())
}

/// Merges one partition's planned files and swaps the result in.
pub fn compact_partition(lake_dir: &Path, plan: &PartitionPlan, lock: &LakeLock) -> Result<u64> {
    let mut batches = Vec::new();
    let (mut first, mut last) = (u64::MAX, 0);
    for file in &plan.files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let (f, l) = parse_part_name(name).expect("planned files have part names");
        (first, last) = (first.min(f), last.max(l));
        batches.extend(encode::read(std::fs::read(file).map_err(|e| io(file, e))?.into())?);
    }
    let merged = concat_batches(&READINGS_SCHEMA, &batches)?;
    let sort: Vec<SortColumn> = ["device_id", "seq", "sensor"]
        .iter()
        .map(|c| SortColumn {
            values: merged.column_by_name(c).expect("readings column").clone(),
            options: None,
        })
        .collect();
    let merged = take_record_batch(&merged, &lexsort_to_indices(&sort, None)?)?;
    let rows = merged.num_rows() as u64;
    let bytes = encode::write(&READINGS_SCHEMA, &merged)?;

    let relative_dir = plan.dir.strip_prefix(lake_dir).expect("partition inside the lake");
    let staged = lake_dir.join(STAGING).join(relative_dir);
    clear_dir(&staged)?;
    std::fs::create_dir_all(&staged).map_err(|e| io(&staged, e))?;
    let merged_path = staged.join(part_name(first, last));
    write_synced(&merged_path, &bytes)?;
    wenu_core::failpoint::hit_blocking("lake.compact.before_swap");

    {
        let _exclusive = lock.exclusive()?;
        // Files of the partition that are not merged (beyond the checkpoint,
        // or written since the plan) stay, as hard links in the new set.
        for entry in std::fs::read_dir(&plan.dir).map_err(|e| io(&plan.dir, e))? {
            let path = entry.map_err(|e| io(&plan.dir, e))?.path();
            if !plan.files.contains(&path) && path.extension().is_some_and(|e| e == "parquet") {
                let link = staged.join(path.file_name().expect("a file name"));
                if link != merged_path {
                    std::fs::hard_link(&path, &link).map_err(|e| io(&link, e))?;
                }
            }
        }
        renameat_with(CWD, &staged, CWD, &plan.dir, RenameFlags::EXCHANGE)
            .map_err(|e| io(&plan.dir, e.into()))?;
        sync_dir(plan.dir.parent().unwrap_or(lake_dir))?;
    }
    // `staged` now holds the old files.
    wenu_core::failpoint::hit_blocking("lake.compact.after_swap");
    clear_dir(&staged)?;
    Ok(rows)
}

fn hour_end_ms(partition: &HourPartition) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(&partition.date, "%Y-%m-%d").ok()?;
    let hour: u32 = partition.hour.parse().ok()?;
    Some(date.and_hms_opt(hour, 0, 0)?.and_utc().timestamp_millis() + 3_600_000)
}

fn relative(lake_dir: &Path, dir: &Path) -> Option<object_store::path::Path> {
    let rel = dir.strip_prefix(lake_dir).ok()?;
    Some(object_store::path::Path::from_iter(rel.iter().filter_map(|c| c.to_str())))
}

fn clear_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(dir, e)),
        _ => Ok(()),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = File::create(path).map_err(|e| io(path, e))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| io(path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Core(wenu_core::Error::Io { path: path.to_owned(), source })
}

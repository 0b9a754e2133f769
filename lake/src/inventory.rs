//! What a lake directory holds, from file listings and Parquet footers only
//! (no data pages are read): for `wenu status`.

use std::collections::BTreeMap;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::Serialize;

use crate::Result;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct LakeInventory {
    pub reading_files: u64,
    pub reading_rows: u64,
    /// Hour partitions holding at least one file.
    pub partitions: u64,
    /// Quarantined records by reason.
    pub quarantined: BTreeMap<String, u64>,
}

/// Walks `readings/` and `quarantine/` under a local lake directory.
pub fn scan_local(lake_dir: &Path) -> Result<LakeInventory> {
    let mut inventory = LakeInventory::default();
    let mut partitions = std::collections::BTreeSet::new();
    for file in parquet_files(&lake_dir.join("readings"))? {
        inventory.reading_files += 1;
        inventory.reading_rows += rows_in(&file)?;
        partitions.insert(file.parent().map(Path::to_path_buf));
    }
    inventory.partitions = partitions.len() as u64;
    for file in parquet_files(&lake_dir.join("quarantine"))? {
        let reason = file
            .ancestors()
            .filter_map(|p| p.file_name()?.to_str()?.strip_prefix("reason=").map(str::to_owned))
            .next()
            .unwrap_or_default();
        *inventory.quarantined.entry(reason).or_default() += rows_in(&file)?;
    }
    Ok(inventory)
}

fn rows_in(file: &Path) -> Result<u64> {
    let reader = SerializedFileReader::new(std::fs::File::open(file).map_err(|e| io(file, e))?)?;
    Ok(reader.metadata().file_metadata().num_rows() as u64)
}

/// Every `*.parquet` below `dir` (none if `dir` doesn't exist).
pub fn parquet_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| io(&dir, e))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn io(path: &Path, source: std::io::Error) -> crate::Error {
    crate::Error::Core(wenu_core::Error::Io { path: path.to_owned(), source })
}

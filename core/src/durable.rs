//! Making files durable: `fsync` each file, then each directory that holds
//! them, so that after a power cut the files are there with their contents.
//! The local object store renames files into place without syncing them; a
//! stage that writes through it syncs before its checkpoint moves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// fsyncs `paths`, then their directories (each once). Blocking: call it
/// from a blocking task.
pub fn sync_files(paths: &[PathBuf]) -> Result<()> {
    let io = |path: &Path, source| Error::Io { path: path.to_owned(), source };
    let mut dirs = BTreeSet::new();
    for path in paths {
        std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| io(path, e))?;
        dirs.extend(path.parent().map(Path::to_path_buf));
    }
    for dir in dirs {
        std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| io(&dir, e))?;
    }
    Ok(())
}

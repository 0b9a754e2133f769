//! `wenu bench …`: runs the `wenu-bench` binary, as `cargo foo` runs
//! `cargo-foo`. The benchmarks live in their own crate so that their load
//! generators, histograms and plots stay out of the production binary.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// Replaces this process with `wenu-bench`, passing on the configuration
/// file and data directory; returns only if it could not be started.
pub fn run(config_file: Option<&Path>, data_dir: &Path, args: &[OsString]) -> anyhow::Result<()> {
    let binary = sibling_binary("wenu-bench")?;
    let mut command = Command::new(&binary);
    if let Some(file) = config_file {
        command.arg("--config").arg(file);
    }
    command.arg("--data-dir").arg(data_dir).args(args);
    let err = command.exec();
    Err(err).with_context(|| format!("starting {}", binary.display()))
}

/// The binary `name` beside this one (where cargo builds every binary of
/// the workspace), else the first on `PATH`; the error says how to build it.
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()?.with_file_name(name);
    if beside.is_file() {
        return Ok(beside);
    }
    let on_path = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    on_path.with_context(|| {
        format!(
            "no `{name}` binary beside {} or on PATH; build it with \
             `cargo build --release -p wenu -p wenu-bench`",
            beside.display()
        )
    })
}

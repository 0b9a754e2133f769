//! `wenu-bench` as a user runs it: every benchmark explains itself.

use std::process::Command;

#[test]
fn every_benchmark_has_help() {
    let benchmarks = [
        "ingest",
        "lake",
        "stats",
        "api",
        "alarms",
        "pipeline",
        "connections",
        "idle",
        "logins",
        "overload",
        "all",
    ];
    for benchmark in benchmarks {
        let out =
            Command::new(env!("CARGO_BIN_EXE_wenu-bench")).args([benchmark, "--help"]).output().unwrap();
        assert!(out.status.success(), "{benchmark}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{benchmark}");
    }
}

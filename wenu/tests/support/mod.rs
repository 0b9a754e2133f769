//! Running the real `wenu` binary from tests.
#![allow(dead_code)] // each test binary uses a different part of it

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// `wenu` with a data directory, as a user would run it.
pub fn wenu(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wenu"));
    command.arg("--data-dir").arg(data_dir).env("RUST_LOG", "warn");
    // Under the year-ahead pass (libfaketime), the MQTT server's timers
    // (ntex, on futures-timer's thread) park with an absolute deadline on
    // the faked monotonic clock, which the kernel reads as a year away: a
    // shutdown would wait that long. `wenu` is Rust and sleeps with relative
    // timeouts, so its monotonic clock may stay real; only the wall clock
    // moves. (Without libfaketime the variable means nothing.)
    command.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    // The tests' webhook receivers listen on loopback.
    command.env("WENU_ALARMS_WEBHOOK_PRIVATE_NETWORKS", "true");
    command
}

/// `wenu devices provision --company acme --count N --out FLEET --simulated`
/// (the registry defines the sensors the simulator gives each device).
pub fn provision(data_dir: &Path, count: usize, fleet: &Path) -> std::process::Output {
    provision_with(data_dir, count, fleet, &[])
}

/// [`provision`] with extra settings (`WENU_BACKEND=aws`, …).
pub fn provision_with(
    data_dir: &Path,
    count: usize,
    fleet: &Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    wenu(data_dir)
        .envs(env.iter().copied())
        .args([
            "devices",
            "provision",
            "--company",
            "acme",
            "--count",
            &count.to_string(),
            "--simulated",
            "--out",
        ])
        .arg(fleet)
        .output()
        .unwrap()
}

/// [`provision`], which must succeed, and the fleet it wrote.
pub fn provisioned(data_dir: &Path, count: usize, fleet: &Path) -> wenu_core::fleet::Fleet {
    provisioned_with(data_dir, count, fleet, &[])
}

/// [`provision_with`], which must succeed, and the fleet it wrote.
pub fn provisioned_with(
    data_dir: &Path,
    count: usize,
    fleet: &Path,
    env: &[(&str, &str)],
) -> wenu_core::fleet::Fleet {
    let out = provision_with(data_dir, count, fleet, env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wenu_core::fleet::Fleet::load(fleet).unwrap()
}

/// A data directory with simulated devices and `wenu serve` running on it,
/// its lake and stats flushing within a second.
pub struct Pipeline {
    pub dir: tempfile::TempDir,
    pub data: std::path::PathBuf,
    pub fleet: wenu_core::fleet::Fleet,
    /// The MQTT port.
    pub port: u16,
    pub server: ServeProcess,
}

pub fn start_pipeline(devices: usize) -> Pipeline {
    start_pipeline_with(devices, &[])
}

/// The same, with extra `WENU_*` settings.
pub fn start_pipeline_with(devices: usize, env: &[(&str, &str)]) -> Pipeline {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fleet_path = dir.path().join("fleet.json");
    let fleet = provisioned(&data, devices, &fleet_path);
    let port = free_loopback_port();
    let server = ServeProcess::start_with(
        &data,
        &format!("127.0.0.1:{port}"),
        &[[("WENU_LAKE_BUFFER_SECS", "1"), ("WENU_STATS_BATCH_MILLIS", "100")].as_slice(), env].concat(),
    );
    Pipeline { dir, data, fleet, port, server }
}

/// A `wenu serve` process.
pub struct ServeProcess {
    pub child: Child,
    /// Where its HTTP server (`/metrics`, `/health`) listens.
    pub http: String,
}

impl ServeProcess {
    /// Starts `wenu serve` with MQTT on `mqtt` and waits until it listens.
    pub fn start(data_dir: &Path, mqtt: &str) -> ServeProcess {
        Self::start_with(data_dir, mqtt, &[])
    }

    /// The same, with extra `WENU_*` settings.
    pub fn start_with(data_dir: &Path, mqtt: &str, env: &[(&str, &str)]) -> ServeProcess {
        Self::try_start_with(data_dir, mqtt, env)
            .unwrap_or_else(|status| panic!("wenu serve exited before listening: {status}"))
    }

    /// Starts `wenu serve`; its exit status if it ended before listening
    /// (a failpoint can fire while it starts).
    pub fn try_start_with(
        data_dir: &Path,
        mqtt: &str,
        env: &[(&str, &str)],
    ) -> Result<ServeProcess, std::process::ExitStatus> {
        let mut child = wenu(data_dir)
            .arg("serve")
            .env("WENU_MQTT_LISTEN", mqtt)
            .env("WENU_HTTP_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("wenu serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        if line.is_empty() {
            return Err(child.wait().unwrap());
        }
        let listening: serde_json::Value =
            serde_json::from_str(&line).expect("serve prints where it listens");
        assert_eq!(listening["event"], "listening");
        let http = listening["http"].as_str().unwrap_or_default().to_owned();
        Ok(ServeProcess { child, http })
    }

    /// `GET path` on its HTTP server; the body.
    pub fn http_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(&self.http).unwrap();
        write!(conn, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http).unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).unwrap();
        response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
    }

    /// Its `/metrics`, as `name{labels}` → value.
    pub fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        self.http_get("/metrics")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
            .collect()
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "wenu serve exited with {exit}");
    }
}

/// A test that fails half-way must not leave its server running.
impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A successful command's standard output.
pub fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `wenu status --json`.
pub fn status(data_dir: &Path) -> serde_json::Value {
    let out = wenu(data_dir).args(["status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until the consumer `name` has committed everything the log holds.
pub async fn wait_for_consumer(data_dir: &Path, name: &str) {
    loop {
        let s = status(data_dir);
        let consumer =
            s["consumers"].as_array().and_then(|c| c.iter().find(|c| c["consumer"] == name)).cloned();
        if consumer.is_some_and(|l| l["lag"] == 0 && l["flush_in_progress"] == false) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub async fn wait_for_lake(data_dir: &Path) {
    wait_for_consumer(data_dir, "lake").await
}

/// `wenu queue status --json`.
pub fn queue_status(data_dir: &Path) -> serde_json::Value {
    let out = wenu(data_dir).args(["queue", "status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until enrich has queued everything the log holds and the stats
/// workers have applied (or dead-lettered) every job.
pub async fn wait_for_stats(data_dir: &Path) {
    wait_for_consumer(data_dir, "enrich").await;
    loop {
        let q = queue_status(data_dir);
        if q["visible"] == 0 && q["in_flight"] == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Starts `wenu serve` with no load, lets the lake and the stats catch up
/// with the log, then stops it cleanly.
pub async fn drain(data_dir: &Path, mqtt: &str) {
    let server = ServeProcess::start_with(
        data_dir,
        mqtt,
        &[("WENU_LAKE_BUFFER_SECS", "0"), ("WENU_STATS_BATCH_MILLIS", "0")],
    );
    wait_for_lake(data_dir).await;
    wait_for_stats(data_dir).await;
    server.terminate();
}

/// The Python with DuckDB and pyarrow that the test command installs.
pub fn python() -> Command {
    let python = std::env::var("DUCKDB_PYTHON").unwrap_or_else(|_| {
        format!("{}/.cache/wenu-venv/bin/python", std::env::var("HOME").unwrap_or_default())
    });
    assert!(
        Path::new(&python).exists(),
        "{python} not found: run ./scripts/test.sh, which creates the venv with duckdb and pyarrow"
    );
    Command::new(python)
}

/// `(device, seq)` per line of a simulator's `--report` file.
pub fn acked_lines(path: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|v| (v["device"].as_str().unwrap().to_owned(), v["seq"].as_u64().unwrap()))
        .collect()
}

/// The `(device, seq)` messages a lake reader script saw (`"messages"` of
/// its DuckDB part).
pub fn lake_messages(duck: &serde_json::Value) -> std::collections::BTreeSet<(String, u64)> {
    duck["messages"]
        .as_array()
        .expect("the script lists messages")
        .iter()
        .map(|m| (m[0].as_str().unwrap().to_owned(), m[1].as_u64().unwrap()))
        .collect()
}

/// `wenu sql --format json`: one object per row.
pub fn sql_rows(data_dir: &Path, query: &str) -> Vec<serde_json::Value> {
    let out = wenu(data_dir).args(["sql", "--format", "json", query]).output().unwrap();
    assert!(out.status.success(), "wenu sql: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

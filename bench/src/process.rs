//! Servers measured from outside: `wenu serve` and Mosquitto as child
//! processes of the benchmark, so the memory read off them is theirs alone
//! and not the load generator's.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

/// A server running as a child process; stopped (SIGTERM, then SIGKILL) on drop.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) port: u16,
    /// Where `wenu serve` answers HTTP (`/metrics`); none for Mosquitto.
    pub(crate) http: Option<std::net::SocketAddr>,
}

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_mib: f64,
    /// The most it was ever resident (`VmHWM`).
    pub peak_rss_mib: f64,
}

impl ServerProcess {
    /// `wenu serve` (the `wenu` binary beside this one) on `data_dir`, MQTT and HTTP on free
    /// loopback ports; `env` adds `WENU_*` settings. Its log goes to
    /// `data_dir/serve.log`.
    pub(crate) fn wenu(data_dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<ServerProcess> {
        let log = std::fs::File::create(data_dir.join("serve.log"))?;
        let mut child = Command::new(wenu::bench::sibling_binary("wenu")?)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("serve")
            .env("WENU_MQTT_LISTEN", "127.0.0.1:0")
            .env("WENU_HTTP_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting wenu serve")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let listening: serde_json::Value = serde_json::from_str(&line).with_context(|| {
            format!("wenu serve did not start; see {}", data_dir.join("serve.log").display())
        })?;
        let port = listening["mqtt"]
            .as_str()
            .and_then(|addr| addr.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok())
            .context("wenu serve printed no MQTT address")?;
        let http = listening["http"].as_str().and_then(|addr| addr.parse().ok());
        Ok(ServerProcess { child, port, http })
    }

    /// Mosquitto with its default settings (anonymous, no persistence) on a
    /// free loopback port.
    pub(crate) fn mosquitto(binary: &str) -> anyhow::Result<ServerProcess> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(binary)
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {binary} (apt install mosquitto)"))?;
        let broker = ServerProcess { child, port, http: None };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "mosquitto did not start listening on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(broker)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn memory(&self) -> anyhow::Result<Memory> {
        memory_of_pid(self.child.id())
    }

    /// CPU seconds the server has used so far, all its threads.
    pub(crate) fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds_of(&self.child.id().to_string())
    }

    /// Confines every thread of the server to `cpus` (`taskset`), so that a
    /// load generator on the other cores can offer more than it can take.
    pub(crate) fn pin_to_cpus(&self, cpus: &str) -> anyhow::Result<()> {
        pin_to_cpus(self.child.id(), cpus)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The benchmark's own memory (for stages it runs in process).
pub(crate) fn own_memory() -> anyhow::Result<Memory> {
    memory_of("self")
}

/// CPU seconds this process (the load generator) has used so far.
pub(crate) fn own_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds_of("self")
}

/// User plus system time of every thread, from `/proc/PID/stat` (in clock
/// ticks, which Linux fixes at 100 per second for user space).
fn cpu_seconds_of(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> =
        stat.rsplit_once(')').context("malformed /proc stat")?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); 3 is the first after the name.
    let ticks =
        |i: usize| -> anyhow::Result<f64> { Ok(fields.get(i - 3).context("short /proc stat")?.parse()?) };
    Ok((ticks(14)? + ticks(15)?) / 100.0)
}

pub(crate) fn memory_of_pid(pid: u32) -> anyhow::Result<Memory> {
    memory_of(&pid.to_string())
}

fn memory_of(pid: &str) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field: &str| -> anyhow::Result<f64> {
        let line =
            status.lines().find(|l| l.starts_with(field)).with_context(|| format!("no {field} for {pid}"))?;
        let value: f64 = line.split_whitespace().nth(1).context("malformed /proc status")?.parse()?;
        Ok(value / 1024.0)
    };
    Ok(Memory { rss_mib: kib("VmRSS:")?, peak_rss_mib: kib("VmHWM:")? })
}

/// `taskset -a -p -c CPUS PID`: every thread of `pid` on those CPUs
/// (threads started later inherit it).
pub(crate) fn pin_to_cpus(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("taskset (util-linux)")?;
    anyhow::ensure!(status.success(), "taskset failed: {status}");
    Ok(())
}

/// A scratch directory for one benchmark, removed when dropped, also when
/// the benchmark fails half-way.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> anyhow::Result<Scratch> {
        let path = std::env::temp_dir().join(format!("wenu-bench-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The setup of the one-core benchmarks: `devices` provisioned in a scratch
/// directory, `wenu serve` on them confined to core 0 (with `env`), and this
/// process on the other cores.
pub(crate) struct OneCoreServer {
    // Dropped first: the server stops before its scratch directory goes.
    pub server: ServerProcess,
    pub fleet: wenu_core::fleet::Fleet,
    pub cores: usize,
    _scratch: Scratch,
}

impl OneCoreServer {
    pub(crate) async fn start(name: &str, devices: usize, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        anyhow::ensure!(cores >= 2, "needs two cores: one for the server, the rest for the load");
        let scratch = Scratch::new(name)?;
        let base = scratch.join("base");
        std::fs::create_dir_all(&base)?;
        eprintln!("provisioning {devices} devices…");
        let fleet = crate::connections::provision(&base, devices).await?;
        let data_dir = scratch.join("data");
        crate::connections::copy_files(&base, &data_dir)?;
        let server = ServerProcess::wenu(&data_dir, env)?;
        server.pin_to_cpus("0")?;
        let others = (1..cores).map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        pin_to_cpus(std::process::id(), &others)?;
        Ok(Self { server, fleet, cores, _scratch: scratch })
    }
}

//! The AWS emulator for the AWS adapters' tests: one moto server per test
//! binary on `127.0.0.1:0`, started on first use from the Python venv the
//! test command installs (`MOTO_PYTHON`).
//!
//! The server reads its stdin until it closes, so it ends with the test
//! process that holds the pipe, even one that is killed.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use aws_config::{BehaviorVersion, Region, SdkConfig};

const LAUNCH: &str = r#"
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"#;

/// A running moto server.
pub struct Moto {
    pub endpoint: String,
    _process: Child,
    _stdin: ChildStdin,
}

/// The test binary's moto server, started the first time it is asked for.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start)
}

fn start() -> Moto {
    let python = std::env::var("MOTO_PYTHON")
        .expect("MOTO_PYTHON must name a Python with moto[server] installed; scripts/test.sh sets it up");
    // Where moto's request recorder writes, when a test turns it on.
    let recording = std::env::temp_dir().join(format!("wenu-moto-recording-{}", std::process::id()));
    let mut process = Command::new(&python)
        .args(["-c", LAUNCH])
        .env("MOTO_RECORDER_FILEPATH", recording)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start moto with {python}: {e}"));
    let stdout = process.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("moto prints its port");
    let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("moto did not start (printed {line:?})"));
    let stdin = process.stdin.take().expect("piped");
    Moto { endpoint: format!("http://127.0.0.1:{port}"), _process: process, _stdin: stdin }
}

impl Moto {
    /// An SDK configuration pointed at this server, with test credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_at(&self.endpoint).await
    }
}

/// An SDK configuration for an emulator at `endpoint` (moto, or a proxy in
/// front of it), with test credentials.
pub async fn sdk_config_at(endpoint: &str) -> SdkConfig {
    {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .test_credentials()
            .load()
            .await
    }
}

/// A name no other test of this run uses (moto's state is shared).
pub fn unique_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Creates an S3 bucket on the test moto server (moto takes it unsigned).
pub async fn create_bucket(name: &str) {
    let response = reqwest::Client::new().put(format!("{}/{name}", moto().endpoint)).send().await.unwrap();
    assert!(response.status().is_success(), "creating bucket {name}: {}", response.status());
}

//! Running the real `wenu` binary from tests.
#![allow(dead_code)] // each test binary uses a different part of it

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// `wenu` with a data directory, as a user would run it.
pub fn wenu(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wenu"));
    command.arg("--data-dir").arg(data_dir).env("RUST_LOG", "warn");
    command
}

/// A `wenu serve` process.
pub struct ServeProcess {
    pub child: Child,
}

impl ServeProcess {
    /// Starts `wenu serve` with MQTT on `mqtt` and waits until it listens.
    pub fn start(data_dir: &Path, mqtt: &str) -> ServeProcess {
        let mut child = wenu(data_dir)
            .arg("serve")
            .env("WENU_MQTT_LISTEN", mqtt)
            .env("WENU_HTTP_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("wenu serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let listening: serde_json::Value =
            serde_json::from_str(&line).expect("serve prints where it listens");
        assert_eq!(listening["event"], "listening");
        ServeProcess { child }
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

pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

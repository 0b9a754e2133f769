//! `wenu certs init`: a local CA, the edge's server certificate and device
//! client certificates (see `wenu_ingest::certs`).

use std::path::PathBuf;

use clap::Subcommand;
use wenu_core::fleet::Fleet;
use wenu_ingest::certs::init_local_ca;

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Write ca.crt, server.crt/.key and devices/{id}.crt/.key into a directory.
    Init {
        /// Directory to write into.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Names the server certificate is valid for (DNS names or IPs).
        #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        hosts: Vec<String>,
        /// Also issue a client certificate to every device of this fleet file.
        #[arg(long)]
        fleet: Option<PathBuf>,
    },
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    let CertsCommand::Init { out, hosts, fleet } = command;
    let devices: Vec<String> = match fleet {
        Some(path) => Fleet::load(&path)?.devices.into_iter().map(|d| d.device_id).collect(),
        None => Vec::new(),
    };
    init_local_ca(&out, &hosts, &devices)?;
    eprintln!(
        "wrote a CA, a server certificate and {} device certificates to {}",
        devices.len(),
        out.display()
    );
    Ok(())
}

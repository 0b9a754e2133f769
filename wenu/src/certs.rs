//! `wenu certs`: a local CA, the edge's server certificate and device
//! client certificates (see `wenu_ingest::certs`).

use std::path::PathBuf;

use clap::Subcommand;
use wenu_core::fleet::Fleet;
use wenu_ingest::certs::{CA_DAYS, DEFAULT_DAYS, init_local_ca, issue_device_certificates};

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Write a new CA (ca.crt/.key, valid ten years), server.crt/.key and
    /// devices/{id}.crt/.key into a directory.
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
        /// How long the server and device certificates are valid.
        #[arg(long, default_value_t = DEFAULT_DAYS, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
    /// Issue device certificates with the CA of an earlier `init`: for new
    /// devices, or to renew certificates before they expire.
    Issue {
        /// The directory `init` wrote (its ca.key signs).
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Devices to issue to.
        #[arg(long = "device")]
        devices: Vec<String>,
        /// Every device of this fleet file, too.
        #[arg(long)]
        fleet: Option<PathBuf>,
        #[arg(long, default_value_t = DEFAULT_DAYS, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
}

pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init { out, hosts, fleet, days } => {
            let devices = fleet_devices(fleet)?;
            init_local_ca(&out, &hosts, &devices, days)?;
            eprintln!(
                "wrote a CA (valid {CA_DAYS} days), a server certificate and {} device certificates \
                 (valid {days} days) to {}",
                devices.len(),
                out.display()
            );
        }
        CertsCommand::Issue { out, mut devices, fleet, days } => {
            devices.extend(fleet_devices(fleet)?);
            anyhow::ensure!(!devices.is_empty(), "name devices with --device or --fleet");
            issue_device_certificates(&out, &devices, days)?;
            eprintln!(
                "issued {} device certificates (valid {days} days) in {}",
                devices.len(),
                out.display()
            );
        }
    }
    Ok(())
}

fn fleet_devices(fleet: Option<PathBuf>) -> anyhow::Result<Vec<String>> {
    Ok(match fleet {
        Some(path) => Fleet::load(&path)?.devices.into_iter().map(|d| d.device_id).collect(),
        None => Vec::new(),
    })
}

//! `wenu devices`: provisioning and key rotation.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use wenu_core::fleet::{Fleet, FleetDevice, Secret};
use wenu_core::keyring::Keyring;
use wenu_registry::{Registry, provision_fleet, rotate_key};

use crate::config::Config;

#[derive(Subcommand)]
pub enum DevicesCommand {
    /// Create devices with passwords and keys, and write a fleet file for them.
    Provision {
        #[arg(long)]
        company: String,
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Fleet file to write (owner-only: it holds passwords and keys).
        #[arg(long)]
        out: PathBuf,
    },
    /// List devices.
    List {
        #[arg(long)]
        company: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Give a device a new key; older keys keep decrypting until retired.
    RotateKey {
        device: String,
        /// Fleet file to update with the new key (so the simulator uses it).
        #[arg(long)]
        fleet: Option<PathBuf>,
    },
}

pub fn run(config: Config, command: DevicesCommand) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let registry = Registry::open(&Registry::default_path(&config.data_dir))?;
    let keyring_path = config.keyring_path();
    match command {
        DevicesCommand::Provision { company, count, out } => {
            let mut keyring = Keyring::load_or_default(&keyring_path)?;
            let devices = provision_fleet(&registry, &mut keyring, &company, count)?;
            keyring.save(&keyring_path)?;
            let mut fleet = if out.exists() { Fleet::load(&out)? } else { Fleet::default() };
            for device in devices {
                fleet.upsert(device);
            }
            fleet.save(&out)?;
            eprintln!("provisioned {count} devices of {company}; fleet file {}", out.display());
        }
        DevicesCommand::List { company, json } => {
            let devices = registry.list_devices(company.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&devices)?);
            } else {
                println!("{:<24} {:<16} {:<8} keys", "device", "company", "enabled");
                for d in devices {
                    println!("{:<24} {:<16} {:<8} {:?}", d.id, d.company, d.enabled, d.live_key_ids);
                }
            }
        }
        DevicesCommand::RotateKey { device, fleet } => {
            let mut keyring = Keyring::load_or_default(&keyring_path)?;
            let key_id = rotate_key(&registry, &mut keyring, &device)?;
            keyring.save(&keyring_path)?;
            if let Some(path) = fleet {
                let mut fleet = Fleet::load(&path)?;
                let entry = fleet
                    .devices
                    .iter()
                    .find(|d| d.device_id == device)
                    .cloned()
                    .with_context(|| format!("{device} is not in {}", path.display()))?;
                let key = keyring.current_key(&device).expect("just added").key.clone();
                fleet.upsert(FleetDevice {
                    key_id,
                    key,
                    password: Secret(entry.password.0.clone()),
                    ..entry
                });
                fleet.save(&path)?;
            }
            eprintln!("{device} now encrypts with key {key_id}");
        }
    }
    Ok(())
}

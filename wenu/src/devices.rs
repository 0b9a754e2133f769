//! `wenu devices`: provisioning, key rotation and retirement, disabling.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use wenu_core::fleet::{Fleet, FleetDevice, Secret};
use wenu_core::keyring::{Keyring, KeyringFile, KeyringStore};
use wenu_registry::{Registry, provision_fleet, retire_key};

use crate::config::{Backend, Config};

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
        /// Also define in the registry the sensors that `wenu sim` gives
        /// these devices (by their place in the fleet file).
        #[arg(long)]
        simulated: bool,
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
    /// Stop one of a device's older keys from decrypting (after a rotation,
    /// or when a key leaked): what is sealed with it is quarantined.
    RetireKey {
        device: String,
        #[arg(long)]
        key_id: u32,
    },
    /// Refuse a device's connections (and quarantine what it sent before).
    Disable { device: String },
    /// Let a disabled device connect again.
    Enable { device: String },
}

pub async fn run(config: Config, command: DevicesCommand) -> anyhow::Result<()> {
    config.ensure_data_dir()?;
    let registry = config.registry().await?;
    let keyring_path = config.keyring_path();
    match command {
        DevicesCommand::Provision { company, count, out, simulated } => {
            let mut keyring = Keyring::default();
            let devices = provision_fleet(&registry, &mut keyring, &company, count).await?;
            key_store(&config).await?.import(keyring).await?;
            let mut fleet = if out.exists() { Fleet::load(&out)? } else { Fleet::default() };
            for device in devices {
                fleet.upsert(device);
            }
            if simulated {
                define_simulated_sensors(&registry, &fleet).await?;
            }
            fleet.save(&out)?;
            eprintln!("provisioned {count} devices of {company}; fleet file {}", out.display());
        }
        DevicesCommand::List { company, json } => {
            let devices = registry.list_devices(company.as_deref()).await?;
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
            registry.device(&device).await?.with_context(|| format!("there is no device {device}"))?;
            let mut keys = key_store(&config).await?;
            let (key_id, key) = keys.add_key(&device).await?;
            registry.add_key(&device, key_id).await?;
            if let Some(path) = fleet {
                let mut fleet = Fleet::load(&path)?;
                let entry = fleet
                    .devices
                    .iter()
                    .find(|d| d.device_id == device)
                    .cloned()
                    .with_context(|| format!("{device} is not in {}", path.display()))?;
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
        DevicesCommand::RetireKey { device, key_id } => {
            let mut keyring = Keyring::load_or_default(&keyring_path)?;
            retire_key(&registry, &mut keyring, &device, key_id).await?;
            keyring.save(&keyring_path)?;
            eprintln!("{device}'s key {key_id} is retired");
        }
        DevicesCommand::Disable { device } => {
            registry.set_enabled(&device, false).await?;
            eprintln!("{device} is disabled");
        }
        DevicesCommand::Enable { device } => {
            registry.set_enabled(&device, true).await?;
            eprintln!("{device} is enabled");
        }
    }
    Ok(())
}

/// Where the configured backend keeps device keys: the keyring file of the
/// data directory, or Secrets Manager.
async fn key_store(config: &Config) -> anyhow::Result<Box<dyn KeyringStore>> {
    match config.backend {
        Backend::Embedded => Ok(Box::new(KeyringFile::new(config.keyring_path()))),
        #[cfg(feature = "aws")]
        Backend::Aws => {
            let sdk = wenu_aws::config::load().await;
            let client = aws_sdk_secretsmanager::Client::new(&sdk);
            let prefix = &config.aws.keys_secret_prefix;
            Ok(Box::new(wenu_aws::SecretsKeyring::new(client, prefix, std::time::Duration::ZERO)))
        }
        #[cfg(not(feature = "aws"))]
        Backend::Aws => anyhow::bail!("backend = \"aws\" needs a wenu built with the `aws` feature"),
    }
}

/// Defines, for every device of `fleet`, the sensors the simulator gives it.
pub async fn define_simulated_sensors(registry: &Registry, fleet: &Fleet) -> anyhow::Result<()> {
    for (index, device) in fleet.devices.iter().enumerate() {
        for spec in wenu_firmware_sim::sensor_specs(index, &device.device_id) {
            registry.upsert_sensor(&spec).await?;
        }
    }
    Ok(())
}

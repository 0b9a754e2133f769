//! `wenu devices`: provisioning, key rotation and retirement, disabling,
//! quotas, and sealing a reading as a device would (for smoke tests).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use wenu_core::envelope::{NonceSequence, seal};
use wenu_core::fleet::{Fleet, FleetDevice, Secret};
use wenu_core::keyring::KeyringStore;
use wenu_core::reading::ReadingBatch;
use wenu_local::KeyringFile;
use wenu_registry::{DeviceQuota, Registry, certificate_fingerprint, provision_into, retire_key, rotate_key};

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
        /// Also register each device with AWS IoT Core (a thing, and a
        /// certificate carrying the device policy) and write its certificate
        /// and private key to `--certs`; device keys go to Secrets Manager.
        #[arg(long)]
        aws: bool,
        /// Where `--aws` writes `{device}.crt` and `{device}.key` (owner-only);
        /// `certs/` beside the fleet file when unset.
        #[arg(long, requires = "aws")]
        certs: Option<PathBuf>,
    },
    /// List devices with their presence (online, silent, offline, never
    /// seen), last contact, firmware and configuration (applied→desired).
    List {
        #[arg(long)]
        company: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Give a device a new key and send it to the device over the downlink
    /// (a `rotate_key` command, sealed under its current key); older keys
    /// keep decrypting until the device confirms it, or `--retire-after-secs`.
    RotateKey {
        device: String,
        /// Retire the older keys this long after the rotation even if the
        /// device never confirms (default: only on its confirmation).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=2_592_000))]
        retire_after_secs: Option<u32>,
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
    /// The device's sequence counter went back (factory reset, new
    /// firmware): what arrives from now on starts a fresh sequence window
    /// instead of being quarantined as `replayed_seq`.
    ResetSequence { device: String },
    /// Refuse one of the device's client certificates from its next TLS
    /// login on, and end the sessions it opened.
    RevokeCert {
        device: String,
        /// The certificate file (PEM).
        #[arg(long, conflicts_with = "fingerprint", required_unless_present = "fingerprint")]
        cert: Option<PathBuf>,
        /// Or its SHA-256 fingerprint, hex (as `openssl x509 -fingerprint -sha256` prints it).
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Seal a reading batch as the device would (its current key from the
    /// fleet file, a fresh random nonce) and write the envelope to standard
    /// output: `… | mosquitto_pub -s …` publishes it. The body is the
    /// plaintext JSON of docs/devices.md, e.g.
    /// '{"seq":1,"ts":1765000000000,"readings":[{"sensor":"temp-1","kind":"temperature","value":21.5,"unit":"degC"}]}'.
    Seal {
        device: String,
        /// The plaintext JSON, or `-` to read it from standard input.
        body: String,
        /// Fleet file holding the device's key.
        #[arg(long)]
        fleet: PathBuf,
        /// Write the envelope as hex text instead of bytes.
        #[arg(long)]
        hex: bool,
    },
    /// A device's state (online, last seen, firmware, boot, configuration
    /// applied and desired) and its latest commands, as JSON.
    Show { device: String },
    /// Set a device's desired configuration (a JSON object); it reaches
    /// the device on `wenu/{id}/config` now or when it next connects.
    /// Without `--set`, print the current one.
    Config {
        device: String,
        #[arg(long, value_name = "JSON")]
        set: Option<String>,
    },
    /// Send a command to a device (`wenu/{id}/commands`): delivered at least
    /// once while it is subscribed, expiring after `--ttl-secs` if not.
    Command {
        device: String,
        /// e.g. reboot, sample_now, set_interval, firmware_available.
        name: String,
        /// Its arguments, a JSON object.
        #[arg(long, default_value = "{}", value_name = "JSON")]
        args: String,
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u32,
    },
    /// Give a device its own publish quota at the edge (its burst keeps the
    /// configured ratio to the rate); an option left out goes back to the
    /// edge's default (`mqtt.device_publishes_per_second`, …).
    SetQuota {
        device: String,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        publishes_per_second: Option<u32>,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        bytes_per_second: Option<u32>,
    },
}

pub async fn run(mut config: Config, command: DevicesCommand) -> anyhow::Result<()> {
    // Sealing is what a device does: it needs the fleet file, not the registry.
    if let DevicesCommand::Seal { device, body, fleet, hex } = command {
        return seal_for_device(&device, &body, &fleet, hex);
    }
    if let DevicesCommand::Provision { aws: true, .. } = command {
        config.backend = Backend::Aws;
    }
    config.ensure_data_dir()?;
    let registry = config.registry().await?;
    let keyring_path = config.keyring_path();
    match command {
        DevicesCommand::Provision { company, count, out, simulated, aws, certs } => {
            let devices =
                provision_into(&registry, key_store(&config).await?.as_mut(), &company, count).await?;
            if aws {
                let dir = certs.unwrap_or_else(|| out.parent().unwrap_or(Path::new(".")).join("certs"));
                register_with_iot_core(&config.aws.device_policy, &devices, &dir, &out).await?;
            }
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
            let states = registry.device_states(company.as_deref()).await?;
            let silent_after_ms = i64::from(config.http.silent_after_secs) * 1000;
            let now = wenu_core::clock::now_ms();
            // Both are ordered by device id, one state per device.
            let listed = devices.into_iter().zip(states).map(|(device, state)| {
                let presence = state.presence(now, silent_after_ms);
                (device, state, presence)
            });
            if json {
                let rows: Vec<_> = listed
                    .map(|(device, state, presence)| {
                        let mut row = serde_json::to_value(&device).expect("a device serializes");
                        row["presence"] = serde_json::to_value(presence).expect("a presence serializes");
                        row["config_stale"] = state.config_stale().into();
                        row["state"] = serde_json::to_value(&state).expect("a state serializes");
                        row
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<20} {:<12} {:<8} {:<11} {:<19} {:<20} {:<10} keys",
                    "device", "company", "enabled", "presence", "last heard (UTC)", "firmware", "config"
                );
                for (d, state, presence) in listed {
                    let heard = state.last_seen_at.max(state.connected_at).map_or("never".to_owned(), utc);
                    let presence = serde_json::to_value(presence)?.as_str().unwrap_or_default().to_owned();
                    let config = match (state.applied_config_version, state.desired_config_version) {
                        (applied, Some(desired)) if applied != Some(desired) => {
                            format!("{}→v{desired}", applied.map_or("none".into(), |a| format!("v{a}")))
                        }
                        (Some(applied), _) => format!("v{applied}"),
                        _ => "-".to_owned(),
                    };
                    println!(
                        "{:<20} {:<12} {:<8} {:<11} {:<19} {:<20} {:<10} {:?}",
                        d.id,
                        d.company,
                        d.enabled,
                        presence,
                        heard,
                        state.firmware.as_deref().unwrap_or("-"),
                        config,
                        d.live_key_ids
                    );
                }
            }
        }
        DevicesCommand::RotateKey { device, retire_after_secs, fleet } => {
            let retire_after_ms = retire_after_secs.map(|s| i64::from(s) * 1000);
            let rotation =
                rotate_key(&registry, key_store(&config).await?.as_mut(), &device, retire_after_ms).await?;
            let (key_id, key) = (rotation.key_id, rotation.key);
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
            match (&rotation.command, rotation.retire_at) {
                (Some(command), Some(at)) => eprintln!(
                    "{device}: key {key_id} sent as command {}; older keys retire on its confirmation or at {at} (unix ms)",
                    command.id
                ),
                (Some(command), None) => eprintln!(
                    "{device}: key {key_id} sent as command {}; older keys retire on its confirmation",
                    command.id
                ),
                (None, _) => eprintln!("{device} now encrypts with key {key_id}"),
            }
        }
        DevicesCommand::RetireKey { device, key_id } => {
            let mut locked = KeyringFile::new(&keyring_path).lock()?;
            retire_key(&registry, &mut locked.keyring, &device, key_id).await?;
            locked.save()?;
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
        DevicesCommand::ResetSequence { device } => {
            let at = registry.reset_sequence(&device).await?;
            eprintln!("{device}: what arrives from {at} (unix ms) on starts a fresh sequence window");
        }
        DevicesCommand::RevokeCert { device, cert, fingerprint } => {
            let fingerprint = match (cert, fingerprint) {
                (Some(path), _) => certificate_fingerprint_of(&path)?,
                (None, Some(fingerprint)) => fingerprint,
                (None, None) => anyhow::bail!("give --cert or --fingerprint"),
            };
            let fingerprint = registry.revoke_certificate(&device, &fingerprint).await?;
            eprintln!("{device}: certificate {fingerprint} is revoked");
        }
        DevicesCommand::Seal { .. } => unreachable!("handled before the registry is opened"),
        DevicesCommand::Show { device } => {
            let state = registry.device_state(&device).await?;
            let config = registry.desired_config(&device).await?;
            let commands = registry.commands(&device, 20).await?;
            let shown = serde_json::json!({ "state": state, "desired_config": config, "commands": commands });
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        DevicesCommand::Config { device, set: None } => match registry.desired_config(&device).await? {
            Some(config) => println!("{}", serde_json::to_string_pretty(&config)?),
            None => eprintln!("{device} has no desired configuration"),
        },
        DevicesCommand::Config { device, set: Some(document) } => {
            let document: serde_json::Value =
                serde_json::from_str(&document).context("the configuration is not JSON")?;
            let config = registry.set_desired_config(&device, &document).await?;
            eprintln!("{device}: desired configuration version {}", config.version);
        }
        DevicesCommand::Command { device, name, args, ttl_secs } => {
            let args: serde_json::Value = serde_json::from_str(&args).context("--args is not JSON")?;
            let command = registry.send_command(&device, &name, &args, i64::from(ttl_secs) * 1000).await?;
            println!("{}", command.id);
            eprintln!("{device}: command {name} queued as {}", command.id);
        }
        DevicesCommand::SetQuota { device, publishes_per_second, bytes_per_second } => {
            registry
                .set_device_quota(&device, DeviceQuota { publishes_per_second, bytes_per_second })
                .await?;
            let show = |v: Option<u32>| v.map_or("default".to_owned(), |n| n.to_string());
            eprintln!(
                "{device}: {} publishes/s, {} bytes/s",
                show(publishes_per_second),
                show(bytes_per_second)
            );
        }
    }
    Ok(())
}

/// Unix ms as `2026-12-07 21:04:05`.
fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// `wenu devices seal`: checks the body is a reading batch (a typo would
/// otherwise be acknowledged and then quarantined), seals it under the
/// device's current key and writes the envelope out.
fn seal_for_device(device: &str, body: &str, fleet: &Path, hex: bool) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Read, Write};

    let body = if body == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading the body from standard input")?;
        text
    } else {
        body.to_owned()
    };
    let batch = ReadingBatch::from_json(body.trim().as_bytes())
        .context("the body is not a reading batch (see docs/devices.md)")?;
    let skew_ms = batch.ts.saturating_sub(wenu_core::clock::now_ms()).abs();
    if skew_ms > wenu_decrypt::DecodeLimits::default().max_future_ms {
        eprintln!(
            "note: ts is {} s away from this machine's clock; far-off timestamps are quarantined",
            skew_ms / 1000
        );
    }
    let fleet = Fleet::load(fleet)?;
    let entry = fleet
        .devices
        .iter()
        .find(|d| d.device_id == device)
        .with_context(|| format!("{device} is not in the fleet file"))?;
    let nonce = NonceSequence::new().next_nonce()?;
    let envelope = seal(device, entry.key_id, &entry.key, nonce, body.trim().as_bytes());
    let mut out = std::io::stdout().lock();
    if hex {
        let text: String = envelope.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(out, "{text}")?;
    } else {
        anyhow::ensure!(
            !out.is_terminal(),
            "the envelope is binary: pipe it (e.g. into mosquitto_pub -s) or add --hex"
        );
        out.write_all(&envelope)?;
    }
    out.flush()?;
    Ok(())
}

/// The SHA-256 fingerprint of the (first) certificate in a PEM file.
fn certificate_fingerprint_of(path: &Path) -> anyhow::Result<String> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{} is not a PEM certificate: {e}", path.display()))?;
    Ok(certificate_fingerprint(&pem.contents))
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
            let keyring = wenu_aws::SecretsKeyring::new(client, prefix, std::time::Duration::ZERO)
                .with_kms_key(Some(config.aws.keys_kms_key.clone()));
            Ok(Box::new(keyring))
        }
        #[cfg(not(feature = "aws"))]
        Backend::Aws => anyhow::bail!("backend = \"aws\" needs a wenu built with the `aws` feature"),
    }
}

/// Registers `devices` with AWS IoT Core and writes their certificates and
/// keys to `dir`.
#[cfg(feature = "aws")]
async fn register_with_iot_core(
    policy: &str,
    devices: &[FleetDevice],
    dir: &Path,
    fleet: &Path,
) -> anyhow::Result<()> {
    use wenu_core::keyring::write_private_file;
    let sdk = wenu_aws::config::load().await;
    let region = sdk.region().map_or_else(|| "*".to_owned(), |r| r.to_string());
    let iot = wenu_aws::IotDevices::new(aws_sdk_iot::Client::new(&sdk), policy);
    // The account is not known here; the deployment template's policy names
    // it, and this one is only made where there is none.
    iot.ensure_policy(&region, "*").await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let progress =
        indicatif::ProgressBar::new(devices.len() as u64).with_message("registering with IoT Core");
    for device in devices {
        let certificate = iot.register(&device.device_id).await?;
        write_private_file(
            &dir.join(format!("{}.crt", device.device_id)),
            certificate.certificate_pem.as_bytes(),
        )?;
        write_private_file(
            &dir.join(format!("{}.key", device.device_id)),
            certificate.private_key_pem.as_bytes(),
        )?;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let endpoint = iot.data_endpoint().await?;
    eprintln!(
        "registered {} devices with AWS IoT Core (policy {}); certificates in {}\n\
         connect them with: wenu sim --fleet {} --host {endpoint} --port 8883 --tls-ca AmazonRootCA1.pem --client-certs {}",
        devices.len(),
        policy,
        dir.display(),
        fleet.display(),
        dir.display(),
    );
    Ok(())
}

#[cfg(not(feature = "aws"))]
async fn register_with_iot_core(_: &str, _: &[FleetDevice], _: &Path, _: &Path) -> anyhow::Result<()> {
    anyhow::bail!("--aws needs a wenu built with the `aws` feature (cargo build -p wenu --features aws)")
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

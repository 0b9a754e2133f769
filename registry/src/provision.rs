//! Provisioning: creating devices with their password and first key,
//! rotating and retiring keys. Touches the registry (ids, hashes, key ids) and the keyring
//! (key material) together.

use wenu_core::fleet::{FleetDevice, Secret};
use wenu_core::key_transfer::{self, ROTATE_KEY_COMMAND, seal_key};
use wenu_core::keyring::{Keyring, KeyringStore, SecretKey};

use crate::password::{generate_password, hash_password};
use crate::store::now_ms;
use crate::{Command, Error, MAX_COMMAND_TTL_MS, Registry, Result};

/// Creates `count` devices for `company`, named `{company}-{n:05}` after the
/// company's existing devices, each with a random password and a first key.
/// Returns what each device must hold; the keyring gains their keys.
///
/// Ids are claimed by the registry's insert, which refuses a taken id: two
/// provisionings at once (two processes, the API and the CLI) get distinct
/// devices instead of failing or sharing one.
pub async fn provision_fleet(
    registry: &Registry,
    keyring: &mut Keyring,
    company: &str,
    count: usize,
) -> Result<Vec<FleetDevice>> {
    let claimed = claim_devices(registry, company, count).await?;
    let mut fleet = Vec::with_capacity(count);
    for (device_id, password) in claimed {
        let (key_id, key) = keyring.add_key(&device_id);
        registry.add_key(&device_id, key_id).await?;
        fleet.push(FleetDevice { device_id, company: company.to_owned(), password, key_id, key });
    }
    Ok(fleet)
}

/// [`provision_fleet`] with the keys put in `keys` (the keyring file,
/// Secrets Manager) in one import. The key material is stored before the
/// registry names a key id, so the registry never points at a key the
/// store lacks, whatever moment a crash picks.
pub async fn provision_into(
    registry: &Registry,
    keys: &mut dyn KeyringStore,
    company: &str,
    count: usize,
) -> Result<Vec<FleetDevice>> {
    let claimed = claim_devices(registry, company, count).await?;
    let mut keyring = Keyring::default();
    let mut fleet = Vec::with_capacity(count);
    for (device_id, password) in claimed {
        let (key_id, key) = keyring.add_key(&device_id);
        fleet.push(FleetDevice { device_id, company: company.to_owned(), password, key_id, key });
    }
    keys.import(keyring).await?;
    for device in &fleet {
        registry.add_key(&device.device_id, device.key_id).await?;
    }
    Ok(fleet)
}

/// Adds `count` devices to the registry under free ids, each with a fresh
/// password; returns the ids and passwords.
async fn claim_devices(registry: &Registry, company: &str, count: usize) -> Result<Vec<(String, Secret)>> {
    registry.ensure_company(company).await?;
    let mut n = registry.list_devices(Some(company)).await?.len();
    let mut claimed = Vec::with_capacity(count);
    while claimed.len() < count {
        n += 1;
        let device_id = format!("{company}-{n:05}");
        let password = generate_password();
        match registry.add_device(company, &device_id, &hash_password(&password)).await {
            Ok(()) => claimed.push((device_id, Secret(password))),
            // Someone else took this id meanwhile: try the next one.
            Err(Error::DeviceExists(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(claimed)
}

/// A rotated key: the new key, and the command that carries it to the
/// device sealed under the key it held.
#[derive(Debug)]
pub struct Rotation {
    pub key_id: u32,
    pub key: SecretKey,
    /// The `rotate_key` command; none for a device that had no key to seal under.
    pub command: Option<Command>,
    /// When the older keys retire if the device has not confirmed by then.
    pub retire_at: Option<i64>,
}

/// Gives a device a new key in `keys`, which becomes the one it encrypts
/// with, and queues a `rotate_key` command that carries it to the device
/// sealed under its current key (see [`wenu_core::key_transfer`]).
///
/// Older keys keep decrypting until the device confirms the command (they
/// retire then) or, with `retire_after_ms`, until that long from now,
/// whichever comes first; without it they stay until confirmed or retired
/// by hand. The command lives as long as that grace period, or the longest
/// a command may live.
pub async fn rotate_key(
    registry: &Registry,
    keys: &mut dyn KeyringStore,
    device_id: &str,
    retire_after_ms: Option<i64>,
) -> Result<Rotation> {
    if registry.device(device_id).await?.is_none() {
        return Err(Error::UnknownDevice(device_id.to_owned()));
    }
    if retire_after_ms.is_some_and(|ms| !(1000..=MAX_COMMAND_TTL_MS).contains(&ms)) {
        return Err(Error::Invalid("older keys retire from 1 s to 30 days after a rotation".into()));
    }
    let added = keys.add_key(device_id).await?;
    registry.add_key(device_id, added.id).await?;
    let Some((current_id, current_key)) = &added.previous else {
        return Ok(Rotation { key_id: added.id, key: added.key, command: None, retire_at: None });
    };
    let sealed = seal_key(device_id, (*current_id, current_key), (added.id, &added.key), rand::random());
    let args = key_transfer::command_args(added.id, &sealed);
    let ttl = retire_after_ms.unwrap_or(MAX_COMMAND_TTL_MS);
    let command = registry.queue_command(device_id, ROTATE_KEY_COMMAND, &args, ttl).await?;
    let retire_at = retire_after_ms.map(|ms| now_ms() + ms);
    if let Some(at) = retire_at {
        registry.retire_keys_below(device_id, added.id, at, None).await?;
    }
    Ok(Rotation { key_id: added.id, key: added.key, command: Some(command), retire_at })
}

/// Stops a key from decrypting: what a device sealed with it and that
/// arrives from now on is quarantined as `retired_key` (what arrived before
/// still decrypts). The device's newest key cannot be retired
/// (rotate first), so a device always has a key to send with.
pub async fn retire_key(
    registry: &Registry,
    keyring: &mut Keyring,
    device_id: &str,
    key_id: u32,
) -> Result<()> {
    let device =
        registry.device(device_id).await?.ok_or_else(|| Error::UnknownDevice(device_id.to_owned()))?;
    if device.live_key_ids.iter().max() == Some(&key_id) {
        return Err(Error::Invalid(format!(
            "key {key_id} is {device_id}'s newest key; rotate the key before retiring it"
        )));
    }
    registry.retire_key(device_id, key_id).await?;
    keyring.retire(device_id, key_id, now_ms())?;
    Ok(())
}

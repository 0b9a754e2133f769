//! Provisioning: creating devices with their password and first key, and
//! rotating keys. Touches the registry (ids, hashes, key ids) and the keyring
//! (key material) together.

use wenu_core::fleet::{FleetDevice, Secret};
use wenu_core::keyring::Keyring;

use crate::password::{generate_password, hash_password};
use crate::{Error, Registry, Result};

/// Creates `count` devices for `company`, named `{company}-{n:05}` after the
/// company's existing devices, each with a random password and a first key.
/// Returns what each device must hold; the keyring gains their keys.
pub fn provision_fleet(
    registry: &Registry,
    keyring: &mut Keyring,
    company: &str,
    count: usize,
) -> Result<Vec<FleetDevice>> {
    registry.ensure_company(company)?;
    let existing = registry.list_devices(Some(company))?.len();
    let mut fleet = Vec::with_capacity(count);
    for n in existing + 1..=existing + count {
        let device_id = format!("{company}-{n:05}");
        let password = generate_password();
        registry.add_device(company, &device_id, &hash_password(&password)?)?;
        let (key_id, key) = keyring.add_key(&device_id);
        registry.add_key(&device_id, key_id)?;
        fleet.push(FleetDevice {
            device_id,
            company: company.to_owned(),
            password: Secret(password),
            key_id,
            key,
        });
    }
    Ok(fleet)
}

/// Gives a device a new key, which becomes the one it encrypts with. Older keys
/// keep decrypting until retired. Returns the new key id.
pub fn rotate_key(registry: &Registry, keyring: &mut Keyring, device_id: &str) -> Result<u32> {
    if registry.device(device_id)?.is_none() {
        return Err(Error::UnknownDevice(device_id.to_owned()));
    }
    let (key_id, _) = keyring.add_key(device_id);
    registry.add_key(device_id, key_id)?;
    Ok(key_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthOutcome;

    #[test]
    fn provisioned_devices_authenticate_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("registry.db")).unwrap();
        let mut keyring = Keyring::default();
        let fleet = provision_fleet(&registry, &mut keyring, "acme", 3).unwrap();
        assert_eq!(
            fleet.iter().map(|d| d.device_id.as_str()).collect::<Vec<_>>(),
            ["acme-00001", "acme-00002", "acme-00003"]
        );
        let more = provision_fleet(&registry, &mut keyring, "acme", 1).unwrap();
        assert_eq!(more[0].device_id, "acme-00004");

        let dev = &fleet[0];
        assert!(matches!(
            registry.authenticate(&dev.device_id, &dev.password.0).unwrap(),
            AuthOutcome::Allowed(_)
        ));
        assert_eq!(
            registry.authenticate(&dev.device_id, &fleet[1].password.0).unwrap(),
            AuthOutcome::BadPassword
        );
        assert_eq!(registry.authenticate("nobody", "x").unwrap(), AuthOutcome::UnknownDevice);
        registry.set_enabled(&dev.device_id, false).unwrap();
        assert_eq!(registry.authenticate(&dev.device_id, &dev.password.0).unwrap(), AuthOutcome::Disabled);

        assert_eq!(rotate_key(&registry, &mut keyring, &dev.device_id).unwrap(), 2);
        assert_eq!(registry.device(&dev.device_id).unwrap().unwrap().live_key_ids, [1, 2]);
        assert_eq!(keyring.current_key(&dev.device_id).unwrap().id, 2);
        registry.retire_key(&dev.device_id, 1).unwrap();
        assert_eq!(registry.device(&dev.device_id).unwrap().unwrap().live_key_ids, [2]);
        assert!(rotate_key(&registry, &mut keyring, "nobody").is_err());
    }

    #[test]
    fn reopening_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        let mut keyring = Keyring::default();
        provision_fleet(&Registry::open(&path).unwrap(), &mut keyring, "acme", 2).unwrap();
        assert_eq!(Registry::open(&path).unwrap().count_devices().unwrap(), 2);
    }
}

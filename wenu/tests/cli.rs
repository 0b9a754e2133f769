//! The command line as an operator uses it: provisioning, listing, key
//! rotation, and a keyring with unsafe permissions.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::{provision, wenu};
use wenu_core::fleet::Fleet;
use wenu_core::keyring::Keyring;

/// `wenu devices provision --company acme --count N --out FLEET`.
#[test]
fn provision_list_and_rotate_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fleet_path = dir.path().join("fleet.json");
    let out = provision(&data, 3, &fleet_path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fleet = Fleet::load(&fleet_path).unwrap();
    assert_eq!(fleet.devices.len(), 3);
    // Secrets are written for their owner only, and never printed.
    for path in [&fleet_path, &data.join("keyring.json")] {
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700,
        "the data directory is owner-only"
    );
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!printed.contains(&fleet.devices[0].password.0));
    assert!(!printed.contains(&fleet.devices[0].key.to_base64()));

    let out = wenu(&data).args(["devices", "list", "--json"]).output().unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("argon2"), "hashes stay in the registry");

    let device = &fleet.devices[1].device_id;
    let out =
        wenu(&data).args(["devices", "rotate-key", device, "--fleet"]).arg(&fleet_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rotated = Fleet::load(&fleet_path).unwrap();
    let entry = rotated.devices.iter().find(|d| &d.device_id == device).unwrap();
    assert_eq!(entry.key_id, 2);
    let keyring = Keyring::load(&data.join("keyring.json")).unwrap();
    assert_eq!(keyring.decryption_key(device, 2).unwrap(), &entry.key);
    assert!(keyring.decryption_key(device, 1).is_ok(), "the old key still decrypts");

    let out = wenu(&data).args(["devices", "rotate-key", "nobody"]).output().unwrap();
    assert!(!out.status.success());

    // The newest key cannot be retired; the older one can, once.
    let retire =
        |key: &str| wenu(&data).args(["devices", "retire-key", device, "--key-id", key]).output().unwrap();
    let out = retire("2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("rotate the key before retiring it"), "{out:?}");
    assert!(retire("1").status.success());
    assert!(!retire("1").status.success(), "already retired");
    let keyring = Keyring::load(&data.join("keyring.json")).unwrap();
    assert!(keyring.decryption_key(device, 1).is_err(), "the retired key no longer decrypts");
    let out = wenu(&data).args(["devices", "list", "--json"]).output().unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed.as_array().unwrap().iter().find(|d| d["id"] == device.as_str()).unwrap().clone();
    assert_eq!(listed["live_key_ids"], serde_json::json!([2]));

    assert!(wenu(&data).args(["devices", "disable", device]).output().unwrap().status.success());
    let out = wenu(&data).args(["devices", "list", "--json"]).output().unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed.as_array().unwrap().iter().find(|d| d["id"] == device.as_str()).unwrap()["enabled"],
        false
    );
    assert!(wenu(&data).args(["devices", "enable", device]).output().unwrap().status.success());
}

#[test]
fn a_keyring_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fleet_path = dir.path().join("fleet.json");
    assert!(provision(&data, 1, &fleet_path).status.success());
    let keyring = data.join("keyring.json");
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = provision(&data, 1, &fleet_path);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_command_has_help() {
    for command in [
        &["--help"][..],
        &["serve", "--help"],
        &["status", "--help"],
        &["devices", "provision", "--help"],
        &["certs", "init", "--help"],
        &["sim", "--help"],
        &["demo", "--help"],
        &["bench", "ingest", "--help"],
    ] {
        let out = wenu(std::path::Path::new("unused")).args(command).output().unwrap();
        assert!(out.status.success(), "{command:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{command:?}");
    }
}

//! The command line as an operator uses it: provisioning, listing, key
//! rotation, and a keyring with unsafe permissions.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::{provision, provisioned, wenu};
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
    ] {
        let out = wenu(std::path::Path::new("unused")).args(command).output().unwrap();
        assert!(out.status.success(), "{command:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{command:?}");
    }
}

/// `wenu bench` runs the `wenu-bench` binary beside it with the same
/// configuration and data directory; without one, it says how to build it.
#[test]
fn bench_runs_the_bench_binary_or_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        wenu(dir.path()).env("PATH", "/usr/bin:/bin").args(["bench", "ingest", "--help"]).output().unwrap();
    let beside = std::path::Path::new(env!("CARGO_BIN_EXE_wenu")).with_file_name("wenu-bench");
    if beside.is_file() {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Mosquitto"));
    } else {
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("cargo build --release -p wenu -p wenu-bench"));
    }
}

/// Even at `RUST_LOG=trace`, where the MQTT library logs every packet, no
/// device password reaches the log: neither a good one nor a wrong one.
#[test]
fn passwords_never_reach_the_log_even_at_trace_level() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let device = provisioned(&data, 1, &dir.path().join("fleet.json")).devices.remove(0);
    let log_path = dir.path().join("serve.log");
    let mut serve = wenu(&data)
        .arg("serve")
        .env("WENU_MQTT_LISTEN", "127.0.0.1:0")
        .env("WENU_HTTP_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(serve.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let listening: serde_json::Value = serde_json::from_str(&line).unwrap();
    let port = listening["mqtt"].as_str().unwrap().rsplit(':').next().unwrap().to_owned();

    let wrong_password = "not-his-password-0b5e9c";
    for password in [device.password.0.as_str(), wrong_password] {
        let publish = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-V", "mqttv5"])
            .args(["-i", &device.device_id, "-u", &device.device_id, "-P", password])
            .args(["-t", &wenu_core::topic::telemetry_topic(&device.device_id), "-m", "x"])
            .output()
            .expect("mosquitto_pub runs (apt install mosquitto-clients)");
        // The good password is accepted (the garbage payload is the lake's
        // business), the wrong one refused.
        assert_eq!(publish.status.success(), password != wrong_password, "{publish:?}");
    }
    assert!(Command::new("kill").args(["-TERM", &serve.id().to_string()]).status().unwrap().success());
    assert!(serve.wait().unwrap().success());

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("TRACE ntex_mqtt"), "the MQTT library logs at trace level");
    assert!(log.contains(&device.device_id), "the connection is in the log");
    for password in [device.password.0.as_str(), wrong_password] {
        assert!(!log.contains(password), "a password is in the log");
    }
}

#[test]
fn parallel_key_rotations_from_many_processes_leave_registry_and_keyring_agreeing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    support::provisioned(&data, 2, &dir.path().join("fleet.json"));
    let devices = ["acme-00001", "acme-00002"];
    // Ten processes at once, five per device.
    let rotations: Vec<_> = (0..10)
        .map(|i| {
            support::wenu(&data)
                .args(["devices", "rotate-key", devices[i % 2]])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for rotation in rotations {
        let out = rotation.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    let listed = support::ok(support::wenu(&data).args(["devices", "list", "--json"]).output().unwrap());
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let keyring = wenu_core::keyring::Keyring::load(&data.join("keyring.json")).unwrap();
    for device in devices {
        let registered: Vec<u64> =
            listed.as_array().unwrap().iter().find(|d| d["id"] == device).unwrap()["live_key_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_u64().unwrap())
                .collect();
        let stored: Vec<u64> = keyring.key_ids(device).into_iter().map(u64::from).collect();
        assert_eq!(registered, (1..=6).collect::<Vec<_>>(), "{device}: the first key and five rotations");
        assert_eq!(stored, registered, "{device}: every registered key is in the keyring");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left: {leftovers:?}");
}

#[test]
fn parallel_provisioning_from_two_processes_gives_distinct_devices_whose_keys_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    support::provisioned(&data, 1, &dir.path().join("first.json"));
    let fleets: Vec<_> = (0..2).map(|i| dir.path().join(format!("fleet-{i}.json"))).collect();
    let provisions: Vec<_> = fleets
        .iter()
        .map(|out| {
            support::wenu(&data)
                .args(["devices", "provision", "--company", "acme", "--count", "6", "--out"])
                .arg(out)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // A rotation of the first device while the two provision.
    let rotation = support::wenu(&data).args(["devices", "rotate-key", "acme-00001"]).output().unwrap();
    assert!(rotation.status.success(), "{}", String::from_utf8_lossy(&rotation.stderr));
    for provision in provisions {
        let out = provision.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    let mut provisioned: Vec<String> =
        fleets.iter().flat_map(|path| Fleet::load(path).unwrap().devices).map(|d| d.device_id).collect();
    provisioned.sort();
    let expected: Vec<String> = (2..=13).map(|n| format!("acme-{n:05}")).collect();
    assert_eq!(provisioned, expected, "twelve devices, none shared by the two runs");

    let listed = support::ok(support::wenu(&data).args(["devices", "list", "--json"]).output().unwrap());
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let keyring = Keyring::load(&data.join("keyring.json")).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 13);
    for device in listed.as_array().unwrap() {
        let id = device["id"].as_str().unwrap();
        let registered: Vec<u32> =
            device["live_key_ids"].as_array().unwrap().iter().map(|k| k.as_u64().unwrap() as u32).collect();
        assert_eq!(keyring.key_ids(id), registered, "{id}: registry and keyring agree");
    }
    assert_eq!(keyring.key_ids("acme-00001"), [1, 2], "the rotation survived the imports");
}

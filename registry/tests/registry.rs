//! One suite, run on an SQLite file and on a real PostgreSQL server.
//!
//! PostgreSQL comes from `POSTGRES_TEST_URL` (the test command starts a
//! server on loopback and sets it); each test gets a database of its own.

use serde_json::json;
use wenu_core::catalog::{CompanySettings, SensorSpec, StatsRetentionDays};
use wenu_core::keyring::{Keyring, KeyringStore};
use wenu_local::KeyringFile;
use wenu_registry::{
    AuthOutcome, CommandResult, CommandStatus, DeviceQuota, Error, NewChannel, Registry, Report, Role,
    generate_password, hash_password, provision_fleet, provision_into, rotate_key,
};

async fn sqlite() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(&dir.path().join("registry.db")).await.unwrap();
    (dir, registry)
}

/// A new, empty database on the test PostgreSQL server.
async fn postgres() -> Registry {
    let admin_url = std::env::var("POSTGRES_TEST_URL")
        .expect("POSTGRES_TEST_URL is not set: run the tests with scripts/test.sh, which starts PostgreSQL");
    let name = format!("wenu_test_{}", rand::random::<u64>());
    sqlx::any::install_default_drivers();
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url).await.unwrap();
    sqlx::Executor::execute(&mut admin, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').expect("a URL with a database name");
    Registry::connect(&format!("{base}/{name}")).await.unwrap()
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test] async fn $name() { let (_dir, registry) = super::sqlite().await; super::$name(registry).await; })*
        }
        mod on_postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::postgres().await).await; })*
        }
    };
}

on_both!(
    devices_authenticate_and_rotate_keys,
    sites_sensors_and_settings,
    revision_grows_with_each_change,
    tokens_verify_only_their_secret_until_revoked,
    every_change_is_audited_with_its_actor,
    alarm_rules_and_webhooks,
    devices_may_have_their_own_publish_quota,
    desired_configs_commands_and_device_state,
    rotated_keys_travel_sealed_and_retire_on_confirmation_or_after_grace,
    channels_route_and_silences_quiet_them,
);

async fn rotated_keys_travel_sealed_and_retire_on_confirmation_or_after_grace(registry: Registry) {
    use wenu_core::key_transfer::{open_key, parse_command_args};
    use wenu_decrypt::KeySource;
    let dir = tempfile::tempdir().unwrap();
    let keyring_path = dir.path().join("keyring.json");
    let mut keys = KeyringFile::new(&keyring_path);
    let fleet = provision_into(&registry, &mut keys, "acme", 2).await.unwrap();
    let (d1, d2) = (&fleet[0].device_id, &fleet[1].device_id);
    let device_keyring = |device: &wenu_core::fleet::FleetDevice| {
        let mut ring = Keyring::default();
        ring.import_key(&device.device_id, device.key_id, device.key.clone());
        ring
    };

    // The new key travels as a rotate_key command, sealed under the key the device holds.
    let rotation = rotate_key(&registry, &mut keys, d1, None).await.unwrap();
    let command = rotation.command.expect("a device with a key gets the new one over the downlink");
    assert_eq!((command.name.as_str(), command.status), ("rotate_key", CommandStatus::Pending));
    let (announced, sealed) = parse_command_args(&command.args).unwrap();
    let (opened_id, opened_key) = open_key(d1, &sealed, &device_keyring(&fleet[0])).unwrap();
    assert_eq!((announced, opened_id, opened_key.as_bytes()), (2, 2, rotation.key.as_bytes()));
    assert!(open_key(d2, &sealed, &device_keyring(&fleet[1])).is_err(), "only its device opens it");
    assert!(!serde_json::to_string(&command.args).unwrap().contains(&rotation.key.to_base64()));

    // Without a grace period the old key stays until the device confirms.
    assert_eq!(registry.device(d1).await.unwrap().unwrap().live_key_ids, [1, 2]);
    assert!(registry.key_retirements().await.unwrap().is_empty());
    let done = CommandResult { id: command.id.clone(), status: CommandStatus::Done, detail: None };
    assert!(!registry.record_command_result(d2, &done).await.unwrap(), "another device cannot confirm it");
    assert_eq!(registry.device(d1).await.unwrap().unwrap().live_key_ids, [1, 2]);
    let before = registry.revision().await.unwrap();
    assert!(registry.record_command_result(d1, &done).await.unwrap());
    assert!(registry.revision().await.unwrap() > before, "the stages reload the keys");
    assert_eq!(registry.device(d1).await.unwrap().unwrap().live_key_ids, [2]);
    let audit = registry.audit_log(Some("acme"), None, 5).await.unwrap();
    let retire = audit.iter().find(|e| e.action == "key.retire").expect("the retirement is audited");
    assert_eq!(retire.detail["confirmed_by"], json!(command.id));

    // With one, a device that never confirms loses its old key when it ends.
    let rotation = rotate_key(&registry, &mut keys, d2, Some(60_000)).await.unwrap();
    let retire_at = rotation.retire_at.expect("a grace period schedules the retirement");
    assert_eq!(registry.device(d2).await.unwrap().unwrap().live_key_ids, [1, 2], "until then both decrypt");
    let rejected = CommandResult {
        id: rotation.command.unwrap().id,
        status: CommandStatus::Rejected,
        detail: Some("no room for a key".into()),
    };
    assert!(registry.record_command_result(d2, &rejected).await.unwrap());
    let mut source =
        wenu_registry::RegistryKeys::new(Box::new(KeyringFile::new(&keyring_path)), registry.clone());
    let (snapshot, _) = source.refresh().await.unwrap().unwrap();
    assert!(snapshot.decryption_key_at(d2, 1, retire_at - 1).is_ok());
    assert!(snapshot.decryption_key_at(d2, 1, retire_at).is_err(), "retired when the grace period ends");
    assert!(snapshot.decryption_key_at(d1, 1, retire_at - 1).is_err(), "confirmed: retired already");
    assert!(snapshot.decryption_key_at(d1, 2, i64::MAX).is_ok());

    // Retiring by hand brings a scheduled retirement forward.
    registry.retire_key(d2, 1).await.unwrap();
    assert_eq!(registry.device(d2).await.unwrap().unwrap().live_key_ids, [2]);
    assert!(rotate_key(&registry, &mut keys, d2, Some(10)).await.is_err(), "a grace period of 10 ms");
}

async fn desired_configs_commands_and_device_state(registry: Registry) {
    let dir = tempfile::tempdir().unwrap();
    let mut keyring = KeyringFile::new(dir.path().join("keyring.json"));
    let fleet = provision_into(&registry, &mut keyring, "acme", 2).await.unwrap();
    let (d1, d2) = (&fleet[0].device_id, &fleet[1].device_id);
    let start = registry.revision().await.unwrap();

    // Configurations: versioned per device, seen by the edge through the revision.
    assert_eq!(registry.desired_config(d1).await.unwrap(), None);
    let first = registry.set_desired_config(d1, &json!({"interval_s": 60})).await.unwrap();
    let second = registry.set_desired_config(d1, &json!({"interval_s": 30})).await.unwrap();
    assert_eq!((first.version, second.version), (1, 2));
    assert_eq!(registry.set_desired_config(d2, &json!({})).await.unwrap().version, 1);
    assert!(matches!(registry.set_desired_config(d1, &json!([1])).await, Err(Error::Invalid(_))));
    let huge = json!({ "blob": "x".repeat(wenu_registry::MAX_DOCUMENT_BYTES) });
    assert!(matches!(registry.set_desired_config(d1, &huge).await, Err(Error::Invalid(_))));
    assert!(matches!(registry.set_desired_config("nobody", &json!({})).await, Err(Error::UnknownDevice(_))));
    let (configs, _) = registry.downlink_since(start).await.unwrap();
    assert_eq!(configs.len(), 2, "one row per device, the newest version");
    assert_eq!(configs.iter().find(|c| &c.device_id == d1).unwrap().document, json!({"interval_s": 30}));
    let now = registry.revision().await.unwrap();
    assert!(registry.downlink_since(now).await.unwrap().0.is_empty());

    // Commands: pending until delivered, then a result from their own device only.
    let reboot = registry.send_command(d1, "reboot", &json!({}), 60_000).await.unwrap();
    let sample = registry.send_command(d1, "sample_now", &json!({"sensor": "temp-1"}), 60_000).await.unwrap();
    let short = registry.send_command(d1, "set_interval", &json!({"s": 5}), 1_000).await.unwrap();
    assert!(matches!(registry.send_command(d1, "Reboot!", &json!({}), 60_000).await, Err(Error::Invalid(_))));
    assert!(matches!(registry.send_command(d1, "reboot", &json!({}), 10).await, Err(Error::Invalid(_))));
    let (config, pending) = registry.pending_downlink(d1).await.unwrap();
    assert_eq!(config.unwrap().version, 2);
    assert_eq!(
        pending.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [&reboot.id, &sample.id, &short.id]
    );
    assert_eq!(registry.downlink_since(now).await.unwrap().1.len(), 3);

    registry.mark_delivered(&reboot.id).await.unwrap();
    let done = CommandResult { id: reboot.id.clone(), status: CommandStatus::Done, detail: None };
    assert!(!registry.record_command_result(d2, &done).await.unwrap(), "another device's command");
    assert!(registry.record_command_result(d1, &done).await.unwrap());
    assert!(!registry.record_command_result(d1, &done).await.unwrap(), "a result is final");
    let pending_again = CommandResult { id: sample.id.clone(), status: CommandStatus::Pending, detail: None };
    assert!(matches!(registry.record_command_result(d1, &pending_again).await, Err(Error::Invalid(_))));
    let rejected = CommandResult {
        id: sample.id.clone(),
        status: CommandStatus::Rejected,
        detail: Some("no such sensor".into()),
    };
    assert!(registry.record_command_result(d1, &rejected).await.unwrap());

    // The short one expires when not delivered in time.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let listed = registry.commands(d1, 10).await.unwrap();
    let status_of = |id: &str| listed.iter().find(|c| c.id == id).unwrap().status;
    assert_eq!(status_of(&reboot.id), CommandStatus::Done);
    assert_eq!(status_of(&sample.id), CommandStatus::Rejected);
    assert_eq!(status_of(&short.id), CommandStatus::Expired);
    assert!(registry.pending_downlink(d1).await.unwrap().1.is_empty());
    assert_eq!(
        registry
            .audit_log(None, None, 100)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.action == "device.command")
            .count(),
        3
    );

    // State: presence from the edge, reports from the device, outside the revision.
    let before = registry.revision().await.unwrap();
    registry.record_presence(d1, true, 1_000).await.unwrap();
    registry.record_last_seen(&[(d1.clone(), 1_500)]).await.unwrap();
    let report = Report { firmware: Some("1.4.2".into()), boot: Some(7), config_version: Some(2) };
    registry.record_report(d1, &report).await.unwrap();
    registry.record_report(d1, &Report { boot: Some(8), ..Report::default() }).await.unwrap();
    assert_eq!(registry.revision().await.unwrap(), before, "device state does not make stages reload");
    let state = registry.device_state(d1).await.unwrap();
    assert!(state.online);
    assert_eq!((state.connected_at, state.last_seen_at), (Some(1_000), Some(1_500)));
    assert_eq!((state.firmware.as_deref(), state.boot), (Some("1.4.2"), Some(8)), "fields left out stay");
    assert_eq!((state.applied_config_version, state.desired_config_version), (Some(2), Some(2)));
    registry.record_presence(d1, false, 2_000).await.unwrap();
    assert!(!registry.device_state(d1).await.unwrap().online);
    registry.record_presence(d1, true, 1_900).await.unwrap();
    assert!(
        !registry.device_state(d1).await.unwrap().online,
        "an arrival written late does not undo a departure"
    );
    registry.record_presence(d2, true, 3_000).await.unwrap();
    registry.record_all_offline(4_000).await.unwrap();
    let states = registry.device_states(Some("acme")).await.unwrap();
    assert_eq!(states.len(), 2);
    assert!(states.iter().all(|s| !s.online));
    assert_eq!(states[1].disconnected_at, Some(4_000));
    assert!(matches!(registry.device_state("nobody").await, Err(Error::UnknownDevice(_))));
}

async fn devices_may_have_their_own_publish_quota(registry: Registry) {
    let dir = tempfile::tempdir().unwrap();
    let mut keyring = KeyringFile::new(dir.path().join("keyring.json"));
    let fleet = provision_into(&registry, &mut keyring, "acme", 2).await.unwrap();
    let (big, small) = (&fleet[0].device_id, &fleet[1].device_id);
    assert_eq!(registry.device(big).await.unwrap().unwrap().quota, DeviceQuota::default());

    let before = registry.revision().await.unwrap();
    let quota = DeviceQuota { publishes_per_second: Some(5000), bytes_per_second: Some(u32::MAX) };
    registry.set_device_quota(big, quota).await.unwrap();
    assert!(registry.revision().await.unwrap() > before, "the edge's cache sees the change");
    let listed = registry.list_devices(Some("acme")).await.unwrap();
    assert_eq!(listed.iter().find(|d| &d.id == big).unwrap().quota, quota);
    assert_eq!(listed.iter().find(|d| &d.id == small).unwrap().quota, DeviceQuota::default());

    let zero = DeviceQuota { publishes_per_second: Some(0), bytes_per_second: None };
    assert!(matches!(registry.set_device_quota(small, zero).await, Err(Error::Invalid(_))));
    assert!(matches!(registry.set_device_quota("nobody", quota).await, Err(Error::UnknownDevice(_))));
    registry.set_device_quota(big, DeviceQuota::default()).await.unwrap();
    assert_eq!(registry.device(big).await.unwrap().unwrap().quota, DeviceQuota::default());
    let audit = registry.audit_log(None, None, 100).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "device.set_quota").count(), 2);
}

async fn devices_authenticate_and_rotate_keys(registry: Registry) {
    let dir = tempfile::tempdir().unwrap();
    let mut keyring = KeyringFile::new(dir.path().join("keyring.json"));
    let fleet = provision_into(&registry, &mut keyring, "acme", 3).await.unwrap();
    assert_eq!(
        fleet.iter().map(|d| d.device_id.as_str()).collect::<Vec<_>>(),
        ["acme-00001", "acme-00002", "acme-00003"]
    );
    let more = provision_into(&registry, &mut keyring, "acme", 1).await.unwrap();
    assert_eq!(more[0].device_id, "acme-00004");
    provision_into(&registry, &mut keyring, "globex", 1).await.unwrap();
    assert_eq!(registry.list_devices(Some("acme")).await.unwrap().len(), 4);
    assert_eq!(registry.count_devices().await.unwrap(), 5);
    assert_eq!(registry.list_companies().await.unwrap(), ["acme", "globex"]);

    let dev = &fleet[0];
    assert_eq!(
        registry.authenticate(&dev.device_id, dev.password.0.clone()).await.unwrap(),
        AuthOutcome::Allowed
    );
    assert_eq!(
        registry.authenticate(&dev.device_id, fleet[1].password.0.clone()).await.unwrap(),
        AuthOutcome::BadPassword
    );
    assert_eq!(registry.authenticate("nobody", "x".to_owned()).await.unwrap(), AuthOutcome::UnknownDevice);
    registry.set_enabled(&dev.device_id, false).await.unwrap();
    assert_eq!(
        registry.authenticate(&dev.device_id, dev.password.0.clone()).await.unwrap(),
        AuthOutcome::Disabled
    );
    let (certificate, stolen) = ("ab".repeat(32), "cd".repeat(32));
    assert_eq!(
        registry.authenticate_by_certificate(&dev.device_id, &certificate).await.unwrap(),
        AuthOutcome::Disabled
    );
    assert_eq!(
        registry.authenticate_by_certificate(&fleet[1].device_id, &certificate).await.unwrap(),
        AuthOutcome::Allowed
    );
    // A revoked certificate is refused; the fingerprint may come with colons and capitals.
    let colons: Vec<String> =
        stolen.as_bytes().chunks(2).map(|p| String::from_utf8_lossy(p).to_uppercase()).collect();
    registry.revoke_certificate(&fleet[1].device_id, &colons.join(":")).await.unwrap();
    registry.revoke_certificate(&fleet[1].device_id, &stolen).await.unwrap();
    assert_eq!(
        registry.authenticate_by_certificate(&fleet[1].device_id, &stolen).await.unwrap(),
        AuthOutcome::RevokedCertificate
    );
    assert!(registry.revoke_certificate(&fleet[1].device_id, "not-hex").await.is_err());
    assert!(registry.revoke_certificate("nobody", &stolen).await.is_err());
    let revoked = registry.revoked().await.unwrap();
    assert_eq!(revoked.certificates, [stolen].into());
    assert_eq!(revoked.disabled_devices, [dev.device_id.clone()].into());
    let reset_at = registry.reset_sequence(&fleet[1].device_id).await.unwrap();
    assert_eq!(registry.device(&fleet[1].device_id).await.unwrap().unwrap().seq_reset_at, Some(reset_at));
    assert!(!registry.device(&dev.device_id).await.unwrap().unwrap().enabled);

    let rotation = rotate_key(&registry, &mut keyring, &dev.device_id, None).await.unwrap();
    let (key_id, key) = (rotation.key_id, rotation.key);
    assert_eq!(key_id, 2);
    assert_eq!(registry.device(&dev.device_id).await.unwrap().unwrap().live_key_ids, [1, 2]);
    let stored = keyring.changed().await.unwrap().unwrap();
    assert_eq!(stored.current_key(&dev.device_id).unwrap().id, 2);
    assert_eq!(stored.decryption_key(&dev.device_id, 2).unwrap(), &key);
    assert_eq!(stored.decryption_key(&dev.device_id, 1).unwrap(), &dev.key);
    registry.retire_key(&dev.device_id, 1).await.unwrap();
    let listed = registry.list_devices(None).await.unwrap();
    assert_eq!(listed.iter().find(|d| d.id == dev.device_id).unwrap().live_key_ids, [2]);
    assert_eq!(listed.iter().find(|d| d.id == fleet[1].device_id).unwrap().live_key_ids, [1]);
    assert!(rotate_key(&registry, &mut keyring, "nobody", None).await.is_err());
    assert!(matches!(registry.add_device("acme", "acme-00001", "h").await, Err(Error::DeviceExists(_))));
    assert!(matches!(registry.add_device("nope", "x-1", "h").await, Err(Error::UnknownCompany(_))));
    assert!(matches!(registry.add_device("acme", "bad id", "h").await, Err(Error::InvalidId(_))));
}

async fn sites_sensors_and_settings(registry: Registry) {
    let mut keyring = Keyring::default();
    let fleet = provision_fleet(&registry, &mut keyring, "acme", 2).await.unwrap();
    let device = &fleet[0].device_id;
    registry.upsert_site("acme", "north", "North plant").await.unwrap();
    registry.upsert_site("acme", "north", "North plant (new hall)").await.unwrap();
    assert_eq!(registry.sites("acme").await.unwrap()[0].name, "North plant (new hall)");
    registry.set_device_site(device, Some("north")).await.unwrap();
    assert_eq!(registry.device(device).await.unwrap().unwrap().site.as_deref(), Some("north"));
    assert!(matches!(registry.set_device_site(device, Some("south")).await, Err(Error::UnknownSite(_))));
    assert!(matches!(registry.upsert_site("nope", "x", "X").await, Err(Error::UnknownCompany(_))));

    let mut spec = SensorSpec::new(device, "temp-1", "temperature", "degC");
    spec.scale = 1.02;
    spec.offset = -0.5;
    spec.valid_min = Some(-40.0);
    spec.valid_max = Some(85.0);
    registry.upsert_sensor(&spec).await.unwrap();
    registry.upsert_sensor(&SensorSpec::new(device, "hum-1", "humidity", "%RH")).await.unwrap();
    assert_eq!(
        registry.sensors(Some(device)).await.unwrap(),
        [SensorSpec::new(device, "hum-1", "humidity", "%RH"), spec.clone()]
    );
    spec.valid_max = Some(60.0);
    registry.upsert_sensor(&spec).await.unwrap();
    assert_eq!(registry.sensors(Some(device)).await.unwrap()[1].valid_max, Some(60.0));

    let mut bad = spec.clone();
    bad.valid_min = Some(100.0);
    assert!(matches!(registry.upsert_sensor(&bad).await, Err(Error::Invalid(_))));
    bad = SensorSpec::new("nobody", "temp-1", "temperature", "degC");
    assert!(matches!(registry.upsert_sensor(&bad).await, Err(Error::UnknownDevice(_))));

    assert_eq!(
        registry.company_settings("acme").await.unwrap().stats_retention,
        StatsRetentionDays::default()
    );
    let settings = CompanySettings {
        company: "acme".into(),
        stats_retention: StatsRetentionDays { minute: Some(3), hour: None, day: Some(400) },
    };
    registry.set_company_settings(&settings).await.unwrap();
    assert_eq!(registry.company_settings("acme").await.unwrap(), settings);
    let zero = CompanySettings {
        stats_retention: StatsRetentionDays { minute: Some(0), ..Default::default() },
        ..settings
    };
    assert!(matches!(registry.set_company_settings(&zero).await, Err(Error::Invalid(_))));

    let snapshot = registry.snapshot().await.unwrap();
    assert_eq!(snapshot.devices.len(), 2);
    assert_eq!(snapshot.sites.len(), 1);
    assert_eq!(snapshot.sensors.len(), 2);
    assert_eq!(snapshot.settings.len(), 1);
}

async fn revision_grows_with_each_change(registry: Registry) {
    let start = registry.revision().await.unwrap();
    registry.ensure_company("acme").await.unwrap();
    let after_company = registry.revision().await.unwrap();
    assert!(after_company > start);
    registry.ensure_company("acme").await.unwrap();
    assert_eq!(registry.revision().await.unwrap(), after_company, "no change, no new revision");
    registry.upsert_site("acme", "north", "North").await.unwrap();
    assert!(registry.revision().await.unwrap() > after_company);
    // A failed change leaves the revision alone.
    let before_failure = registry.revision().await.unwrap();
    assert!(registry.set_enabled("nobody", false).await.is_err());
    assert_eq!(registry.revision().await.unwrap(), before_failure);
}

async fn tokens_verify_only_their_secret_until_revoked(registry: Registry) {
    registry.ensure_company("acme").await.unwrap();
    let viewer = registry.create_token(Some("acme"), Role::Viewer, "wall screen", None).await.unwrap();
    let operator = registry.create_token(None, Role::Operator, "ops", Some(500)).await.unwrap();
    assert!(format!("{viewer:?}").find(&viewer.bearer).is_none(), "Debug never shows the secret");

    let found = registry.verify_token(&viewer.bearer).await.unwrap().expect("valid token");
    assert_eq!((found.company.as_deref(), found.role), (Some("acme"), Role::Viewer));
    assert_eq!(registry.verify_token(&operator.bearer).await.unwrap().unwrap().rate_per_second, Some(500));

    // A wrong secret for a real id, garbage, and a truncated token.
    let (head, _) = viewer.bearer.rsplit_once('_').unwrap();
    for bad in [format!("{head}_AAAA"), "Bearer x".into(), "wenu_".into(), viewer.bearer[..20].to_owned()] {
        assert_eq!(registry.verify_token(&bad).await.unwrap(), None, "{bad}");
    }

    // Scope rules.
    for (company, role) in [(None, Role::Viewer), (None, Role::Admin), (Some("acme"), Role::Operator)] {
        assert!(matches!(registry.create_token(company, role, "x", None).await, Err(Error::Invalid(_))));
    }
    assert!(matches!(
        registry.create_token(Some("nobody"), Role::Viewer, "x", None).await,
        Err(Error::UnknownCompany(_))
    ));

    assert_eq!(registry.list_tokens(Some("acme")).await.unwrap().len(), 1);
    assert_eq!(registry.list_tokens(None).await.unwrap().len(), 2);
    registry.revoke_token(&viewer.token.id).await.unwrap();
    assert_eq!(registry.verify_token(&viewer.bearer).await.unwrap(), None, "revoked");
    assert!(matches!(registry.revoke_token(&viewer.token.id).await, Err(Error::UnknownToken(_))));

    // One company cannot mint unbounded request budgets.
    let too_fast = registry.create_token(Some("acme"), Role::Admin, "x", Some(u32::MAX)).await;
    assert!(matches!(too_fast, Err(Error::Invalid(ref m)) if m.contains("1 to 1000")), "{too_fast:?}");
    let cap = wenu_registry::MAX_TOKENS_PER_COMPANY as usize;
    for i in 0..cap {
        registry.create_token(Some("acme"), Role::Viewer, &format!("t{i}"), Some(1000)).await.unwrap();
    }
    let one_more = registry.create_token(Some("acme"), Role::Viewer, "one more", None).await;
    assert!(matches!(one_more, Err(Error::Invalid(ref m)) if m.contains("revoke one")), "{one_more:?}");
    let some = registry
        .list_tokens(Some("acme"))
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.revoked_at.is_none())
        .unwrap();
    registry.revoke_token(&some.id).await.unwrap();
    registry.create_token(Some("acme"), Role::Viewer, "after a revocation", None).await.unwrap();
}

async fn every_change_is_audited_with_its_actor(registry: Registry) {
    let mut keyring = Keyring::default();
    provision_fleet(&registry, &mut keyring, "acme", 1).await.unwrap();
    provision_fleet(&registry, &mut keyring, "globex", 1).await.unwrap();
    let alice = registry.acting_as("token:alice");
    alice.upsert_site("acme", "north", "North").await.unwrap();
    alice.upsert_sensor(&SensorSpec::new("acme-00001", "temp-1", "temperature", "degC")).await.unwrap();
    alice.delete_sensor("acme-00001", "temp-1").await.unwrap();
    assert!(alice.delete_sensor("acme-00001", "temp-1").await.is_err());

    let acme = registry.audit_log(Some("acme"), None, 100).await.unwrap();
    let actions: Vec<_> =
        acme.iter().map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str())).collect();
    assert_eq!(
        actions,
        [
            ("token:alice", "sensor.delete", "acme-00001/temp-1"),
            ("token:alice", "sensor.upsert", "acme-00001/temp-1"),
            ("token:alice", "site.upsert", "north"),
            ("local", "key.add", "acme-00001"),
            ("local", "device.add", "acme-00001"),
            ("local", "company.add", "acme"),
        ]
    );
    assert_eq!(acme[1].detail["unit"], "degC");
    assert!(acme.windows(2).all(|w| w[0].revision > w[1].revision), "newest first");
    assert!(acme.iter().all(|e| e.company.as_deref() == Some("acme")), "one company's entries only");
    // Paging by revision.
    let page = registry.audit_log(Some("acme"), Some(acme[2].revision), 2).await.unwrap();
    assert_eq!(page, acme[3..5]);
    assert_eq!(registry.audit_log(None, None, 100).await.unwrap().len(), 9);
}

#[tokio::test]
async fn reopening_keeps_data_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let mut keyring = Keyring::default();
    let registry = Registry::open(&path).await.unwrap();
    provision_fleet(&registry, &mut keyring, "acme", 2).await.unwrap();
    registry.close().await;
    assert_eq!(Registry::open(&path).await.unwrap().count_devices().await.unwrap(), 2);
}

/// A registry written when device passwords were Argon2 hashes: the device
/// still logs in, and its hash becomes the fast form on its first good login.
#[tokio::test]
async fn an_argon2_password_hash_still_verifies_and_is_upgraded_on_login() {
    use argon2::PasswordHasher;
    use argon2::password_hash::{SaltString, rand_core::OsRng};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let registry = Registry::open(&path).await.unwrap();
    registry.ensure_company("acme").await.unwrap();
    let password = generate_password();
    let salt = SaltString::generate(&mut OsRng);
    let argon2 = argon2::Argon2::default().hash_password(password.as_bytes(), &salt).unwrap().to_string();
    registry.add_device("acme", "acme-00001", &argon2).await.unwrap();
    let stored = || async {
        let url = format!("sqlite:{}", path.display());
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
        let hash: String = sqlx::query_scalar("SELECT password_hash FROM devices WHERE id = 'acme-00001'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        hash
    };

    let wrong = registry.authenticate("acme-00001", "guess".to_owned()).await.unwrap();
    assert_eq!(wrong, AuthOutcome::BadPassword);
    assert_eq!(stored().await, argon2, "a failed login changes nothing");
    let right = registry.authenticate("acme-00001", password.clone()).await.unwrap();
    assert_eq!(right, AuthOutcome::Allowed);
    assert_eq!(stored().await, hash_password(&password));
    assert_eq!(registry.authenticate("acme-00001", password).await.unwrap(), AuthOutcome::Allowed);
    assert_eq!(
        registry.authenticate("acme-00001", "guess".to_owned()).await.unwrap(),
        AuthOutcome::BadPassword
    );
}

async fn alarm_rules_and_webhooks(registry: Registry) {
    use wenu_alarms::{Condition, Direction, Rule, Severity};
    let mut keyring = Keyring::default();
    let acme = provision_fleet(&registry, &mut keyring, "acme", 1).await.unwrap();
    let globex = provision_fleet(&registry, &mut keyring, "globex", 1).await.unwrap();
    let mut rule = Rule {
        company: "acme".into(),
        id: "too-hot".into(),
        name: "Too hot".into(),
        device: Some(acme[0].device_id.clone()),
        sensor: Some("temp-1".into()),
        condition: Condition::Threshold {
            direction: Direction::Above,
            limit: 30.0,
            hysteresis: 1.0,
            for_ms: 5000,
        },
        severity: Severity::Critical,
        enabled: true,
        version: 0,
    };
    let stored = registry.put_rule(&rule).await.unwrap();
    assert!(stored.version > 0);
    assert_eq!(registry.rule("acme", "too-hot").await.unwrap(), Some(stored.clone()));
    assert_eq!(registry.rules(Some("acme")).await.unwrap(), std::slice::from_ref(&stored));
    assert!(registry.rules(Some("globex")).await.unwrap().is_empty());

    // Invalid rules and other companies' devices are refused.
    let mut invalid = rule.clone();
    invalid.condition = Condition::Flatline { window_ms: 0, tolerance: 0.0 };
    assert!(matches!(registry.put_rule(&invalid).await, Err(Error::Invalid(e)) if e.contains("window_ms")));
    let mut foreign = rule.clone();
    foreign.device = Some(globex[0].device_id.clone());
    assert!(matches!(registry.put_rule(&foreign).await, Err(Error::UnknownDevice(_))));

    std::thread::sleep(std::time::Duration::from_millis(2));
    rule.enabled = false;
    let changed = registry.put_rule(&rule).await.unwrap();
    assert!(changed.version > stored.version && !changed.enabled);
    registry.delete_rule("acme", "too-hot").await.unwrap();
    assert!(matches!(registry.delete_rule("acme", "too-hot").await, Err(Error::UnknownRule(_))));

    let hook = registry.add_channel("acme", &NewChannel::url("http://127.0.0.1:9/alarms")).await.unwrap();
    assert_eq!(hook.secret.len(), 64);
    assert!(matches!(
        registry.add_channel("acme", &NewChannel::url("ftp://x")).await,
        Err(Error::Invalid(_))
    ));
    assert_eq!(registry.channels(None).await.unwrap(), std::slice::from_ref(&hook));
    assert!(serde_json::to_string(&hook).unwrap().find(&hook.secret).is_none(), "secret never serialized");
    assert!(matches!(registry.delete_channel("globex", &hook.id).await, Err(Error::UnknownChannel(_))));
    registry.delete_channel("acme", &hook.id).await.unwrap();
    let actions: Vec<String> =
        registry.audit_log(Some("acme"), None, 10).await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions[..5], ["channel.delete", "channel.add", "rule.delete", "rule.put", "rule.put"]);

    // A chat webhook keeps its format.
    let slack = registry
        .add_channel(
            "acme",
            &NewChannel {
                format: wenu_alarms::WebhookFormat::Slack,
                ..NewChannel::url("https://hooks.slack.example/T0/B0/x")
            },
        )
        .await
        .unwrap();
    let listed = registry.channels(Some("acme")).await.unwrap();
    assert_eq!(listed.iter().find(|h| h.id == slack.id).unwrap().format, wenu_alarms::WebhookFormat::Slack);
}

async fn channels_route_and_silences_quiet_them(registry: Registry) {
    use wenu_alarms::{ChannelDirectory, Condition, Notification, Route, Rule, Severity};
    use wenu_registry::{NewSilence, RegistryChannels};
    let mut keyring = Keyring::default();
    let acme = provision_fleet(&registry, &mut keyring, "acme", 2).await.unwrap();
    provision_fleet(&registry, &mut keyring, "globex", 1).await.unwrap();
    let (d1, d2) = (acme[0].device_id.clone(), acme[1].device_id.clone());
    registry.upsert_site("acme", "plant", "Plant").await.unwrap();
    registry.set_device_site(&d2, Some("plant")).await.unwrap();
    let rule = Rule {
        company: "acme".into(),
        id: "hot".into(),
        name: "Hot".into(),
        device: None,
        sensor: Some("temp-1".into()),
        condition: Condition::Flatline { window_ms: 60_000, tolerance: 0.0 },
        severity: Severity::Warning,
        enabled: true,
        version: 0,
    };
    registry.put_rule(&rule).await.unwrap();

    // An e-mail channel with routing; bad URLs, bad routes and other companies' rules are refused.
    let on_call = NewChannel {
        route: Route {
            min_severity: Some(Severity::Critical),
            rules: vec!["hot".into()],
            escalate_after_secs: Some(900),
        },
        ..NewChannel::url("mailto:oncall@acme.example")
    };
    let channel = registry.acting_as("token:t1 (ops)").add_channel("acme", &on_call).await.unwrap();
    assert_eq!((channel.kind.as_str(), &channel.route), ("email", &on_call.route));
    assert_eq!(registry.channels(Some("acme")).await.unwrap(), std::slice::from_ref(&channel));
    for bad in ["mailto:a@acme.example?bcc=b@evil.example", "mailto:nobody", "gopher://x"] {
        assert!(
            matches!(registry.add_channel("acme", &NewChannel::url(bad)).await, Err(Error::Invalid(_))),
            "{bad}"
        );
    }
    let too_soon = NewChannel {
        route: Route { escalate_after_secs: Some(5), ..Route::default() },
        ..NewChannel::url("mailto:x@acme.example")
    };
    assert!(matches!(registry.add_channel("acme", &too_soon).await, Err(Error::Invalid(_))));
    let foreign_rule = NewChannel {
        route: Route { rules: vec!["hot".into()], ..Route::default() },
        ..NewChannel::url("mailto:x@globex.example")
    };
    assert!(matches!(registry.add_channel("globex", &foreign_rule).await, Err(Error::UnknownRule(_))));

    // Silences: one for a device, one for a site; refused without a target,
    // a reason, or with another company's device.
    let now = wenu_core::clock::now_ms();
    let hour = 3_600_000;
    let silence = |device: Option<&str>, site: Option<&str>| NewSilence {
        device: device.map(Into::into),
        site: site.map(Into::into),
        rule: None,
        starts_at: Some(now - 1000),
        ends_at: now + hour,
        reason: "maintenance".into(),
    };
    let by_device =
        registry.acting_as("token:t1 (ops)").add_silence("acme", &silence(Some(&d1), None)).await.unwrap();
    assert_eq!(by_device.created_by, "token:t1 (ops)");
    let by_site = registry.add_silence("acme", &silence(None, Some("plant"))).await.unwrap();
    assert!(matches!(registry.add_silence("acme", &silence(None, None)).await, Err(Error::Invalid(_))));
    assert!(matches!(
        registry.add_silence("acme", &NewSilence { reason: " ".into(), ..silence(Some(&d1), None) }).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        registry.add_silence("globex", &silence(Some(&d1), None)).await,
        Err(Error::UnknownDevice(_))
    ));
    assert!(matches!(
        registry.add_silence("acme", &silence(None, Some("nowhere"))).await,
        Err(Error::UnknownSite(_))
    ));
    assert_eq!(registry.silences(Some("acme"), now).await.unwrap().len(), 2);
    assert!(registry.silences(Some("globex"), now).await.unwrap().is_empty());

    // What the notifiers see: d1 silenced by device, d2 by its site, and a
    // transition outside the window not at all.
    let directory = RegistryChannels::new(registry.clone());
    let notification = |device: &str, ts: i64| -> Notification {
        serde_json::from_value(serde_json::json!({
            "id": "n", "alarm": "a", "company": "acme", "rule": "hot", "rule_name": "Hot", "severity": "critical",
            "condition": "flatline", "device": device, "sensor": null, "change": "raised", "ts": ts, "raised_at": ts,
            "value": null, "detail": "",
        }))
        .unwrap()
    };
    assert_eq!(directory.silence(&notification(&d1, now)).await.unwrap().unwrap().id, by_device.id);
    assert_eq!(directory.silence(&notification(&d2, now)).await.unwrap().unwrap().id, by_site.id);
    assert_eq!(directory.silence(&notification(&d1, now + 2 * hour)).await.unwrap(), None);
    assert_eq!(directory.channels(Some("acme")).await.unwrap().len(), 1);
    assert!(directory.channels(Some("globex")).await.unwrap().is_empty());

    // Ending a silence keeps it on record, ended; another company cannot end it.
    assert!(matches!(registry.end_silence("globex", &by_device.id).await, Err(Error::UnknownSilence(_))));
    let ended = registry.end_silence("acme", &by_device.id).await.unwrap();
    assert!(ended.ends_at <= wenu_core::clock::now_ms());
    assert_eq!(registry.silences(Some("acme"), wenu_core::clock::now_ms()).await.unwrap().len(), 1);
    assert_eq!(registry.silences(Some("acme"), 0).await.unwrap().len(), 2);
    let actions: Vec<String> =
        registry.audit_log(Some("acme"), None, 3).await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["silence.end", "silence.add", "silence.add"]);

    // Deleting a channel: another company's is unknown.
    assert!(matches!(registry.delete_channel("globex", &channel.id).await, Err(Error::UnknownChannel(_))));
    registry.delete_channel("acme", &channel.id).await.unwrap();
}

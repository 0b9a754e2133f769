//! The keyring port's conformance suite, run against every backend (the
//! keyring file, Secrets Manager on moto): two handles on one keyring, one
//! that provisions and rotates, one that reads as a stage does.

use wenu_core::keyring::KeyringStore;

/// Keys one handle adds are what the other reads; it hears of a change
/// once, and of a rotation too.
pub async fn provisioned_and_rotated_keys_reach_a_reader(
    writer: &mut dyn KeyringStore,
    reader: &mut dyn KeyringStore,
) {
    let first = writer.add_key("dev-1").await.unwrap();
    let (one, key_one) = (first.id, first.key);
    assert!(first.previous.is_none(), "a first key follows none");
    let second = writer.add_key("dev-2").await.unwrap();
    let (two, key_two) = (second.id, second.key);
    assert_eq!((one, two), (1, 1), "a device's first key has id 1");
    let keyring = reader.changed().await.unwrap().expect("the first call loads the keyring");
    assert_eq!(keyring.decryption_key("dev-1", 1).unwrap(), &key_one);
    assert_eq!(keyring.decryption_key("dev-2", 1).unwrap(), &key_two);
    assert!(reader.changed().await.unwrap().is_none(), "nothing changed since");

    let rotated = writer.add_key("dev-1").await.unwrap();
    let (previous_id, previous_key) = rotated.previous.expect("a rotation follows the current key");
    assert_eq!((previous_id, &previous_key), (1, &key_one), "the key a new one is sealed under");
    let (rotated, key_rotated) = (rotated.id, rotated.key);
    assert_eq!(rotated, 2);
    let keyring = reader.changed().await.unwrap().expect("a rotation is a change");
    assert_eq!(keyring.decryption_key("dev-1", 2).unwrap(), &key_rotated);
    assert_eq!(keyring.decryption_key("dev-1", 1).unwrap(), &key_one, "the old key still decrypts");
    assert_eq!(keyring.current_key("dev-1").unwrap().id, 2);
}

/// A fleet imported at once reaches a reader whole, beside the devices
/// already there; importing a device again replaces its keys, and keys
/// added later follow on from the imported ones.
pub async fn an_imported_fleet_reaches_a_reader(
    writer: &mut dyn KeyringStore,
    reader: &mut dyn KeyringStore,
) {
    use wenu_core::keyring::Keyring;
    let before = writer.add_key("old-1").await.unwrap().key;
    let mut fleet = Keyring::default();
    let ids: Vec<String> = (0..300).map(|n| format!("fleet-{n:04}")).collect();
    let keys: Vec<_> = ids.iter().map(|id| fleet.add_key(id).1).collect();
    writer.import(fleet).await.unwrap();
    let keyring = reader.changed().await.unwrap().expect("the first call loads the keyring");
    assert_eq!(keyring.device_count(), 301);
    assert_eq!(keyring.decryption_key("old-1", 1).unwrap(), &before);
    for (id, key) in ids.iter().zip(&keys) {
        assert_eq!(keyring.decryption_key(id, 1).unwrap(), key, "{id}");
    }

    let mut again = Keyring::default();
    let (_, replaced) = again.add_key("fleet-0007");
    writer.import(again).await.unwrap();
    let next = writer.add_key("fleet-0008").await.unwrap().id;
    assert_eq!(next, 2);
    let keyring = reader.changed().await.unwrap().expect("an import is a change");
    assert_eq!(keyring.device_count(), 301);
    assert_eq!(keyring.decryption_key("fleet-0007", 1).unwrap(), &replaced);
    assert_eq!(keyring.key_ids("fleet-0008"), [1, 2]);
}

/// Two writers changing the keyring at once (two `wenu devices` commands,
/// the API beside the CLI) lose nothing: every key either added is there,
/// with distinct ids per device.
pub async fn concurrent_writers_lose_no_key(
    first: &mut dyn KeyringStore,
    second: &mut dyn KeyringStore,
    reader: &mut dyn KeyringStore,
) {
    const ROUNDS: u32 = 8;
    let (from_first, from_second) =
        tokio::join!(rotate_and_import("first", first), rotate_and_import("second", second));
    let keyring = reader.changed().await.unwrap().expect("the first call loads the keyring");
    assert_eq!(keyring.device_count(), 1 + 2 * ROUNDS as usize);
    for (device, (id, key)) in from_first.iter().chain(&from_second) {
        assert_eq!(keyring.decryption_key(device, *id).unwrap(), key, "{device} key {id}");
    }
    assert_eq!(keyring.key_ids("shared"), (1..=2 * ROUNDS).collect::<Vec<_>>());

    /// Rotates a device both writers share and imports one of its own, each round.
    async fn rotate_and_import(
        writer: &str,
        store: &mut dyn KeyringStore,
    ) -> Vec<(String, (u32, wenu_core::keyring::SecretKey))> {
        let mut added = Vec::new();
        for round in 0..ROUNDS {
            let shared = store.add_key("shared").await.unwrap();
            added.push(("shared".to_owned(), (shared.id, shared.key)));
            let own = format!("{writer}-{round}");
            let mut fleet = wenu_core::keyring::Keyring::default();
            let key = fleet.add_key(&own);
            store.import(fleet).await.unwrap();
            added.push((own, key));
        }
        added
    }
}

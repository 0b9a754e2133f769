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
    let (one, key_one) = writer.add_key("dev-1").await.unwrap();
    let (two, key_two) = writer.add_key("dev-2").await.unwrap();
    assert_eq!((one, two), (1, 1), "a device's first key has id 1");
    let keyring = reader.changed().await.unwrap().expect("the first call loads the keyring");
    assert_eq!(keyring.decryption_key("dev-1", 1).unwrap(), &key_one);
    assert_eq!(keyring.decryption_key("dev-2", 1).unwrap(), &key_two);
    assert!(reader.changed().await.unwrap().is_none(), "nothing changed since");

    let (rotated, key_rotated) = writer.add_key("dev-1").await.unwrap();
    assert_eq!(rotated, 2);
    let keyring = reader.changed().await.unwrap().expect("a rotation is a change");
    assert_eq!(keyring.decryption_key("dev-1", 2).unwrap(), &key_rotated);
    assert_eq!(keyring.decryption_key("dev-1", 1).unwrap(), &key_one, "the old key still decrypts");
    assert_eq!(keyring.current_key("dev-1").unwrap().id, 2);
}

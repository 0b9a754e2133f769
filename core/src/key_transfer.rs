//! A new device key sent over the downlink, sealed under the key the device
//! holds: the `rotate_key` command's `sealed` argument.
//!
//! The sealed value is an ordinary envelope (see [`crate::envelope`]) under
//! the device's current key, whose plaintext is 36 bytes:
//!
//! ```text
//! | 4 new key id (BE) | 32 new key |
//! ```
//!
//! A reading's plaintext is JSON, so neither can be taken for the other.

use crate::envelope::{Header, open, seal};
use crate::keyring::{Keyring, SecretKey};
use crate::{Error, Result};

/// The command that carries a new key; its result confirms the rotation.
pub const ROTATE_KEY_COMMAND: &str = "rotate_key";

const PLAINTEXT_LEN: usize = 4 + 32;

/// Seals `new_key` for `device_id` under its current key.
pub fn seal_key(
    device_id: &str,
    (current_id, current_key): (u32, &SecretKey),
    (new_id, new_key): (u32, &SecretKey),
    nonce: [u8; 12],
) -> Vec<u8> {
    let mut plaintext = [0u8; PLAINTEXT_LEN];
    plaintext[..4].copy_from_slice(&new_id.to_be_bytes());
    plaintext[4..].copy_from_slice(new_key.as_bytes());
    seal(device_id, current_id, current_key, nonce, &plaintext)
}

/// Opens a sealed key with whichever of the device's keys it names: what a
/// device does with a `rotate_key` command.
pub fn open_key(device_id: &str, sealed: &[u8], keyring: &Keyring) -> Result<(u32, SecretKey)> {
    let header = Header::parse(sealed)?;
    let key = keyring.decryption_key(device_id, header.key_id)?;
    let plaintext = open(device_id, sealed, key)?;
    let bytes: [u8; PLAINTEXT_LEN] = plaintext.try_into().map_err(|p: Vec<u8>| {
        Error::MalformedPlaintext(format!("a sealed key is 36 bytes, not {}", p.len()))
    })?;
    let new_id = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
    let new_key: [u8; 32] = bytes[4..].try_into().expect("32 bytes");
    Ok((new_id, SecretKey::from_bytes(new_key)))
}

/// The `rotate_key` command's arguments: the new key's id, and the sealed key in hex.
pub fn command_args(new_id: u32, sealed: &[u8]) -> serde_json::Value {
    serde_json::json!({ "key_id": new_id, "sealed": hex::encode(sealed) })
}

/// Reads a `rotate_key` command's arguments back: the new key id and the sealed bytes.
pub fn parse_command_args(args: &serde_json::Value) -> Result<(u32, Vec<u8>)> {
    let bad = |what: &str| Error::MalformedPlaintext(format!("rotate_key arguments: {what}"));
    let new_id =
        args["key_id"].as_u64().and_then(|id| u32::try_from(id).ok()).ok_or_else(|| bad("key_id"))?;
    let sealed = args["sealed"].as_str().and_then(|s| hex::decode(s).ok()).ok_or_else(|| bad("sealed"))?;
    Ok((new_id, sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_under_the_current_key_only() {
        let mut ring = Keyring::default();
        let (old_id, old_key) = ring.add_key("dev-1");
        let new_key = SecretKey::generate();
        let sealed = seal_key("dev-1", (old_id, &old_key), (2, &new_key), [7; 12]);
        let (id, key) = open_key("dev-1", &sealed, &ring).unwrap();
        assert_eq!((id, key.as_bytes()), (2, new_key.as_bytes()));

        // Another device cannot open it, and a flipped bit is caught.
        let mut other = Keyring::default();
        other.add_key("dev-2");
        assert!(open_key("dev-2", &sealed, &other).is_err());
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(matches!(open_key("dev-1", &tampered, &ring), Err(Error::Tampered)));
    }

    #[test]
    fn a_reading_envelope_is_not_taken_for_a_key() {
        let mut ring = Keyring::default();
        let (id, key) = ring.add_key("dev-1");
        let reading = seal("dev-1", id, &key, [1; 12], br#"{"seq":1,"ts":1,"readings":[]}"#);
        assert!(matches!(open_key("dev-1", &reading, &ring), Err(Error::MalformedPlaintext(_))));
    }

    #[test]
    fn command_arguments_round_trip() {
        let args = command_args(3, &[1, 2, 255]);
        assert_eq!(args, serde_json::json!({ "key_id": 3, "sealed": "0102ff" }));
        assert_eq!(parse_command_args(&args).unwrap(), (3, vec![1, 2, 255]));
        assert!(parse_command_args(&serde_json::json!({ "key_id": -1, "sealed": "00" })).is_err());
    }
}

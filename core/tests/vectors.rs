//! The envelope test vectors of `docs/test-vectors.json`, made by an
//! independent implementation (Python's `cryptography`), must be what this
//! codec seals and opens; the first one is also printed in docs/devices.md,
//! and the guide must show it as it is.

use serde::Deserialize;
use wenu_core::Error;
use wenu_core::envelope::{Header, open, seal};
use wenu_core::keyring::SecretKey;
use wenu_core::reading::ReadingBatch;

const VECTORS: &str = include_str!("../../docs/test-vectors.json");
const GUIDE: &str = include_str!("../../docs/devices.md");

#[derive(Deserialize)]
struct Vectors {
    vectors: Vec<Vector>,
    key_transfers: Vec<KeyTransfer>,
}

#[derive(Deserialize)]
struct KeyTransfer {
    name: String,
    device_id: String,
    key_id: u32,
    key_hex: String,
    nonce_hex: String,
    new_key_id: u32,
    new_key_hex: String,
    plaintext_hex: String,
    command_args: serde_json::Value,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    device_id: String,
    key_id: u32,
    key_base64: String,
    key_hex: String,
    nonce_hex: String,
    plaintext: String,
    aad_hex: String,
    envelope_hex: String,
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str::<Vectors>(VECTORS).expect("docs/test-vectors.json parses").vectors
}

#[test]
fn the_codec_seals_and_opens_every_vector_byte_for_byte() {
    let vectors = vectors();
    assert!(vectors.len() >= 3);
    for v in vectors {
        let key = SecretKey::from_base64(&v.key_base64).expect("32-byte key");
        assert_eq!(key.as_bytes().as_slice(), unhex(&v.key_hex), "{}: base64 and hex keys differ", v.name);
        let nonce: [u8; 12] = unhex(&v.nonce_hex).try_into().expect("12-byte nonce");
        let envelope = unhex(&v.envelope_hex);

        assert_eq!(seal(&v.device_id, v.key_id, &key, nonce, v.plaintext.as_bytes()), envelope, "{}", v.name);
        assert_eq!(open(&v.device_id, &envelope, &key).unwrap(), v.plaintext.as_bytes(), "{}", v.name);
        let header = Header::parse(&envelope).unwrap();
        assert_eq!((header.version, header.key_id, header.nonce), (1, v.key_id, nonce), "{}", v.name);

        let mut aad = vec![1];
        aad.extend_from_slice(&v.key_id.to_be_bytes());
        aad.extend_from_slice(v.device_id.as_bytes());
        assert_eq!(aad, unhex(&v.aad_hex), "{}: the AAD as documented", v.name);

        // The AAD binds the envelope to its device: another id does not open it.
        assert!(matches!(open("someone-else", &envelope, &key), Err(Error::Tampered)), "{}", v.name);
        match ReadingBatch::from_json(v.plaintext.as_bytes()) {
            Ok(batch) => assert!(!batch.readings.is_empty(), "{}", v.name),
            Err(err) => assert!(v.plaintext.is_empty() && matches!(err, Error::MalformedPlaintext(_))),
        }
    }
}

#[test]
fn the_guide_prints_the_first_vector_as_it_is() {
    let first = &vectors()[0];
    for (what, value) in [
        ("device id", first.device_id.as_str()),
        ("key", first.key_hex.as_str()),
        ("nonce", first.nonce_hex.as_str()),
        ("plaintext", first.plaintext.as_str()),
        ("AAD", first.aad_hex.as_str()),
        ("envelope", first.envelope_hex.as_str()),
    ] {
        assert!(GUIDE.contains(value), "docs/devices.md does not show the first vector's {what}: {value}");
    }
}

/// A rotate_key command's arguments, made by the independent implementation,
/// are what Wenu seals, and open to the documented 36 bytes.
#[test]
fn the_key_transfer_vector_seals_and_opens_byte_for_byte() {
    use wenu_core::key_transfer::{command_args, open_key, parse_command_args, seal_key};
    use wenu_core::keyring::Keyring;
    let transfers = serde_json::from_str::<Vectors>(VECTORS).unwrap().key_transfers;
    assert!(!transfers.is_empty());
    for t in transfers {
        let key = SecretKey::from_bytes(unhex(&t.key_hex).try_into().unwrap());
        let new_key = SecretKey::from_bytes(unhex(&t.new_key_hex).try_into().unwrap());
        let nonce: [u8; 12] = unhex(&t.nonce_hex).try_into().unwrap();
        let sealed = seal_key(&t.device_id, (t.key_id, &key), (t.new_key_id, &new_key), nonce);
        assert_eq!(command_args(t.new_key_id, &sealed), t.command_args, "{}", t.name);
        let (announced, sealed) = parse_command_args(&t.command_args).unwrap();
        assert_eq!(open(&t.device_id, &sealed, &key).unwrap(), unhex(&t.plaintext_hex), "{}", t.name);
        let mut ring = Keyring::default();
        ring.import_key(&t.device_id, t.key_id, key.clone());
        let (opened_id, opened_key) = open_key(&t.device_id, &sealed, &ring).unwrap();
        assert_eq!(
            (announced, opened_id, opened_key.as_bytes()),
            (t.new_key_id, t.new_key_id, new_key.as_bytes())
        );
    }
}

//! The device → cloud wire format.
//!
//! ```text
//! | 1 version | 4 key id (BE) | 12 nonce | ciphertext ‖ 16-byte GCM tag |
//! ```
//!
//! The AAD is `version ‖ key id ‖ device id`: the header cannot be altered and a
//! payload sealed by one device does not open as another's.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::keyring::{Keyring, SecretKey};
use crate::{Error, Result};

pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 1 + 4 + 12;
pub const TAG_LEN: usize = 16;
/// The shortest well-formed envelope: a header and a tag around an empty plaintext.
pub const MIN_LEN: usize = HEADER_LEN + TAG_LEN;

/// The clear-text part of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub key_id: u32,
    pub nonce: [u8; 12],
}

impl Header {
    /// Reads the header, refusing what cannot be an envelope of a known version.
    pub fn parse(envelope: &[u8]) -> Result<Header> {
        if envelope.len() < MIN_LEN {
            return Err(Error::Truncated { len: envelope.len(), min: MIN_LEN });
        }
        let version = envelope[0];
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let key_id = u32::from_be_bytes(envelope[1..5].try_into().expect("4 bytes"));
        let nonce = envelope[5..HEADER_LEN].try_into().expect("12 bytes");
        Ok(Header { version, key_id, nonce })
    }

    fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = self.version;
        out[1..5].copy_from_slice(&self.key_id.to_be_bytes());
        out[5..].copy_from_slice(&self.nonce);
        out
    }
}

fn aad(header: &Header, device_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(5 + device_id.len());
    aad.push(header.version);
    aad.extend_from_slice(&header.key_id.to_be_bytes());
    aad.extend_from_slice(device_id.as_bytes());
    aad
}

/// Encrypts `plaintext` for `device_id` under one of its keys.
///
/// The caller owns nonce uniqueness; devices draw from a [`NonceSequence`].
pub fn seal(device_id: &str, key_id: u32, key: &SecretKey, nonce: [u8; 12], plaintext: &[u8]) -> Vec<u8> {
    let header = Header { version: VERSION, key_id, nonce };
    let cipher = Aes256Gcm::new(key.as_bytes().into());
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad(&header, device_id) })
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(&ciphertext);
    out
}

/// Decrypts an envelope that `device_id` sealed with `key`.
pub fn open(device_id: &str, envelope: &[u8], key: &SecretKey) -> Result<Vec<u8>> {
    Opener::new(key).open(device_id, envelope)
}

/// One key, expanded once: decrypting many envelopes under the same key skips
/// the AES key schedule each time. Its `Debug` shows nothing of the key.
#[derive(Clone)]
pub struct Opener(Aes256Gcm);

impl Opener {
    pub fn new(key: &SecretKey) -> Self {
        Opener(Aes256Gcm::new(key.as_bytes().into()))
    }

    /// Decrypts an envelope that `device_id` sealed with this key.
    pub fn open(&self, device_id: &str, envelope: &[u8]) -> Result<Vec<u8>> {
        let header = Header::parse(envelope)?;
        self.0
            .decrypt(
                Nonce::from_slice(&header.nonce),
                Payload { msg: &envelope[HEADER_LEN..], aad: &aad(&header, device_id) },
            )
            .map_err(|_| Error::Tampered)
    }
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener(..)")
    }
}

/// Decrypts an envelope with whichever of the device's keys its header names.
pub fn open_with_keyring(device_id: &str, envelope: &[u8], keyring: &Keyring) -> Result<Vec<u8>> {
    let header = Header::parse(envelope)?;
    let key = keyring.decryption_key(device_id, header.key_id)?;
    open(device_id, envelope, key)
}

/// Nonces for a device's messages under one key: 96 random bits each, from
/// the operating system's CSPRNG seeded generator. Unique by construction
/// without any state to keep across reboots (a boot-prefix-and-counter
/// scheme repeats once two boots draw the same prefix: with a 32-bit prefix,
/// about n²/2³³ over n boots). Random nonces collide with probability about
/// m²/2⁹⁷ over m messages; NIST SP 800-38D caps a key at 2³² of them (a
/// collision chance below 2⁻³²), which [`NonceSequence::next_nonce`] enforces:
/// past it, rotate the key.
#[derive(Debug, Clone, Default)]
pub struct NonceSequence {
    used: u64,
}

/// Messages one key may seal with random nonces (NIST SP 800-38D, 8.3).
pub const MESSAGES_PER_KEY: u64 = 1 << 32;

impl NonceSequence {
    /// Nonces for a key, counting from none used (at boot, or after a rotation).
    pub fn new() -> Self {
        Self::default()
    }

    pub fn next_nonce(&mut self) -> Result<[u8; 12]> {
        if self.used >= MESSAGES_PER_KEY {
            return Err(Error::NonceExhausted);
        }
        self.used += 1;
        Ok(rand::random())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes([byte; 32])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn seal_then_open_round_trips(plaintext in proptest::collection::vec(any::<u8>(), 0..512),
                                      key_id in any::<u32>(), nonce in any::<[u8; 12]>(), k in any::<u8>()) {
            let sealed = seal("dev-1", key_id, &key(k), nonce, &plaintext);
            prop_assert_eq!(Header::parse(&sealed)?.key_id, key_id);
            prop_assert_eq!(open("dev-1", &sealed, &key(k))?, plaintext);
        }

        #[test]
        fn any_flipped_bit_is_rejected(plaintext in proptest::collection::vec(any::<u8>(), 0..128),
                                       bit in any::<prop::sample::Index>()) {
            let mut sealed = seal("dev-1", 1, &key(9), [3; 12], &plaintext);
            let bit = bit.index(sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            let err = open("dev-1", &sealed, &key(9)).unwrap_err();
            // A flip in the version byte is caught before the tag is checked.
            prop_assert!(matches!(err, Error::Tampered | Error::UnsupportedVersion(_)), "{err:?}");
        }

        #[test]
        fn any_truncation_is_rejected(plaintext in proptest::collection::vec(any::<u8>(), 0..128),
                                      cut in any::<prop::sample::Index>()) {
            let sealed = seal("dev-1", 1, &key(9), [3; 12], &plaintext);
            let cut = cut.index(sealed.len());
            let err = open("dev-1", &sealed[..cut], &key(9)).unwrap_err();
            prop_assert!(matches!(err, Error::Tampered | Error::Truncated { .. }), "{err:?}");
        }

        #[test]
        fn another_device_id_is_rejected(plaintext in proptest::collection::vec(any::<u8>(), 0..128),
                                         other in "[a-z0-9-]{1,20}") {
            prop_assume!(other != "dev-1");
            let sealed = seal("dev-1", 1, &key(9), [3; 12], &plaintext);
            prop_assert!(matches!(open(&other, &sealed, &key(9)), Err(Error::Tampered)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = open("dev-1", &bytes, &key(1));
        }
    }

    #[test]
    fn wrong_key_is_rejected() {
        let sealed = seal("dev-1", 1, &key(1), [0; 12], b"{}");
        assert!(matches!(open("dev-1", &sealed, &key(2)), Err(Error::Tampered)));
    }

    #[test]
    fn nonces_are_fresh_and_a_key_seals_at_most_its_limit() {
        let mut nonces = NonceSequence::new();
        let drawn: std::collections::HashSet<[u8; 12]> =
            (0..10_000).map(|_| nonces.next_nonce().unwrap()).collect();
        assert_eq!(drawn.len(), 10_000, "no repeats");
        // Two devices (or two boots of one) draw independently.
        let (mut one, mut other) = (NonceSequence::new(), NonceSequence::new());
        assert_ne!(one.next_nonce().unwrap(), other.next_nonce().unwrap());
        let mut worn = NonceSequence { used: MESSAGES_PER_KEY - 1 };
        assert!(worn.next_nonce().is_ok());
        assert!(matches!(worn.next_nonce(), Err(Error::NonceExhausted)), "rotate the key past 2^32");
    }
}

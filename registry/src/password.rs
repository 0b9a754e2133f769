//! Device passwords: generated random, stored only as a SHA-256 digest.
//!
//! A device password is 144 random bits, not something a person chose, so
//! guessing it is hopeless whatever the hash costs, and a fast hash is as good
//! as a slow one (API tokens are stored the same way). Verifying costs
//! microseconds, so a whole fleet reconnecting after a restart is checked in
//! seconds; Argon2, at about 20 ms of CPU per login, took minutes for 10 000
//! devices on two cores.
//!
//! Registries written before keep working: [`verify_password`] still accepts
//! their Argon2id hashes, and [`Registry::authenticate`](crate::Registry::authenticate)
//! replaces such a hash by the fast form after the device's first good login.

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How a stored fast hash starts: `sha256:` and 64 hex digits.
const FAST_PREFIX: &str = "sha256:";

/// 144 random bits, printable: enough that guessing is hopeless.
pub fn generate_password() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>())
}

/// The stored form of `password`: `sha256:{hex digest}`.
pub fn hash_password(password: &str) -> String {
    format!("{FAST_PREFIX}{}", hex::encode(Sha256::digest(password.as_bytes())))
}

/// Whether `stored_hash` is an Argon2 hash from an older registry: slow to
/// verify (call [`verify_password`] off the async runtime) and worth replacing.
pub fn is_slow_hash(stored_hash: &str) -> bool {
    !stored_hash.starts_with(FAST_PREFIX)
}

/// Checks a password against a stored hash, in constant time for the fast
/// form. An Argon2 hash costs tens of milliseconds (see [`is_slow_hash`]).
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    match stored_hash.strip_prefix(FAST_PREFIX) {
        Some(stored_hex) => {
            let digest = hex::encode(Sha256::digest(password.as_bytes()));
            bool::from(digest.as_bytes().ct_eq(stored_hex.as_bytes()))
        }
        None => PasswordHash::new(stored_hash)
            .map(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
            .unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use argon2::PasswordHasher;
    use argon2::password_hash::{SaltString, rand_core::OsRng};

    use super::*;

    #[test]
    fn verifies_only_the_right_password() {
        let password = generate_password();
        let hash = hash_password(&password);
        assert!(!hash.contains(&password));
        assert!(!is_slow_hash(&hash));
        assert!(verify_password(&password, &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password(&password, "not a hash"));
        assert!(!verify_password(&password, "sha256:"));
        assert!(!verify_password(&password, &hash[..hash.len() - 1]), "a truncated digest");
    }

    #[test]
    fn the_digest_is_sha256_of_the_password() {
        // python3 -c 'import hashlib; print(hashlib.sha256(b"secret").hexdigest())'
        assert_eq!(
            hash_password("secret"),
            "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
    }

    #[test]
    fn argon2_hashes_of_older_registries_still_verify() {
        let password = generate_password();
        let salt = SaltString::generate(&mut OsRng);
        let argon2 = Argon2::default().hash_password(password.as_bytes(), &salt).unwrap().to_string();
        assert!(is_slow_hash(&argon2));
        assert!(verify_password(&password, &argon2));
        assert!(!verify_password("wrong", &argon2));
    }
}

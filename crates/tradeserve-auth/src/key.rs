//! API keys and their stored form. A key is `<id>.<secret>`: the id names the configured key
//! (and is the `actor` of what the key does), the secret is 32 random bytes in hex. The
//! configuration holds only `sha256:<salt>:<digest>` — SHA-256 of a random 16-byte salt
//! followed by the whole key — checked in constant time.
//!
//! A key has 256 random bits, so a slow password hash (argon2, bcrypt) adds nothing against
//! guessing and would cost milliseconds on every request; a salted SHA-256 keeps a leaked
//! configuration from revealing or matching keys (docs/ARCHITECTURE.md).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a stored hash or a key id is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a key hash is `sha256:<32 hex salt>:<64 hex digest>` (tradeserve auth new-key)")]
    Hash,
    #[error("key id {0:?}: 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`")]
    Id(String),
    #[error("the system random source failed: {0}")]
    Random(String),
}

/// The stored form of one key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHash {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl KeyHash {
    /// The hash of `key` with `salt`.
    pub fn new(key: &str, salt: [u8; 16]) -> KeyHash {
        KeyHash {
            salt,
            digest: digest(&salt, key),
        }
    }

    /// Whether `key` is the key this was made from, in time independent of where they differ.
    pub fn matches(&self, key: &str) -> bool {
        bool::from(digest(&self.salt, key).ct_eq(&self.digest))
    }
}

fn digest(salt: &[u8; 16], key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(key.as_bytes());
    h.finalize().into()
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sha256:{}:{}",
            hex::encode(self.salt),
            hex::encode(self.digest)
        )
    }
}

/// The digest is not a secret, but a key's stored form has no business in logs either.
impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(sha256:…)")
    }
}

impl FromStr for KeyHash {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<KeyHash, KeyError> {
        let mut parts = s.trim().split(':');
        let (Some("sha256"), Some(salt), Some(digest), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::Hash);
        };
        let mut out = KeyHash {
            salt: [0; 16],
            digest: [0; 32],
        };
        hex::decode_to_slice(salt, &mut out.salt).map_err(|_| KeyError::Hash)?;
        hex::decode_to_slice(digest, &mut out.digest).map_err(|_| KeyError::Hash)?;
        Ok(out)
    }
}

/// Check a key id's spelling.
pub fn check_id(id: &str) -> Result<(), KeyError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KeyError::Id(id.to_owned()))
    }
}

/// The id a presented key claims (`None` when it is not `<id>.<secret>`).
pub fn claimed_id(key: &str) -> Option<&str> {
    let (id, secret) = key.split_once('.')?;
    (!id.is_empty() && !secret.is_empty()).then_some(id)
}

/// A new key for `id` and its stored form.
pub fn generate(id: &str) -> Result<(String, KeyHash), KeyError> {
    check_id(id)?;
    let mut secret = [0u8; 32];
    let mut salt = [0u8; 16];
    getrandom::fill(&mut secret).map_err(|e| KeyError::Random(e.to_string()))?;
    getrandom::fill(&mut salt).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = format!("{id}.{}", hex::encode(secret));
    let hash = KeyHash::new(&key, salt);
    Ok((key, hash))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_generated_key_matches_its_hash_and_nothing_else() {
        let (key, hash) = generate("desk-1").unwrap();
        assert_eq!(claimed_id(&key), Some("desk-1"));
        assert_eq!(key.len(), "desk-1.".len() + 64);
        assert!(hash.matches(&key));
        let stored: KeyHash = hash.to_string().parse().unwrap();
        assert!(stored.matches(&key));
        let mut wrong = key.clone().into_bytes();
        let last = wrong.len() - 1;
        wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
        assert!(!stored.matches(std::str::from_utf8(&wrong).unwrap()));
        assert!(!stored.matches(""));
        // Two keys for one id differ, and so do their salts.
        let (key2, hash2) = generate("desk-1").unwrap();
        assert_ne!(key, key2);
        assert_ne!(hash.to_string()[7..39], hash2.to_string()[7..39]);
        assert_eq!(format!("{hash:?}"), "KeyHash(sha256:…)");
    }

    #[test]
    fn a_known_key_hashes_to_a_known_digest() {
        // sha256(16 zero bytes ‖ "a.b"), computed independently with Python's hashlib.
        let h = KeyHash::new("a.b", [0; 16]);
        assert_eq!(
            h.to_string(),
            "sha256:00000000000000000000000000000000:\
             d67d8afb2439304f80fa645fd2e106fdbd1323cea11fb885b5226377a8d4847a"
        );
    }

    #[test]
    fn malformed_hashes_and_ids_are_refused() {
        for bad in [
            "",
            "sha256",
            "sha256::",
            "md5:00000000000000000000000000000000:00",
            "sha256:zz000000000000000000000000000000:0000000000000000000000000000000000000000000000000000000000000000",
            "sha256:000000000000000000000000000000:0000000000000000000000000000000000000000000000000000000000000000",
            "sha256:00000000000000000000000000000000:0000000000000000000000000000000000000000000000000000000000000000:x",
        ] {
            assert_eq!(bad.parse::<KeyHash>(), Err(KeyError::Hash), "{bad}");
        }
        for bad in ["", "a.b", "a b", "é", &"x".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        check_id("desk_1-A").unwrap();
        assert_eq!(claimed_id("nodot"), None);
        assert_eq!(claimed_id(".secret"), None);
        assert_eq!(claimed_id("id."), None);
    }
}

//! The server key that keeps webhook signing secrets encrypted at rest.
//!
//! A webhook's secret must be readable to sign deliveries, so it cannot be stored as a hash;
//! it is sealed instead with ChaCha20-Poly1305 (`ring`'s AEAD) under a 32-byte server key:
//! stored as `v1:` + base64url(nonce ‖ ciphertext ‖ tag), a random 96-bit nonce per seal
//! (`SystemRandom`; with random nonces one key is good for about 2³² seals, far more
//! webhooks than a server has), and the webhook id as associated data, so a sealed value
//! copied onto another webhook does not open. Someone who reads the database (a backup, a
//! replica) without the key cannot forge signed webhooks.
//!
//! The key is `--secret-key` (`DOCKET_SECRET_KEY`, 32 bytes as base64 or hex), else derived
//! from the JWT secret with HKDF-SHA256, so it then follows that secret: changing the JWT
//! secret makes stored webhook secrets unreadable (deliveries fail saying so; rotating a
//! webhook means creating it again).
//!
//! A stored value without the `v1:` prefix is a plain secret from before sealing: it opens as
//! itself, so such rows keep working until the start-up pass seals them
//! (`App::seal_webhook_secrets`). The stores never look inside the value.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use docket_core::WebhookId;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom as _, SystemRandom};

/// The prefix of a sealed value; what follows is base64url without padding.
const SEALED: &str = "v1:";

/// HKDF salt and info of the key derived from the JWT secret: they name the purpose, so the
/// derived key is unrelated to any other use of that secret.
const DERIVE_SALT: &[u8] = b"docket webhook secret key v1";
const DERIVE_INFO: &[u8] = b"webhook signing secrets at rest";

/// The key's length in bytes.
pub const KEY_LEN: usize = 32;

/// The server key webhook secrets are sealed with. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SecretKey {
    key: std::sync::Arc<LessSafeKey>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Why `--secret-key` is refused (the value itself is never repeated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--secret-key/DOCKET_SECRET_KEY must be {KEY_LEN} bytes written as base64 or hex (got {0} \
     characters that are neither); make one with `openssl rand -base64 32`"
)]
pub struct KeyError(usize);

/// A stored secret that does not open under this key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the webhook's secret cannot be decrypted (the server key changed?)")]
pub struct OpenError;

impl SecretKey {
    /// The key from its configured text: 64 hex digits, or base64 (standard or URL-safe,
    /// padded or not) of exactly 32 bytes.
    pub fn parse(raw: &str) -> Result<SecretKey, KeyError> {
        let raw = raw.trim();
        let bytes = if raw.len() == 2 * KEY_LEN && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(raw).ok()
        } else {
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(raw).ok())
        };
        match bytes {
            Some(b) if b.len() == KEY_LEN => Ok(SecretKey::from_bytes(&b)),
            _ => Err(KeyError(raw.chars().count())),
        }
    }

    /// The key derived from the JWT secret (HKDF-SHA256 with a salt and info naming this use).
    pub fn derive(jwt_secret: &[u8]) -> SecretKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, DERIVE_SALT).extract(jwt_secret);
        let mut key = [0u8; KEY_LEN];
        prk.expand(&[DERIVE_INFO], &CHACHA20_POLY1305)
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 bytes is ChaCha20-Poly1305's key length, within HKDF's limit");
        SecretKey::from_bytes(&key)
    }

    fn from_bytes(bytes: &[u8]) -> SecretKey {
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("callers pass exactly 32 bytes");
        SecretKey { key: std::sync::Arc::new(LessSafeKey::new(unbound)) }
    }

    /// `secret` sealed to webhook `id`: `v1:` + base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, id: WebhookId, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("the operating system's random source works");
        let mut out = Vec::with_capacity(NONCE_LEN + secret.len() + CHACHA20_POLY1305.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(secret.as_bytes());
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(id.0.as_bytes()),
                &mut out[NONCE_LEN..],
            )
            .expect("a webhook secret is far below ChaCha20-Poly1305's length limit");
        out.extend_from_slice(tag.as_ref());
        format!("{SEALED}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// The secret a stored value holds: a sealed one opened (it must have been sealed to
    /// `id` under this key, untouched), a plain one from before sealing as it is.
    pub fn open(&self, id: WebhookId, stored: &str) -> Result<String, OpenError> {
        let Some(encoded) = stored.strip_prefix(SEALED) else {
            return Ok(stored.to_owned());
        };
        let mut bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| OpenError)?;
        if bytes.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(OpenError);
        }
        let (nonce, sealed) = bytes.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(id.0.as_bytes()), sealed)
            .map_err(|_| OpenError)?;
        String::from_utf8(plain.to_vec()).map_err(|_| OpenError)
    }
}

/// Whether a stored value is sealed (else it is a plain secret from before sealing).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes(&[byte; KEY_LEN])
    }

    #[test]
    fn a_sealed_secret_opens_to_itself_and_hides_it() {
        let (k, id) = (key(1), docket_ports::ids::new_id());
        let sealed = k.seal(id, SECRET);
        assert!(is_sealed(&sealed), "{sealed}");
        assert!(!sealed.contains(SECRET) && !sealed.contains(&SECRET[6..]), "{sealed}");
        assert_eq!(k.open(id, &sealed), Ok(SECRET.to_owned()));
        let again = k.seal(id, SECRET);
        assert_ne!(sealed, again, "a fresh nonce each time");
        assert_eq!(k.open(id, &again), Ok(SECRET.to_owned()));
    }

    #[test]
    fn another_key_does_not_open_it() {
        let id = docket_ports::ids::new_id();
        let sealed = key(1).seal(id, SECRET);
        assert_eq!(key(2).open(id, &sealed), Err(OpenError));
        let derived = SecretKey::derive(b"one jwt secret of at least 32 bytes!");
        let other = SecretKey::derive(b"another jwt secret of 32 bytes or more");
        assert_eq!(other.open(id, &derived.seal(id, SECRET)), Err(OpenError));
        let same = SecretKey::derive(b"one jwt secret of at least 32 bytes!");
        assert_eq!(same.open(id, &derived.seal(id, SECRET)), Ok(SECRET.to_owned()));
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let (k, id) = (key(1), docket_ports::ids::new_id());
        let sealed = k.seal(id, SECRET);
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed[SEALED.len()..]).expect("base64url");
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[i] ^= 1;
            let stored = format!("{SEALED}{}", URL_SAFE_NO_PAD.encode(&flipped));
            assert_eq!(k.open(id, &stored), Err(OpenError), "byte {i} flipped");
        }
        bytes.truncate(NONCE_LEN + 3);
        let short = format!("{SEALED}{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(k.open(id, &short), Err(OpenError), "truncated");
        assert_eq!(k.open(id, "v1:"), Err(OpenError), "empty");
        assert_eq!(k.open(id, "v1:not base64!"), Err(OpenError), "not base64url");
    }

    #[test]
    fn a_sealed_value_is_bound_to_its_webhook() {
        let k = key(1);
        let (mine, theirs) = (docket_ports::ids::new_id(), docket_ports::ids::new_id());
        let sealed = k.seal(mine, SECRET);
        assert_eq!(k.open(theirs, &sealed), Err(OpenError), "moved to another webhook");
        assert_eq!(k.open(mine, &sealed), Ok(SECRET.to_owned()));
    }

    #[test]
    fn a_plain_legacy_value_is_recognised_and_used_as_it_is() {
        let k = key(1);
        assert!(!is_sealed(SECRET));
        assert_eq!(k.open(docket_ports::ids::new_id(), SECRET), Ok(SECRET.to_owned()));
    }

    #[test]
    fn keys_parse_from_hex_or_base64_of_32_bytes() {
        let bytes: Vec<u8> = (0..32).collect();
        let id = docket_ports::ids::new_id();
        let sealed = SecretKey::from_bytes(&bytes).seal(id, SECRET);
        for text in [
            hex::encode(&bytes),
            hex::encode_upper(&bytes),
            STANDARD.encode(&bytes),
            STANDARD_NO_PAD.encode(&bytes),
            URL_SAFE.encode(&bytes),
            format!(" {}\n", URL_SAFE_NO_PAD.encode(&bytes)),
        ] {
            let k = SecretKey::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(k.open(id, &sealed), Ok(SECRET.to_owned()), "{text:?}");
        }
        for bad in [
            String::new(),
            "short".to_owned(),
            hex::encode([7u8; 31]),
            STANDARD.encode([7u8; 33]),
            "z".repeat(64),
        ] {
            let e = SecretKey::parse(&bad).expect_err(&bad);
            let text = e.to_string();
            assert!(text.contains("DOCKET_SECRET_KEY") && text.contains("base64"), "{text}");
        }
    }
}

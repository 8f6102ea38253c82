//! Secrets in events are sealed: the log is append-only, so a secret written into it in
//! plaintext could never be erased. Commands carry a sealed secret (XChaCha20-Poly1305, a
//! well-kept RustCrypto AEAD) and only the code that uses one opens it.
//!
//! Wire form: `cfx-sealed:v1:<key id>:<base64url(nonce ‖ ciphertext)>`. The key id travels
//! with the ciphertext and is bound as associated data, so a keyring can hold several keys:
//! the first one seals, every one opens (rotation: put a new key first, keep the old ones
//! until nothing sealed with them is needed). Per-person keys (erasing one caller's personal
//! data by destroying their key) fit the same envelope: a key id per person, the keyring
//! asked for that id.
//!
//! Events written before sealing hold plaintext; `open` passes such values through (reading
//! old events is the upcast), and the next write of that secret seals it.

use std::collections::HashMap;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const PREFIX: &str = "cfx-sealed:v1:";
const NONCE: usize = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("sealed with key `{0}`, which is not in the keyring")]
    UnknownKey(String),
    #[error("a sealed secret is malformed or was tampered with")]
    Corrupt,
    #[error("secret keys: {0}")]
    Config(String),
}

/// The keys secrets are sealed with; the first seals, all open.
#[derive(Clone)]
pub struct Keyring {
    current: String,
    keys: HashMap<String, [u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("key_ids", &ids)
            .finish()
    }
}

impl Keyring {
    /// A keyring with one new random key (tests, and nothing that outlives the process).
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self::from_keys(vec![(format!("eph{}", &hex::encode(&key[..4])), key)])
            .expect("one key is a keyring")
    }

    fn from_keys(keys: Vec<(String, [u8; 32])>) -> Result<Self, SecretError> {
        let current = keys
            .first()
            .map(|(id, _)| id.clone())
            .ok_or_else(|| SecretError::Config("no key".into()))?;
        Ok(Self {
            current,
            keys: keys.into_iter().collect(),
        })
    }

    /// Parses `id:base64key[,id:base64key...]` (32-byte keys, standard or URL-safe base64).
    pub fn parse(list: &str) -> Result<Self, SecretError> {
        let mut keys = Vec::new();
        for entry in list
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (id, encoded) = entry.split_once(':').ok_or_else(|| {
                SecretError::Config(format!("`{}…` is not id:key", &entry[..entry.len().min(4)]))
            })?;
            let id = id.trim();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(SecretError::Config(format!(
                    "key id `{id}` must be [A-Za-z0-9_-]+"
                )));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .or_else(|_| URL_SAFE_NO_PAD.decode(encoded.trim()))
                .map_err(|_| SecretError::Config(format!("key `{id}` is not base64")))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| SecretError::Config(format!("key `{id}` must be 32 bytes")))?;
            keys.push((id.to_string(), key));
        }
        Self::from_keys(keys)
    }

    /// Reads the key file, creating it (one new key, mode 0600) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                let id = format!("k{}", chrono::Utc::now().format("%Y%m%d"));
                let line = format!(
                    "{id}:{}\n",
                    base64::engine::general_purpose::STANDARD.encode(key)
                );
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| SecretError::Config(format!("{}: {e}", dir.display())))?;
                }
                write_private(path, &line)
                    .map_err(|e| SecretError::Config(format!("{}: {e}", path.display())))?;
                tracing::warn!(path = %path.display(), "created a new secret key file; back it up");
                Self::parse(&line)
            }
            Err(err) => Err(SecretError::Config(format!("{}: {err}", path.display()))),
        }
    }

    /// A 32-byte key for `purpose`, derived from key `kid` (HMAC-SHA256 of the purpose under
    /// it): other uses of the keyring (signed URLs) without exposing its keys. `None` for an
    /// unknown key id.
    pub fn derived(&self, kid: &str, purpose: &str) -> Option<[u8; 32]> {
        use hmac::{Hmac, Mac};
        let key = self.keys.get(kid)?;
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).ok()?;
        mac.update(purpose.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// Seals `plaintext` with the current key.
    pub fn seal(&self, plaintext: &str) -> String {
        let key = &self.keys[&self.current];
        let cipher = XChaCha20Poly1305::new(key.into());
        let mut nonce = [0u8; NONCE];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = aad(&self.current);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.current, URL_SAFE_NO_PAD.encode(blob))
    }

    /// Opens a sealed value; a value written before sealing existed is returned as is.
    pub fn open(&self, stored: &str) -> Result<String, SecretError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let (id, encoded) = rest.split_once(':').ok_or(SecretError::Corrupt)?;
        let key = self
            .keys
            .get(id)
            .ok_or_else(|| SecretError::UnknownKey(id.to_string()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SecretError::Corrupt)?;
        if blob.len() < NONCE {
            return Err(SecretError::Corrupt);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE);
        let aad = aad(id);
        let plain = XChaCha20Poly1305::new(key.into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| SecretError::Corrupt)
    }

    /// Whether `stored` is a sealed value (not legacy plaintext).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }
}

fn aad(key_id: &str) -> String {
    format!("callflex-secret:v1:{key_id}")
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_and_never_shows_its_plaintext() {
        let ring = Keyring::ephemeral();
        let sealed = ring.seal("vapi_supersecret");
        assert!(Keyring::is_sealed(&sealed));
        assert!(!sealed.contains("supersecret"));
        assert_ne!(
            sealed,
            ring.seal("vapi_supersecret"),
            "fresh nonce each time"
        );
        assert_eq!(ring.open(&sealed).unwrap(), "vapi_supersecret");
    }

    #[test]
    fn rotation_keeps_old_keys_opening_and_seals_with_the_new_one() {
        let old = Keyring::parse("old:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
        let sealed_old = old.seal("s1");
        let rotated = Keyring::parse(
            "new:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=,old:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .unwrap();
        assert_eq!(rotated.open(&sealed_old).unwrap(), "s1");
        assert!(rotated.seal("s2").starts_with("cfx-sealed:v1:new:"));
        assert_eq!(
            Keyring::ephemeral().open(&sealed_old),
            Err(SecretError::UnknownKey("old".into()))
        );
    }

    #[test]
    fn tampering_and_legacy_plaintext() {
        let ring = Keyring::ephemeral();
        let sealed = ring.seal("abc");
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(ring.open(&tampered), Err(SecretError::Corrupt));
        // The key id is bound: relabelling the envelope fails too.
        let relabelled = sealed.replacen(ring.current_key_id(), "other", 1);
        assert!(ring.open(&relabelled).is_err());
        assert_eq!(ring.open("plain-old-secret").unwrap(), "plain-old-secret");
    }

    #[test]
    fn bad_key_lists_are_clear_errors() {
        assert!(Keyring::parse("").is_err());
        assert!(Keyring::parse("k1:short").is_err());
        assert!(Keyring::parse("bad id:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_err());
    }
}

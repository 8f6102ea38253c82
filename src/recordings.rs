//! Call recordings copied into our storage, and the short-lived signed URLs we serve them at.
//!
//! The post-call processing downloads a call's recording from the provider's URL (through the
//! egress policy: the URL arrives in a delivery an organization can sign itself) and puts it
//! under `{organization}/{call}.{ext}` in an `object_store`: a local directory by default
//! (`RECORDINGS_DIR`), any URL object_store understands with `RECORDINGS_URL` (`s3://…` when
//! built with `--features s3`). `GET /api/v1/calls/{id}/recording` answers a URL to
//! `/api/v1/recordings/{call}` signed with a key derived from the secret keyring, valid for
//! [`URL_TTL_SECS`]; any process holding the same keys serves it.

use std::sync::Arc;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, PutPayload};
use sha2::Sha256;

use crate::config::Config;
use crate::secrets::Keyring;

/// How long a signed recording URL stays valid.
pub const URL_TTL_SECS: i64 = 900;
/// The largest recording copied (a two-hour stereo WAV is about 1.3 GB; VAPI's are MP3/WAV
/// of calls minutes long): larger ones stay at the provider's URL.
pub const MAX_BYTES: usize = 200 * 1024 * 1024;

#[derive(Clone)]
pub struct Recordings {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    /// Where recordings go, for logs and /health.
    pub location: String,
}

impl Recordings {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        if let Some(raw) = &config.recordings_url {
            let url = url::Url::parse(raw)
                .map_err(|e| anyhow::anyhow!("RECORDINGS_URL {raw:?} is not a URL: {e}"))?;
            let (store, prefix) = object_store::parse_url(&url).map_err(|e| {
                anyhow::anyhow!("RECORDINGS_URL {raw:?} names no storage this build has: {e}")
            })?;
            return Ok(Recordings {
                store: Arc::from(store),
                prefix,
                location: raw.clone(),
            });
        }
        let dir = &config.recordings_dir;
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the recordings directory {}: {e}",
                dir.display()
            )
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Recordings {
            store: Arc::new(store),
            prefix: StorePath::default(),
            location: dir.display().to_string(),
        })
    }

    fn path(&self, key: &str) -> StorePath {
        let mut path = self.prefix.clone();
        for part in key.split('/') {
            path = path.child(part);
        }
        path
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), object_store::Error> {
        self.store
            .put(&self.path(key), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// The recording's bytes; `Ok(None)` when there is none under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, object_store::Error> {
        match self.store.get(&self.path(key)).await {
            Ok(found) => Ok(Some(found.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// The storage key of a call's recording: `{organization}/{call}.{ext}`, the extension taken
/// from the source URL's path when it is a known audio one.
pub fn key(organization_id: &str, call_id: &str, source_url: &str) -> String {
    let ext = url::Url::parse(source_url)
        .ok()
        .and_then(|u| u.path().rsplit('.').next().map(|e| e.to_ascii_lowercase()))
        .filter(|e| ["wav", "mp3", "ogg", "m4a", "webm", "flac"].contains(&e.as_str()))
        .unwrap_or_else(|| "audio".into());
    format!("{organization_id}/{call_id}.{ext}")
}

/// The content type of a stored recording, by its extension.
pub fn content_type(key: &str) -> &'static str {
    match key.rsplit('.').next() {
        Some("wav") => "audio/wav",
        Some("mp3") => "audio/mpeg",
        Some("ogg") => "audio/ogg",
        Some("m4a") => "audio/mp4",
        Some("webm") => "audio/webm",
        Some("flac") => "audio/flac",
        _ => "application/octet-stream",
    }
}

fn mac(keyring: &Keyring, kid: &str, call_id: &str, expires: i64) -> Option<Vec<u8>> {
    let key = keyring.derived(kid, "recording-urls")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{call_id}.{expires}").as_bytes());
    Some(mac.finalize().into_bytes().to_vec())
}

/// The query string of a signed URL for `call_id`, valid until `expires` (unix seconds).
pub fn sign(keyring: &Keyring, call_id: &str, expires: i64) -> String {
    let kid = keyring.current_key_id();
    let signature = mac(keyring, kid, call_id, expires)
        .map(hex::encode)
        .unwrap_or_default();
    format!("expires={expires}&kid={kid}&signature={signature}")
}

/// Whether `signature` (hex) signs `call_id` until `expires` under key `kid`, and `now` is
/// before `expires`. Constant-time.
pub fn verify(
    keyring: &Keyring,
    call_id: &str,
    expires: i64,
    kid: &str,
    signature: &str,
    now: i64,
) -> bool {
    if now > expires {
        return false;
    }
    let (Ok(given), Some(key)) = (
        hex::decode(signature),
        keyring.derived(kid, "recording-urls"),
    ) else {
        return false;
    };
    let Ok(mut check) = Hmac::<Sha256>::new_from_slice(&key) else {
        return false;
    };
    check.update(format!("{call_id}.{expires}").as_bytes());
    check.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_url_opens_its_call_until_it_expires_and_nothing_else() {
        let keyring = Keyring::ephemeral();
        let query = sign(&keyring, "call-1", 1_000);
        let part = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap()
                .to_string()
        };
        let (kid, signature) = (part("kid"), part("signature"));
        assert!(verify(&keyring, "call-1", 1_000, &kid, &signature, 999));
        assert!(
            !verify(&keyring, "call-1", 1_000, &kid, &signature, 1_001),
            "expired"
        );
        assert!(
            !verify(&keyring, "call-2", 1_000, &kid, &signature, 999),
            "other call"
        );
        assert!(
            !verify(&keyring, "call-1", 2_000, &kid, &signature, 999),
            "extended"
        );
        assert!(!verify(
            &Keyring::ephemeral(),
            "call-1",
            1_000,
            &kid,
            &signature,
            999
        ));
        assert!(!verify(&keyring, "call-1", 1_000, &kid, "zz", 999));
    }

    #[test]
    fn keys_take_a_known_audio_extension() {
        assert_eq!(
            key("o", "c", "https://storage.vapi.ai/abc-mono.wav"),
            "o/c.wav"
        );
        assert_eq!(key("o", "c", "https://x.test/rec?id=1"), "o/c.audio");
        assert_eq!(content_type("o/c.mp3"), "audio/mpeg");
    }
}

//! The Standard Webhooks signing scheme (v1), used for our outbound webhooks and for the
//! inbound integration events customers sign the same way.
//!
//! Headers: `webhook-id` (stable per message: the receiver's dedupe key), `webhook-timestamp`
//! (Unix seconds) and `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256>` entries
//! over `"{id}.{timestamp}.{body}"` (several during a secret rotation). A secret is `whsec_`
//! followed by the base64 of the key bytes.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::signature::SignatureError;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// How far a receiver accepts a timestamp from its own clock (the scheme's 5 minutes).
pub const TOLERANCE_SECS: i64 = 300;
pub const SECRET_PREFIX: &str = "whsec_";

/// The key bytes of a `whsec_…` secret (the prefix is optional, as in the reference
/// libraries).
pub fn key(secret: &str) -> Result<Vec<u8>, SignatureError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    BASE64
        .decode(encoded.trim())
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or(SignatureError::Malformed)
}

/// A secret for `key` bytes, as shown to a customer.
pub fn secret_for(key: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", BASE64.encode(key))
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// One `v1,<base64>` signature.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignatureError> {
    let key = key(secret)?;
    let tag = mac(&key, id, timestamp, body).finalize().into_bytes();
    Ok(format!("v1,{}", BASE64.encode(tag)))
}

/// The `webhook-signature` value: one signature per secret (current first).
pub fn signature_header(
    secrets: &[&str],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let signatures = secrets
        .iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

/// Checks a message signed with `secret`: some `v1` entry of `signature` matches (in
/// constant time) and `timestamp` is within [`TOLERANCE_SECS`] of `now`.
pub fn verify(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    fn present(h: Option<&str>) -> Result<&str, SignatureError> {
        h.map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(SignatureError::Missing)
    }
    let (id, timestamp, signature) = (present(id)?, present(timestamp)?, present(signature)?);
    let timestamp: i64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
    let key = key(secret)?;
    let expected = mac(&key, id, timestamp, body);
    let matched = signature
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| BASE64.decode(b64).ok())
        .any(|tag| expected.clone().verify_slice(&tag).is_ok());
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The scheme's published test vector (the reference libraries' sign test).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_published_vector_is_reproduced() {
        assert_eq!(sign(SECRET, ID, TIMESTAMP, BODY).unwrap(), SIGNATURE);
        let unprefixed = SECRET.trim_start_matches(SECRET_PREFIX);
        assert_eq!(sign(unprefixed, ID, TIMESTAMP, BODY).unwrap(), SIGNATURE);
    }

    #[test]
    fn the_published_vector_verifies_among_other_signatures() {
        let header = format!("v1,bm9wZQ== {SIGNATURE} v1a,whatever");
        let ok = verify(
            SECRET,
            Some(ID),
            Some("1614265330"),
            Some(&header),
            BODY,
            TIMESTAMP,
        );
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn tampering_a_stale_timestamp_or_a_missing_header_is_refused() {
        let check = |id, ts, sig, body: &[u8], now| verify(SECRET, id, ts, sig, body, now);
        let ts = Some("1614265330");
        assert_eq!(
            check(Some(ID), ts, Some(SIGNATURE), br#"{"test": 1}"#, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(Some("msg_other"), ts, Some(SIGNATURE), BODY, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(Some(ID), ts, Some(SIGNATURE), BODY, TIMESTAMP + 301),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            check(None, ts, Some(SIGNATURE), BODY, TIMESTAMP),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check(Some(ID), Some("soon"), Some(SIGNATURE), BODY, TIMESTAMP),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_rotation_signs_with_both_secrets() {
        let new = secret_for(&[7u8; 24]);
        let header = signature_header(&[&new, SECRET], ID, TIMESTAMP, BODY).unwrap();
        assert!(header.ends_with(SIGNATURE));
        let ts = Some("1614265330");
        for secret in [new.as_str(), SECRET] {
            assert_eq!(
                verify(secret, Some(ID), ts, Some(&header), BODY, TIMESTAMP),
                Ok(())
            );
        }
    }
}

//! Webhook signature verification for VAPI, Twilio and Stripe.
//!
//! Why this module exists: every webhook route is reachable from the internet, so a request is
//! only trusted after its provider signature checks out. All comparisons are constant-time
//! (`subtle` or `hmac`'s `verify_slice`) so response timing leaks nothing about the expected
//! value. Functions take the raw header value (`Option<&str>`, `None` when absent) and the raw
//! body bytes exactly as received; they never panic on hostile input.
//!
//! The `*_signature` / `*_header` builders produce correctly signed requests for tests and the
//! local provider simulator.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<Sha1>;

/// Stripe's default replay window (seconds), as used by its official libraries.
pub const STRIPE_DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a webhook signature was rejected. Every variant maps to HTTP 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// No signature (or timestamp) header, or it was empty.
    #[error("signature header missing")]
    Missing,
    /// The header could not be parsed (bad hex, no `t=`, non-numeric timestamp...).
    #[error("signature header malformed")]
    Malformed,
    /// Well-formed, but no signature matches the request (or the secret is not configured).
    #[error("signature mismatch")]
    Mismatch,
    /// The signature matches but its timestamp is outside the tolerance window (replay guard).
    #[error("signature timestamp outside tolerance")]
    Expired,
}

fn present(header: Option<&str>) -> Result<&str, SignatureError> {
    match header.map(str::trim) {
        Some(h) if !h.is_empty() => Ok(h),
        _ => Err(SignatureError::Missing),
    }
}

fn hmac_sha256(secret: &str, parts: &[&[u8]]) -> Option<HmacSha256> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac)
}

fn hmac_sha1_base64(secret: &str, parts: &[&[u8]]) -> String {
    match <HmacSha1 as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            for part in parts {
                mac.update(part);
            }
            BASE64.encode(mac.finalize().into_bytes())
        }
        // HMAC accepts keys of any length; this arm is unreachable in practice.
        Err(_) => String::new(),
    }
}

/// Strips an optional, case-insensitive `sha256=` prefix and hex-decodes (either case).
fn decode_hex_sig(sig: &str) -> Result<Vec<u8>, SignatureError> {
    let sig = sig.trim();
    let sig = match sig.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("sha256=") => &sig[7..],
        _ => sig,
    };
    hex::decode(sig).map_err(|_| SignatureError::Malformed)
}

fn verify_hmac_sha256(secret: &str, parts: &[&[u8]], sig: &[u8]) -> Result<(), SignatureError> {
    if secret.is_empty() {
        // An unconfigured secret must never validate anything.
        return Err(SignatureError::Mismatch);
    }
    let mac = hmac_sha256(secret, parts).ok_or(SignatureError::Mismatch)?;
    mac.verify_slice(sig).map_err(|_| SignatureError::Mismatch)
}

fn within(now_unix: i64, t: i64, tolerance_secs: i64) -> bool {
    now_unix.abs_diff(t) <= tolerance_secs.max(0).unsigned_abs()
}

/// Hex HMAC-SHA256 of `data` keyed by `secret`.
pub fn hmac_sha256_hex(secret: &str, data: &[u8]) -> String {
    hmac_sha256(secret, &[data])
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// VAPI default authentication: the plain shared secret in `X-Vapi-Secret`.
pub fn vapi_shared_secret(expected: &str, header: Option<&str>) -> Result<(), SignatureError> {
    let got = present(header)?;
    if expected.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    if bool::from(got.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// VAPI HMAC credential: `x-signature` = hex HMAC-SHA256 over `"{timestamp}.{body}"` with the
/// timestamp exactly as sent in `x-timestamp` (seconds or milliseconds; values above 10^12 are
/// milliseconds). An optional `sha256=` prefix is tolerated. The signature is checked before the
/// clock, so `Expired` means "authentic but stale".
pub fn vapi_hmac(
    secret: &str,
    timestamp_header: Option<&str>,
    signature_header: Option<&str>,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let ts_raw = present(timestamp_header)?;
    let sig = decode_hex_sig(present(signature_header)?)?;
    let ts: i64 = ts_raw.parse().map_err(|_| SignatureError::Malformed)?;
    let ts_secs = if ts > crate::lenient::MS_THRESHOLD {
        ts / 1000
    } else {
        ts
    };
    verify_hmac_sha256(secret, &[ts_raw.as_bytes(), b".", body], &sig)?;
    if within(now_unix, ts_secs, tolerance_secs) {
        Ok(())
    } else {
        Err(SignatureError::Expired)
    }
}

/// Builds the `x-signature` value [`vapi_hmac`] accepts for `timestamp` (sent verbatim in
/// `x-timestamp`).
pub fn vapi_hmac_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    hmac_sha256(secret, &[ts.as_bytes(), b".", body])
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// The seed design's `x-vapi-signature`: hex HMAC-SHA256 of the raw body (no timestamp, so no
/// replay protection; prefer [`vapi_hmac`]). `sha256=` prefix and upper-case hex are tolerated.
pub fn vapi_body_hmac(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let sig = decode_hex_sig(present(header)?)?;
    verify_hmac_sha256(secret, &[body], &sig)
}

/// `X-Twilio-Signature` for a request: base64(HMAC-SHA1(token, url + sorted key/value pairs)).
/// Pairs are sorted by key, then value; pass an empty slice for JSON bodies.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + 2 * sorted.len());
    parts.push(url.as_bytes());
    for (k, v) in &sorted {
        parts.push(k.as_bytes());
        parts.push(v.as_bytes());
    }
    hmac_sha1_base64(auth_token, &parts)
}

/// The URL variants Twilio's helper libraries try: as given, plus with the scheme's default
/// port (443/80) added when absent, or with the port removed when one is present (any port:
/// twilio-python's `remove_port` and twilio-node's `removePort` drop `:1234` too, and their
/// published vector signs `https://mycompany.com:1234/...` without it).
pub fn twilio_url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some(scheme_end) = url.find("://") else {
        return out;
    };
    let scheme = url[..scheme_end].to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let auth_start = scheme_end + 3;
    let rest = &url[auth_start..];
    let auth_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_len];
    let tail = &rest[auth_len..];
    let head = &url[..auth_start];
    // The host:port part follows any userinfo; an IPv6 literal ends with ']'.
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let hostport = &authority[host_start..];
    let port_sep = hostport
        .rfind(':')
        .filter(|&i| !hostport[i..].contains(']'));
    match port_sep {
        Some(i) => {
            let stripped = &authority[..host_start + i];
            out.push(format!("{head}{stripped}{tail}"));
        }
        None if !authority.is_empty() => {
            out.push(format!("{head}{authority}:{default_port}{tail}"));
        }
        None => {}
    }
    out
}

fn ct_str_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Verifies `X-Twilio-Signature` for a form-encoded request. `url` is the full public URL
/// Twilio called (including query string); `params` are the POSTed form pairs.
pub fn twilio(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let got = present(header)?;
    if auth_token.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    let mut ok = false;
    for candidate in twilio_url_variants(url) {
        // No short-circuit: always evaluate every variant.
        ok |= ct_str_eq(&twilio_signature(auth_token, &candidate, params), got);
    }
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Verifies a Twilio request with a JSON body: the URL's `bodySHA256` query parameter must equal
/// hex SHA-256 of `body`, and the signature covers the URL alone (no params appended).
/// A URL without `bodySHA256` is `Malformed`.
pub fn twilio_json(
    auth_token: &str,
    url_with_body_sha256: &str,
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let got = present(header)?;
    let query = url_with_body_sha256
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(q))
        .ok_or(SignatureError::Malformed)?;
    let claimed = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.to_ascii_lowercase())
        .ok_or(SignatureError::Malformed)?;
    twilio(auth_token, url_with_body_sha256, &[], Some(got))?;
    let actual = hex::encode(Sha256::digest(body));
    if ct_str_eq(&actual, &claimed) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Builds a `Stripe-Signature` header (`t=..,v1=..`) for `payload` at unix time `t`.
pub fn stripe_signature_header(secret: &str, t: i64, payload: &[u8]) -> String {
    let ts = t.to_string();
    let v1 = hmac_sha256(secret, &[ts.as_bytes(), b".", payload])
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("t={ts},v1={v1}")
}

/// Verifies `Stripe-Signature: t=..,v1=..[,v1=..][,v0=..]`. Valid if ANY `v1` matches
/// hex HMAC-SHA256 over `"{t}.{payload}"` (several v1 appear while a secret is rolled); `v0` and
/// unknown schemes are ignored, so a v0-only header is a `Mismatch`. After a match,
/// `|now - t| > tolerance_secs` is `Expired` (use [`STRIPE_DEFAULT_TOLERANCE_SECS`]).
pub fn stripe(
    secret: &str,
    header: Option<&str>,
    payload: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = present(header)?;
    let mut t_raw: Option<&str> = None;
    let mut v1s: Vec<&str> = Vec::new();
    for item in header.split(',') {
        let Some((k, v)) = item.split_once('=') else {
            continue;
        };
        match k.trim() {
            "t" if t_raw.is_none() => t_raw = Some(v.trim()),
            "v1" if !v.trim().is_empty() => v1s.push(v.trim()),
            _ => {}
        }
    }
    let t_raw = t_raw.ok_or(SignatureError::Malformed)?;
    let t: i64 = t_raw.parse().map_err(|_| SignatureError::Malformed)?;
    if v1s.is_empty() || secret.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    let expected = hmac_sha256(secret, &[t_raw.as_bytes(), b".", payload])
        .map(|m| m.finalize().into_bytes().to_vec())
        .ok_or(SignatureError::Mismatch)?;
    let mut ok = subtle::Choice::from(0u8);
    for v1 in v1s {
        // Undecodable candidates simply do not match.
        if let Ok(sig) = hex::decode(v1) {
            ok |= sig.as_slice().ct_eq(expected.as_slice());
        }
    }
    if !bool::from(ok) {
        return Err(SignatureError::Mismatch);
    }
    if within(now_unix, t, tolerance_secs) {
        Ok(())
    } else {
        Err(SignatureError::Expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const TWILIO_VECTORS: &str = include_str!("../fixtures/twilio/signature-vectors.json");
    const STRIPE_VECTORS: &str = include_str!("../fixtures/stripe/signature-vectors.json");
    const STRIPE_PAYLOAD: &[u8] =
        include_bytes!("../fixtures/stripe/signature-vector.dotnet.payload.json");

    fn twilio_params(vectors: &Value, case: &Value) -> Vec<(String, String)> {
        let obj = match case.get("params_ref").and_then(Value::as_str) {
            Some(r) => &vectors[r],
            None => &case["params"],
        };
        obj.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn every_twilio_vector_verifies_as_documented() {
        let vectors: Value = serde_json::from_str(TWILIO_VECTORS).unwrap();
        let token = vectors["auth_token"].as_str().unwrap();
        let cases = vectors["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 5);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let url = case["url"].as_str().unwrap();
            let params = twilio_params(&vectors, case);
            let header = case
                .get("signature_header")
                .or_else(|| case.get("expected"))
                .and_then(Value::as_str)
                .unwrap();
            let expect_valid = case.get("valid").and_then(Value::as_bool).unwrap_or(true);
            let result = match case.get("body").and_then(Value::as_str) {
                Some(body) => twilio_json(token, url, body.as_bytes(), Some(header)),
                None => twilio(token, url, &params, Some(header)),
            };
            assert_eq!(result.is_ok(), expect_valid, "case {name}: {result:?}");
            if let Some(expected) = case.get("expected").and_then(Value::as_str) {
                let signed = case
                    .get("signed_url")
                    .and_then(Value::as_str)
                    .unwrap_or(url);
                assert_eq!(
                    twilio_signature(token, signed, &params),
                    expected,
                    "case {name}"
                );
            }
            if let Some(sts) = case.get("string_to_sign").and_then(Value::as_str) {
                assert_eq!(
                    hmac_sha1_base64(token, &[sts.as_bytes()]),
                    header,
                    "case {name}"
                );
            }
        }
    }

    #[test]
    fn twilio_json_body_hash_must_match_the_body() {
        let vectors: Value = serde_json::from_str(TWILIO_VECTORS).unwrap();
        let case = &vectors["cases"][3];
        let url = case["url"].as_str().unwrap();
        let sig = case["expected"].as_str().unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(case["body"].as_str().unwrap().as_bytes())),
            case["body_sha256_hex"].as_str().unwrap()
        );
        assert_eq!(
            twilio_json("12345", url, b"{\"property\": \"tampered\"}", Some(sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            twilio_json("12345", "https://mycompany.com/myapp.php", b"{}", Some(sig)),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn twilio_rejects_missing_header_wrong_token_and_changed_params() {
        let params = vec![("CallSid".to_owned(), "CA1".to_owned())];
        let url = "https://example.com/twilio/status";
        let sig = twilio_signature("tok", url, &params);
        assert_eq!(twilio("tok", url, &params, Some(&sig)), Ok(()));
        assert_eq!(
            twilio("tok", url, &params, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            twilio("tok", url, &params, Some("  ")),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            twilio("other", url, &params, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            twilio("", url, &params, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        let changed = vec![("CallSid".to_owned(), "CA2".to_owned())];
        assert_eq!(
            twilio("tok", url, &changed, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn twilio_accepts_signatures_made_with_or_without_the_default_port() {
        let params = vec![("A".to_owned(), "1".to_owned())];
        let with_port = "https://example.com:443/hook?x=1";
        let without = "https://example.com/hook?x=1";
        let sig_with = twilio_signature("tok", with_port, &params);
        let sig_without = twilio_signature("tok", without, &params);
        assert_eq!(twilio("tok", without, &params, Some(&sig_with)), Ok(()));
        assert_eq!(
            twilio("tok", with_port, &params, Some(&sig_without)),
            Ok(())
        );
        // A non-default port may be dropped too, as the helper libraries do.
        let odd = "https://example.com:8443/hook";
        let sig_plain = twilio_signature("tok", "https://example.com/hook", &params);
        assert_eq!(twilio("tok", odd, &params, Some(&sig_plain)), Ok(()));
        // ...but never changed into another one.
        let sig_other = twilio_signature("tok", "https://example.com:9443/hook", &params);
        assert_eq!(
            twilio("tok", odd, &params, Some(&sig_other)),
            Err(SignatureError::Mismatch)
        );
    }

    /// Published vectors of Twilio's helper libraries (twilio-python
    /// `tests/unit/test_request_validator.py`, twilio-ruby `request_validator_spec.rb`).
    #[test]
    fn twilio_helper_library_vectors_validate() {
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let call = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ]);
        let sig = Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        for url in [
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            // test_validation_removes_port_on_https: signed without the port.
            "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
        ] {
            assert_eq!(twilio("12345", url, &call, sig), Ok(()), "{url}");
        }
        // Userinfo is part of the signed URL.
        assert_eq!(
            twilio(
                "12345",
                "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
                &call,
                Some("CukzLTc1tT5dXEDIHm/tKBanW10=")
            ),
            Ok(())
        );
        // A repeated name signs every value, values sorted within the name.
        let repeated = pairs(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            twilio(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &repeated,
                Some("IK+Dwps556ElfBT0I3Rgjkr1wJU=")
            ),
            Ok(())
        );
    }

    #[test]
    fn twilio_url_variants_handle_odd_urls_without_panicking() {
        assert_eq!(
            twilio_url_variants("http://h/p"),
            vec!["http://h/p".to_owned(), "http://h:80/p".to_owned()]
        );
        assert_eq!(
            twilio_url_variants("http://h:8080/p"),
            vec!["http://h:8080/p".to_owned(), "http://h/p".to_owned()]
        );
        assert_eq!(
            twilio_url_variants("HTTPS://u:p@h:443?q=1"),
            vec![
                "HTTPS://u:p@h:443?q=1".to_owned(),
                "HTTPS://u:p@h?q=1".to_owned()
            ]
        );
        assert_eq!(
            twilio_url_variants("https://[::1]/x"),
            vec![
                "https://[::1]/x".to_owned(),
                "https://[::1]:443/x".to_owned()
            ]
        );
        for odd in [
            "",
            "://",
            "https://",
            "ftp://h/",
            "not a url",
            "https://é:443",
            "https://h:",
        ] {
            let v = twilio_url_variants(odd);
            assert_eq!(v[0], odd);
        }
    }

    #[test]
    fn twilio_params_are_sorted_by_key_then_value() {
        let a = vec![
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "z".to_owned()),
            ("a".to_owned(), "y".to_owned()),
        ];
        let expected = hmac_sha1_base64("t", &[b"https://x/ayazb2"]);
        assert_eq!(twilio_signature("t", "https://x/", &a), expected);
    }

    fn stripe_cases() -> Vec<Value> {
        let v: Value = serde_json::from_str(STRIPE_VECTORS).unwrap();
        v["cases"].as_array().unwrap().clone()
    }

    #[test]
    fn the_stripe_payload_fixture_is_byte_exact() {
        assert_eq!(STRIPE_PAYLOAD.len(), 484);
        assert_eq!(STRIPE_PAYLOAD.last(), Some(&b'\n'));
    }

    #[test]
    fn every_stripe_vector_verifies_as_documented() {
        let cases = stripe_cases();
        assert_eq!(cases.len(), 6);
        let fixed = &cases[0];
        let secret = fixed["secret"].as_str().unwrap();
        let header = fixed["header"].as_str().unwrap();
        let t = fixed["timestamp"].as_i64().unwrap();
        let now = fixed["valid_when_now_is"].as_i64().unwrap();
        let tol = fixed["tolerance"].as_i64().unwrap();

        // dotnet-fixed-vector
        assert_eq!(
            stripe(secret, Some(header), STRIPE_PAYLOAD, now, tol),
            Ok(())
        );
        let built = stripe_signature_header(secret, t, STRIPE_PAYLOAD);
        assert!(built.ends_with(fixed["expected_v1"].as_str().unwrap()));
        assert_eq!(
            stripe(secret, Some(&built), STRIPE_PAYLOAD, now, tol),
            Ok(())
        );

        // dotnet-outdated
        let outdated = &cases[1];
        let late = outdated["now"].as_i64().unwrap();
        assert_eq!(
            stripe(
                secret,
                Some(header),
                STRIPE_PAYLOAD,
                late,
                outdated["tolerance"].as_i64().unwrap()
            ),
            Err(SignatureError::Expired)
        );

        // dotnet-tampered-body
        let mut tampered = STRIPE_PAYLOAD.to_vec();
        tampered.extend_from_slice(cases[2]["payload_suffix"].as_str().unwrap().as_bytes());
        assert_eq!(
            stripe(secret, Some(header), &tampered, now, tol),
            Err(SignatureError::Mismatch)
        );

        // dotnet-malformed-headers
        let malformed = &cases[3];
        let payload = malformed["payload"].as_str().unwrap().as_bytes();
        for h in malformed["headers"].as_array().unwrap() {
            let h = h.as_str().unwrap();
            let r = stripe(
                malformed["secret"].as_str().unwrap(),
                Some(h),
                payload,
                now,
                tol,
            );
            assert!(r.is_err(), "header {h:?} must be rejected");
        }

        // multiple-v1-one-valid
        let rolled = format!("{header},v1={}", "deadbeef".repeat(8));
        assert_eq!(
            stripe(secret, Some(&rolled), STRIPE_PAYLOAD, now, tol),
            Ok(())
        );
        let rolled_first = format!(
            "t={t},v1={},v1={}",
            "00".repeat(32),
            fixed["expected_v1"].as_str().unwrap()
        );
        assert_eq!(
            stripe(secret, Some(&rolled_first), STRIPE_PAYLOAD, now, tol),
            Ok(())
        );

        // v0-only
        let v0 = header.split(",v0=").nth(1).unwrap();
        let v0_only = format!("t={t},v0={v0}");
        assert_eq!(
            stripe(secret, Some(&v0_only), STRIPE_PAYLOAD, now, tol),
            Err(SignatureError::Mismatch)
        );
        let v1_as_v0 = format!("t={t},v0={}", fixed["expected_v1"].as_str().unwrap());
        assert!(stripe(secret, Some(&v1_as_v0), STRIPE_PAYLOAD, now, tol).is_err());
    }

    #[test]
    fn stripe_rejects_missing_and_garbage_headers_and_future_timestamps() {
        let payload = b"{}";
        let good = stripe_signature_header("whsec", 1000, payload);
        assert_eq!(stripe("whsec", Some(&good), payload, 1000, 300), Ok(()));
        assert_eq!(
            stripe("whsec", None, payload, 1000, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            stripe("whsec", Some(""), payload, 1000, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            stripe("whsec", Some(&good), payload, 1400, 300),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            stripe("whsec", Some(&good), payload, 600, 300),
            Err(SignatureError::Expired)
        );
        assert_eq!(stripe("whsec", Some(&good), payload, 0, i64::MAX), Ok(()));
        assert_eq!(
            stripe("whsec", Some(&good), payload, i64::MIN, i64::MAX),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            stripe("whsec", Some(&good), payload, i64::MAX, -5),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            stripe("", Some(&good), payload, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        for h in [
            "t=99999999999999999999999,v1=aa",
            "t=1000,v1=zz",
            "t=1000,v1=é",
            "=,=,=",
            "v1=aa",
            "\u{0}",
        ] {
            assert!(
                stripe("whsec", Some(h), payload, 1000, 300).is_err(),
                "{h:?}"
            );
        }
    }

    #[test]
    fn vapi_shared_secret_compares_exactly() {
        assert_eq!(vapi_shared_secret("s3cret", Some("s3cret")), Ok(()));
        assert_eq!(vapi_shared_secret("s3cret", Some(" s3cret ")), Ok(()));
        assert_eq!(
            vapi_shared_secret("s3cret", Some("s3cre")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            vapi_shared_secret("s3cret", Some("S3CRET")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            vapi_shared_secret("s3cret", None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            vapi_shared_secret("", Some("x")),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn vapi_hmac_accepts_seconds_and_milliseconds_timestamps() {
        let body = br#"{"message":{"type":"hang"}}"#;
        let now = 1_727_030_665;
        for ts in [now, now * 1000 + 8] {
            let sig = vapi_hmac_signature("k", ts, body);
            let ts_h = ts.to_string();
            assert_eq!(
                vapi_hmac("k", Some(&ts_h), Some(&sig), body, now, 300),
                Ok(())
            );
            let prefixed = format!("SHA256={}", sig.to_uppercase());
            assert_eq!(
                vapi_hmac("k", Some(&ts_h), Some(&prefixed), body, now, 300),
                Ok(())
            );
            assert_eq!(
                vapi_hmac("k", Some(&ts_h), Some(&sig), body, now + 301, 300),
                Err(SignatureError::Expired)
            );
            assert_eq!(
                vapi_hmac("k", Some(&ts_h), Some(&sig), b"{}", now, 300),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn vapi_hmac_rejects_missing_or_malformed_headers() {
        let sig = vapi_hmac_signature("k", 5, b"x");
        assert_eq!(
            vapi_hmac("k", None, Some(&sig), b"x", 5, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            vapi_hmac("k", Some("5"), None, b"x", 5, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            vapi_hmac("k", Some("five"), Some(&sig), b"x", 5, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            vapi_hmac("k", Some("5"), Some("xyz"), b"x", 5, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            vapi_hmac("k", Some("5"), Some("sha256="), b"x", 5, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            vapi_hmac("", Some("5"), Some(&sig), b"x", 5, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            vapi_hmac(
                "k",
                Some("-9223372036854775808"),
                Some(&sig),
                b"x",
                i64::MAX,
                300
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn vapi_body_hmac_matches_the_seed_signature() {
        let body = br#"{"type":"call-end","call":{"id":"c1"}}"#;
        let sig = hmac_sha256_hex("whsec", body);
        assert_eq!(sig.len(), 64);
        assert_eq!(vapi_body_hmac("whsec", Some(&sig), body), Ok(()));
        assert_eq!(
            vapi_body_hmac("whsec", Some(&sig.to_uppercase()), body),
            Ok(())
        );
        assert_eq!(
            vapi_body_hmac("whsec", Some(&format!("sha256={sig}")), body),
            Ok(())
        );
        assert_eq!(
            vapi_body_hmac("whsec", Some(&sig), b"{}"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            vapi_body_hmac("whsec", Some(&sig[..10]), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            vapi_body_hmac("whsec", Some("not-hex"), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            vapi_body_hmac("whsec", Some("é"), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            vapi_body_hmac("whsec", None, body),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn hmac_sha256_hex_matches_rfc_4231_case_2() {
        assert_eq!(
            hmac_sha256_hex("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// Deterministic xorshift "fuzz": random header/url/body soup must never panic.
    #[test]
    fn random_garbage_never_panics_any_verifier() {
        let alphabet: Vec<char> = "t=v1,0:/?#@[]é€sha256=SHA:443:80 \u{0}aF9"
            .chars()
            .collect();
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let len = (next() % 40) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let n = next() as i64;
            let body = s.as_bytes();
            let _ = stripe("k", Some(&s), body, n, 300);
            let _ = vapi_hmac("k", Some(&s), Some(&s), body, n, n);
            let _ = vapi_body_hmac("k", Some(&s), body);
            let _ = vapi_shared_secret("k", Some(&s));
            let _ = twilio("k", &s, &[(s.clone(), s.clone())], Some(&s));
            let _ = twilio_json("k", &format!("https://h/?bodySHA256={s}"), body, Some(&s));
            let _ = twilio_url_variants(&format!("https://{s}"));
        }
    }
}

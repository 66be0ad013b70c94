//! Keeping secrets out of events: credentials become fingerprints (`sha256:` + 12 hex) and
//! captured tool arguments have configured keys redacted and are capped in size.

use crate::config::ArgumentCapture;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Hex digits of SHA-256 kept in a fingerprint: enough to tell credentials apart in an audit,
/// too few to be a usable hash for offline guessing of long tokens.
const FINGERPRINT_HEX: usize = 12;

pub const REDACTED: &str = "[REDACTED]";

/// Fingerprints a credential header value. The auth scheme (`Bearer `, `Basic `) is dropped so
/// one token has one fingerprint whichever header carried it.
pub fn fingerprint(header_value: &str, salt: &str) -> String {
    let credential = strip_scheme(header_value.trim());
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(credential.as_bytes());
    let digest = hasher.finalize();
    let hex = crate::trace::to_hex(&digest);
    format!("sha256:{}", &hex[..FINGERPRINT_HEX])
}

fn strip_scheme(value: &str) -> &str {
    match value.split_once(' ') {
        Some((scheme, rest))
            if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphabetic()) =>
        {
            rest.trim_start()
        }
        _ => value,
    }
}

/// The captured form of tool/prompt arguments: redacted, then cut to `max_bytes`.
/// Returns `None` when capture is off or the arguments are not JSON.
pub fn capture_arguments(raw: &str, policy: &ArgumentCapture) -> Option<(String, bool)> {
    if !policy.enabled {
        return None;
    }
    let mut value: Value = serde_json::from_str(raw).ok()?;
    redact_value(&mut value, policy);
    let text = value.to_string();
    Some(truncate(text, policy.max_bytes))
}

fn redact_value(value: &mut Value, policy: &ArgumentCapture) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if policy.redact_keys.contains(&key.to_ascii_lowercase()) {
                    *v = Value::String(REDACTED.to_string());
                } else {
                    redact_value(v, policy);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_value(v, policy)),
        _ => {}
    }
}

/// Cuts at a char boundary; the flag says whether anything was cut.
fn truncate(mut text: String, max_bytes: usize) -> (String, bool) {
    if text.len() <= max_bytes {
        return (text, false);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn policy(max_bytes: usize) -> ArgumentCapture {
        ArgumentCapture {
            enabled: true,
            max_bytes,
            redact_keys: ["password", "api_key"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    #[test]
    fn fingerprint_shape_and_scheme() {
        let f = fingerprint("Bearer secret-token", "");
        assert!(f.starts_with("sha256:"));
        assert_eq!(f.len(), "sha256:".len() + 12);
        assert!(!f.contains("secret"));
        assert_eq!(f, fingerprint("secret-token", ""));
        // sha256("secret-token") starts with these digits.
        let expected = crate::trace::to_hex(&Sha256::digest(b"secret-token"));
        assert_eq!(f, format!("sha256:{}", &expected[..12]));
        assert_ne!(f, fingerprint("Bearer secret-token", "salt"));
        assert_ne!(f, fingerprint("Bearer other-token", ""));
    }

    #[test]
    fn redaction_is_recursive_and_case_insensitive() {
        let raw = r#"{"user":"a","Password":"hunter2","nested":[{"api_key":"k1","ok":1}]}"#;
        let (text, cut) = capture_arguments(raw, &policy(1000)).expect("captured");
        assert!(!cut);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("k1"), "{text}");
        assert!(text.contains(r#""Password":"[REDACTED]""#), "{text}");
        assert!(text.contains(r#""ok":1"#), "{text}");
    }

    #[test]
    fn capture_is_capped_on_char_boundaries_and_opt_in() {
        let raw = r#"{"text":"ééééé"}"#;
        let (text, cut) = capture_arguments(raw, &policy(12)).expect("captured");
        assert!(cut);
        assert!(text.len() <= 12);
        let off = ArgumentCapture {
            enabled: false,
            max_bytes: 100,
            redact_keys: BTreeSet::new(),
        };
        assert_eq!(capture_arguments(raw, &off), None);
        assert_eq!(capture_arguments("not json", &policy(100)), None);
    }
}

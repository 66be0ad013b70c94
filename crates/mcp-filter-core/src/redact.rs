//! Keeping secrets out of events: credentials become fingerprints (`sha256:` + 12 hex, the
//! wire contract's format) and
//! captured tool arguments have configured keys redacted, and string values that look like
//! credentials (bearer tokens, common API key formats, JWTs, private keys) whatever their
//! key, and are capped in size. A VM sees
//! the same few credentials over and over, so fingerprints are cached per VM (bounded, keyed
//! by the whole header value, so no two credentials can share an entry).

use crate::config::{ArgumentCapture, Fingerprinting};
use mcp_contract::fingerprint;
use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";

/// A credential fingerprint: `hmac-sha256:` or `sha256:` and 12 hex digits (the wire
/// contract's formats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    bytes: [u8; fingerprint::KEYED_LEN],
    len: u8,
}

impl Fingerprint {
    pub fn as_str(&self) -> &str {
        // Built from ASCII only.
        std::str::from_utf8(self.as_bytes()).unwrap_or(fingerprint::PREFIX)
    }

    /// The ASCII bytes, for writers that need no `str`.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    fn of(ascii: &[u8]) -> Self {
        let mut bytes = [0u8; fingerprint::KEYED_LEN];
        let len = ascii.len().min(bytes.len());
        bytes[..len].copy_from_slice(&ascii[..len]);
        Fingerprint {
            bytes,
            len: len as u8,
        }
    }
}

/// Fingerprints a credential header value (the auth scheme dropped, so one token has one
/// fingerprint whichever header carried it).
pub fn fingerprint(header_value: &[u8], how: &Fingerprinting) -> Fingerprint {
    match how {
        Fingerprinting::Keyed(key) => {
            Fingerprint::of(&fingerprint::keyed_of_header_value(key, header_value))
        }
        Fingerprinting::Unkeyed { salt } => {
            Fingerprint::of(&fingerprint::of_header_value(salt.as_bytes(), header_value))
        }
    }
}

/// Entries of the per-VM fingerprint cache (direct-mapped).
const CACHE_SLOTS: usize = 256;
/// Longer header values are fingerprinted every time rather than kept.
const CACHE_MAX_VALUE: usize = 1024;

/// Per-VM cache of credential fingerprints under one key (or salt).
#[derive(Debug)]
pub struct FingerprintCache {
    how: Fingerprinting,
    slots: Vec<Option<(Box<[u8]>, Fingerprint)>>,
}

impl FingerprintCache {
    pub fn new(how: &Fingerprinting) -> Self {
        FingerprintCache {
            how: how.clone(),
            slots: Vec::new(),
        }
    }

    /// The fingerprint of `header_value` (computed once per distinct value while cached).
    pub fn fingerprint(&mut self, header_value: &[u8]) -> Fingerprint {
        if header_value.len() > CACHE_MAX_VALUE {
            return fingerprint(header_value, &self.how);
        }
        if self.slots.is_empty() {
            self.slots.resize(CACHE_SLOTS, None);
        }
        let slot = fnv1a(header_value) as usize % CACHE_SLOTS;
        if let Some(Some((value, print))) = self.slots.get(slot) {
            if crate::bytes::bytes_eq(value, header_value) {
                return *print;
            }
        }
        let print = fingerprint(header_value, &self.how);
        if let Some(entry) = self.slots.get_mut(slot) {
            *entry = Some((header_value.into(), print));
        }
        print
    }
}

/// A quick hash for the cache's slot, a word at a time (slots only need spreading).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut h = words.by_ref().fold(0xcbf2_9ce4_8422_2325u64, |h, w| {
        let word = <[u8; 8]>::try_from(w).map_or(0, u64::from_le_bytes);
        (h ^ word).wrapping_mul(0x0100_0000_01b3).rotate_left(29)
    });
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 32)
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
        Value::String(text) if policy.redact_credential_values && looks_like_credential(text) => {
            *text = REDACTED.to_string();
        }
        _ => {}
    }
}

/// Well-known credential prefixes and the shortest credential each starts (prefix included):
/// OpenAI and Anthropic keys, GitHub tokens, GitLab, Slack, Stripe, Google API keys, AWS
/// access key ids.
const CREDENTIAL_PREFIXES: &[(&str, usize)] = &[
    ("sk-", 20),
    ("ghp_", 36),
    ("gho_", 36),
    ("ghu_", 36),
    ("ghs_", 36),
    ("ghr_", 36),
    ("github_pat_", 40),
    ("glpat-", 24),
    ("xoxb-", 20),
    ("xoxp-", 20),
    ("xoxa-", 20),
    ("xoxr-", 20),
    ("rk_live_", 20),
    ("sk_live_", 20),
    ("AIza", 39),
    ("AKIA", 20),
    ("ASIA", 20),
];

/// Whether a string value contains something that looks like a credential: an HTTP
/// `Bearer`/`Basic` credential, a token with a well-known prefix, a JWT, or a PEM private key.
/// Each candidate is a run of token characters, so prose that merely mentions "sk-" is kept.
pub fn looks_like_credential(text: &str) -> bool {
    if text.contains("PRIVATE KEY-----") {
        return true;
    }
    let mut words = text.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';'));
    let mut previous = "";
    words.any(|word| {
        let scheme =
            previous.eq_ignore_ascii_case("bearer") || previous.eq_ignore_ascii_case("basic");
        previous = word;
        let token =
            word.trim_matches(|c: char| matches!(c, '(' | ')' | '[' | ']' | '<' | '>' | '.'));
        (scheme && is_scheme_credential(token)) || has_credential_prefix(token) || is_jwt(token)
    })
}

/// What follows `Bearer`/`Basic`: at least 8 token characters that do not read as a word
/// (a digit, padding, or mixed case), so "Basic arithmetic" stays.
fn is_scheme_credential(token: &str) -> bool {
    let bytes = token.as_bytes();
    let mixed_case =
        bytes.iter().any(u8::is_ascii_uppercase) && bytes.iter().any(u8::is_ascii_lowercase);
    token.len() >= 8
        && bytes.iter().copied().all(is_token_byte)
        && (mixed_case || bytes.iter().any(|b| b.is_ascii_digit() || *b == b'='))
}

/// base64/base64url and the separators tokens use.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
}

fn has_credential_prefix(token: &str) -> bool {
    CREDENTIAL_PREFIXES.iter().any(|(prefix, min_len)| {
        token.starts_with(prefix)
            && token.len() >= *min_len
            && token[prefix.len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    })
}

/// Three base64url segments, the first a JSON object's (`eyJ` is `{"`).
fn is_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let b64url = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
    };
    header.starts_with("eyJ")
        && payload.len() >= 8
        && b64url(header)
        && b64url(payload)
        && b64url(signature)
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
            redact_credential_values: true,
        }
    }

    fn unkeyed(salt: &str) -> Fingerprinting {
        Fingerprinting::Unkeyed { salt: salt.into() }
    }

    #[test]
    fn fingerprint_shape_and_scheme() {
        let f = fingerprint(b"Bearer secret-token", &unkeyed(""));
        assert!(f.as_str().starts_with("sha256:"));
        assert_eq!(f.as_str().len(), "sha256:".len() + 12);
        assert!(!f.as_str().contains("secret"));
        assert_eq!(f, fingerprint(b"secret-token", &unkeyed("")));
        assert_eq!(f, fingerprint(b"  Bearer   secret-token ", &unkeyed("")));
        assert_eq!(
            f.as_bytes(),
            mcp_contract::fingerprint::of_header_value(b"", b"secret-token")
        );
        assert_ne!(f, fingerprint(b"Bearer secret-token", &unkeyed("salt")));
        assert_ne!(f, fingerprint(b"Bearer other-token", &unkeyed("")));
    }

    #[test]
    fn keyed_fingerprints_are_the_contracts_hmac() {
        let key = Fingerprinting::Keyed(b"0123456789abcdef-key".to_vec().into_boxed_slice());
        let f = fingerprint(b"Bearer secret-token", &key);
        assert_eq!(
            f.as_bytes(),
            mcp_contract::fingerprint::keyed_of_header_value(
                b"0123456789abcdef-key",
                b"secret-token"
            )
        );
        assert!(f.as_str().starts_with("hmac-sha256:"), "{}", f.as_str());
        assert_ne!(
            f.as_str(),
            fingerprint(b"Bearer secret-token", &unkeyed("")).as_str()
        );
        let mut cache = FingerprintCache::new(&key);
        assert_eq!(cache.fingerprint(b"Bearer secret-token"), f);
        assert!(
            !format!("{key:?}").contains("0123456789abcdef"),
            "the key is never printed"
        );
    }

    #[test]
    fn the_cache_answers_like_the_function_and_never_mixes_values() {
        let how = unkeyed("pepper");
        let mut cache = FingerprintCache::new(&how);
        let values: Vec<Vec<u8>> = (0..2000)
            .map(|i| format!("Bearer token-{}", i % 700).into_bytes())
            .chain([vec![b'x'; 5000]])
            .collect();
        for value in &values {
            assert_eq!(cache.fingerprint(value), fingerprint(value, &how));
        }
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
    fn values_that_look_like_credentials_are_redacted_whatever_their_key() {
        let secrets = [
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "use bearer abcdEFGH12345678 please",
            "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx",
            "key: ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "AKIAIOSFODNN7EXAMPLE",
            "AIzaSyA-0123456789abcdefghijklmnopqrstu",
            "xoxb-123456789012-abcdefghijkl",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE...",
            "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJtY3AifQ.c2lnbmF0dXJl",
        ];
        for secret in secrets {
            assert!(looks_like_credential(secret), "{secret}");
        }
        let prose = [
            "quarterly revenue by region",
            "the sk- prefix marks OpenAI keys",
            "Basic arithmetic",
            "AKIA",
            "a.b.c",
            "bearer of bad news",
        ];
        for text in prose {
            assert!(!looks_like_credential(text), "{text}");
        }
        let raw = r#"{"query":"revenue","auth":{"header":"Bearer abcdEFGH12345678"},"keys":["sk-AbCdEfGhIjKlMnOpQrStUv"],"x-api-key":"plain"}"#;
        let (text, _) = capture_arguments(raw, &policy(1000)).expect("captured");
        assert!(
            !text.contains("abcdEFGH") && !text.contains("AbCdEf"),
            "{text}"
        );
        assert!(text.contains(r#""query":"revenue""#), "{text}");
        let mut opted_out = policy(1000);
        opted_out.redact_credential_values = false;
        let (text, _) = capture_arguments(raw, &opted_out).expect("captured");
        assert!(
            text.contains("sk-AbCdEfGhIjKlMnOpQrStUv"),
            "opt-out keeps values: {text}"
        );
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
            redact_credential_values: true,
        };
        assert_eq!(capture_arguments(raw, &off), None);
        assert_eq!(capture_arguments("not json", &policy(100)), None);
    }
}

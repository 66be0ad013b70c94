//! Credential fingerprints: the first 12 hex digits of a digest of the credential (its auth
//! scheme, `Bearer ` or `Basic `, stripped, so one token has one fingerprint whichever header
//! carried it). Enough to tell credentials apart in an audit; credentials never go on the
//! wire: the filter sends this instead, and the collector replaces anything else it finds in
//! `token` with it.
//!
//! Two forms. Keyed, the recommended one: `hmac-sha256:` + HMAC-SHA256 under a secret key
//! (the filter's `fingerprint_key`, the collector's `--fingerprint-key`): without the key a
//! fingerprint cannot be checked against guesses, however short the secret. Unkeyed:
//! `sha256:` + SHA-256 over an optional salt and the credential, which anyone can compute for
//! a guessed credential (short or common secrets are found by trying); both sides warn at
//! start when they run without a key.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "sha256:";
pub const KEYED_PREFIX: &str = "hmac-sha256:";
/// Hex digits the filter keeps.
pub const HEX_DIGITS: usize = 12;
/// Length of an unkeyed fingerprint the filter writes.
pub const LEN: usize = PREFIX.len() + HEX_DIGITS;
/// Length of a keyed fingerprint the filter writes.
pub const KEYED_LEN: usize = KEYED_PREFIX.len() + HEX_DIGITS;
/// Shortest accepted key: shorter ones are guessable themselves.
pub const MIN_KEY_LEN: usize = 16;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The unkeyed fingerprint of a credential header value under `salt`, as ASCII bytes.
pub fn of_header_value(salt: &[u8], header_value: &[u8]) -> [u8; LEN] {
    let credential = strip_scheme(header_value.trim_ascii());
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(credential);
    render(PREFIX, &hasher.finalize())
}

/// The keyed fingerprint (HMAC-SHA256 under `key`) of a credential header value.
pub fn keyed_of_header_value(key: &[u8], header_value: &[u8]) -> [u8; KEYED_LEN] {
    let credential = strip_scheme(header_value.trim_ascii());
    // HMAC takes a key of any length (longer ones are hashed first): this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
    mac.update(credential);
    render(KEYED_PREFIX, &mac.finalize().into_bytes())
}

/// `prefix` and the first `HEX_DIGITS` hex digits of `digest`.
fn render<const N: usize>(prefix: &str, digest: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out[..prefix.len()].copy_from_slice(prefix.as_bytes());
    let digits = digest.iter().flat_map(|b| [b >> 4, b & 0x0f]);
    for (slot, digit) in out[prefix.len()..].iter_mut().zip(digits) {
        *slot = HEX[usize::from(digit)];
    }
    out
}

/// The credential without its auth scheme (a leading alphabetic word and spaces).
pub fn strip_scheme(value: &[u8]) -> &[u8] {
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return value;
    };
    let (scheme, rest) = value.split_at(space);
    if !scheme.is_empty() && scheme.iter().all(u8::is_ascii_alphabetic) {
        rest.trim_ascii_start()
    } else {
        value
    }
}

/// Whether `token` has the form of a fingerprint: `sha256:` or `hmac-sha256:` and 12 to 64
/// lowercase hex digits (longer prefixes of the digest are accepted from other writers).
pub fn is_fingerprint(token: &str) -> bool {
    let digits = token
        .strip_prefix(PREFIX)
        .or_else(|| token.strip_prefix(KEYED_PREFIX));
    digits.is_some_and(|hex| {
        (HEX_DIGITS..=64).contains(&hex.len())
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: [u8; LEN]) -> String {
        String::from_utf8(f.to_vec()).unwrap_or_default()
    }

    #[test]
    fn shape_scheme_and_salt() {
        let bare = text(of_header_value(b"", b"secret-token"));
        assert!(is_fingerprint(&bare), "{bare}");
        assert_eq!(bare.len(), LEN);
        let digest = Sha256::digest(b"secret-token");
        let expected: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(bare, format!("sha256:{expected}"));
        assert_eq!(text(of_header_value(b"", b"Bearer secret-token")), bare);
        assert_eq!(text(of_header_value(b"", b"  Basic   secret-token ")), bare);
        assert_ne!(text(of_header_value(b"salt", b"secret-token")), bare);
        assert_eq!(strip_scheme(b"tok en"), b"en");
        assert_eq!(strip_scheme(b"t0k en"), b"t0k en");
    }

    #[test]
    fn keyed_fingerprints_are_hmac_sha256() {
        // The published HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog")
        // (the scheme word before it is stripped, as for any header value).
        let keyed = keyed_of_header_value(
            b"key",
            b"Bearer The quick brown fox jumps over the lazy dog",
        );
        assert_eq!(&keyed, b"hmac-sha256:f7bc83f43053");
        let token = keyed_of_header_value(b"0123456789abcdef", b"Bearer secret-token");
        assert_eq!(
            token,
            keyed_of_header_value(b"0123456789abcdef", b"secret-token")
        );
        assert_ne!(
            token,
            keyed_of_header_value(b"another-key-0123", b"secret-token")
        );
        let text = String::from_utf8(token.to_vec()).unwrap_or_default();
        assert!(is_fingerprint(&text), "{text}");
        assert_eq!(text.len(), KEYED_LEN);
    }

    #[test]
    fn recognises_fingerprints_only() {
        assert!(is_fingerprint("sha256:0123456789ab"));
        assert!(is_fingerprint("hmac-sha256:0123456789ab"));
        assert!(!is_fingerprint("hmac-sha1:0123456789ab"));
        assert!(!is_fingerprint("sha256:0123456789AB"));
        assert!(!is_fingerprint("sha256:0123"));
        assert!(!is_fingerprint("Bearer abc"));
    }
}

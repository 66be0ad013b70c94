//! Credential fingerprints: `sha256:` and the first 12 hex digits of SHA-256 over the salt and
//! the credential (its auth scheme, `Bearer ` or `Basic `, stripped, so one token has one
//! fingerprint whichever header carried it). Enough to tell credentials apart in an audit, too
//! few digits to be a usable hash for offline guessing of long tokens. Credentials never go on
//! the wire: the filter sends this instead, and the collector replaces anything else it finds
//! in `token` with it.

use sha2::{Digest, Sha256};

pub const PREFIX: &str = "sha256:";
/// Hex digits the filter keeps.
pub const HEX_DIGITS: usize = 12;
/// Length of a fingerprint the filter writes.
pub const LEN: usize = PREFIX.len() + HEX_DIGITS;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The fingerprint of a credential header value under `salt`, as ASCII bytes.
pub fn of_header_value(salt: &[u8], header_value: &[u8]) -> [u8; LEN] {
    let credential = strip_scheme(header_value.trim_ascii());
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(credential);
    let digest = hasher.finalize();
    let mut out = [0u8; LEN];
    out[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
    let digits = digest.iter().flat_map(|b| [b >> 4, b & 0x0f]);
    for (slot, digit) in out[PREFIX.len()..].iter_mut().zip(digits) {
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

/// Whether `token` has the form of a fingerprint: `sha256:` and 12 to 64 lowercase hex digits
/// (longer prefixes of the digest are accepted from other writers).
pub fn is_fingerprint(token: &str) -> bool {
    token.strip_prefix(PREFIX).is_some_and(|hex| {
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
    fn recognises_fingerprints_only() {
        assert!(is_fingerprint("sha256:0123456789ab"));
        assert!(!is_fingerprint("sha256:0123456789AB"));
        assert!(!is_fingerprint("sha256:0123"));
        assert!(!is_fingerprint("Bearer abc"));
    }
}

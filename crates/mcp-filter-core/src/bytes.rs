//! Byte-string helpers a word (eight bytes) at a time, for the hot path: wasm has no SIMD here
//! and runs `memcmp` and UTF-8 validation a byte at a time, so names, keys, credentials and
//! string runs are compared and scanned with SWAR tricks instead. Used by the JSON scanner, the
//! JSON writer, the method catalogue and header reading.

const ONES: u64 = 0x0101_0101_0101_0101;
pub(crate) const HIGHS: u64 = 0x8080_8080_8080_8080;

fn zero_byte(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Which of a string's next eight bytes (little-endian) may be a quote, a backslash or a
/// control character: the lowest flagged byte is exactly the first such byte (borrows only
/// move flags upwards), zero when there is none.
pub fn run_end_mask(word: u64) -> u64 {
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    control | quote | backslash
}

/// Eight bytes at `at`, if there are eight.
pub fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
        .map(u64::from_le_bytes)
}

/// Four bytes at `at`, if there are four.
fn half_word_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .and_then(|w| <[u8; 4]>::try_from(w).ok())
        .map(u32::from_le_bytes)
}

/// Byte string equality a word at a time, without a call to `memcmp` (which wasm runs a
/// byte at a time): names, keys and credentials are compared on the hot path.
pub fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len();
    if len != b.len() {
        return false;
    }
    if len < 8 {
        // Four to seven bytes: two overlapping half-words.
        if len >= 4 {
            return half_word_at(a, 0) == half_word_at(b, 0)
                && half_word_at(a, len - 4) == half_word_at(b, len - 4);
        }
        return a == b;
    }
    let mut at = 0;
    while at + 8 < len {
        if word_at(a, at) != word_at(b, at) {
            return false;
        }
        at += 8;
    }
    // The last word, overlapping the previous one if need be.
    word_at(a, len - 8) == word_at(b, len - 8)
}

/// Whether `bytes` is ASCII: every byte's high bit, or-ed together a word at a time.
pub fn is_ascii(bytes: &[u8]) -> bool {
    let len = bytes.len();
    let mut high = 0u64;
    if len >= 8 {
        let mut at = 0;
        while let Some(word) = word_at(bytes, at) {
            high |= word;
            at += 8;
        }
        // The tail, as the last word (overlapping the previous one).
        high |= word_at(bytes, len - 8).unwrap_or(0);
    } else if len >= 4 {
        high = u64::from(
            half_word_at(bytes, 0).unwrap_or(0) | half_word_at(bytes, len - 4).unwrap_or(0),
        );
    } else {
        for &b in bytes {
            high |= u64::from(b);
        }
    }
    high & HIGHS == 0
}

/// Validates UTF-8, with a fast path for the ASCII bodies MCP sends.
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    if is_ascii(bytes) {
        // SAFETY: ASCII is valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_and_ascii_agree_with_the_standard_library_at_every_length_and_position() {
        let base: Vec<u8> = (b'a'..=b'z').collect();
        for len in 0..base.len() {
            let a = &base[..len];
            assert!(bytes_eq(a, a), "{len}");
            assert!(is_ascii(a), "{len}");
            assert!(!bytes_eq(a, &base[..len + 1]), "lengths differ: {len}");
            for at in 0..len {
                let mut other = a.to_vec();
                other[at] ^= 0x20;
                assert!(!bytes_eq(a, &other), "byte {at} of {len}");
                other[at] = 0xc3;
                assert_eq!(is_ascii(&other), other.is_ascii(), "byte {at} of {len}");
            }
        }
    }
}

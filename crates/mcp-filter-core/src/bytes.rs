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

/// A byte string of at most [`Packed::MAX`] bytes as its length, its first eight bytes and
/// its last eight (overlapping when shorter than 16; zero-padded below eight): together the
/// whole string. Names the hot path looks up (the JSON keys MCP reads) are compared as three
/// integers instead of byte by byte, and a table of them is packed at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    len: usize,
    first: u64,
    last: u64,
}

impl Packed {
    pub const MAX: usize = 16;

    /// [`Packed::of`] at compile time (a byte loop; `None` past [`Packed::MAX`]).
    pub const fn of_const(bytes: &[u8]) -> Option<Packed> {
        let len = bytes.len();
        if len > Packed::MAX {
            return None;
        }
        let mut first = 0u64;
        let mut i = 0;
        while i < len && i < 8 {
            first |= (bytes[i] as u64) << (8 * i);
            i += 1;
        }
        let mut last = 0u64;
        if len > 8 {
            let mut i = 0;
            while i < 8 {
                last |= (bytes[len - 8 + i] as u64) << (8 * i);
                i += 1;
            }
        }
        Some(Packed { len, first, last })
    }

    /// `bytes` packed; `None` past [`Packed::MAX`] bytes.
    pub fn of(bytes: &[u8]) -> Option<Packed> {
        let len = bytes.len();
        let (first, last) = match len {
            17.. => return None,
            9.. => (
                word_at(bytes, 0).unwrap_or(0),
                word_at(bytes, len - 8).unwrap_or(0),
            ),
            8 => (word_at(bytes, 0).unwrap_or(0), 0),
            _ => {
                let mut first = 0u64;
                for (i, &b) in bytes.iter().enumerate() {
                    first |= u64::from(b) << (8 * i);
                }
                (first, 0)
            }
        };
        Some(Packed { len, first, last })
    }
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
    fn packing_is_the_same_at_run_time_and_compile_time_and_tells_strings_apart() {
        let base: Vec<u8> = (b'a'..=b'z').collect();
        for len in 0..=Packed::MAX {
            let a = &base[..len];
            assert_eq!(Packed::of(a), Packed::of_const(a), "{len}");
            assert_ne!(Packed::of(a), Packed::of(&base[..len + 1]), "{len}");
            for at in 0..len {
                let mut other = a.to_vec();
                other[at] ^= 0x01;
                assert_ne!(Packed::of(a), Packed::of(&other), "byte {at} of {len}");
            }
        }
        assert_eq!(Packed::of(&base[..17]), None);
        assert_eq!(Packed::of_const(&base[..17]), None);
    }

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

//! The few JSON output primitives the filter writes with, written straight into a byte buffer: escaped
//! strings (runs that need no escaping are found eight bytes at a time and copied whole),
//! unsigned integers, and durations in milliseconds with microsecond precision, which are
//! exact decimals, never floats.

/// Bytes that must be escaped inside a JSON string: `"`, `\` and control characters.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any of the eight bytes of `word` needs escaping.
#[cfg(test)]
fn word_needs_escape(word: u64) -> bool {
    crate::bytes::run_end_mask(word) != 0
}

/// Appends `s` as the content of a JSON string (no quotes).
pub fn push_escaped(buf: &mut Vec<u8>, s: &str) {
    use crate::bytes::{run_end_mask, word_at};
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight plain bytes at a time; at a word holding a special byte, jump to it.
        if let Some(word) = word_at(bytes, i) {
            let mask = run_end_mask(word);
            if mask == 0 {
                i += 8;
                continue;
            }
            i += (mask.trailing_zeros() / 8) as usize;
        }
        let b = bytes.get(i).copied().unwrap_or_default();
        i += 1;
        if !needs_escape(b) {
            continue;
        }
        let at = i - 1;
        buf.extend_from_slice(bytes.get(start..at).unwrap_or_default());
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            other => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(other >> 4)]);
                buf.push(HEX[usize::from(other & 0xf)]);
            }
        }
        start = i;
    }
    buf.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

/// Appends a label of this program's own (an event name, an outcome) as a JSON string:
/// labels never need escaping.
pub fn push_label(buf: &mut Vec<u8>, label: &'static str) {
    debug_assert!(!label.bytes().any(needs_escape), "{label}");
    buf.push(b'"');
    buf.extend_from_slice(label.as_bytes());
    buf.push(b'"');
}

/// Appends a string known to need no escaping (hex digits, a validated header name) as a
/// JSON string.
pub fn push_trusted(buf: &mut Vec<u8>, value: &str) {
    debug_assert!(!value.bytes().any(needs_escape), "{value}");
    buf.push(b'"');
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'"');
}

/// Appends exactly `width` digits of `n` (the lowest ones), zero-padded.
pub fn push_fixed(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let width = width.min(digits.len());
    for slot in digits[..width].iter_mut().rev() {
        // `n % 10` is a digit, so the cast is lossless.
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    buf.extend_from_slice(&digits[..width]);
}

/// Appends `s` as a JSON string, quotes included.
pub fn push_string(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    push_escaped(buf, s);
    buf.push(b'"');
}

/// Appends the decimal digits of `n`.
pub fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        // `n % 10` is a digit, so the cast is lossless.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(digits.get(i..).unwrap_or_default());
}

/// Appends a duration given in microseconds as milliseconds with three decimals (`25.000`).
pub fn push_millis(buf: &mut Vec<u8>, micros: u64) {
    push_u64(buf, micros / 1_000);
    buf.push(b'.');
    push_fixed(buf, micros % 1_000, 3);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> String {
        let mut buf = Vec::new();
        push_string(&mut buf, s);
        String::from_utf8(buf).expect("utf-8")
    }

    #[test]
    fn strings_round_trip_through_a_json_parser() {
        for s in [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "ctl \u{0} \u{1f} \n\r\t",
            "é ✓ 𝄞",
            "\u{7f}",
            "sixteen bytes!!!\"then a quote and sixteen more bytes\\",
            "\u{1f}2345678\u{0}abcdefgh",
        ] {
            let json = string(s);
            let back: String = serde_json::from_str(&json).expect("valid JSON");
            assert_eq!(back, s, "{json}");
        }
        assert_eq!(string("a\"b"), r#""a\"b""#);
    }

    #[test]
    fn the_word_test_agrees_with_the_byte_test() {
        for special in [0u8, 0x1f, b'"', b'\\'] {
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = special;
                assert!(
                    word_needs_escape(u64::from_le_bytes(word)),
                    "{special} at {at}"
                );
            }
        }
        for b in 0x20..=0xffu8 {
            let word = [b; 8];
            assert_eq!(
                word_needs_escape(u64::from_le_bytes(word)),
                needs_escape(b),
                "{b}"
            );
        }
    }

    #[test]
    fn numbers() {
        let render = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut buf = Vec::new();
            f(&mut buf);
            String::from_utf8(buf).expect("utf-8")
        };
        assert_eq!(render(&|b| push_u64(b, 0)), "0");
        assert_eq!(render(&|b| push_u64(b, u64::MAX)), u64::MAX.to_string());
        assert_eq!(render(&|b| push_fixed(b, 7, 6)), "000007");
        assert_eq!(render(&|b| push_fixed(b, 999_999, 6)), "999999");
        assert_eq!(render(&|b| push_label(b, "ok")), "\"ok\"");
        assert_eq!(render(&|b| push_millis(b, 25_000)), "25.000");
        assert_eq!(render(&|b| push_millis(b, 1_234)), "1.234");
        assert_eq!(render(&|b| push_millis(b, 5)), "0.005");
        let v: f64 = serde_json::from_str(&render(&|b| push_millis(b, 40_000))).expect("number");
        assert_eq!(v, 40.0);
    }
}

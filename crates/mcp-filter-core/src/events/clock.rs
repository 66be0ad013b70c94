//! Event timestamps (`ts`): RFC 3339 UTC with microseconds. The line's start up to the
//! seconds (`{"ts":"2025-11-22T02:53:34.`) is formatted once per second and reused; each
//! event only adds its six fraction digits.

use std::time::{SystemTime, UNIX_EPOCH};

/// `{"ts":"`.
const OPEN: &[u8] = b"{\"ts\":\"";
/// `{"ts":"YYYY-MM-DDTHH:MM:SS.`
const PREFIX_LEN: usize = OPEN.len() + 20;

#[derive(Debug, Clone)]
pub struct TimestampCache {
    second: Option<u64>,
    prefix: [u8; PREFIX_LEN],
}

impl Default for TimestampCache {
    fn default() -> Self {
        TimestampCache {
            second: None,
            prefix: *b"{\"ts\":\"1970-01-01T00:00:00.",
        }
    }
}

impl TimestampCache {
    /// Appends `{"ts":"2025-11-22T02:53:34.123456Z` (no closing quote): the start of a line.
    pub fn push_line_start(&mut self, buf: &mut Vec<u8>, now: SystemTime) {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs();
        if self.second != Some(second) {
            self.refresh(now, second);
        }
        let mut fraction = *b"000000Z";
        let mut micros = since.subsec_micros();
        for digit in fraction[..6].iter_mut().rev() {
            // `micros % 10` is a digit, so the cast is lossless.
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        buf.extend_from_slice(&self.prefix);
        buf.extend_from_slice(&fraction);
    }

    fn refresh(&mut self, now: SystemTime, second: u64) {
        // "2025-11-22T02:53:34Z": the first 19 bytes are the date and time of day.
        let formatted = humantime::format_rfc3339_seconds(now).to_string();
        if let Some(head) = formatted.as_bytes().get(..19) {
            self.prefix[OPEN.len()..PREFIX_LEN - 1].copy_from_slice(head);
            self.prefix[PREFIX_LEN - 1] = b'.';
            self.second = Some(second);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ts(cache: &mut TimestampCache, micros: u64) -> String {
        let mut buf = Vec::new();
        cache.push_line_start(&mut buf, UNIX_EPOCH + Duration::from_micros(micros));
        let line = String::from_utf8(buf).expect("utf-8");
        line.strip_prefix("{\"ts\":\"")
            .expect("line start")
            .to_string()
    }

    #[test]
    fn matches_rfc3339_with_micros_across_second_changes() {
        let mut cache = TimestampCache::default();
        for micros in [
            1_763_780_014_123_456u64,
            1_763_780_014_999_999,
            1_763_780_015_000_001,
            1_763_780_014_000_000,
            0,
            253_402_300_799_999_999,
        ] {
            let expected =
                humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(micros))
                    .to_string();
            assert_eq!(ts(&mut cache, micros), expected);
        }
        assert_eq!(
            ts(&mut cache, 1_763_780_014_123_456),
            "2025-11-22T02:53:34.123456Z"
        );
    }
}

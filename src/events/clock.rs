//! Event timestamps (`ts`): RFC 3339 UTC with microseconds. The part up to the seconds is
//! formatted once per second and reused; each event only appends its six fraction digits.

use crate::json::push_fixed;
use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SS.`
const PREFIX_LEN: usize = 20;

#[derive(Debug, Clone)]
pub struct TimestampCache {
    second: Option<u64>,
    prefix: [u8; PREFIX_LEN],
}

impl Default for TimestampCache {
    fn default() -> Self {
        TimestampCache {
            second: None,
            prefix: *b"1970-01-01T00:00:00.",
        }
    }
}

impl TimestampCache {
    /// Appends `now` as `2025-11-22T02:53:34.123456Z` (no quotes).
    pub fn push(&mut self, buf: &mut Vec<u8>, now: SystemTime) {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs();
        if self.second != Some(second) {
            self.refresh(now, second);
        }
        buf.extend_from_slice(&self.prefix);
        push_fixed(buf, u64::from(since.subsec_micros()), 6);
        buf.push(b'Z');
    }

    fn refresh(&mut self, now: SystemTime, second: u64) {
        // "2025-11-22T02:53:34Z": the first 19 bytes are the date and time of day.
        let formatted = humantime::format_rfc3339_seconds(now).to_string();
        if let Some(head) = formatted.as_bytes().get(..PREFIX_LEN - 1) {
            self.prefix[..PREFIX_LEN - 1].copy_from_slice(head);
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
        cache.push(&mut buf, UNIX_EPOCH + Duration::from_micros(micros));
        String::from_utf8(buf).expect("utf-8")
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

//! The collector's NDJSON line parser (`host_collector::ingest::wire::parse_line`): never
//! panics, and what it accepts is storable: the `log` column is valid JSON, `seq` fits a signed
//! 64-bit column, a token is only ever stored as a fingerprint.
#![no_main]
use host_collector::ingest::wire::{parse_line, Line};
use mcp_contract::fingerprint::is_fingerprint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let received_at = chrono::DateTime::from_timestamp(1_800_000_000, 0)
        .expect("valid")
        .naive_utc();
    // Every line of the body, as the ingestor splits it.
    for raw in data.split(|b| *b == b'\n') {
        match parse_line(raw, received_at) {
            Ok(Line::Event { row, .. }) => {
                assert!(row.seq <= i64::MAX as u64);
                assert!(!row.source.is_empty() && row.source.len() <= 64);
                let log: serde_json::Value =
                    serde_json::from_str(&row.log).expect("stored log is JSON");
                assert!(log.is_object());
                if let Some(token) = &row.token {
                    assert!(is_fingerprint(token), "raw token stored: {token}");
                }
            }
            Ok(Line::Status(status)) => {
                assert!(!status.source.is_empty());
            }
            Err(reason) => assert!(!reason.is_empty()),
        }
    }
});

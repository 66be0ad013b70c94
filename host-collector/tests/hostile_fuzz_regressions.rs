//! Regression cases for the collector's ingest parsing and accounting, from the fuzz targets in
//! fuzz/ and the hostile-input suite. Plain `cargo test`, no database.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use host_collector::accounting::Accounting;
use host_collector::ingest::status::StatusTracker;
use host_collector::ingest::wire::{parse_line, Line, StatusRecord};
use host_collector::ingest::EventOutcome;

fn now() -> chrono::NaiveDateTime {
    chrono::DateTime::from_timestamp(1_800_000_000, 0)
        .unwrap()
        .naive_utc()
}

fn status(source: &str, value: u64, emitted: Option<u64>) -> StatusRecord {
    StatusRecord {
        source: source.to_string(),
        dropped: [
            "buffer_full",
            "callout_failed",
            "r1",
            "r2",
            "r3",
            "r4",
            "r5",
        ]
        .iter()
        .map(|r| (r.to_string(), value))
        .collect::<BTreeMap<_, _>>(),
        emitted,
    }
}

/// Found by the hostile suite (and `collector_status_accounting`): forged status records with
/// counters at u64::MAX overflowed the drop totals (`ingest/status.rs`, `accounting.rs`): a
/// panic in debug builds that lost the whole request's events, a silent wrap in release.
#[test]
fn status_counters_at_u64_max_saturate() {
    let mut tracker = StatusTracker::new(4, 2);
    let accounting = Accounting::new(4, 2);
    for source in ["a", "b", "c", "d", "e"] {
        let s = status(source, u64::MAX, Some(u64::MAX));
        tracker.record(&s);
        accounting.record_status(&s);
    }
    accounting.record_event("a", i64::MAX as u64, EventOutcome::Queued);
    accounting.record_event("b", i64::MAX as u64, EventOutcome::Queued);
    assert!(tracker.totals().iter().all(|(_, v)| *v == u64::MAX));
    let report = accounting.report();
    assert!(
        report.totals.gaps >= i64::MAX as u64,
        "gaps summed without overflow"
    );
    assert!(
        report
            .totals
            .filter_dropped
            .values()
            .all(|v| *v == u64::MAX),
        "drop totals saturate"
    );
    serde_json::to_string(&report).expect("serialises");
}

#[test]
fn wire_parser_edges() {
    let deep = format!(
        "{{\"ts\":\"2026-11-22T02:53:34Z\",\"source\":\"s\",\"seq\":1,\"event\":\"request\",\"level\":\"info\",\"x\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    // Deep but valid: skipped without recursion and stored verbatim.
    assert!(matches!(
        parse_line(deep.as_bytes(), now()),
        Ok(Line::Event { .. })
    ));
    for input in [
        &b""[..],
        b"{",
        b"\xff",
        b"{\"kind\":\"status\",\"source\":\"s\",\"dropped\":{\"a\":18446744073709551615}}",
        b"{\"kind\":\"status\",\"source\":\"s\",\"dropped\":{\"a\":18446744073709551616}}",
        b"{\"ts\":\"9999-12-31T23:59:59.9999999Z\",\"source\":\"s\",\"seq\":1,\"event\":\"e\",\"level\":\"info\"}",
        b"{\"ts\":\"2026-11-22T02:53:34+23:59\",\"source\":\"s\",\"seq\":9223372036854775807,\"event\":\"e\",\"level\":\"info\",\"token\":\"\"}",
    ] {
        let _ = parse_line(input, now());
    }
    // A raw token is never stored as sent.
    let line = br#"{"ts":"2026-11-22T02:53:34Z","source":"s","seq":1,"event":"e","level":"info","token":"Bearer \u0000raw"}"#;
    if let Ok(Line::Event { row, .. }) = parse_line(line, now()) {
        assert!(row
            .token
            .as_deref()
            .is_some_and(|t| t.starts_with("sha256:")));
        assert!(!row.log.contains("raw\""));
    }
}

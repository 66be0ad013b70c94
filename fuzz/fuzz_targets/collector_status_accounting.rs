//! Status records (a filter's cumulative drop counters, forgeable by anyone holding the token)
//! fed into the collector's status tracker and per-source loss accounting, then reported:
//! counters near u64::MAX must never panic (overflow) or poison the report.
#![no_main]
use host_collector::accounting::Accounting;
use host_collector::ingest::status::StatusTracker;
use host_collector::ingest::wire::{parse_line, Line};
use host_collector::ingest::EventOutcome;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let received_at = chrono::DateTime::from_timestamp(1_800_000_000, 0)
        .expect("valid")
        .naive_utc();
    let mut tracker = StatusTracker::new(4, 4);
    let accounting = Accounting::new(4, 4);
    for raw in data.split(|b| *b == b'\n').take(64) {
        match parse_line(raw, received_at) {
            Ok(Line::Status(status)) => {
                tracker.record(&status);
                accounting.record_status(&status);
            }
            Ok(Line::Event { row, .. }) => {
                accounting.record_event(&row.source, row.seq, EventOutcome::Queued);
            }
            Err(_) => {}
        }
    }
    let _ = tracker.totals();
    let report = accounting.report();
    let _ = serde_json::to_string(&report).expect("report serialises");
});

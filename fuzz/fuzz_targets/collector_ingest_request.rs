//! The collector's whole ingest request (`Ingestor::ingest`): a body of NDJSON lines split,
//! parsed, deduplicated, status records merged, admitted to the buffer and seen by the
//! observers (loss accounting, RED metrics). Never panics; every line is accounted for once
//! (accepted, duplicate, rejected or a status record); the queue holds exactly what was
//! accepted; the same body again sorts the same lines the same way into events (accepted or
//! duplicate: a seq far below its source's highest is outside the dedupe window) and
//! rejections; the accounting agrees.
#![no_main]
use std::sync::Arc;

use host_collector::accounting::Accounting;
use host_collector::buffer::Buffer;
use host_collector::ingest::{IngestLimits, Ingestor};
use host_collector::internal_events::Telemetry;
use host_collector::red::RedMetrics;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let received_at = chrono::DateTime::from_timestamp(1_800_000_000, 0)
        .expect("valid")
        .naive_utc();
    let telemetry = Arc::new(Telemetry::default());
    let buffer = Arc::new(Buffer::memory(1 << 30, telemetry.clone()));
    let accounting = Arc::new(Accounting::new(64, 8));
    let limits = IngestLimits {
        dedupe_window: 4096,
        dedupe_max_sources: 100_000,
        status_max_sources: 64,
        status_max_reasons: 8,
        fingerprint_key: None,
    };
    let ingestor = Ingestor::new(buffer.clone(), telemetry, &limits)
        .with_observer(accounting.clone())
        .with_observer(Arc::new(RedMetrics::new(8, 8)));

    let lines = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count();
    let first = ingestor.ingest(data, received_at).expect("memory buffer");
    assert!(first.accepted + first.duplicates + first.rejected.len() <= lines);
    assert!(first
        .rejected
        .windows(2)
        .all(|w| w[0].line < w[1].line), "rejections in line order");
    let levels = buffer.levels();
    assert_eq!(levels.counters.received, first.accepted as u64);
    assert_eq!(levels.held(), first.accepted as u64);

    let report = accounting.report();
    // Sources beyond the cap fold into `_other`; events are counted either way.
    assert_eq!(report.totals.events, first.accepted as u64);

    let again = ingestor.ingest(data, received_at).expect("memory buffer");
    assert_eq!(
        again.accepted + again.duplicates,
        first.accepted + first.duplicates,
        "the same event lines"
    );
    assert_eq!(again.rejected.len(), first.rejected.len());
    assert_eq!(
        buffer.levels().counters.received,
        (first.accepted + again.accepted) as u64
    );
});

//! The status record: one line a filter adds to each batch it sends, with `"kind":"status"`,
//! its `source`, the time, its cumulative drops by reason and `emitted` (the highest `seq` it
//! has emitted), so the collector can account for every event: emitted = stored + dropped
//! (+ still buffered). The counters are cumulative, so a lost or repeated record never double
//! counts.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The `kind` of a status record (events have no `kind`).
pub const KIND: &str = "status";

/// Why a filter dropped events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The buffer was full: the oldest batch was dropped.
    BufferFull,
    /// A batch failed every attempt (or failed while the VM was retiring).
    CalloutFailed,
    /// The collector refused the batch (4xx) or some of its lines.
    RejectedByCollector,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::BufferFull,
        DropReason::CalloutFailed,
        DropReason::RejectedByCollector,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BufferFull => "buffer_full",
            DropReason::CalloutFailed => "callout_failed",
            DropReason::RejectedByCollector => "rejected_by_collector",
        }
    }
}

/// A status record as written: the filter's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status<'a> {
    pub source: &'a str,
    /// RFC 3339 UTC.
    pub ts: &'a str,
    /// Cumulative drops, by reason.
    pub dropped: [(DropReason, u64); 3],
    pub emitted: u64,
}

impl Status<'_> {
    /// Appends the record as one NDJSON line (newline included). `source` and `ts` are a hex
    /// id and a timestamp: nothing in them needs escaping.
    pub fn write_line(&self, out: &mut String) {
        let _ = write!(
            out,
            "{{\"kind\":\"{KIND}\",\"source\":\"{}\",\"ts\":\"{}\",\"dropped\":{{",
            self.source, self.ts
        );
        for (i, (reason, count)) in self.dropped.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(out, "{comma}\"{}\":{count}", reason.as_str());
        }
        let _ = writeln!(out, "}},\"emitted\":{}}}", self.emitted);
    }
}

/// A status record as read: reasons are open (a newer filter may report more), counts
/// cumulative.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusLine {
    pub kind: String,
    pub source: String,
    #[serde(default)]
    pub ts: Option<String>,
    pub dropped: BTreeMap<String, u64>,
    #[serde(default)]
    pub emitted: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_records_read_back() {
        let status = Status {
            source: "a1b2c3",
            ts: "2026-12-04T10:00:00.000001Z",
            dropped: [
                (DropReason::BufferFull, 3),
                (DropReason::CalloutFailed, 0),
                (DropReason::RejectedByCollector, 7),
            ],
            emitted: 1234,
        };
        let mut line = String::new();
        status.write_line(&mut line);
        assert!(line.ends_with('\n'));
        let read: StatusLine = serde_json::from_str(line.trim_end()).expect("valid JSON");
        assert_eq!(read.kind, KIND);
        assert_eq!(read.source, "a1b2c3");
        assert_eq!(read.emitted, Some(1234));
        assert_eq!(read.dropped["buffer_full"], 3);
        assert_eq!(read.dropped["rejected_by_collector"], 7);
        assert_eq!(read.dropped.len(), DropReason::ALL.len());
    }
}

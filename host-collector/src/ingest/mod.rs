//! Ingest: turns one authenticated NDJSON body into queued rows and a partial-success report.
//! Owns dedupe, status-record accounting and the observer hook; knows nothing of HTTP or SQL.
//! Accepted events go to the `buffer`; with its disk variant they are on disk before the
//! report (the acknowledgement) exists, but ingest does not know which variant it has.

pub mod dedupe;
pub mod status;
pub mod wire;

use std::sync::{Arc, Mutex};

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::buffer::{Buffer, BufferUnavailable, Recovered};
use crate::event::Row;
use crate::internal_events::{
    DuplicateStage, DuplicatesIgnored, EventsAccepted, EventsReceived, EventsRejected,
    FieldsTruncated, StatusRecordsReceived, Telemetry, TokenRefingerprinted,
};
use dedupe::Dedupe;
use status::StatusTracker;
use wire::{Line, ResponseFields, StatusRecord};

/// Hook for per-event accounting (per-source loss accounting, RED metrics by
/// instance/method/tool). Called once per parsed event, under the admission lock (so it
/// must not call back into ingest), and only for bodies that were kept.
pub trait IngestObserver: Send + Sync {
    fn on_event(&self, _event: &IngestedEvent, _outcome: EventOutcome) {}
    fn on_status(&self, _status: &StatusRecord) {}
}

/// A valid event line: the row to store plus what observers need that is not a column.
#[derive(Debug, Clone)]
pub struct IngestedEvent {
    pub row: Row,
    /// Set for `response` events.
    pub response: Option<ResponseFields>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Queued,
    Duplicate,
}

/// The body of the 200 reply.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct IngestReport {
    pub accepted: usize,
    pub rejected: Vec<Rejection>,
    pub duplicates: usize,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Rejection {
    pub line: usize,
    pub error: String,
}

pub struct IngestLimits {
    pub dedupe_window: u64,
    pub dedupe_max_sources: usize,
    pub status_max_sources: usize,
    pub status_max_reasons: usize,
    /// Key of keyed (HMAC-SHA256) fingerprints for raw credentials found in lines.
    pub fingerprint_key: Option<Box<[u8]>>,
}

pub struct Ingestor {
    buffer: Arc<Buffer>,
    telemetry: Arc<Telemetry>,
    /// Held from dedupe to buffer push, so a refused body's dedupe marks are undone before
    /// anyone else looks.
    admit: Mutex<()>,
    dedupe: Mutex<Dedupe>,
    status: Arc<Mutex<StatusTracker>>,
    observers: Vec<Arc<dyn IngestObserver>>,
    fingerprint_key: Option<Box<[u8]>>,
}

impl Ingestor {
    pub fn new(buffer: Arc<Buffer>, telemetry: Arc<Telemetry>, limits: &IngestLimits) -> Self {
        Ingestor {
            buffer,
            telemetry,
            admit: Mutex::new(()),
            dedupe: Mutex::new(Dedupe::new(limits.dedupe_window, limits.dedupe_max_sources)),
            status: Arc::new(Mutex::new(StatusTracker::new(
                limits.status_max_sources,
                limits.status_max_reasons,
            ))),
            observers: Vec::new(),
            fingerprint_key: limits.fingerprint_key.clone(),
        }
    }

    pub fn with_observer(mut self, observer: Arc<dyn IngestObserver>) -> Self {
        self.observers.push(observer);
        self
    }

    /// The filter-reported drop totals; `app` registers it as a telemetry probe.
    pub fn status_tracker(&self) -> Arc<Mutex<StatusTracker>> {
        self.status.clone()
    }

    pub fn ingest(
        &self,
        body: &[u8],
        received_at: NaiveDateTime,
    ) -> Result<IngestReport, BufferUnavailable> {
        let mut report = IngestReport::default();
        let mut events = Vec::new();
        let mut statuses = Vec::new();
        for (index, raw) in body.split(|b| *b == b'\n').enumerate() {
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match wire::parse_line_keyed(raw, received_at, self.fingerprint_key.as_deref()) {
                Ok(Line::Event {
                    row,
                    refingerprinted,
                    truncated,
                    response,
                }) => {
                    if refingerprinted {
                        self.telemetry.emit(TokenRefingerprinted);
                    }
                    if truncated > 0 {
                        self.telemetry.emit(FieldsTruncated {
                            count: truncated as u64,
                        });
                    }
                    events.push(IngestedEvent { row, response });
                }
                Ok(Line::Status(status)) => statuses.push(status),
                Err(error) => report.rejected.push(Rejection {
                    line: index + 1,
                    error,
                }),
            }
        }
        self.record_statuses(&statuses);
        let admit = self.admit.lock().unwrap_or_else(|p| p.into_inner());
        let (fresh, duplicates) = self.dedupe(events);
        let admitted = match self.buffer.admit(fresh.iter().map(|e| &e.row)) {
            Ok(admitted) => admitted,
            Err(e) => {
                self.forget(fresh.iter().map(|e| &e.row));
                return Err(e);
            }
        };
        report.accepted = fresh.len();
        report.duplicates = duplicates.len();
        self.notify(&duplicates, EventOutcome::Duplicate);
        self.notify(&fresh, EventOutcome::Queued);
        let pushed = admitted.queue(fresh.into_iter().map(|e| e.row));
        drop(admit);
        self.emit_ingested(&report, pushed.accepted);
        Ok(report)
    }

    /// Buffers again what an earlier run acknowledged (the disk buffer's `Recovered`),
    /// keeping what is new to the dedupe window; observers do not see it again. Returns how
    /// many rows were buffered.
    pub fn replay(&self, recovered: Recovered) -> Result<usize, BufferUnavailable> {
        let _admit = self.admit.lock().unwrap_or_else(|p| p.into_inner());
        let mut dedupe = self.dedupe.lock().unwrap_or_else(|p| p.into_inner());
        self.buffer
            .replay(recovered, |r| dedupe.check(&r.source, r.seq))
    }

    fn forget<'a>(&self, rows: impl IntoIterator<Item = &'a Row>) {
        let mut dedupe = self.dedupe.lock().unwrap_or_else(|p| p.into_inner());
        rows.into_iter()
            .for_each(|r| dedupe.forget(&r.source, r.seq));
    }

    fn record_statuses(&self, statuses: &[StatusRecord]) {
        if statuses.is_empty() {
            return;
        }
        let mut tracker = self.status.lock().unwrap_or_else(|p| p.into_inner());
        for status in statuses {
            tracker.record(status);
        }
        drop(tracker);
        self.telemetry.emit(StatusRecordsReceived {
            count: statuses.len() as u64,
        });
        for status in statuses {
            self.observers.iter().for_each(|o| o.on_status(status));
        }
    }

    fn emit_ingested(&self, report: &IngestReport, accepted: usize) {
        let rejected = report.rejected.len() as u64;
        let duplicates = report.duplicates as u64;
        self.telemetry.emit(EventsReceived {
            count: report.accepted as u64 + duplicates + rejected,
        });
        self.telemetry.emit(EventsAccepted {
            count: accepted as u64,
        });
        self.telemetry.emit(EventsRejected { count: rejected });
        self.telemetry.emit(DuplicatesIgnored {
            stage: DuplicateStage::Ingest,
            count: duplicates,
        });
    }

    /// Splits events into (fresh, recent duplicates).
    fn dedupe(&self, events: Vec<IngestedEvent>) -> (Vec<IngestedEvent>, Vec<IngestedEvent>) {
        let mut dedupe = self.dedupe.lock().unwrap_or_else(|p| p.into_inner());
        events
            .into_iter()
            .partition(|event| dedupe.check(&event.row.source, event.row.seq))
    }

    fn notify(&self, events: &[IngestedEvent], outcome: EventOutcome) {
        for observer in &self.observers {
            events.iter().for_each(|e| observer.on_event(e, outcome));
        }
    }
}

//! Internal events: what each layer reports about itself, in Vector's `internal_events` style.
//! Owns the event structs (one per thing that happened, e.g. `BatchWritten { rows, inserted }`)
//! and `Telemetry`, the plain registry they are emitted into: counters, histograms, the latest
//! database outcomes, and the probes that read live state (queue, spool, concurrency, filter
//! reports) at scrape time. It imports no other module of the crate, so every layer can emit
//! without knowing who renders: `metrics` renders it for Prometheus, `otlp::pipeline` for
//! OTLP, `health` reads the database outcomes.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// Prometheus label pairs, as the families here and the scrape-time collectors use them.
pub type Labels = Vec<(&'static str, String)>;

/// Something that happened in a layer; emitting it updates the registry.
pub trait InternalEvent {
    fn emit(self, telemetry: &Telemetry);
}

/// The registry every layer emits into. The fields are the running totals; `metrics` and
/// `otlp::pipeline` read them, nothing but an `InternalEvent` writes them.
pub struct Telemetry {
    pub events_received: Counter,
    pub events_accepted: Counter,
    pub events_rejected: Counter,
    pub duplicates: Family<Labels, Counter>,
    pub tokens_refingerprinted: Counter,
    pub fields_truncated: Counter,
    pub status_records: Counter,
    pub db_errors: Counter,
    pub dead_letters: Counter,
    pub batch_rows: Histogram,
    pub write_seconds: Histogram,
    pub http_requests: Family<Labels, Counter>,
    pub overload_rejections: Counter,
    pub retention_deleted: Counter,
    pub spool_replayed: Counter,
    pub spool_torn_lines: Counter,
    db: Mutex<DbOutcomes>,
    probes: RwLock<Vec<Arc<dyn Probe>>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            events_received: Counter::default(),
            events_accepted: Counter::default(),
            events_rejected: Counter::default(),
            duplicates: Family::default(),
            tokens_refingerprinted: Counter::default(),
            fields_truncated: Counter::default(),
            status_records: Counter::default(),
            db_errors: Counter::default(),
            dead_letters: Counter::default(),
            batch_rows: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            write_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            http_requests: Family::default(),
            overload_rejections: Counter::default(),
            retention_deleted: Counter::default(),
            spool_replayed: Counter::default(),
            spool_torn_lines: Counter::default(),
            db: Mutex::new(DbOutcomes::default()),
            probes: RwLock::new(Vec::new()),
        }
    }
}

impl Telemetry {
    pub fn emit(&self, event: impl InternalEvent) {
        event.emit(self);
    }

    /// Adds a source of live state, read by `read_live` (at every scrape or export).
    pub fn add_probe(&self, probe: Arc<dyn Probe>) {
        self.probes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(probe);
    }

    /// Live state as the probes see it now.
    pub fn read_live(&self) -> LiveReadings {
        let mut readings = LiveReadings::default();
        let probes = self.probes.read().unwrap_or_else(|p| p.into_inner());
        probes.iter().for_each(|p| p.read(&mut readings));
        readings
    }

    /// The latest database ping and write outcomes.
    pub fn db_outcomes(&self) -> DbOutcomes {
        self.db.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update_db(&self, f: impl FnOnce(&mut DbOutcomes)) {
        f(&mut self.db.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn count_duplicates(&self, stage: &'static str, n: u64) {
        if n > 0 {
            self.duplicates
                .get_or_create(&vec![("stage", stage.to_string())])
                .inc_by(n);
        }
    }
}

/// Latest database outcomes, from the pinger and from the writer.
#[derive(Debug, Default, Clone)]
pub struct DbOutcomes {
    pub ping: Option<Result<(), String>>,
    pub write: Option<Result<(), String>>,
}

impl DbOutcomes {
    /// The last ping succeeded and the last write did not fail (`/health`'s database check
    /// and `collector_database_up`).
    pub fn up(&self) -> bool {
        matches!(self.ping, Some(Ok(()))) && !matches!(self.write, Some(Err(_)))
    }
}

/// A source of live state (levels, not increments), read when someone looks.
pub trait Probe: Send + Sync {
    fn read(&self, readings: &mut LiveReadings);
}

/// What the probes report; a part no probe fills keeps its default.
#[derive(Debug, Default, Clone)]
pub struct LiveReadings {
    pub buffer: BufferReading,
    /// Present when the buffer has a disk spool.
    pub spool: Option<SpoolReading>,
    pub in_flight_requests: u64,
    /// Drops the filters report in their status records, by reason.
    pub filter_drops: Vec<(String, u64)>,
}

/// The in-memory queue: its level and its conservation counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct BufferReading {
    pub bytes: u64,
    pub budget: u64,
    /// Events held (waiting or being written).
    pub entries: u64,
    pub oldest_age: Option<Duration>,
    pub persisted: u64,
    pub dropped_queue_full: u64,
    pub dropped_shutdown: u64,
}

/// The disk spool's files.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpoolReading {
    pub bytes: u64,
    pub segments: u64,
    pub write_errors: u64,
}

/// Event lines in one ingest body: every line read, valid or not.
pub struct EventsReceived {
    pub count: u64,
}

impl InternalEvent for EventsReceived {
    fn emit(self, t: &Telemetry) {
        t.events_received.inc_by(self.count);
    }
}

/// Events admitted to the buffer.
pub struct EventsAccepted {
    pub count: u64,
}

impl InternalEvent for EventsAccepted {
    fn emit(self, t: &Telemetry) {
        t.events_accepted.inc_by(self.count);
    }
}

/// Lines rejected as invalid (also a drop with reason `invalid`).
pub struct EventsRejected {
    pub count: u64,
}

impl InternalEvent for EventsRejected {
    fn emit(self, t: &Telemetry) {
        t.events_rejected.inc_by(self.count);
    }
}

/// Where a duplicate `(source, seq)` was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateStage {
    /// The ingest dedupe window.
    Ingest,
    /// The store's unique key.
    Store,
}

impl DuplicateStage {
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateStage::Ingest => "ingest",
            DuplicateStage::Store => "store",
        }
    }
}

pub struct DuplicatesIgnored {
    pub stage: DuplicateStage,
    pub count: u64,
}

impl InternalEvent for DuplicatesIgnored {
    fn emit(self, t: &Telemetry) {
        t.count_duplicates(self.stage.as_str(), self.count);
    }
}

/// A raw credential replaced by its fingerprint at ingest.
pub struct TokenRefingerprinted;

impl InternalEvent for TokenRefingerprinted {
    fn emit(self, t: &Telemetry) {
        t.tokens_refingerprinted.inc();
    }
}

/// Fields of an accepted line cut to their column's limit or kept out of an id column
/// because they were invalid (the line is stored, naming them in `truncated`).
pub struct FieldsTruncated {
    pub count: u64,
}

impl InternalEvent for FieldsTruncated {
    fn emit(self, t: &Telemetry) {
        t.fields_truncated.inc_by(self.count);
    }
}

pub struct StatusRecordsReceived {
    pub count: u64,
}

impl InternalEvent for StatusRecordsReceived {
    fn emit(self, t: &Telemetry) {
        t.status_records.inc_by(self.count);
    }
}

/// One batch write finished, whatever its outcome.
pub struct BatchWriteTimed {
    pub elapsed: Duration,
}

impl InternalEvent for BatchWriteTimed {
    fn emit(self, t: &Telemetry) {
        t.write_seconds.observe(self.elapsed.as_secs_f64());
    }
}

/// A batch reached the store; `inserted` rows were new (the rest were already stored).
pub struct BatchWritten {
    pub rows: u64,
    pub inserted: u64,
}

impl InternalEvent for BatchWritten {
    fn emit(self, t: &Telemetry) {
        t.batch_rows.observe(self.rows as f64);
        t.count_duplicates(
            DuplicateStage::Store.as_str(),
            self.rows - self.inserted.min(self.rows),
        );
        t.update_db(|db| db.write = Some(Ok(())));
    }
}

/// Rows the database refused for good were written to the dead letters instead.
pub struct RowsDeadLettered {
    pub rows: u64,
}

impl InternalEvent for RowsDeadLettered {
    fn emit(self, t: &Telemetry) {
        t.dead_letters.inc_by(self.rows);
    }
}

/// A batch write failed; the batch is kept for a retry.
pub struct BatchWriteFailed<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for BatchWriteFailed<'_> {
    fn emit(self, t: &Telemetry) {
        t.db_errors.inc();
        let message = self.error.to_string();
        t.update_db(|db| db.write = Some(Err(message)));
    }
}

/// The outcome of one database ping.
pub struct DbPinged {
    pub result: Result<(), String>,
}

impl InternalEvent for DbPinged {
    fn emit(self, t: &Telemetry) {
        if self.result.is_err() {
            t.db_errors.inc();
        }
        t.update_db(|db| db.ping = Some(self.result));
    }
}

/// A response on the main listener.
pub struct HttpResponded {
    pub status: u16,
}

impl InternalEvent for HttpResponded {
    fn emit(self, t: &Telemetry) {
        t.http_requests
            .get_or_create(&vec![("code", self.status.to_string())])
            .inc();
    }
}

/// A request refused because no concurrency slot freed up in time.
pub struct RequestOverloaded;

impl InternalEvent for RequestOverloaded {
    fn emit(self, t: &Telemetry) {
        t.overload_rejections.inc();
    }
}

/// Rows deleted by one retention sweep.
pub struct RowsExpired {
    pub count: u64,
}

impl InternalEvent for RowsExpired {
    fn emit(self, t: &Telemetry) {
        t.retention_deleted.inc_by(self.count);
    }
}

/// What the start read back from the spool of an earlier run.
pub struct SpoolReplayed {
    pub events: u64,
    pub torn_lines: u64,
}

impl InternalEvent for SpoolReplayed {
    fn emit(self, t: &Telemetry) {
        t.spool_replayed.inc_by(self.events);
        t.spool_torn_lines.inc_by(self.torn_lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Probe for Fixed {
        fn read(&self, r: &mut LiveReadings) {
            r.in_flight_requests = 3;
        }
    }

    #[test]
    fn events_update_the_registry_and_probes_are_read() {
        let t = Telemetry::default();
        t.emit(BatchWritten {
            rows: 5,
            inserted: 3,
        });
        t.emit(DbPinged { result: Ok(()) });
        assert!(t.db_outcomes().up());
        t.emit(BatchWriteFailed { error: &"boom" });
        assert!(!t.db_outcomes().up());
        assert_eq!(t.db_errors.get(), 1);
        let store = vec![("stage", "store".to_string())];
        assert_eq!(t.duplicates.get_or_create(&store).get(), 2);
        t.add_probe(Arc::new(Fixed));
        assert_eq!(t.read_live().in_flight_requests, 3);
    }
}

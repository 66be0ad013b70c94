//! Prometheus metrics: the counters and histograms updated in place by ingest, writer and
//! HTTP, plus a scrape-time collector that reads live state (queue, filter-reported drops,
//! overload) so those figures have a single source of truth.

use std::fmt;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::event::Row;
use crate::ingest::status::StatusTracker;
use crate::ingest::IngestReport;
use crate::overload::Limiter;
use crate::queue::{PushOutcome, Queue};
use crate::spool::Spool;

pub(crate) type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    pub events_received: Counter,
    pub events_accepted: Counter,
    pub events_rejected: Counter,
    pub duplicates: Family<Labels, Counter>,
    pub tokens_refingerprinted: Counter,
    pub status_records: Counter,
    pub db_errors: Counter,
    pub batch_rows: Histogram,
    pub write_seconds: Histogram,
    pub http_requests: Family<Labels, Counter>,
    pub overload_rejections: Counter,
    pub retention_deleted: Counter,
    pub spool_replayed: Counter,
    pub spool_torn_lines: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            events_received: Counter::default(),
            events_accepted: Counter::default(),
            events_rejected: Counter::default(),
            duplicates: Family::default(),
            tokens_refingerprinted: Counter::default(),
            status_records: Counter::default(),
            db_errors: Counter::default(),
            batch_rows: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            write_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            http_requests: Family::default(),
            overload_rejections: Counter::default(),
            retention_deleted: Counter::default(),
            spool_replayed: Counter::default(),
            spool_torn_lines: Counter::default(),
        }
    }
}

impl Metrics {
    pub fn record_ingest(&self, report: &IngestReport, pushed: &PushOutcome) {
        let rejected = report.rejected.len() as u64;
        let received = (report.accepted + report.duplicates) as u64 + rejected;
        self.events_received.inc_by(received);
        self.events_accepted.inc_by(pushed.accepted as u64);
        self.events_rejected.inc_by(rejected);
        self.count_duplicates("ingest", report.duplicates as u64);
    }

    pub fn count_duplicates(&self, stage: &'static str, n: u64) {
        if n > 0 {
            self.duplicates
                .get_or_create(&vec![("stage", stage.to_string())])
                .inc_by(n);
        }
    }

    pub fn count_http(&self, status: u16) {
        self.http_requests
            .get_or_create(&vec![("code", status.to_string())])
            .inc();
    }

    /// Builds the registry served on `/metrics`.
    pub fn registry(self: &Arc<Self>, live: LiveState) -> Registry {
        let mut r = Registry::default();
        let counters: [(&str, &str, &Counter); 10] = [
            (
                "collector_events_received",
                "Event lines received (valid or not, duplicates included).",
                &self.events_received,
            ),
            (
                "collector_events_accepted",
                "Events admitted to the queue.",
                &self.events_accepted,
            ),
            (
                "collector_events_rejected",
                "Event lines rejected as invalid (reported back per line).",
                &self.events_rejected,
            ),
            (
                "collector_tokens_refingerprinted",
                "Raw credentials replaced by a sha256 fingerprint at ingest.",
                &self.tokens_refingerprinted,
            ),
            (
                "collector_status_records",
                "Status records received from filters.",
                &self.status_records,
            ),
            (
                "collector_db_errors",
                "Failed store operations (batch writes and health pings).",
                &self.db_errors,
            ),
            (
                "collector_http_overload_rejections",
                "Requests refused with 503 because no concurrency slot freed up in time.",
                &self.overload_rejections,
            ),
            (
                "collector_retention_deleted_rows",
                "Rows deleted by the retention task.",
                &self.retention_deleted,
            ),
            (
                "collector_spool_replayed_events",
                "Events read back from the spool at start (acknowledged by an earlier run).",
                &self.spool_replayed,
            ),
            (
                "collector_spool_torn_lines",
                "Spool lines unreadable at start (a write cut short when the process died).",
                &self.spool_torn_lines,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "collector_events_duplicate",
            "Duplicate (source, seq) events ignored, by stage (ingest window or store unique key).",
            self.duplicates.clone(),
        );
        r.register(
            "collector_batch_rows",
            "Rows per batch written to the store.",
            self.batch_rows.clone(),
        );
        r.register(
            "collector_batch_write_seconds",
            "Latency of one batch write (transaction), successful or not.",
            self.write_seconds.clone(),
        );
        r.register(
            "collector_http_requests",
            "HTTP requests served on the main listener, by status code.",
            self.http_requests.clone(),
        );
        r.register_collector(Box::new(live));
        r
    }
}

/// Live state read at scrape time.
#[derive(Clone)]
pub struct LiveState {
    pub queue: Arc<Queue<Row>>,
    pub status: Arc<Mutex<StatusTracker>>,
    pub limiter: Arc<Limiter>,
    pub metrics: Arc<Metrics>,
    pub spool: Option<Arc<Spool>>,
    pub db: Arc<crate::health::DbHealth>,
}

impl fmt::Debug for LiveState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LiveState")
    }
}

/// Encodes one labelled family of constant samples read at scrape time.
pub(crate) fn encode_family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    metric: &impl EncodeMetric,
) -> fmt::Result {
    let m = encoder.encode_descriptor(name, help, None, metric_type)?;
    metric.encode(m)
}

impl Collector for LiveState {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let snap = self.queue.snapshot();
        let spool = self.spool.as_ref().map(|s| s.snapshot());
        let mut gauges: Vec<(&str, &str, f64)> = vec![
            (
                "collector_queue_bytes",
                "Bytes charged to the queue budget (waiting and in flight).",
                snap.bytes as f64,
            ),
            (
                "collector_queue_budget_bytes",
                "Configured queue byte budget.",
                snap.budget as f64,
            ),
            (
                "collector_queue_entries",
                "Events held in the queue (waiting and in flight).",
                snap.held() as f64,
            ),
            (
                "collector_queue_oldest_event_age_seconds",
                "Time the oldest waiting event has been queued (0 when empty).",
                snap.oldest_age.map_or(0.0, |d| d.as_secs_f64()),
            ),
            (
                "collector_database_up",
                "1 when the last database ping succeeded and the last batch write did not fail, as /health's database check.",
                if self.db.up() { 1.0 } else { 0.0 },
            ),
            (
                "collector_http_in_flight_requests",
                "Requests holding a concurrency slot.",
                self.limiter.in_use() as f64,
            ),
        ];
        if let Some(spool) = &spool {
            gauges.extend([
                (
                    "collector_spool_bytes",
                    "Bytes in spool segment files (events not yet settled, plus segment slack).",
                    spool.bytes as f64,
                ),
                (
                    "collector_spool_segments",
                    "Spool segment files.",
                    spool.segments as f64,
                ),
            ]);
        }
        for (name, help, value) in gauges {
            encode_one(
                &mut encoder,
                name,
                help,
                MetricType::Gauge,
                &ConstGauge::new(value),
            )?;
        }
        if let Some(spool) = &spool {
            encode_one(
                &mut encoder,
                "collector_spool_write_errors",
                "Failed spool appends (each refused an ingest request with 503).",
                MetricType::Counter,
                &ConstCounter::new(spool.write_errors),
            )?;
        }
        encode_one(
            &mut encoder,
            "collector_events_persisted",
            "Events written to the store (inserted or already present).",
            MetricType::Counter,
            &ConstCounter::new(snap.counters.persisted),
        )?;
        let c = snap.counters;
        let mut drops: Vec<(&str, String, u64)> = vec![
            ("collector", "queue_full".into(), c.dropped_queue_full),
            ("collector", "shutdown".into(), c.dropped_shutdown),
            (
                "collector",
                "invalid".into(),
                self.metrics.events_rejected.get(),
            ),
        ];
        let tracker = self.status.lock().unwrap_or_else(|p| p.into_inner());
        drops.extend(tracker.totals().into_iter().map(|(r, v)| ("filter", r, v)));
        drop(tracker);
        let samples = drops.into_iter().map(|(origin, reason, value)| {
            let labels = vec![("origin", origin.to_string()), ("reason", reason)];
            (labels, ConstCounter::new(value))
        });
        encode_family(
            &mut encoder,
            "collector_dropped_events",
            "Events lost, by where (collector or filter, the latter from status records) and why.",
            MetricType::Counter,
            samples,
        )
    }
}

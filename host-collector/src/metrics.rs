//! Prometheus rendering: turns what the layers emitted into `internal_events::Telemetry`
//! (running totals, histograms, database outcomes) and what its probes read at scrape time
//! (queue, spool, concurrency, filter-reported drops) into the `/metrics` registry. It knows
//! metric names, not layers: it imports nothing but `internal_events`.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::internal_events::{Labels, Telemetry};

/// Builds the registry served on `/metrics` from what the layers emitted into `telemetry`;
/// the live figures are read from its probes at scrape time.
pub fn registry(telemetry: &Arc<Telemetry>) -> Registry {
    let t = telemetry;
    let mut r = Registry::default();
    let counters: [(&str, &str, &Counter); 12] = [
        (
            "collector_events_received",
            "Event lines received (valid or not, duplicates included).",
            &t.events_received,
        ),
        (
            "collector_events_accepted",
            "Events admitted to the queue.",
            &t.events_accepted,
        ),
        (
            "collector_events_rejected",
            "Event lines rejected as invalid (reported back per line).",
            &t.events_rejected,
        ),
        (
            "collector_tokens_refingerprinted",
            "Raw credentials replaced by a sha256 fingerprint at ingest.",
            &t.tokens_refingerprinted,
        ),
        (
            "collector_fields_truncated",
            "Fields of stored events cut to their column's limit or kept out of an invalid id column (named in the event's `truncated`).",
            &t.fields_truncated,
        ),
        (
            "collector_status_records",
            "Status records received from filters.",
            &t.status_records,
        ),
        (
            "collector_db_errors",
            "Failed store operations (batch writes and health pings).",
            &t.db_errors,
        ),
        (
            "collector_dead_letters",
            "Events the database refused for good, written to mcp_dead_letters with the refusal instead of the log table.",
            &t.dead_letters,
        ),
        (
            "collector_http_overload_rejections",
            "Requests refused with 503 because no concurrency slot freed up in time.",
            &t.overload_rejections,
        ),
        (
            "collector_retention_deleted_rows",
            "Rows deleted by the retention task.",
            &t.retention_deleted,
        ),
        (
            "collector_spool_replayed_events",
            "Events read back from the spool at start (acknowledged by an earlier run).",
            &t.spool_replayed,
        ),
        (
            "collector_spool_torn_lines",
            "Spool lines unreadable at start (a write cut short when the process died).",
            &t.spool_torn_lines,
        ),
    ];
    for (name, help, counter) in counters {
        r.register(name, help, counter.clone());
    }
    r.register(
        "collector_events_duplicate",
        "Duplicate (source, seq) events ignored, by stage (ingest window or store unique key).",
        t.duplicates.clone(),
    );
    r.register(
        "collector_batch_rows",
        "Rows per batch written to the store.",
        t.batch_rows.clone(),
    );
    r.register(
        "collector_batch_write_seconds",
        "Latency of one batch write (transaction), successful or not.",
        t.write_seconds.clone(),
    );
    r.register(
        "collector_http_requests",
        "HTTP requests served on the main listener, by status code.",
        t.http_requests.clone(),
    );
    r.register_collector(Box::new(Live(t.clone())));
    r
}

/// The scrape-time part: live readings and the figures derived from the totals.
#[derive(Clone)]
struct Live(Arc<Telemetry>);

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Live")
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

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let t = &self.0;
        let live = t.read_live();
        let q = live.buffer;
        let mut gauges: Vec<(&str, &str, f64)> = vec![
            (
                "collector_queue_bytes",
                "Bytes charged to the queue budget (waiting and in flight).",
                q.bytes as f64,
            ),
            (
                "collector_queue_budget_bytes",
                "Configured queue byte budget.",
                q.budget as f64,
            ),
            (
                "collector_queue_entries",
                "Events held in the queue (waiting and in flight).",
                q.entries as f64,
            ),
            (
                "collector_queue_oldest_event_age_seconds",
                "Time the oldest waiting event has been queued (0 when empty).",
                q.oldest_age.map_or(0.0, |d| d.as_secs_f64()),
            ),
            (
                "collector_database_up",
                "1 when the last database ping succeeded and the last batch write did not fail, as /health's database check.",
                if t.db_outcomes().up() { 1.0 } else { 0.0 },
            ),
            (
                "collector_http_in_flight_requests",
                "Requests holding a concurrency slot.",
                live.in_flight_requests as f64,
            ),
        ];
        if let Some(spool) = &live.spool {
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
        if let Some(spool) = &live.spool {
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
            &ConstCounter::new(q.persisted),
        )?;
        let mut drops: Vec<(&str, String, u64)> = vec![
            ("collector", "queue_full".into(), q.dropped_queue_full),
            ("collector", "shutdown".into(), q.dropped_shutdown),
            ("collector", "invalid".into(), t.events_rejected.get()),
        ];
        drops.extend(live.filter_drops.into_iter().map(|(r, v)| ("filter", r, v)));
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

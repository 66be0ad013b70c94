//! The collector's own pipeline figures as OTLP metrics, read from the same registry the
//! Prometheus listener renders (`internal_events::Telemetry`: its totals and its probes' live
//! readings) plus the exporter's stats, so both backends show one truth.

use std::sync::Arc;

use opentelemetry_proto::tonic::metrics::v1::Metric;

use super::aggregate::{counter, gauge};
use super::stats::{OtlpStats, Signal};
use crate::internal_events::Telemetry;

/// Where the pipeline figures come from.
pub type PipelineSource = Arc<Telemetry>;

fn one(v: u64) -> Vec<(Vec<(&'static str, String)>, u64)> {
    vec![(Vec::new(), v)]
}

pub fn metrics(source: &PipelineSource, stats: &OtlpStats, start: u64, now: u64) -> Vec<Metric> {
    let live = source.read_live();
    let c = live.buffer;
    let mut drops = vec![
        (
            vec![
                ("origin", "collector".into()),
                ("reason", "queue_full".into()),
            ],
            c.dropped_queue_full,
        ),
        (
            vec![
                ("origin", "collector".into()),
                ("reason", "shutdown".into()),
            ],
            c.dropped_shutdown,
        ),
        (
            vec![("origin", "collector".into()), ("reason", "invalid".into())],
            source.events_rejected.get(),
        ),
    ];
    drops.extend(
        live.filter_drops
            .into_iter()
            .map(|(reason, v)| (vec![("origin", "filter".into()), ("reason", reason)], v)),
    );
    let mut otlp_drops = vec![(
        vec![("signal", "events".into()), ("reason", "queue_full".into())],
        stats
            .events_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
    )];
    let mut exported = Vec::new();
    for (signal, name) in [(Signal::Spans, "spans"), (Signal::Metrics, "metrics")] {
        let s = stats.totals(signal);
        exported.push((vec![("signal", name.to_string())], s.exported));
        otlp_drops.extend(s.dropped.into_iter().map(|(reason, v)| {
            (
                vec![("signal", name.to_string()), ("reason", reason.to_string())],
                v,
            )
        }));
    }
    vec![
        counter(
            "collector.events.accepted",
            "Events admitted to the collector's queue.",
            one(source.events_accepted.get()),
            start,
            now,
        ),
        counter(
            "collector.events.persisted",
            "Events written to the store.",
            one(c.persisted),
            start,
            now,
        ),
        counter(
            "collector.events.dropped",
            "Events lost, by origin (collector or filter) and reason.",
            drops,
            start,
            now,
        ),
        gauge(
            "collector.queue.bytes",
            "Bytes charged to the queue budget.",
            "By",
            c.bytes as f64,
            now,
        ),
        gauge(
            "collector.queue.budget",
            "The queue's byte budget.",
            "By",
            c.budget as f64,
            now,
        ),
        counter(
            "collector.otlp.exported",
            "Spans and metric data points accepted by the OTLP endpoint.",
            exported,
            start,
            now,
        ),
        counter(
            "collector.otlp.dropped",
            "Telemetry the exporter dropped, by signal and reason.",
            otlp_drops,
            start,
            now,
        ),
    ]
}

//! OTLP export, off unless `--otlp-endpoint` is set: the filter's `response` events become
//! OpenTelemetry spans (`span`) and MCP metrics (`aggregate`, plus the pipeline's own figures
//! from `pipeline`), sent as OTLP/HTTP protobuf (`sender`).
//!
//! Ingest only offers each accepted `response` event to a bounded channel (`Hook`, a
//! `try_send` that never waits); the `batcher` task does the rest and hands encoded requests
//! to the `sender` task through a second bounded channel. A slow or dead endpoint fills that
//! queue and batches are dropped and counted (`stats`, by signal and reason); neither ingest
//! nor the database path ever waits on export.

pub mod aggregate;
pub mod batcher;
pub mod pipeline;
pub mod sample;
pub mod sender;
pub mod span;
pub mod stats;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::ingest::{EventOutcome, IngestObserver, IngestedEvent};
use crate::metrics::encode_family;
use batcher::{Batcher, BatcherConfig, Item};
use pipeline::PipelineSource;
use sample::Sampler;
use sender::{Endpoint, Sender};
use stats::{Drop, OtlpStats, Signal};

/// How long a batch's exchange span waits for elements that never answer.
const BATCH_LINGER: Duration = Duration::from_secs(10);
/// Batches whose exchange span is being assembled at once.
const MAX_OPEN_BATCHES: usize = 10_000;

pub struct OtlpSettings {
    pub endpoint: Endpoint,
    pub service_name: String,
    pub sampling_ratio: f64,
    pub queue_events: usize,
    pub max_batch_spans: usize,
    pub max_pending_batches: usize,
    pub flush_interval: Duration,
    pub export_timeout: Duration,
    pub metrics_interval: Duration,
    pub max_series: usize,
    pub max_sessions: usize,
}

/// The ingest observer: offers accepted `response` events to the exporter, never waits.
pub struct Hook {
    events: mpsc::Sender<Item>,
    stats: Arc<OtlpStats>,
}

impl IngestObserver for Hook {
    fn on_event(&self, event: &IngestedEvent, outcome: EventOutcome) {
        if outcome != EventOutcome::Queued || event.response.is_none() {
            return;
        }
        let end_ns = event
            .row
            .created_at
            .and_utc()
            .timestamp_nanos_opt()
            .map_or(0, |n| n.max(0) as u64);
        let item = Item {
            log: event.row.log.clone(),
            end_ns,
        };
        match self.events.try_send(item) {
            Ok(()) => self.stats.events_enqueued.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.stats.events_dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The running exporter.
pub struct Exporter {
    pub stats: Arc<OtlpStats>,
    stop: watch::Sender<bool>,
    batcher: JoinHandle<()>,
    sender: JoinHandle<()>,
    export_timeout: Duration,
}

pub fn resource(service_name: &str) -> Resource {
    Resource {
        attributes: vec![
            span::kv("service.name", service_name),
            span::kv("service.version", env!("CARGO_PKG_VERSION")),
            span::kv("telemetry.sdk.name", "host-collector"),
        ],
        ..Default::default()
    }
}

/// Starts both tasks; returns the exporter and the hook to add to ingest.
pub fn start(settings: OtlpSettings, pipeline: Option<PipelineSource>) -> (Exporter, Arc<Hook>) {
    let stats = Arc::new(OtlpStats::default());
    let (events_tx, events_rx) = mpsc::channel(settings.queue_events.max(1));
    let (jobs_tx, jobs_rx) = mpsc::channel(settings.max_pending_batches.max(1));
    let (stop, stop_rx) = watch::channel(false);
    let batcher = Batcher::new(
        stats.clone(),
        Sampler::new(settings.sampling_ratio),
        resource(&settings.service_name),
        InstrumentationScope {
            name: "host-collector".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        },
        pipeline,
        BatcherConfig {
            max_batch_spans: settings.max_batch_spans.max(1),
            flush_interval: settings.flush_interval,
            metrics_interval: settings.metrics_interval,
            batch_linger: BATCH_LINGER,
            max_open_batches: MAX_OPEN_BATCHES,
            max_series: settings.max_series,
            max_sessions: settings.max_sessions,
        },
    );
    let batcher = tokio::spawn(batcher.run(events_rx, jobs_tx, stop_rx));
    let sender = Sender::new(settings.endpoint, settings.export_timeout, stats.clone());
    let sender = tokio::spawn(sender.run(jobs_rx));
    let hook = Arc::new(Hook {
        events: events_tx.clone(),
        stats: stats.clone(),
    });
    let exporter = Exporter {
        stats,
        stop,
        batcher,
        sender,
        export_timeout: settings.export_timeout,
    };
    (exporter, hook)
}

impl Exporter {
    /// Flushes what was handed over and waits for the last requests, bounded by a little
    /// more than one export timeout; what is still queued then counts as `shutdown`.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.batcher.await;
        let mut sender = self.sender;
        let deadline = self.export_timeout + Duration::from_secs(1);
        if tokio::time::timeout(deadline, &mut sender).await.is_err() {
            sender.abort();
            let left = self.stats.spans_pending.swap(0, Ordering::Relaxed);
            self.stats.dropped(Signal::Spans, Drop::Shutdown, left);
        }
        let spans = self.stats.totals(Signal::Spans);
        tracing::info!(
            ev = "otlp",
            msg = "exporter stopped",
            spans_exported = spans.exported,
            spans_dropped = self.stats.dropped_total(Signal::Spans),
            events_dropped = self.stats.events_dropped.load(Ordering::Relaxed)
        );
    }
}

/// `collector_otlp_*` on the Prometheus listener.
pub struct OtlpCollector {
    pub stats: Arc<OtlpStats>,
    pub events: mpsc::Sender<Item>,
}

impl OtlpCollector {
    pub fn new(exporter: &Exporter, hook: &Hook) -> Self {
        OtlpCollector {
            stats: exporter.stats.clone(),
            events: hook.events.clone(),
        }
    }
}

impl fmt::Debug for OtlpCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtlpCollector")
    }
}

impl Collector for OtlpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let s = &self.stats;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let events = [
            ("enqueued", load(&s.events_enqueued)),
            ("sampled_out", load(&s.sampled_out)),
            ("untraced", load(&s.untraced)),
        ];
        encode_family(
            &mut encoder,
            "collector_otlp_events",
            "response events offered to the OTLP exporter: enqueued, then not sampled or without trace ids.",
            MetricType::Counter,
            events
                .into_iter()
                .map(|(r, v)| (vec![("result", r.to_string())], ConstCounter::new(v))),
        )?;
        let signals = [(Signal::Spans, "spans"), (Signal::Metrics, "metrics")];
        let snaps: Vec<_> = signals
            .iter()
            .map(|(sig, name)| (*name, s.totals(*sig)))
            .collect();
        encode_family(
            &mut encoder,
            "collector_otlp_exported",
            "Spans and metric data points accepted by the OTLP endpoint.",
            MetricType::Counter,
            snaps.iter().map(|(name, snap)| {
                (
                    vec![("signal", name.to_string())],
                    ConstCounter::new(snap.exported),
                )
            }),
        )?;
        encode_family(
            &mut encoder,
            "collector_otlp_requests",
            "OTLP export requests by signal and result.",
            MetricType::Counter,
            snaps.iter().flat_map(|(name, snap)| {
                [("ok", snap.requests_ok), ("failed", snap.requests_failed)].map(|(r, v)| {
                    (
                        vec![("signal", name.to_string()), ("result", r.to_string())],
                        ConstCounter::new(v),
                    )
                })
            }),
        )?;
        let mut drops = vec![(
            vec![
                ("signal", "events".to_string()),
                ("reason", "queue_full".to_string()),
            ],
            ConstCounter::new(load(&s.events_dropped)),
        )];
        for (name, snap) in &snaps {
            drops.extend(snap.dropped.iter().map(|(reason, v)| {
                (
                    vec![("signal", name.to_string()), ("reason", reason.to_string())],
                    ConstCounter::new(*v),
                )
            }));
        }
        encode_family(
            &mut encoder,
            "collector_otlp_dropped",
            "Telemetry the OTLP exporter dropped: events (ingest's channel full), spans or metric points (sender queue full, timeout, unreachable, rejected, shutdown).",
            MetricType::Counter,
            drops,
        )?;
        let capacity = self.events.max_capacity();
        let queued = capacity - self.events.capacity();
        for (name, help, value) in [
            (
                "collector_otlp_queue_events",
                "Events waiting in the channel from ingest to the OTLP exporter.",
                queued,
            ),
            (
                "collector_otlp_queue_capacity_events",
                "Capacity of that channel (--otlp-queue-events).",
                capacity,
            ),
        ] {
            encode_family(
                &mut encoder,
                name,
                help,
                MetricType::Gauge,
                [(Vec::new(), ConstGauge::new(value as i64))],
            )?;
        }
        Ok(())
    }
}

//! The export task: takes `response` events from the bounded channel ingest feeds, turns the
//! sampled ones into spans, aggregates every one into the MCP histograms, and hands encoded
//! requests to the sender through a second bounded channel: spans when a batch is full or
//! the flush interval passes, metrics every metrics interval. When the sender's queue is
//! full the batch is dropped and counted (`queue_full`); nothing here ever waits on the
//! network, so this task keeps draining ingest's channel even while the endpoint is dead.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, Metric, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::aggregate::McpMetrics;
use super::pipeline::{self, PipelineSource};
use super::sample::Sampler;
use super::sender::Job;
use super::span::{element_span, BatchAssembler, Ids, ResponseEvent, Times};
use super::stats::{Drop, OtlpStats, Signal};

/// A `response` event as ingest hands it over: its stored JSON and its time.
pub struct Item {
    pub log: String,
    /// The event's `ts`, Unix nanoseconds.
    pub end_ns: u64,
}

pub struct BatcherConfig {
    pub max_batch_spans: usize,
    pub flush_interval: Duration,
    pub metrics_interval: Duration,
    pub batch_linger: Duration,
    pub max_open_batches: usize,
    pub max_series: usize,
    pub max_sessions: usize,
}

pub struct Batcher {
    pub stats: Arc<OtlpStats>,
    pub sampler: Sampler,
    pub resource: Resource,
    pub scope: InstrumentationScope,
    pub pipeline: Option<PipelineSource>,
    pub config: BatcherConfig,
    spans: Vec<Span>,
    assembler: BatchAssembler,
    mcp: McpMetrics,
    start_ns: u64,
}

pub fn now_ns() -> u64 {
    chrono::Utc::now()
        .timestamp_nanos_opt()
        .map_or(0, |n| n.max(0) as u64)
}

impl Batcher {
    pub fn new(
        stats: Arc<OtlpStats>,
        sampler: Sampler,
        resource: Resource,
        scope: InstrumentationScope,
        pipeline: Option<PipelineSource>,
        config: BatcherConfig,
    ) -> Self {
        Batcher {
            assembler: BatchAssembler::new(config.max_open_batches, config.batch_linger),
            mcp: McpMetrics::new(config.max_series, config.max_sessions),
            spans: Vec::with_capacity(config.max_batch_spans),
            start_ns: now_ns(),
            stats,
            sampler,
            resource,
            scope,
            pipeline,
            config,
        }
    }

    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Item>,
        jobs: mpsc::Sender<Job>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut flush = tokio::time::interval(self.config.flush_interval);
        flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut export_metrics = tokio::time::interval_at(
            Instant::now() + self.config.metrics_interval,
            self.config.metrics_interval,
        );
        export_metrics.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                item = events.recv() => match item {
                    Some(item) => self.add(item, &jobs),
                    None => break,
                },
                _ = flush.tick() => {
                    let expired = self.assembler.expire(Instant::now());
                    self.spans.extend(expired);
                    self.flush(&jobs);
                }
                _ = export_metrics.tick() => self.send_metrics(&jobs),
            }
        }
        // Stopping: what ingest already handed over is exported, open batches included.
        while let Ok(item) = events.try_recv() {
            self.add(item, &jobs);
        }
        let open = self.assembler.drain();
        self.spans.extend(open);
        self.flush(&jobs);
        self.send_metrics(&jobs);
    }

    fn add(&mut self, item: Item, jobs: &mpsc::Sender<Job>) {
        let Ok(event) = serde_json::from_str::<ResponseEvent>(&item.log) else {
            self.stats.untraced.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let times = Times::of(&event, item.end_ns);
        self.mcp.record(&event, times);
        let Some(ids) = Ids::of(&event) else {
            self.stats.untraced.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !self.sampler.keeps(&ids.trace_id) {
            self.stats.sampled_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.spans.push(element_span(&event, &ids, times));
        if let Some(exchange) = self.assembler.element(&event, &ids, times, Instant::now()) {
            self.spans.push(exchange);
        }
        if self.spans.len() >= self.config.max_batch_spans {
            self.flush(jobs);
        }
    }

    /// Encodes the current spans and queues them for the sender, or drops them if it is full.
    fn flush(&mut self, jobs: &mpsc::Sender<Job>) {
        if self.spans.is_empty() {
            return;
        }
        let spans = std::mem::replace(
            &mut self.spans,
            Vec::with_capacity(self.config.max_batch_spans),
        );
        let n = spans.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(self.scope.clone()),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        self.stats.spans_pending.fetch_add(n, Ordering::Relaxed);
        let job = Job::Spans {
            body: request.encode_to_vec(),
            spans: n,
        };
        if let Err(e) = jobs.try_send(job) {
            self.stats.spans_pending.fetch_sub(n, Ordering::Relaxed);
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => Drop::QueueFull,
                mpsc::error::TrySendError::Closed(_) => Drop::Shutdown,
            };
            self.stats.dropped(Signal::Spans, reason, n);
        }
    }

    pub fn metrics(&self) -> Vec<Metric> {
        let now = now_ns();
        let mut metrics = self.mcp.metrics(self.start_ns, now);
        if let Some(pipeline) = &self.pipeline {
            metrics.extend(pipeline::metrics(pipeline, &self.stats, self.start_ns, now));
        }
        metrics
    }

    fn send_metrics(&mut self, jobs: &mpsc::Sender<Job>) {
        let metrics = self.metrics();
        let points = metrics.iter().map(points).sum::<usize>() as u64;
        let request = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(self.scope.clone()),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let job = Job::Metrics {
            body: request.encode_to_vec(),
            points,
        };
        if let Err(e) = jobs.try_send(job) {
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => Drop::QueueFull,
                mpsc::error::TrySendError::Closed(_) => Drop::Shutdown,
            };
            self.stats.dropped(Signal::Metrics, reason, points);
        }
    }
}

fn points(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Gauge(g)) => g.data_points.len(),
        _ => 0,
    }
}

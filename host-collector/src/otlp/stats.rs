//! The export pipeline's own counters: what was exported, sampled out and dropped, by signal
//! and reason. Plain atomics, shared by the ingest hook and both export tasks; read at scrape
//! time (Prometheus) and at each metrics export (OTLP).

use std::sync::atomic::{AtomicU64, Ordering};

/// What was lost, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// A finished batch found the sender's queue full (the endpoint is slow or dead).
    QueueFull,
    /// The export request did not complete within `--otlp-export-timeout`.
    Timeout,
    /// No connection could be made, or it broke.
    Unreachable,
    /// The endpoint answered with an error status (or rejected part of the request).
    Rejected,
    /// Still queued when the collector stopped.
    Shutdown,
}

pub const REASONS: [(Drop, &str); 5] = [
    (Drop::QueueFull, "queue_full"),
    (Drop::Timeout, "timeout"),
    (Drop::Unreachable, "unreachable"),
    (Drop::Rejected, "rejected"),
    (Drop::Shutdown, "shutdown"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Spans,
    Metrics,
}

#[derive(Debug, Default)]
struct PerSignal {
    /// Spans, or metric data points.
    exported: AtomicU64,
    requests_ok: AtomicU64,
    requests_failed: AtomicU64,
    dropped: [AtomicU64; 5],
}

#[derive(Debug, Default)]
pub struct OtlpStats {
    /// `response` events handed to the exporter.
    pub events_enqueued: AtomicU64,
    /// Events refused because the channel from ingest was full: they reached neither spans
    /// nor metrics.
    pub events_dropped: AtomicU64,
    /// Spans handed to the sender and not yet delivered or dropped (counted as `shutdown`
    /// if the collector stops before they are).
    pub spans_pending: AtomicU64,
    /// Events whose trace was not sampled (metrics still see them).
    pub sampled_out: AtomicU64,
    /// Events that could not become a span (no trace or span id).
    pub untraced: AtomicU64,
    spans: PerSignal,
    metrics: PerSignal,
}

fn index(reason: Drop) -> usize {
    REASONS.iter().position(|(r, _)| *r == reason).unwrap_or(0)
}

/// One signal's running totals at one moment, for the encoders (Prometheus and OTLP).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalTotals {
    pub exported: u64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub dropped: Vec<(&'static str, u64)>,
}

impl OtlpStats {
    fn signal(&self, signal: Signal) -> &PerSignal {
        match signal {
            Signal::Spans => &self.spans,
            Signal::Metrics => &self.metrics,
        }
    }

    pub fn dropped(&self, signal: Signal, reason: Drop, n: u64) {
        self.signal(signal).dropped[index(reason)].fetch_add(n, Ordering::Relaxed);
    }

    pub fn exported(&self, signal: Signal, n: u64) {
        let s = self.signal(signal);
        s.exported.fetch_add(n, Ordering::Relaxed);
        s.requests_ok.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed_request(&self, signal: Signal) {
        self.signal(signal)
            .requests_failed
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn totals(&self, signal: Signal) -> SignalTotals {
        let s = self.signal(signal);
        SignalTotals {
            exported: s.exported.load(Ordering::Relaxed),
            requests_ok: s.requests_ok.load(Ordering::Relaxed),
            requests_failed: s.requests_failed.load(Ordering::Relaxed),
            dropped: REASONS
                .iter()
                .map(|(r, name)| (*name, s.dropped[index(*r)].load(Ordering::Relaxed)))
                .collect(),
        }
    }

    pub fn dropped_total(&self, signal: Signal) -> u64 {
        self.totals(signal).dropped.iter().map(|(_, n)| n).sum()
    }
}

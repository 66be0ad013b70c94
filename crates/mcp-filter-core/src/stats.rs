//! The filter's own Envoy stats: which values it reports, and the deltas to apply. Envoy sums
//! a stat across the worker VMs that define it, so every VM reports increments of its own
//! values (gauges too), never absolute values that would overwrite the other workers'.

/// Whether Envoy shows the stat as a counter or a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    Counter,
    Gauge,
}

/// Names as defined with `proxy_define_metric` (Envoy prefixes them with `wasmcustom.`).
pub const STATS: &[(&str, StatKind)] = &[
    ("mcp_filter_events_emitted", StatKind::Counter),
    ("mcp_filter_events_shipped", StatKind::Counter),
    ("mcp_filter_events_dropped_buffer_full", StatKind::Counter),
    (
        "mcp_filter_events_dropped_callout_failed",
        StatKind::Counter,
    ),
    (
        "mcp_filter_events_dropped_rejected_by_collector",
        StatKind::Counter,
    ),
    ("mcp_filter_internal_errors", StatKind::Counter),
    ("mcp_filter_batches_in_flight", StatKind::Gauge),
    ("mcp_filter_buffer_bytes", StatKind::Gauge),
    ("mcp_filter_last_flush_latency_ms", StatKind::Gauge),
    ("mcp_filter_cas_retries", StatKind::Counter),
    ("mcp_filter_cas_lost_updates", StatKind::Counter),
    ("mcp_filter_shared_store_failures", StatKind::Counter),
    ("mcp_filter_upstreams_untracked", StatKind::Counter),
    ("mcp_filter_legacy_pending_evicted", StatKind::Counter),
    ("mcp_filter_legacy_pending_lost", StatKind::Counter),
];

/// One VM's values, in the order of `STATS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatValues(pub [i64; STATS.len()]);

/// Per-upstream stat names: `mcp_filter_upstream.<instance>.<what>`.
pub fn upstream_stat(instance: &str, what: &str) -> String {
    format!("mcp_filter_upstream.{instance}.{what}")
}

impl StatValues {
    /// `(index into STATS, increment)` for every value that changed since `previous`.
    pub fn deltas(&self, previous: &StatValues) -> Vec<(usize, i64)> {
        self.0
            .iter()
            .zip(previous.0.iter())
            .enumerate()
            .filter(|(_, (now, before))| now != before)
            .map(|(i, (now, before))| (i, now - before))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_report_changes_only_with_sign() {
        let before = StatValues([1, 0, 0, 0, 0, 0, 1, 500, 20, 0, 0, 0, 0, 0, 0]);
        let after = StatValues([4, 2, 0, 0, 0, 0, 0, 700, 20, 0, 0, 0, 0, 0, 3]);
        assert_eq!(
            after.deltas(&before),
            vec![(0, 3), (1, 2), (6, -1), (7, 200), (14, 3)]
        );
        assert!(after.deltas(&after).is_empty());
        assert_eq!(STATS.len(), after.0.len());
    }
}

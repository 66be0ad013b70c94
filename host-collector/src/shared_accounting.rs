//! Loss accounting answered from the store, so it is right whichever of several collectors
//! answers (`GET /v1/accounting?from=store`). Each collector merges the status its filters
//! report to it (`emitted`, drops by reason: `accounting`'s per-source view) into the store's
//! `mcp_source_status` with `max`, so collectors writing in any order agree; the report counts
//! each source's events from the rows themselves (stored and dead-lettered: distinct seqs,
//! the unique key), whichever collector wrote them.
//!
//! Exact while retention has not deleted a source's rows (then its `unaccounted` grows by
//! what was deleted). Each request counts the tables: an on-demand view, not a dashboard feed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::accounting::{Accounting, OtherReport, SourceCounts, SourceReport, Totals};
use crate::store::{SourceStatus, SourceTotals, Store, StoreError, EMITTED_REASON};

/// `GET /v1/accounting?from=store`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreAccountingReport {
    pub from: &'static str,
    pub sources: Vec<SourceReport>,
    pub totals: Totals,
}

/// Builds the report from what the store holds.
pub async fn report(store: &dyn Store) -> Result<StoreAccountingReport, StoreError> {
    let sources: Vec<SourceReport> = store
        .source_totals()
        .await?
        .into_iter()
        .map(source_report)
        .collect();
    let totals = Totals::of(&sources, &OtherReport::default());
    Ok(StoreAccountingReport {
        from: "store",
        sources,
        totals,
    })
}

fn source_report(t: SourceTotals) -> SourceReport {
    let emitted = t.status.get(EMITTED_REASON).copied();
    let filter_dropped: BTreeMap<String, u64> = t
        .status
        .into_iter()
        .filter(|(reason, _)| reason != EMITTED_REASON)
        .collect();
    SourceReport::derive(SourceCounts {
        source: t.source,
        events: t.stored.saturating_add(t.dead_letters),
        highest_seq: t.highest_seq,
        // Ignored duplicates are counted by each collector at ingest; the store only knows
        // it never stored one.
        duplicates: 0,
        dead_letters: t.dead_letters,
        filter_dropped,
        emitted,
    })
}

/// This collector's view of its sources' status, as store rows.
fn statuses(accounting: &Accounting) -> Vec<SourceStatus> {
    accounting
        .report()
        .sources
        .into_iter()
        .flat_map(|s| {
            let source = s.source;
            let emitted = s.emitted.map(|e| (EMITTED_REASON.to_string(), e));
            s.filter_dropped
                .into_iter()
                .chain(emitted)
                .map(move |(reason, value)| SourceStatus {
                    source: source.clone(),
                    reason,
                    value,
                })
        })
        .collect()
}

/// Merges this collector's status view into the store every `interval` (when it changed) and
/// once more at shutdown.
pub async fn run_flusher(
    store: Arc<dyn Store>,
    accounting: Arc<Accounting>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut written = Vec::new();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let now = statuses(&accounting);
        if now != written {
            match store.merge_source_status(&now).await {
                Ok(()) => written = now,
                Err(e) => tracing::warn!(
                    ev = "accounting",
                    msg = "cannot merge source status into the store; will retry",
                    error = %e
                ),
            }
        }
        if stopping {
            return;
        }
    }
}

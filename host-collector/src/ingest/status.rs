//! Filter-reported drop counters from status records. Counters arrive cumulative per source,
//! so lost or repeated batches cannot double count: we keep the maximum seen per
//! (source, reason) and add only increases to the totals. Label cardinality is bounded.
//! The reason folding and the max-merge are shared with the per-source loss accounting.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::wire::StatusRecord;

/// Reason label for reasons beyond the tracked limit.
pub const OTHER_REASON: &str = "other";

/// Bounds the set of drop reasons: the first `max` distinct reasons keep their name, later
/// ones fold into `other` (summed, since sums of cumulative counters are cumulative too).
pub struct ReasonFolder {
    max: usize,
    known: BTreeSet<String>,
}

impl ReasonFolder {
    pub fn new(max: usize) -> Self {
        ReasonFolder {
            max: max.max(1),
            known: BTreeSet::new(),
        }
    }

    pub fn fold(&mut self, dropped: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        let mut folded = BTreeMap::new();
        for (reason, value) in dropped {
            let key = if self.admit(reason) {
                reason.clone()
            } else {
                OTHER_REASON.to_string()
            };
            // Saturating: status counters come off the wire and may be forged near u64::MAX.
            let total: &mut u64 = folded.entry(key).or_insert(0);
            *total = total.saturating_add(*value);
        }
        folded
    }

    fn admit(&mut self, reason: &str) -> bool {
        if self.known.contains(reason) {
            return true;
        }
        if self.known.len() >= self.max {
            return false;
        }
        self.known.insert(reason.to_string());
        true
    }
}

/// Merges cumulative counters into the maxima seen so far and returns the increases, so a
/// lost, repeated or reordered report never double counts.
pub fn merge_max(
    seen: &mut BTreeMap<String, u64>,
    reported: BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    let mut increases = Vec::new();
    for (reason, value) in reported {
        let previous = seen.entry(reason.clone()).or_insert(0);
        if value > *previous {
            increases.push((reason, value - *previous));
            *previous = value;
        }
    }
    increases
}

pub struct StatusTracker {
    max_sources: usize,
    reasons: ReasonFolder,
    sources: HashMap<String, (u64, BTreeMap<String, u64>)>,
    totals: BTreeMap<String, u64>,
    tick: u64,
}

impl StatusTracker {
    pub fn new(max_sources: usize, max_reasons: usize) -> Self {
        StatusTracker {
            max_sources: max_sources.max(1),
            reasons: ReasonFolder::new(max_reasons),
            sources: HashMap::new(),
            totals: BTreeMap::new(),
            tick: 0,
        }
    }

    pub fn record(&mut self, status: &StatusRecord) {
        self.tick += 1;
        let folded = self.reasons.fold(&status.dropped);
        if !self.sources.contains_key(&status.source) && self.sources.len() >= self.max_sources {
            // A forgotten source that reports again starts from zero and may count twice;
            // sources are VM lifetimes, so this is rare and bounded by the cap.
            if let Some(k) = self
                .sources
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(k, _)| k.clone())
            {
                self.sources.remove(&k);
            }
        }
        let (last_seen, seen) = self
            .sources
            .entry(status.source.clone())
            .or_insert_with(|| (0, BTreeMap::new()));
        *last_seen = self.tick;
        for (reason, increase) in merge_max(seen, folded) {
            let total = self.totals.entry(reason).or_insert(0);
            *total = total.saturating_add(increase);
        }
    }

    /// Total filter-reported drops by reason.
    pub fn totals(&self) -> Vec<(String, u64)> {
        self.totals.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// The filter-reported drop totals, for `/metrics` and the OTLP pipeline metrics.
impl crate::internal_events::Probe for std::sync::Mutex<StatusTracker> {
    fn read(&self, readings: &mut crate::internal_events::LiveReadings) {
        readings.filter_drops = self.lock().unwrap_or_else(|p| p.into_inner()).totals();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(source: &str, pairs: &[(&str, u64)]) -> StatusRecord {
        StatusRecord {
            source: source.into(),
            dropped: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            emitted: None,
        }
    }

    #[test]
    fn cumulative_counters_take_the_max() {
        let mut t = StatusTracker::new(10, 10);
        t.record(&status("a", &[("buffer_full", 3)]));
        t.record(&status("a", &[("buffer_full", 3)]));
        t.record(&status("a", &[("buffer_full", 5)]));
        t.record(&status("a", &[("buffer_full", 4)]));
        t.record(&status("b", &[("buffer_full", 1), ("callout_failed", 2)]));
        assert_eq!(
            t.totals(),
            vec![("buffer_full".into(), 6), ("callout_failed".into(), 2)]
        );
    }

    #[test]
    fn reasons_beyond_the_cap_fold_into_other() {
        let mut t = StatusTracker::new(10, 1);
        t.record(&status("a", &[("x", 1), ("y", 2), ("z", 3)]));
        assert_eq!(t.totals(), vec![("other".into(), 5), ("x".into(), 1)]);
    }
}

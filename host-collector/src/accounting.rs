//! End-to-end loss accounting per source (filter VM): what arrived, what is missing, what the
//! filter says it emitted and dropped, and what nobody accounted for. Owns the per-source
//! state (fed by the ingest observer hook), its JSON snapshot for `GET /v1/accounting` and its
//! scrape-time Prometheus collector.
//!
//! Per source it keeps only counters, never the set of seqs: the dedupe window already keeps
//! a seq from being counted twice, so `gaps = highest_seq - events` is exact, and an event
//! arriving late (after a higher seq) closes its gap when it arrives.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use serde::Serialize;

use crate::event::Row;
use crate::ingest::status::{merge_max, ReasonFolder};
use crate::ingest::wire::StatusRecord;
use crate::ingest::{EventOutcome, IngestObserver, IngestedEvent};
use crate::metrics::encode_family;
use crate::writer::WriteObserver;

/// Label and JSON name of the bucket that sources beyond the cap fold into.
pub const OTHER_SOURCE: &str = "_other";

#[derive(Debug, Default, Clone)]
struct SourceState {
    events: u64,
    highest_seq: u64,
    duplicates: u64,
    dead_letters: u64,
    filter_dropped: BTreeMap<String, u64>,
    emitted: Option<u64>,
}

/// Sources beyond the cap. Only additive counters can be kept without per-source state:
/// gaps and cumulative filter counters need each source's own maximum.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OtherReport {
    pub events: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    pub status_records: u64,
}

struct State {
    sources: HashMap<String, SourceState>,
    other: OtherReport,
    reasons: ReasonFolder,
}

enum Slot<'a> {
    Tracked(&'a mut SourceState),
    Other(&'a mut OtherReport),
}

pub struct Accounting {
    max_sources: usize,
    state: Mutex<State>,
}

/// One source in `GET /v1/accounting`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceReport {
    pub source: String,
    /// Distinct seqs accepted (stored, dead-lettered, queued or dropped by the collector).
    pub events: u64,
    pub highest_seq: u64,
    /// Seqs below `highest_seq` that have not arrived.
    pub gaps: u64,
    pub duplicates: u64,
    /// Events among `events` that the database refused for good, kept in `mcp_dead_letters`.
    pub dead_letters: u64,
    /// Filter-reported drops by reason (cumulative, max-merged).
    pub filter_dropped: BTreeMap<String, u64>,
    /// Highest seq the filter reports having emitted, when it reports it.
    pub emitted: Option<u64>,
    /// `emitted - (events + filter drops)`, when `emitted` is known.
    pub unaccounted: Option<i64>,
}

/// Sums over the tracked sources, plus `_other`'s events and duplicates.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Totals {
    pub sources: usize,
    pub events: u64,
    pub gaps: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    pub filter_dropped: BTreeMap<String, u64>,
    /// Sum over the sources that report `emitted`.
    pub emitted: u64,
    /// Sum over the sources that report `emitted`.
    pub unaccounted: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountingReport {
    pub max_sources: usize,
    pub sources: Vec<SourceReport>,
    #[serde(rename = "_other")]
    pub other: OtherReport,
    pub totals: Totals,
}

impl Accounting {
    pub fn new(max_sources: usize, max_reasons: usize) -> Self {
        Accounting {
            max_sources: max_sources.max(1),
            state: Mutex::new(State {
                sources: HashMap::new(),
                other: OtherReport::default(),
                reasons: ReasonFolder::new(max_reasons),
            }),
        }
    }

    fn with_slot<R>(&self, source: &str, f: impl FnOnce(Slot, &mut ReasonFolder) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let State {
            sources,
            other,
            reasons,
        } = &mut *state;
        // Sources are never forgotten: a source that came back would count all its earlier
        // seqs as gaps. The first `max_sources` keep their own entry for good.
        let slot = if sources.contains_key(source) || sources.len() < self.max_sources {
            Slot::Tracked(sources.entry(source.to_string()).or_default())
        } else {
            Slot::Other(other)
        };
        f(slot, reasons)
    }

    pub fn record_event(&self, source: &str, seq: u64, outcome: EventOutcome) {
        self.with_slot(source, |slot, _| match (slot, outcome) {
            (Slot::Tracked(s), EventOutcome::Queued) => {
                s.events += 1;
                s.highest_seq = s.highest_seq.max(seq);
            }
            (Slot::Tracked(s), EventOutcome::Duplicate) => s.duplicates += 1,
            (Slot::Other(o), EventOutcome::Queued) => o.events += 1,
            (Slot::Other(o), EventOutcome::Duplicate) => o.duplicates += 1,
        });
    }

    pub fn record_dead_letter(&self, source: &str) {
        self.with_slot(source, |slot, _| match slot {
            Slot::Tracked(s) => s.dead_letters += 1,
            Slot::Other(o) => o.dead_letters += 1,
        });
    }

    pub fn record_status(&self, status: &StatusRecord) {
        self.with_slot(&status.source, |slot, reasons| match slot {
            Slot::Tracked(s) => {
                merge_max(&mut s.filter_dropped, reasons.fold(&status.dropped));
                if let Some(emitted) = status.emitted {
                    s.emitted = Some(s.emitted.map_or(emitted, |e| e.max(emitted)));
                }
            }
            Slot::Other(o) => o.status_records += 1,
        });
    }

    pub fn report(&self) -> AccountingReport {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut sources: Vec<SourceReport> = state
            .sources
            .iter()
            .map(|(name, s)| s.report(name))
            .collect();
        let other = state.other;
        drop(state);
        sources.sort_by(|a, b| a.source.cmp(&b.source));
        let totals = Totals::of(&sources, &other);
        AccountingReport {
            max_sources: self.max_sources,
            sources,
            other,
            totals,
        }
    }
}

impl SourceState {
    fn report(&self, source: &str) -> SourceReport {
        SourceReport::derive(SourceCounts {
            source: source.to_string(),
            events: self.events,
            highest_seq: self.highest_seq,
            duplicates: self.duplicates,
            dead_letters: self.dead_letters,
            filter_dropped: self.filter_dropped.clone(),
            emitted: self.emitted,
        })
    }
}

/// What is counted of one source, wherever it was counted (this process, or the store); the
/// report derives `gaps` and `unaccounted` from it.
pub struct SourceCounts {
    pub source: String,
    pub events: u64,
    pub highest_seq: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    pub filter_dropped: BTreeMap<String, u64>,
    pub emitted: Option<u64>,
}

impl SourceReport {
    pub fn derive(c: SourceCounts) -> SourceReport {
        // Saturating throughout: filter counters come off the wire and may be forged near
        // u64::MAX; a report must never overflow (a panic in debug, a wrap in release).
        let filter_total: u64 = c
            .filter_dropped
            .values()
            .fold(0u64, |a, b| a.saturating_add(*b));
        let accounted = c.events.saturating_add(filter_total);
        SourceReport {
            source: c.source,
            events: c.events,
            highest_seq: c.highest_seq,
            // Saturating: a seq 0 (outside the contract) must not wrap around.
            gaps: c.highest_seq.saturating_sub(c.events),
            duplicates: c.duplicates,
            dead_letters: c.dead_letters,
            filter_dropped: c.filter_dropped,
            emitted: c.emitted,
            unaccounted: c
                .emitted
                .map(|e| clamp_i64(e).saturating_sub(clamp_i64(accounted))),
        }
    }
}

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Totals {
    pub fn of(sources: &[SourceReport], other: &OtherReport) -> Totals {
        let mut t = Totals {
            sources: sources.len(),
            events: other.events,
            duplicates: other.duplicates,
            dead_letters: other.dead_letters,
            ..Totals::default()
        };
        for s in sources {
            t.events = t.events.saturating_add(s.events);
            t.gaps = t.gaps.saturating_add(s.gaps);
            t.duplicates = t.duplicates.saturating_add(s.duplicates);
            t.dead_letters = t.dead_letters.saturating_add(s.dead_letters);
            for (reason, n) in &s.filter_dropped {
                let total = t.filter_dropped.entry(reason.clone()).or_insert(0);
                *total = total.saturating_add(*n);
            }
            t.emitted = t.emitted.saturating_add(s.emitted.unwrap_or(0));
            t.unaccounted = t.unaccounted.saturating_add(s.unaccounted.unwrap_or(0));
        }
        t
    }
}

impl WriteObserver for Accounting {
    fn on_dead_letter(&self, row: &Row) {
        self.record_dead_letter(&row.source);
    }
}

impl IngestObserver for Accounting {
    fn on_event(&self, event: &IngestedEvent, outcome: EventOutcome) {
        self.record_event(&event.row.source, event.row.seq, outcome);
    }

    fn on_status(&self, status: &StatusRecord) {
        self.record_status(status);
    }
}

/// Scrape-time view of the accounting, so `/metrics` and `/v1/accounting` never disagree.
#[derive(Clone)]
pub struct AccountingCollector(pub Arc<Accounting>);

impl fmt::Debug for AccountingCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccountingCollector")
    }
}

/// Reads one gauge value of a source; `None` leaves the source out of that family.
type GaugeOf = fn(&SourceReport) -> Option<i64>;

fn source_label(source: &str) -> Vec<(&'static str, String)> {
    vec![("source", source.to_string())]
}

impl Collector for AccountingCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let report = self.0.report();
        let per_source = |f: fn(&SourceReport) -> u64| {
            report
                .sources
                .iter()
                .map(move |s| (source_label(&s.source), ConstCounter::new(f(s))))
        };
        let other = |n: u64| std::iter::once((source_label(OTHER_SOURCE), ConstCounter::new(n)));
        encode_family(
            &mut encoder,
            "collector_source_events",
            "Distinct events accepted per filter source (stored, dead-lettered, queued or dropped by the collector).",
            MetricType::Counter,
            per_source(|s| s.events).chain(other(report.other.events)),
        )?;
        encode_family(
            &mut encoder,
            "collector_source_dead_letters",
            "Events the database refused for good, kept in mcp_dead_letters, per source.",
            MetricType::Counter,
            per_source(|s| s.dead_letters).chain(other(report.other.dead_letters)),
        )?;
        encode_family(
            &mut encoder,
            "collector_source_duplicates",
            "Duplicate (source, seq) events ignored at ingest, per source.",
            MetricType::Counter,
            per_source(|s| s.duplicates).chain(other(report.other.duplicates)),
        )?;
        let gauge = |f: GaugeOf| {
            report
                .sources
                .iter()
                .filter_map(move |s| f(s).map(|v| (source_label(&s.source), ConstGauge::new(v))))
        };
        let gauges: [(&str, &str, GaugeOf); 4] = [
            (
                "collector_source_highest_seq",
                "Highest seq received per source.",
                |s| Some(s.highest_seq as i64),
            ),
            (
                "collector_source_gaps",
                "Seqs below the highest received that have not arrived, per source.",
                |s| Some(s.gaps as i64),
            ),
            (
                "collector_source_filter_emitted",
                "Highest seq the filter reports having emitted, per source.",
                |s| s.emitted.map(|e| e as i64),
            ),
            (
                "collector_source_unaccounted",
                "Emitted minus (accepted + filter-reported drops): events lost without a count.",
                |s| s.unaccounted,
            ),
        ];
        for (name, help, f) in gauges {
            encode_family(&mut encoder, name, help, MetricType::Gauge, gauge(f))?;
        }
        let drops = report.sources.iter().flat_map(|s| {
            s.filter_dropped.iter().map(|(reason, n)| {
                let labels = vec![("source", s.source.clone()), ("reason", reason.clone())];
                (labels, ConstGauge::new(*n as i64))
            })
        });
        encode_family(
            &mut encoder,
            "collector_source_filter_dropped",
            "Filter-reported drops per source and reason (cumulative, from status records).",
            MetricType::Gauge,
            drops,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(source: &str, pairs: &[(&str, u64)], emitted: Option<u64>) -> StatusRecord {
        StatusRecord {
            source: source.into(),
            dropped: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            emitted,
        }
    }

    fn feed(a: &Accounting, source: &str, seqs: &[u64]) {
        for seq in seqs {
            a.record_event(source, *seq, EventOutcome::Queued);
        }
    }

    fn source(a: &Accounting, name: &str) -> SourceReport {
        a.report()
            .sources
            .into_iter()
            .find(|s| s.source == name)
            .unwrap_or_else(|| panic!("{name} is tracked"))
    }

    #[test]
    fn gaps_close_when_late_events_arrive() {
        let a = Accounting::new(10, 10);
        feed(&a, "a", &[1, 2, 5]);
        let s = source(&a, "a");
        assert_eq!((s.events, s.highest_seq, s.gaps), (3, 5, 2));
        feed(&a, "a", &[4]);
        assert_eq!(source(&a, "a").gaps, 1, "late seq 4 is no longer a gap");
        feed(&a, "a", &[3]);
        let s = source(&a, "a");
        assert_eq!((s.events, s.highest_seq, s.gaps), (5, 5, 0));
    }

    #[test]
    fn duplicates_are_counted_apart_from_events() {
        let a = Accounting::new(10, 10);
        feed(&a, "a", &[1, 2]);
        a.record_event("a", 2, EventOutcome::Duplicate);
        a.record_event("a", 9, EventOutcome::Duplicate);
        let s = source(&a, "a");
        assert_eq!(
            (s.events, s.highest_seq, s.gaps, s.duplicates),
            (2, 2, 0, 2)
        );
    }

    #[test]
    fn status_records_max_merge_and_derive_unaccounted() {
        let a = Accounting::new(10, 10);
        assert_eq!(source_or_none(&a, "a"), None);
        a.record_status(&status("a", &[("buffer_full", 2)], None));
        assert_eq!(source(&a, "a").unaccounted, None, "unknown without emitted");
        a.record_status(&status("a", &[("buffer_full", 3)], Some(10)));
        a.record_status(&status("a", &[("buffer_full", 1)], Some(8)));
        feed(&a, "a", &[1, 2, 3, 7, 8, 9]);
        let s = source(&a, "a");
        assert_eq!(
            s.filter_dropped.get("buffer_full"),
            Some(&3),
            "max, not sum"
        );
        assert_eq!(s.emitted, Some(10), "an older status never lowers it");
        assert_eq!(s.unaccounted, Some(10 - (6 + 3)));
        feed(&a, "a", &[10]);
        assert_eq!(source(&a, "a").unaccounted, Some(0));
    }

    fn source_or_none(a: &Accounting, name: &str) -> Option<SourceReport> {
        a.report().sources.into_iter().find(|s| s.source == name)
    }

    #[test]
    fn sources_beyond_the_cap_fold_into_other() {
        let a = Accounting::new(2, 10);
        feed(&a, "a", &[1]);
        feed(&a, "b", &[1, 3]);
        feed(&a, "c", &[1, 2]);
        a.record_event("c", 2, EventOutcome::Duplicate);
        a.record_status(&status("c", &[("buffer_full", 4)], Some(9)));
        feed(&a, "a", &[2]);
        a.record_dead_letter("a");
        a.record_dead_letter("c");
        let r = a.report();
        let names: Vec<&str> = r.sources.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(names, ["a", "b"], "first sources keep their entry");
        assert_eq!(
            r.other,
            OtherReport {
                events: 2,
                duplicates: 1,
                dead_letters: 1,
                status_records: 1
            }
        );
        assert_eq!(r.sources[0].dead_letters, 1);
        assert_eq!(r.totals.dead_letters, 2, "tracked 1 + other 1");
        assert_eq!(r.totals.sources, 2);
        assert_eq!(r.totals.events, 6, "tracked 4 + other 2");
        assert_eq!(r.totals.gaps, 1);
        assert_eq!(r.totals.duplicates, 1);
        assert!(
            r.totals.filter_dropped.is_empty(),
            "folded status not merged"
        );
    }

    #[test]
    fn totals_sum_tracked_sources() {
        let a = Accounting::new(10, 10);
        feed(&a, "a", &[1, 3]);
        feed(&a, "b", &[2]);
        a.record_status(&status("a", &[("buffer_full", 1)], Some(4)));
        a.record_status(&status(
            "b",
            &[("buffer_full", 2), ("callout_failed", 1)],
            None,
        ));
        let t = a.report().totals;
        assert_eq!((t.events, t.gaps, t.emitted), (3, 2, 4));
        assert_eq!(t.unaccounted, 4 - (2 + 1), "only sources reporting emitted");
        assert_eq!(t.filter_dropped.get("buffer_full"), Some(&3));
        assert_eq!(t.filter_dropped.get("callout_failed"), Some(&1));
    }

    #[test]
    fn drop_reasons_are_capped() {
        let a = Accounting::new(10, 1);
        a.record_status(&status("a", &[("x", 1), ("y", 2), ("z", 3)], None));
        let dropped = source(&a, "a").filter_dropped;
        assert_eq!(dropped.get("x"), Some(&1));
        assert_eq!(dropped.get("other"), Some(&5));
        assert_eq!(dropped.len(), 2);
    }
}

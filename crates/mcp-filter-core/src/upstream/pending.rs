//! This worker's results for one upstream that are not in the shared record yet. Successes
//! (and errors the breaker does not count) cannot change the breaker's state, so instead of a
//! compare-and-swap per call they are added up here and merged into the record by one CAS per
//! tick ([`UpstreamRecord::absorb`](crate::upstream::UpstreamRecord::absorb)), or before the
//! next result that must be written at once. Counted failures and probe results can change the
//! state, so they never wait here: that keeps every transition committed by exactly one worker.
//!
//! What the delay costs: the health endpoint's counts and percentiles lag each worker by at
//! most one tick, and an error rate computed by one worker misses up to one tick of the other
//! workers' successes.

use crate::upstream::call::{duration_us, CallResult, Outcome};
use crate::upstream::config::BreakerConfig;
use crate::upstream::histogram::LatencyHistogram;
use crate::upstream::window::ErrorWindow;

/// Results of one upstream waiting to be merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    pub(crate) successes: u64,
    pub(crate) ignored_errors: u64,
    /// When the newest of them finished: merged, they reset the consecutive-failure count
    /// only if they are newer than the record's last failure.
    pub(crate) latest_us: u64,
    /// Calls per error-window sub-window (no failures: those are written at once).
    pub(crate) window: ErrorWindow,
    pub(crate) latency: LatencyHistogram,
}

impl Pending {
    /// Adds `result` if it can wait for the next merge; false when it must be written now
    /// (a counted failure, or a probe's result).
    pub fn add(&mut self, cfg: &BreakerConfig, now_us: u64, result: &CallResult) -> bool {
        if result.probe.is_some() {
            return false;
        }
        match result.outcome {
            Outcome::Success => self.successes = self.successes.saturating_add(1),
            Outcome::Error(kind) if cfg.counts(kind) => return false,
            Outcome::Error(_) => self.ignored_errors = self.ignored_errors.saturating_add(1),
        }
        self.latest_us = self.latest_us.max(now_us);
        self.window.add(cfg.window_bucket_us(), now_us, false);
        self.latency.record_us(duration_us(result.latency));
        true
    }

    pub fn is_empty(&self) -> bool {
        self.successes == 0 && self.ignored_errors == 0
    }

    /// Calls waiting (successes and uncounted errors).
    pub fn calls(&self) -> u64 {
        self.successes.saturating_add(self.ignored_errors)
    }

    pub fn clear(&mut self) {
        *self = Pending::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::call::ProbeTicket;
    use crate::upstream::config::FailureKind;
    use std::time::Duration;

    fn result(outcome: Outcome) -> CallResult {
        CallResult {
            outcome,
            latency: Duration::from_millis(3),
            probe: None,
        }
    }

    #[test]
    fn only_results_that_cannot_change_the_state_wait() {
        let cfg = BreakerConfig::default();
        let mut p = Pending::default();
        assert!(p.add(&cfg, 10, &result(Outcome::Success)));
        assert!(p.add(&cfg, 20, &result(Outcome::Error(FailureKind::JsonrpcError))));
        assert!(!p.add(&cfg, 30, &result(Outcome::Error(FailureKind::Http5xx))));
        let mut probe = result(Outcome::Success);
        probe.probe = Some(ProbeTicket {
            slot: 0,
            started_us: 1,
        });
        assert!(!p.add(&cfg, 40, &probe));
        assert_eq!((p.successes, p.ignored_errors, p.latest_us), (1, 1, 20));
        assert_eq!(p.calls(), 2);
        assert_eq!(p.latency.total(), 2);
        p.clear();
        assert!(p.is_empty());
    }
}

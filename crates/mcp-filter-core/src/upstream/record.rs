//! The shared record of one upstream: health counters, latency histogram, error-rate window
//! and circuit-breaker state, with the state machine that updates them and a compact binary
//! encoding. One record per configured instance lives in Envoy shared data; every worker VM
//! decodes it, applies `admit` or `record`, and writes it back with compare-and-swap (see
//! `shared`). Because the functions here are pure, the update that commits is the one whose
//! transition is reported, which is what makes `circuit.*` events exactly-once across workers.
//!
//! Time is microseconds since the Unix epoch (`now_us`), randomness a `u64` from the caller.
//!
//! Breaker rules:
//! - Closed: every counted failure is added to the consecutive count and the error window;
//!   `failure_threshold` consecutive failures, or a window failure share at or above the
//!   `error_rate` threshold with at least `min_calls` calls, opens it.
//! - Open: rejects until `until`, then the next request moves it to half-open as a probe.
//!   Results of requests admitted before it opened update health only.
//! - HalfOpen: at most `half_open_max_probes` probes in flight; a probe silent for
//!   `probe_timeout_ms` frees its slot (its VM may be gone) and its late result is then
//!   ignored for the breaker. `success_threshold` probe successes close it, a probe failure
//!   re-opens it with the reset timeout doubled (up to `max_reset_timeout_ms`). Only probes
//!   decide: results of requests admitted earlier update health only.

use crate::upstream::call::{duration_us, CallResult, Outcome, ProbeTicket};
use crate::upstream::config::{BreakerConfig, FailureKind, UpstreamConfig, MAX_PROBES};
use crate::upstream::histogram::{LatencyHistogram, BUCKETS};
use crate::upstream::pending::Pending;
use crate::upstream::window::{ErrorWindow, WINDOW_BUCKETS};
use serde::Serialize;

const PROBE_SLOTS: usize = MAX_PROBES as usize;
/// First byte of every encoded record; bump it when the layout changes.
pub const ENCODING_VERSION: u8 = 1;

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allow,
    /// Let it through as a half-open probe; report its result with this ticket.
    Probe(ProbeTicket),
    /// Answer locally (503, `Retry-After`); do not touch the upstream.
    Reject {
        retry_after_secs: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    Closed,
    Open,
    HalfOpen,
}

impl StateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Closed => "closed",
            StateKind::Open => "open",
            StateKind::HalfOpen => "half_open",
        }
    }
}

/// Why the breaker changed state (a fixed set, never a raw error string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionReason {
    ConsecutiveFailures,
    ErrorRate,
    ResetTimeoutElapsed,
    ProbeFailed,
    ProbesSucceeded,
}

impl TransitionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionReason::ConsecutiveFailures => "consecutive_failures",
            TransitionReason::ErrorRate => "error_rate",
            TransitionReason::ResetTimeoutElapsed => "reset_timeout_elapsed",
            TransitionReason::ProbeFailed => "probe_failed",
            TransitionReason::ProbesSucceeded => "probes_succeeded",
        }
    }
}

/// A state change, to be emitted as a `circuit.*` event by the glue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub from: StateKind,
    pub to: StateKind,
    pub reason: TransitionReason,
    /// Time spent in `from`.
    pub previous_state_ms: u64,
    pub consecutive_failures: u32,
    pub window_calls: u32,
    pub window_failures: u32,
    /// Probe successes seen in the half-open state being left (0 otherwise).
    pub half_open_successes: u32,
    /// Opens since the breaker was last closed (drives the backoff).
    pub consecutive_opens: u32,
    /// On opening: how long it stays open before probing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_for_ms: Option<u64>,
}

impl Transition {
    pub fn event_name(&self) -> &'static str {
        match self.to {
            StateKind::Open => "circuit.opened",
            StateKind::HalfOpen => "circuit.half_opened",
            StateKind::Closed => "circuit.closed",
        }
    }
}

/// The breaker state as [`UpstreamRecord::peek`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    Closed,
    Open { until_us: u64 },
    HalfOpen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        since_us: u64,
    },
    Open {
        since_us: u64,
        until_us: u64,
    },
    HalfOpen {
        since_us: u64,
        /// Start time of the probe in each slot (boxed: the other states are small).
        probes: Box<[Option<u64>; PROBE_SLOTS]>,
        successes: u32,
    },
}

impl BreakerState {
    pub fn kind(&self) -> StateKind {
        match self {
            BreakerState::Closed { .. } => StateKind::Closed,
            BreakerState::Open { .. } => StateKind::Open,
            BreakerState::HalfOpen { .. } => StateKind::HalfOpen,
        }
    }

    pub fn since_us(&self) -> u64 {
        match self {
            BreakerState::Closed { since_us }
            | BreakerState::Open { since_us, .. }
            | BreakerState::HalfOpen { since_us, .. } => *since_us,
        }
    }
}

/// Health and breaker state of one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRecord {
    state: BreakerState,
    consecutive_failures: u32,
    consecutive_opens: u32,
    successes: u64,
    failures: u64,
    /// Errors of kinds not counted as failures (JSON-RPC errors, `isError` results by default).
    ignored_errors: u64,
    last_failure: Option<(FailureKind, u64)>,
    window: ErrorWindow,
    latency: LatencyHistogram,
}

fn ms_between(from_us: u64, to_us: u64) -> u64 {
    to_us.saturating_sub(from_us) / 1_000
}

/// Whole seconds until `at_us`, rounded up, at least 1 (a `Retry-After: 0` invites a storm).
pub(crate) fn secs_until(now_us: u64, at_us: u64) -> u64 {
    at_us.saturating_sub(now_us).div_ceil(1_000_000).max(1)
}

/// How long a breaker opened for the `opens`-th time in a row stays open, in microseconds.
fn open_duration_us(cfg: &BreakerConfig, opens: u32, random: u64) -> u64 {
    let base_ms = match cfg.max_reset_timeout_ms {
        Some(cap) => {
            let doublings = opens.saturating_sub(1).min(32);
            cfg.reset_timeout_ms
                .saturating_mul(1u64 << doublings)
                .min(cap)
        }
        None => cfg.reset_timeout_ms,
    };
    let base_us = base_ms.saturating_mul(1_000) as f64;
    // Uniform in [0, 1) from the top 53 bits.
    let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
    let factor = 1.0 + cfg.jitter * (2.0 * unit - 1.0);
    (base_us * factor).max(1.0) as u64
}

impl UpstreamRecord {
    /// A record for an upstream never seen before: closed, healthy, empty.
    pub fn new(now_us: u64) -> Self {
        UpstreamRecord {
            state: BreakerState::Closed { since_us: now_us },
            consecutive_failures: 0,
            consecutive_opens: 0,
            successes: 0,
            failures: 0,
            ignored_errors: 0,
            last_failure: None,
            window: ErrorWindow::default(),
            latency: LatencyHistogram::default(),
        }
    }

    pub fn state(&self) -> &BreakerState {
        &self.state
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn successes(&self) -> u64 {
        self.successes
    }

    pub fn failures(&self) -> u64 {
        self.failures
    }

    pub fn ignored_errors(&self) -> u64 {
        self.ignored_errors
    }

    pub fn latency(&self) -> &LatencyHistogram {
        &self.latency
    }

    pub fn healthy(&self, cfg: &UpstreamConfig) -> bool {
        self.consecutive_failures < cfg.unhealthy_after
    }

    /// Decides whether a request may go to the upstream. Changes the record only when it
    /// moves open -> half-open or takes/frees a probe slot, so the common closed case needs
    /// no shared-data write.
    pub fn admit(&mut self, cfg: &BreakerConfig, now_us: u64) -> (Admission, Option<Transition>) {
        if !cfg.enabled {
            return (Admission::Allow, None);
        }
        match self.state {
            BreakerState::Closed { .. } => (Admission::Allow, None),
            BreakerState::Open { until_us, .. } if now_us < until_us => (
                Admission::Reject {
                    retry_after_secs: secs_until(now_us, until_us),
                },
                None,
            ),
            BreakerState::Open { .. } => {
                let transition = self.enter(
                    cfg,
                    now_us,
                    StateKind::HalfOpen,
                    TransitionReason::ResetTimeoutElapsed,
                    0,
                );
                (self.take_probe(cfg, now_us), Some(transition))
            }
            BreakerState::HalfOpen { .. } => (self.take_probe(cfg, now_us), None),
        }
    }

    /// Half-open admission: free stale probes, then take a free slot or reject until the
    /// earliest probe would go stale.
    fn take_probe(&mut self, cfg: &BreakerConfig, now_us: u64) -> Admission {
        let BreakerState::HalfOpen { probes, .. } = &mut self.state else {
            return Admission::Allow;
        };
        let timeout_us = cfg.probe_timeout_ms.saturating_mul(1_000);
        for p in probes.iter_mut() {
            if matches!(p, Some(start) if start.saturating_add(timeout_us) <= now_us) {
                *p = None;
            }
        }
        let in_flight = probes.iter().filter(|p| p.is_some()).count();
        let max = usize::try_from(cfg.half_open_max_probes).unwrap_or(PROBE_SLOTS);
        if in_flight < max {
            if let Some((slot, p)) = probes.iter_mut().enumerate().find(|(_, p)| p.is_none()) {
                *p = Some(now_us);
                return Admission::Probe(ProbeTicket {
                    slot: u8::try_from(slot).unwrap_or(u8::MAX),
                    started_us: now_us,
                });
            }
        }
        let earliest = probes.iter().flatten().min().copied().unwrap_or(now_us);
        Admission::Reject {
            retry_after_secs: secs_until(now_us, earliest.saturating_add(timeout_us)),
        }
    }

    /// Merges a worker's pending results (successes and uncounted errors, see [`Pending`]):
    /// health counters and latency always, the error window while closed, and the
    /// consecutive-failure count reset if they are newer than the last failure. They cannot
    /// change the breaker's state, so this never returns a transition.
    pub fn absorb(&mut self, cfg: &BreakerConfig, pending: &Pending) {
        if pending.is_empty() {
            return;
        }
        self.successes = self.successes.saturating_add(pending.successes);
        self.ignored_errors = self.ignored_errors.saturating_add(pending.ignored_errors);
        self.latency.absorb(&pending.latency);
        let newer = self
            .last_failure
            .is_none_or(|(_, at_us)| pending.latest_us >= at_us);
        if newer {
            self.consecutive_failures = 0;
        }
        if cfg.enabled && matches!(self.state, BreakerState::Closed { .. }) {
            self.window.absorb(&pending.window);
        }
    }

    /// Records the result of a call: health counters and latency always; breaker state as
    /// described in the module docs. `random` feeds the jitter if the breaker opens.
    pub fn record(
        &mut self,
        cfg: &BreakerConfig,
        now_us: u64,
        random: u64,
        result: &CallResult,
    ) -> Option<Transition> {
        self.latency.record_us(duration_us(result.latency));
        let failed = match result.outcome {
            Outcome::Success => {
                self.successes = self.successes.saturating_add(1);
                false
            }
            Outcome::Error(kind) if cfg.counts(kind) => {
                self.failures = self.failures.saturating_add(1);
                self.last_failure = Some((kind, now_us));
                true
            }
            Outcome::Error(_) => {
                self.ignored_errors = self.ignored_errors.saturating_add(1);
                false
            }
        };
        if failed {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        } else {
            self.consecutive_failures = 0;
        }
        if !cfg.enabled {
            return None;
        }
        match self.state {
            BreakerState::Closed { .. } => self.record_closed(cfg, now_us, random, failed),
            BreakerState::Open { .. } => None,
            BreakerState::HalfOpen { .. } => {
                self.record_half_open(cfg, now_us, random, failed, result.probe)
            }
        }
    }

    fn record_closed(
        &mut self,
        cfg: &BreakerConfig,
        now_us: u64,
        random: u64,
        failed: bool,
    ) -> Option<Transition> {
        let width = cfg.window_bucket_us();
        self.window.add(width, now_us, failed);
        if !failed {
            return None;
        }
        let reason = if self.consecutive_failures >= cfg.failure_threshold {
            TransitionReason::ConsecutiveFailures
        } else if self.error_rate_exceeded(cfg, now_us) {
            TransitionReason::ErrorRate
        } else {
            return None;
        };
        Some(self.enter(cfg, now_us, StateKind::Open, reason, random))
    }

    fn error_rate_exceeded(&self, cfg: &BreakerConfig, now_us: u64) -> bool {
        let Some(rate) = &cfg.error_rate else {
            return false;
        };
        let (calls, failures) = self.window.totals(cfg.window_bucket_us(), now_us);
        calls >= rate.min_calls
            && calls > 0
            && f64::from(failures) / f64::from(calls) >= rate.threshold
    }

    fn record_half_open(
        &mut self,
        cfg: &BreakerConfig,
        now_us: u64,
        random: u64,
        failed: bool,
        probe: Option<ProbeTicket>,
    ) -> Option<Transition> {
        let BreakerState::HalfOpen {
            probes, successes, ..
        } = &mut self.state
        else {
            return None;
        };
        let slot = probe.and_then(|t| {
            let slot = probes.get_mut(usize::from(t.slot))?;
            (*slot == Some(t.started_us)).then_some(slot)
        })?;
        *slot = None;
        if failed {
            return Some(self.enter(
                cfg,
                now_us,
                StateKind::Open,
                TransitionReason::ProbeFailed,
                random,
            ));
        }
        *successes = successes.saturating_add(1);
        if *successes >= cfg.success_threshold {
            return Some(self.enter(
                cfg,
                now_us,
                StateKind::Closed,
                TransitionReason::ProbesSucceeded,
                random,
            ));
        }
        None
    }

    /// Moves to `to` and describes the move.
    fn enter(
        &mut self,
        cfg: &BreakerConfig,
        now_us: u64,
        to: StateKind,
        reason: TransitionReason,
        random: u64,
    ) -> Transition {
        let from = self.state.kind();
        let previous_state_ms = ms_between(self.state.since_us(), now_us);
        let half_open_successes = match self.state {
            BreakerState::HalfOpen { successes, .. } => successes,
            _ => 0,
        };
        let (window_calls, window_failures) = self.window.totals(cfg.window_bucket_us(), now_us);
        let mut open_for_ms = None;
        self.state = match to {
            StateKind::Open => {
                self.consecutive_opens = self.consecutive_opens.saturating_add(1);
                let open_us = open_duration_us(cfg, self.consecutive_opens, random);
                open_for_ms = Some(open_us / 1_000);
                BreakerState::Open {
                    since_us: now_us,
                    until_us: now_us.saturating_add(open_us),
                }
            }
            StateKind::HalfOpen => BreakerState::HalfOpen {
                since_us: now_us,
                probes: Box::new([None; PROBE_SLOTS]),
                successes: 0,
            },
            StateKind::Closed => {
                self.consecutive_opens = 0;
                // Failures from before the outage must not re-trip the fresh breaker.
                self.window.clear();
                BreakerState::Closed { since_us: now_us }
            }
        };
        Transition {
            from,
            to,
            reason,
            previous_state_ms,
            consecutive_failures: self.consecutive_failures,
            window_calls,
            window_failures,
            half_open_successes,
            consecutive_opens: self.consecutive_opens,
            open_for_ms,
        }
    }

    /// The health-endpoint view of this upstream.
    pub fn snapshot(&self, instance: &str, cfg: &UpstreamConfig, now_us: u64) -> HealthSnapshot {
        let (window_calls, window_failures) =
            self.window.totals(cfg.breaker.window_bucket_us(), now_us);
        let (probes_in_flight, half_open_successes) = match &self.state {
            BreakerState::HalfOpen {
                probes, successes, ..
            } => (probes.iter().flatten().count(), *successes),
            _ => (0, 0),
        };
        let retry_after_secs = match self.state {
            BreakerState::Open { until_us, .. } => Some(secs_until(now_us, until_us)),
            _ => None,
        };
        let p = |q| self.latency.percentile_us(q).map(round_ms);
        HealthSnapshot {
            instance: instance.to_string(),
            healthy: self.healthy(cfg),
            state: self.state.kind().as_str(),
            state_since_ms: self.state.since_us() / 1_000,
            state_for_ms: ms_between(self.state.since_us(), now_us),
            retry_after_secs,
            successes: self.successes,
            failures: self.failures,
            ignored_errors: self.ignored_errors,
            consecutive_failures: self.consecutive_failures,
            consecutive_opens: self.consecutive_opens,
            window_calls,
            window_failures,
            probes_in_flight: u32::try_from(probes_in_flight).unwrap_or(u32::MAX),
            half_open_successes,
            latency_samples: self.latency.total(),
            p50_ms: p(0.50),
            p95_ms: p(0.95),
            p99_ms: p(0.99),
            last_failure: self.last_failure.map(|(k, _)| k.as_str()),
            last_failure_ms: self.last_failure.map(|(_, at)| at / 1_000),
        }
    }
}

/// Milliseconds with microsecond precision.
fn round_ms(us: f64) -> f64 {
    us.round() / 1_000.0
}

/// One upstream in the health endpoint's JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSnapshot {
    pub instance: String,
    pub healthy: bool,
    /// "closed", "open" or "half_open".
    pub state: &'static str,
    /// When the breaker entered its state, ms since the epoch.
    pub state_since_ms: u64,
    pub state_for_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    pub successes: u64,
    pub failures: u64,
    pub ignored_errors: u64,
    pub consecutive_failures: u32,
    pub consecutive_opens: u32,
    pub window_calls: u32,
    pub window_failures: u32,
    pub probes_in_flight: u32,
    pub half_open_successes: u32,
    /// Samples behind the percentiles (recent calls, see `histogram`).
    pub latency_samples: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub last_failure: Option<&'static str>,
    pub last_failure_ms: Option<u64>,
}

// ---- encoding ----
//
// Version 1, all integers LEB128 varints unless noted:
//   u8 version (=1), u8 state (0 closed, 1 open, 2 half-open), since_us,
//   [open] until_us, [half-open] successes, probe bitmask, start_us per set bit (ascending),
//   consecutive_failures, consecutive_opens, successes, failures, ignored_errors,
//   u8 last failure kind (0 = none) [, its time_us],
//   window width_us, window head, 10 x (calls, failures),
//   u8 bucket count (=64), 64 x count.
// A fresh record is 103 bytes, a busy closed one ~145 (histogram counts stay below 2^14, so
// at most 2 bytes each), a half-open one with 16 probes ~250. Trailing bytes are invalid.

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn var(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(*first)
    }

    fn var(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return None;
            }
            v |= bits << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn var32(&mut self) -> Option<u32> {
        u32::try_from(self.var()?).ok()
    }
}

impl UpstreamRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(160));
        w.u8(ENCODING_VERSION);
        match &self.state {
            BreakerState::Closed { since_us } => {
                w.u8(0);
                w.var(*since_us);
            }
            BreakerState::Open { since_us, until_us } => {
                w.u8(1);
                w.var(*since_us);
                w.var(*until_us);
            }
            BreakerState::HalfOpen {
                since_us,
                probes,
                successes,
            } => {
                w.u8(2);
                w.var(*since_us);
                w.var(u64::from(*successes));
                let mask = probes
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.is_some())
                    .fold(0u64, |m, (i, _)| m | (1 << i));
                w.var(mask);
                for start in probes.iter().flatten() {
                    w.var(*start);
                }
            }
        }
        w.var(u64::from(self.consecutive_failures));
        w.var(u64::from(self.consecutive_opens));
        w.var(self.successes);
        w.var(self.failures);
        w.var(self.ignored_errors);
        match self.last_failure {
            Some((kind, at)) => {
                w.u8(kind.code());
                w.var(at);
            }
            None => w.u8(0),
        }
        w.var(self.window.width_us);
        w.var(self.window.head);
        for (calls, failures) in self.window.buckets {
            w.var(u64::from(calls));
            w.var(u64::from(failures));
        }
        w.u8(BUCKETS as u8);
        for c in self.latency.counts() {
            w.var(u64::from(*c));
        }
        w.0
    }

    /// The breaker state at the head of an encoded record, without decoding the rest: what
    /// admission needs on every request. `None` when it is not a version-1 record.
    pub fn peek(bytes: &[u8]) -> Option<Peek> {
        let mut r = Reader { bytes };
        if r.u8()? != ENCODING_VERSION {
            return None;
        }
        match r.u8()? {
            0 => Some(Peek::Closed),
            1 => {
                let _since_us = r.var()?;
                Some(Peek::Open { until_us: r.var()? })
            }
            2 => Some(Peek::HalfOpen),
            _ => None,
        }
    }

    /// `None` for anything that is not a complete version-1 record.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader { bytes };
        if r.u8()? != ENCODING_VERSION {
            return None;
        }
        let state = match r.u8()? {
            0 => BreakerState::Closed { since_us: r.var()? },
            1 => BreakerState::Open {
                since_us: r.var()?,
                until_us: r.var()?,
            },
            2 => {
                let since_us = r.var()?;
                let successes = r.var32()?;
                let mask = r.var()?;
                if mask >> PROBE_SLOTS != 0 {
                    return None;
                }
                let mut probes = Box::new([None; PROBE_SLOTS]);
                for (i, p) in probes.iter_mut().enumerate() {
                    if mask & (1 << i) != 0 {
                        *p = Some(r.var()?);
                    }
                }
                BreakerState::HalfOpen {
                    since_us,
                    probes,
                    successes,
                }
            }
            _ => return None,
        };
        let consecutive_failures = r.var32()?;
        let consecutive_opens = r.var32()?;
        let successes = r.var()?;
        let failures = r.var()?;
        let ignored_errors = r.var()?;
        let last_failure = match r.u8()? {
            0 => None,
            code => Some((FailureKind::from_code(code)?, r.var()?)),
        };
        let mut window = ErrorWindow {
            width_us: r.var()?,
            head: r.var()?,
            buckets: [(0, 0); WINDOW_BUCKETS],
        };
        for b in window.buckets.iter_mut() {
            *b = (r.var32()?, r.var32()?);
        }
        if usize::from(r.u8()?) != BUCKETS {
            return None;
        }
        let mut counts = [0u32; BUCKETS];
        for c in counts.iter_mut() {
            *c = r.var32()?;
        }
        if !r.bytes.is_empty() {
            return None;
        }
        Some(UpstreamRecord {
            state,
            consecutive_failures,
            consecutive_opens,
            successes,
            failures,
            ignored_errors,
            last_failure,
            window,
            latency: LatencyHistogram::from_counts(counts),
        })
    }
}

#[cfg(test)]
mod tests;

//! What one call to an upstream came to, as the exchange reports it when it ends: the outcome,
//! the latency, and the probe ticket if the breaker admitted it as a probe.

use crate::upstream::config::FailureKind;
use std::time::Duration;

/// How a call to the upstream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Error(FailureKind),
}

/// Identifies an admitted probe so only its own result frees its slot: a slot freed as stale
/// and given to a new probe has a different start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTicket {
    pub slot: u8,
    pub started_us: u64,
}

/// The result of one call, as reported by the glue when the exchange ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallResult {
    pub outcome: Outcome,
    /// Time to the end of the response (or to the failure/timeout).
    pub latency: Duration,
    /// The ticket from `Admission::Probe`, if the request was a probe.
    pub probe: Option<ProbeTicket>,
}

pub(crate) fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

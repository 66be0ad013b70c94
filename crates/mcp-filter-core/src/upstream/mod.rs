//! Per-upstream health and circuit breaking, shared across worker VMs (issue 4).
//!
//! Envoy runs one VM per worker thread, so health and breaker state kept in a VM's memory
//! would be one worker's partial view. Instead each configured MCP instance has one record in
//! Envoy shared data ([`shared::key_for`]), updated with compare-and-swap by every worker.
//!
//! - [`config`]: the `upstream` config object, defaults and validation.
//! - [`call`]: what one finished call came to (outcome, latency, probe ticket).
//! - [`window`]: the error-rate window (calls and failures per sub-window of time).
//! - [`histogram`]: the fixed-memory latency histogram (failures and timeouts included).
//! - [`record`]: the record and its pure state machine (`admit`, `record`, `absorb`,
//!   `snapshot`) and binary encoding.
//! - [`pending`]: a worker's results that cannot change the breaker's state, added up and
//!   merged by one CAS per tick instead of one per call.
//! - [`shared`]: the CAS loop over an abstract store, and `admit`/`record`/`read` helpers the
//!   glue calls with its shared-data implementation.
//!
//! Nothing here calls the host: time (`now_us`, µs since the epoch) and randomness (for
//! jitter) are injected, so everything is tested natively.

pub mod call;
pub mod config;
pub mod histogram;
pub mod pending;
pub mod record;
pub mod shared;
pub mod window;

pub use call::{CallResult, Outcome, ProbeTicket};
pub use config::{BreakerConfig, ErrorRateConfig, FailureKind, UpstreamConfig};
pub use pending::Pending;
pub use record::{
    Admission, HealthSnapshot, Peek, StateKind, Transition, TransitionReason, UpstreamRecord,
};
pub use shared::{key_for, AdmitDecision, SetError, SharedStore, StoreError, UpdateOutcome};

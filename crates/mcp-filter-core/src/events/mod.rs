//! Gateway events: how an event becomes one NDJSON line, written once into where it goes. The
//! catalogue (names and levels, docs/events.md) and the field names are the wire contract's
//! (`mcp_contract`).
//!
//! - [`keys`]: field names, pre-escaped (from the contract).
//! - [`clock`]: the `ts` field, formatted once per second.
//! - [`emitter`]: the per-VM emitter (`source`, gap-free `seq`, level filter) and the event
//!   builder that writes a line into the shipping buffer (and, if asked, Envoy's log).
//!
//! Secrets never enter an event: the exchange writes only fingerprints and redacted, capped
//! arguments.

#[cfg(any(test, fuzzing))]
pub mod capture;
pub mod clock;
pub mod emitter;
pub mod keys;

pub use emitter::{Event, Events, LineSink, LogSink, Message};

/// The catalogue (one meaning and one level per name) is the wire contract's.
pub use mcp_contract::EventName;

//! The MCP filter's logic, with no proxy-wasm dependency: what the filter decides and writes,
//! testable natively. Time, randomness and Envoy's shared data are injected; the root package
//! (`mcp-filter`, the `.wasm` Envoy loads) is the thin glue that talks to the host.
//!
//! - [`exchange`]: one HTTP exchange through its phases (request, classification, response,
//!   stream end), deciding what to forward, answer and record.
//! - [`jsonrpc`], [`methods`], [`sse`]: reading MCP traffic (a validating borrowed JSON
//!   scanner, the method catalogue, a borrowed SSE parser); [`bytes`] and [`json`] are the
//!   word-at-a-time helpers and the JSON writer they share.
//! - [`events`], [`shipping`]: writing gateway events once into sealed, byte-capped batches
//!   and shipping them to host-collector (retry, drop-oldest, status records).
//! - [`trace`], [`redact`], [`instance`]: W3C trace context, credential fingerprints and
//!   argument redaction, resolving the MCP instance.
//! - [`upstream`], [`breaker`]: per-upstream health and circuit breaker in shared data,
//!   and how exchanges use them; [`pending`]: legacy HTTP+SSE requests parked across workers.
//! - [`config`], [`stats`], [`reply`]: the plugin configuration, the Envoy stats the filter
//!   reports, local replies.

pub mod breaker;
pub mod bytes;
pub mod config;
pub mod events;
pub mod exchange;
pub mod instance;
pub mod json;
pub mod jsonrpc;
pub mod methods;
pub mod pending;
pub mod redact;
pub mod reply;
pub mod shipping;
pub mod sse;
pub mod stats;
pub mod trace;
pub mod upstream;

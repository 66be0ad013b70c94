//! The wire contract between the filter (which writes gateway events) and host-collector
//! (which parses, stores and measures them), defined once for both sides:
//!
//! - [`level`]: the four event levels, their names and their stored codes.
//! - [`event`]: the event catalogue: one name, one level each.
//! - [`fields`]: the field names of a line (OpenTelemetry MCP conventions where they exist).
//! - [`outcome`]: `mcp.outcome`, what became of one request element.
//! - [`methods`]: the MCP method catalogue with the revisions that define each method.
//! - [`status`]: the status record a filter sends with its batches (drops by reason).
//! - [`fingerprint`]: the credential fingerprint formats (`hmac-sha256:` / `sha256:` + 12 hex).
//! - [`recovery`]: the marker of event lines a retiring filter could not ship, written to
//!   Envoy's log for `host-collector import`.
//!
//! No proxy-wasm, no async runtime: the filter builds it for wasm32-wasip1, the collector
//! natively. What each side adds (pre-escaped keys on the filter's hot path, lenient parsing on
//! the collector's) is built from these definitions, and `tests/contract.rs` at the workspace
//! root writes lines with the filter and reads them with the collector.

pub mod event;
pub mod fields;
pub mod fingerprint;
pub mod level;
pub mod methods;
pub mod outcome;
pub mod recovery;
pub mod status;

pub use event::EventName;
pub use level::Level;
pub use outcome::Outcome;

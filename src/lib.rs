//! MCP-aware proxy-wasm filter for Envoy.
//!
//! Pure logic lives in plain modules with no proxy-wasm calls (an injected clock and id
//! generator, testable natively); `glue` is the thin layer that implements the proxy-wasm
//! traits and is the only place that talks to the host.

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
pub mod resilience;
pub mod shipping;
pub mod sse;
pub mod stats;
pub mod trace;
pub mod upstream;

#[cfg(target_arch = "wasm32")]
mod glue;

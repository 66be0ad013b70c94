//! MCP-aware proxy-wasm filter for Envoy: this package is what Envoy loads.
//!
//! The logic is `mcp-filter-core` (re-exported here, so `mcp_filter::exchange` and the rest
//! keep their paths), which does not depend on the proxy-wasm SDK: a host call outside
//! [`glue`] does not compile. `glue` implements the SDK's root and HTTP context traits, reads
//! headers, bodies and properties, and applies what the core decides.

pub use mcp_filter_core::*;

#[cfg(target_arch = "wasm32")]
mod glue;

//! Demo MCP peers used by the end-to-end tests of the MCP-aware Envoy filter.
//!
//! The crate owns three binaries (see `src/bin/`): a Streamable HTTP server, a
//! legacy HTTP+SSE server and a scripted client. The library holds what they
//! share: the MCP tool/resource/prompt handler, the HTTP request recorder
//! behind `GET /debug/requests`, the hand-written legacy SSE transport and the
//! client scenarios.
// Test infrastructure: a broken fixture should fail loudly, so unwrap, expect and panic are
// allowed here (the workspace denies them in the product's crates).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod client;
pub mod handler;
pub mod legacy_sse;
pub mod recorder;

/// Installs a stderr tracing subscriber honouring `RUST_LOG` (else `default_filter`).
pub fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

//! `demo-mcp-sse-server`: the demo MCP server over the legacy HTTP+SSE transport.
//!
//! `GET /sse` + `POST /message?sessionId=…`, plus `/healthz` and
//! `/debug/requests` on the same listener.
// Test infrastructure: a broken fixture should fail loudly, so unwrap, expect and panic are
// allowed here (the workspace denies them in the product's crates).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use clap::Parser;
use demo_mcp::{legacy_sse, recorder};

#[derive(Parser, Debug)]
#[command(about = "Demo MCP server (legacy HTTP+SSE, protocol 2024-11-05)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9501")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    demo_mcp::init_tracing("info");
    let args = Args::parse();
    let app = recorder::instrument(legacy_sse::router(), recorder::RequestLog::default());
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "demo-mcp-sse-server listening");
    axum::serve(listener, app).await
}

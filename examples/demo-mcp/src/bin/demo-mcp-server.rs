//! `demo-mcp-server`: the demo MCP server over rmcp's Streamable HTTP transport.
//!
//! Serves MCP on `--path` (default `/mcp`) plus `/healthz` and `/debug/requests`
//! on the same listener.
// Test infrastructure: a broken fixture should fail loudly, so unwrap, expect and panic are
// allowed here (the workspace denies them in the product's crates).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{net::SocketAddr, sync::Arc};

use clap::Parser;
use demo_mcp::{handler::DemoHandler, recorder};
use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};

#[derive(Parser, Debug)]
#[command(about = "Demo MCP server (Streamable HTTP)")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9500")]
    listen: SocketAddr,
    /// HTTP path of the MCP endpoint.
    #[arg(long, default_value = "/mcp")]
    path: String,
    /// Answer POSTs with a single application/json body instead of an SSE stream.
    /// rmcp only honours this in stateless mode, so it implies `--stateless`.
    #[arg(long)]
    json_response: bool,
    /// Do not create sessions (no Mcp-Session-Id; GET and DELETE answer 405).
    #[arg(long)]
    stateless: bool,
}

fn server_config(args: &Args) -> StreamableHttpServerConfig {
    let stateless = args.stateless || args.json_response;
    StreamableHttpServerConfig::default()
        // Behind Envoy the Host header is whatever the test client used.
        .disable_allowed_hosts()
        .with_legacy_session_mode(!stateless)
        .with_json_response(args.json_response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    demo_mcp::init_tracing("info");
    let args = Args::parse();
    let config = server_config(&args);
    let mcp = StreamableHttpService::new(
        || Ok(DemoHandler::new()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let log = recorder::RequestLog::default();
    let app = recorder::instrument(axum::Router::new().nest_service(&args.path, mcp), log);

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, path = %args.path, stateless = args.stateless, json_response = args.json_response, "demo-mcp-server listening");
    // No graceful shutdown: SIGTERM's default action is exactly what the test
    // harness wants, and draining open SSE streams would only delay it.
    axum::serve(listener, app).await
}

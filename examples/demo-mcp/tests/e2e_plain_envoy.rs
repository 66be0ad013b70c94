//! Proves the demo peers and the e2e harness work through a plain Envoy
//! (HTTP connection manager + router, no wasm filter).
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use test_support::demo::{step, DemoClient, DemoKind, DemoServer};
use test_support::envoy::{plain_envoy_yaml, Envoy, EnvoyConfig, Route};
use test_support::paths::free_port;

const AUTH: &str = "authorization: Bearer secret-token";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// Streaming-friendly proxy: no route timeout (SSE streams may idle), long stream idle
/// timeout, no filter but the router.
fn proxy_to(server: &DemoServer) -> Envoy {
    let config = EnvoyConfig {
        routes: &[Route {
            prefix: "/",
            cluster: "upstream",
            rewrite: None,
        }],
        clusters: &[("upstream", server.port)],
        ..EnvoyConfig::default()
    };
    Envoy::start(&plain_envoy_yaml(&config), 1)
}

fn assert_steps_ok(summary: &Value, names: &[&str]) {
    for name in names {
        let step = step(summary, name);
        assert_eq!(step["ok"], true, "step {name} failed: {step:#}");
    }
}

const ALL_STEPS: [&str; 13] = [
    "initialize",
    "notifications/initialized",
    "tools/list",
    "tools/call echo",
    "tools/call add",
    "tools/call fail",
    "tools/call tool_error",
    "tools/call progress",
    "resources/list",
    "resources/read",
    "prompts/list",
    "prompts/get greet",
    "ping",
];

#[test]
fn streamable_all_scenario_through_envoy() {
    let server = DemoServer::start(DemoKind::Streamable {
        json_response: false,
        stateless: false,
    });
    let envoy = proxy_to(&server);

    let url = envoy.url("/mcp");
    let trace_header = format!("traceparent: {TRACEPARENT}");
    let args = [
        "--url",
        &url,
        "--header",
        AUTH,
        "--header",
        &trace_header,
        "--scenario",
        "all",
    ];
    let (status, summary) = DemoClient::run(&args);
    assert!(status.success(), "client failed: {summary:#}");
    assert_steps_ok(&summary, &ALL_STEPS);
    assert_eq!(summary["protocol_version"], "2025-11-25");
    let fail = step(&summary, "tools/call fail");
    assert_eq!(fail["detail"]["code"], -32602, "{fail:#}");
    assert!(fail["request_id"].is_number(), "{fail:#}");

    // The session the client saw is the one the upstream saw, with the credential.
    let session = summary["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    let seen = server.wait_for_request(|r| {
        r["method"] == "POST" && r["path"] == "/mcp" && r["mcp_session_id"] == session.as_str()
    });
    let seen = seen.unwrap_or_else(|| panic!("upstream never saw session {session}"));
    assert_eq!(seen["authorization_present"], true, "{seen:#}");
    assert_eq!(seen["mcp_protocol_version"], "2025-11-25", "{seen:#}");
    // A plain Envoy (no tracing) forwards the client's trace context untouched.
    assert_eq!(seen["traceparent"], TRACEPARENT, "{seen:#}");

    assert!(envoy.stat("http.mcp.downstream_rq_2xx") >= ALL_STEPS.len() as u64);
}

#[test]
fn json_response_server_is_stateless_through_envoy() {
    let server = DemoServer::start(DemoKind::Streamable {
        json_response: true,
        stateless: true,
    });
    let envoy = proxy_to(&server);

    let (status, summary) = DemoClient::run(&["--url", &envoy.url("/mcp"), "--scenario", "all"]);
    assert!(status.success(), "client failed: {summary:#}");
    assert_steps_ok(&summary, &ALL_STEPS);
    assert!(
        summary["session_id"].is_null(),
        "stateless server issued a session: {summary:#}"
    );
}

#[test]
fn batch_is_answered_and_recorded_through_envoy() {
    let server = DemoServer::start(DemoKind::Streamable {
        json_response: false,
        stateless: false,
    });
    let envoy = proxy_to(&server);

    let (status, summary) = DemoClient::run(&["--url", &envoy.url("/mcp"), "--scenario", "batch"]);
    assert!(status.success(), "client failed: {summary:#}");
    let batch = step(&summary, "batch");
    // rmcp follows MCP >= 2025-06-18, which dropped JSON-RPC batches.
    assert_eq!(batch["detail"]["batch_supported"], false, "{batch:#}");
    assert!(
        batch["detail"]["status"].as_u64().is_some_and(|s| s >= 400),
        "{batch:#}"
    );
}

#[test]
fn legacy_sse_scenario_through_envoy() {
    let server = DemoServer::start(DemoKind::LegacySse);
    let envoy = proxy_to(&server);

    let url = envoy.url("/sse");
    let (status, summary) =
        DemoClient::run(&["--url", &url, "--header", AUTH, "--scenario", "sse-legacy"]);
    assert!(status.success(), "client failed: {summary:#}");
    assert_steps_ok(
        &summary,
        &[
            "sse/endpoint",
            "initialize",
            "notifications/initialized",
            "tools/call echo",
            "tools/call fail",
            "tools/list",
        ],
    );
    assert_eq!(summary["protocol_version"], "2024-11-05");

    let session = summary["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    let post = server.wait_for_request(|r| {
        r["method"] == "POST"
            && r["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(&format!("sessionId={session}")))
    });
    assert_eq!(
        post.expect("POST /message recorded")["authorization_present"],
        true
    );
}

#[test]
fn traffic_scenario_counts_calls() {
    let server = DemoServer::start(DemoKind::Streamable {
        json_response: false,
        stateless: false,
    });
    let envoy = proxy_to(&server);

    let args = [
        "--url",
        &envoy.url("/mcp"),
        "--scenario",
        "traffic",
        "--count",
        "5",
    ];
    let (status, summary) = DemoClient::run(&args);
    assert!(status.success(), "client failed: {summary:#}");
    let calls = summary["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("tools/call echo #"))
        })
        .count();
    assert_eq!(calls, 5);
}

#[test]
fn client_reports_failure_when_nothing_listens() {
    let url = format!("http://127.0.0.1:{}/mcp", free_port());
    let (status, summary) =
        DemoClient::run(&["--url", &url, "--scenario", "all", "--timeout-secs", "20"]);
    assert!(!status.success(), "{summary:#}");
    assert_eq!(summary["ok"], false);
}

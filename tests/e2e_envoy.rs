//! End-to-end: a real MCP client (rmcp) -> real Envoy (from the venv) with the built filter ->
//! real MCP servers (rmcp Streamable HTTP; hand-written legacy HTTP+SSE). Asserts the events
//! the filter wrote to Envoy's log field by field, that the trace context reached the server,
//! that no raw credential was logged, and the filter-state mirror in Envoy's access log.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::collections::BTreeSet;
use test_support::demo::{step, DemoClient, DemoKind, DemoServer};
use test_support::envoy::Envoy;
use test_support::envoy::{envoy_yaml, EnvoyConfig, DEMO_ROUTES};
use test_support::http;
use test_support::poll::{wait_until, POLL};

const TOKEN: &str = "e2e-secret-token-41b7";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const FILTER: &str = r#"{"instance": {"source": {"path_prefix": "/mcp/"}, "allowed": ["demo"], "on_missing": "reject"},
 "validation": "reject",
 "arguments": {"capture": true, "max_bytes": 256},
 "min_level": "debug",
 "filter_state": true}"#;

fn start_envoy(upstream: &DemoServer, workers: u32) -> Envoy {
    let config = EnvoyConfig {
        filter: FILTER,
        routes: DEMO_ROUTES,
        clusters: &[("upstream", upstream.port)],
        access_log: true,
        spread_connections: workers > 1,
        ..EnvoyConfig::default()
    };
    Envoy::start(&envoy_yaml(&config), workers)
}

/// Events in Envoy's log, parsed.
fn envoy_events(envoy: &Envoy) -> Vec<Value> {
    envoy
        .log_text()
        .lines()
        .filter_map(|line| line.split_once("mcp_event ").map(|(_, json)| json))
        .map(|json| serde_json::from_str(json).expect("event JSON"))
        .collect()
}

/// Polls Envoy's log until `done` holds for the events (streams end asynchronously).
fn wait_for_events(envoy: &Envoy, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    wait_until(std::time::Duration::from_secs(20), POLL, || {
        let events = envoy_events(envoy);
        done(&events).then_some(events)
    })
    .unwrap_or_else(|| panic!("events never complete; log:\n{}", envoy.log_text()))
}

/// The trace id a reply echoes in `x-mcp-trace-id` (32 hex digits).
fn trace_echo(reply: &http::HttpResponse) -> String {
    let echoed = reply
        .header("x-mcp-trace-id")
        .unwrap_or_else(|| panic!("no x-mcp-trace-id on the {} reply", reply.status));
    assert!(
        echoed.len() == 32 && echoed.bytes().all(|b| b.is_ascii_hexdigit()),
        "{echoed}"
    );
    echoed.to_string()
}

fn responses_for<'a>(events: &'a [Value], method: &str, tool: Option<&str>) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"] == "response" && e["mcp.method.name"] == method)
        .filter(|e| tool.is_none_or(|t| e["gen_ai.tool.name"] == t))
        .collect()
}

#[test]
fn streamable_http_session_through_envoy_with_two_workers() {
    let server = DemoServer::start(DemoKind::Streamable {
        json_response: false,
        stateless: false,
    });
    let envoy = start_envoy(&server, 2);
    let url = envoy.url("/mcp/demo/mcp");
    let auth = format!("authorization: Bearer {TOKEN}");
    let trace = format!("traceparent: {TRACEPARENT}");
    let (status, summary) = DemoClient::run(&[
        "--url",
        &url,
        "--header",
        &auth,
        "--header",
        &trace,
        "--scenario",
        "all",
    ]);
    assert!(status.success(), "client failed: {summary:#}");
    assert_eq!(step(&summary, "tools/call fail")["ok"], true);

    let events = wait_for_events(&envoy, |events| {
        events.iter().filter(|e| e["event"] == "response").count() >= 14
    });

    // Every request element ends in exactly one response, with its own outcome.
    let one = |method: &str, tool: Option<&str>| -> Value {
        let found = responses_for(&events, method, tool);
        assert_eq!(found.len(), 1, "{method} {tool:?}: {found:#?}");
        found[0].clone()
    };
    assert_eq!(one("initialize", None)["mcp.outcome"], "ok");
    assert_eq!(
        one("notifications/initialized", None)["mcp.outcome"],
        "accepted"
    );
    assert_eq!(one("tools/list", None)["mcp.outcome"], "ok");
    assert_eq!(one("tools/call", Some("echo"))["mcp.outcome"], "ok");
    let fail = one("tools/call", Some("fail"));
    assert_eq!(fail["mcp.outcome"], "jsonrpc_error");
    assert_eq!(fail["error.type"], "-32602");
    let tool_error = one("tools/call", Some("tool_error"));
    assert_eq!(tool_error["mcp.outcome"], "tool_error");
    assert_eq!(tool_error["error.type"], "tool_error");
    assert_eq!(one("tools/call", Some("progress"))["mcp.outcome"], "ok");
    assert_eq!(
        one("resources/read", None)["mcp.resource.uri"],
        "demo://readme"
    );
    assert_eq!(one("prompts/get", None)["gen_ai.prompt.name"], "greet");
    assert_eq!(one("ping", None)["mcp.outcome"], "ok");

    // Field by field on one tools/call: request and response share the exchange's context.
    let request = events
        .iter()
        .find(|e| e["event"] == "request" && e["gen_ai.tool.name"] == "echo")
        .expect("request event for echo");
    let response = one("tools/call", Some("echo"));
    for e in [request, &response] {
        assert_eq!(e["instance_id"], "demo");
        assert_eq!(e["trace_id"], TRACE_ID);
        assert_eq!(e["parent_span_id"], "00f067aa0ba902b7");
        assert_eq!(e["mcp.transport"], "streamable_http");
        assert_eq!(e["token_header"], "authorization");
        assert!(e["token"].as_str().unwrap_or("").starts_with("sha256:"));
        assert!(e["mcp.session.id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(e["mcp.protocol.version"].as_str().is_some());
        assert_eq!(e["url.path"], "/mcp/demo/mcp");
    }
    assert_eq!(request["span_id"], response["span_id"]);
    assert_eq!(request["mcp.message.kind"], "request");
    assert!(request["jsonrpc.request.id"].as_str().is_some());
    assert_eq!(
        request["jsonrpc.request.id"],
        response["jsonrpc.request.id"]
    );
    assert_eq!(response["http.response.status_code"], 200);
    assert!(response["duration_ms"].as_f64().is_some_and(|d| d > 0.0));
    assert!(request["gen_ai.tool.call.arguments"].as_str().is_some());

    // The upstream saw our trace: same trace id, the gateway's span as parent.
    let seen = server
        .wait_for_request(|r| r["traceparent"].as_str().is_some())
        .expect("server saw a traceparent");
    let upstream_tp = seen["traceparent"].as_str().unwrap_or("");
    assert!(upstream_tp.contains(TRACE_ID), "{upstream_tp}");
    assert!(
        !upstream_tp.contains("00f067aa0ba902b7"),
        "the gateway hop has its own span"
    );

    // Both workers' VMs have their own source; seq is gap-free per source.
    let mut by_source: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for e in &events {
        by_source
            .entry(e["source"].as_str().unwrap_or("").to_string())
            .or_default()
            .push(e["seq"].as_u64().unwrap_or(0));
    }
    for (source, seqs) in &by_source {
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, &expected, "source {source}");
    }

    // No raw credential anywhere Envoy wrote.
    assert!(!envoy.log_text().contains(TOKEN));
    // The classification is mirrored into filter state, visible to the access log (which
    // Envoy flushes to its file asynchronously, hence the polling).
    let echo_line = |line: &str| {
        serde_json::from_str::<Value>(line).is_ok_and(|l| {
            l["mcp_method"] == "tools/call"
                && l["mcp_tool"] == "echo"
                && l["mcp_trace_id"] == TRACE_ID
        })
    };
    let access = wait_until(std::time::Duration::from_secs(20), POLL, || {
        let access = std::fs::read_to_string(envoy.dir.file("access.log")).unwrap_or_default();
        access.lines().any(echo_line).then_some(access)
    })
    .expect("access log shows the filter state of the echo call");
    assert!(!access.contains(TOKEN));
}

/// The events once the demo client's batch of three has its three `response` events.
fn wait_for_batch_of_three(envoy: &Envoy) -> Vec<Value> {
    wait_for_events(envoy, |events| {
        events
            .iter()
            .filter(|e| e["event"] == "response" && e["jsonrpc.batch.size"] == 3)
            .count()
            == 3
    })
}

/// The `request` events of the batch's elements.
fn batch_requests(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event"] == "request" && e["jsonrpc.batch.size"] == 3)
        .collect()
}

/// 2025-03-26 still had JSON-RPC batches: a batch under it is itemised like any, with the
/// revision on every element and no `protocol.unsupported` (the 2025-06-18 case below is).
#[test]
fn a_2025_03_26_batch_is_in_its_revision() {
    let server = DemoServer::start(DemoKind::Streamable {
        json_response: false,
        stateless: false,
    });
    let envoy = start_envoy(&server, 1);
    let url = envoy.url("/mcp/demo/mcp");
    let (status, summary) = DemoClient::run(&[
        "--url",
        &url,
        "--scenario",
        "batch",
        "--protocol-version",
        "2025-03-26",
    ]);
    assert!(status.success(), "{summary:#}");
    assert_eq!(summary["protocol_version"], "2025-03-26", "{summary:#}");
    let events = wait_for_batch_of_three(&envoy);
    let batch = batch_requests(&events);
    assert_eq!(batch.len(), 3, "{events:#?}");
    for element in &batch {
        assert_eq!(element["mcp.protocol.version"], "2025-03-26", "{element}");
    }
    let methods: BTreeSet<&str> = batch
        .iter()
        .filter_map(|e| e["mcp.method.name"].as_str())
        .collect();
    assert_eq!(
        methods,
        BTreeSet::from([
            "tools/call",
            "tools/list",
            "notifications/roots/list_changed"
        ])
    );
    assert!(
        !events.iter().any(|e| e["event"] == "protocol.unsupported"),
        "batches are in 2025-03-26: {events:#?}"
    );
}

#[test]
fn batch_and_rejections_through_envoy() {
    let server = DemoServer::start(DemoKind::Streamable {
        json_response: false,
        stateless: false,
    });
    let envoy = start_envoy(&server, 1);
    let url = envoy.url("/mcp/demo/mcp");
    let (status, summary) = DemoClient::run(&["--url", &url, "--scenario", "batch"]);
    assert!(status.success(), "{summary:#}");
    let batch_status = step(&summary, "batch")["detail"]["status"].as_u64();

    let events = wait_for_batch_of_three(&envoy);
    let batch = batch_requests(&events);
    let indexes: BTreeSet<u64> = batch
        .iter()
        .filter_map(|e| e["jsonrpc.batch.index"].as_u64())
        .collect();
    assert_eq!(indexes, BTreeSet::from([0, 1, 2]));
    let outcomes: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "response" && e["jsonrpc.batch.size"] == 3)
        .map(|e| &e["http.response.status_code"])
        .collect();
    assert!(
        outcomes.iter().all(|s| s.as_u64() == batch_status),
        "each element carries the batch's HTTP outcome: {outcomes:?} vs {batch_status:?}"
    );
    // The client declares 2025-06-18, which removed batches: itemised all the same, and said.
    assert!(
        events.iter().any(|e| e["event"] == "protocol.unsupported"
            && e["reason"] == "batch_not_in_revision"
            && e["detail"] == "batch (2025-06-18)"),
        "the batch is reported against its revision"
    );

    // Invalid JSON: rejected by the gateway with a JSON-RPC parse error, upstream untouched.
    let before = server.requests().len();
    let reply = http::request(
        "POST",
        &url,
        &[("content-type", "application/json")],
        "{not json",
    )
    .expect("request");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], -32700);
    let rejected_trace = trace_echo(&reply);
    // Unknown instance: 404 with a JSON-RPC error.
    let reply = http::request(
        "POST",
        &envoy.url("/mcp/evil/mcp"),
        &[("content-type", "application/json")],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .expect("request");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"]["code"], -32001);
    let missing_trace = trace_echo(&reply);
    assert_eq!(
        server.requests().len(),
        before,
        "rejected requests never reach the server"
    );
    let events = wait_for_events(&envoy, |events| {
        events.iter().any(|e| e["event"] == "instance.missing")
            && events
                .iter()
                .any(|e| e["event"] == "request.validation.failed")
    });
    let missing = events
        .iter()
        .find(|e| e["event"] == "instance.missing")
        .expect("event");
    // Local replies echo the trace id of the events that record them.
    assert_eq!(missing["trace_id"], missing_trace.as_str());
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "request.validation.failed"
                && e["trace_id"] == rejected_trace.as_str()),
        "the 400's trace id {rejected_trace} is its validation event's"
    );
    assert_eq!(missing["detail"], "evil");
}

/// Legacy HTTP+SSE: GET /sse through the gateway prefix; the endpoint is rewritten so the
/// client posts back through Envoy, and responses on the stream are matched to the POSTs.
/// Two workers with exact connection balance: the GET stream and the POSTs are on different
/// connections, so on different workers; the requests are parked in shared data.
#[test]
fn legacy_http_sse_through_envoy() {
    let server = DemoServer::start(DemoKind::LegacySse);
    let envoy = start_envoy(&server, 2);
    let url = envoy.url("/mcp/demo/sse");
    let (status, summary) = DemoClient::run(&["--url", &url, "--scenario", "sse-legacy"]);
    assert!(status.success(), "{summary:#}");

    let events = wait_for_events(&envoy, |events| {
        responses_for(events, "tools/list", None).len() == 1
    });
    let rewrite = events
        .iter()
        .find(|e| e["event"] == "sse.endpoint.rewrite")
        .expect("endpoint rewritten");
    assert!(rewrite["detail"]
        .as_str()
        .unwrap_or("")
        .contains("-> /mcp/demo/message"));
    let echo = responses_for(&events, "tools/call", Some("echo"));
    assert_eq!(echo.len(), 1);
    assert_eq!(echo[0]["mcp.outcome"], "ok");
    assert_eq!(echo[0]["mcp.transport"], "sse");
    assert!(echo[0]["duration_ms"].as_f64().is_some());
    let echo_request = events
        .iter()
        .find(|e| e["event"] == "request" && e["trace_id"] == echo[0]["trace_id"])
        .expect("the POST's request event");
    assert_ne!(
        echo_request["source"], echo[0]["source"],
        "answered by the GET stream's worker, not the POST's"
    );
    let fail = responses_for(&events, "tools/call", Some("fail"));
    assert_eq!(fail[0]["mcp.outcome"], "jsonrpc_error");
    assert!(server
        .requests()
        .iter()
        .any(|r| r["path"].as_str().unwrap_or("").starts_with("/message")));
}

#[test]
fn tracestate_travels_with_its_traceparent_through_envoy() {
    let server = DemoServer::start(DemoKind::Streamable {
        json_response: true,
        stateless: true,
    });
    let envoy = start_envoy(&server, 1);
    let url = envoy.url("/mcp/demo/mcp");
    let ping = |extra: &[(&str, &str)], meta: &str| {
        let mut headers = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        headers.extend_from_slice(extra);
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{{meta}}}}}"#);
        let before = server.requests().len();
        let reply = http::request("POST", &url, &headers, &body).expect("POST");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let seen = server.requests();
        assert_eq!(seen.len(), before + 1, "one request reached the server");
        seen.last().cloned().expect("recorded")
    };
    let state = ("tracestate", "congo=t61rcWkgMzE");

    let continued = ping(&[("traceparent", TRACEPARENT), state], "");
    assert_eq!(continued["tracestate"], "congo=t61rcWkgMzE", "kept");
    assert!(continued["traceparent"]
        .as_str()
        .is_some_and(|t| t.contains(TRACE_ID)));

    let restarted = ping(&[("traceparent", "00-not-a-valid-parent-01"), state], "");
    assert!(
        restarted["tracestate"].is_null(),
        "dropped with its invalid traceparent: {restarted}"
    );
    assert!(restarted["traceparent"]
        .as_str()
        .is_some_and(|t| t.len() == 55 && !t.contains(TRACE_ID)));

    let meta = r#""_meta":{"traceparent":"00-11111111111111111111111111111111-2222222222222222-01","tracestate":"meta=1"}"#;
    let adopted = ping(&[state], meta);
    assert_eq!(adopted["tracestate"], "meta=1", "the _meta parent's own");
    assert!(adopted["traceparent"]
        .as_str()
        .is_some_and(|t| t.starts_with("00-11111111111111111111111111111111-")));
}

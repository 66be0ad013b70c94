//! End-to-end circuit breaker: real Envoy (2 workers) with the filter in front of the rmcp demo
//! server. The server is stopped: calls fail, the breaker opens once across both workers, and
//! clients get the fast 503 JSON-RPC error without Envoy trying the upstream. The server comes
//! back: after the reset timeout a probe closes the breaker, and the health endpoint shows it.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use test_support::envoy::Envoy;
use test_support::envoy::{envoy_yaml, EnvoyConfig, Route};
use test_support::http;
use test_support::paths::{binary, free_port, TestDir};
use test_support::poll::{wait_until, POLL};
use test_support::process::Proc;

const FILTER: &str = r#"{"upstream": {"breaker": {"failure_threshold": 3, "reset_timeout_ms": 3000, "success_threshold": 1}},
 "health_path": "/.well-known/mcp-gateway/health"}"#;

fn start_envoy(port: u16) -> Envoy {
    let config = envoy_yaml(&EnvoyConfig {
        filter: FILTER,
        routes: &[Route {
            prefix: "/",
            cluster: "demo",
            rewrite: None,
        }],
        clusters: &[("demo", port)],
        route_timeout: "5s",
        ..EnvoyConfig::default()
    });
    Envoy::start(&config, 2)
}

/// The stateless demo server on a fixed port, so it can be stopped and started again.
fn start_server(port: u16, dir: &TestDir) -> Proc {
    let mut command = Command::new(binary("demo-mcp-server"));
    command.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--stateless",
        "--json-response",
    ]);
    let mut proc = Proc::spawn("demo-mcp-server", command, &dir.path).expect("spawn");
    let health = format!("http://127.0.0.1:{port}/healthz");
    wait_until(Duration::from_secs(30), POLL, || {
        proc.assert_running();
        matches!(http::get(&health), Ok((200, _)))
    })
    .expect("demo server healthy");
    proc
}

fn call(envoy: &Envoy, id: u64) -> http::HttpResponse {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hi"}}}}}}"#
    );
    http::request(
        "POST",
        &envoy.url("/mcp"),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        &body,
    )
    .expect("request")
}

fn events(envoy: &Envoy) -> Vec<Value> {
    envoy
        .log_text()
        .lines()
        .filter_map(|l| l.split_once("mcp_event ").map(|(_, j)| j))
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect()
}

fn count(envoy: &Envoy, name: &str) -> usize {
    events(envoy).iter().filter(|e| e["event"] == name).count()
}

#[test]
fn breaker_opens_fails_fast_and_recovers_through_envoy() {
    let dir = TestDir::new("breaker");
    let port = free_port();
    let mut server = start_server(port, &dir);
    let envoy = start_envoy(port);

    assert_eq!(call(&envoy, 1).status, 200, "healthy upstream");

    server.stop();
    // Failures: Envoy's own 503 (connection refused), from whichever worker takes them.
    let mut failures = 0;
    let opened = wait_until(Duration::from_secs(30), POLL, || {
        let reply = call(&envoy, 100 + failures);
        failures += 1;
        (reply.status == 503 && reply.header("retry-after").is_some()).then_some(reply)
    })
    .expect("the breaker opens");
    assert!(
        failures <= 4,
        "opened after the threshold: {failures} calls"
    );
    let body = opened.json();
    assert_eq!(body["error"]["code"], -32003);
    let echoed = opened.header("x-mcp-trace-id").unwrap_or_default();
    assert!(
        echoed.len() == 32 && echoed.bytes().all(|b| b.is_ascii_hexdigit()),
        "the breaker's 503 echoes the trace id: {echoed:?}"
    );
    assert_eq!(body["id"], 100 + failures - 1, "the request's own id");

    // While open, calls are answered by the filter: the cluster sees no new attempts.
    let attempts = |envoy: &Envoy| {
        envoy.stat("cluster.demo.upstream_rq_total")
            + envoy.stat("cluster.demo.upstream_cx_connect_fail")
    };
    let before = attempts(&envoy);
    for id in 0..5 {
        assert_eq!(call(&envoy, 200 + id).status, 503);
    }
    assert_eq!(
        attempts(&envoy),
        before,
        "fail fast: the upstream is not touched"
    );
    let (status, health_body) =
        http::get(&envoy.url("/.well-known/mcp-gateway/health")).expect("health");
    assert_eq!(status, 503);
    let health: Value = serde_json::from_str(&health_body).expect("health JSON");
    assert_eq!(health["upstreams"][0]["state"], "open");
    assert_eq!(health["upstreams"][0]["instance"], "demo");

    // Recovery: the server is back; after the reset timeout a probe closes the breaker.
    server = start_server(port, &dir);
    let recovered = wait_until(Duration::from_secs(30), POLL, || {
        (call(&envoy, 300).status == 200).then_some(())
    });
    assert!(recovered.is_some(), "calls succeed again");
    let (status, health_body) =
        http::get(&envoy.url("/.well-known/mcp-gateway/health")).expect("health");
    assert_eq!(status, 200, "{health_body}");

    let all = wait_until(Duration::from_secs(10), POLL, || {
        (count(&envoy, "circuit.closed") == 1).then(|| events(&envoy))
    })
    .expect("closed announced");
    let named = |n: &str| all.iter().filter(|e| e["event"] == n).count();
    assert_eq!(named("circuit.opened"), 1, "once across both workers");
    assert_eq!(named("circuit.half_opened"), 1);
    assert_eq!(named("circuit.closed"), 1);
    assert!(named("circuit.rejected") >= 6);
    let opened = all
        .iter()
        .find(|e| e["event"] == "circuit.opened")
        .expect("opened");
    assert_eq!(opened["reason"], "consecutive_failures");
    wait_until(Duration::from_secs(5), POLL, || {
        (stat(&envoy, "mcp_filter_upstream.demo.rejections") >= 6).then_some(())
    })
    .expect("per-upstream stats reported");
    drop(server);
}

fn stat(envoy: &Envoy, suffix: &str) -> u64 {
    envoy
        .stats()
        .iter()
        .filter(|(k, _)| k.ends_with(suffix))
        .map(|(_, v)| *v)
        .sum()
}

/// Concurrent load on 2 workers: every call is counted once in the shared record, and the
/// CAS conflicts it took are reported (a figure for the closing note).
#[test]
fn concurrent_load_counts_every_call_once() {
    let dir = TestDir::new("breaker-load");
    let port = free_port();
    let _server = start_server(port, &dir);
    let envoy = start_envoy(port);
    const THREADS: u64 = 4;
    const CALLS: u64 = 250;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let envoy = &envoy;
            scope.spawn(move || {
                for i in 0..CALLS {
                    assert_eq!(call(envoy, t * CALLS + i).status, 200);
                }
            });
        }
    });
    let total = THREADS * CALLS;
    let health = wait_until(Duration::from_secs(10), POLL, || {
        let (_, body) = http::get(&envoy.url("/.well-known/mcp-gateway/health")).ok()?;
        let health: Value = serde_json::from_str(&body).ok()?;
        (health["upstreams"][0]["successes"] == total).then_some(health)
    })
    .expect("every call counted exactly once in the shared record");
    assert_eq!(health["upstreams"][0]["failures"], 0);
    let settled = wait_until(Duration::from_secs(5), POLL, || {
        let requests = stat(&envoy, "mcp_filter_upstream.demo.requests");
        (requests == total).then_some(requests)
    });
    assert!(
        settled.is_some(),
        "per-upstream request stats add up across workers"
    );
    let retries = stat(&envoy, "mcp_filter_cas_retries");
    let lost = stat(&envoy, "mcp_filter_cas_lost_updates");
    println!(
        "CAS under load (2 workers, {THREADS} clients, {total} calls): {:.1} retries and {:.1} lost updates per 1000 requests",
        retries as f64 * 1000.0 / total as f64,
        lost as f64 * 1000.0 / total as f64
    );
    assert_eq!(lost, 0);
}

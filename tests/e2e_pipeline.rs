//! End-to-end pipeline: real MCP client (rmcp) -> real Envoy (2 workers) + filter -> real MCP
//! server, with the filter shipping events to host-collector on real MariaDB. Checks that every
//! request's events land in `mcp_gateway_log` with matching trace ids, methods and tools, that
//! no raw credential is stored, and that stopping the collector for a while neither disturbs
//! traffic nor loses events: sent = stored + counted drops, exactly. A second test replaces
//! the filter's configuration through LDS and checks the retired one ships its buffer. A
//! third ships to a collector serving TLS, through Envoy's upstream TLS.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::time::Duration;
use test_support::collector::{Collector, COLLECTOR_TOKEN};
use test_support::db::TestDb;
use test_support::demo::{DemoClient, DemoKind, DemoServer};
use test_support::envoy::Envoy;
use test_support::envoy::{envoy_yaml, EnvoyConfig, Route};
use test_support::http;
use test_support::poll::{wait_until, POLL};

const TOKEN: &str = "pipeline-client-secret-9c2e";
const TRACE_ID: &str = "5bf92f3577b34da6a3ce929d0e0e4737";
const TRACEPARENT: &str = "00-5bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b8-01";

/// Envoy (the demo server under `/mcp/demo/`) with the filter shipping to the collector;
/// `shipping` adds settings to the filter's `collector` section.
fn envoy_config(shipping: &str, upstream_port: u16, collector_port: u16) -> String {
    let filter = format!(
        r#"{{"instance": {{"source": {{"path_prefix": "/mcp/"}}, "allowed": ["demo"]}},
 "collector": {{"cluster": "collector", "authority": "collector", "token": "{COLLECTOR_TOKEN}",
               "timeout_ms": 2000, {shipping}}}}}"#
    );
    envoy_yaml(&EnvoyConfig {
        filter: &filter,
        routes: &[Route {
            prefix: "/mcp/demo/",
            cluster: "upstream",
            rewrite: Some("/"),
        }],
        clusters: &[("upstream", upstream_port), ("collector", collector_port)],
        ..EnvoyConfig::default()
    })
}

#[test]
fn events_reach_mariadb_and_survive_a_collector_outage() {
    let db = TestDb::create("e2e");
    let mut collector = Collector::start_pipeline(&db.url(), &[]);
    let server = DemoServer::start(DemoKind::Streamable {
        json_response: false,
        stateless: false,
    });
    let config = envoy_config(
        r#""flush_interval_ms": 200, "backoff_initial_ms": 100, "backoff_max_ms": 1000"#,
        server.port,
        collector.port,
    );
    let envoy = Envoy::start(&config, 2);
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
    assert!(status.success(), "{summary:#}");
    let responses =
        |db: &TestDb| db.count("SELECT COUNT(*) FROM mcp_gateway_log WHERE event = 'response'");
    wait_until(Duration::from_secs(30), POLL, || responses(&db) >= 15)
        .unwrap_or_else(|| panic!("responses stored: {}\n{}", responses(&db), collector.logs()));

    // Rows carry the classification and the client's trace.
    let tools = db.query(
        "SELECT tool_name, JSON_VALUE(log, '$.\"mcp.outcome\"') FROM mcp_gateway_log \
         WHERE event = 'response' AND mcp_method = 'tools/call' ORDER BY tool_name",
    );
    for expected in ["echo\tok", "fail\tjsonrpc_error", "tool_error\ttool_error"] {
        assert!(
            tools.lines().any(|l| l == expected),
            "{expected} in\n{tools}"
        );
    }
    let other_traces = db.count(&format!(
        "SELECT COUNT(*) FROM mcp_gateway_log WHERE event IN ('request','response') \
         AND mcp_method IS NOT NULL AND trace_id <> '{TRACE_ID}'"
    ));
    assert_eq!(
        other_traces, 0,
        "every classified event carries the client's trace id"
    );
    assert_eq!(
        db.count("SELECT COUNT(*) FROM mcp_gateway_log WHERE instance_id <> 'demo'"),
        0
    );
    let token_rows = db
        .query("SELECT DISTINCT token_header, token FROM mcp_gateway_log WHERE token IS NOT NULL");
    assert!(
        token_rows.starts_with("authorization\tsha256:"),
        "{token_rows}"
    );
    assert_eq!(
        db.count(&format!("SELECT COUNT(*) FROM mcp_gateway_log WHERE log LIKE '%{TOKEN}%' OR token LIKE '%{TOKEN}%'")),
        0,
        "no raw credential anywhere in the table"
    );

    // The collector goes away; traffic must not notice.
    assert_eq!(
        collector.kill_with("TERM"),
        Some(0),
        "drained and exited cleanly"
    );
    let (status, summary) = DemoClient::run(&[
        "--url",
        &url,
        "--header",
        &auth,
        "--scenario",
        "traffic",
        "--count",
        "20",
    ]);
    assert!(status.success(), "traffic during the outage: {summary:#}");
    let before_restart = responses(&db);
    // Batches were attempted against the stopped collector (and will be retried).
    let failed_connects = || envoy.stat("cluster.collector.upstream_cx_connect_fail");
    wait_until(Duration::from_secs(10), POLL, || failed_connects() > 0)
        .expect("the filter tried the collector while it was down");
    collector.restart();
    let echo_calls = |db: &TestDb| {
        db.count(
            "SELECT COUNT(*) FROM mcp_gateway_log WHERE event = 'response' AND tool_name = 'echo'",
        )
    };
    wait_until(Duration::from_secs(30), POLL, || echo_calls(&db) >= 21).unwrap_or_else(|| {
        panic!(
            "echo responses after restart: {}\n{}",
            echo_calls(&db),
            collector.logs()
        )
    });
    assert!(responses(&db) > before_restart);

    // sent = stored + counted drops, exactly, per source: wait until every VM has shipped
    // all it emitted (the buffers drain on the next flush).
    let identity = || {
        let emitted = envoy.stat_sum("mcp_filter_events_emitted");
        let dropped = envoy.stat_sum("mcp_filter_events_dropped_buffer_full")
            + envoy.stat_sum("mcp_filter_events_dropped_callout_failed")
            + envoy.stat_sum("mcp_filter_events_dropped_rejected_by_collector");
        let stored = db.count("SELECT COUNT(*) FROM mcp_gateway_log");
        (emitted > 0 && emitted == stored + dropped).then_some((emitted, stored, dropped))
    };
    let (emitted, stored, dropped) = wait_until(Duration::from_secs(30), POLL, identity)
        .unwrap_or_else(|| {
            panic!(
                "identity never held: emitted {} stored {}",
                envoy.stat_sum("mcp_filter_events_emitted"),
                db.count("SELECT COUNT(*) FROM mcp_gateway_log")
            )
        });
    assert_eq!(
        dropped, 0,
        "the outage fit in the filter's buffer: nothing had to be dropped"
    );
    assert_eq!(emitted, stored);
    // And per source, seqs are 1..=max with no gap and no duplicate.
    let per_source = db.query("SELECT source, COUNT(*), COUNT(DISTINCT seq), MAX(seq) FROM mcp_gateway_log GROUP BY source");
    for line in per_source.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols[1], cols[3], "source {}: rows = max seq", cols[0]);
        assert_eq!(cols[1], cols[2], "source {}: no duplicates", cols[0]);
    }
    let query = http::request(
        "GET",
        &format!(
            "http://127.0.0.1:{}/v1/logs?trace_id={TRACE_ID}&event=response&limit=100",
            collector.port
        ),
        &[("authorization", &format!("Bearer {COLLECTOR_TOKEN}"))],
        "",
    )
    .expect("query API");
    assert_eq!(query.status, 200, "{}", query.body);
    let found: Value = query.json();
    assert!(found.to_string().contains("tools/call"), "{found}");
}

/// When Envoy replaces the filter's configuration (a listener update from LDS), it retires
/// the old plugin's root contexts with `on_done`; the filter must ship what it buffered
/// before saying done. The old configuration flushes only every 10 minutes and never by
/// count, so these events can only reach the database through that final drain.
#[test]
fn a_replaced_filter_configuration_ships_its_buffer_before_retiring() {
    let db = TestDb::create("reconfigure");
    let collector = Collector::start_pipeline(&db.url(), &[]);
    let server = DemoServer::start(DemoKind::Streamable {
        json_response: true,
        stateless: true,
    });
    let listener = |flush_interval_ms: u64| {
        let shipping = format!(
            r#""flush_interval_ms": {flush_interval_ms}, "max_batch_events": 100000, "max_batch_bytes": 4194304"#
        );
        test_support::envoy::split_for_lds(&envoy_config(&shipping, server.port, collector.port))
    };
    let (bootstrap, lds) = listener(600_000);
    let envoy = Envoy::start_with(
        &bootstrap,
        2,
        &["--drain-time-s", "1"],
        &[("lds.yaml", &lds)],
    );
    let url = envoy.url("/mcp/demo/mcp");
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    for _ in 0..10 {
        let reply = http::post(&url, &headers, call).expect("POST");
        let (status, body) = (reply.status, reply.body);
        assert_eq!(status, 200, "{body}");
    }
    // An exchange's last event can be emitted after its client has the response: read the
    // count once it has stopped moving (unchanged for half a second).
    let mut last = (0, 0);
    let emitted = wait_until(Duration::from_secs(10), POLL, || {
        let emitted = envoy.stat_sum("mcp_filter_events_emitted");
        last = if emitted == last.0 {
            (emitted, last.1 + 1)
        } else {
            (emitted, 0)
        };
        (emitted >= 10 && last.1 >= 10).then_some(emitted)
    })
    .expect("events emitted");
    assert_eq!(
        envoy.stat_sum("mcp_filter_events_shipped"),
        0,
        "held by the old config"
    );
    assert_eq!(db.rows(), 0);

    let (_, replacement) = listener(600_001);
    envoy.replace_file("lds.yaml", &replacement);
    let stored = wait_until(Duration::from_secs(30), POLL, || {
        let stored = db.rows();
        (stored >= emitted).then_some(stored)
    });
    assert_eq!(
        stored,
        Some(emitted),
        "the retired configuration shipped its {emitted} buffered events\n{}",
        envoy.log_text()
    );
    // Envoy writes its log file in the background: poll for the filter's line.
    assert!(
        wait_until(Duration::from_secs(20), POLL, || envoy
            .log_text()
            .contains("VM retiring, shipping"))
        .is_some(),
        "the retiring VMs said so"
    );
    assert_eq!(
        envoy.stat_sum("mcp_filter_events_dropped_callout_failed"),
        0
    );
    let status = http::post(&url, &headers, call).expect("POST").status;
    assert_eq!(status, 200, "the new configuration serves");
}

/// The collector serves TLS (`--tls-cert`/`--tls-key`, a certificate made here with openssl);
/// Envoy reaches it with an upstream TLS context that trusts it. Every event arrives; plain
/// HTTP to the same port gets no answer.
#[test]
fn events_reach_a_collector_serving_tls() {
    let dir = test_support::paths::TestDir::new("tls");
    let made = test_support::tls::self_signed(&dir.path);
    let (cert, key) = (
        made.cert.display().to_string(),
        made.key.display().to_string(),
    );
    let db = TestDb::create("tls");
    let collector = Collector::start_pipeline(&db.url(), &["--tls-cert", &cert, "--tls-key", &key]);
    let plain = http::get(&format!("http://127.0.0.1:{}/health", collector.port));
    assert!(
        plain.is_err(),
        "plain HTTP gets no answer from the TLS listener: {plain:?}"
    );

    let server = DemoServer::start(DemoKind::Streamable {
        json_response: true,
        stateless: true,
    });
    let envoy = test_support::pipeline::start_envoy(
        server.port,
        collector.port,
        &test_support::pipeline::EnvoyOptions {
            collector_tls_ca: Some(cert),
            ..test_support::pipeline::EnvoyOptions::default()
        },
    );
    let url = envoy.url("/mcp/demo/mcp");
    for id in 0..5 {
        let reply = http::post(
            &url,
            test_support::pipeline::MCP_HEADERS,
            test_support::pipeline::echo_call(id, "over tls"),
        )
        .expect("request");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let shipped = wait_until(Duration::from_secs(30), POLL, || {
        let counts = test_support::pipeline::FilterCounts::read(&envoy);
        (counts.emitted >= 10 && counts.emitted == db.rows()).then_some(counts)
    });
    let counts = shipped.unwrap_or_else(|| {
        panic!(
            "events never arrived over TLS: {:?}, {} rows\n{}",
            test_support::pipeline::FilterCounts::read(&envoy),
            db.rows(),
            collector.logs()
        )
    });
    assert_eq!(counts.dropped(), 0);
}

//! Loss accounting and MCP operation metrics end to end over HTTP (SQLite): two sources, one
//! with a seq lost in transit, a duplicate, a filter status record, a late arrival and a
//! source beyond `--max-sources`; checks `GET /v1/accounting` and the `/metrics` text. And
//! two collectors on one MariaDB, each given part of a source's events: the accounting from
//! the store is the same, and right, whichever answers.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::json;
use test_support::collector::*;
use test_support::db::with_mariadb;
use test_support::http;
use test_support::poll::eventually;

fn status(source: &str, buffer_full: u64, emitted: u64) -> String {
    format!(
        r#"{{"kind":"status","source":"{source}","ts":"2026-11-22T02:53:34Z","dropped":{{"buffer_full":{buffer_full},"callout_failed":0,"rejected_by_collector":0}},"emitted":{emitted}}}"#
    )
}

fn response(source: &str, seq: u64, tool: &str, outcome: &str, extra: &str) -> String {
    event(
        source,
        seq,
        &format!(
            r#","instance_id":"i1","mcp.method.name":"tools/call","gen_ai.tool.name":"{tool}","mcp.outcome":"{outcome}"{extra}"#
        ),
    )
    .replace(r#""event":"request""#, r#""event":"response""#)
}

fn body(lines: &[String]) -> Vec<u8> {
    (lines.join("\n") + "\n").into_bytes()
}

async fn accounting(running: &host_collector::app::Running) -> serde_json::Value {
    let reply = get(running.addr, "/v1/accounting").await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json()
}

fn source<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["source"] == name))
        .unwrap_or_else(|| panic!("{name} missing in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounting_and_red_metrics_over_http() {
    let db = TempSqlite::new();
    let running = start(&db.url(), &["--max-sources", "2", "--max-tool-labels", "1"]).await;

    // vm-a emitted 5: seq 5 dropped by the filter, seq 3 still in transit.
    let first = body(&[
        event("vm-a", 1, ""),
        event("vm-a", 2, ""),
        event("vm-a", 4, ""),
        status("vm-a", 1, 5),
        response("vm-b", 1, "echo", "ok", r#","duration_ms":30"#),
        response(
            "vm-b",
            2,
            "sum",
            "jsonrpc_error",
            r#","error.type":"-32602","duration_ms":700"#,
        ),
    ]);
    assert_eq!(post(running.addr, first).await.json()["accepted"], 5);
    let again = post(running.addr, body(&[event("vm-a", 2, "")])).await;
    assert_eq!(again.json()["duplicates"], 1);

    let report = accounting(&running).await;
    assert_eq!(
        source(&report, "vm-a"),
        &json!({
            "source": "vm-a", "events": 3, "highest_seq": 4, "gaps": 1, "duplicates": 1,
            "dead_letters": 0,
            "filter_dropped": {"buffer_full": 1, "callout_failed": 0, "rejected_by_collector": 0},
            "emitted": 5, "unaccounted": 1
        })
    );
    let vm_b = source(&report, "vm-b");
    assert_eq!(
        (vm_b["gaps"].as_u64(), vm_b["emitted"].as_u64()),
        (Some(0), None)
    );
    assert_eq!(vm_b["unaccounted"], serde_json::Value::Null);

    // The late seq 3 closes the gap and the books balance; a third source folds.
    let late = body(&[event("vm-a", 3, ""), event("vm-c", 1, "")]);
    assert_eq!(post(running.addr, late).await.json()["accepted"], 2);
    let report = accounting(&running).await;
    let vm_a = source(&report, "vm-a");
    assert_eq!(
        (vm_a["gaps"].as_u64(), vm_a["unaccounted"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(report["_other"]["events"], 1);
    assert_eq!(report["totals"]["events"], 7);
    assert_eq!(report["totals"]["sources"], 2);
    assert_eq!(report["max_sources"], 2);

    let samples = [
        (r#"collector_source_events_total{source="vm-a"}"#, 4.0),
        (r#"collector_source_events_total{source="_other"}"#, 1.0),
        (r#"collector_source_duplicates_total{source="vm-a"}"#, 1.0),
        (r#"collector_source_gaps{source="vm-a"}"#, 0.0),
        (r#"collector_source_highest_seq{source="vm-b"}"#, 2.0),
        (r#"collector_source_filter_emitted{source="vm-a"}"#, 5.0),
        (r#"collector_source_unaccounted{source="vm-a"}"#, 0.0),
        (
            r#"collector_source_filter_dropped{source="vm-a",reason="buffer_full"}"#,
            1.0,
        ),
        (
            r#"mcp_server_operations_total{instance="i1",method="tools/call",tool="echo",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"mcp_server_operations_total{instance="i1",method="tools/call",tool="_other",outcome="jsonrpc_error"}"#,
            1.0,
        ),
        (
            r#"mcp_server_operation_errors_total{instance="i1",method="tools/call",tool="_other",error_type="-32602"}"#,
            1.0,
        ),
        (
            r#"mcp_server_operation_duration_seconds_bucket{le="0.05",instance="i1",method="tools/call",tool="echo"}"#,
            1.0,
        ),
        (
            r#"mcp_server_operation_duration_seconds_bucket{le="0.5",instance="i1",method="tools/call",tool="_other"}"#,
            0.0,
        ),
        (
            r#"mcp_server_operation_duration_seconds_bucket{le="1.0",instance="i1",method="tools/call",tool="_other"}"#,
            1.0,
        ),
    ];
    for (sample, value) in samples {
        assert_eq!(metric(&running, sample).await, Some(value), "{sample}");
    }
    assert_eq!(
        metric(&running, r#"collector_source_unaccounted{source="vm-b"}"#).await,
        None,
        "no gauge while emitted is unknown"
    );

    let unauthenticated = http::request_at(running.addr, "GET", "/v1/accounting", &[], Vec::new())
        .await
        .expect("request");
    assert_eq!(unauthenticated.status, 401);
    running.shutdown().await;
}

/// Two collectors on the database at `url`, a source's events split between them.
async fn two_collectors_answer_the_same_accounting_from_the_store(url: String) {
    let flags = ["--status-flush-interval", "100ms"];
    let a = start(&url, &flags).await;
    let b = start(&url, &flags).await;
    // Envoy balanced vm-a's batches: seqs 1-3 and its status record to A, 5-6 to B;
    // seq 4 was dropped by the filter (buffer_full 1).
    let to_a = body(&[
        event("vm-a", 1, ""),
        event("vm-a", 2, ""),
        event("vm-a", 3, ""),
        status("vm-a", 1, 6),
    ]);
    assert_eq!(post(a.addr, to_a).await.json()["accepted"], 3);
    assert_eq!(
        post(b.addr, events("vm-a", 5..=6)).await.json()["accepted"],
        2
    );
    wait_persisted(&a, 3).await;
    wait_persisted(&b, 2).await;

    let from_store = |running: &host_collector::app::Running| {
        let addr = running.addr;
        async move {
            let reply = get(addr, "/v1/accounting?from=store").await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            reply.json()
        }
    };
    eventually(
        "A's status merged into the store",
        Duration::from_secs(20),
        || async { from_store(&b).await["sources"][0]["emitted"] == 6 },
    )
    .await;
    let expected = json!({
        "source": "vm-a", "events": 5, "highest_seq": 6, "gaps": 1, "duplicates": 0,
        "dead_letters": 0, "filter_dropped": {"buffer_full": 1, "callout_failed": 0,
        "rejected_by_collector": 0}, "emitted": 6, "unaccounted": 0
    });
    for running in [&a, &b] {
        let report = from_store(running).await;
        assert_eq!(report["from"], "store");
        assert_eq!(source(&report, "vm-a"), &expected, "{report}");
        assert_eq!(report["totals"]["unaccounted"], 0);
    }
    // Each collector's own view sees only its part.
    assert_eq!(source(&accounting(&b).await, "vm-a")["events"], 2);
    let bad = get(a.addr, "/v1/accounting?from=elsewhere").await;
    assert_eq!(bad.status, 400);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_on_one_mariadb_answer_the_same_accounting_from_the_store() {
    with_mariadb(|db| async move {
        two_collectors_answer_the_same_accounting_from_the_store(db.url()).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_on_one_postgres_answer_the_same_accounting_from_the_store() {
    let db = test_support::db::TestPg::create("accounting");
    two_collectors_answer_the_same_accounting_from_the_store(db.url()).await;
}

//! Floods: ingest above the write rate until the collector's queue budget is hit.

use std::time::Duration;

use serde_json::{json, Value};
use test_support::collector::{sum_metric, Collector, COLLECTOR_TOKEN};
use test_support::db::{DbProxy, TestDb};
use test_support::http;
use test_support::pipeline::{figures, one_at_a_time};
use test_support::poll::wait_until;

use crate::assert_no_duplicate_seqs;

/// `VmRSS` / `VmHWM` of a process, in bytes.
fn memory_of(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// A ~450-byte `response` event, like the filter's.
fn flood_event(seq: u64) -> String {
    format!(
        r#"{{"ts":"2026-11-22T02:53:34.{:06}Z","source":"flood-vm","seq":{seq},"event":"response","level":"info","message":"tools/call completed","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","instance_id":"demo","mcp.method.name":"tools/call","gen_ai.tool.name":"search_documents","token_header":"authorization","token":"sha256:9f86d081884c","jsonrpc.request.id":"{seq}","mcp.session.id":"3c9a1f2e-5d4b-4a7e-9c1d-2b8e7f6a5c4d","rpc.response.status_code":200,"duration_ms":12.5}}"#,
        seq % 1_000_000
    )
}

/// The database is cut and the collector (a 16 MiB queue budget) is sent about 3x its budget:
/// the queue stays within the budget, memory within budget plus a stated overhead, the spool
/// on disk within about the queue's size, every eviction is counted, and once the database is
/// back exactly the newest events are stored, in order (the batch being written when the
/// budget ran out is the oldest and is evicted first).
#[test]
fn flood_above_the_write_rate_keeps_the_budget_and_the_newest_events() {
    let _serial = one_at_a_time();
    const BUDGET: u64 = 16 * 1024 * 1024;
    const PER_REQUEST: u64 = 200;
    const REQUESTS: u64 = 300; // 60 000 events, ~51 MiB charged: about 3x the budget
    let db = TestDb::create("flood");
    let proxy = DbProxy::mariadb();
    let collector =
        Collector::start_pipeline(&db.url_via(proxy.port), &["--queue-budget", "16MiB"]);
    proxy.cut();
    let pid = collector.pid();
    let idle_rss = memory_of(pid, "VmRSS:");
    let url = format!("http://127.0.0.1:{}/v1/logs", collector.port);
    let auth = format!("Bearer {COLLECTOR_TOKEN}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/x-ndjson"),
    ];
    let (mut accepted, mut max_queue, mut max_spool) = (0u64, 0u64, 0u64);
    for request in 0..REQUESTS {
        let first = request * PER_REQUEST + 1;
        let body: String = (first..first + PER_REQUEST)
            .map(|seq| flood_event(seq) + "\n")
            .collect();
        let reply = http::post(&url, &headers, body).expect("POST");
        assert_eq!(reply.status, 200, "{}", reply.body);
        let reply: Value = serde_json::from_str(&reply.body).expect("JSON reply");
        accepted += reply["accepted"].as_u64().unwrap_or(0);
        if request % 20 == 19 {
            let metrics = collector.metrics();
            max_queue = max_queue.max(sum_metric(&metrics, "collector_queue_bytes", ""));
            max_spool = max_spool.max(sum_metric(&metrics, "collector_spool_bytes", ""));
        }
    }
    let sent = REQUESTS * PER_REQUEST;
    let peak_rss = memory_of(pid, "VmHWM:");
    let dropped = collector.metric("collector_dropped_events_total", "reason=\"queue_full\"");
    let held = collector.metric("collector_queue_entries", "");
    proxy.restore();
    // The batch the writer was failing to write when the flood ended settles now: its evicted
    // events are stored if this write succeeds, dropped if it failed first.
    let dropped_now =
        || collector.metric("collector_dropped_events_total", "reason=\"queue_full\"");
    let drained = wait_until(Duration::from_secs(120), Duration::from_millis(250), || {
        collector.metric("collector_queue_entries", "") == 0 && db.rows() + dropped_now() == sent
    })
    .is_some();
    let stored = db.rows();
    let dropped_final = dropped_now();
    let seqs_in_write_order: Vec<u64> = db
        .query("SELECT seq FROM mcp_gateway_log ORDER BY id")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    // Drop-oldest is strict (the batch in flight is the oldest and is evicted first): what
    // survives is exactly the newest events.
    let newest_from = sent - stored + 1;
    let spool_left = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        collector.metric("collector_spool_bytes", "") == 0
    })
    .is_some();
    let overhead = peak_rss.saturating_sub(idle_rss);
    figures(
        "flood_above_write_rate",
        json!({
            "budget_bytes": BUDGET,
            "events_sent": sent,
            "accepted": accepted,
            "dropped_queue_full": dropped,
            "held_at_end_of_flood": held,
            "dropped_after_restore": dropped_final,
            "stored_after_restore": stored,
            "stored_newest_from_seq": newest_from,
            "max_queue_bytes": max_queue,
            "max_spool_bytes": max_spool,
            "idle_rss_bytes": idle_rss,
            "peak_rss_bytes": peak_rss,
            "rss_growth_over_budget": overhead as f64 / BUDGET as f64,
        }),
    );
    assert_eq!(accepted, sent, "ingest never refuses while the queue sheds");
    assert!(dropped > 0, "the flood exceeded the budget");
    assert_eq!(
        held + dropped,
        sent,
        "every event is held or counted as dropped"
    );
    assert!(max_queue <= BUDGET, "queue {max_queue} over budget");
    assert!(
        overhead <= BUDGET * 3 / 2 + 24 * 1024 * 1024,
        "RSS grew {overhead} bytes: more than 1.5x the budget plus 24 MiB (runtime, HTTP buffers, debug build)"
    );
    assert!(
        max_spool <= 2 * BUDGET + 16 * 1024 * 1024,
        "spool {max_spool} bytes: more than twice the budget plus one segment"
    );
    assert!(
        drained,
        "stored {stored} + dropped {dropped_final} of {sent} events"
    );
    assert!(
        dropped_final >= dropped && dropped_final - dropped <= 1000,
        "only the batch in flight (at most --batch-max-rows) settles after the flood"
    );
    assert_eq!(
        seqs_in_write_order,
        (newest_from..=sent).collect::<Vec<u64>>(),
        "drop-oldest kept exactly the newest events, in order"
    );
    assert_no_duplicate_seqs(&db);
    assert!(spool_left, "the spool empties once everything is written");
}

//! The ingest and query contract end to end over HTTP, against SQLite and a real MariaDB:
//! round trip, partial success, dedupe (ingest window and store unique key), status records,
//! token fingerprints, query filters and pagination, auth, content type and size limits.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use test_support::collector::*;
use test_support::db::*;
use test_support::http;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn mixed_batch() -> Vec<u8> {
    let lines = [
        event("vm-a", 1, &format!(r#","trace_id":"{TRACE}","gen_ai.tool.name":"echo","instance_id":"i1""#)),
        event("vm-a", 2, &format!(r#","trace_id":"{TRACE}","gen_ai.tool.name":"sum","token":"Bearer raw-credential","token_header":"Authorization""#)),
        String::new(),
        r#"{"source":"vm-a","seq":99}"#.to_string(),
        event("vm-a", 3, r#","gen_ai.tool.name":"echo","mcp.method.name":"tools/call""#),
        event("vm-a", 2, ""),
        r#"{"kind":"status","source":"vm-a","ts":"2026-11-22T02:53:34.000001Z","dropped":{"buffer_full":7,"callout_failed":1}}"#.to_string(),
        event("vm-b", 1, ""),
        event("vm-b", 2, ""),
    ];
    (lines.join("\n") + "\n").into_bytes()
}

async fn round_trip(url: String) {
    let running = start(&url, &[]).await;
    let reply = post(running.addr, mixed_batch()).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let body = reply.json();
    assert_eq!(body["accepted"], 5);
    assert_eq!(body["duplicates"], 1);
    assert_eq!(body["rejected"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        body["rejected"][0]["line"], 4,
        "1-based, blank lines counted"
    );
    assert!(body["rejected"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .contains("ts"));
    wait_persisted(&running, 5).await;

    // A retried batch is recognised by the ingest window.
    let again = post(running.addr, mixed_batch()).await.json();
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"], 6);

    let by_trace = get(running.addr, &format!("/v1/logs?trace_id={TRACE}"))
        .await
        .json();
    let items = by_trace["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["seq"], 2, "newest first");
    assert_eq!(items[0]["tool_name"], "sum");
    let fingerprint = items[0]["token"].as_str().unwrap_or_default().to_string();
    assert!(
        fingerprint.starts_with("sha256:") && fingerprint.len() == 19,
        "{fingerprint}"
    );
    assert_eq!(items[0]["log"]["token"], fingerprint.as_str());
    assert!(!items[0].to_string().contains("raw-credential"));
    assert_eq!(items[0]["created_at"], "2026-11-22T02:53:34.000002Z");
    assert_eq!(items[1]["instance_id"], "i1");

    let by_tool = get(running.addr, "/v1/logs?tool=echo&event=request")
        .await
        .json();
    assert_eq!(by_tool["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(by_tool["items"][0]["mcp_method"], "tools/call");

    // Pagination walks every row exactly once.
    let mut seen = Vec::new();
    let mut path = "/v1/logs?limit=2".to_string();
    loop {
        let page = get(running.addr, &path).await.json();
        for item in page["items"].as_array().cloned().unwrap_or_default() {
            seen.push((item["source"].to_string(), item["seq"].as_u64()));
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/logs?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");

    let window = get(
        running.addr,
        "/v1/logs?since=2026-11-22T02:53:34.000002Z&until=2026-11-22T02:53:34.000003Z",
    )
    .await
    .json();
    assert_eq!(
        window["items"].as_array().map(Vec::len),
        Some(2),
        "{window}"
    );
    assert_eq!(get(running.addr, "/v1/logs?limit=0").await.status, 400);

    assert_eq!(
        metric(
            &running,
            r#"collector_dropped_events_total{origin="filter",reason="buffer_full"}"#
        )
        .await,
        Some(7.0)
    );
    assert_eq!(
        metric(
            &running,
            r#"collector_dropped_events_total{origin="collector",reason="invalid"}"#
        )
        .await,
        Some(2.0)
    );
    assert_eq!(
        metric(&running, "collector_tokens_refingerprinted_total").await,
        Some(2.0)
    );
    assert_eq!(
        metric(&running, "collector_events_persisted_total").await,
        Some(5.0)
    );
    // The outcome lives only in the stored JSON; the filter reads it there on both stores.
    let outcomes = ["ok", "tool_error"]
        .iter()
        .enumerate()
        .map(|(i, o)| {
            event("vm-c", i as u64 + 1, &format!(r#","mcp.outcome":"{o}""#))
                .replace(r#""event":"request""#, r#""event":"response""#)
                + "\n"
        })
        .collect::<String>();
    assert_eq!(
        post(running.addr, outcomes.into_bytes()).await.json()["accepted"],
        2
    );
    wait_persisted(&running, 7).await;
    let failed = get(running.addr, "/v1/logs?outcome=tool_error")
        .await
        .json();
    let failed = failed["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["source"], "vm-c");
    assert_eq!(failed[0]["seq"], 2);
    let report = running.shutdown().await;
    assert_eq!(report.dropped, 0);

    // A fresh collector has an empty window: the store's unique key must catch the repeat.
    let restarted = start(&url, &[]).await;
    let reply = post(restarted.addr, mixed_batch()).await.json();
    assert_eq!(reply["accepted"], 5);
    wait_persisted(&restarted, 5).await;
    assert_eq!(
        metric(
            &restarted,
            r#"collector_events_duplicate_total{stage="store"}"#
        )
        .await,
        Some(5.0)
    );
    let all = get(restarted.addr, "/v1/logs").await.json();
    assert_eq!(
        all["items"].as_array().map(Vec::len),
        Some(7),
        "the 5 of the batch and the 2 outcome events"
    );
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_round_trip_dedupe_and_query() {
    let db = TempSqlite::new();
    round_trip(db.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_round_trip_dedupe_and_query() {
    with_mariadb(|db| async move { round_trip(db.url()).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round_trip_dedupe_and_query() {
    let db = test_support::db::TestPg::create("round_trip");
    round_trip(db.url()).await;
}

async fn raw_exchange(addr: std::net::SocketAddr, request: Vec<u8>) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(&request).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("reply in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_content_type_and_size_limits() {
    let db = TempSqlite::new();
    let running = start(&db.url(), &["--max-body-bytes", "2KiB"]).await;
    let addr = running.addr;
    let ndjson = ("content-type", "application/x-ndjson");
    let body = || events("vm-a", 1..=3);

    let none = http::request_at(addr, "POST", "/v1/logs", &[ndjson], body())
        .await
        .expect("request");
    assert_eq!(none.status, 401);
    let wrong = [("authorization", "Bearer test-token-0123456789x"), ndjson];
    assert_eq!(
        http::request_at(addr, "POST", "/v1/logs", &wrong, body())
            .await
            .expect("request")
            .status,
        401
    );
    assert_eq!(
        http::request_at(addr, "GET", "/v1/logs", &[], Vec::new())
            .await
            .expect("request")
            .status,
        401
    );

    let json_ct = [
        ("authorization", "Bearer test-token-0123456789"),
        ("content-type", "application/json"),
    ];
    assert_eq!(
        http::request_at(addr, "POST", "/v1/logs", &json_ct, body())
            .await
            .expect("request")
            .status,
        415
    );
    let with_charset = [
        ("authorization", "Bearer test-token-0123456789"),
        ("content-type", "application/x-ndjson; charset=utf-8"),
    ];
    assert_eq!(
        http::request_at(addr, "POST", "/v1/logs", &with_charset, body())
            .await
            .expect("request")
            .status,
        200
    );

    let big = events("vm-big", 1..=40);
    assert!(big.len() > 2048);
    assert_eq!(post(addr, big).await.status, 413);

    // Without a Content-Length the limit is enforced while reading.
    let chunk = vec![b' '; 3000];
    let mut chunked = format!(
        "POST /v1/logs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {COLLECTOR_TOKEN}\r\n\
         content-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
        chunk.len()
    )
    .into_bytes();
    chunked.extend_from_slice(&chunk);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let reply = raw_exchange(addr, chunked).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");

    assert_eq!(
        running.snapshot().counters.received,
        3,
        "only the accepted request counted"
    );
    running.shutdown().await;
}

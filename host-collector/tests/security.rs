//! Who may do what: scoped bearer tokens (ingest-only for the filters, query-only for people
//! and dashboards, several of each so a token can be rotated without a gap), and health that
//! tells anyone whether the collector is live and ready but only a query token why not.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use test_support::collector::*;
use test_support::db::*;
use test_support::http::{self, HttpResponse};

const INGEST_OLD: &str = "ingest-token-old-0123456789";
const INGEST_NEW: &str = "ingest-token-new-0123456789";
const VIEWER: &str = "query-token-viewer-0123456789";

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/x-ndjson")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    http::request_at(addr, method, path, &headers, body)
        .await
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens_write_or_read_and_rotate_without_a_gap() {
    let sqlite = TempSqlite::new();
    let running = start(
        &sqlite.url(),
        &[
            "--ingest-token",
            INGEST_OLD,
            "--ingest-token",
            INGEST_NEW,
            "--query-token",
            VIEWER,
        ],
    )
    .await;
    let addr = running.addr;
    for (token, first) in [(INGEST_OLD, 1), (INGEST_NEW, 3)] {
        let reply = call(
            addr,
            "POST",
            "/v1/logs",
            Some(token),
            events("vm-a", first..=first + 1),
        )
        .await;
        assert_eq!(reply.status, 200, "{token}: {}", reply.body);
    }
    let viewer_writes = call(
        addr,
        "POST",
        "/v1/logs",
        Some(VIEWER),
        events("vm-a", 9..=9),
    )
    .await;
    assert_eq!(viewer_writes.status, 401, "a viewer cannot write");
    wait_persisted(&running, 4).await;

    let read = call(addr, "GET", "/v1/logs?limit=10", Some(VIEWER), Vec::new()).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["items"].as_array().map(Vec::len), Some(4));
    for path in ["/v1/logs?limit=1", "/v1/accounting"] {
        let filter_reads = call(addr, "GET", path, Some(INGEST_NEW), Vec::new()).await;
        assert_eq!(
            filter_reads.status, 401,
            "{path}: a filter's token cannot read"
        );
    }
    let accounting = call(addr, "GET", "/v1/accounting", Some(VIEWER), Vec::new()).await;
    assert_eq!(accounting.json()["totals"]["events"], 4);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_what_fails_to_anyone_and_why_only_to_a_viewer() {
    with_mariadb(|db| async move {
        let proxy = DbProxy::mariadb();
        let running = start(
            &db.url_via(proxy.port),
            &["--ingest-token", INGEST_NEW, "--query-token", VIEWER],
        )
        .await;
        let addr = running.addr;
        proxy.cut();
        test_support::poll::eventually(
            "the database noticed down",
            std::time::Duration::from_secs(20),
            || async {
                call(addr, "GET", "/health/ready", None, Vec::new())
                    .await
                    .status
                    == 503
            },
        )
        .await;

        let live = call(addr, "GET", "/health/live", None, Vec::new()).await;
        assert_eq!(
            (live.status, live.json()["status"].as_str()),
            (200, Some("ok"))
        );

        for path in ["/health/ready", "/health"] {
            let anyone = call(addr, "GET", path, None, Vec::new()).await;
            assert_eq!(anyone.status, 503, "{path}");
            let body = anyone.json();
            assert_eq!(body["status"], "unavailable");
            assert_eq!(
                body["checks"]["database"],
                serde_json::json!({ "ok": false })
            );
            assert_eq!(body["checks"]["queue"], serde_json::json!({ "ok": true }));
            assert!(
                !anyone.body.contains("ping") && !anyone.body.contains("budget"),
                "{path}: no detail without a token: {}",
                anyone.body
            );
            let filter = call(addr, "GET", path, Some(INGEST_NEW), Vec::new()).await;
            assert_eq!(
                filter.json(),
                body,
                "{path}: an ingest token sees the summary"
            );
        }
        let viewer = call(addr, "GET", "/health/ready", Some(VIEWER), Vec::new()).await;
        assert_eq!(viewer.status, 503);
        let detail = viewer.json();
        let ping = detail["checks"]["database"]["ping"]
            .as_str()
            .unwrap_or_default();
        assert!(
            !ping.is_empty() && ping != "ok",
            "the viewer sees why: {detail}"
        );
        assert!(detail["checks"]["queue"]["budget"].as_u64().is_some());
        proxy.restore();
        running.shutdown().await;
    })
    .await;
}

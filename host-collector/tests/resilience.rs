//! Failure behaviour: the database cut off mid-run and restored (nothing lost, order kept),
//! the byte budget forcing drop-oldest while it is down, shutdown draining, the concurrency
//! cap with 503 + Retry-After, and the real binary exiting 0 on SIGTERM.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use sqlx::Row as _;
use test_support::collector::*;
use test_support::db::*;
use test_support::http;
use test_support::poll::eventually;
use tokio::io::AsyncWriteExt;

async fn stored_seqs(db: &TestDb) -> Vec<i64> {
    let pool = db.pool().await;
    let rows = sqlx::query("SELECT CAST(seq AS SIGNED) FROM mcp_gateway_log ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("read rows");
    rows.iter().map(|r| r.get::<i64, _>(0)).collect()
}

async fn health_status(running: &host_collector::app::Running) -> (u16, serde_json::Value) {
    let reply = http::request_at(running.addr, "GET", "/health", &[], Vec::new())
        .await
        .expect("GET /health");
    (reply.status, reply.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cut_mid_run_then_restored_loses_nothing_and_keeps_order() {
    with_mariadb(|db| async move {
        let proxy = DbProxy::mariadb();
        let running = start(&db.url_via(proxy.port), &["--batch-max-rows", "50"]).await;
        assert_eq!(
            post(running.addr, events("vm-a", 1..=100)).await.json()["accepted"],
            100
        );
        wait_persisted(&running, 100).await;

        proxy.cut();
        // Ingest keeps answering at once while the database is gone.
        for chunk in 0..4u64 {
            let seqs = 101 + chunk * 100..=200 + chunk * 100;
            let reply = post(running.addr, events("vm-a", seqs)).await;
            assert_eq!(reply.status, 200);
            assert_eq!(reply.json()["accepted"], 100);
        }
        wait_for_db_errors(&running, 1.0, "write failures noticed").await;
        eventually(
            "health reports the database",
            Duration::from_secs(20),
            || async {
                let (status, body) = health_status(&running).await;
                status == 503 && body["checks"]["database"]["ok"] == false
            },
        )
        .await;
        assert_eq!(running.snapshot().counters.persisted, 100);
        assert!(
            metric(&running, "collector_queue_entries")
                .await
                .unwrap_or(0.0)
                >= 300.0
        );

        proxy.restore();
        wait_persisted(&running, 500).await;
        eventually("health recovers", Duration::from_secs(20), || async {
            health_status(&running).await.0 == 200
        })
        .await;
        let report = running.shutdown().await;
        assert_eq!(report.dropped, 0);
        let seqs = stored_seqs(&db).await;
        assert_eq!(seqs, (1..=500).collect::<Vec<i64>>(), "all rows, in order");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_forces_drop_oldest_while_database_is_down() {
    with_mariadb(|db| async move {
        let proxy = DbProxy::mariadb();
        proxy.cut();
        // ~1 KiB per event with overhead: a 64 KiB budget holds a few dozen.
        let running = start(
            &db.url_via(proxy.port),
            &["--queue-budget", "64KiB", "--health-queue-threshold", "0.5"],
        )
        .await;
        for chunk in 0..10u64 {
            let reply = post(
                running.addr,
                events("vm-a", chunk * 50 + 1..=chunk * 50 + 50),
            )
            .await;
            assert_eq!(reply.json()["accepted"], 50, "never refused, never blocked");
        }
        let snap = running.snapshot();
        assert!(snap.bytes <= 64 * 1024, "{} bytes", snap.bytes);
        let c = snap.counters;
        assert!(c.dropped_queue_full > 0);
        assert_eq!(c.received, 500);
        assert_eq!(
            c.received,
            c.persisted + c.dropped_queue_full + c.dropped_shutdown + snap.held()
        );
        let (status, body) = health_status(&running).await;
        assert_eq!(status, 503);
        assert_eq!(body["checks"]["queue"]["ok"], false);
        let dropped = metric(
            &running,
            r#"collector_dropped_events_total{origin="collector",reason="queue_full"}"#,
        )
        .await
        .unwrap_or(0.0) as u64;
        // The writer's failing batch may settle its evicted events between the two readings.
        let later = running.snapshot().counters.dropped_queue_full;
        assert!(
            (c.dropped_queue_full..=later).contains(&dropped),
            "metric {dropped} between the readings {} and {later}",
            c.dropped_queue_full
        );

        proxy.restore();
        // What was held is written, except the oldest events of a batch whose write was
        // failing when newer events evicted them (dropped when that write returned).
        eventually("the queue written out", Duration::from_secs(30), || async {
            running.snapshot().held() == 0
        })
        .await;
        let c = running.snapshot().counters;
        assert_eq!(c.received, c.persisted + c.dropped_queue_full);
        assert!(c.persisted > 0 && c.persisted <= snap.held());
        running.shutdown().await;
        let seqs = stored_seqs(&db).await;
        assert_eq!(seqs.len() as u64, c.persisted);
        assert_eq!(*seqs.last().unwrap_or(&0), 500, "the newest survive");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "order kept");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_queue_and_counts_what_cannot_be_written() {
    with_mariadb(|db| async move {
        let proxy = DbProxy::mariadb();
        // Drained: the database comes back just as shutdown starts.
        let running = start(&db.url_via(proxy.port), &[]).await;
        proxy.cut();
        post(running.addr, events("vm-a", 1..=50)).await;
        wait_for_db_errors(&running, 1.0, "a failed write").await;
        proxy.restore();
        let report = running.shutdown().await;
        assert_eq!(report.dropped, 0);
        assert_eq!(stored_seqs(&db).await.len(), 50);

        // Not drainable: the database stays down; the rest counts as shutdown drops.
        proxy.cut();
        let running = start(&db.url_via(proxy.port), &["--drain-timeout", "300ms"]).await;
        post(running.addr, events("vm-b", 1..=30)).await;
        let buffer = running.buffer.clone();
        let started = std::time::Instant::now();
        let report = running.shutdown().await;
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "bounded by the drain deadline"
        );
        assert_eq!(report.dropped, 30);
        let c = buffer.levels().counters;
        assert_eq!(c.dropped_shutdown, 30);
        assert_eq!(
            c.received,
            c.persisted + c.dropped_shutdown + c.dropped_queue_full
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_answers_503_and_health_follows() {
    let db = TempSqlite::new();
    let running = start(
        &db.url(),
        &[
            "--max-concurrent-requests",
            "2",
            "--max-concurrent-requests-wait-time",
            "100ms",
            "--max-concurrent-requests-health-wait-time",
            "200ms",
        ],
    )
    .await;
    // Two requests that hold their slots: headers sent, body never finished.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(running.addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /v1/logs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {COLLECTOR_TOKEN}\r\n\
             content-type: application/x-ndjson\r\ncontent-length: 1000\r\n\r\n{{"
        );
        s.write_all(head.as_bytes()).await.expect("write");
        stalled.push(s);
    }
    eventually("both slots taken", Duration::from_secs(10), || async {
        metric(&running, "collector_http_in_flight_requests").await == Some(2.0)
    })
    .await;
    let refused = post(running.addr, events("vm-a", 1..=1)).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    eventually(
        "health turns 503 after sustained saturation",
        Duration::from_secs(10),
        || async {
            let (status, body) = health_status(&running).await;
            status == 503 && body["checks"]["overload"]["ok"] == false
        },
    )
    .await;
    assert!(metric(&running, "collector_http_overload_rejections_total").await >= Some(1.0));

    drop(stalled);
    eventually("slots freed", Duration::from_secs(10), || async {
        post(running.addr, events("vm-a", 2..=2)).await.status == 200
    })
    .await;
    assert_eq!(health_status(&running).await.0, 200);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_drains_and_exits_zero_on_sigterm() {
    let db = TempSqlite::new();
    let mut collector = Collector::start_with_env(
        &["--database-url", &db.url()],
        &[("LOG_FORMAT", "json"), ("COLLECTOR_TOKEN", COLLECTOR_TOKEN)],
    );
    collector.wait_for_log("\"setting\":\"queue_budget\"");
    assert_eq!(
        post(collector.addr(), events("vm-a", 1..=20)).await.json()["accepted"],
        20
    );
    let code = collector.kill_with("TERM");
    let logs = collector.logs();
    let log: Vec<&str> = logs.lines().collect();
    assert_eq!(code, Some(0));
    assert!(
        !log.iter().any(|l| l.contains(COLLECTOR_TOKEN)),
        "token never logged"
    );
    let stopped = log
        .iter()
        .find(|l| l.contains("\"msg\":\"stopped\""))
        .expect("final log line");
    let v: serde_json::Value = serde_json::from_str(stopped).expect("JSON");
    assert_eq!(v["persisted"], 20);
    assert_eq!(v["dropped_shutdown"], 0);
}

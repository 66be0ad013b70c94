//! The spool: what the collector acknowledged survives a SIGKILL and is written after the
//! restart; a spool that cannot write refuses ingest (503) without poisoning the sender's
//! retry; settled segments are deleted, so a clean run leaves an empty spool.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use test_support::collector::*;
use test_support::poll::eventually;

/// Segment files in the spool directory.
fn segment_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".ndjson"))
        .collect()
}

/// The collector logs JSON, so its log lines can be waited for and read.
const JSON_LOGS: &[(&str, &str)] = &[("LOG_FORMAT", "json")];

async fn sqlite_seqs(db: &TempSqlite) -> Vec<i64> {
    let pool = SqlitePool::connect(&db.url()).await.expect("open sqlite");
    let seqs = sqlx::query_scalar("SELECT seq FROM mcp_gateway_log ORDER BY seq")
        .fetch_all(&pool)
        .await
        .expect("select");
    pool.close().await;
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_and_are_written_after_restart() {
    let db = TempSqlite::new();
    let spool = db.path("spool");
    let spool_arg = spool.to_str().expect("utf-8 path");
    // Nothing listens on port 1: every write fails, so acknowledged events stay queued.
    let unreachable = "mysql://root@127.0.0.1:1/none";
    let mut first = Collector::start_with_env(
        &[
            "--database-url",
            unreachable,
            "--spool-dir",
            spool_arg,
            "--db-acquire-timeout",
            "200ms",
        ],
        JSON_LOGS,
    );
    for chunk in [1..=40, 41..=100] {
        let reply = post(first.addr(), events("vm-a", chunk)).await;
        assert_eq!(reply.status, 200);
    }
    assert_eq!(first.sample("collector_events_persisted_total"), Some(0.0));
    let code = first.kill_with("KILL");
    assert_eq!(code, None, "killed, no drain");
    assert!(
        !segment_files(&spool).is_empty(),
        "the spool holds the events"
    );

    let mut second = Collector::start_with_env(
        &["--database-url", &db.url(), "--spool-dir", spool_arg],
        JSON_LOGS,
    );
    let replay = second.wait_for_log("replayed events");
    assert_eq!(
        (replay["found"].as_u64(), replay["queued"].as_u64()),
        (Some(100), Some(100))
    );
    assert_eq!(
        second.sample("collector_spool_replayed_events_total"),
        Some(100.0)
    );
    eventually("100 events persisted", Duration::from_secs(30), || async {
        second.sample("collector_events_persisted_total") == Some(100.0)
    })
    .await;
    // A retry of a batch the dead collector had acknowledged is a duplicate, not a new row.
    let retry = post(second.addr(), events("vm-a", 90..=100)).await;
    assert_eq!(retry.json()["duplicates"], 11);
    eventually(
        "settled segments deleted",
        Duration::from_secs(10),
        || async { second.sample("collector_spool_bytes") == Some(0.0) },
    )
    .await;
    let code = second.kill_with("TERM");
    assert_eq!(code, Some(0));
    assert_eq!(sqlite_seqs(&db).await, (1..=100).collect::<Vec<i64>>());
    assert_eq!(
        segment_files(&spool),
        Vec::<String>::new(),
        "clean stop, empty spool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_that_cannot_write_refuses_ingest_and_the_retry_is_kept() {
    let db = TempSqlite::new();
    let spool = db.path("spool");
    let spool_arg = spool.to_str().expect("utf-8 path");
    // One-byte segments: every request opens a new segment file, so a broken directory
    // shows on the next request.
    let running = start(
        &db.url(),
        &["--spool-dir", spool_arg, "--spool-segment-bytes", "1"],
    )
    .await;
    assert_eq!(post(running.addr, events("vm-a", 1..=5)).await.status, 200);

    std::fs::remove_dir_all(&spool).expect("remove spool dir");
    std::fs::write(&spool, b"not a directory").expect("file in its place");
    let refused = post(running.addr, events("vm-a", 6..=10)).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    let body = refused.body.clone();
    assert!(
        !body.contains(spool_arg),
        "no internal path in the reply: {body}"
    );
    let health = get(running.addr, "/health").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["checks"]["spool"]["ok"], false);
    assert_eq!(
        metric(&running, "collector_spool_write_errors_total").await,
        Some(1.0)
    );

    std::fs::remove_file(&spool).expect("remove the file");
    std::fs::create_dir(&spool).expect("spool dir back");
    let retried = post(running.addr, events("vm-a", 6..=10)).await;
    assert_eq!(retried.status, 200);
    assert_eq!(
        (
            retried.json()["accepted"].as_u64(),
            retried.json()["duplicates"].as_u64()
        ),
        (Some(5), Some(0)),
        "the refused events were not remembered as seen"
    );
    wait_persisted(&running, 10).await;
    eventually("health back to 200", Duration::from_secs(10), || async {
        get(running.addr, "/health").await.status == 200
    })
    .await;
    running.shutdown().await;
    assert_eq!(sqlite_seqs(&db).await, (1..=10).collect::<Vec<i64>>());
}

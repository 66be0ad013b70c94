//! Store-level behaviour on both backends: retention deletes in batches only what is old
//! enough, and the schema is created once and reused.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use host_collector::event::{Level, Row};
use host_collector::retention::{sweep, RetentionConfig};
use host_collector::store::{open, LogQuery, Store, StoreOptions};
use test_support::collector::*;
use test_support::db::*;

fn row(seq: u64, age_days: i64) -> Row {
    let created = (Utc::now() - chrono::Duration::days(age_days)).naive_utc();
    Row {
        trace_id: None,
        span_id: None,
        instance_id: Some("i1".into()),
        mcp_method: None,
        tool_name: None,
        token_header: None,
        token: None,
        event: "request".into(),
        level: Level::Warn,
        log: format!(r#"{{"seq":{seq}}}"#),
        source: "vm-r".into(),
        seq,
        created_at: created,
        received_at: Utc::now().naive_utc(),
    }
}

async fn retention_keeps_recent_rows(url: String) {
    let options = StoreOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
    };
    let store: Arc<dyn Store> = open(&url, &options).expect("open store");
    store.prepare().await.expect("schema");
    store.prepare().await.expect("schema again is a no-op");
    let rows: Vec<Row> = (1..=7)
        .map(|s| row(s, 40))
        .chain((8..=10).map(|s| row(s, 1)))
        .collect();
    assert_eq!(store.insert_batch(&rows).await.expect("insert"), 10);
    let config = RetentionConfig {
        max_age: Duration::from_secs(30 * 86_400),
        interval: Duration::from_secs(3600),
        batch: 3,
    };
    assert_eq!(sweep(store.as_ref(), &config).await.expect("sweep"), 7);
    let left = store
        .query(&LogQuery {
            limit: 100,
            ..LogQuery::default()
        })
        .await
        .expect("query");
    let seqs: Vec<u64> = left.iter().map(|r| r.row.seq).collect();
    assert_eq!(seqs, vec![10, 9, 8]);
    assert_eq!(left[0].row.level, Level::Warn);
    assert_eq!(left[0].row.log, r#"{"seq":10}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_retention() {
    let db = TempSqlite::new();
    retention_keeps_recent_rows(db.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_retention() {
    with_mariadb(|db| async move { retention_keeps_recent_rows(db.url()).await }).await;
}

#[test]
fn unknown_database_scheme_is_a_clear_error() {
    let options = StoreOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(1),
    };
    let err = open("postgres://u:secret@h/db", &options)
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("unsupported database URL"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

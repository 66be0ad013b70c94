//! The writer against an in-memory store that fails on demand: retries keep order and lose
//! nothing, batches respect their limits, and shutdown drains or counts within its deadline.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDateTime;
use host_collector::buffer::Buffer;
use host_collector::event::{Level, Row};
use host_collector::internal_events::Telemetry;
use host_collector::store::{BoxFuture, LogQuery, Store, StoreError, StoredRow};
use host_collector::writer::{Writer, WriterConfig};
use tokio::sync::watch;

#[derive(Default)]
struct FlakyStore {
    failures_left: AtomicUsize,
    stored: Mutex<Vec<u64>>,
    batch_sizes: Mutex<Vec<usize>>,
}

impl Store for FlakyStore {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    fn prepare(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn insert_batch<'a>(&'a self, rows: &'a [Row]) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let left = self.failures_left.load(Ordering::SeqCst);
            if left > 0 {
                self.failures_left.store(left - 1, Ordering::SeqCst);
                return Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut));
            }
            self.batch_sizes.lock().expect("lock").push(rows.len());
            self.stored
                .lock()
                .expect("lock")
                .extend(rows.iter().map(|r| r.seq));
            Ok(rows.len() as u64)
        })
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn delete_older_than(
        &self,
        _cutoff: NaiveDateTime,
        _limit: u32,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async { Ok(0) })
    }
    fn query<'a>(&'a self, _q: &'a LogQuery) -> BoxFuture<'a, Result<Vec<StoredRow>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

fn row(seq: u64) -> Row {
    let t = chrono::Utc::now().naive_utc();
    Row {
        trace_id: None,
        span_id: None,
        instance_id: None,
        mcp_method: None,
        tool_name: None,
        token_header: None,
        token: None,
        event: "request".into(),
        level: Level::Info,
        log: "{}".into(),
        source: "vm".into(),
        seq,
        created_at: t,
        received_at: t,
    }
}

fn writer(
    store: Arc<FlakyStore>,
    buffer: Arc<Buffer>,
    telemetry: Arc<Telemetry>,
) -> Writer<Buffer> {
    Writer {
        buffer,
        store,
        telemetry,
        config: WriterConfig {
            batch_max_rows: 7,
            batch_max_bytes: 1 << 20,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            write_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_millis(200),
        },
    }
}

async fn wait_for(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn failed_batches_are_retried_in_order() {
    let store = Arc::new(FlakyStore::default());
    store.failures_left.store(3, Ordering::SeqCst);
    let telemetry = Arc::new(Telemetry::default());
    let buffer = Arc::new(Buffer::memory(1 << 20, telemetry.clone()));
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(writer(store.clone(), buffer.clone(), telemetry.clone()).run(stop_rx));
    buffer
        .push((1..=100).map(row).collect())
        .expect("memory buffer");
    wait_for("all persisted", || {
        buffer.levels().counters.persisted == 100
    })
    .await;
    assert_eq!(
        *store.stored.lock().expect("lock"),
        (1..=100).collect::<Vec<u64>>()
    );
    assert!(store
        .batch_sizes
        .lock()
        .expect("lock")
        .iter()
        .all(|n| *n <= 7));
    assert_eq!(telemetry.db_errors.get(), 3);
    stop.send(true).expect("writer listening");
    let report = task.await.expect("writer");
    assert_eq!(report.dropped, 0);
}

#[tokio::test]
async fn shutdown_counts_what_the_deadline_leaves() {
    let store = Arc::new(FlakyStore::default());
    store.failures_left.store(usize::MAX, Ordering::SeqCst);
    let telemetry = Arc::new(Telemetry::default());
    let buffer = Arc::new(Buffer::memory(1 << 20, telemetry.clone()));
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(writer(store, buffer.clone(), telemetry).run(stop_rx));
    buffer
        .push((1..=20).map(row).collect())
        .expect("memory buffer");
    buffer.close();
    stop.send(true).expect("writer listening");
    let report = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("drain bounded by its deadline")
        .expect("writer");
    assert_eq!(report.dropped, 20);
    let c = buffer.levels().counters;
    assert_eq!((c.received, c.persisted, c.dropped_shutdown), (20, 0, 20));
}

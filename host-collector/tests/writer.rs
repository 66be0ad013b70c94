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
use host_collector::store::{
    BoxFuture, DeadLetter, LogQuery, SourceStatus, SourceTotals, Store, StoreError, StoredRow,
};
use host_collector::writer::{DrainReport, Writer, WriterConfig};
use tokio::sync::watch;

#[derive(Default)]
struct FlakyStore {
    failures_left: AtomicUsize,
    stored: Mutex<Vec<u64>>,
    batch_sizes: Mutex<Vec<usize>>,
    /// Seqs the store refuses for good: a batch holding one is rejected whole.
    refused: Vec<u64>,
    /// Calls of `insert_batch` (counted from 1) that fail as if the database went away.
    unavailable_on_calls: Vec<usize>,
    calls: AtomicUsize,
    dead: Mutex<Vec<(u64, String)>>,
}

fn refusal() -> StoreError {
    StoreError::Rejected(sqlx::Error::Protocol("refused by policy".into()))
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
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let left = self.failures_left.load(Ordering::SeqCst);
            if left > 0 || self.unavailable_on_calls.contains(&call) {
                self.failures_left
                    .store(left.saturating_sub(1), Ordering::SeqCst);
                return Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut));
            }
            if rows.iter().any(|r| self.refused.contains(&r.seq)) {
                return Err(refusal());
            }
            self.batch_sizes.lock().expect("lock").push(rows.len());
            self.stored
                .lock()
                .expect("lock")
                .extend(rows.iter().map(|r| r.seq));
            Ok(rows.len() as u64)
        })
    }
    fn insert_dead_letters<'a>(
        &'a self,
        letters: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut dead = self.dead.lock().expect("lock");
            dead.extend(letters.iter().map(|l| (l.row.seq, l.reason.clone())));
            Ok(letters.len() as u64)
        })
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn merge_source_status<'a>(
        &'a self,
        _statuses: &'a [SourceStatus],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn source_totals(&self) -> BoxFuture<'_, Result<Vec<SourceTotals>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
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

fn writer(store: Arc<dyn Store>, buffer: Arc<Buffer>, telemetry: Arc<Telemetry>) -> Writer<Buffer> {
    Writer {
        buffer,
        store,
        telemetry,
        observers: Vec::new(),
        config: WriterConfig {
            batch_max_rows: 7,
            batch_max_bytes: 1 << 20,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            write_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_millis(200),
            isolate_after_refusals: 3,
        },
    }
}

/// A writer running over a fresh memory buffer.
struct Running {
    buffer: Arc<Buffer>,
    telemetry: Arc<Telemetry>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<DrainReport>,
}

fn run(store: Arc<dyn Store>) -> Running {
    let telemetry = Arc::new(Telemetry::default());
    let buffer = Arc::new(Buffer::memory(1 << 20, telemetry.clone()));
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(writer(store, buffer.clone(), telemetry.clone()).run(stop_rx));
    Running {
        buffer,
        telemetry,
        stop,
        task,
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
    let Running {
        buffer,
        telemetry,
        stop,
        task,
    } = run(store.clone());
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
    let Running {
        buffer, stop, task, ..
    } = run(store);
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

/// A refused row among 100: after the configured refusals in a row the batch holding it is
/// split; the other rows are written in order, the refused one goes to the dead letters with
/// the refusal. A transient failure in the middle of the split hands the whole batch back
/// (the retry skips nothing and duplicates nothing the store would keep).
#[tokio::test]
async fn a_refused_row_is_dead_lettered_and_the_rest_written_in_order() {
    let store = Arc::new(FlakyStore {
        refused: vec![10, 11, 40],
        // Call 1 writes 1..=7; calls 2-4 refuse 8..=14 (the third starts the split); call 5,
        // the split's first half, fails as if the database went away.
        unavailable_on_calls: vec![5],
        ..FlakyStore::default()
    });
    let Running {
        buffer,
        telemetry,
        stop,
        task,
    } = run(store.clone());
    buffer
        .push((1..=100).map(row).collect())
        .expect("memory buffer");
    wait_for("all settled", || {
        let c = buffer.levels().counters;
        c.persisted + c.dead_lettered == 100
    })
    .await;
    let stored = store.stored.lock().expect("lock").clone();
    let mut unique = stored.clone();
    unique.dedup();
    assert_eq!(
        unique,
        (1..=100)
            .filter(|s| ![10, 11, 40].contains(s))
            .collect::<Vec<u64>>(),
        "the rest in order"
    );
    let dead = store.dead.lock().expect("lock").clone();
    assert_eq!(dead.iter().map(|d| d.0).collect::<Vec<_>>(), [10, 11, 40]);
    assert!(dead.iter().all(|d| d.1.contains("refused by policy")));
    let c = buffer.levels().counters;
    assert_eq!((c.persisted, c.dead_lettered), (97, 3));
    assert_eq!(telemetry.dead_letters.get(), 3);
    // 8..=14: three refusals and the outage, then three refusals again (the outage broke the
    // streak); 36..=42: three refusals.
    assert_eq!(telemetry.db_errors.get(), 10);
    stop.send(true).expect("writer listening");
    assert_eq!(task.await.expect("writer").dropped, 0);
}

/// Refusals that stop (the operator fixed the schema) never reach the split.
#[tokio::test]
async fn refusals_below_the_threshold_are_retried_whole() {
    let store = Arc::new(FlakyStore::default());
    // Two refusals then success: below `isolate_after_refusals = 3`.
    let refusing = Arc::new(RefuseTimes(AtomicUsize::new(2), store.clone()));
    let Running {
        buffer, stop, task, ..
    } = run(refusing);
    buffer
        .push((1..=5).map(row).collect())
        .expect("memory buffer");
    wait_for("all persisted", || buffer.levels().counters.persisted == 5).await;
    assert_eq!(
        *store.batch_sizes.lock().expect("lock"),
        [5],
        "written whole"
    );
    assert_eq!(buffer.levels().counters.dead_lettered, 0);
    stop.send(true).expect("writer listening");
    task.await.expect("writer");
}

/// Refuses the first N batches whatever they hold, then defers to the inner store.
struct RefuseTimes(AtomicUsize, Arc<FlakyStore>);

impl Store for RefuseTimes {
    fn kind(&self) -> &'static str {
        "refuse-times"
    }
    fn prepare(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.1.prepare()
    }
    fn insert_batch<'a>(&'a self, rows: &'a [Row]) -> BoxFuture<'a, Result<u64, StoreError>> {
        if self.0.load(Ordering::SeqCst) > 0 {
            self.0.fetch_sub(1, Ordering::SeqCst);
            return Box::pin(async { Err(refusal()) });
        }
        self.1.insert_batch(rows)
    }
    fn insert_dead_letters<'a>(
        &'a self,
        letters: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.1.insert_dead_letters(letters)
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.1.ping()
    }
    fn merge_source_status<'a>(
        &'a self,
        statuses: &'a [SourceStatus],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.1.merge_source_status(statuses)
    }
    fn source_totals(&self) -> BoxFuture<'_, Result<Vec<SourceTotals>, StoreError>> {
        self.1.source_totals()
    }
    fn delete_older_than(
        &self,
        cutoff: NaiveDateTime,
        limit: u32,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.1.delete_older_than(cutoff, limit)
    }
    fn query<'a>(&'a self, q: &'a LogQuery) -> BoxFuture<'a, Result<Vec<StoredRow>, StoreError>> {
        self.1.query(q)
    }
}

//! The writer: one ordered worker that moves batches from its source (the buffer, through
//! `BatchSource`, which the buffer implements) to the store, retries
//! failed batches from the front with exponential backoff and jitter, and drains the queue
//! within its own deadline at shutdown.
//!
//! A batch the database keeps refusing (it answers, and rejects: a constraint, a trigger, the
//! schema) is a poison batch: after `isolate_after_refusals` refusals in a row it is split in
//! halves, left before right, until each refused row stands alone. Everything else is written
//! in order; the refused rows go to the store's dead letters with the refusal, counted
//! (`collector_dead_letters`, the queue's `dead_lettered`, `WriteObserver`s such as the
//! accounting). A failure that is not a refusal stops the split and the whole batch is
//! retried as usual (rows already written are skipped by the `(source, seq)` key).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt;
use tokio::sync::watch;
use tokio::time::timeout_at;

use crate::event::Row;
use crate::internal_events::{
    BatchWriteFailed, BatchWriteTimed, BatchWritten, RowsDeadLettered, Telemetry,
};
use crate::store::{DeadLetter, Store, StoreError};

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub batch_max_rows: usize,
    pub batch_max_bytes: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Bound on one batch write, so a hung connection turns into a retry.
    pub write_timeout: Duration,
    /// How long shutdown may spend draining the queue.
    pub drain_timeout: Duration,
    /// Refusals in a row before a batch is split to find the rows the database refuses.
    pub isolate_after_refusals: u32,
}

/// What shutdown left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    pub drained: u64,
    pub dropped: u64,
}

/// What the writer needs from the layer above it: batches from the front, each handed back
/// with its outcome. `buffer::Buffer` implements it; the writer does not import the buffer.
pub trait BatchSource: Send + Sync + 'static {
    type Batch: Send;
    /// Waits until a batch of at most `max_rows` rows / `max_bytes` bytes (at least one row)
    /// can be taken.
    fn take(&self, max_rows: usize, max_bytes: usize) -> impl Future<Output = Self::Batch> + Send;
    fn try_take(&self, max_rows: usize, max_bytes: usize) -> Option<Self::Batch>;
    /// The batch's rows, for the store.
    fn rows(batch: &Self::Batch) -> Vec<Row>;
    /// The batch reached the store.
    fn complete(&self, batch: Self::Batch);
    /// The batch reached the store but for `dead_lettered` rows, which went to the dead
    /// letters.
    fn settle(&self, batch: Self::Batch, dead_lettered: usize);
    /// The write failed: the batch goes back to the front, in order.
    fn restore(&self, batch: Self::Batch);
    /// The batch is given up at shutdown (counted).
    fn abandon(&self, batch: Self::Batch);
    /// Drops what is still waiting at shutdown (counted); returns how many rows.
    fn drop_remaining(&self) -> usize;
    /// Rows persisted so far.
    fn persisted(&self) -> u64;
    /// Rows held (waiting or in flight).
    fn held(&self) -> u64;
}

/// Told about each row that went to the dead letters (the per-source accounting is one).
pub trait WriteObserver: Send + Sync {
    fn on_dead_letter(&self, row: &Row);
}

pub struct Writer<S: BatchSource> {
    pub buffer: Arc<S>,
    pub store: Arc<dyn Store>,
    pub telemetry: Arc<Telemetry>,
    pub observers: Vec<Arc<dyn WriteObserver>>,
    pub config: WriterConfig,
}

/// Exponential backoff with "equal jitter": half the delay fixed, half random, so retries from
/// several collectors do not synchronise yet still back off.
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            failures: 0,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(30));
        self.failures = self.failures.saturating_add(1);
        let delay = self.initial.saturating_mul(factor).min(self.max);
        let half = delay / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// The front batch's failures so far: the backoff, and how many in a row were refusals.
pub struct Retry {
    backoff: Backoff,
    refusals: u32,
}

impl Retry {
    fn new(config: &WriterConfig) -> Self {
        Retry {
            backoff: Backoff::new(config.initial_backoff, config.max_backoff),
            refusals: 0,
        }
    }

    fn failed(&mut self, error: &StoreError) {
        self.refusals = if error.is_refusal() {
            self.refusals + 1
        } else {
            0
        };
    }

    fn succeeded(&mut self) {
        self.backoff.reset();
        self.refusals = 0;
    }
}

/// When a refused batch stops being retried whole and is split instead.
fn should_isolate(error: &StoreError, refusals_before: u32, config: &WriterConfig) -> bool {
    error.is_refusal() && refusals_before + 1 >= config.isolate_after_refusals
}

/// What a split of a refused batch found.
struct Isolated {
    inserted: u64,
    refused: Vec<DeadLetter>,
}

enum Attempt {
    Written,
    Failed,
    /// The drain deadline passed during the write: its outcome is unknown.
    TimedOut,
}

impl<S: BatchSource> Writer<S> {
    /// Runs until `shutdown` turns true, then drains. Ingest must already be stopped (queue
    /// closed) when shutdown is signalled, so nothing arrives after the final count.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> DrainReport {
        let mut retry = Retry::new(&self.config);
        loop {
            let batch = tokio::select! {
                b = self.buffer.take(self.config.batch_max_rows, self.config.batch_max_bytes) => b,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            // The write itself is never cancelled by shutdown: its bound is the write timeout.
            let deadline = tokio::time::Instant::now() + self.config.write_timeout;
            if let Attempt::Written = self.write(batch, deadline, None, &mut retry).await {
                continue;
            }
            let delay = retry.backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        self.drain(&mut retry).await
    }

    async fn drain(&self, retry: &mut Retry) -> DrainReport {
        let deadline = tokio::time::Instant::now() + self.config.drain_timeout;
        let before = self.buffer.persisted();
        tracing::info!(
            ev = "drain",
            msg = "draining queue",
            entries = self.buffer.held()
        );
        while let Some(batch) = self
            .buffer
            .try_take(self.config.batch_max_rows, self.config.batch_max_bytes)
        {
            let write_deadline =
                deadline.min(tokio::time::Instant::now() + self.config.write_timeout);
            match self
                .write(batch, write_deadline, Some(deadline), retry)
                .await
            {
                Attempt::Written => continue,
                Attempt::TimedOut => break,
                Attempt::Failed => {
                    let wake = tokio::time::Instant::now() + retry.backoff.next_delay();
                    if wake >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(wake).await;
                }
            }
        }
        let dropped = self.buffer.drop_remaining() as u64;
        let report = DrainReport {
            drained: self.buffer.persisted() - before,
            dropped,
        };
        tracing::info!(
            ev = "drain",
            msg = "queue drained",
            drained = report.drained,
            dropped = report.dropped
        );
        report
    }

    async fn write(
        &self,
        batch: S::Batch,
        deadline: tokio::time::Instant,
        drain_deadline: Option<tokio::time::Instant>,
        retry: &mut Retry,
    ) -> Attempt {
        let rows = S::rows(&batch);
        let started = Instant::now();
        let result = timeout_at(deadline, self.store.insert_batch(&rows)).await;
        self.telemetry.emit(BatchWriteTimed {
            elapsed: started.elapsed(),
        });
        match result {
            Ok(Ok(inserted)) => {
                self.telemetry.emit(BatchWritten {
                    rows: rows.len() as u64,
                    inserted,
                });
                self.buffer.complete(batch);
                self.resumed(retry);
                Attempt::Written
            }
            Ok(Err(e)) if should_isolate(&e, retry.refusals, &self.config) => {
                self.telemetry.emit(BatchWriteFailed { error: &e });
                self.write_around_refusals(batch, &rows, drain_deadline, retry)
                    .await
            }
            Ok(Err(e)) => {
                self.fail(batch, rows.len(), &e, retry);
                Attempt::Failed
            }
            Err(_) if drain_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) => {
                self.buffer.abandon(batch);
                Attempt::TimedOut
            }
            Err(_) => {
                let e = StoreError::Timeout {
                    operation: "batch write",
                    after: self.config.write_timeout,
                };
                self.fail(batch, rows.len(), &e, retry);
                Attempt::Failed
            }
        }
    }

    fn resumed(&self, retry: &mut Retry) {
        if retry.backoff.failures() > 0 {
            tracing::info!(
                ev = "db",
                msg = "writes resumed",
                failures = retry.backoff.failures()
            );
        }
        retry.succeeded();
    }

    fn fail(&self, batch: S::Batch, rows: usize, error: &StoreError, retry: &mut Retry) {
        self.telemetry.emit(BatchWriteFailed { error });
        tracing::warn!(
            ev = "db",
            msg = "batch write failed; batch kept at the front of the queue",
            error = %error,
            error_kind = error.kind(),
            rows,
            failures = retry.backoff.failures() + 1
        );
        retry.failed(error);
        self.buffer.restore(batch);
    }

    /// The poison-batch path: writes what the database accepts, in order, and moves the rows
    /// it refuses to the dead letters. Any other failure hands the whole batch back. Each
    /// statement is bounded by the write timeout and, while draining, by the drain deadline.
    async fn write_around_refusals(
        &self,
        batch: S::Batch,
        rows: &[Row],
        drain_deadline: Option<tokio::time::Instant>,
        retry: &mut Retry,
    ) -> Attempt {
        let isolated = match self.isolate(rows, drain_deadline).await {
            Ok(isolated) => isolated,
            Err(e) => {
                self.fail(batch, rows.len(), &e, retry);
                return Attempt::Failed;
            }
        };
        if !isolated.refused.is_empty() {
            let stored = self
                .bounded(
                    "dead-letter write",
                    drain_deadline,
                    self.store.insert_dead_letters(&isolated.refused),
                )
                .await;
            if let Err(e) = stored {
                self.fail(batch, rows.len(), &e, retry);
                return Attempt::Failed;
            }
        }
        for letter in &isolated.refused {
            tracing::warn!(
                ev = "db",
                msg = "row refused by the database; written to mcp_dead_letters",
                source = %letter.row.source,
                seq = letter.row.seq,
                reason = %letter.reason
            );
            self.observers
                .iter()
                .for_each(|o| o.on_dead_letter(&letter.row));
        }
        let dead = isolated.refused.len();
        self.telemetry.emit(RowsDeadLettered { rows: dead as u64 });
        self.telemetry.emit(BatchWritten {
            rows: (rows.len() - dead) as u64,
            inserted: isolated.inserted,
        });
        self.buffer.settle(batch, dead);
        self.resumed(retry);
        Attempt::Written
    }

    /// Splits a batch the database refused into halves, left before right, until each
    /// refused row stands alone; writes every accepted part as it goes.
    async fn isolate(
        &self,
        rows: &[Row],
        drain_deadline: Option<tokio::time::Instant>,
    ) -> Result<Isolated, StoreError> {
        let mut isolated = Isolated {
            inserted: 0,
            refused: Vec::new(),
        };
        // A stack of ranges with the next one (in row order) on top; the whole batch has
        // just been refused, so start from its halves.
        let mut pending = halves(0..rows.len());
        while let Some(range) = pending.pop() {
            let part = &rows[range.clone()];
            match self
                .bounded("batch write", drain_deadline, self.store.insert_batch(part))
                .await
            {
                Ok(inserted) => isolated.inserted += inserted,
                Err(e) if !e.is_refusal() => return Err(e),
                Err(e) if part.len() == 1 => isolated
                    .refused
                    .extend(part.iter().map(|r| DeadLetter::new(r.clone(), &e))),
                Err(_) => pending.extend(halves(range)),
            }
        }
        Ok(isolated)
    }

    /// `operation` bounded by the write timeout and by `limit` (the drain deadline).
    async fn bounded<T>(
        &self,
        operation: &'static str,
        limit: Option<tokio::time::Instant>,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let after = self.config.write_timeout;
        let deadline = tokio::time::Instant::now() + after;
        let deadline = limit.map_or(deadline, |limit| limit.min(deadline));
        timeout_at(deadline, op)
            .await
            .unwrap_or(Err(StoreError::Timeout { operation, after }))
    }
}

/// A range's two halves, the right one first (so the left is popped first); one row or none
/// yields itself.
fn halves(range: std::ops::Range<usize>) -> Vec<std::ops::Range<usize>> {
    if range.len() <= 1 {
        return vec![range];
    }
    let mid = range.start + range.len() / 2;
    vec![mid..range.end, range.start..mid]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_pop_left_first_and_cover_the_range() {
        let mut stack = halves(0..5);
        assert_eq!(stack.pop(), Some(0..2));
        assert_eq!(stack.pop(), Some(2..5));
        assert_eq!(halves(3..4), vec![3..4]);
    }

    #[test]
    fn only_refusals_in_a_row_lead_to_a_split() {
        let config = WriterConfig {
            batch_max_rows: 1,
            batch_max_bytes: 1,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            write_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(1),
            isolate_after_refusals: 2,
        };
        let refused = StoreError::Rejected(sqlx::Error::Protocol("refused".into()));
        let down = StoreError::Unavailable(sqlx::Error::PoolTimedOut);
        let mut retry = Retry::new(&config);
        assert!(!should_isolate(&refused, retry.refusals, &config));
        retry.failed(&refused);
        assert!(should_isolate(&refused, retry.refusals, &config));
        assert!(!should_isolate(&down, retry.refusals, &config));
        retry.failed(&down);
        assert!(
            !should_isolate(&refused, retry.refusals, &config),
            "streak broken"
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays[2] >= Duration::from_millis(200) && delays[2] <= Duration::from_millis(400));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        assert!(delays[7] >= Duration::from_millis(500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}

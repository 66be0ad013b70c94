//! The writer: one ordered worker that moves batches from its source (the buffer, through
//! `BatchSource`, which the buffer implements) to the store, retries
//! failed batches from the front with exponential backoff and jitter, and drains the queue
//! within its own deadline at shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt;
use tokio::sync::watch;
use tokio::time::timeout_at;

use crate::event::Row;
use crate::internal_events::{BatchWriteFailed, BatchWriteTimed, BatchWritten, Telemetry};
use crate::store::{Store, StoreError};

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

pub struct Writer<S: BatchSource> {
    pub buffer: Arc<S>,
    pub store: Arc<dyn Store>,
    pub telemetry: Arc<Telemetry>,
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
        let mut backoff = Backoff::new(self.config.initial_backoff, self.config.max_backoff);
        loop {
            let batch = tokio::select! {
                b = self.buffer.take(self.config.batch_max_rows, self.config.batch_max_bytes) => b,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            // The write itself is never cancelled by shutdown: its bound is the write timeout.
            let deadline = tokio::time::Instant::now() + self.config.write_timeout;
            if let Attempt::Written = self.write(batch, deadline, None, &mut backoff).await {
                continue;
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        self.drain(&mut backoff).await
    }

    async fn drain(&self, backoff: &mut Backoff) -> DrainReport {
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
                .write(batch, write_deadline, Some(deadline), backoff)
                .await
            {
                Attempt::Written => continue,
                Attempt::TimedOut => break,
                Attempt::Failed => {
                    let wake = tokio::time::Instant::now() + backoff.next_delay();
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
        backoff: &mut Backoff,
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
                if backoff.failures() > 0 {
                    tracing::info!(
                        ev = "db",
                        msg = "writes resumed",
                        failures = backoff.failures()
                    );
                }
                backoff.reset();
                Attempt::Written
            }
            Ok(Err(e)) => {
                self.fail(batch, rows.len(), &e, backoff);
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
                self.fail(batch, rows.len(), &e, backoff);
                Attempt::Failed
            }
        }
    }

    fn fail(&self, batch: S::Batch, rows: usize, error: &StoreError, backoff: &Backoff) {
        self.telemetry.emit(BatchWriteFailed { error });
        tracing::warn!(
            ev = "db",
            msg = "batch write failed; batch kept at the front of the queue",
            error = %error,
            error_kind = error.kind(),
            rows,
            failures = backoff.failures() + 1
        );
        self.buffer.restore(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

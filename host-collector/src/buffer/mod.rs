//! The buffer between ingest and the writer: one type over two variants, as Vector's buffers.
//! Owns the in-memory `queue` (byte budget, drop-oldest, conservation counters) and, in the
//! disk variant, the `spool` (an on-disk log of what was acknowledged) and its coordination:
//! spool ordinals match queue ordinals, settled segments are released as the queue's low
//! watermark passes them, what an earlier run left is replayed at start, and what shutdown
//! could not write stays for the next start. Ingest pushes; the writer takes through
//! `writer::BatchSource`, which `Buffer` implements; neither knows whether a spool is there.

pub mod queue;
pub mod spool;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::event::Row;
use crate::internal_events::{
    BufferReading, LiveReadings, Probe, SpoolReading, SpoolReplayed, Telemetry,
};
use crate::writer::BatchSource;
use queue::{Batch, PushOutcome, Queue};
use spool::{Spool, SpoolConfig};

pub use queue::QueueLevels;
pub use spool::{Recovered, SpoolLevels};

/// How often settled spool segments are looked for and deleted.
const RELEASE_INTERVAL: Duration = Duration::from_millis(250);

/// Which buffer to build.
#[derive(Debug, Clone)]
pub struct BufferConfig {
    /// Byte budget of the in-memory queue.
    pub budget: usize,
    /// The disk spool; `None` for a memory-only buffer.
    pub spool: Option<SpoolConfig>,
}

/// The disk variant could not record the events: nothing was buffered, the sender must
/// retry (the HTTP layer answers 503). The detail is for the log, not for the sender.
#[derive(Debug)]
pub struct BufferUnavailable(pub String);

impl std::fmt::Display for BufferUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BufferUnavailable {}

pub struct Buffer {
    queue: Queue<Row>,
    spool: Option<Spool>,
    /// Held from spool append to queue push, so spool ordinals match the queue's.
    push_lock: Mutex<()>,
    telemetry: Arc<Telemetry>,
}

impl Buffer {
    /// A memory-only buffer.
    pub fn memory(budget: usize, telemetry: Arc<Telemetry>) -> Self {
        Buffer {
            queue: Queue::new(budget),
            spool: None,
            push_lock: Mutex::new(()),
            telemetry,
        }
    }

    /// Builds the configured variant; the disk variant also returns what an earlier run left
    /// in the spool, to `replay` once ingest is ready to filter it.
    pub fn open(
        config: BufferConfig,
        telemetry: Arc<Telemetry>,
    ) -> Result<(Self, Recovered), BufferUnavailable> {
        let mut buffer = Buffer::memory(config.budget, telemetry);
        let Some(spool_config) = config.spool else {
            return Ok((buffer, Recovered::default()));
        };
        let (spool, recovered) = Spool::open(spool_config)
            .map_err(|e| BufferUnavailable(format!("cannot open the spool: {e}")))?;
        buffer.spool = Some(spool);
        Ok((buffer, recovered))
    }

    /// The spool directory, when there is one.
    pub fn spool_dir(&self) -> Option<PathBuf> {
        self.spool.as_ref().map(|s| s.dir().to_path_buf())
    }

    /// Buffers `rows` in order: on disk first (disk variant), then in the queue, which may
    /// evict older rows or drop these (counted) but never waits. An error means nothing of
    /// `rows` was kept.
    pub fn push(&self, rows: Vec<Row>) -> Result<PushOutcome, BufferUnavailable> {
        Ok(self.admit(&rows)?.queue(rows))
    }

    /// The first half of `push`, for a caller with work to do between the two: `rows` are
    /// on disk (disk variant) when this returns `Ok`, and the returned `Admitted` holds the
    /// buffer's order until the same rows are handed to `Admitted::queue`.
    pub fn admit<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a Row>,
    ) -> Result<Admitted<'_>, BufferUnavailable> {
        let order = self.push_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(spool) = &self.spool {
            spool.append(self.queue.next_ordinal(), rows).map_err(|e| {
                tracing::error!(ev = "spool", msg = "cannot append; refusing ingest", error = %e);
                BufferUnavailable(e.to_string())
            })?;
        }
        Ok(Admitted {
            queue: &self.queue,
            _order: order,
        })
    }

    /// Buffers again what an earlier run acknowledged and may not have written (the store's
    /// unique key absorbs what it had), keeping only rows `keep` accepts (ingest's dedupe),
    /// then deletes the earlier run's files. Returns how many rows were buffered.
    pub fn replay(
        &self,
        mut recovered: Recovered,
        keep: impl FnMut(&Row) -> bool,
    ) -> Result<usize, BufferUnavailable> {
        let Some(spool) = &self.spool else {
            return Ok(0);
        };
        let found = recovered.rows.len();
        let torn = recovered.torn_lines;
        let rows: Vec<Row> = std::mem::take(&mut recovered.rows)
            .into_iter()
            .filter(keep)
            .collect();
        let queued = rows.len();
        self.push(rows)
            .map_err(|e| BufferUnavailable(format!("cannot re-spool recovered events: {e}")))?;
        spool.forget_recovered(recovered);
        self.telemetry.emit(SpoolReplayed {
            events: queued as u64,
            torn_lines: torn,
        });
        if found > 0 || torn > 0 {
            tracing::info!(
                ev = "spool",
                msg = "replayed events acknowledged by an earlier run",
                found,
                queued,
                torn_lines = torn
            );
        }
        Ok(queued)
    }

    /// Starts deleting spool segments as their events settle; `None` for a memory buffer.
    /// Stop it before the shutdown drain, whose drops must stay in the spool.
    pub fn start_release(self: &Arc<Self>) -> Option<ReleaseTask> {
        self.spool.as_ref()?;
        let (stop, mut stop_rx) = watch::channel(false);
        let buffer = self.clone();
        let task = tokio::spawn(async move {
            loop {
                buffer.release_settled();
                tokio::select! {
                    _ = tokio::time::sleep(RELEASE_INTERVAL) => {}
                    _ = stop_rx.wait_for(|s| *s) => return,
                }
            }
        });
        Some(ReleaseTask { stop, task })
    }

    fn release_settled(&self) {
        if let Some(spool) = &self.spool {
            spool.release_below(self.queue.low_watermark());
        }
    }

    /// After the drain: an empty spool when everything was written; otherwise everything
    /// since the release task stopped stays, and the next start replays it (what was written
    /// already is absorbed by the store's unique key).
    pub fn settle(&self) {
        let Some(spool) = &self.spool else {
            return;
        };
        let unwritten = self.queue.levels().counters.dropped_shutdown;
        if unwritten == 0 {
            spool.release_below(self.queue.next_ordinal());
            return;
        }
        tracing::warn!(
            ev = "spool",
            msg = "events not written at shutdown stay in the spool for the next start",
            unwritten,
            spool_bytes = spool.levels().bytes
        );
    }

    /// The queue's levels and counters.
    pub fn levels(&self) -> QueueLevels {
        self.queue.levels()
    }

    /// The spool's levels, when there is one.
    pub fn spool_levels(&self) -> Option<SpoolLevels> {
        self.spool.as_ref().map(Spool::levels)
    }

    /// Refuses further pushes (they count as shutdown drops).
    pub fn close(&self) {
        self.queue.close();
    }
}

/// The writer's end: batches from the front, handed back with one of the outcomes.
impl BatchSource for Buffer {
    type Batch = Batch<Row>;

    async fn take(&self, max_rows: usize, max_bytes: usize) -> Batch<Row> {
        self.queue.take(max_rows, max_bytes).await
    }

    fn try_take(&self, max_rows: usize, max_bytes: usize) -> Option<Batch<Row>> {
        self.queue.try_take(max_rows, max_bytes)
    }

    fn rows(batch: &Batch<Row>) -> Vec<Row> {
        batch.items().cloned().collect()
    }

    fn complete(&self, batch: Batch<Row>) {
        self.queue.complete(batch);
    }

    fn settle(&self, batch: Batch<Row>, dead_lettered: usize) {
        self.queue.settle(batch, dead_lettered);
    }

    fn restore(&self, batch: Batch<Row>) {
        self.queue.restore(batch);
    }

    fn abandon(&self, batch: Batch<Row>) {
        self.queue.abandon(batch);
    }

    fn drop_remaining(&self) -> usize {
        self.queue.drop_remaining()
    }

    fn persisted(&self) -> u64 {
        self.queue.levels().counters.persisted
    }

    fn held(&self) -> u64 {
        self.queue.levels().held()
    }
}

impl Probe for Buffer {
    fn read(&self, readings: &mut LiveReadings) {
        let q = self.queue.levels();
        readings.buffer = BufferReading {
            bytes: q.bytes as u64,
            budget: q.budget as u64,
            entries: q.held(),
            oldest_age: q.oldest_age,
            persisted: q.counters.persisted,
            dropped_queue_full: q.counters.dropped_queue_full,
            dropped_shutdown: q.counters.dropped_shutdown,
        };
        readings.spool = self.spool_levels().map(|s| SpoolReading {
            bytes: s.bytes,
            segments: s.segments as u64,
            write_errors: s.write_errors,
        });
    }
}

/// Rows admitted to the buffer (on disk, for the disk variant), not yet queued.
pub struct Admitted<'a> {
    queue: &'a Queue<Row>,
    _order: MutexGuard<'a, ()>,
}

impl Admitted<'_> {
    /// Queues the rows that were admitted, in the same order.
    pub fn queue(self, rows: impl IntoIterator<Item = Row>) -> PushOutcome {
        self.queue.push_many(rows)
    }
}

/// The spool release task; see `Buffer::start_release`.
pub struct ReleaseTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ReleaseTask {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

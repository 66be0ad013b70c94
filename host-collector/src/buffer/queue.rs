//! The bounded in-memory queue between ingest and the writer: owns the byte budget, the
//! drop-oldest policy and the conservation counters (received = persisted + dropped + queued).
//!
//! Ingest never waits here: `push` either fits the item (evicting the oldest items if needed)
//! or drops it, and returns at once. The writer takes the front as a batch; the batch stays
//! charged to the budget while in flight and, if the write fails, goes back to the front so
//! order is kept.
//!
//! Drop-oldest reaches into the in-flight batch too: when nothing is waiting and the batch
//! being written holds the budget (the database is down and the writer keeps retrying it),
//! a new item evicts the batch's oldest items rather than being dropped itself. The eviction
//! is settled when the write returns: items that reached the store count as persisted (the
//! budget was exceeded by at most that batch, for the length of one write), items handed
//! back count as dropped and are not queued again.
//!
//! Every item received gets an ordinal (its position in arrival order, dropped items
//! included). The low watermark, the smallest ordinal still held, tells the spool which of
//! its records are settled (persisted or dropped and counted); `Buffer` does that pairing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Anything the queue can hold: it only needs to know what an item costs.
pub trait Weighted {
    fn weight(&self) -> usize;
}

impl Weighted for crate::event::Row {
    fn weight(&self) -> usize {
        self.queued_bytes()
    }
}

/// Running totals; together with the queued and in-flight counts they always balance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub received: u64,
    pub persisted: u64,
    /// Items the store refused for good, written to its dead letters instead.
    pub dead_lettered: u64,
    pub dropped_queue_full: u64,
    pub dropped_shutdown: u64,
}

/// A point-in-time view for metrics, health and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLevels {
    pub counters: Counters,
    /// Items waiting, not counting the in-flight batch.
    pub queued: usize,
    pub in_flight: usize,
    /// Bytes charged to the budget: queued plus in flight, less in-flight items already
    /// evicted.
    pub bytes: usize,
    pub budget: usize,
    pub oldest_age: Option<Duration>,
}

impl QueueLevels {
    /// Items that are held in memory (waiting or being written).
    pub fn held(&self) -> u64 {
        (self.queued + self.in_flight) as u64
    }
}

/// What happened to a push.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushOutcome {
    pub accepted: usize,
    /// Older waiting items evicted to make room, plus new items that could not fit at all
    /// (items evicted from an in-flight batch are counted when its write returns).
    pub dropped_queue_full: usize,
    /// Items refused because the queue is closed for shutdown.
    pub dropped_shutdown: usize,
}

struct Entry<T> {
    item: T,
    ordinal: u64,
    bytes: usize,
    enqueued: Instant,
}

/// Items taken by the writer; hand them back with `complete`, `restore` or `abandon`.
pub struct Batch<T> {
    entries: Vec<Entry<T>>,
    bytes: usize,
}

impl<T> Batch<T> {
    pub fn items(&self) -> impl ExactSizeIterator<Item = &T> {
        self.entries.iter().map(|e| &e.item)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// A batch the writer holds, as the queue remembers it.
struct InFlight {
    /// Each item's bytes, in order.
    sizes: Vec<usize>,
    /// How many of the oldest items drop-oldest has evicted while the batch was out.
    evicted: usize,
    evicted_bytes: usize,
}

impl InFlight {
    fn charged_bytes(&self) -> usize {
        self.sizes.iter().sum::<usize>() - self.evicted_bytes
    }
}

struct Inner<T> {
    entries: VecDeque<Entry<T>>,
    queued_bytes: usize,
    in_flight: usize,
    /// Bytes of the in-flight batches still charged (evicted items excluded).
    in_flight_bytes: usize,
    /// Batches in flight by their first ordinal (the writer takes one at a time).
    in_flight_batches: BTreeMap<u64, InFlight>,
    counters: Counters,
    closed: bool,
}

pub struct Queue<T> {
    inner: Mutex<Inner<T>>,
    budget: usize,
    ready: Notify,
}

impl<T: Weighted> Queue<T> {
    pub fn new(budget: usize) -> Self {
        Queue {
            inner: Mutex::new(Inner {
                entries: VecDeque::new(),
                queued_bytes: 0,
                in_flight: 0,
                in_flight_bytes: 0,
                in_flight_batches: BTreeMap::new(),
                counters: Counters::default(),
                closed: false,
            }),
            budget,
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // A panic while holding the lock cannot leave the counters half-updated in a way that
        // matters more than losing the queue, so keep serving with the data as it is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Appends items in order, evicting the oldest waiting items when the budget requires it.
    pub fn push_many(&self, items: impl IntoIterator<Item = T>) -> PushOutcome {
        let now = Instant::now();
        let mut outcome = PushOutcome::default();
        {
            let mut inner = self.lock();
            for item in items {
                let ordinal = inner.counters.received;
                inner.counters.received += 1;
                if inner.closed {
                    inner.counters.dropped_shutdown += 1;
                    outcome.dropped_shutdown += 1;
                    continue;
                }
                let bytes = item.weight();
                if bytes > self.budget {
                    // It could never fit: evicting everything older would only lose more.
                    inner.counters.dropped_queue_full += 1;
                    outcome.dropped_queue_full += 1;
                    continue;
                }
                outcome.dropped_queue_full += inner.make_room(bytes, self.budget);
                if inner.queued_bytes + inner.in_flight_bytes + bytes > self.budget {
                    // Unreachable once everything older is evicted; kept so the budget holds
                    // whatever the accounting above says.
                    inner.counters.dropped_queue_full += 1;
                    outcome.dropped_queue_full += 1;
                    continue;
                }
                inner.queued_bytes += bytes;
                inner.entries.push_back(Entry {
                    item,
                    ordinal,
                    bytes,
                    enqueued: now,
                });
                outcome.accepted += 1;
            }
        }
        if outcome.accepted > 0 {
            self.ready.notify_one();
        }
        outcome
    }

    pub fn push(&self, item: T) -> PushOutcome {
        self.push_many(std::iter::once(item))
    }

    /// Takes up to `max_rows` items / `max_bytes` bytes from the front (always at least one
    /// item if any is waiting, so an oversized item cannot block the queue).
    pub fn try_take(&self, max_rows: usize, max_bytes: usize) -> Option<Batch<T>> {
        let mut inner = self.lock();
        let mut batch = Batch {
            entries: Vec::new(),
            bytes: 0,
        };
        while batch.entries.len() < max_rows.max(1) {
            let Some(front) = inner.entries.front() else {
                break;
            };
            if !batch.entries.is_empty() && batch.bytes + front.bytes > max_bytes {
                break;
            }
            let Some(entry) = inner.entries.pop_front() else {
                break;
            };
            inner.queued_bytes -= entry.bytes;
            batch.bytes += entry.bytes;
            batch.entries.push(entry);
        }
        if batch.entries.is_empty() {
            return None;
        }
        inner.in_flight += batch.entries.len();
        inner.in_flight_bytes += batch.bytes;
        if let Some(first) = batch.entries.first() {
            let sizes = batch.entries.iter().map(|e| e.bytes).collect();
            inner.in_flight_batches.insert(
                first.ordinal,
                InFlight {
                    sizes,
                    evicted: 0,
                    evicted_bytes: 0,
                },
            );
        }
        Some(batch)
    }

    /// Waits until something can be taken.
    pub async fn take(&self, max_rows: usize, max_bytes: usize) -> Batch<T> {
        loop {
            // Register interest before checking, so a push between the check and the wait
            // still wakes us.
            let notified = self.ready.notified();
            if let Some(batch) = self.try_take(max_rows, max_bytes) {
                return batch;
            }
            notified.await;
        }
    }

    /// The batch reached the store, all of it.
    pub fn complete(&self, batch: Batch<T>) {
        self.settle(batch, 0);
    }

    /// The batch reached the store except `dead_lettered` items, which the store refused and
    /// which were written to its dead letters instead.
    pub fn settle(&self, batch: Batch<T>, dead_lettered: usize) {
        let mut inner = self.lock();
        // Items evicted while the batch was out were written after all: nothing was lost.
        inner.release(&batch);
        let dead_lettered = dead_lettered.min(batch.entries.len());
        inner.counters.dead_lettered += dead_lettered as u64;
        inner.counters.persisted += (batch.entries.len() - dead_lettered) as u64;
    }

    /// The write failed: the batch goes back to the front, in its original order, less the
    /// items evicted while it was out (counted as dropped now).
    pub fn restore(&self, batch: Batch<T>) {
        let mut inner = self.lock();
        let evicted = inner.release(&batch);
        inner.counters.dropped_queue_full += evicted as u64;
        for entry in batch.entries.into_iter().skip(evicted).rev() {
            inner.queued_bytes += entry.bytes;
            inner.entries.push_front(entry);
        }
    }

    /// The batch is given up at shutdown.
    pub fn abandon(&self, batch: Batch<T>) {
        let mut inner = self.lock();
        let evicted = inner.release(&batch);
        inner.counters.dropped_queue_full += evicted as u64;
        inner.counters.dropped_shutdown += (batch.entries.len() - evicted) as u64;
    }

    /// Refuses further pushes (they count as shutdown drops).
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Drops everything still waiting, counting it as shutdown drops; returns how many.
    pub fn drop_remaining(&self) -> usize {
        let mut inner = self.lock();
        let n = inner.entries.len();
        inner.entries.clear();
        inner.queued_bytes = 0;
        inner.counters.dropped_shutdown += n as u64;
        n
    }

    /// The ordinal the next pushed item will get.
    pub fn next_ordinal(&self) -> u64 {
        self.lock().counters.received
    }

    /// The smallest ordinal still held (waiting or in flight); `next_ordinal` when empty.
    /// Everything below it has been persisted or dropped.
    pub fn low_watermark(&self) -> u64 {
        let inner = self.lock();
        let waiting = inner.entries.front().map(|e| e.ordinal);
        let in_flight = inner.in_flight_batches.keys().next().copied();
        [waiting, in_flight]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(inner.counters.received)
    }

    pub fn levels(&self) -> QueueLevels {
        let inner = self.lock();
        QueueLevels {
            counters: inner.counters,
            queued: inner.entries.len(),
            in_flight: inner.in_flight,
            bytes: inner.queued_bytes + inner.in_flight_bytes,
            budget: self.budget,
            oldest_age: inner.entries.front().map(|e| e.enqueued.elapsed()),
        }
    }
}

impl<T> Inner<T> {
    /// Evicts the oldest items until `bytes` more would fit: first from the in-flight
    /// batches, which are older than anything waiting (settled when their write returns),
    /// then waiting items (dropped and counted now). Returns how many waiting items were
    /// dropped.
    fn make_room(&mut self, bytes: usize, budget: usize) -> usize {
        for batch in self.in_flight_batches.values_mut() {
            while self.queued_bytes + self.in_flight_bytes + bytes > budget {
                let Some(&size) = batch.sizes.get(batch.evicted) else {
                    break;
                };
                batch.evicted += 1;
                batch.evicted_bytes += size;
                self.in_flight_bytes -= size;
            }
        }
        let mut dropped = 0;
        while self.queued_bytes + self.in_flight_bytes + bytes > budget {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.queued_bytes -= old.bytes;
            self.counters.dropped_queue_full += 1;
            dropped += 1;
        }
        dropped
    }

    /// Forgets an in-flight batch; returns how many of its oldest items were evicted.
    fn release(&mut self, batch: &Batch<T>) -> usize {
        self.in_flight -= batch.entries.len();
        let Some(first) = batch.entries.first() else {
            return 0;
        };
        let Some(record) = self.in_flight_batches.remove(&first.ordinal) else {
            return 0;
        };
        self.in_flight_bytes -= record.charged_bytes();
        record.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(usize);
    impl Weighted for Item {
        fn weight(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn oversized_item_is_dropped_not_queued() {
        let q = Queue::new(10);
        q.push(Item(5));
        let out = q.push(Item(11));
        assert_eq!(out.accepted, 0);
        assert_eq!(out.dropped_queue_full, 1);
        assert_eq!(q.levels().queued, 1, "nothing older was evicted for it");
        assert_eq!(q.levels().bytes, 5);
    }

    #[test]
    fn closed_queue_counts_shutdown_drops() {
        let q = Queue::new(10);
        q.close();
        assert_eq!(q.push(Item(1)).dropped_shutdown, 1);
        assert_eq!(q.levels().counters.dropped_shutdown, 1);
    }

    #[test]
    fn low_watermark_follows_the_oldest_held_item() {
        let q = Queue::new(10);
        assert_eq!(q.low_watermark(), 0, "empty: nothing held");
        q.push_many([Item(3), Item(3), Item(3)]);
        assert_eq!((q.low_watermark(), q.next_ordinal()), (0, 3));
        let batch = q.try_take(2, 100).unwrap();
        assert_eq!(
            q.low_watermark(),
            0,
            "the in-flight batch still holds ordinal 0"
        );
        q.restore(batch);
        assert_eq!(q.low_watermark(), 0);
        let batch = q.try_take(2, 100).unwrap();
        q.complete(batch);
        assert_eq!(q.low_watermark(), 2, "ordinals 0 and 1 persisted");
        q.push_many([Item(5), Item(5)]); // the second evicts ordinal 2 to fit
        assert_eq!(q.levels().counters.dropped_queue_full, 1);
        assert_eq!(q.low_watermark(), 3, "dropped items are settled too");
        let batch = q.try_take(10, 100).unwrap();
        q.complete(batch);
        assert_eq!((q.low_watermark(), q.next_ordinal()), (5, 5));
    }

    /// The database is down, the writer holds the only batch and it fills the budget: new
    /// items must push the batch's oldest out, not be dropped themselves.
    #[test]
    fn drop_oldest_reaches_the_in_flight_batch() {
        let q = Queue::new(10);
        q.push_many([Item(4), Item(4)]);
        let batch = q.try_take(10, 100).unwrap();
        let out = q.push(Item(4));
        assert_eq!(
            (out.accepted, out.dropped_queue_full),
            (1, 0),
            "the newest is kept"
        );
        assert_eq!(q.levels().bytes, 8, "ordinal 0 no longer charged");
        q.restore(batch);
        let levels = q.levels();
        assert_eq!(levels.counters.dropped_queue_full, 1, "ordinal 0 dropped");
        assert_eq!((levels.queued, levels.in_flight, levels.bytes), (2, 0, 8));
        assert_eq!(q.low_watermark(), 1);
        let batch = q.try_take(10, 100).unwrap();
        assert_eq!(
            batch.items().map(|i| i.0).collect::<Vec<_>>(),
            [4, 4],
            "ordinals 1 and 2 in order"
        );
    }

    /// The same eviction, but the write succeeds: everything reached the store.
    #[test]
    fn evicted_in_flight_items_that_were_written_count_as_persisted() {
        let q = Queue::new(10);
        q.push_many([Item(4), Item(4)]);
        let batch = q.try_take(10, 100).unwrap();
        q.push_many([Item(4), Item(4)]);
        q.complete(batch);
        let levels = q.levels();
        assert_eq!(levels.counters.persisted, 2);
        assert_eq!(levels.counters.dropped_queue_full, 0);
        assert_eq!((levels.queued, levels.in_flight, levels.bytes), (2, 0, 8));
    }

    #[test]
    fn abandoned_batch_splits_evicted_from_shutdown_drops() {
        let q = Queue::new(10);
        q.push_many([Item(4), Item(4)]);
        let batch = q.try_take(10, 100).unwrap();
        q.push(Item(4));
        q.abandon(batch);
        let c = q.levels().counters;
        assert_eq!((c.dropped_queue_full, c.dropped_shutdown), (1, 1));
    }

    #[test]
    fn settle_counts_dead_letters_apart_from_persisted() {
        let q = Queue::new(100);
        q.push_many([Item(1), Item(1), Item(1)]);
        let batch = q.try_take(10, 100).unwrap();
        q.settle(batch, 1);
        let c = q.levels().counters;
        assert_eq!((c.persisted, c.dead_lettered), (2, 1));
        assert_eq!(q.low_watermark(), 3);
    }

    #[tokio::test]
    async fn take_wakes_on_push() {
        let q = std::sync::Arc::new(Queue::new(100));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.take(10, 100).await.len() });
        q.push(Item(5));
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(got, Ok(Ok(1))));
    }
}

//! Model-based property tests of the byte-budget queue: random pushes, takes, completions,
//! completions with dead letters, failures (restore) and shutdown, checked after every step
//! against a plain VecDeque model (drop-oldest reaching into the in-flight batch included).
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;

use host_collector::buffer::queue::{Batch, Queue, Weighted};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
struct Item {
    id: u64,
    size: usize,
}

impl Weighted for Item {
    fn weight(&self) -> usize {
        self.size
    }
}

#[derive(Debug, Clone)]
enum Op {
    Push(Vec<usize>),
    Take { rows: usize, bytes: usize },
    Complete,
    Settle { dead: usize },
    Restore,
    Close,
    DropRemaining,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec(1usize..400, 1..8).prop_map(Op::Push),
        2 => (1usize..10, 1usize..1500).prop_map(|(rows, bytes)| Op::Take { rows, bytes }),
        2 => Just(Op::Complete),
        1 => (0usize..4).prop_map(|dead| Op::Settle { dead }),
        1 => Just(Op::Restore),
        1 => Just(Op::Close),
        1 => Just(Op::DropRemaining),
    ]
}

/// The reference: the waiting items, the batch in flight (with how many of its oldest
/// items drop-oldest has marked evicted) and the conservation counters.
#[derive(Default)]
struct Model {
    waiting: VecDeque<Item>,
    in_flight: Vec<Item>,
    evicted: usize,
    closed: bool,
    received: u64,
    persisted: u64,
    dead_lettered: u64,
    dropped: u64,
    persisted_ids: Vec<u64>,
}

impl Model {
    fn bytes(&self) -> usize {
        self.waiting
            .iter()
            .chain(&self.in_flight[self.evicted..])
            .map(|i| i.size)
            .sum()
    }

    fn push(&mut self, item: Item, budget: usize) {
        self.received += 1;
        if self.closed || item.size > budget {
            self.dropped += 1;
            return;
        }
        while self.bytes() + item.size > budget && self.evicted < self.in_flight.len() {
            self.evicted += 1;
        }
        while self.bytes() + item.size > budget && !self.waiting.is_empty() {
            self.waiting.pop_front();
            self.dropped += 1;
        }
        if self.bytes() + item.size > budget {
            self.dropped += 1;
        } else {
            self.waiting.push_back(item);
        }
    }
}

fn run(budget: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let queue = Queue::<Item>::new(budget);
    let mut model = Model::default();
    let mut batch: Option<Batch<Item>> = None;
    let mut next_id = 0;
    for op in ops {
        match op {
            Op::Push(sizes) => {
                let items: Vec<Item> = sizes
                    .into_iter()
                    .map(|size| {
                        next_id += 1;
                        Item { id: next_id, size }
                    })
                    .collect();
                for item in items.clone() {
                    model.push(item, budget);
                }
                queue.push_many(items);
            }
            Op::Take { rows, bytes } if batch.is_none() => {
                batch = queue.try_take(rows, bytes);
                let taken: Vec<Item> = batch
                    .as_ref()
                    .map(|b| b.items().cloned().collect())
                    .unwrap_or_default();
                let expected: Vec<Item> = model.waiting.iter().take(taken.len()).cloned().collect();
                prop_assert_eq!(&taken, &expected, "takes from the front, in order");
                prop_assert!(taken.len() <= rows);
                let taken_bytes: usize = taken.iter().map(|i| i.size).sum();
                prop_assert!(taken.len() <= 1 || taken_bytes <= bytes);
                prop_assert_eq!(taken.is_empty(), model.waiting.is_empty());
                model.waiting.drain(..taken.len());
                model.in_flight = taken;
            }
            Op::Complete => {
                if let Some(b) = batch.take() {
                    queue.complete(b);
                    // Evicted items were written after all.
                    model.persisted += model.in_flight.len() as u64;
                    model
                        .persisted_ids
                        .extend(model.in_flight.drain(..).map(|i| i.id));
                    model.evicted = 0;
                }
            }
            Op::Settle { dead } => {
                if let Some(b) = batch.take() {
                    queue.settle(b, dead);
                    let dead = dead.min(model.in_flight.len());
                    model.dead_lettered += dead as u64;
                    model.persisted += (model.in_flight.len() - dead) as u64;
                    model
                        .persisted_ids
                        .extend(model.in_flight.drain(..).map(|i| i.id));
                    model.evicted = 0;
                }
            }
            Op::Restore => {
                if let Some(b) = batch.take() {
                    queue.restore(b);
                    model.dropped += model.evicted as u64;
                    for item in model.in_flight.drain(model.evicted..).rev() {
                        model.waiting.push_front(item);
                    }
                    model.in_flight.clear();
                    model.evicted = 0;
                }
            }
            Op::Close => {
                queue.close();
                model.closed = true;
            }
            Op::DropRemaining => {
                let n = queue.drop_remaining();
                prop_assert_eq!(n, model.waiting.len());
                model.dropped += n as u64;
                model.waiting.clear();
            }
            Op::Take { .. } => {}
        }
        let snap = queue.levels();
        let c = snap.counters;
        prop_assert!(
            snap.bytes <= budget,
            "{} bytes over budget {}",
            snap.bytes,
            budget
        );
        prop_assert_eq!(snap.bytes, model.bytes());
        prop_assert_eq!(snap.queued, model.waiting.len());
        prop_assert_eq!(snap.in_flight, model.in_flight.len());
        prop_assert_eq!(c.received, model.received);
        prop_assert_eq!(c.persisted, model.persisted);
        prop_assert_eq!(c.dead_lettered, model.dead_lettered);
        prop_assert_eq!(c.dropped_queue_full + c.dropped_shutdown, model.dropped);
        prop_assert_eq!(
            c.received,
            c.persisted + c.dead_lettered + c.dropped_queue_full + c.dropped_shutdown + snap.held(),
            "received = persisted + dead letters + dropped + queued"
        );
    }
    prop_assert!(
        model.persisted_ids.windows(2).all(|w| w[0] < w[1]),
        "persisted in arrival order"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn queue_matches_model(budget in 1usize..3000, ops in prop::collection::vec(op(), 1..120)) {
        run(budget, ops)?;
    }
}

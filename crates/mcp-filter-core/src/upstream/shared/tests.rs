//! CAS-loop tests against an in-memory store with Envoy's shared-data semantics and injected
//! interleaved writers.

use super::*;
use crate::trace::IdGenerator;
use crate::upstream::call::{Outcome, ProbeTicket};
use crate::upstream::config::FailureKind;
use crate::upstream::record::StateKind;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

const SEC: u64 = 1_000_000;
const T0: u64 = 1_700_000_000 * SEC;
const KEY: &str = "mcp-gw/v1/upstream/a";

/// Envoy's `SharedData`: a CAS token per key that changes on every write; a `set` with a
/// token fails if the key was written since; a missing key is created whatever the token.
#[derive(Default)]
struct MemStore {
    data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    writes: Cell<u32>,
    fail_get: Cell<bool>,
    fail_set: Cell<bool>,
}

impl SharedStore for MemStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        if self.fail_get.get() {
            return Err(StoreError);
        }
        Ok(match self.data.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        if self.fail_set.get() {
            return Err(SetError::Other);
        }
        let mut data = self.data.borrow_mut();
        if let (Some((_, current)), Some(expected)) = (data.get(key), cas) {
            if expected != 0 && expected != *current {
                return Err(SetError::CasMismatch);
            }
        }
        self.next_cas.set(self.next_cas.get() + 1);
        self.writes.set(self.writes.get() + 1);
        data.insert(key.to_string(), (value.to_vec(), self.next_cas.get()));
        Ok(())
    }
}

impl MemStore {
    fn record(&self) -> UpstreamRecord {
        read(self, KEY, T0).expect("readable")
    }

    fn cas(&self) -> Option<u32> {
        self.data.borrow().get(KEY).map(|(_, c)| *c)
    }
}

/// A view of the store whose `set` first lets other writers run: `hook(store, n)` is called
/// before each set, `n` counting the sets since the last successful one (so within one
/// update, the attempt number from 0), and may commit updates directly.
struct Interleaved<'a, F: FnMut(&MemStore, u32)> {
    store: &'a MemStore,
    hook: RefCell<F>,
    sets: Cell<u32>,
}

fn interleaved<F: FnMut(&MemStore, u32)>(store: &MemStore, hook: F) -> Interleaved<'_, F> {
    Interleaved {
        store,
        hook: RefCell::new(hook),
        sets: Cell::new(0),
    }
}

impl<F: FnMut(&MemStore, u32)> SharedStore for Interleaved<'_, F> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        self.store.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        let n = self.sets.get();
        self.sets.set(n + 1);
        (self.hook.borrow_mut())(self.store, n);
        let result = self.store.set(key, value, cas);
        if result.is_ok() {
            self.sets.set(0);
        }
        result
    }
}

fn cfg() -> UpstreamConfig {
    UpstreamConfig::default()
}

fn call(outcome: Outcome) -> CallResult {
    CallResult {
        outcome,
        latency: Duration::from_millis(20),
        probe: None,
    }
}

fn ok() -> CallResult {
    call(Outcome::Success)
}

fn timeout() -> CallResult {
    call(Outcome::Error(FailureKind::Timeout))
}

/// Another worker records `result` directly (no interference of its own).
fn other_writer(store: &MemStore, result: &CallResult) -> Option<Transition> {
    record(store, KEY, &cfg(), T0, 0, &Pending::default(), result)
        .value()
        .expect("the other writer commits")
}

#[test]
fn key_is_namespaced() {
    assert_eq!(key_for("weather"), "mcp-gw/v1/upstream/weather");
}

#[test]
fn missing_key_is_created_then_updated_with_cas() {
    let store = MemStore::default();
    let out = record(&store, KEY, &cfg(), T0, 0, &Pending::default(), &ok());
    assert_eq!(
        out,
        UpdateOutcome::Committed {
            value: None,
            retries: 0,
            wrote: true,
            replaced_corrupt: false
        }
    );
    assert_eq!(store.writes.get(), 2, "create, then CAS update");
    assert_eq!(store.record().successes(), 1);
}

#[test]
fn ensure_creates_once() {
    let store = MemStore::default();
    ensure(&store, KEY, T0).expect("created");
    ensure(&store, KEY, T0 + SEC).expect("already there");
    assert_eq!(store.writes.get(), 1);
    assert_eq!(store.record(), UpstreamRecord::new(T0));
}

#[test]
fn unchanged_record_is_not_written() {
    let store = MemStore::default();
    ensure(&store, KEY, T0).expect("created");
    let cas = store.cas();
    let d = admit(&store, KEY, &cfg(), T0);
    assert_eq!(d.admission, Admission::Allow);
    assert_eq!(d.transition, None);
    assert_eq!(store.cas(), cas, "a closed breaker's admit writes nothing");
    let out = update(&store, KEY, T0, 0, |_| 7);
    assert!(matches!(
        out,
        UpdateOutcome::Committed {
            value: 7,
            wrote: false,
            ..
        }
    ));
}

#[test]
fn conflicts_within_retries_lose_nothing() {
    let store = MemStore::default();
    ensure(&store, KEY, T0).expect("created");
    // The other worker commits before each of our first 5 writes.
    let view = interleaved(&store, |s, n| {
        if n < 5 {
            other_writer(s, &ok());
        }
    });
    let out = record(&view, KEY, &cfg(), T0, 0, &Pending::default(), &ok());
    assert!(
        matches!(
            out,
            UpdateOutcome::Committed {
                retries: 5,
                wrote: true,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(
        store.record().successes(),
        6,
        "5 from the other worker + ours"
    );
    assert_eq!(store.record().latency().total(), 6);
}

#[test]
fn conflicts_beyond_retries_are_lost_and_counted() {
    let store = MemStore::default();
    ensure(&store, KEY, T0).expect("created");
    let view = interleaved(&store, |s, _| {
        other_writer(s, &ok());
    });
    let mut c = cfg();
    c.cas_max_retries = 3;
    let out = record(&view, KEY, &c, T0, 0, &Pending::default(), &timeout());
    assert_eq!(out, UpdateOutcome::Lost { retries: 3 });
    assert!(out.is_lost());
    let r = store.record();
    assert_eq!(r.successes(), 4, "one interfering write per attempt");
    assert_eq!(r.failures(), 0, "ours was lost, not half-applied");
}

#[test]
fn zero_retries_means_one_attempt() {
    let store = MemStore::default();
    ensure(&store, KEY, T0).expect("created");
    let view = interleaved(&store, |s, _| {
        other_writer(s, &ok());
    });
    let attempts = Cell::new(0);
    let out = update(&view, KEY, T0, 0, |r| {
        attempts.set(attempts.get() + 1);
        r.record(&cfg().breaker, T0, 0, &ok())
    });
    assert_eq!(out, UpdateOutcome::Lost { retries: 0 });
    assert_eq!(attempts.get(), 1);
}

fn with_failures(store: &MemStore, n: u32) {
    for _ in 0..n {
        other_writer(store, &timeout());
    }
}

#[test]
fn a_transition_computed_by_a_losing_attempt_is_not_reported() {
    // Four failures recorded; our fifth would open the breaker, but another worker's fifth
    // commits first: it reports the opening, we must not.
    let store = MemStore::default();
    with_failures(&store, 4);
    let reported = RefCell::new(Vec::new());
    let attempts = RefCell::new(Vec::new());
    let view = interleaved(&store, |s, n| {
        if n == 0 {
            reported.borrow_mut().push(other_writer(s, &timeout()));
        }
    });
    let out = update(&view, KEY, T0, 8, |r| {
        let t = r.record(&cfg().breaker, T0, 0, &timeout());
        attempts.borrow_mut().push(t.is_some());
        t
    });
    assert_eq!(
        *attempts.borrow(),
        vec![true, false],
        "first attempt computed one"
    );
    assert!(matches!(
        out,
        UpdateOutcome::Committed {
            value: None,
            retries: 1,
            ..
        }
    ));
    let others = reported.borrow();
    assert_eq!(others.len(), 1);
    assert_eq!(
        others[0].as_ref().map(|t| t.event_name()),
        Some("circuit.opened")
    );
    assert_eq!(store.record().state().kind(), StateKind::Open);
    assert_eq!(store.record().failures(), 6);
}

#[test]
fn a_retry_sees_the_interleaved_write() {
    // Our failure would open the breaker, but a success committed in between resets the
    // count: the committed result has no transition, and the breaker stays closed.
    let store = MemStore::default();
    with_failures(&store, 4);
    let view = interleaved(&store, |s, n| {
        if n == 0 {
            other_writer(s, &ok());
        }
    });
    let out = record(&view, KEY, &cfg(), T0, 0, &Pending::default(), &timeout());
    assert_eq!(out.clone().value(), Some(None));
    assert_eq!(store.record().state().kind(), StateKind::Closed);
    assert_eq!(store.record().consecutive_failures(), 1);
    // And the opposite: a retry can be the one that opens it.
    let store = MemStore::default();
    with_failures(&store, 3);
    let view = interleaved(&store, |s, n| {
        if n == 0 {
            other_writer(s, &timeout());
        }
    });
    let out = record(&view, KEY, &cfg(), T0, 0, &Pending::default(), &timeout());
    let t = out
        .value()
        .flatten()
        .expect("the committing retry opens it");
    assert_eq!(t.consecutive_failures, 5);
}

#[test]
fn probe_slots_are_not_double_booked_across_workers() {
    // Breaker open and due: two workers race to admit; exactly one half-open transition and
    // one probe, the other is rejected.
    let store = MemStore::default();
    with_failures(&store, 5);
    let due = T0 + 30 * SEC;
    let other = RefCell::new(None);
    let view = interleaved(&store, |s, n| {
        if n == 0 {
            *other.borrow_mut() = Some(admit(s, KEY, &cfg(), due));
        }
    });
    let ours = admit(&view, KEY, &cfg(), due);
    let other = other.into_inner().expect("other worker ran");
    assert!(matches!(other.admission, Admission::Probe(_)));
    assert_eq!(
        other.transition.as_ref().map(|t| t.event_name()),
        Some("circuit.half_opened")
    );
    assert!(matches!(ours.admission, Admission::Reject { .. }));
    assert_eq!(ours.transition, None);
}

#[test]
fn lost_admission_rejects_and_store_failure_allows() {
    let store = MemStore::default();
    with_failures(&store, 5);
    let due = T0 + 30 * SEC;
    let view = interleaved(&store, |s, _| {
        other_writer(s, &ok()); // any write bumps the token
    });
    let d = admit(&view, KEY, &cfg(), due);
    assert!(d.lost);
    assert_eq!(
        d.admission,
        Admission::Reject {
            retry_after_secs: 1
        }
    );
    store.fail_get.set(true);
    let d = admit(&store, KEY, &cfg(), due);
    assert!(d.store_failed);
    assert_eq!(d.admission, Admission::Allow);
    assert_eq!(
        record(&store, KEY, &cfg(), due, 0, &Pending::default(), &ok()),
        UpdateOutcome::StoreFailed
    );
    store.fail_get.set(false);
    store.fail_set.set(true);
    assert_eq!(
        record(&store, KEY, &cfg(), due, 0, &Pending::default(), &ok()),
        UpdateOutcome::StoreFailed
    );
    assert!(read(&store, KEY, due).is_ok());
}

#[test]
fn corrupt_value_is_replaced_and_flagged() {
    let store = MemStore::default();
    store.set(KEY, b"garbage", None).expect("set");
    let out = record(&store, KEY, &cfg(), T0, 0, &Pending::default(), &ok());
    assert!(matches!(
        out,
        UpdateOutcome::Committed {
            replaced_corrupt: true,
            wrote: true,
            ..
        }
    ));
    assert_eq!(store.record().successes(), 1);
    // Even an update that changes nothing rewrites a corrupt value.
    store.set(KEY, &[99, 1, 2], None).expect("set");
    let d = admit(&store, KEY, &cfg(), T0);
    assert!(d.replaced_corrupt);
    assert!(UpstreamRecord::decode(&store.get(KEY).expect("get").0.expect("value")).is_some());
}

/// Many workers, random interleavings: every committed update is in the final record, and the
/// reported transitions form one consistent chain (each reported once).
#[test]
fn interleaved_workers_report_each_transition_exactly_once() {
    struct Sim {
        rng: IdGenerator,
        now: u64,
        committed_records: u64,
        lost: u64,
        transitions: Vec<Transition>,
    }

    fn log(sim: &RefCell<Sim>, t: Option<Transition>) {
        if let Some(t) = t {
            sim.borrow_mut().transitions.push(t);
        }
    }

    /// One request by one worker: admit, then record the result.
    fn request(store: &impl SharedStore, sim: &RefCell<Sim>, c: &UpstreamConfig) {
        let (now, rand, fails) = {
            let mut s = sim.borrow_mut();
            let r = s.rng.next_u64();
            // Failure-heavy and healthy phases alternate every 40 s.
            let failing = (s.now / SEC / 40) % 2 == 0;
            (s.now, r, if failing { r % 10 < 8 } else { r % 10 < 1 })
        };
        let d = admit(store, KEY, c, now);
        log(sim, d.transition);
        let probe: Option<ProbeTicket> = match d.admission {
            Admission::Reject { .. } => return,
            Admission::Allow => None,
            Admission::Probe(t) => Some(t),
        };
        let result = CallResult {
            outcome: if fails {
                Outcome::Error(FailureKind::Http5xx)
            } else {
                Outcome::Success
            },
            latency: Duration::from_millis(5),
            probe,
        };
        match record(store, KEY, c, now, rand, &Pending::default(), &result) {
            UpdateOutcome::Committed { value, .. } => {
                sim.borrow_mut().committed_records += 1;
                log(sim, value);
            }
            UpdateOutcome::Lost { .. } => sim.borrow_mut().lost += 1,
            UpdateOutcome::StoreFailed => panic!("store does not fail here"),
        }
    }

    for (seed, max_retries) in [(1u64, 8u32), (2, 2), (3, 0)] {
        let mut c = UpstreamConfig {
            cas_max_retries: max_retries,
            ..UpstreamConfig::default()
        };
        c.breaker.reset_timeout_ms = 3_000;
        c.breaker.max_reset_timeout_ms = Some(12_000);
        c.breaker.jitter = 0.3;
        c.breaker.half_open_max_probes = 2;
        c.breaker.success_threshold = 2;
        let store = MemStore::default();
        ensure(&store, KEY, T0).expect("created");
        let sim = RefCell::new(Sim {
            rng: IdGenerator::new(seed),
            now: T0,
            committed_records: 0,
            lost: 0,
            transitions: Vec::new(),
        });
        // Other workers' requests land between our read and our write at random, on up to
        // 4 attempts of each update: 8 retries always suffice, 2 or 0 sometimes do not.
        let view = interleaved(&store, |s, n| {
            if n >= 4 {
                return;
            }
            let others = sim.borrow_mut().rng.next_u64() % 3;
            for _ in 0..others {
                request(s, &sim, &c);
            }
        });
        for _ in 0..3_000 {
            request(&view, &sim, &c);
            sim.borrow_mut().now += 100_000; // 100 ms per step
        }
        let sim = sim.into_inner();
        let r = store.record();
        assert_eq!(
            r.successes() + r.failures(),
            sim.committed_records,
            "seed {seed}: every committed update is in the record"
        );
        if max_retries == 8 {
            assert_eq!(sim.lost, 0, "seed {seed}: retries sufficed");
        } else {
            assert!(sim.lost > 0, "seed {seed}: some updates were lost");
        }
        let mut state = StateKind::Closed;
        let mut counts = [0usize; 3];
        for t in &sim.transitions {
            assert_eq!(t.from, state, "seed {seed}: chain broken at {t:?}");
            state = t.to;
            counts[t.to as usize] += 1;
        }
        assert_eq!(
            state,
            r.state().kind(),
            "seed {seed}: chain ends in the stored state"
        );
        assert!(
            counts.iter().all(|&n| n >= 3),
            "seed {seed}: every transition exercised: {counts:?}"
        );
    }
}

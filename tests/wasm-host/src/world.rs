//! [`World`]: the state one simulated Envoy process shares between its VMs (worker
//! threads): the controllable clock, shared data with CAS, shared queues and metrics.

use crate::abi::{HostResult, MetricKind, Status};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Hook run after a shared-data get, see [`World::on_shared_data_get`].
type GetHook = Arc<dyn Fn(&World, &str) + Send + Sync>;

/// State shared by all VMs of one simulated Envoy. Cheap to clone: clones share state.
#[derive(Clone, Default)]
pub struct World {
    inner: Arc<Mutex<Inner>>,
}

/// One metric as Envoy's stats would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    pub value: MetricValue,
}

/// Current value of a metric: counters only grow, histograms keep every sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricValue {
    Counter(u64),
    Gauge(i64),
    Histogram(Vec<u64>),
}

struct Inner {
    realtime: SystemTime,
    /// Nanoseconds of the monotonic clock; only [`World::advance`] moves it, so it never
    /// goes backwards even when a test sets the wall clock into the past.
    monotonic_nanos: u64,
    shared: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    get_hooks: Vec<GetHook>,
    metrics: Vec<Metric>,
    queues: Vec<Queue>,
    next_vm_id: u64,
}

struct Queue {
    owner_vm: u64,
    vm_id: String,
    name: String,
    items: VecDeque<Vec<u8>>,
    /// Set on enqueue, cleared when the owning VM is notified (`proxy_on_queue_ready`).
    ready: bool,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            // A fixed start instant keeps runs reproducible: 2024-01-01T00:00:00Z.
            realtime: UNIX_EPOCH + Duration::from_secs(1_704_067_200),
            monotonic_nanos: 1_000_000_000,
            shared: HashMap::new(),
            next_cas: 1,
            get_hooks: Vec::new(),
            metrics: Vec::new(),
            queues: Vec::new(),
            next_vm_id: 1,
        }
    }
}

impl World {
    pub fn new() -> World {
        World::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not poison the world for other assertions.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ----- clock -------------------------------------------------------------------

    /// Current wall-clock time seen by every VM (`proxy_get_current_time_nanoseconds`,
    /// WASI realtime clock). Starts at 2024-01-01T00:00:00Z.
    pub fn now(&self) -> SystemTime {
        self.lock().realtime
    }

    /// Sets the wall clock (the monotonic clock is unaffected, as on a real host).
    pub fn set_time(&self, time: SystemTime) {
        self.lock().realtime = time;
    }

    /// Moves both the wall clock and the monotonic clock forward.
    pub fn advance(&self, by: Duration) {
        let mut inner = self.lock();
        inner.realtime += by;
        inner.monotonic_nanos += by.as_nanos() as u64;
    }

    pub(crate) fn realtime_nanos(&self) -> u64 {
        let since_epoch = self.now().duration_since(UNIX_EPOCH).unwrap_or_default();
        since_epoch.as_nanos() as u64
    }

    pub(crate) fn monotonic_nanos(&self) -> u64 {
        self.lock().monotonic_nanos
    }

    // ----- shared data -------------------------------------------------------------

    /// Value and CAS token of a shared-data key, as `proxy_get_shared_data` returns them.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.lock().shared.get(key).cloned()
    }

    /// Unconditionally stores a value (a fresh CAS is assigned), like another writer would.
    pub fn set_shared_data(&self, key: &str, value: impl Into<Vec<u8>>) {
        self.cas_set(key, value.into(), 0)
            .expect("cas 0 always succeeds");
    }

    /// Registers a hook run after every VM's shared-data get has taken its snapshot and
    /// before the value returns to the guest. Use it to interleave another writer between
    /// a filter's get and its CAS set, forcing a `CasMismatch`.
    pub fn on_shared_data_get(&self, hook: impl Fn(&World, &str) + Send + Sync + 'static) {
        self.lock().get_hooks.push(Arc::new(hook));
    }

    /// Removes every shared-data get hook.
    pub fn clear_shared_data_hooks(&self) {
        self.lock().get_hooks.clear();
    }

    pub(crate) fn get_shared_for_guest(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let (snapshot, hooks) = {
            let inner = self.lock();
            (inner.shared.get(key).cloned(), inner.get_hooks.clone())
        };
        // Hooks run without the lock held: they usually write shared data themselves.
        for hook in hooks {
            hook(self, key);
        }
        snapshot
    }

    /// Envoy semantics: a non-zero `cas` must match the stored one if the key exists;
    /// a missing key is simply created. Every successful write gets a new CAS.
    pub(crate) fn cas_set(&self, key: &str, value: Vec<u8>, cas: u32) -> HostResult {
        let mut inner = self.lock();
        if let Some((_, current)) = inner.shared.get(key) {
            if cas != 0 && cas != *current {
                return Err(Status::CasMismatch);
            }
        }
        let next = inner.next_cas;
        // CAS 0 means "no CAS" in the ABI, so it is never handed out.
        inner.next_cas = inner.next_cas.checked_add(1).unwrap_or(1);
        inner.shared.insert(key.to_string(), (value, next));
        Ok(())
    }

    // ----- metrics -----------------------------------------------------------------

    /// All metrics defined so far, in definition order.
    pub fn metrics(&self) -> Vec<Metric> {
        self.lock().metrics.clone()
    }

    /// The metric called `name`, if any VM defined it.
    pub fn metric(&self, name: &str) -> Option<Metric> {
        self.lock().metrics.iter().find(|m| m.name == name).cloned()
    }

    /// Value of a counter (None if undefined or not a counter).
    pub fn counter(&self, name: &str) -> Option<u64> {
        match self.metric(name)?.value {
            MetricValue::Counter(v) => Some(v),
            _ => None,
        }
    }

    /// Value of a gauge (None if undefined or not a gauge).
    pub fn gauge(&self, name: &str) -> Option<i64> {
        match self.metric(name)?.value {
            MetricValue::Gauge(v) => Some(v),
            _ => None,
        }
    }

    /// Samples recorded into a histogram (None if undefined or not a histogram).
    pub fn histogram(&self, name: &str) -> Option<Vec<u64>> {
        match self.metric(name)?.value {
            MetricValue::Histogram(v) => Some(v),
            _ => None,
        }
    }

    /// Idempotent per name across VMs, like Envoy stats: the same name yields the same id.
    pub(crate) fn define_metric(&self, kind: MetricKind, name: &str) -> HostResult<u32> {
        let mut inner = self.lock();
        if let Some(index) = inner.metrics.iter().position(|m| m.name == name) {
            return match inner.metrics[index].kind == kind {
                true => Ok(index as u32 + 1),
                false => Err(Status::BadArgument),
            };
        }
        let value = match kind {
            MetricKind::Counter => MetricValue::Counter(0),
            MetricKind::Gauge => MetricValue::Gauge(0),
            MetricKind::Histogram => MetricValue::Histogram(Vec::new()),
        };
        inner.metrics.push(Metric {
            name: name.to_string(),
            kind,
            value,
        });
        Ok(inner.metrics.len() as u32)
    }

    fn with_metric<T>(
        &self,
        id: u32,
        f: impl FnOnce(&mut MetricValue) -> HostResult<T>,
    ) -> HostResult<T> {
        let mut inner = self.lock();
        let index = (id as usize).checked_sub(1).ok_or(Status::NotFound)?;
        let metric = inner.metrics.get_mut(index).ok_or(Status::NotFound)?;
        f(&mut metric.value)
    }

    /// Envoy: counters reject negative offsets, histograms cannot be incremented.
    pub(crate) fn increment_metric(&self, id: u32, offset: i64) -> HostResult {
        self.with_metric(id, |value| {
            match value {
                MetricValue::Counter(v) if offset >= 0 => *v += offset as u64,
                MetricValue::Gauge(v) => *v += offset,
                _ => return Err(Status::BadArgument),
            }
            Ok(())
        })
    }

    /// Envoy: record adds to a counter, sets a gauge, samples a histogram.
    pub(crate) fn record_metric(&self, id: u32, value: u64) -> HostResult {
        self.with_metric(id, |current| {
            match current {
                MetricValue::Counter(v) => *v += value,
                MetricValue::Gauge(v) => *v = value as i64,
                MetricValue::Histogram(samples) => samples.push(value),
            }
            Ok(())
        })
    }

    /// Envoy: histograms cannot be read back.
    pub(crate) fn get_metric(&self, id: u32) -> HostResult<u64> {
        self.with_metric(id, |value| match value {
            MetricValue::Counter(v) => Ok(*v),
            MetricValue::Gauge(v) => Ok(*v as u64),
            MetricValue::Histogram(_) => Err(Status::BadArgument),
        })
    }

    // ----- shared queues -----------------------------------------------------------

    pub(crate) fn new_vm_id(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_vm_id += 1;
        inner.next_vm_id - 1
    }

    /// Registering an existing (vm_id, name) returns the same id, now owned by `owner_vm`.
    pub(crate) fn register_queue(&self, owner_vm: u64, vm_id: &str, name: &str) -> u32 {
        let mut inner = self.lock();
        if let Some(index) = inner
            .queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
        {
            inner.queues[index].owner_vm = owner_vm;
            return index as u32 + 1;
        }
        let queue = Queue {
            owner_vm,
            vm_id: vm_id.into(),
            name: name.into(),
            items: VecDeque::new(),
            ready: false,
        };
        inner.queues.push(queue);
        inner.queues.len() as u32
    }

    pub(crate) fn resolve_queue(&self, vm_id: &str, name: &str) -> HostResult<u32> {
        let inner = self.lock();
        let index = inner
            .queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name);
        index.map(|i| i as u32 + 1).ok_or(Status::NotFound)
    }

    fn with_queue<T>(&self, id: u32, f: impl FnOnce(&mut Queue) -> T) -> HostResult<T> {
        let mut inner = self.lock();
        let index = (id as usize).checked_sub(1).ok_or(Status::NotFound)?;
        inner.queues.get_mut(index).map(f).ok_or(Status::NotFound)
    }

    pub(crate) fn enqueue(&self, id: u32, item: Vec<u8>) -> HostResult {
        self.with_queue(id, |q| {
            q.items.push_back(item);
            q.ready = true;
        })
    }

    pub(crate) fn dequeue(&self, id: u32) -> HostResult<Vec<u8>> {
        self.with_queue(id, |q| q.items.pop_front())?
            .ok_or(Status::Empty)
    }

    /// Ids of queues owned by `vm` that received items since the last call.
    pub(crate) fn take_ready_queues(&self, vm: u64) -> Vec<u32> {
        let mut inner = self.lock();
        let ready = inner
            .queues
            .iter_mut()
            .enumerate()
            .filter(|(_, q)| q.owner_vm == vm && q.ready);
        ready
            .map(|(i, q)| {
                q.ready = false;
                i as u32 + 1
            })
            .collect()
    }

    /// Items currently waiting in a queue, by (vm_id, name); for assertions.
    pub fn queue_items(&self, vm_id: &str, name: &str) -> Option<Vec<Vec<u8>>> {
        let inner = self.lock();
        let queue = inner
            .queues
            .iter()
            .find(|q| q.vm_id == vm_id && q.name == name)?;
        Some(queue.items.iter().cloned().collect())
    }

    /// Snapshot of all shared data keys and values (without CAS), sorted by key.
    pub fn shared_data_snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let inner = self.lock();
        inner
            .shared
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_mismatch_only_when_key_exists_and_cas_differs() {
        let world = World::new();
        assert_eq!(
            world.cas_set("k", b"1".to_vec(), 42),
            Ok(()),
            "missing key ignores cas"
        );
        let (_, cas) = world.shared_data("k").unwrap();
        assert_eq!(
            world.cas_set("k", b"2".to_vec(), cas + 1),
            Err(Status::CasMismatch)
        );
        assert_eq!(world.cas_set("k", b"2".to_vec(), cas), Ok(()));
        let (value, new_cas) = world.shared_data("k").unwrap();
        assert_eq!((value.as_slice(), new_cas != cas), (&b"2"[..], true));
    }

    #[test]
    fn metrics_follow_envoy_rules() {
        let world = World::new();
        let counter = world.define_metric(MetricKind::Counter, "c").unwrap();
        assert_eq!(world.define_metric(MetricKind::Counter, "c"), Ok(counter));
        assert_eq!(
            world.define_metric(MetricKind::Gauge, "c"),
            Err(Status::BadArgument)
        );
        assert_eq!(
            world.increment_metric(counter, -1),
            Err(Status::BadArgument)
        );
        world.increment_metric(counter, 2).unwrap();
        world.record_metric(counter, 3).unwrap();
        assert_eq!(world.counter("c"), Some(5));
        let histogram = world.define_metric(MetricKind::Histogram, "h").unwrap();
        world.record_metric(histogram, 7).unwrap();
        assert_eq!(world.get_metric(histogram), Err(Status::BadArgument));
        assert_eq!(world.histogram("h"), Some(vec![7]));
        assert_eq!(world.increment_metric(99, 1), Err(Status::NotFound));
    }

    #[test]
    fn clock_advances_both_clocks_but_set_time_only_wall() {
        let world = World::new();
        let (wall, mono) = (world.now(), world.monotonic_nanos());
        world.advance(Duration::from_millis(1500));
        assert_eq!(world.now(), wall + Duration::from_millis(1500));
        assert_eq!(world.monotonic_nanos(), mono + 1_500_000_000);
        world.set_time(UNIX_EPOCH);
        assert_eq!(
            (world.realtime_nanos(), world.monotonic_nanos()),
            (0, mono + 1_500_000_000)
        );
    }
}

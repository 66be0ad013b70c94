//! The circuit breaker as exchanges use it, over the shared upstream records (`upstream`):
//! which instances get a record (a bounded registry in shared data), admission when a request
//! is about to go upstream, what a finished exchange counts as, the fast local reply while
//! the breaker is open, and the health report served by the filter. Pure: the store is
//! injected. (Named `resilience` before.)

use crate::reply::{jsonrpc_error, LocalReply};
use crate::upstream::shared::{self, AdmitDecision, SharedStore, StoreError, UpdateOutcome};
use crate::upstream::{
    Admission, CallResult, FailureKind, HealthSnapshot, Outcome, Pending, ProbeTicket, StateKind,
    Transition, UpstreamConfig,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Shared-data key listing the instances that have a record, one per line.
pub const REGISTRY_KEY: &str = "mcp-gw/v1/instances";

/// JSON-RPC error code of the fast reply while an upstream's breaker is open.
pub const CIRCUIT_OPEN_CODE: i64 = -32003;

/// Per-VM counters of the shared-state machinery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CasStats {
    pub retries: u64,
    pub lost: u64,
    pub store_failures: u64,
    pub corrupt_replaced: u64,
    /// Instances refused a record because the registry was full.
    pub unregistered: u64,
}

/// This VM's per-upstream counts, reported as Envoy stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamCounters {
    pub requests: u64,
    pub failures: u64,
    pub rejections: u64,
    /// Last breaker state this VM saw committed: 0 closed, 1 half-open, 2 open.
    pub state: Option<i64>,
}

/// This VM's side of one tracked upstream: the key of its shared record, its counts for Envoy
/// stats, and its results not merged into the record yet.
#[derive(Debug, Clone, Default)]
pub struct LocalUpstream {
    key: String,
    pub counters: UpstreamCounters,
    pending: Pending,
}

impl LocalUpstream {
    fn new(instance: &str) -> Self {
        LocalUpstream {
            key: shared::key_for(instance),
            ..LocalUpstream::default()
        }
    }

    /// Calls waiting for the next merge.
    pub fn pending_calls(&self) -> u64 {
        self.pending.calls()
    }
}

/// What the VM offers for upstream tracking.
pub struct UpstreamEnv<'a> {
    pub config: &'a UpstreamConfig,
    pub store: &'a dyn SharedStore,
    pub stats: &'a mut CasStats,
    /// The upstreams this VM saw registered (a cache of the shared registry, so bounded like
    /// it), with this VM's state for each.
    pub locals: &'a mut BTreeMap<String, LocalUpstream>,
    pub random: u64,
}

/// `&dyn SharedStore` as the `impl SharedStore` the CAS helpers take.
struct Store<'a>(&'a dyn SharedStore);

impl SharedStore for Store<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        self.0.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), shared::SetError> {
        self.0.set(key, value, cas)
    }
}

pub fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn registry(store: &dyn SharedStore) -> Result<(Vec<String>, Option<u32>), StoreError> {
    let (value, cas) = store.get(REGISTRY_KEY)?;
    let names = value
        .map(|v| {
            String::from_utf8_lossy(&v)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok((names, cas))
}

/// The instances with a record, as every worker sees them.
pub fn registered_instances(store: &dyn SharedStore) -> Vec<String> {
    registry(store).map(|(names, _)| names).unwrap_or_default()
}

impl UpstreamEnv<'_> {
    /// Makes sure `instance` has a record; false when the registry is full (or unavailable),
    /// so attacker-chosen ids can never create more than `max_instances` keys.
    fn register(&mut self, instance: &str) -> bool {
        if self.locals.contains_key(instance) {
            return true;
        }
        for _ in 0..=self.config.cas_max_retries {
            let Ok((mut names, cas)) = registry(self.store) else {
                self.stats.store_failures += 1;
                return false;
            };
            if names.iter().any(|n| n == instance) {
                self.locals
                    .insert(instance.to_string(), LocalUpstream::new(instance));
                return true;
            }
            if names.len() >= self.config.max_instances {
                self.stats.unregistered += 1;
                return false;
            }
            names.push(instance.to_string());
            match self
                .store
                .set(REGISTRY_KEY, names.join("\n").as_bytes(), cas)
            {
                Ok(()) => {
                    self.locals
                        .insert(instance.to_string(), LocalUpstream::new(instance));
                    return true;
                }
                Err(shared::SetError::CasMismatch) => self.stats.retries += 1,
                Err(shared::SetError::Other) => {
                    self.stats.store_failures += 1;
                    return false;
                }
            }
        }
        self.stats.lost += 1;
        false
    }

    /// Whether a request for `instance` may go upstream now. With the breaker off nothing is
    /// read; otherwise one shared-data read decides the common cases (see [`shared::admit`]).
    pub fn admit(&mut self, instance: &str, now: SystemTime) -> Gate {
        if !self.register(instance) {
            return Gate::Untracked;
        }
        let Some(local) = self.locals.get_mut(instance) else {
            return Gate::Untracked;
        };
        let decision = if self.config.breaker.enabled {
            shared::admit(&Store(self.store), &local.key, self.config, micros(now))
        } else {
            AdmitDecision::allow()
        };
        match decision.admission {
            Admission::Reject { .. } => local.counters.rejections += 1,
            _ => local.counters.requests += 1,
        }
        self.stats.lost += u64::from(decision.lost);
        self.stats.store_failures += u64::from(decision.store_failed);
        self.stats.corrupt_replaced += u64::from(decision.replaced_corrupt);
        match decision.admission {
            Admission::Allow => Gate::Pass {
                probe: None,
                transition: decision.transition,
            },
            Admission::Probe(ticket) => Gate::Pass {
                probe: Some(ticket),
                transition: decision.transition,
            },
            Admission::Reject { retry_after_secs } => Gate::Reject {
                retry_after_secs,
                transition: decision.transition,
            },
        }
    }

    /// Records a finished call. Results that cannot change the breaker's state wait for the
    /// next merge ([`Pending`]); the others are written at once, together with what was
    /// waiting. Returns the transition this VM committed, if any.
    pub fn record(
        &mut self,
        instance: &str,
        now: SystemTime,
        result: &CallResult,
    ) -> Option<Transition> {
        let local = self.locals.get_mut(instance)?;
        let now_us = micros(now);
        if let Outcome::Error(kind) = result.outcome {
            if self.config.breaker.counts(kind) {
                local.counters.failures += 1;
            }
        }
        if local.pending.add(&self.config.breaker, now_us, result) {
            return None;
        }
        let outcome = shared::record(
            &Store(self.store),
            &local.key,
            self.config,
            now_us,
            self.random,
            &local.pending,
            result,
        );
        let committed = tally(self.stats, outcome);
        if committed.is_some() {
            local.pending.clear();
        } else {
            // The result itself is dropped (counted); what was waiting stays for the tick.
            self.stats.lost += 1;
        }
        committed.flatten()
    }

    /// Merges every upstream's waiting results into its record, one compare-and-swap each.
    /// Called on the root context's tick; what fails to merge waits for the next one.
    pub fn flush(&mut self, now: SystemTime) {
        let now_us = micros(now);
        for local in self.locals.values_mut() {
            if local.pending.is_empty() {
                continue;
            }
            let outcome = shared::merge(
                &Store(self.store),
                &local.key,
                self.config,
                now_us,
                &local.pending,
            );
            if tally(self.stats, outcome).is_some() {
                local.pending.clear();
            }
        }
    }

    /// Remembers the breaker state a committed transition left `instance` in.
    pub fn note_state(&mut self, instance: &str, state: StateKind) {
        let value = match state {
            StateKind::Closed => 0,
            StateKind::HalfOpen => 1,
            StateKind::Open => 2,
        };
        if let Some(local) = self.locals.get_mut(instance) {
            local.counters.state = Some(value);
        }
    }
}

/// Counts an update's retries, replaced corrupt records and store failures; the committed
/// value, or `None` when the update did not commit.
fn tally<T>(stats: &mut CasStats, outcome: UpdateOutcome<T>) -> Option<T> {
    match outcome {
        UpdateOutcome::Committed {
            value,
            retries,
            replaced_corrupt,
            ..
        } => {
            stats.retries += u64::from(retries);
            stats.corrupt_replaced += u64::from(replaced_corrupt);
            Some(value)
        }
        UpdateOutcome::Lost { retries } => {
            stats.retries += u64::from(retries);
            None
        }
        UpdateOutcome::StoreFailed => {
            stats.store_failures += 1;
            None
        }
    }
}

/// Admission result for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// No record (upstream tracking off, or the registry is full): go ahead, record nothing.
    Untracked,
    Pass {
        probe: Option<ProbeTicket>,
        transition: Option<Transition>,
    },
    Reject {
        retry_after_secs: u64,
        transition: Option<Transition>,
    },
}

/// The fast reply while the breaker is open: 503, `Retry-After`, a JSON-RPC error carrying
/// the request's id as the client sent it (`request_id` is its JSON text).
pub fn open_circuit_reply(
    instance: &str,
    request_id: Option<&str>,
    retry_after_secs: u64,
) -> LocalReply {
    let message = format!(
        "MCP upstream `{instance}` is unavailable (circuit open); retry after {retry_after_secs} s"
    );
    let data = format!("{{\"retryAfterSeconds\":{retry_after_secs}}}");
    LocalReply {
        status: 503,
        headers: vec![
            ("content-type", "application/json".to_string()),
            ("retry-after", retry_after_secs.to_string()),
        ],
        body: jsonrpc_error(request_id, CIRCUIT_OPEN_CODE, &message, Some(&data)),
    }
}

/// What a finished exchange says about its upstream. `None`: nothing to record (the client
/// went away, or the gateway answered itself).
pub fn classify_call(
    code_details: &str,
    http_status: Option<u32>,
    jsonrpc_error: bool,
    tool_error: bool,
) -> Option<Outcome> {
    if code_details.contains("downstream_remote_disconnect")
        || code_details.contains("downstream_local_disconnect")
    {
        return None;
    }
    let transport = if code_details.contains("connection_failure")
        || code_details.contains("no_healthy_upstream")
        || code_details.contains("connection_termination")
            && !code_details.contains("after_response_started")
    {
        Some(FailureKind::ConnectFailure)
    } else if code_details.contains("timeout") {
        Some(FailureKind::Timeout)
    } else if code_details.contains("upstream_reset") {
        Some(FailureKind::Reset)
    } else {
        None
    };
    let http = http_status
        .and_then(|s| u16::try_from(s).ok())
        .and_then(FailureKind::from_http_status);
    let jsonrpc = if jsonrpc_error {
        Some(FailureKind::JsonrpcError)
    } else if tool_error {
        Some(FailureKind::ToolError)
    } else {
        None
    };
    Some(match transport.or(http).or(jsonrpc) {
        Some(kind) => Outcome::Error(kind),
        None => Outcome::Success,
    })
}

/// The call result for `record`.
pub fn call_result(
    outcome: Outcome,
    started: SystemTime,
    now: SystemTime,
    probe: Option<ProbeTicket>,
) -> CallResult {
    CallResult {
        outcome,
        latency: now.duration_since(started).unwrap_or(Duration::ZERO),
        probe,
    }
}

#[derive(Serialize)]
struct HealthReport {
    healthy: bool,
    upstreams: Vec<HealthSnapshot>,
}

/// The filter's health endpoint: 200 when every tracked upstream is healthy, else 503.
pub fn health_reply(
    config: &UpstreamConfig,
    store: &dyn SharedStore,
    now: SystemTime,
) -> LocalReply {
    let now_us = micros(now);
    let upstreams: Vec<HealthSnapshot> = registered_instances(store)
        .iter()
        .filter_map(|name| {
            let record = shared::read(&Store(store), &shared::key_for(name), now_us).ok()?;
            Some(record.snapshot(name, config, now_us))
        })
        .collect();
    let healthy = upstreams.iter().all(|u| u.healthy);
    let body = serde_json::to_string(&HealthReport { healthy, upstreams }).unwrap_or_default();
    LocalReply {
        status: if healthy { 200 } else { 503 },
        headers: vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", "no-store".to_string()),
        ],
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::shared::MapStore;

    fn env<'a>(
        config: &'a UpstreamConfig,
        store: &'a MapStore,
        stats: &'a mut CasStats,
        locals: &'a mut BTreeMap<String, LocalUpstream>,
    ) -> UpstreamEnv<'a> {
        UpstreamEnv {
            config,
            store,
            stats,
            locals,
            random: 0,
        }
    }

    #[test]
    fn registry_is_bounded() {
        let config = UpstreamConfig {
            max_instances: 2,
            ..UpstreamConfig::default()
        };
        let store = MapStore::default();
        let (mut stats, mut locals) = (CasStats::default(), BTreeMap::new());
        let mut e = env(&config, &store, &mut stats, &mut locals);
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(matches!(e.admit("a", now), Gate::Pass { .. }));
        assert!(matches!(e.admit("b", now), Gate::Pass { .. }));
        assert_eq!(e.admit("evil", now), Gate::Untracked);
        assert_eq!(e.stats.unregistered, 1);
        assert_eq!(registered_instances(&store), ["a", "b"]);
        assert!(!store.contains(&shared::key_for("evil")));
    }

    #[test]
    fn breaker_opens_rejects_and_reports_health() {
        let config = UpstreamConfig::default();
        let store = MapStore::default();
        let (mut stats, mut locals) = (CasStats::default(), BTreeMap::new());
        let mut e = env(&config, &store, &mut stats, &mut locals);
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let fail = call_result(Outcome::Error(FailureKind::ConnectFailure), now, now, None);
        let mut transitions = Vec::new();
        for _ in 0..5 {
            assert!(matches!(e.admit("a", now), Gate::Pass { .. }));
            transitions.extend(e.record("a", now, &fail));
        }
        assert_eq!(transitions.len(), 1);
        assert_eq!(transitions[0].event_name(), "circuit.opened");
        match e.admit("a", now) {
            Gate::Reject {
                retry_after_secs, ..
            } => assert_eq!(retry_after_secs, 30),
            other => panic!("expected a rejection, got {other:?}"),
        }
        let counts = e.locals["a"].counters;
        assert_eq!(
            (counts.requests, counts.failures, counts.rejections),
            (5, 5, 1)
        );
        let reply = health_reply(&config, &store, now);
        assert_eq!(reply.status, 503);
        let json: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
        assert_eq!(json["upstreams"][0]["instance"], "a");
        assert_eq!(json["upstreams"][0]["state"], "open");
    }

    #[test]
    fn classification() {
        let c = |d: &str, s: Option<u32>, j: bool, t: bool| classify_call(d, s, j, t);
        assert_eq!(c("downstream_remote_disconnect", None, false, false), None);
        assert_eq!(
            c(
                "upstream_reset_before_response_started{connection_failure}",
                Some(503),
                false,
                false
            ),
            Some(Outcome::Error(FailureKind::ConnectFailure))
        );
        assert_eq!(
            c("no_healthy_upstream", Some(503), false, false),
            Some(Outcome::Error(FailureKind::ConnectFailure))
        );
        assert_eq!(
            c("upstream_response_timeout", Some(504), false, false),
            Some(Outcome::Error(FailureKind::Timeout))
        );
        assert_eq!(
            c(
                "upstream_reset_after_response_started{remote_reset}",
                Some(200),
                false,
                false
            ),
            Some(Outcome::Error(FailureKind::Reset))
        );
        assert_eq!(
            c("via_upstream", Some(500), false, false),
            Some(Outcome::Error(FailureKind::Http5xx))
        );
        assert_eq!(
            c("via_upstream", Some(200), true, false),
            Some(Outcome::Error(FailureKind::JsonrpcError))
        );
        assert_eq!(
            c("via_upstream", Some(200), false, true),
            Some(Outcome::Error(FailureKind::ToolError))
        );
        assert_eq!(
            c("via_upstream", Some(200), false, false),
            Some(Outcome::Success)
        );
    }

    #[test]
    fn open_reply_carries_the_request_id_as_sent() {
        let reply = open_circuit_reply("demo", Some("7"), 12);
        assert_eq!(reply.status, 503);
        assert!(reply.headers.contains(&("retry-after", "12".to_string())));
        let json: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
        assert_eq!(json["id"], 7);
        assert_eq!(json["error"]["code"], CIRCUIT_OPEN_CODE);
        assert_eq!(json["error"]["data"]["retryAfterSeconds"], 12);
        let json: serde_json::Value =
            serde_json::from_str(&open_circuit_reply("demo", Some("\"7\""), 1).body).expect("json");
        assert_eq!(json["id"], "7", "a string id stays a string");
    }

    /// A store that counts reads and writes, to hold the fast path to its cost.
    #[derive(Default)]
    struct Counting {
        inner: MapStore,
        gets: std::cell::Cell<u32>,
        sets: std::cell::Cell<u32>,
    }

    impl SharedStore for Counting {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            self.gets.set(self.gets.get() + 1);
            self.inner.get(key)
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), shared::SetError> {
            self.sets.set(self.sets.get() + 1);
            self.inner.set(key, value, cas)
        }
    }

    fn record_of(store: &Counting, instance: &str) -> crate::upstream::UpstreamRecord {
        shared::read(&Store(store), &shared::key_for(instance), 0).expect("read")
    }

    #[test]
    fn a_successful_call_costs_one_read_and_merges_on_the_tick() {
        let config = UpstreamConfig::default();
        let store = Counting::default();
        let (mut stats, mut locals) = (CasStats::default(), BTreeMap::new());
        let mut e = UpstreamEnv {
            config: &config,
            store: &store,
            stats: &mut stats,
            locals: &mut locals,
            random: 0,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ok = call_result(Outcome::Success, now, now + Duration::from_millis(4), None);
        assert!(matches!(e.admit("a", now), Gate::Pass { .. }));
        assert_eq!(e.record("a", now, &ok), None);
        let (gets, sets) = (store.gets.get(), store.sets.get());
        for _ in 0..10 {
            assert!(matches!(e.admit("a", now), Gate::Pass { .. }));
            assert_eq!(e.record("a", now, &ok), None);
        }
        assert_eq!(
            (store.gets.get() - gets, store.sets.get() - sets),
            (10, 0),
            "one read per request, no write"
        );
        assert_eq!(record_of(&store, "a").successes(), 0, "not merged yet");
        assert_eq!(e.locals["a"].pending_calls(), 11);
        e.flush(now);
        let merged = record_of(&store, "a");
        assert_eq!(merged.successes(), 11);
        assert_eq!(merged.latency().total(), 11);
        assert_eq!(e.locals["a"].pending_calls(), 0);
        let writes = store.sets.get();
        e.flush(now);
        assert_eq!(store.sets.get(), writes, "nothing waiting, nothing written");
    }

    #[test]
    fn a_failure_writes_at_once_with_what_was_waiting() {
        let config = UpstreamConfig::default();
        let store = MapStore::default();
        let (mut stats, mut locals) = (CasStats::default(), BTreeMap::new());
        let mut e = env(&config, &store, &mut stats, &mut locals);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let fail = |at| call_result(Outcome::Error(FailureKind::Http5xx), at, at, None);
        let ok = |at| call_result(Outcome::Success, at, at, None);
        e.admit("a", t0);
        e.record("a", t0, &fail(t0));
        e.record("a", t0 + Duration::from_millis(1), &ok(t0));
        e.record("a", t0 + Duration::from_millis(2), &fail(t0));
        let r = shared::read(&Store(&store), &shared::key_for("a"), 0).expect("read");
        assert_eq!((r.successes(), r.failures()), (1, 2));
        assert_eq!(
            r.consecutive_failures(),
            1,
            "the success between the failures reset the count"
        );
        assert_eq!(e.locals["a"].pending_calls(), 0);
    }

    #[test]
    fn merged_successes_older_than_a_failure_do_not_reset_its_count() {
        let config = UpstreamConfig::default();
        let store = MapStore::default();
        let (mut stats_a, mut locals_a) = (CasStats::default(), BTreeMap::new());
        let (mut stats_b, mut locals_b) = (CasStats::default(), BTreeMap::new());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let later = t0 + Duration::from_millis(50);
        let mut a = env(&config, &store, &mut stats_a, &mut locals_a);
        a.admit("x", t0);
        a.record("x", t0, &call_result(Outcome::Success, t0, t0, None));
        let mut b = env(&config, &store, &mut stats_b, &mut locals_b);
        b.admit("x", later);
        let fail = call_result(Outcome::Error(FailureKind::Timeout), later, later, None);
        b.record("x", later, &fail);
        let mut a = env(&config, &store, &mut stats_a, &mut locals_a);
        a.flush(later + Duration::from_millis(50));
        let r = shared::read(&Store(&store), &shared::key_for("x"), 0).expect("read");
        assert_eq!((r.successes(), r.failures()), (1, 1));
        assert_eq!(r.consecutive_failures(), 1, "the success came first");
    }

    #[test]
    fn breaker_off_admits_without_reading() {
        let mut config = UpstreamConfig::default();
        config.breaker.enabled = false;
        let store = Counting::default();
        let (mut stats, mut locals) = (CasStats::default(), BTreeMap::new());
        let mut e = UpstreamEnv {
            config: &config,
            store: &store,
            stats: &mut stats,
            locals: &mut locals,
            random: 0,
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        e.admit("a", now);
        let gets = store.gets.get();
        assert!(matches!(e.admit("a", now), Gate::Pass { .. }));
        assert_eq!(store.gets.get(), gets);
    }
}

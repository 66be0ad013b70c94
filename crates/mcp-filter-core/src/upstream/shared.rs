//! The compare-and-swap loop that applies a pure record update to Envoy shared data, over an
//! abstract store so it is testable natively with injected conflicts. Envoy runs one VM per
//! worker; they all read and write the same record, so each update decodes a fresh copy,
//! applies the change, and writes it back only if nobody else wrote in between. Only the
//! attempt that commits returns its value, so a transition computed by an attempt that lost
//! the race is never reported: `circuit.*` events are exactly-once across workers.
//!
//! Failure is bounded and quiet: after `max_retries` conflicts the update is `Lost` (the
//! caller counts it), a host error is `StoreFailed`; neither ever traps.

use crate::upstream::call::CallResult;
use crate::upstream::config::UpstreamConfig;
use crate::upstream::pending::Pending;
use crate::upstream::record::{secs_until, Admission, Peek, Transition, UpstreamRecord};

/// The host could not read the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// Someone wrote the key since our `get` (proxy-wasm `Status::CasMismatch`).
    CasMismatch,
    Other,
}

/// Envoy shared data as the proxy-wasm SDK exposes it (`get_shared_data`/`set_shared_data`).
pub trait SharedStore {
    /// The value and its CAS token; `(None, None)` when the key does not exist.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    /// Writes if the key's CAS token still is `cas` (`None`: unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome<T> {
    Committed {
        value: T,
        /// CAS conflicts before the commit.
        retries: u32,
        /// False when the update changed nothing, so nothing was written.
        wrote: bool,
        /// The stored value was corrupt or of an unknown version and was replaced by a fresh
        /// record (count it).
        replaced_corrupt: bool,
    },
    /// Every attempt hit a conflict; the update is dropped (count it).
    Lost { retries: u32 },
    /// The host refused a get or set.
    StoreFailed,
}

impl<T> UpdateOutcome<T> {
    pub fn value(self) -> Option<T> {
        match self {
            UpdateOutcome::Committed { value, .. } => Some(value),
            _ => None,
        }
    }

    pub fn is_lost(&self) -> bool {
        matches!(self, UpdateOutcome::Lost { .. })
    }
}

/// The shared-data key of an instance. Call it only for configured/validated instances, so
/// clients cannot mint keys.
pub fn key_for(instance: &str) -> String {
    format!("mcp-gw/v1/upstream/{instance}")
}

/// Creates the record of a configured instance if it does not exist yet. Call it at configure
/// time: Envoy cannot compare-and-swap a key that does not exist, so two workers creating the
/// same key at once could overwrite each other; creating empty records up front leaves only
/// the harmless race of two empty records.
pub fn ensure(store: &impl SharedStore, key: &str, now_us: u64) -> Result<(), StoreError> {
    match store.get(key)? {
        (Some(_), _) => Ok(()),
        (None, _) => store
            .set(key, &UpstreamRecord::new(now_us).encode(), None)
            .map_err(|_| StoreError),
    }
}

/// What one `get` of a key returned: the value and its CAS token.
pub type Fetched = (Option<Vec<u8>>, Option<u32>);

/// Applies `f` to the record at `key` with compare-and-swap, retrying up to `max_retries`
/// times on conflict. `f` runs on a fresh decode each attempt and must be pure; only the
/// committing attempt's value is returned.
pub fn update<T>(
    store: &impl SharedStore,
    key: &str,
    now_us: u64,
    max_retries: u32,
    f: impl FnMut(&mut UpstreamRecord) -> T,
) -> UpdateOutcome<T> {
    match store.get(key) {
        Ok(first) => update_from(store, key, first, now_us, max_retries, f),
        Err(StoreError) => UpdateOutcome::StoreFailed,
    }
}

/// [`update`] starting from a value already read (so a caller that looked first does not
/// read twice).
pub fn update_from<T>(
    store: &impl SharedStore,
    key: &str,
    first: Fetched,
    now_us: u64,
    max_retries: u32,
    mut f: impl FnMut(&mut UpstreamRecord) -> T,
) -> UpdateOutcome<T> {
    let mut retries = 0u32;
    let mut created = false;
    let mut fetched = Some(first);
    loop {
        let (stored, cas) = match fetched.take() {
            Some(first) => first,
            None => match store.get(key) {
                Ok(read) => read,
                Err(StoreError) => return UpdateOutcome::StoreFailed,
            },
        };
        let Some(stored) = stored else {
            // Missing key (see `ensure`): create an empty record without CAS, then apply the
            // update with CAS, so a creation race can at worst clobber another empty record.
            if created {
                return UpdateOutcome::StoreFailed;
            }
            created = true;
            let fresh = UpstreamRecord::new(now_us).encode();
            if store.set(key, &fresh, None).is_err() {
                return UpdateOutcome::StoreFailed;
            }
            continue;
        };
        let decoded = UpstreamRecord::decode(&stored);
        let replaced_corrupt = decoded.is_none();
        let mut record = decoded.unwrap_or_else(|| UpstreamRecord::new(now_us));
        let value = f(&mut record);
        let encoded = record.encode();
        if !replaced_corrupt && encoded == stored {
            // Nothing changed: no write, nothing to race.
            return UpdateOutcome::Committed {
                value,
                retries,
                wrote: false,
                replaced_corrupt,
            };
        }
        match store.set(key, &encoded, cas) {
            Ok(()) => {
                return UpdateOutcome::Committed {
                    value,
                    retries,
                    wrote: true,
                    replaced_corrupt,
                }
            }
            Err(SetError::CasMismatch) if retries < max_retries => retries += 1,
            Err(SetError::CasMismatch) => return UpdateOutcome::Lost { retries },
            Err(SetError::Other) => return UpdateOutcome::StoreFailed,
        }
    }
}

/// The admission decision for one request, with what the glue should emit and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmitDecision {
    pub admission: Admission,
    /// Emit as `transition.event_name()` (committed, so exactly once across workers).
    pub transition: Option<Transition>,
    pub lost: bool,
    pub store_failed: bool,
    pub replaced_corrupt: bool,
}

impl AdmitDecision {
    /// Go ahead, nothing to report.
    pub fn allow() -> Self {
        AdmitDecision {
            admission: Admission::Allow,
            transition: None,
            lost: false,
            store_failed: false,
            replaced_corrupt: false,
        }
    }
}

/// Decides whether a request to the upstream at `key` may proceed.
///
/// The common cases cost one read and no write: a closed breaker admits, an open one rejects
/// until its reset time, both read from the head of the stored record ([`UpstreamRecord::peek`]).
/// Only an open breaker whose time is up and a half-open one (taking a probe slot) need the
/// compare-and-swap update, which starts from that same read.
///
/// When the update is lost a probe slot could not be claimed safely, so the request is
/// rejected with `Retry-After: 1`, keeping the probe limit. When the store fails the breaker
/// is unavailable and the request is allowed: a broken breaker must not take traffic down.
pub fn admit(
    store: &impl SharedStore,
    key: &str,
    cfg: &UpstreamConfig,
    now_us: u64,
) -> AdmitDecision {
    let mut decision = AdmitDecision::allow();
    let Ok(first) = store.get(key) else {
        decision.store_failed = true;
        return decision;
    };
    match first.0.as_deref().and_then(UpstreamRecord::peek) {
        Some(Peek::Closed) => return decision,
        Some(Peek::Open { until_us }) if now_us < until_us => {
            decision.admission = Admission::Reject {
                retry_after_secs: secs_until(now_us, until_us),
            };
            return decision;
        }
        _ => {}
    }
    let outcome = update_from(store, key, first, now_us, cfg.cas_max_retries, |r| {
        r.admit(&cfg.breaker, now_us)
    });
    match outcome {
        UpdateOutcome::Committed {
            value: (admission, transition),
            replaced_corrupt,
            ..
        } => {
            decision.admission = admission;
            decision.transition = transition;
            decision.replaced_corrupt = replaced_corrupt;
        }
        UpdateOutcome::Lost { .. } => {
            decision.admission = Admission::Reject {
                retry_after_secs: 1,
            };
            decision.lost = true;
        }
        UpdateOutcome::StoreFailed => decision.store_failed = true,
    }
    decision
}

/// Records the result of a call to the upstream at `key`, after merging the worker's
/// `pending` results (which must be cleared once this commits); the committed value is the
/// transition to emit, if any.
pub fn record(
    store: &impl SharedStore,
    key: &str,
    cfg: &UpstreamConfig,
    now_us: u64,
    random: u64,
    pending: &Pending,
    result: &CallResult,
) -> UpdateOutcome<Option<Transition>> {
    update(store, key, now_us, cfg.cas_max_retries, |r| {
        r.absorb(&cfg.breaker, pending);
        r.record(&cfg.breaker, now_us, random, result)
    })
}

/// Merges a worker's `pending` results into the record at `key` (one CAS); clear them once
/// this commits.
pub fn merge(
    store: &impl SharedStore,
    key: &str,
    cfg: &UpstreamConfig,
    now_us: u64,
    pending: &Pending,
) -> UpdateOutcome<()> {
    update(store, key, now_us, cfg.cas_max_retries, |r| {
        r.absorb(&cfg.breaker, pending)
    })
}

/// Reads the record at `key` for the health endpoint; a missing or corrupt value reads as a
/// fresh record.
pub fn read(
    store: &impl SharedStore,
    key: &str,
    now_us: u64,
) -> Result<UpstreamRecord, StoreError> {
    let (stored, _) = store.get(key)?;
    Ok(stored
        .as_deref()
        .and_then(UpstreamRecord::decode)
        .unwrap_or_else(|| UpstreamRecord::new(now_us)))
}

#[cfg(test)]
mod tests;

/// A plain in-memory store with Envoy's CAS semantics, for the tests of the stores' users and
/// the exchange fuzz target.
#[cfg(any(test, fuzzing))]
#[derive(Default)]
pub(crate) struct MapStore(std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>);

#[cfg(test)]
impl MapStore {
    pub(crate) fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.0.borrow().contains_key(key)
    }
}

#[cfg(any(test, fuzzing))]
impl SharedStore for MapStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Ok(match self.0.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetError> {
        let mut map = self.0.borrow_mut();
        let current = map.get(key).map(|(_, c)| *c);
        if cas.is_some_and(|c| c != 0 && Some(c) != current) {
            return Err(SetError::CasMismatch);
        }
        map.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
}

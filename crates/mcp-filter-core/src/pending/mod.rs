//! Requests whose responses arrive on another HTTP stream: the legacy HTTP+SSE transport
//! answers a POST with 202 and delivers the JSON-RPC response on the session's GET stream.
//! That stream is usually on another Envoy worker (another connection), so the requests are
//! parked in Envoy shared data, which every worker VM sees: a fixed ring of `slots` keys, the
//! slot chosen by a hash of (session, JSON-RPC id). State stays bounded whatever clients send
//! (shared data keys are never deleted, so they must not be minted per request); a request
//! parked over an unanswered one in the same slot evicts it (counted). Taking a request clears
//! its slot with compare-and-swap, so exactly one VM answers it.
//!
//! A parked request is what its `response` event needs: the POST's rendered shared fields
//! and the element's rendered message fields (see `exchange::common`), and its start time.
//!
//! The same ring (its own keys) holds each session's message endpoint as the server announced
//! it ([`endpoints`]), so a POST is recognised by the path the server chose.

mod endpoints;

use crate::upstream::{SetError, SharedStore};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Retries of a compare-and-swap on one slot before the operation is given up (counted).
const CAS_RETRIES: u32 = 4;
/// First bytes of a stored entry; a different layout gets different keys and a new tag.
const TAG: &[u8; 2] = b"P2";
const KEY_PREFIX: &str = "mcp-gw/v2/pending/";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    /// The exchange's shared fields, rendered (`,"trace_id":…`).
    pub common: Vec<u8>,
    /// The element's message fields, rendered.
    pub fields: Vec<u8>,
    pub started: SystemTime,
}

/// What happened to parked requests in this VM (reported as filter stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingStats {
    /// Unanswered requests overwritten by a newer one in their slot.
    pub evicted: u64,
    /// Parks or takes given up: CAS conflicts beyond the retries or a store failure.
    pub lost: u64,
}

/// The shared-data ring, as one VM sees it for one callback.
pub struct SharedPending<'a> {
    pub store: &'a dyn SharedStore,
    pub slots: usize,
    pub stats: &'a mut PendingStats,
}

fn entry_key(session: &str, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(session.len() + id.len() + 1);
    key.extend_from_slice(session.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

/// FNV-1a: a stable spread of keys over slots (not a defence: slots only bound memory).
fn slot_of(key: &[u8], slots: usize) -> String {
    slot_under(KEY_PREFIX, key, slots)
}

fn slot_under(prefix: &str, key: &[u8], slots: usize) -> String {
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{prefix}{}", hash % slots.max(1) as u64)
}

impl SharedPending<'_> {
    /// Parks a request until its response shows up on the session's stream (any VM). `id`
    /// is the JSON-RPC id as JSON text. False when it could not be parked (counted).
    pub fn park(&mut self, session: &str, id: &str, request: &PendingRequest) -> bool {
        let key = entry_key(session, id);
        let slot = slot_of(&key, self.slots);
        let encoded = encode(&key, request);
        for _ in 0..=CAS_RETRIES {
            let Ok((current, cas)) = self.store.get(&slot) else {
                break;
            };
            let displaced = current
                .as_deref()
                .and_then(decode)
                .is_some_and(|(k, _)| k != key);
            match self.store.set(&slot, &encoded, cas) {
                Ok(()) => {
                    self.stats.evicted += u64::from(displaced);
                    return true;
                }
                Err(SetError::CasMismatch) => continue,
                Err(SetError::Other) => break,
            }
        }
        self.stats.lost += 1;
        false
    }

    /// The request answered by a message with this id (JSON text) on this session's
    /// stream, if parked.
    pub fn take(&mut self, session: &str, id: &str) -> Option<PendingRequest> {
        let key = entry_key(session, id);
        let slot = slot_of(&key, self.slots);
        for _ in 0..=CAS_RETRIES {
            let (current, cas) = self.store.get(&slot).ok()?;
            let (stored_key, request) = current.as_deref().and_then(decode)?;
            if stored_key != key {
                return None;
            }
            match self.store.set(&slot, b"", cas) {
                Ok(()) => return Some(request),
                Err(SetError::CasMismatch) => continue,
                Err(SetError::Other) => break,
            }
        }
        self.stats.lost += 1;
        None
    }
}

/// `P2`, start (µs since the epoch, u64 LE), then key, shared fields and message fields,
/// each as a u32 LE length and its bytes.
fn encode(key: &[u8], request: &PendingRequest) -> Vec<u8> {
    let started = request
        .started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut out = Vec::with_capacity(22 + key.len() + request.common.len() + request.fields.len());
    out.extend_from_slice(TAG);
    out.extend_from_slice(&started.to_le_bytes());
    for part in [key, &request.common, &request.fields] {
        out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// `None` for an empty (taken) slot or bytes that are not a parked request.
fn decode(bytes: &[u8]) -> Option<(Vec<u8>, PendingRequest)> {
    let rest = bytes.strip_prefix(TAG)?;
    let (started, mut rest) = rest.split_first_chunk::<8>()?;
    let mut parts: [&[u8]; 3] = [&[]; 3];
    for part in parts.iter_mut() {
        let (len, after) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        if after.len() < len {
            return None;
        }
        let (value, after) = after.split_at(len);
        *part = value;
        rest = after;
    }
    let [key, common, fields] = parts;
    // The fragments go into event lines as they are: they must look like JSON members.
    let fragment =
        |f: &[u8]| f.is_empty() || (f.starts_with(b",\"") && std::str::from_utf8(f).is_ok());
    if !rest.is_empty() || !fragment(common) || !fragment(fields) {
        return None;
    }
    Some((
        key.to_vec(),
        PendingRequest {
            common: common.to_vec(),
            fields: fields.to_vec(),
            started: UNIX_EPOCH + Duration::from_micros(u64::from_le_bytes(*started)),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::shared::MapStore;

    fn request(tool: &str) -> PendingRequest {
        PendingRequest {
            common: br#","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","mcp.transport":"sse""#
                .to_vec(),
            fields: format!(r#","gen_ai.tool.name":"{tool}","jsonrpc.request.id":"7""#)
                .into_bytes(),
            started: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
        }
    }

    fn ring<'a>(
        store: &'a MapStore,
        stats: &'a mut PendingStats,
        slots: usize,
    ) -> SharedPending<'a> {
        SharedPending {
            store,
            slots,
            stats,
        }
    }

    #[test]
    fn a_request_parked_by_one_vm_is_taken_once_by_another() {
        let store = MapStore::default();
        let (mut stats_a, mut stats_b) = (PendingStats::default(), PendingStats::default());
        ring(&store, &mut stats_a, 64).park("s1", "7", &request("echo"));
        let mut other_vm = ring(&store, &mut stats_b, 64);
        assert!(other_vm.take("s1", "\"7\"").is_none(), "ids are JSON text");
        let taken = other_vm.take("s1", "7").expect("found across VMs");
        assert_eq!(taken, request("echo"));
        assert!(other_vm.take("s1", "7").is_none(), "answered once");
        assert!(other_vm.take("s2", "7").is_none(), "keyed by session too");
        assert_eq!(
            (stats_a, stats_b),
            (PendingStats::default(), PendingStats::default())
        );
    }

    #[test]
    fn the_ring_is_bounded_and_counts_what_it_overwrites() {
        let store = MapStore::default();
        let mut stats = PendingStats::default();
        let mut one_slot = ring(&store, &mut stats, 1);
        one_slot.park("s1", "1", &request("first"));
        one_slot.park("s1", "2", &request("second"));
        assert!(one_slot.take("s1", "1").is_none(), "overwritten");
        assert_eq!(one_slot.take("s1", "2"), Some(request("second")));
        assert_eq!(stats.evicted, 1);

        let mut stats = PendingStats::default();
        let mut many = ring(&store, &mut stats, 16);
        for id in 0..1000 {
            many.park("flood", &id.to_string(), &request("x"));
        }
        assert!(
            store.len() <= 17,
            "keys stay within the slots: {}",
            store.len()
        );
    }

    #[test]
    fn garbage_in_a_slot_is_neither_taken_nor_fatal() {
        let store = MapStore::default();
        let key = slot_of(&entry_key("s1", "7"), 8);
        let mut stats = PendingStats::default();
        let mut pending = ring(&store, &mut stats, 8);
        for garbage in [
            &b"{not json"[..],
            b"P2",
            b"P2\0\0\0\0\0\0\0\0\xff\xff\xff\xff",
        ] {
            store.set(&key, garbage, None).expect("set");
            assert!(pending.take("s1", "7").is_none());
        }
        let mut bad_fragment = request("x");
        bad_fragment.fields = b"}{".to_vec();
        store
            .set(&key, &encode(&entry_key("s1", "7"), &bad_fragment), None)
            .expect("set");
        assert!(pending.take("s1", "7").is_none(), "not JSON members");
        pending.park("s1", "7", &request("echo"));
        assert!(
            pending.take("s1", "7").is_some(),
            "overwritten with a valid entry"
        );
    }
}

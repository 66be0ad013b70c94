//! Requests whose responses arrive on another HTTP stream: the legacy HTTP+SSE transport
//! answers a POST with 202 and delivers the JSON-RPC response on the session's GET stream.
//! That stream is usually on another Envoy worker (another connection), so the requests are
//! parked in Envoy shared data, which every worker VM sees: a fixed ring of `slots` keys, the
//! slot chosen by a hash of (session, JSON-RPC id). State stays bounded whatever clients send
//! (shared data keys are never deleted, so they must not be minted per request); a request
//! parked over an unanswered one in the same slot evicts it (counted). Taking a request clears
//! its slot with compare-and-swap, so exactly one VM answers it.

use crate::events::{Common, Fields};
use crate::upstream::{SetError, SharedStore};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Retries of a compare-and-swap on one slot before the operation is given up (counted).
const CAS_RETRIES: u32 = 4;

#[derive(Debug, Clone)]
pub struct PendingRequest {
    pub common: Common,
    pub fields: Fields,
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

fn entry_key(session: &str, id: &str) -> String {
    format!("{session}\u{0}{id}")
}

/// FNV-1a: a stable spread of keys over slots (not a defence: slots only bound memory).
fn slot_of(key: &str, slots: usize) -> String {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("mcp-gw/v1/pending/{}", hash % slots.max(1) as u64)
}

impl SharedPending<'_> {
    /// Parks a request until its response shows up on the session's stream (any VM).
    pub fn park(&mut self, session: &str, id: &str, request: PendingRequest) {
        let key = entry_key(session, id);
        let slot = slot_of(&key, self.slots);
        let Ok(encoded) = serde_json::to_vec(&Parked::new(key.clone(), &request)) else {
            self.stats.lost += 1;
            return;
        };
        for _ in 0..=CAS_RETRIES {
            let Ok((current, cas)) = self.store.get(&slot) else {
                break;
            };
            let displaced = current
                .as_deref()
                .and_then(Parked::decode)
                .is_some_and(|p| p.k != key);
            match self.store.set(&slot, &encoded, cas) {
                Ok(()) => {
                    self.stats.evicted += u64::from(displaced);
                    return;
                }
                Err(SetError::CasMismatch) => continue,
                Err(SetError::Other) => break,
            }
        }
        self.stats.lost += 1;
    }

    /// The request answered by a message with this id on this session's stream, if parked.
    pub fn take(&mut self, session: &str, id: &str) -> Option<PendingRequest> {
        let key = entry_key(session, id);
        let slot = slot_of(&key, self.slots);
        for _ in 0..=CAS_RETRIES {
            let (current, cas) = self.store.get(&slot).ok()?;
            let parked = current.as_deref().and_then(Parked::decode)?;
            if parked.k != key {
                return None;
            }
            match self.store.set(&slot, b"", cas) {
                Ok(()) => return Some(parked.into_request()),
                Err(SetError::CasMismatch) => continue,
                Err(SetError::Other) => break,
            }
        }
        self.stats.lost += 1;
        None
    }
}

/// The stored form: owned strings where the event structs hold `&'static str` labels.
#[derive(Serialize, Deserialize)]
struct Parked {
    k: String,
    /// Start of the request, microseconds since the epoch.
    t: u64,
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    trace_origin: String,
    instance_id: Option<String>,
    http_method: String,
    path: String,
    transport: String,
    session_id: Option<String>,
    protocol_version: Option<String>,
    token_header: Option<String>,
    token: Option<String>,
    method: Option<String>,
    message_kind: Option<String>,
    tool_name: Option<String>,
    prompt_name: Option<String>,
    resource_uri: Option<String>,
    request_id: Option<String>,
    batch_size: Option<usize>,
    batch_index: Option<usize>,
    known_method: Option<bool>,
    classified_from: Option<String>,
    body_inspected: Option<bool>,
    body_bytes: Option<usize>,
}

/// Maps a stored label back to the one static string it was made from ("other" if unknown,
/// which only a corrupted slot can produce).
fn label(value: &str, known: &[&'static str]) -> &'static str {
    known
        .iter()
        .find(|k| **k == value)
        .copied()
        .unwrap_or("other")
}

const TRACE_ORIGINS: &[&str] = &["header", "meta", "generated"];
const TRANSPORTS: &[&str] = &["sse", "streamable_http"];
const MESSAGE_KINDS: &[&str] = &["request", "notification", "response", "error", "unknown"];
const CLASSIFIED_FROM: &[&str] = &["body", "headers"];

impl Parked {
    fn new(k: String, request: &PendingRequest) -> Parked {
        let (c, f) = (&request.common, &request.fields);
        let t = request
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Parked {
            k,
            t,
            trace_id: c.trace_id.clone(),
            span_id: c.span_id.clone(),
            parent_span_id: c.parent_span_id.clone(),
            trace_origin: c.trace_origin.to_string(),
            instance_id: c.instance_id.clone(),
            http_method: c.http_method.clone(),
            path: c.path.clone(),
            transport: c.transport.to_string(),
            session_id: c.session_id.clone(),
            protocol_version: c.protocol_version.clone(),
            token_header: c.token_header.clone(),
            token: c.token.clone(),
            method: f.method.clone(),
            message_kind: f.message_kind.map(str::to_string),
            tool_name: f.tool_name.clone(),
            prompt_name: f.prompt_name.clone(),
            resource_uri: f.resource_uri.clone(),
            request_id: f.request_id.clone(),
            batch_size: f.batch_size,
            batch_index: f.batch_index,
            known_method: f.known_method,
            classified_from: f.classified_from.map(str::to_string),
            body_inspected: f.body_inspected,
            body_bytes: f.body_bytes,
        }
    }

    /// `None` for an empty (taken) slot or bytes that are not a parked request.
    fn decode(bytes: &[u8]) -> Option<Parked> {
        serde_json::from_slice(bytes).ok()
    }

    fn into_request(self) -> PendingRequest {
        PendingRequest {
            common: Common {
                trace_id: self.trace_id,
                span_id: self.span_id,
                parent_span_id: self.parent_span_id,
                trace_origin: label(&self.trace_origin, TRACE_ORIGINS),
                instance_id: self.instance_id,
                http_method: self.http_method,
                path: self.path,
                transport: label(&self.transport, TRANSPORTS),
                session_id: self.session_id,
                protocol_version: self.protocol_version,
                token_header: self.token_header,
                token: self.token,
            },
            fields: Fields {
                method: self.method,
                message_kind: self.message_kind.map(|k| label(&k, MESSAGE_KINDS)),
                tool_name: self.tool_name,
                prompt_name: self.prompt_name,
                resource_uri: self.resource_uri,
                request_id: self.request_id,
                batch_size: self.batch_size,
                batch_index: self.batch_index,
                known_method: self.known_method,
                classified_from: self.classified_from.map(|c| label(&c, CLASSIFIED_FROM)),
                body_inspected: self.body_inspected,
                body_bytes: self.body_bytes,
                ..Fields::default()
            },
            started: UNIX_EPOCH + Duration::from_micros(self.t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::shared::MapStore;

    fn request(tool: &str) -> PendingRequest {
        PendingRequest {
            common: Common {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                span_id: "00f067aa0ba902b7".into(),
                trace_origin: "header",
                transport: "sse",
                http_method: "POST".into(),
                path: "/mcp/legacy/messages".into(),
                session_id: Some("s1".into()),
                token: Some("sha256:0123456789ab".into()),
                ..Common::default()
            },
            fields: Fields {
                method: Some("tools/call".into()),
                message_kind: Some("request"),
                tool_name: Some(tool.into()),
                request_id: Some("7".into()),
                classified_from: Some("body"),
                known_method: Some(true),
                ..Fields::default()
            },
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
        ring(&store, &mut stats_a, 64).park("s1", "7", request("echo"));
        let mut other_vm = ring(&store, &mut stats_b, 64);
        let taken = other_vm.take("s1", "7").expect("found across VMs");
        assert_eq!(taken.common.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            (taken.common.trace_origin, taken.common.transport),
            ("header", "sse")
        );
        assert_eq!(taken.fields.tool_name.as_deref(), Some("echo"));
        assert_eq!(taken.fields.message_kind, Some("request"));
        assert_eq!(taken.fields.classified_from, Some("body"));
        assert_eq!(taken.started, request("echo").started);
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
        one_slot.park("s1", "1", request("first"));
        one_slot.park("s1", "2", request("second"));
        assert!(one_slot.take("s1", "1").is_none(), "overwritten");
        assert_eq!(
            one_slot.take("s1", "2").map(|r| r.fields.tool_name),
            Some(Some("second".into()))
        );
        assert_eq!(stats.evicted, 1);

        let mut stats = PendingStats::default();
        let mut many = ring(&store, &mut stats, 16);
        for id in 0..1000 {
            many.park("flood", &id.to_string(), request("x"));
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
        store.set(&key, b"{not json", None).expect("set");
        let mut stats = PendingStats::default();
        let mut pending = ring(&store, &mut stats, 8);
        assert!(pending.take("s1", "7").is_none());
        pending.park("s1", "7", request("echo"));
        assert!(
            pending.take("s1", "7").is_some(),
            "overwritten with a valid entry"
        );
    }
}

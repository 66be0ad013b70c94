//! Requests whose responses arrive on another HTTP stream: the legacy HTTP+SSE transport
//! answers a POST with 202 and delivers the JSON-RPC response on the session's GET stream.
//! Kept per VM, keyed by (session, JSON-RPC id), bounded: the oldest entry is evicted first.

use crate::events::{Common, Fields};
use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub struct PendingRequest {
    pub common: Common,
    pub fields: Fields,
    pub started: SystemTime,
}

#[derive(Debug, Default)]
pub struct PendingRequests {
    entries: HashMap<String, PendingRequest>,
    order: VecDeque<String>,
    /// Entries pushed out by the bound before their response arrived.
    pub evicted: u64,
}

fn key(session: &str, id: &str) -> String {
    format!("{session}\u{0}{id}")
}

impl PendingRequests {
    pub fn insert(&mut self, session: &str, id: &str, request: PendingRequest, capacity: usize) {
        let k = key(session, id);
        if self.entries.insert(k.clone(), request).is_none() {
            self.order.push_back(k);
        }
        while self.entries.len() > capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if self.entries.remove(&oldest).is_some() {
                self.evicted += 1;
            }
        }
    }

    pub fn take(&mut self, session: &str, id: &str) -> Option<PendingRequest> {
        let k = key(session, id);
        let found = self.entries.remove(&k)?;
        self.order.retain(|o| o != &k);
        Some(found)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn request() -> PendingRequest {
        PendingRequest {
            common: Common::default(),
            fields: Fields::default(),
            started: UNIX_EPOCH,
        }
    }

    #[test]
    fn bounded_and_keyed_by_session_and_id() {
        let mut p = PendingRequests::default();
        p.insert("s1", "1", request(), 2);
        p.insert("s2", "1", request(), 2);
        p.insert("s1", "2", request(), 2);
        assert_eq!(p.len(), 2);
        assert_eq!(p.evicted, 1);
        assert!(p.take("s1", "1").is_none(), "oldest was evicted");
        assert!(p.take("s2", "1").is_some());
        assert!(p.take("s2", "1").is_none());
        assert!(p.take("s1", "2").is_some());
        assert!(p.is_empty());
    }
}

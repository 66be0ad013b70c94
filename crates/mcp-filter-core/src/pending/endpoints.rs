//! Each legacy session's message endpoint, learned from the `endpoint` event its GET stream
//! announces (after the gateway's rewrite, so it is the path clients POST to). Servers choose
//! that path freely (the Python SDK announces `/messages/?session_id=…`), so a configured
//! suffix cannot recognise every server's POSTs; the announced path can. The GET stream and
//! the POSTs usually run on different workers, hence shared data: the pending ring's slot
//! count under its own key prefix, one slot per session hash, a newer session overwriting an
//! older one in its slot (the configured suffix still recognises the evicted session's POSTs).

use super::{slot_under, SharedPending};

const KEY_PREFIX: &str = "mcp-gw/v2/endpoint/";
/// First bytes of a stored endpoint; a different layout gets a new tag.
const TAG: &[u8; 2] = b"E1";

impl SharedPending<'_> {
    /// Remembers that `session`'s POSTs go to `path` (without its query). A failed write is
    /// counted as lost: the session's POSTs fall back to the configured suffix.
    pub fn learn_endpoint(&mut self, session: &str, path: &str) {
        let slot = slot_under(KEY_PREFIX, session.as_bytes(), self.slots);
        if self.store.set(&slot, &encode(session, path), None).is_err() {
            self.stats.lost += 1;
        }
    }

    /// Whether `path` (without its query) is the endpoint `session`'s stream announced.
    pub fn is_endpoint(&self, session: &str, path: &str) -> bool {
        let slot = slot_under(KEY_PREFIX, session.as_bytes(), self.slots);
        let Ok((Some(stored), _)) = self.store.get(&slot) else {
            return false;
        };
        decode(&stored) == Some((session.as_bytes(), path.as_bytes()))
    }
}

/// `E1`, the session's length (u32 LE), the session, the path.
fn encode(session: &str, path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + session.len() + path.len());
    out.extend_from_slice(TAG);
    out.extend_from_slice(&u32::try_from(session.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(session.as_bytes());
    out.extend_from_slice(path.as_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = bytes.strip_prefix(TAG)?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
    (len <= rest.len()).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pending::PendingStats;
    use crate::upstream::shared::MapStore;
    use crate::upstream::SharedStore;

    #[test]
    fn an_endpoint_learned_by_one_vm_is_recognised_by_another() {
        let store = MapStore::default();
        let mut stats = PendingStats::default();
        let mut get_stream = SharedPending {
            store: &store,
            slots: 64,
            stats: &mut stats,
        };
        get_stream.learn_endpoint("ab12", "/mcp/py/messages/");
        let mut other_stats = PendingStats::default();
        let post = SharedPending {
            store: &store,
            slots: 64,
            stats: &mut other_stats,
        };
        assert!(post.is_endpoint("ab12", "/mcp/py/messages/"));
        assert!(!post.is_endpoint("ab12", "/mcp/py/other/"), "another path");
        assert!(
            !post.is_endpoint("cd34", "/mcp/py/messages/"),
            "another session"
        );
    }

    #[test]
    fn endpoints_stay_within_the_slots_and_garbage_is_not_an_endpoint() {
        let store = MapStore::default();
        let mut stats = PendingStats::default();
        let mut ring = SharedPending {
            store: &store,
            slots: 8,
            stats: &mut stats,
        };
        for session in 0..500 {
            ring.learn_endpoint(&session.to_string(), "/messages/");
        }
        assert!(
            store.len() <= 8,
            "keys stay within the slots: {}",
            store.len()
        );
        assert!(ring.is_endpoint("499", "/messages/"), "the newest is kept");
        let slot = slot_under(KEY_PREFIX, b"s1", 8);
        for garbage in [&b"E1"[..], b"E1\xff\xff\xff\xffs1", b"P2xx"] {
            store.set(&slot, garbage, None).expect("set");
            assert!(!ring.is_endpoint("s1", ""));
        }
    }
}

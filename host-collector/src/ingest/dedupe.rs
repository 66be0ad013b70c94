//! Recent-window duplicate detection on `(source, seq)`, bounded in sources and in window size.
//! Sequence numbers older than the window are let through: the store's unique key catches them.

use std::collections::HashMap;

/// Per-source sliding window of seen sequence numbers (a ring of bits, like IPsec anti-replay).
struct Window {
    top: u64,
    bits: Vec<u64>,
    last_used: u64,
}

impl Window {
    fn new(size: u64, seq: u64, tick: u64) -> Self {
        let mut w = Window {
            top: seq,
            bits: vec![0; (size / 64) as usize],
            last_used: tick,
        };
        w.set(seq);
        w
    }

    fn size(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let i = seq % self.size();
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn set(&mut self, seq: u64) {
        let (word, mask) = self.slot(seq);
        self.bits[word] |= mask;
    }

    fn is_set(&self, seq: u64) -> bool {
        let (word, mask) = self.slot(seq);
        self.bits[word] & mask != 0
    }

    fn clear(&mut self, seq: u64) {
        if seq <= self.top && self.top - seq < self.size() {
            let (word, mask) = self.slot(seq);
            self.bits[word] &= !mask;
        }
    }

    /// True when `seq` was not seen before (or is too old to tell).
    fn check_and_set(&mut self, seq: u64) -> bool {
        if seq > self.top {
            let advance = seq - self.top;
            if advance >= self.size() {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                // Slots of the sequence numbers we move past now belong to new numbers.
                for s in self.top + 1..=seq {
                    let (word, mask) = self.slot(s);
                    self.bits[word] &= !mask;
                }
            }
            self.top = seq;
            self.set(seq);
            return true;
        }
        if self.top - seq >= self.size() {
            return true;
        }
        let fresh = !self.is_set(seq);
        self.set(seq);
        fresh
    }
}

pub struct Dedupe {
    window: u64,
    max_sources: usize,
    sources: HashMap<String, Window>,
    tick: u64,
}

impl Dedupe {
    /// `window` is rounded up to a multiple of 64.
    pub fn new(window: u64, max_sources: usize) -> Self {
        Dedupe {
            window: window.max(1).div_ceil(64) * 64,
            max_sources: max_sources.max(1),
            sources: HashMap::new(),
            tick: 0,
        }
    }

    /// True when the event should be kept, false for a recent duplicate.
    pub fn check(&mut self, source: &str, seq: u64) -> bool {
        self.tick += 1;
        if let Some(w) = self.sources.get_mut(source) {
            w.last_used = self.tick;
            return w.check_and_set(seq);
        }
        if self.sources.len() >= self.max_sources {
            self.evict_least_recent();
        }
        self.sources
            .insert(source.to_string(), Window::new(self.window, seq, self.tick));
        true
    }

    /// Undoes `check` for an event that was not kept after all (the spool refused it), so
    /// the sender's retry is not taken for a duplicate.
    pub fn forget(&mut self, source: &str, seq: u64) {
        if let Some(w) = self.sources.get_mut(source) {
            w.clear(seq);
        }
    }

    fn evict_least_recent(&mut self) {
        let oldest = self
            .sources
            .iter()
            .min_by_key(|(_, w)| w.last_used)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.sources.remove(&k);
        }
    }

    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_recent_duplicates_in_any_order() {
        let mut d = Dedupe::new(128, 10);
        for seq in [5, 3, 9, 4] {
            assert!(d.check("a", seq), "{seq} is new");
        }
        for seq in [5, 3, 9, 4] {
            assert!(!d.check("a", seq), "{seq} is a duplicate");
        }
        assert!(d.check("b", 5), "sources are independent");
    }

    #[test]
    fn window_slides_and_lets_old_numbers_through() {
        let mut d = Dedupe::new(64, 10);
        assert!(d.check("a", 1));
        assert!(d.check("a", 100));
        assert!(d.check("a", 1), "too old to tell: the store decides");
        assert!(d.check("a", 60), "slot reused by a newer number is clear");
        assert!(!d.check("a", 60));
    }

    #[test]
    fn a_forgotten_event_is_new_again() {
        let mut d = Dedupe::new(64, 10);
        assert!(d.check("a", 7));
        assert!(d.check("a", 8));
        d.forget("a", 7);
        assert!(d.check("a", 7), "forgotten");
        assert!(!d.check("a", 8), "others still remembered");
    }

    #[test]
    fn source_count_is_bounded() {
        let mut d = Dedupe::new(64, 2);
        d.check("a", 1);
        d.check("b", 1);
        d.check("a", 2);
        d.check("c", 1);
        assert_eq!(d.tracked_sources(), 2);
        assert!(!d.check("a", 2), "recently used source kept");
        assert!(d.check("b", 1), "least recently used source forgotten");
    }
}

//! The error-rate window of one upstream: calls and failures in `WINDOW_BUCKETS` sub-windows
//! of time, sliding as time passes, so the breaker's error rate covers a recent period in fixed
//! memory (it lives in the shared record, and a worker's pending calls use one too).

/// Sub-windows of the error-rate window.
pub const WINDOW_BUCKETS: usize = 10;

/// Calls and failures in a sliding window of `WINDOW_BUCKETS` sub-windows. `head` is the
/// index (time / width) of the newest sub-window; slot `i % WINDOW_BUCKETS` holds index `i`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorWindow {
    pub(crate) width_us: u64,
    pub(crate) head: u64,
    pub(crate) buckets: [(u32, u32); WINDOW_BUCKETS],
}

fn slot_of(index: u64) -> usize {
    // The remainder is below WINDOW_BUCKETS, so the cast is lossless.
    (index % WINDOW_BUCKETS as u64) as usize
}

impl ErrorWindow {
    pub(crate) fn clear(&mut self) {
        self.buckets = [(0, 0); WINDOW_BUCKETS];
    }

    pub(crate) fn add(&mut self, width_us: u64, now_us: u64, failed: bool) {
        let width_us = width_us.max(1);
        self.add_counts(width_us, now_us / width_us, 1, u32::from(failed));
    }

    /// Adds `calls` and `failures` to sub-window `index` (time / `width_us`).
    fn add_counts(&mut self, width_us: u64, index: u64, calls: u32, failures: u32) {
        let width_us = width_us.max(1);
        if width_us != self.width_us {
            // Reconfigured window: old sub-windows mean something else now.
            self.clear();
            self.width_us = width_us;
            self.head = index;
        }
        if index > self.head {
            let steps = index - self.head;
            if steps >= WINDOW_BUCKETS as u64 {
                self.clear();
            } else {
                for k in 1..=steps {
                    if let Some(b) = self.buckets.get_mut(slot_of(self.head + k)) {
                        *b = (0, 0);
                    }
                }
            }
            self.head = index;
        }
        // A slightly late clock from another worker still lands in its sub-window if kept.
        if self.head - index < WINDOW_BUCKETS as u64 {
            if let Some((c, f)) = self.buckets.get_mut(slot_of(index)) {
                *c = c.saturating_add(calls);
                *f = f.saturating_add(failures);
            }
        }
    }

    /// Adds another window's sub-windows (a worker's pending calls) into this one.
    pub(crate) fn absorb(&mut self, other: &ErrorWindow) {
        if other.width_us == 0 {
            return;
        }
        for k in (0..WINDOW_BUCKETS as u64).rev() {
            let Some(index) = other.head.checked_sub(k) else {
                continue;
            };
            if let Some(&(calls, failures)) = other.buckets.get(slot_of(index)) {
                if calls > 0 || failures > 0 {
                    self.add_counts(other.width_us, index, calls, failures);
                }
            }
        }
    }

    /// (calls, failures) in the window ending at `now_us`.
    pub fn totals(&self, width_us: u64, now_us: u64) -> (u32, u32) {
        if width_us.max(1) != self.width_us {
            return (0, 0);
        }
        let index = now_us / self.width_us;
        let mut total = (0u32, 0u32);
        for k in 0..WINDOW_BUCKETS as u64 {
            let Some(epoch) = self.head.checked_sub(k) else {
                break;
            };
            let in_window = epoch <= index && epoch.saturating_add(WINDOW_BUCKETS as u64) > index;
            if let (true, Some((c, f))) = (in_window, self.buckets.get(slot_of(epoch))) {
                total.0 = total.0.saturating_add(*c);
                total.1 = total.1.saturating_add(*f);
            }
        }
        total
    }
}

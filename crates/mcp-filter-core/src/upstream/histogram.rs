//! Fixed-memory latency histogram for one upstream: 64 counters, geometric buckets from
//! 100 µs to 60 s, so p50/p95/p99 cost a walk over 64 numbers and the whole thing fits in the
//! shared record (no merging needed: every worker writes the same record).
//!
//! Layout: bucket 0 is `[0, 100 µs)`, buckets 1..=62 are geometric with ratio
//! `R = (60 s / 100 µs)^(1/62) ≈ 1.2394`, bucket 63 is `[60 s, ∞)`. A percentile is reported as
//! the geometric middle of its bucket, so for latencies in 100 µs..60 s it is within
//! `sqrt(R) - 1 ≈ 11.3 %` of the exact nearest-rank percentile ([`relative_error_bound`]).
//! Below 100 µs it reports 100 µs, at or above 60 s it reports 60 s.
//!
//! Every outcome is recorded, failures and timeouts included: a p99 over successes only would
//! hide exactly the calls that hurt. To stay recent, counts are halved once their sum reaches
//! [`HALVE_AT`], so percentiles describe roughly the last 8k–16k calls.

/// Number of buckets (and of counters in the encoding).
pub const BUCKETS: usize = 64;
/// Lower bound of the first geometric bucket, in microseconds.
pub const MIN_US: f64 = 100.0;
/// Lower bound of the overflow bucket, in microseconds.
pub const MAX_US: f64 = 60_000_000.0;
/// When the total reaches this, every count is halved (old samples fade out).
pub const HALVE_AT: u64 = 1 << 14;

const GEOMETRIC: i32 = BUCKETS as i32 - 2;

fn ratio() -> f64 {
    (MAX_US / MIN_US).powf(1.0 / f64::from(GEOMETRIC))
}

/// Worst relative error of a reported percentile for latencies within 100 µs..60 s.
pub fn relative_error_bound() -> f64 {
    ratio().sqrt() - 1.0
}

/// Lower bound of geometric bucket `i` (1..=63), in microseconds.
fn lower_bound(i: usize) -> f64 {
    if i >= BUCKETS - 1 {
        return MAX_US;
    }
    let exp = i32::try_from(i).unwrap_or(GEOMETRIC).saturating_sub(1);
    MIN_US * ratio().powi(exp)
}

/// Bucket of a latency in microseconds.
pub fn bucket_of(latency_us: u64) -> usize {
    // Precision loss above 2^53 µs (285 years) is irrelevant.
    let v = latency_us as f64;
    if v < MIN_US {
        return 0;
    }
    if v >= MAX_US {
        return BUCKETS - 1;
    }
    let estimate = 1.0 + ((v / MIN_US).ln() / ratio().ln()).floor();
    // The float estimate can be one off at a boundary; settle it against the same bounds
    // `representative` uses so the two always agree.
    let mut i = (estimate.max(1.0) as usize).min(BUCKETS - 2);
    while i > 1 && v < lower_bound(i) {
        i -= 1;
    }
    while i < BUCKETS - 2 && v >= lower_bound(i + 1) {
        i += 1;
    }
    i
}

/// The value reported for a percentile falling in bucket `i`, in microseconds.
pub fn representative(i: usize) -> f64 {
    match i {
        0 => MIN_US,
        i if i >= BUCKETS - 1 => MAX_US,
        i => lower_bound(i) * ratio().sqrt(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: [u32; BUCKETS],
    total: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: [0; BUCKETS],
            total: 0,
        }
    }
}

impl LatencyHistogram {
    pub fn from_counts(counts: [u32; BUCKETS]) -> Self {
        let total = counts.iter().map(|&c| u64::from(c)).sum();
        LatencyHistogram { counts, total }
    }

    pub fn counts(&self) -> &[u32; BUCKETS] {
        &self.counts
    }

    /// Samples currently held (after halving, not the lifetime count).
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn record_us(&mut self, latency_us: u64) {
        if let Some(c) = self.counts.get_mut(bucket_of(latency_us)) {
            *c = c.saturating_add(1);
            self.total = self.total.saturating_add(1);
        }
        self.halve_while_full();
    }

    /// Adds another histogram's counts (a worker's pending samples), halving as
    /// `record_us` would.
    pub fn absorb(&mut self, other: &LatencyHistogram) {
        for (c, o) in self.counts.iter_mut().zip(other.counts.iter()) {
            *c = c.saturating_add(*o);
        }
        self.total = self.total.saturating_add(other.total);
        self.halve_while_full();
    }

    fn halve_while_full(&mut self) {
        while self.total >= HALVE_AT {
            for c in self.counts.iter_mut() {
                *c /= 2;
            }
            self.total = self.counts.iter().map(|&c| u64::from(c)).sum();
        }
    }

    /// Nearest-rank percentile (`q` in [0, 1]) in microseconds; `None` without samples.
    pub fn percentile_us(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(representative(i));
            }
        }
        Some(MAX_US)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::IdGenerator;

    fn exact_percentile(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn check_against_exact(samples: &[u64]) {
        let mut h = LatencyHistogram::default();
        for &s in samples {
            h.record_us(s);
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let bound = relative_error_bound();
        for q in [0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let exact = exact_percentile(&sorted, q) as f64;
            let got = h.percentile_us(q).expect("has samples");
            let err = (got - exact).abs() / exact;
            assert!(
                err <= bound + 1e-9,
                "q={q}: histogram {got} vs exact {exact} (error {err}, bound {bound})"
            );
        }
    }

    #[test]
    fn bound_is_about_eleven_percent() {
        let b = relative_error_bound();
        assert!(b > 0.11 && b < 0.115, "{b}");
    }

    #[test]
    fn buckets_are_monotonic_and_cover_the_range() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(99), 0);
        assert_eq!(bucket_of(100), 1);
        assert_eq!(bucket_of(59_999_999), BUCKETS - 2);
        assert_eq!(bucket_of(60_000_000), BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        let mut last = 0;
        let mut v = 1u64;
        while v < 100_000_000 {
            let b = bucket_of(v);
            assert!(b >= last, "bucket went down at {v}");
            assert!(b - last <= 1, "skipped a bucket at {v}");
            last = b;
            v += v / 50 + 1;
        }
        for i in 1..BUCKETS - 1 {
            let lo = lower_bound(i).ceil() as u64;
            assert_eq!(bucket_of(lo), i, "lower bound of {i}");
            assert_eq!(bucket_of(lo.saturating_sub(1)), i - 1, "below {i}");
        }
    }

    #[test]
    fn log_uniform_latencies_match_exact_percentiles() {
        let mut rng = IdGenerator::new(1);
        let samples: Vec<u64> = (0..10_000)
            .map(|_| {
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                // 200 µs .. 30 s, log-uniform
                (200.0 * (150_000.0f64).powf(u)) as u64
            })
            .collect();
        check_against_exact(&samples);
    }

    #[test]
    fn timeouts_show_in_the_tail() {
        // 97 % fast successes, 3 % timeouts at 15 s: p99 must be the timeout, not hidden.
        let mut rng = IdGenerator::new(2);
        let samples: Vec<u64> = (0..5_000)
            .map(|_| {
                if rng.next_u64() % 100 < 3 {
                    15_000_000
                } else {
                    2_000 + rng.next_u64() % 8_000
                }
            })
            .collect();
        check_against_exact(&samples);
        let mut h = LatencyHistogram::default();
        samples.iter().for_each(|&s| h.record_us(s));
        let p99 = h.percentile_us(0.99).expect("samples");
        assert!(p99 > 13_000_000.0 && p99 < 17_000_000.0, "{p99}");
    }

    #[test]
    fn narrow_and_extreme_distributions() {
        check_against_exact(&[5_000; 100]);
        check_against_exact(&[150, 151, 152, 59_000_000]);
        let mut h = LatencyHistogram::default();
        h.record_us(10);
        h.record_us(120_000_000);
        assert_eq!(h.percentile_us(0.5), Some(MIN_US));
        assert_eq!(h.percentile_us(1.0), Some(MAX_US));
        assert_eq!(LatencyHistogram::default().percentile_us(0.5), None);
        assert!(h.percentile_us(f64::NAN).is_some());
    }

    #[test]
    fn halving_keeps_memory_fixed_and_shape_recent() {
        let mut h = LatencyHistogram::default();
        for _ in 0..HALVE_AT * 3 {
            h.record_us(1_000);
        }
        assert!(h.total() < HALVE_AT);
        // A shift to slow calls takes over the median after enough new samples.
        for _ in 0..HALVE_AT {
            h.record_us(1_000_000);
        }
        let p50 = h.percentile_us(0.5).expect("samples");
        assert!(p50 > 800_000.0, "{p50}");
        assert_eq!(LatencyHistogram::from_counts(*h.counts()), h);
    }
}

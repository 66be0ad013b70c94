//! Head sampling by trace id (the same rule as OpenTelemetry's `TraceIdRatioBased`): a trace
//! is kept when the last 8 bytes of its id, read big-endian, fall below `ratio * 2^64`. Every
//! span of a trace gets the same decision, here and in any other component using that rule.

#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    /// Keep when the trace id's low 64 bits are below this; `None` keeps everything.
    threshold: Option<u64>,
}

impl Sampler {
    pub fn new(ratio: f64) -> Self {
        let threshold = if ratio >= 1.0 {
            None
        } else {
            // f64 -> u64 saturates; 0.0 gives 0, which keeps nothing.
            Some((ratio.max(0.0) * u64::MAX as f64) as u64)
        };
        Sampler { threshold }
    }

    pub fn keeps(&self, trace_id: &[u8; 16]) -> bool {
        let Some(threshold) = self.threshold else {
            return true;
        };
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        u64::from_be_bytes(low) < threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(low: u64) -> [u8; 16] {
        let mut id = [0xabu8; 16];
        id[8..].copy_from_slice(&low.to_be_bytes());
        id
    }

    #[test]
    fn ratio_bounds_and_consistency() {
        assert!(Sampler::new(1.0).keeps(&id(u64::MAX)));
        assert!(!Sampler::new(0.0).keeps(&id(0)));
        let half = Sampler::new(0.5);
        assert!(half.keeps(&id(1 << 62)));
        assert!(!half.keeps(&id(3 << 62)));
        // About the ratio over many ids, and the same answer every time for one id.
        let kept = (0..10_000u64)
            .filter(|i| half.keeps(&id(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))))
            .count();
        assert!((4_500..5_500).contains(&kept), "{kept}");
        assert_eq!(half.keeps(&id(12345)), half.keeps(&id(12345)));
    }
}

//! W3C Trace Context (`traceparent`) parsing, generation and propagation, and the id generator
//! behind it. The generator is a seeded SplitMix64: trace ids need uniqueness, not secrecy, and
//! a seed injected by the glue keeps this module free of host calls and deterministic in tests.

/// A parsed or generated `traceparent` (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` header value. Future versions (not `00`, not `ff`) are accepted
    /// when their first 55 characters have the version-00 layout, as the spec asks.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim();
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = hex_byte(&bytes[0..2])?;
        let exact_length_ok = bytes.len() == 55 || (version != 0 && bytes.get(55) == Some(&b'-'));
        if version == 0xff || !exact_length_ok {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id: [u8; 16] = hex_array(&bytes[3..35])?;
        let span_id: [u8; 8] = hex_array(&bytes[36..52])?;
        let flags = hex_byte(&bytes[53..55])?;
        let all_zero = |b: &[u8]| b.iter().all(|&x| x == 0);
        if all_zero(&trace_id) || all_zero(&span_id) {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    pub fn trace_id_hex(&self) -> String {
        to_hex(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        to_hex(&self.span_id)
    }

    /// The header value, always written as version 00.
    pub fn header_value(&self) -> String {
        String::from_utf8_lossy(&self.header_bytes()).into_owned()
    }

    /// The header value without allocating: `00-<trace id>-<span id>-<flags>`.
    pub fn header_bytes(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        write_hex(&mut out[3..35], &self.trace_id);
        write_hex(&mut out[36..52], &self.span_id);
        write_hex(&mut out[53..55], &[self.flags]);
        out
    }
}

/// The trace context of one exchange: the span this gateway hop creates, and its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub current: TraceParent,
    /// Span id of the incoming parent, when one was propagated.
    pub parent_span_id: Option<[u8; 8]>,
    /// Where the parent came from.
    pub origin: TraceOrigin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceOrigin {
    /// A valid `traceparent` header.
    Header,
    /// `params._meta.traceparent` in the body (SEP-414).
    Meta,
    /// None was given (or it was invalid): a new trace.
    Generated,
}

impl TraceOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceOrigin::Header => "header",
            TraceOrigin::Meta => "meta",
            TraceOrigin::Generated => "generated",
        }
    }
}

impl TraceContext {
    /// Continues `incoming` with a new span, or starts a new sampled trace.
    pub fn continue_or_start(
        incoming: Option<TraceParent>,
        origin: TraceOrigin,
        ids: &mut IdGenerator,
    ) -> TraceContext {
        match incoming {
            Some(parent) => TraceContext {
                current: TraceParent {
                    trace_id: parent.trace_id,
                    span_id: ids.span_id(),
                    flags: parent.flags,
                },
                parent_span_id: Some(parent.span_id),
                origin,
            },
            None => TraceContext {
                current: TraceParent {
                    trace_id: ids.trace_id(),
                    span_id: ids.span_id(),
                    flags: 0x01,
                },
                parent_span_id: None,
                origin: TraceOrigin::Generated,
            },
        }
    }
}

/// SplitMix64: small, fast, full-period; never yields all-zero ids.
#[derive(Debug, Clone)]
pub struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    pub fn new(seed: u64) -> Self {
        IdGenerator { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn nonzero_u64(&mut self) -> u64 {
        loop {
            let v = self.next_u64();
            if v != 0 {
                return v;
            }
        }
    }

    pub fn span_id(&mut self) -> [u8; 8] {
        self.nonzero_u64().to_be_bytes()
    }

    pub fn trace_id(&mut self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.nonzero_u64().to_be_bytes());
        id
    }

    /// A hex id of `bytes` random bytes (used for the VM's `source` id).
    pub fn hex_id(&mut self, bytes: usize) -> String {
        let raw: Vec<u8> = (0..bytes.div_ceil(8))
            .flat_map(|_| self.next_u64().to_be_bytes())
            .take(bytes)
            .collect();
        to_hex(&raw)
    }
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    String::from_utf8_lossy(&s).into_owned()
}

fn hex_pair(b: u8) -> [u8; 2] {
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]]
}

/// Appends the lower-case hex digits of `bytes` (written on the stack, copied once).
pub fn push_hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    let mut digits = [0u8; 64];
    for chunk in bytes.chunks(32) {
        let used = chunk.len() * 2;
        write_hex(&mut digits, chunk);
        buf.extend_from_slice(digits.get(..used).unwrap_or_default());
    }
}

/// Writes the hex digits of `bytes` into `out` (two per byte, as far as `out` goes). Trace
/// and span ids are written on every request: four bytes at a time, as integer arithmetic.
pub fn write_hex(out: &mut [u8], bytes: &[u8]) {
    let quads = (out.len() / 8).min(bytes.len() / 4);
    let (quad_out, tail_out) = out.split_at_mut(quads * 8);
    let (quad_in, tail_in) = bytes.split_at(quads * 4);
    for (digits, quad) in quad_out.chunks_exact_mut(8).zip(quad_in.chunks_exact(4)) {
        if let Ok(quad) = <[u8; 4]>::try_from(quad) {
            digits.copy_from_slice(&hex_quad(quad));
        }
    }
    for (pair, &b) in tail_out.chunks_exact_mut(2).zip(tail_in) {
        let [hi, lo] = hex_pair(b);
        pair[0] = hi;
        pair[1] = lo;
    }
}

/// The eight hex digits of four bytes: each nibble spread into a byte of its own (high
/// nibble first), then every byte turned into its digit at once (`a`-`f` where it is 10+).
fn hex_quad(quad: [u8; 4]) -> [u8; 8] {
    const LOW_NIBBLES: u64 = 0x000f_000f_000f_000f;
    let mut spread = u64::from(u32::from_le_bytes(quad));
    spread = (spread | spread << 16) & 0x0000_ffff_0000_ffff;
    spread = (spread | spread << 8) & 0x00ff_00ff_00ff_00ff;
    let nibbles = (spread >> 4) & LOW_NIBBLES | (spread & LOW_NIBBLES) << 8;
    let letters = ((nibbles + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (nibbles + 0x3030_3030_3030_3030 + letters * 0x27).to_le_bytes()
}

fn hex_digit(c: u8) -> Option<u8> {
    // Uppercase is invalid in traceparent.
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    match pair {
        [hi, lo] => Some(hex_digit(*hi)? << 4 | hex_digit(*lo)?),
        _ => None,
    }
}

fn hex_array<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(hex.chunks(2)) {
        *slot = hex_byte(pair)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_agrees_with_format_for_every_byte_and_length() {
        let bytes: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
        for len in [0, 1, 3, 4, 5, 8, 16, 17] {
            for start in (0..bytes.len() - len).step_by(7) {
                let input = &bytes[start..start + len];
                let expected: String = input.iter().map(|b| format!("{b:02x}")).collect();
                let mut out = vec![0u8; len * 2];
                write_hex(&mut out, input);
                assert_eq!(String::from_utf8_lossy(&out), expected);
                assert_eq!(to_hex(input), expected);
            }
        }
    }

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn parses_and_round_trips() {
        let tp = TraceParent::parse(VALID).expect("valid");
        assert_eq!(tp.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(tp.span_id_hex(), "b7ad6b7169203331");
        assert_eq!(tp.flags, 1);
        assert_eq!(tp.header_value(), VALID);
    }

    #[test]
    fn rejects_invalid_values() {
        let cases = [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333x-01",
        ];
        for case in cases {
            assert_eq!(TraceParent::parse(case), None, "{case}");
        }
    }

    #[test]
    fn future_versions_parse_their_known_prefix() {
        let future = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-ever";
        let tp = TraceParent::parse(future).expect("future version");
        assert_eq!(tp.header_value(), VALID);
    }

    #[test]
    fn propagation_keeps_trace_and_makes_new_span() {
        let mut ids = IdGenerator::new(42);
        let incoming = TraceParent::parse(VALID);
        let ctx = TraceContext::continue_or_start(incoming, TraceOrigin::Header, &mut ids);
        assert_eq!(
            ctx.current.trace_id_hex(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_ne!(ctx.current.span_id_hex(), "b7ad6b7169203331");
        assert_eq!(
            ctx.parent_span_id.map(|p| to_hex(&p)).as_deref(),
            Some("b7ad6b7169203331")
        );
        assert_eq!(ctx.origin, TraceOrigin::Header);
        assert!(TraceParent::parse(&ctx.current.header_value()).is_some());
    }

    #[test]
    fn generation_makes_valid_distinct_ids() {
        let mut ids = IdGenerator::new(7);
        let a = TraceContext::continue_or_start(None, TraceOrigin::Header, &mut ids);
        let b = TraceContext::continue_or_start(None, TraceOrigin::Header, &mut ids);
        assert_eq!(a.origin, TraceOrigin::Generated);
        assert_eq!(a.parent_span_id, None);
        assert_ne!(a.current.trace_id, b.current.trace_id);
        assert_eq!(
            TraceParent::parse(&a.current.header_value()),
            Some(a.current)
        );
        assert_eq!(ids.hex_id(8).len(), 16);
        assert_eq!(ids.hex_id(3).len(), 6);
    }
}

//! `traceparent` parsing: never panics on any string, and a parsed value round-trips through
//! the header it generates.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_filter::trace::TraceParent;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(parsed) = TraceParent::parse(&text) {
        let header = parsed.header_value();
        assert_eq!(header.len(), 55, "{header}");
        let again = TraceParent::parse(&header).expect("a generated header parses");
        assert_eq!(again, parsed);
        assert_eq!(parsed.trace_id_hex().len(), 32);
        assert_eq!(parsed.span_id_hex().len(), 16);
    }
});

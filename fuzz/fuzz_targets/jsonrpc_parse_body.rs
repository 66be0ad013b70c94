//! The JSON-RPC / MCP classifier on arbitrary request and response bodies: never panics, and
//! agrees with the slow `serde_json::Value` reference (`jsonrpc::reference`) on validity and
//! on every field it reads, within the itemisation cap.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_filter::jsonrpc::{parse_message, reference::check_against_reference};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the cap (0..=255, as `max_batch_elements` may be small).
    let (cap, body) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c), rest),
        None => (256, data),
    };
    check_against_reference(body, cap);
    let _ = parse_message(body);
});

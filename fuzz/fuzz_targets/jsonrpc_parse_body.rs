//! The JSON-RPC / MCP classifier on arbitrary request and response bodies: never panics, and
//! what it returns respects the itemisation cap.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_filter::jsonrpc::{parse_body, parse_message};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the cap (0..=255, as `max_batch_elements` may be small).
    let (cap, body) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c), rest),
        None => (256, data),
    };
    if let Ok(parsed) = parse_body(body, cap) {
        assert!(parsed.messages.len() <= cap.max(1) || !parsed.batch);
        if !parsed.batch {
            assert_eq!(parsed.messages.len(), 1);
            assert_eq!(parsed.not_itemised, 0);
        }
        for message in &parsed.messages {
            let _ = message.kind_str();
            let _ = message.expects_response();
            let _ = message.target_name();
        }
    }
    let _ = parse_message(body);
});

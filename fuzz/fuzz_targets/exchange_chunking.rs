//! The filter's exchange driven through its public phases (request headers, body, response
//! headers, body, stream end) with any request and response bodies cut into any chunks:
//! never panics, gives the same events as the whole bodies do, and ends every request
//! element with exactly one `response` event (`exchange::drive::check_chunking`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mcp_filter::exchange::drive::check_chunking(data);
});

//! The incremental SSE parser: never panics, never keeps more than its cap per event, and
//! gives the same events however the stream is cut into chunks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_filter::sse::parse_all as run;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // Byte 0: the per-event cap (1..=256); byte 1: the chunk size of the split run (1..=16).
    let cap = usize::from(data[0]) + 1;
    let step = usize::from(data[1] % 16) + 1;
    let stream = &data[2..];
    let whole = run(cap, &[stream]);
    for event in &whole {
        assert!(
            event.data.len() <= cap.max(1) * 4,
            "data bounded by the cap (lossy UTF-8 may grow it)"
        );
        assert!(!event.truncated || event.data.is_empty());
    }
    let chunks: Vec<&[u8]> = stream.chunks(step).collect();
    let split = run(cap, &chunks);
    assert_eq!(
        whole, split,
        "chunking changed the parsed events (step {step})"
    );
});

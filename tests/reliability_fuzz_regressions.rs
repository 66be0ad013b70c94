//! Regression cases for the filter's pure parsers, from the fuzz targets in fuzz/ and the
//! hostile-input suite: each input once crashed a target or is an edge the targets assert on.
//! Plain `cargo test`, no nightly needed.
// Tests fail loudly: unwrap, expect and panic are how they report (the workspace denies
// them outside tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcp_filter::jsonrpc::{parse_body, parse_message, Parsed};
use mcp_filter::trace::TraceParent;

#[test]
fn classifier_survives_deep_nesting_and_garbage() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    // A batch of one element that is no message: nothing is itemised.
    let no_message = |body: &str| {
        parse_body(body.as_bytes(), 256).map_or(true, |p| p.messages().next().is_none())
    };
    assert!(no_message(&deep));
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    assert!(no_message(&deep_obj));
    let deep_args = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{}1{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let _ = parse_body(deep_args.as_bytes(), 256);
    for input in [
        &b""[..],
        b"[",
        b"]",
        b"\xff\xfe",
        b"[{}]",
        b"[1]",
        b"{\"jsonrpc\":\"2.0\"}",
        b"\0",
    ] {
        let _ = parse_body(input, 0);
        let _ = parse_body(input, 256);
        let _ = parse_message(input);
    }
}

#[test]
fn classifier_caps_batch_itemisation() {
    let batch = format!(
        "[{}]",
        (0..10_000)
            .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let parsed = parse_body(batch.as_bytes(), 256).expect("valid batch");
    assert_eq!(parsed.messages().count(), 256);
    assert!(matches!(parsed, Parsed::Batch { not_itemised, .. } if not_itemised == 10_000 - 256));
}

fn sse(cap: usize, chunks: &[&[u8]]) -> Vec<mcp_filter::sse::SseEvent> {
    mcp_filter::sse::parse_all(cap, chunks)
}

#[test]
fn sse_is_chunking_independent_and_bounded() {
    let stream: &[u8] = b"event: message\r\ndata: {\"a\":1}\r\n\r\ndata: x\rdata: y\r\r:comment\n\nid: 7\ndata: z\n\n";
    let whole = sse(64, &[stream]);
    assert_eq!(whole.len(), 3);
    for step in 1..8 {
        let chunks: Vec<&[u8]> = stream.chunks(step).collect();
        assert_eq!(sse(64, &chunks), whole, "step {step}");
    }
    // One 1 MiB line with a 16-byte cap: kept bounded, flagged truncated.
    let mut big = b"data: ".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1 << 20));
    big.extend_from_slice(b"\n\n");
    let events = sse(16, &[&big]);
    assert_eq!(events.len(), 1);
    assert!(events[0].truncated && events[0].data.is_empty());
    // A cap of 0 never panics.
    let _ = sse(0, &[b"data: a\n\n"]);
}

#[test]
fn sse_bom_at_stream_start_is_stripped_in_one_chunk() {
    let events = sse(64, &[b"\xEF\xBB\xBFdata: a\n\n"]);
    assert_eq!(events.len(), 1);
    // A BOM split across the first chunks is stripped too (found by fuzzing, fixed).
    let split = sse(64, &[b"\xEF", b"\xBB\xBFdata: a\n\n"]);
    assert_eq!(split.len(), 1);
}

#[test]
fn traceparent_rejects_garbage_and_round_trips() {
    for input in [
        "",
        "00-zzzz-\u{7f}-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
    ] {
        if let Some(tp) = TraceParent::parse(input) {
            assert_eq!(TraceParent::parse(&tp.header_value()), Some(tp), "{input}");
        }
    }
    let ok = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .expect("valid");
    assert_eq!(TraceParent::parse(&ok.header_value()), Some(ok));
    let future =
        TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever");
    assert!(future.is_some());
}
